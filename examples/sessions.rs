//! State per connection: each connection keeps a running total of the numbers it sends. The
//! `connected` and `disconnected` hooks open and drop the connection's entry, so the map holds
//! exactly the open connections, however they end.
//!
//! Run it:    cargo run -p localipc-cli --example sessions -- /tmp/sessions.sock
//! Talk to it: cargo run --bin ipc-client -- --socket /tmp/sessions.sock send 1 2 3   (1, 3, 6)
//!             send `open` to ask how many sessions are open.
//! Stop it with Ctrl-C (or SIGTERM).

use std::collections::HashMap;
use std::sync::Mutex;

use localipc_server::signal::ShutdownSignals;
use localipc_server::{BoxError, Bytes, Context, Handler, Response, Server};

#[derive(Default)]
struct Totals {
    /// Running total per open connection, by connection id.
    sessions: Mutex<HashMap<u64, i64>>,
}

impl Handler for Totals {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        let mut sessions = self.sessions.lock().unwrap();
        if &request[..] == b"open" {
            return Ok(sessions.len().to_string().into());
        }
        let n: i64 = std::str::from_utf8(&request)?.trim().parse()?;
        let total = sessions.entry(ctx.connection_id()).or_default();
        *total += n;
        Ok(total.to_string().into())
    }

    fn connected(&self, ctx: &Context) {
        self.sessions.lock().unwrap().insert(ctx.connection_id(), 0);
    }

    fn disconnected(&self, ctx: &Context) {
        self.sessions.lock().unwrap().remove(&ctx.connection_id());
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: sessions SOCKET")?;
    let mut signals = ShutdownSignals::new()?;
    let server = Server::builder(Totals::default()).socket(&path).bind()?;
    println!("sessions server on {path}");
    server
        .serve(async move {
            signals.recv().await;
        })
        .await?;
    Ok(())
}
