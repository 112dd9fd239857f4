//! The public entry point: [`Server::builder`] (or [`Server::bind`]), then [`Server::serve`]
//! until a shutdown future completes or a [`ShutdownHandle`] says so.
//!
//! Shutdown, in order: stop accepting new connections and remove the socket file (new clients
//! see "nothing there" at once, and a new server may bind the path); tell every session to
//! answer the requests that have reached it (read or not) and close; accept the connections
//! still waiting in the listening socket's backlog and answer theirs too (unless the socket
//! was inherited through socket activation: then they stay queued for the next instance);
//! wait for all of it up to [`ServerConfig::shutdown_timeout`], or until
//! [`ShutdownHandle::force`]; drop whatever is left.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limit::{ConnectionLimit, UidLimit};
use localipc_core::Handler;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::address::ListenAddress;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::listener::Listener;
use crate::socket_file::{self, BindOptions, SocketFile};
use localipc_core::Trigger;

/// A bound server, ready to [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server<H> {
    listener: std::os::unix::net::UnixListener,
    address: ListenAddress,
    socket_file: Option<SocketFile>,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    handle: ShutdownHandle,
    /// The listening socket was passed in (socket activation): its backlog is not ours.
    inherited: bool,
}

/// Stops a running server from anywhere, and waits for it to finish: clone it, keep it, call it
/// later.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shutdown: Trigger,
    force: Trigger,
    stopped: CancellationToken,
}

impl ShutdownHandle {
    /// A handle for a server not yet serving.
    fn new() -> Self {
        Self {
            shutdown: Trigger::default(),
            force: Trigger::default(),
            stopped: CancellationToken::new(),
        }
    }

    /// Begins a graceful shutdown: stop accepting, answer the requests already read, close.
    pub fn shutdown(&self) {
        self.shutdown.fire();
    }

    /// Drops every connection at once (after [`shutdown`](Self::shutdown), or instead of it).
    pub fn force(&self) {
        self.shutdown.fire();
        self.force.fire();
    }

    /// Waits until [`Server::serve`] has finished: every connection closed and the socket file
    /// removed. Returns at once if it already has.
    pub async fn stopped(&self) {
        self.stopped.cancelled().await;
    }

    /// Whether [`Server::serve`] has finished.
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_cancelled()
    }
}

impl<H: Handler> Server<H> {
    /// Binds a server at `config.socket_path`: shorthand for the
    /// [`Builder`](crate::Builder) with a whole [`ServerConfig`]. As there, a path written
    /// `@name` is a name in the abstract namespace (no file is created).
    ///
    /// # Errors
    ///
    /// As [`Builder::bind`](crate::Builder::bind).
    pub fn bind(config: ServerConfig, handler: H) -> Result<Self, ServerError> {
        match localipc_core::abstract_name(&config.socket_path) {
            Some(name) => {
                let name = name.to_owned();
                Self::bind_abstract(&name, config, handler)
            }
            None => Self::bind_path(config, handler),
        }
    }

    /// Creates the socket file described by `config` and binds it.
    ///
    /// If the socket's directory is the default private one ([`localipc_core::default_socket_dir`]),
    /// it is created `0700` and checked (owner, mode, not a link) first.
    pub(crate) fn bind_path(config: ServerConfig, handler: H) -> Result<Self, ServerError> {
        config.validate()?;
        let private_dir = config.socket_path.parent() == Some(&localipc_core::default_socket_dir());
        let opts = BindOptions {
            mode: config.socket_mode,
            group: config.socket_group,
            private_dir,
        };
        let (listener, file) = socket_file::bind(&config.socket_path, opts)?;
        Ok(Self {
            // As the kernel recorded it (an absolute path, even for a relative `socket_path`).
            address: ListenAddress::of(&listener),
            listener,
            socket_file: Some(file),
            handler: Arc::new(handler),
            config: Arc::new(config),
            handle: ShutdownHandle::new(),
            inherited: false,
        })
    }

