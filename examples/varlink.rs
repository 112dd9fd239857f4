//! A Varlink service in a few lines: `org.example.counter`, a counter that clients add to, read
//! and watch. `Add` is a typed call with a typed error; `Watch` streams the value and then every
//! change (server push: it is fed from a broadcast channel). Who may `Add` is a policy: the
//! server's own user, or with a group id as second argument, the members of that group (the
//! socket is then open to every user, who may all `Get` and `Watch`).
//!
//! Run it:     cargo run -p localipc-cli --example varlink -- /tmp/counter.sock [ADDERS_GID]
//! Call it:    cargo run --bin ipc-client -- --socket /tmp/counter.sock call org.example.counter.Add '{"by": 2}'
//! Watch it:   cargo run --bin ipc-client -- --socket /tmp/counter.sock call org.example.counter.Watch --more
//! Stop it with Ctrl-C (or SIGTERM): open `Watch` streams end with io.ipc.Server.ShuttingDown,
//! and the socket file is removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::{Stream, StreamExt};
use localipc_server::signal::ShutdownSignals;
use localipc_server::{Framing, Server};
use localipc_varlink::{Empty, Interface, More, Policy, Service, VarlinkError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The interface, in the Varlink IDL: what `introspect` shows and what calls are checked
/// against.
const IDL: &str = "\
# A counter that clients add to and watch.
interface org.example.counter

# Adds `by` (at least 1) to the counter and returns the new value.
method Add(by: int) -> (value: int)

# The value now.
method Get() -> (value: int)

# Call with more: the value now, then the value after every change.
method Watch() -> (value: int)

# `by` was below 1.
error BadStep (by: int)
";

#[derive(Deserialize)]
struct Add {
    by: i64,
}

#[derive(Serialize, Clone, Copy)]
struct Value {
    value: i64,
}

struct Counter {
    value: AtomicI64,
    changes: broadcast::Sender<i64>,
}

fn watch(
    now: i64,
    changes: broadcast::Receiver<i64>,
) -> impl Stream<Item = Result<More<Value>, VarlinkError>> {
    let first = futures::stream::iter([Ok(More::next(Value { value: now }))]);
    let later = futures::stream::unfold(changes, |mut changes| async move {
        loop {
            match changes.recv().await {
                Ok(value) => return Some((Ok(More::next(Value { value })), changes)),
                // A watcher that fell behind just gets the newest values.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    first.chain(later)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(localipc_server::default_socket_path, Into::into);
    let adders_gid: Option<u32> = std::env::args().nth(2).map(|g| g.parse()).transpose()?;
    let counter = Arc::new(Counter {
        value: AtomicI64::new(0),
        changes: broadcast::channel(64).0,
    });

    let adder = Arc::clone(&counter);
    let reader = Arc::clone(&counter);
    let watcher = Arc::clone(&counter);
    let interface = Interface::new(IDL)?
        .method("Add", move |p: Add, _ctx| {
            let result = if p.by < 1 {
                Err(VarlinkError::new(
                    "org.example.counter.BadStep",
                    serde_json::json!({ "by": p.by }),
                ))
            } else {
                let value = adder.value.fetch_add(p.by, Ordering::SeqCst) + p.by;
                // No watcher is no error.
                let _ = adder.changes.send(value);
                Ok(Value { value })
            };
            async move { result }
        })
        .method("Get", move |_: Empty, _ctx| {
            let value = reader.value.load(Ordering::SeqCst);
            async move { Ok::<_, VarlinkError>(Value { value }) }
        })
        // Checked before `Add` runs; anyone else gets org.varlink.service.PermissionDenied.
        .allow_method(
            "Add",
            adders_gid.map_or_else(Policy::same_user, Policy::group),
        )
        .streaming("Watch", move |_: Empty, _ctx| {
            // Subscribe first, so no change between the two is missed.
            let changes = watcher.changes.subscribe();
            watch(watcher.value.load(Ordering::SeqCst), changes)
        });
    let service = Service::builder()
        .vendor("example")
        .product("counter")
        .interface(interface)
        .build()?;

    let mut signals = ShutdownSignals::new()?;
    let server = Server::builder(service)
        .socket(&path)
        // With adders named, everyone may connect (to read); else the server's user only.
        .socket_mode(if adders_gid.is_some() { 0o666 } else { 0o600 })
        .framing(Framing::Nul)
        .bind()?;
    println!("counter service on {}", path.display());
    server
        .serve(async move {
            signals.recv().await;
        })
        .await?;
    Ok(())
}
