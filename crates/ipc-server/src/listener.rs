//! The accept loop: owns the listening socket, the connection cap, the shutdown
//! tokens and the task tracker, and starts one [`Session`] task per admitted connection.
//!
//! A Unix connection's peer is known at `accept` (the kernel's credentials). A TCP one's is
//! known once its TLS handshake is done, in the connection's own task: the handshake holds
//! the connection's slot, for at most the handshake timeout, and ends at a stop.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use localipc_core::{Context, Handler, Peer};
use std::os::unix::net::{UnixListener, UnixStream};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::ServerConfig;
use crate::conn::Connection;
use crate::limit::{ConnectionLimit, PeerKey, Slot, UidLimit, UidSlot};
use crate::session::Session;
use crate::tls::TlsConnection;
use crate::transport::Transport;
use localipc_core::Trigger;

/// A listening socket, registered with the runtime.
pub(crate) enum Socket {
    /// A Unix socket.
    Unix(AsyncFd<UnixListener>),
    /// A TCP socket, served with TLS with this configuration, or plain without.
    Tcp(AsyncFd<TcpListener>, Option<Arc<rustls::ServerConfig>>),
}

impl Socket {
    /// The listening socket's descriptor, of either kind.
    #[cfg(feature = "systemd")]
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Socket::Unix(fd) => fd.get_ref().as_fd(),
            Socket::Tcp(fd, _) => fd.get_ref().as_fd(),
        }
    }
}

