//! A handler chosen at run time: `BoxHandler` gives every choice one type, so one server serves
//! whichever the command line asks for.
//!
//! Run it:    cargo run -p localipc-cli --example boxed -- /tmp/boxed.sock upper   (echo, ack or upper)
//! Talk to it: cargo run --bin ipc-client -- --socket /tmp/boxed.sock send hello
//! Stop it with Ctrl-C (or SIGTERM).

use localipc_server::signal::ShutdownSignals;
use localipc_server::{Ack, BoxError, BoxHandler, Bytes, Echo, Server, handler_fn};

fn choose(name: &str) -> Option<BoxHandler> {
    Some(match name {
        "echo" => BoxHandler::new(Echo),
        "ack" => BoxHandler::new(Ack::default()),
        "upper" => BoxHandler::new(handler_fn(|request: Bytes, _ctx| async move {
            Ok::<_, BoxError>(Bytes::from(request.to_ascii_uppercase()))
        })),
        _ => return None,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: boxed SOCKET echo|ack|upper")?;
    let mode = args.next().unwrap_or_else(|| "echo".into());
    let handler = choose(&mode).ok_or_else(|| format!("unknown handler {mode:?}"))?;
    let mut signals = ShutdownSignals::new()?;
    let server = Server::builder(handler).socket(&path).bind()?;
    println!("{mode} server on {path}");
    server
        .serve(async move {
            signals.recv().await;
        })
        .await?;
    Ok(())
}
