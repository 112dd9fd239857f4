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
//!
//! A handover ([`ShutdownHandle::hand_over`], see [`handover`](crate::handover)) ends serving
//! the same way once the successor is ready, except that the socket file and the backlog are
//! left to the successor; so does a stop when the socket is kept in systemd's file descriptor
//! store, for the next start.

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
    /// What the handle asks of the server beyond a stop (handovers).
    ends: HandleEnds,
}

/// Stops a running server from anywhere, and waits for it to finish: clone it, keep it, call it
/// later.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shutdown: Trigger,
    force: Trigger,
    stopped: CancellationToken,
    #[cfg(feature = "systemd")]
    handovers: tokio::sync::mpsc::Sender<crate::handover::Request>,
}

/// What only the server keeps of its handle's channels.
#[derive(Debug)]
struct HandleEnds {
    #[cfg(feature = "systemd")]
    handovers: tokio::sync::mpsc::Receiver<crate::handover::Request>,
}

impl ShutdownHandle {
    /// A handle for a server not yet serving, and the ends the server keeps.
    fn new() -> (Self, HandleEnds) {
        #[cfg(feature = "systemd")]
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        (
            Self {
                shutdown: Trigger::default(),
                force: Trigger::default(),
                stopped: CancellationToken::new(),
                #[cfg(feature = "systemd")]
                handovers: tx,
            },
            HandleEnds {
                #[cfg(feature = "systemd")]
                handovers: rx,
            },
        )
    }

