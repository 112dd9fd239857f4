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
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
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
use crate::listener::{Listener, Socket};
use crate::socket_file::{self, BindOptions, SocketFile};
use localipc_core::Trigger;

/// A bound server, ready to [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server<H> {
    /// The main address's socket, served with `config`.
    main: Bound,
    /// The sockets of [`ServerConfig::also_listen`], each with its own settings.
    extra: Vec<(Bound, Arc<ServerConfig>)>,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    handle: ShutdownHandle,
    /// What the handle asks of the server beyond a stop (handovers).
    ends: HandleEnds,
}

/// A listening socket the server serves: where it is, and the socket file it owns there.
#[derive(Debug)]
struct Bound {
    listener: Listening,
    address: ListenAddress,
    socket_file: Option<SocketFile>,
    /// The socket was passed in without its path (socket activation): its backlog is not
    /// ours.
    inherited: bool,
}

/// A listening socket of either kind.
#[derive(Debug)]
enum Listening {
    Unix(UnixListener),
    /// A TCP socket, served with TLS with this configuration, or plain without.
    Tcp(TcpListener, Option<Arc<rustls::ServerConfig>>),
}

impl Listening {
    #[cfg(feature = "systemd")]
    fn unix(&self) -> Option<&UnixListener> {
        match self {
            Listening::Unix(l) => Some(l),
            Listening::Tcp(..) => None,
        }
    }
}

impl Bound {
    /// Creates the socket `config` describes: a socket file (whose directory, if it is the
    /// default private one, is created `0700` and checked first), a name in the abstract
    /// namespace, or a TCP port.
    fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        if let Some(target) = localipc_core::Address::parse(&config.socket_path)?.tcp_target() {
            return Self::bind_tcp(config, &target);
        }
        let path = local(&config.socket_path)?;
        if let Some(name) = localipc_core::abstract_name(&path) {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
                .map_err(|e| ServerError::io("bind", &path, e))?;
            let listener = UnixListener::bind_addr(&addr).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    ServerError::InUse { path: path.clone() }
                } else {
                    ServerError::io("bind", &path, e)
                }
            })?;
            return Ok(Self {
                address: ListenAddress::Abstract(name.to_owned()),
                listener: Listening::Unix(listener),
                socket_file: None,
                inherited: false,
            });
        }
        let private_dir = path.parent() == Some(&localipc_core::default_socket_dir());
        let opts = BindOptions {
            mode: config.socket_mode,
            group: config.socket_group,
            private_dir,
        };
        let (listener, file) = socket_file::bind(&path, opts)?;
        Ok(Self {
            // As the kernel recorded it (an absolute path, even for a relative `socket_path`).
            address: ListenAddress::of(&listener),
            listener: Listening::Unix(listener),
            socket_file: Some(file),
            inherited: false,
        })
    }

    /// Binds the TCP port `target` (`HOST:PORT`) names, with TLS unless `config` asks for
    /// plain TCP, which only a loopback address may have.
    fn bind_tcp(config: &ServerConfig, target: &str) -> Result<Self, ServerError> {
        use std::net::ToSocketAddrs;
        let name = &config.socket_path;
        let address = target
            .to_socket_addrs()
            .map_err(|e| ServerError::io("resolve", name, e))?
            .next()
            .ok_or_else(|| ServerError::io("resolve", name, std::io::ErrorKind::NotFound.into()))?;
        let tls = tcp_security(config, address)?;
        let listener = TcpListener::bind(address).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ServerError::InUse { path: name.clone() }
            } else {
                ServerError::io("bind", name, e)
            }
        })?;
        Self::tcp(listener, tls, config)
    }

    /// Serves a TCP socket passed in (by a predecessor, or systemd) at `config`'s `tcp:`
    /// address, with TLS as `config` says (its certificate files read now).
    fn adopt_tcp(listener: TcpListener, config: &ServerConfig) -> Result<Self, ServerError> {
        let name = &config.socket_path;
        let local = listener
            .local_addr()
            .map_err(|e| ServerError::io("use the inherited socket for", name, e))?;
        let tls = tcp_security(config, local)?;
        Self::tcp(listener, tls, config)
    }

    fn tcp(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        config: &ServerConfig,
    ) -> Result<Self, ServerError> {
        let local = listener
            .local_addr()
            .map_err(|e| ServerError::io("listen on", &config.socket_path, e))?;
        Ok(Self {
            address: ListenAddress::Tcp {
                address: local,
                tls: tls.is_some(),
            },
            listener: Listening::Tcp(listener, tls),
            socket_file: None,
            inherited: false,
        })
    }

    /// Serves a socket bound elsewhere; its file is never removed, unless the path's `lock`
    /// came with it: then the file is this server's.
    fn adopt(
        listener: UnixListener,
        lock: Option<std::fs::File>,
        config: &ServerConfig,
    ) -> Result<Self, ServerError> {
        // A descriptor that is not a Unix socket fails here rather than at the first accept.
        listener
            .local_addr()
            .map_err(|e| ServerError::io("use the inherited socket for", &config.socket_path, e))?;
        let address = ListenAddress::of(&listener);
        let socket_file = match (lock, address.as_path()) {
            (Some(lock), Some(path)) => Some(SocketFile::adopt(path.to_owned(), lock)?),
            _ => None,
        };
        Ok(Self {
            // With the path taken over, its backlog is this server's too.
            inherited: socket_file.is_none(),
            address,
            listener: Listening::Unix(listener),
            socket_file,
        })
    }
}

