//! A Varlink service in a few lines: `org.example.counter`, a counter that clients add to, read
//! and watch, implemented over the code generated from its description
//! (`examples/org.example.counter.varlink`). `Add` is a typed call with a typed error; `Watch` streams the value and then every
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
use localipc_varlink::{Context, MethodError, More, Policy, Service};
use tokio::sync::broadcast;

/// The code generated from `examples/org.example.counter.varlink` by the package's build script
/// (`localipc_varlink_codegen::Generator`): a struct per method's parameters and reply, the
/// `Error` enum, the `Methods` trait, `interface()`, and typed clients (which this server does
/// not use, hence `allow(dead_code)`).
#[allow(dead_code)]
mod counter {
    localipc_varlink::include_interface!("org.example.counter");
}

use counter::{
    AddParameters, AddReply, Error, GetParameters, GetReply, WatchParameters, WatchReply,
};

struct Counter {
    value: AtomicI64,
    changes: broadcast::Sender<i64>,
}

/// Leaving out a method, or answering one with the wrong type, is a compile error.
impl counter::Methods for Counter {
    async fn add(&self, p: AddParameters, _ctx: &Context) -> Result<AddReply, MethodError<Error>> {
        if p.by < 1 {
            return Err(Error::BadStep { by: p.by }.into());
        }
        let value = self.value.fetch_add(p.by, Ordering::SeqCst) + p.by;
        // No watcher is no error.
        let _ = self.changes.send(value);
        Ok(AddReply { value })
    }

    async fn get(&self, _: GetParameters, _ctx: &Context) -> Result<GetReply, MethodError<Error>> {
        Ok(GetReply {
            value: self.value.load(Ordering::SeqCst),
        })
    }

    fn watch(
        self: Arc<Self>,
        _: WatchParameters,
        _ctx: Context,
    ) -> impl Stream<Item = Result<More<WatchReply>, MethodError<Error>>> + Send + 'static {
        // Subscribe first, so no change between the two is missed.
        let changes = self.changes.subscribe();
        let now = self.value.load(Ordering::SeqCst);
        let first = futures::stream::iter([Ok(More::next(WatchReply { value: now }))]);
        let later = futures::stream::unfold(changes, |mut changes| async move {
            loop {
                match changes.recv().await {
                    Ok(value) => return Some((Ok(More::next(WatchReply { value })), changes)),
                    // A watcher that fell behind just gets the newest values.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        first.chain(later)
    }
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

    // Checked before `Add` runs; anyone else gets org.varlink.service.PermissionDenied.
    let interface = counter::interface(counter).allow_method(
        counter::Method::Add,
        adders_gid.map_or_else(Policy::same_user, Policy::group),
    );
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
