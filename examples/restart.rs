//! A server of your own that restarts seamlessly: on SIGUSR2 it starts this program again
//! (as it is on disk now), hands it the listening socket and the path's lock, and once the new
//! process is ready, drains and exits. No connection is refused meanwhile. Each reply says
//! which process served it.
//!
//! Run it:    cargo run -p localipc-cli --example restart -- /tmp/restart.sock
//! Talk to it: ipc-client --socket /tmp/restart.sock send hi     (prints `served by pid N`)
//! Restart:   kill -USR2 <pid>                                   (the pid changes; no one waits)
//! Stop it with Ctrl-C (or SIGTERM): the socket file is removed by whichever process has it.

use localipc_server::handover::Successor;
use localipc_server::signal::ShutdownSignals;
use localipc_server::{Server, activation, handler_fn};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(localipc_server::default_socket_path, Into::into);
    let handler = handler_fn(|_request, _ctx| async {
        Ok::<_, std::convert::Infallible>(format!("served by pid {}", std::process::id()))
    });
    // SIGUSR2 restarts; the other stop signals stop.
    let mut stops = ShutdownSignals::except(&[nix::sys::signal::Signal::SIGUSR2])?;
    let mut restarts = signal(SignalKind::user_defined2())?;
    // What a predecessor handed over (or systemd passed), else a socket of its own.
    let server = match activation::inherited()? {
        Some(inherited) => Server::builder(handler).inherited(inherited),
        None => Server::builder(handler).socket(&path),
    }
    .bind()?;
    let handle = server.handle();
    tokio::spawn(async move {
        while restarts.recv().await.is_some() {
            match Successor::this_program() {
                // Ok once the successor is ready: this server then drains and `serve` returns.
                Ok(successor) => match handle.hand_over(successor).await {
                    Ok(pid) => eprintln!("handed over to pid {pid}"),
                    Err(e) => eprintln!("restart failed, serving on: {e}"),
                },
                Err(e) => eprintln!("cannot restart: {e}"),
            }
        }
    });
    // Ready: a predecessor waits for this before it stops accepting.
    activation::notify_ready();
    eprintln!("pid {} serving {}", std::process::id(), path.display());
    server
        .serve(async move {
            stops.recv().await;
        })
        .await?;
    Ok(())
}