    /// Binds `name` in the abstract namespace: no file, nothing to remove.
    pub(crate) fn bind_abstract(
        name: &[u8],
        config: ServerConfig,
        handler: H,
    ) -> Result<Self, ServerError> {
        use std::os::linux::net::SocketAddrExt;
        config.validate()?;
        let path = &config.socket_path;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
            .map_err(|e| ServerError::io("bind", path, e))?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ServerError::InUse { path: path.clone() }
            } else {
                ServerError::io("bind", path, e)
            }
        })?;
        Ok(Self {
            address: ListenAddress::Abstract(name.to_owned()),
            listener,
            socket_file: None,
            handler: Arc::new(handler),
            config: Arc::new(config),
            handle: ShutdownHandle::new(),
            inherited: false,
        })
    }

    /// Serves a socket bound elsewhere; its file is never removed.
    pub(crate) fn adopt(
        listener: std::os::unix::net::UnixListener,
        config: ServerConfig,
        handler: H,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        // A descriptor that is not a Unix socket fails here rather than at the first accept.
        listener
            .local_addr()
            .map_err(|e| ServerError::io("use the inherited socket for", &config.socket_path, e))?;
        Ok(Self {
            address: ListenAddress::of(&listener),
            listener,
            socket_file: None,
            handler: Arc::new(handler),
            config: Arc::new(config),
            handle: ShutdownHandle::new(),
            inherited: true,
        })
    }

    /// The socket file clients connect to; `None` when the server listens on an abstract name
    /// or an unnamed inherited socket (see [`address`](Self::address)).
    pub fn path(&self) -> Option<&Path> {
        self.address.as_path()
    }

    /// What the server really listens on: a path, an abstract name, or an unnamed socket.
    pub fn address(&self) -> &ListenAddress {
        &self.address
    }

    /// The settings in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A handle that can stop the server once it serves.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` completes or the [`ShutdownHandle`] is used, then drains and
    /// returns. The socket file is removed before this returns (or if the future is dropped).
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] if the listening socket cannot be registered with the runtime.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            listener,
            address,
            socket_file,
            handler,
            config,
            handle,
            inherited,
        } = self;
        let _stopped = handle.stopped.clone().drop_guard();
        let name = PathBuf::from(address.to_string());
        listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::io("configure", &name, e))?;
        match crate::conn::pass_rights(&listener, config.accept_fds) {
            Ok(_) if config.accept_fds => debug!(
                max_per_message = config.max_fds_per_message,
                "file descriptors are accepted with requests"
            ),
            Ok(true) => debug!("file descriptors sent to this socket are refused by the kernel"),
            Ok(false) => debug!(
                "this kernel cannot refuse file descriptors (SO_PASSRIGHTS needs Linux 6.16); \
                 any sent are dropped unread"
            ),
            Err(e) => return Err(ServerError::io("configure", &name, e)),
        }
        let listener = crate::conn::register(listener, tokio::io::Interest::READABLE)
            .map_err(|e| ServerError::io("listen on", &name, e))?;
        info!(
            address = %address,
            handler = short_type_name::<H>(),
            framing = %config.framing,
            max_frame = config.max_frame,
            max_connections = config.max_connections,
            max_connections_per_uid = config.connections_per_uid(),
            unfinished_budget = config.unfinished_budget,
            concurrency = config.concurrency,
            // Seconds, as numbers; a timeout that is off is left out.
            idle_timeout_secs = config.idle_timeout.map(|t| t.as_secs_f64()),
            request_timeout_secs = config.request_timeout.map(|t| t.as_secs_f64()),
            shutdown_timeout_secs = config.shutdown_timeout.as_secs_f64(),
            "listening"
        );
        let tracker = TaskTracker::new();
        let mut accept_loop = Listener {
            listener,
            handler,
            limit: ConnectionLimit::new(config.max_connections),
            uids: UidLimit::new(config.connections_per_uid(), config.max_connections),
            config: Arc::clone(&config),
            shutdown: handle.shutdown.clone(),
            force: handle.force.clone(),
            tracker: tracker.clone(),
            next_id: 0,
        };
        tokio::select! {
            () = accept_loop.run() => unreachable!("the accept loop only ends when dropped"),
            () = shutdown => info!("shutdown requested"),
            () = handle.shutdown.fired() => info!("shutdown requested"),
        }
        // Stop accepting new connections and take the name away first; sessions answer what
        // has arrived, then close.
        handle.shutdown.fire();
        drop(socket_file);
        let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
        if !inherited {
            // Connections already waiting in the backlog reached the socket before the stop:
            // they are answered too, not reset when it closes.
            tokio::select! {
                () = accept_loop.admit_backlog() => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = handle.force.fired() => {}
            }
        }
        drop(accept_loop);
        tracker.close();
        let open = tracker.len();
        if open > 0 {
            info!(connections = open, timeout = ?config.shutdown_timeout, "draining connections");
        }
        tokio::select! {
            () = tracker.wait() => {}
            () = tokio::time::sleep_until(deadline) => {
                warn!(connections = tracker.len(), "shutdown timeout reached; dropping connections");
            }
            () = handle.force.fired() => {
                warn!(connections = tracker.len(), "forced shutdown; dropping connections");
            }
        }
        handle.force.fire();
        tracker.wait().await;
        info!("stopped");
        Ok(())
    }
}

/// `localipc_core::handlers::Echo` -> `Echo`, for the start-up log line.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