/// What a TCP address is served with: TLS as `config` gives it, or nothing where plain TCP
/// is asked for, which only a loopback address may have.
fn tcp_security(
    config: &ServerConfig,
    address: std::net::SocketAddr,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    let name = &config.socket_path;
    if config.plain_tcp {
        if !address.ip().is_loopback() {
            return Err(ServerError::InvalidConfig(format!(
                "{}: plain TCP is only served on a loopback address; give this one TLS \
                 (--tls-cert, --tls-key, --tls-client-ca)",
                name.display()
            )));
        }
        return Ok(None);
    }
    let Some(settings) = &config.tls else {
        return Err(ServerError::InvalidConfig(format!(
            "{} needs TLS: --tls-cert, --tls-key and --tls-client-ca (or, on a loopback \
             address only, --plain-tcp)",
            name.display()
        )));
    };
    Ok(Some(settings.load()?))
}

/// The local socket an address names (`unix:` taken off).
fn local(address: &Path) -> Result<PathBuf, ServerError> {
    let address = localipc_core::Address::parse(address)?;
    address.local_path().ok_or_else(|| ServerError::NotLocal {
        address: address.to_string(),
    })
}

/// Which of the sockets `passed` in serves the main address of `config`: the one bound to it,
/// or else the first bound to no endpoint's address; `None` if every one is an endpoint's.
pub(crate) fn pick_main(
    passed: &[(UnixListener, Option<std::fs::File>)],
    config: &ServerConfig,
) -> Option<usize> {
    let main_is_tcp = tcp_target(&config.socket_path).is_some();
    passed
        .iter()
        .position(|(l, _)| same_address(l, &config.socket_path))
        .or_else(|| {
            passed.iter().position(|(l, _)| {
                !main_is_tcp
                    && !config
                        .also_listen
                        .iter()
                        .any(|e| same_address(l, &e.address))
            })
        })
}

/// `HOST:PORT` of a `tcp:` address; `None` for any other.
fn tcp_target(address: &Path) -> Option<String> {
    localipc_core::Address::parse(address).ok()?.tcp_target()
}

/// Whether the TCP `listener` serves the `tcp:` address `wanted`: bound to one of the
/// addresses its host resolves to, at its port (any port, for port 0).
fn same_tcp_address(listener: &TcpListener, wanted: &Path) -> bool {
    use std::net::ToSocketAddrs;
    let (Some(target), Ok(bound)) = (tcp_target(wanted), listener.local_addr()) else {
        return false;
    };
    target.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| a.ip() == bound.ip() && (a.port() == bound.port() || a.port() == 0))
    })
}