    /// Hands the listening socket (and the path's lock) to `successor`, a new process, and
    /// once it says it is ready, stops accepting and drains: a seamless restart (see
    /// [`handover`](crate::handover)). Returns the successor's process id once it is ready;
    /// [`Server::serve`] then returns when the connections it had are done, leaving the socket
    /// file to the successor.
    ///
    /// # Errors
    ///
    /// [`HandoverError`](crate::handover::HandoverError): another handover under way, the
    /// server not serving, or a successor that could not start, exited, or was not ready in
    /// time (it is killed). The server goes on serving.
    #[cfg(feature = "systemd")]
    pub async fn hand_over(
        &self,
        successor: crate::handover::Successor,
    ) -> Result<u32, crate::handover::HandoverError> {
        use crate::handover::HandoverError;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        if self.shutdown.is_fired() {
            return Err(HandoverError::NotServing);
        }
        match self.handovers.try_send((successor, reply)) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                return Err(HandoverError::InProgress);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err(HandoverError::NotServing);
            }
        }
        outcome.await.unwrap_or(Err(HandoverError::NotServing))
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
    /// `@name` is a name in the abstract namespace (no file is created), and `unix:PATH` and
    /// `unix:@NAME` mean the same.
    ///
    /// # Errors
    ///
    /// As [`Builder::bind`](crate::Builder::bind).
    pub fn bind(mut config: ServerConfig, handler: H) -> Result<Self, ServerError> {
        let address = localipc_core::Address::parse(&config.socket_path)?;
        let Some(local) = address.local_path() else {
            return Err(ServerError::NotLocal {
                address: address.to_string(),
            });
        };
        config.socket_path = local;
        match address {
            localipc_core::Address::Abstract(name) => Self::bind_abstract(&name, config, handler),
            _ => Self::bind_path(config, handler),
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
        let (handle, ends) = ShutdownHandle::new();
        Ok(Self {
            // As the kernel recorded it (an absolute path, even for a relative `socket_path`).
            address: ListenAddress::of(&listener),
            listener,
            socket_file: Some(file),
            handler: Arc::new(handler),
            config: Arc::new(config),
            handle,
            inherited: false,
            ends,
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
        let (handle, ends) = ShutdownHandle::new();
        Ok(Self {
            address: ListenAddress::Abstract(name.to_owned()),
            listener,
            socket_file: None,
            handler: Arc::new(handler),
            config: Arc::new(config),
            handle,
            inherited: false,
            ends,
        })
    }

    /// Serves a socket bound elsewhere; its file is never removed, unless the path's `lock`
    /// came with it: then the file is this server's.
    pub(crate) fn adopt(
        listener: std::os::unix::net::UnixListener,
        lock: Option<std::fs::File>,
        config: ServerConfig,
        handler: H,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        // A descriptor that is not a Unix socket fails here rather than at the first accept.
        listener
            .local_addr()
            .map_err(|e| ServerError::io("use the inherited socket for", &config.socket_path, e))?;
        let address = ListenAddress::of(&listener);
        let socket_file = match (lock, address.as_path()) {
            (Some(lock), Some(path)) => Some(SocketFile::adopt(path.to_owned(), lock)?),
            _ => None,
        };
        let (handle, ends) = ShutdownHandle::new();
        Ok(Self {
            // With the path taken over, its backlog is this server's too.
            inherited: socket_file.is_none(),
            address,
            listener,
            socket_file,
            handler: Arc::new(handler),
            config: Arc::new(config),
            handle,
            ends,
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
            mut socket_file,
            handler,
            config,
            handle,
            inherited,
            ends,
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
        // Under systemd with a file descriptor store, the socket and its lock are kept there, so
        // a restart of the service keeps them: then, as after a handover, the socket file and
        // the backlog are left to the next instance.
        #[cfg(feature = "systemd")]
        let stored = match &socket_file {
            Some(file) if crate::activation::fd_store_available() => {
                match crate::activation::store_fds(&listener, file.lock()) {
                    Ok(()) => {
                        info!("the socket is kept in systemd's file descriptor store");
                        true
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot store the socket in systemd's file descriptor store");
                        false
                    }
                }
            }
            _ => false,
        };
        #[cfg(not(feature = "systemd"))]
        let stored = false;
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
        #[cfg(feature = "systemd")]
        let handed_over = accept_until_stop(
            &mut accept_loop,
            shutdown,
            &handle,
            ends.handovers,
            socket_file.as_ref(),
        )
        .await
        .map_err(|e| ServerError::io("hand over", &name, e))?;
        #[cfg(not(feature = "systemd"))]
        let handed_over = {
            let HandleEnds {} = ends;
            tokio::select! {
                () = accept_loop.run() => unreachable!("the accept loop only ends when dropped"),
                () = shutdown => info!("shutdown requested"),
                () = handle.shutdown.fired() => info!("shutdown requested"),
            }
            false
        };
        // Stop accepting new connections and take the name away first (unless a successor
        // took it over); sessions answer what has arrived, then close.
        handle.shutdown.fire();
        let handed_over = handed_over || stored;
        match socket_file.take() {
            Some(file) if handed_over => file.release(),
            file => drop(file),
        }
        let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
        if !inherited && !handed_over {
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

/// Accepts until a stop is asked for (`shutdown`, or the handle), or a handover asked for
/// through the handle is done: then returns whether the socket was handed over. While a
/// successor starts, accepting goes on.
///
/// # Errors
///
/// The listening socket cannot be copied for a successor.
#[cfg(feature = "systemd")]
async fn accept_until_stop<H: Handler>(
    accept_loop: &mut Listener<H>,
    shutdown: impl Future<Output = ()>,
    handle: &ShutdownHandle,
    mut requests: tokio::sync::mpsc::Receiver<crate::handover::Request>,
    socket_file: Option<&SocketFile>,
) -> std::io::Result<bool> {
    use crate::handover::{self, HandoverError};
    use std::os::fd::AsFd;
    // A copy of the listening socket for successors (the accept loop holds the original).
    let listener = accept_loop.listener.get_ref().try_clone()?;
    let mut launching = None;
    tokio::pin!(shutdown);
    loop {
        let ready = async {
            match &mut launching {
                Some((launch, _)) => handover::Launch::ready(launch).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = accept_loop.run() => unreachable!("the accept loop only ends when dropped"),
            () = &mut shutdown => {
                info!("shutdown requested");
                return Ok(false);
            }
            () = handle.shutdown.fired() => {
                info!("shutdown requested");
                return Ok(false);
            }
            Some((successor, reply)) = requests.recv() => {
                if launching.is_some() {
                    let _ = reply.send(Err(HandoverError::InProgress));
                    continue;
                }
                let lock = socket_file.map(SocketFile::lock);
                match handover::launch(&successor, listener.as_fd(), lock) {
                    Ok(launch) => launching = Some((launch, reply)),
                    Err(e) => {
                        warn!(error = %e, "handover failed; serving on");
                        let _ = reply.send(Err(e));
                    }
                }
            }
            result = ready => {
                let Some((launch, reply)) = launching.take() else { continue };
                match result {
                    Ok(pid) => {
                        info!(successor = pid, "the successor is ready: handing over");
                        drop(launch);
                        let _ = reply.send(Ok(pid));
                        return Ok(true);
                    }
                    Err(e) => {
                        warn!(error = %e, "handover failed; serving on");
                        drop(launch);
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }
}

/// `localipc_core::handlers::Echo` -> `Echo`, for the start-up log line.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
