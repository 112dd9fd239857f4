//! The accept loop: owns the listening socket, the connection cap, the shutdown
//! tokens and the task tracker, and starts one [`Session`] task per admitted connection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use localipc_core::{Context, Handler};
use std::os::unix::net::{UnixListener, UnixStream};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::ServerConfig;
use crate::conn::Connection;
use crate::limit::{ConnectionLimit, Slot, UidLimit};
use crate::session::Session;
use localipc_core::Trigger;

/// How long to pause accepting after running out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Listener<H> {
    /// The listening socket (non-blocking), registered for read readiness.
    pub(crate) listener: AsyncFd<UnixListener>,
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
            let stream = self.accept().await;
            self.admit(slot, stream);
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
            match accept(self.listener.get_ref()) {
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
    fn admit(&mut self, slot: Slot, stream: UnixStream) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let conn = match Connection::new(stream) {
            Ok(conn) if self.config.accept_fds => conn.accept_fds(self.config.max_fds_per_message),
            Ok(conn) => conn,
            Err(e) => {
                warn!(conn = id, error = %e, "cannot register the connection; closing");
                return;
            }
        };
        let peer = match conn.peer_credentials() {
            Ok(peer) => peer,
            Err(e) => {
                warn!(conn = id, error = %e, "cannot read peer credentials; closing");
                return;
            }
        };
        if !self.config.access.admits(&peer) {
            warn!(
                conn = id,
                uid = peer.uid,
                gid = peer.gid,
                pid = peer.pid,
                "peer not on the allow-list; closing"
            );
            self.config.counters.count_refused_allow_list();
            return;
        }
        let uid_slot = match &self.uids {
            Some(uids) => match uids.try_acquire(peer.uid) {
                Some(slot) => Some(slot),
                None => {
                    debug!(
                        conn = id,
                        uid = peer.uid,
                        "this uid has its share open; closing"
                    );
                    self.config.counters.count_refused_uid_share();
                    return;
                }
            },
            None => None,
        };
        debug!(
            conn = id,
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid,
            "accepted"
        );
        let session = Session::new(
            conn,
            Arc::clone(&self.handler),
            Context::new(id, peer),
            Arc::clone(&self.config),
            self.shutdown.clone(),
            self.force.clone(),
        );
        // The session's future is about 1 KiB: boxed, it is built in place once, instead of
        // being copied at each layer of the spawn.
        let session = Box::pin(session.run());
        let task = async move {
            // The uid's slot goes back first: the global one wakes the accept loop, whose next
            // connection may be of the same uid.
            let _slots = (uid_slot, slot);
            // The session logs how it ended, also when a forced shutdown drops it.
            session.await;
        };
        // The connection's log lines carry its id through this span. A span the log filter
        // turns off would only be entered and left at every poll for nothing.
        let span = info_span!("conn", id);
        if span.is_disabled() {
            self.tracker.spawn(task);
        } else {
            self.tracker.spawn(task.instrument(span));
        }
    }

    async fn accept(&mut self) -> UnixStream {
        // Failed accepts since the last one that worked: the first is logged, the rest are
        // summed up once accepting works again, instead of a warning every pause.
        let mut failed: u64 = 0;
        let mut since: Option<std::time::Instant> = None;
        loop {
            let accepted = self.listener.async_io(Interest::READABLE, accept).await;
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

/// Accepts a connection, non-blocking and close-on-exec from the start (one system call).
fn accept(listener: &UnixListener) -> io::Result<UnixStream> {
    use rustix::net::SocketFlags;
    let fd = rustix::net::accept_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    Ok(UnixStream::from(fd))
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