/// How long to pause accepting after running out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Listener<H> {
    /// The listening socket (non-blocking), registered for read readiness.
    pub(crate) listener: Socket,
    pub(crate) handler: Arc<H>,
    pub(crate) config: Arc<ServerConfig>,
    /// One slot per open connection, taken before `accept`.
    pub(crate) limit: Arc<ConnectionLimit>,
    /// One slot per open connection of a uid, taken once the peer is known (none when the
    /// per-uid cap is no lower than the global one).
    pub(crate) uids: Option<Arc<UidLimit>>,
    /// Graceful shutdown: sessions finish the requests already read, then close.
    pub(crate) shutdown: Trigger,
    /// Forced shutdown: sessions are dropped where they stand.
    pub(crate) force: Trigger,
    pub(crate) tracker: TaskTracker,
    /// The last connection id given, shared by the accept loops of every address.
    pub(crate) next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl<H: Handler> Listener<H> {
    /// Accepts connections until the future is dropped. Never returns: accept errors are logged
    /// and survived.
    pub(crate) async fn run(&mut self) {
        loop {
            let slot = match self.limit.try_acquire() {
                Some(slot) => slot,
                None => self.wait_for_a_slot().await,
            };
            let accepted = self.accept().await;
            self.admit(slot, accepted);
        }
    }

    /// Waits for a connection to close while every slot is taken, and logs the start and the
    /// end of the wait (once each: new connections wait in the backlog meanwhile).
    async fn wait_for_a_slot(&self) -> Slot {
        let since = std::time::Instant::now();
        self.config.counters.count_connection_cap_reached();
        warn!(
            max_connections = self.config.max_connections,
            "every connection slot is taken; new connections wait until one closes"
        );
        let slot = self.limit.acquire().await;
        info!(waited = ?since.elapsed(), "a connection slot is free again");
        slot
    }

    /// At a graceful stop of a server that owns its listening socket: accepts the connections
    /// already waiting in the socket's backlog (as slots free up), so that their requests are
    /// answered instead of reset when the socket closes. Their sessions see the stop at once:
    /// they answer what the client has sent, then close. Returns when the backlog is empty.
    ///
    /// A server on an inherited (socket-activated) socket does not call this: the socket, and
    /// the connections waiting on it, stay with systemd for the next instance.
    pub(crate) async fn admit_backlog(&mut self) {
        let mut admitted = 0u64;
        loop {
            let slot = self.limit.acquire().await;
            match self.accept_now() {
                Ok(stream) => {
                    admitted += 1;
                    self.admit(slot, stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    warn!(error = %e, "cannot accept the connections waiting at shutdown");
                    break;
                }
            }
        }
        if admitted > 0 {
            info!(
                connections = admitted,
                "answering connections that were waiting to be accepted"
            );
        }
    }

    /// Starts the session of an accepted connection, which holds `slot` until it ends; a
    /// connection that cannot be registered, or whose peer is not admitted, is closed.
    fn admit(&mut self, slot: Slot, accepted: OwnedFd) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let tls = match &self.listener {
            Socket::Unix(_) => return self.admit_local(id, slot, UnixStream::from(accepted)),
            Socket::Tcp(_, tls) => tls.clone(),
        };
        let stream = TcpStream::from(accepted);
        let address = match stream.peer_addr() {
            Ok(address) => address,
            Err(e) => {
                debug!(conn = id, error = %e, "the connection ended before it was admitted");
                return;
            }
        };
        // Replies go as soon as they are written: the session already coalesces them.
        let _ = stream.set_nodelay(true);
        let conn = match Connection::new(stream) {
            Ok(conn) => conn,
            Err(e) => {
                warn!(conn = id, error = %e, "cannot register the connection; closing");
                return;
            }
        };
        let uids = self.uids.clone();
        let start = self.starter();
        let (force, timeout) = (self.force.clone(), self.config.handshake_timeout);
        let task = async move {
            let Some(tls) = tls else {
                let peer = Peer::Anonymous { address };
                if let Some(share) = admit_peer(&start.config, uids.as_ref(), id, &peer) {
                    start.run(id, conn, peer, (share, slot)).await;
                }
                return;
            };
            let tls = match rustls::ServerConnection::new(tls) {
                Ok(tls) => tls,
                Err(e) => {
                    warn!(error = %e, "cannot start TLS; closing");
                    return;
                }
            };
            let mut conn = TlsConnection::new(conn, tls);
            // The handshake holds the connection's slot, for the timeout at most. A graceful
            // stop lets it finish (its client is about to send a request, which the session
            // then waits for briefly, as for any connection that has just come); a forced one
            // drops it.
            let handshake = tokio::select! {
                done = tokio::time::timeout(timeout, conn.handshake()) => done,
                () = force.fired() => return,
            };
            match handshake {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    info!(%address, error = %e, "TLS handshake failed; closing");
                    start.config.counters.count_refused_allow_list();
                    return;
                }
                Err(_) => {
                    info!(%address, ?timeout, "TLS handshake not done in time; closing");
                    return;
                }
            }
            let peer = crate::tls::peer_of(conn.tls(), address);
            if let Some(share) = admit_peer(&start.config, uids.as_ref(), id, &peer) {
                start.run(id, conn, peer, (share, slot)).await;
            }
        };
        self.spawn(id, task);
    }

    /// Admits a local connection: its peer is known at once.
    fn admit_local(&mut self, id: u64, slot: Slot, stream: UnixStream) {
        let conn = match Connection::new(stream) {
            Ok(conn) if self.config.accept_fds => conn.accept_fds(self.config.max_fds_per_message),
            Ok(conn) => conn,
            Err(e) => {
                warn!(conn = id, error = %e, "cannot register the connection; closing");
                return;
            }
        };
        let peer = match conn.peer_credentials() {
            Ok(peer) => Peer::Unix(peer),
            Err(e) => {
                warn!(conn = id, error = %e, "cannot read peer credentials; closing");
                return;
            }
        };
        let Some(share) = admit_peer(&self.config, self.uids.as_ref(), id, &peer) else {
            return;
        };
        let session = self.starter().run(id, conn, peer, (share, slot));
        self.spawn(id, session);
    }

    /// What a connection's task needs to start its session.
    fn starter(&self) -> Starter<H> {
        Starter {
            handler: Arc::clone(&self.handler),
            config: Arc::clone(&self.config),
            shutdown: self.shutdown.clone(),
            force: self.force.clone(),
        }
    }

    /// Runs a connection's task in the tracker, its log lines carrying the connection's id.
    fn spawn(&self, id: u64, task: impl Future<Output = ()> + Send + 'static) {
        // The connection's log lines carry its id through this span. A span the log filter
        // turns off would only be entered and left at every poll for nothing.
        let span = info_span!("conn", id);
        if span.is_disabled() {
            self.tracker.spawn(task);
        } else {
            self.tracker.spawn(task.instrument(span));
        }
    }

    /// Accepts one connection waiting now, without waiting.
    fn accept_now(&self) -> io::Result<OwnedFd> {
        match &self.listener {
            Socket::Unix(fd) => accept(fd.get_ref()),
            Socket::Tcp(fd, _) => accept(fd.get_ref()),
        }
    }

    /// Waits for a connection and accepts it.
    async fn accept_one(&self) -> io::Result<OwnedFd> {
        match &self.listener {
            Socket::Unix(fd) => fd.async_io(Interest::READABLE, accept).await,
            Socket::Tcp(fd, _) => fd.async_io(Interest::READABLE, accept).await,
        }
    }

    async fn accept(&mut self) -> OwnedFd {
        // Failed accepts since the last one that worked: the first is logged, the rest are
        // summed up once accepting works again, instead of a warning every pause.
        let mut failed: u64 = 0;
        let mut since: Option<std::time::Instant> = None;
        loop {
            let accepted = self.accept_one().await;
            match accepted {
                Ok(stream) => {
                    if let Some(since) = since {
                        info!(
                            failed_accepts = failed,
                            lasted = ?since.elapsed(),
                            "accepting again"
                        );
                    }
                    return stream;
                }
                Err(e) if is_connection_error(&e) => {
                    debug!(error = %e, "connection failed during accept");
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM and the like: wait for resources to free up
                    // instead of spinning on an accept that keeps failing.
                    if failed == 0 {
                        warn!(
                            error = %e,
                            backoff = ?ACCEPT_BACKOFF,
                            "accept failed; pausing and retrying (logged again when it recovers)"
                        );
                        since = Some(std::time::Instant::now());
                    }
                    failed += 1;
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Whether the peer of connection `id` may be served: checks it against the allow-lists and
/// takes its share's slot under `uids`. `None` (logged and counted) if it is refused;
/// `Some(None)` when there is no per-peer cap.
fn admit_peer(
    config: &ServerConfig,
    uids: Option<&Arc<UidLimit>>,
    id: u64,
    peer: &Peer,
) -> Option<Option<UidSlot>> {
    let local = peer.unix();
    let (uid, gid, pid) = (
        local.map(|c| c.uid),
        local.map(|c| c.gid),
        local.and_then(|c| c.pid),
    );
    if !config.access.admits(peer) {
        warn!(conn = id, uid, gid, pid, %peer, "peer not on the allow-list; closing");
        config.counters.count_refused_allow_list();
        return None;
    }
    let share = match (uids, PeerKey::of(peer)) {
        (Some(uids), Some(key)) => match uids.try_acquire(key) {
            Some(slot) => Some(slot),
            None => {
                debug!(conn = id, %peer, "this peer has its share open; closing");
                config.counters.count_refused_uid_share();
                return None;
            }
        },
        _ => None,
    };
    debug!(conn = id, uid, gid, pid, %peer, "accepted");
    Some(share)
}

/// Starts sessions with a server's handler and settings.
struct Starter<H> {
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    shutdown: Trigger,
    force: Trigger,
}

impl<H: Handler> Starter<H> {
    /// Serves `conn` to its end; the slots are given back then (the peer's first: the global
    /// one wakes the accept loop, whose next connection may be the same peer's).
    fn run<T: Transport + 'static>(
        self,
        id: u64,
        conn: T,
        peer: Peer,
        slots: (Option<UidSlot>, Slot),
    ) -> impl Future<Output = ()> + Send + 'static {
        let session = Session::new(
            conn,
            self.handler,
            Context::new(id, peer),
            self.config,
            self.shutdown,
            self.force,
        );
        // The session's future is about 1 KiB: boxed, it is built in place once, instead of
        // being copied at each layer of the spawn.
        let session = Box::pin(session.run());
        async move {
            let _slots = slots;
            // The session logs how it ended, also when a forced shutdown drops it.
            session.await;
        }
    }
}

/// Accepts a connection, non-blocking and close-on-exec from the start (one system call).
fn accept(listener: &impl AsFd) -> io::Result<OwnedFd> {
    use rustix::net::SocketFlags;
    Ok(rustix::net::accept_with(
        listener,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
    )?)
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