/// Whether `listener` is bound to the address `wanted`.
fn same_address(listener: &UnixListener, wanted: &Path) -> bool {
    let Ok(wanted) = local(wanted) else {
        return false;
    };
    match (
        localipc_core::abstract_name(&wanted),
        ListenAddress::of(listener),
    ) {
        (Some(name), ListenAddress::Abstract(bound)) => name == bound.as_slice(),
        (None, ListenAddress::Path(bound)) => {
            // Both name a socket file that exists: the same file, whatever the spelling.
            let real = |p: &Path| std::fs::canonicalize(p).or_else(|_| std::path::absolute(p));
            matches!((real(&wanted), real(&bound)), (Ok(a), Ok(b)) if a == b)
        }
        _ => false,
    }
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
    /// `unix:@NAME` mean the same. The addresses of
    /// [`also_listen`](ServerConfig::also_listen) are bound too.
    ///
    /// # Errors
    ///
    /// As [`Builder::bind`](crate::Builder::bind).
    pub fn bind(config: ServerConfig, handler: H) -> Result<Self, ServerError> {
        Self::adopt(None, config, handler, Vec::new(), Vec::new())
    }

    /// Serves `main`, a socket bound elsewhere (its file is never removed, unless the path's
    /// lock came with it: then the file is this server's), or binds `config.socket_path` if
    /// there is none; then the addresses of [`ServerConfig::also_listen`], each served by the
    /// socket of `passed` (Unix) or `passed_tcp` at its address if there is one (inherited
    /// from a predecessor or systemd), else bound here.
    pub(crate) fn adopt(
        main: Option<(UnixListener, Option<std::fs::File>)>,
        mut config: ServerConfig,
        handler: H,
        mut passed: Vec<(UnixListener, Option<std::fs::File>)>,
        mut passed_tcp: Vec<TcpListener>,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let mut take_tcp = |wanted: &Path| {
            passed_tcp
                .iter()
                .position(|listener| same_tcp_address(listener, wanted))
                .map(|i| passed_tcp.remove(i))
        };
        let main = match main {
            Some((listener, lock)) => Bound::adopt(listener, lock, &config)?,
            None if tcp_target(&config.socket_path).is_some() => {
                match take_tcp(&config.socket_path) {
                    Some(listener) => Bound::adopt_tcp(listener, &config)?,
                    None => Bound::bind(&config)?,
                }
            }
            None => {
                // `unix:PATH` is PATH from here on.
                config.socket_path = local(&config.socket_path)?;
                Bound::bind(&config)?
            }
        };
        let mut extra = Vec::with_capacity(config.also_listen.len());
        for endpoint in &config.also_listen {
            let endpoint_config = endpoint.config(&config);
            let bound = if tcp_target(&endpoint_config.socket_path).is_some() {
                match take_tcp(&endpoint_config.socket_path) {
                    Some(listener) => Bound::adopt_tcp(listener, &endpoint_config)?,
                    None => Bound::bind(&endpoint_config)?,
                }
            } else {
                let inherited = passed
                    .iter()
                    .position(|(listener, _)| same_address(listener, &endpoint_config.socket_path))
                    .map(|i| passed.swap_remove(i));
                match inherited {
                    Some((listener, lock)) => Bound::adopt(listener, lock, &endpoint_config)?,
                    None => Bound::bind(&endpoint_config)?,
                }
            };
            extra.push((bound, Arc::new(endpoint_config)));
        }
        for listener in passed_tcp {
            let address = listener.local_addr().ok();
            info!(
                ?address,
                "a TCP socket passed in is not one of this server's addresses; closing it"
            );
        }
        for (listener, lock) in passed {
            let address = ListenAddress::of(&listener);
            match lock {
                // A predecessor's address that this server no longer has: its file goes.
                Some(lock) => {
                    info!(%address, "a socket passed in is not one of this server's addresses; removing it");
                    drop(Bound::adopt(listener, Some(lock), &config)?);
                }
                None => {
                    return Err(ServerError::InvalidConfig(format!(
                        "a socket passed in ({address}) is not one of this server's addresses \
                         (--socket, --also-socket)"
                    )));
                }
            }
        }
        let (handle, ends) = ShutdownHandle::new();
        Ok(Self {
            main,
            extra,
            handler: Arc::new(handler),
            config: Arc::new(config),
            handle,
            ends,
        })
    }

    /// The socket file clients connect to; `None` when the server listens on an abstract name
    /// or an unnamed inherited socket (see [`address`](Self::address)).
    pub fn path(&self) -> Option<&Path> {
        self.main.address.as_path()
    }

    /// What the server really listens on: a path, an abstract name, or an unnamed socket.
    pub fn address(&self) -> &ListenAddress {
        &self.main.address
    }

    /// Every address the server listens on: the main one first, then those of
    /// [`ServerConfig::also_listen`], in their order.
    pub fn addresses(&self) -> impl Iterator<Item = &ListenAddress> {
        std::iter::once(&self.main.address).chain(self.extra.iter().map(|(b, _)| &b.address))
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
            main,
            extra,
            handler,
            config,
            handle,
            ends,
        } = self;
        let _stopped = handle.stopped.clone().drop_guard();
        let endpoints: Vec<(Bound, Arc<ServerConfig>)> =
            std::iter::once((main, Arc::clone(&config)))
                .chain(extra)
                .collect();
        // Whether the kernel refuses descriptors is the same for every socket.
        let mut kernel_refuses = false;
        for (bound, _) in &endpoints {
            let name = PathBuf::from(bound.address.to_string());
            let configured = match &bound.listener {
                Listening::Unix(l) => l.set_nonblocking(true).and_then(|()| {
                    kernel_refuses = crate::conn::pass_rights(l, config.accept_fds)?;
                    Ok(())
                }),
                Listening::Tcp(l, _) => l.set_nonblocking(true),
            };
            configured.map_err(|e| ServerError::io("configure", &name, e))?;
        }
        match kernel_refuses {
            _ if config.accept_fds => debug!(
                max_per_message = config.max_fds_per_message,
                "file descriptors are accepted with requests"
            ),
            true => debug!("file descriptors sent to this socket are refused by the kernel"),
            false => debug!(
                "this kernel cannot refuse file descriptors (SO_PASSRIGHTS needs Linux 6.16); \
                 any sent are dropped unread"
            ),
        }
        // Under systemd with a file descriptor store, the sockets and their locks are kept
        // there, so a restart of the service keeps them: then, as after a handover, the socket
        // files and the backlogs are left to the next instance.
        #[cfg(feature = "systemd")]
        let stored = store_sockets(&endpoints);
        #[cfg(not(feature = "systemd"))]
        let stored = false;
        let tracker = TaskTracker::new();
        let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut loops = Vec::with_capacity(endpoints.len());
        let mut files = Vec::with_capacity(endpoints.len());
        let mut inherited = Vec::with_capacity(endpoints.len());
        for (i, (bound, endpoint_config)) in endpoints.into_iter().enumerate() {
            let name = PathBuf::from(bound.address.to_string());
            let readable = tokio::io::Interest::READABLE;
            let listener = match bound.listener {
                Listening::Unix(l) => crate::conn::register(l, readable).map(Socket::Unix),
                Listening::Tcp(l, tls) => {
                    crate::conn::register(l, readable).map(|l| Socket::Tcp(l, tls))
                }
            }
            .map_err(|e| ServerError::io("listen on", &name, e))?;
            let c = &endpoint_config;
            if i == 0 {
                info!(
                    address = %bound.address,
                    handler = short_type_name::<H>(),
                    framing = %c.framing,
                    max_frame = c.max_frame,
                    max_connections = c.max_connections,
                    max_connections_per_uid = c.connections_per_uid(),
                    unfinished_budget = c.unfinished_budget,
                    concurrency = c.concurrency,
                    // Seconds, as numbers; a timeout that is off is left out.
                    idle_timeout_secs = c.idle_timeout.map(|t| t.as_secs_f64()),
                    request_timeout_secs = c.request_timeout.map(|t| t.as_secs_f64()),
                    shutdown_timeout_secs = c.shutdown_timeout.as_secs_f64(),
                    "listening"
                );
            } else {
                info!(
                    address = %bound.address,
                    max_connections = c.max_connections,
                    max_connections_per_uid = c.connections_per_uid(),
                    allow_listed = c.access.is_restricted(),
                    "listening also"
                );
            }
            loops.push(Listener {
                listener,
                handler: Arc::clone(&handler),
                limit: ConnectionLimit::new(c.max_connections),
                uids: UidLimit::new(c.connections_per_uid(), c.max_connections),
                config: endpoint_config,
                shutdown: handle.shutdown.clone(),
                force: handle.force.clone(),
                tracker: tracker.clone(),
                next_id: Arc::clone(&next_id),
            });
            files.push(bound.socket_file);
            inherited.push(bound.inherited);
        }
        #[cfg(feature = "systemd")]
        let handed_over = accept_until_stop(&mut loops, shutdown, &handle, ends.handovers, &files)
            .await
            .map_err(|e| ServerError::io("hand over", &config.socket_path, e))?;
        #[cfg(not(feature = "systemd"))]
        let handed_over = {
            let HandleEnds {} = ends;
            tokio::select! {
                () = accept_all(&mut loops) => unreachable!("the accept loops only end when dropped"),
                () = shutdown => info!("shutdown requested"),
                () = handle.shutdown.fired() => info!("shutdown requested"),
            }
            false
        };
        // Stop accepting new connections and take the names away first (unless a successor
        // took them over); sessions answer what has arrived, then close.
        handle.shutdown.fire();
        let handed_over = handed_over || stored;
        for file in files {
            match file {
                Some(file) if handed_over => file.release(),
                file => drop(file),
            }
        }
        let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
        if !handed_over {
            // Connections already waiting in a backlog reached the socket before the stop:
            // they are answered too, not reset when it closes.
            for (accept_loop, inherited) in loops.iter_mut().zip(inherited) {
                if inherited {
                    continue;
                }
                tokio::select! {
                    () = accept_loop.admit_backlog() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = handle.force.fired() => {}
                }
            }
        }
        drop(loops);
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

/// Runs every accept loop; never returns.
async fn accept_all<H: Handler>(loops: &mut [Listener<H>]) {
    match loops {
        // The usual server: one loop, polled as it is.
        [one] => one.run().await,
        many => {
            futures::future::join_all(many.iter_mut().map(Listener::run)).await;
        }
    }
}

/// Keeps the sockets that have a file of this server's, and their locks, in systemd's file
/// descriptor store, if the service has one with room for them all. Returns whether it did.
#[cfg(feature = "systemd")]
fn store_sockets(endpoints: &[(Bound, Arc<ServerConfig>)]) -> bool {
    let owned: Vec<_> = endpoints
        .iter()
        .filter_map(|(b, _)| Some((b.listener.unix()?, b.socket_file.as_ref()?)))
        .collect();
    if owned.is_empty() || !crate::activation::fd_store_available() {
        return false;
    }
    let room = crate::activation::fd_store_room();
    if room < 2 * owned.len() {
        warn!(
            sockets = owned.len(),
            room,
            "the file descriptor store has no room for every socket and its lock \
             (FileDescriptorStoreMax= needs twice the number of addresses); not using it"
        );
        return false;
    }
    for (listener, file) in owned {
        if let Err(e) = crate::activation::store_fds(listener, file.lock()) {
            warn!(error = %e, "cannot store the socket in systemd's file descriptor store");
            return false;
        }
    }
    info!("the sockets are kept in systemd's file descriptor store");
    true
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
    loops: &mut [Listener<H>],
    shutdown: impl Future<Output = ()>,
    handle: &ShutdownHandle,
    mut requests: tokio::sync::mpsc::Receiver<crate::handover::Request>,
    socket_files: &[Option<SocketFile>],
) -> std::io::Result<bool> {
    use crate::handover::{self, HandoverError};
    use std::os::fd::AsFd;
    // A copy of each listening socket for successors (the accept loops hold the originals).
    let listeners = loops
        .iter()
        .map(|l| l.listener.fd().try_clone_to_owned())
        .collect::<std::io::Result<Vec<_>>>()?;
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
            () = accept_all(loops) => unreachable!("the accept loops only end when dropped"),
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
                let sockets: Vec<_> = listeners
                    .iter()
                    .zip(socket_files)
                    .map(|(l, file)| (l.as_fd(), file.as_ref().map(SocketFile::lock)))
                    .collect();
                match handover::launch(&successor, &sockets) {
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
