//! State shared across connections: every reply is the number of requests served so far, by
//! all clients together. The handler is wrapped, untouched, to log each exchange.
//!
//! Run it:    cargo run -p localipc-cli --example counter -- /tmp/counter.sock
//! Talk to it: cargo run --bin ipc-client -- --socket /tmp/counter.sock send anything   (prints 1, 2, ...)
//! Stop it with Ctrl-C (or SIGTERM).

use std::sync::atomic::{AtomicU64, Ordering};

use localipc_server::Server;
use localipc_server::signal::ShutdownSignals;
use localipc_server::{BoxError, Bytes, Context, Handler, HandlerExt, Response};

/// One counter for the whole server: the server shares one handler between all connections.
#[derive(Default)]
struct Counter {
    served: AtomicU64,
}

impl Handler for Counter {
    async fn handle(&self, _request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(n.to_string().into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(localipc_server::default_socket_path, Into::into);
    let handler = Counter::default().inspect(|ctx, request, outcome| {
        eprintln!(
            "conn {} ({}): {:?} -> {:?}",
            ctx.connection_id(),
            ctx.peer(),
            String::from_utf8_lossy(request),
            outcome
                .as_ref()
                .map(|r| r.reply().map(|r| String::from_utf8_lossy(r).into_owned()))
        );
    });
    let mut signals = ShutdownSignals::new()?;
    let server = Server::builder(handler).socket(&path).bind()?;
    println!("counter server on {}", path.display());
    server
        .serve(async move {
            signals.recv().await;
        })
        .await?;
    Ok(())
}
