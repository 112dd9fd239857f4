//! A `tower` stack in front of a handler: a time limit on every call and a cap on the calls in
//! flight across all connections, from `tower`'s own layers (feature `tower` of ipc-server).
//!
//! Run it:    cargo run -p localipc-cli --example tower -- /tmp/tower.sock
//! Talk to it: cargo run --bin ipc-client -- --socket /tmp/tower.sock send 10 5000
//!             (a number is how many milliseconds the handler takes: `10` is answered, `5000`
//!             runs past the 1 s limit and the server closes that connection)
//! Stop it with Ctrl-C (or SIGTERM).

use std::time::Duration;

use localipc_server::signal::ShutdownSignals;
use localipc_server::tower::ServiceHandler;
use localipc_server::{BoxError, Bytes, HandlerExt, Server, handler_fn};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: tower SOCKET")?;
    // Takes as many milliseconds as the request says.
    let slow = handler_fn(|request: Bytes, _ctx| async move {
        let ms: u64 = std::str::from_utf8(&request)?.trim().parse()?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, BoxError>(Bytes::from(format!("took {ms} ms")))
    });
    let handler = ServiceHandler::new(
        ServiceBuilder::new()
            .timeout(Duration::from_secs(1))
            .concurrency_limit(16)
            .service(slow.into_service()),
    );
    let mut signals = ShutdownSignals::new()?;
    let server = Server::builder(handler).socket(&path).bind()?;
    println!("tower server on {path}");
    server
        .serve(async move {
            signals.recv().await;
        })
        .await?;
    Ok(())
}
