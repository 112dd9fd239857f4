//! A custom handler in a few lines: every reply is the request in upper case.
//!
//! Run it:    cargo run -p localipc-cli --example uppercase -- /tmp/upper.sock
//! Talk to it: cargo run --bin ipc-client -- --socket /tmp/upper.sock send hello   (prints HELLO)
//! Stop it with Ctrl-C (or SIGTERM): the socket file is removed.

use localipc_server::Server;
use localipc_server::signal::ShutdownSignals;
use localipc_server::{BoxError, Bytes, Context, Handler, Response};

struct Uppercase;

impl Handler for Uppercase {
    async fn handle(&self, request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
        Ok(request.to_ascii_uppercase().into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(localipc_server::default_socket_path, Into::into);
    let mut signals = ShutdownSignals::new()?;
    let server = Server::builder(Uppercase).socket(&path).bind()?;
    println!("uppercase server on {}", path.display());
    server
        .serve(async move {
            signals.recv().await;
        })
        .await?;
    Ok(())
}
