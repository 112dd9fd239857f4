//! systemd integration: socket activation (serve the listening socket systemd passes as fd 3),
//! readiness notification (`READY=1`, `STOPPING=1` to `$NOTIFY_SOCKET`), and the file
//! descriptor store (`FDSTORE=1`), which keeps the listening socket across a restart.
//!
//! All are no-ops outside systemd: with no `LISTEN_PID`/`LISTEN_FDS` there is no inherited
//! socket, and with no `NOTIFY_SOCKET` nothing is sent.
//!
//! A server that hands its socket to a successor ([`crate::handover`]) passes it the same way,
//! so a successor starts through this same path: [`inherited`] takes what was passed, which
//! is then also the path's lock, named [`LOCK_FD_NAME`] (the successor then owns the socket
//! file, and removes it at its end).

use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::sys::socket::{SockType, UnixAddr, getsockname, getsockopt, sockopt};
use tracing::debug;

use crate::error::ServerError;

/// The name of the listening socket among the descriptors this project passes (to a
/// successor, and to systemd's file descriptor store).
pub const LISTENER_FD_NAME: &str = "localipc-listener";
/// The name of the path's lock file among the descriptors a predecessor passes.
pub const LOCK_FD_NAME: &str = "localipc-lock";

/// What this process inherited to serve: listening sockets, and with a Unix one, from a server
/// that handed its path over (or from systemd's file descriptor store), the path's lock, which
/// makes the socket file this server's (see [`Builder::inherited`](crate::Builder::inherited)).
/// TCP sockets come from a predecessor with `tcp:` addresses, or from systemd
/// (`ListenStream=PORT`).
#[derive(Debug)]
pub struct Inherited {
    /// The Unix sockets passed, in order, each with its path's lock if that came too.
    pub(crate) unix: Vec<(UnixListener, Option<std::fs::File>)>,
    /// The TCP sockets passed, in order.
    pub(crate) tcp: Vec<TcpListener>,
}

impl Inherited {
    /// The first Unix listening socket passed, if any.
    pub fn listener(&self) -> Option<&UnixListener> {
        self.unix.first().map(|(listener, _)| listener)
    }

    /// Whether the first Unix socket's path lock came with it: the socket file is then this
    /// server's.
    pub fn owns_path(&self) -> bool {
        self.unix.first().is_some_and(|(_, lock)| lock.is_some())
    }

    /// The first Unix listening socket alone; everything else passed is closed.
    pub fn into_listener(self) -> Option<UnixListener> {
        self.unix.into_iter().next().map(|(listener, _)| listener)
    }
}

/// Takes what systemd (socket activation, or the file descriptor store) or a predecessor
/// passed, if `LISTEN_PID` is this process and `LISTEN_FDS` is set: the listening sockets (Unix
/// and TCP), and the locks of their paths, named [`LOCK_FD_NAME`]. A lock goes with the socket
/// whose path it locks (`PATH.lock`), or, when one socket and one lock were passed, with that
/// socket. A server matches them to its addresses (see
/// [`Builder::inherited`](crate::Builder::inherited)).
///
/// Returns `Ok(None)` when nothing was passed, or when it was already taken by an earlier
/// call (a descriptor can be owned only once).
///
/// # Errors
///
/// [`ServerError::InvalidConfig`] when a socket passed is not a listening Unix or TCP stream
/// socket, or a lock is not a regular file.
pub fn inherited() -> Result<Option<Inherited>, ServerError> {
    let passed: Vec<_> = sd_notify::listen_fds_with_names()
        .map_err(|e| ServerError::InvalidConfig(format!("bad socket activation variables: {e}")))?
        .collect();
    if passed.is_empty() {
        return Ok(None);
    }
    let raw: Vec<_> = passed.iter().map(|(fd, _)| *fd).collect();
    let Some(owned) = crate::conn::take_inherited(&raw) else {
        return Ok(None);
    };
    let (mut sockets, mut locks, mut tcp) = (Vec::new(), Vec::new(), Vec::new());
    for ((_, name), fd) in passed.into_iter().zip(owned) {
        if name == LOCK_FD_NAME {
            let lock = std::fs::File::from(fd);
            if !lock.metadata().is_ok_and(|m| m.is_file()) {
                return Err(ServerError::InvalidConfig(format!(
                    "a descriptor named {LOCK_FD_NAME} is not a lock file"
                )));
            }
            locks.push(lock);
        } else if check_listener(&fd)? {
            sockets.push(UnixListener::from(fd));
        } else {
            tcp.push(TcpListener::from(fd));
        }
    }
    let paired: Vec<_> = if sockets.len() == 1 && locks.len() == 1 {
        sockets.into_iter().zip(locks.drain(..).map(Some)).collect()
    } else {
        sockets
            .into_iter()
            .map(|socket| {
                let lock = locks
                    .iter()
                    .position(|lock| locks_path_of(lock, &socket))
                    .map(|i| locks.swap_remove(i));
                (socket, lock)
            })
            .collect()
    };
    if !locks.is_empty() {
        tracing::warn!(
            locks = locks.len(),
            "lock files passed in lock no socket passed with them; closed"
        );
    }
    if paired.is_empty() && tcp.is_empty() {
        return Err(ServerError::InvalidConfig(
            "only lock files were passed in, no socket".to_owned(),
        ));
    }
    debug!(
        unix = paired.len(),
        owns_path = paired.first().is_some_and(|(_, lock)| lock.is_some()),
        tcp = tcp.len(),
        "using the sockets passed in"
    );
    Ok(Some(Inherited { unix: paired, tcp }))
}

/// Whether `lock` is the lock file of `socket`'s path (`PATH.lock`).
fn locks_path_of(lock: &std::fs::File, socket: &UnixListener) -> bool {
    socket
        .local_addr()
        .ok()
        .and_then(|a| {
            a.as_pathname()
                .map(|p| crate::socket_file::is_lock_of(lock, p))
        })
        .unwrap_or(false)
}

/// Takes the listening socket systemd passed, if `LISTEN_PID` is this process and `LISTEN_FDS`
/// is set: the first Unix one of [`inherited`], without the path's lock (everything else
/// passed is closed).
///
/// # Errors
///
/// As [`inherited`].
pub fn systemd_listener() -> Result<Option<UnixListener>, ServerError> {
    Ok(inherited()?.and_then(Inherited::into_listener))
}

/// Checks that `fd` is a listening stream socket: `true` for a Unix one, `false` for TCP.
fn check_listener(fd: &OwnedFd) -> Result<bool, ServerError> {
    let bad = |what: &str| {
        Err(ServerError::InvalidConfig(format!(
            "the socket passed in {what}; use ListenStream= with a path or a port"
        )))
    };
    let unix = getsockname::<UnixAddr>(std::os::fd::AsRawFd::as_raw_fd(fd)).is_ok();
    let inet = !unix
        && TcpListener::from(
            fd.try_clone()
                .map_err(|e| ServerError::io("use the inherited socket", "LISTEN_FDS", e))?,
        )
        .local_addr()
        .is_ok();
    if !unix && !inet {
        return bad("is neither a Unix domain socket nor a TCP one");
    }
    if getsockopt(fd, sockopt::SockType) != Ok(SockType::Stream) {
        return bad("is not a stream socket");
    }
    if getsockopt(fd, sockopt::AcceptConn) != Ok(true) {
        return bad("is not listening");
    }
    Ok(unix)
}

/// Tells systemd the service is ready (`READY=1`). A no-op without `NOTIFY_SOCKET`.
pub fn notify_ready() {
    notify(sd_notify::NotifyState::Ready);
}

/// Tells systemd the service is stopping (`STOPPING=1`). A no-op without `NOTIFY_SOCKET`.
pub fn notify_stopping() {
    notify(sd_notify::NotifyState::Stopping);
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        // A handover's readiness socket is gone once the handover is done.
        if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ) {
            debug!(error = %e, "the notification socket is gone");
        } else {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Whether systemd keeps descriptors for this service across restarts (`$FDSTORE`, set when
/// the unit's `FileDescriptorStoreMax=` allows at least two: the socket and its lock).
pub fn fd_store_available() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
        && std::env::var("FDSTORE")
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 2)
}

/// How many descriptors systemd keeps for this service (`$FDSTORE`); 0 without a store.
pub(crate) fn fd_store_room() -> usize {
    std::env::var("FDSTORE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Stores the listening socket and the path's lock in systemd's file descriptor store
/// (`FDSTORE=1` with [`LISTENER_FD_NAME`] and [`LOCK_FD_NAME`]), so that after a restart the
/// service gets them back through [`inherited`] and no connection is refused meanwhile.
///
/// # Errors
///
/// The notification's I/O error.
pub(crate) fn store_fds(
    listener: &UnixListener,
    lock: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    use sd_notify::NotifyState::{FdName, FdStore};
    sd_notify::notify_with_fds(&[FdStore, FdName(LISTENER_FD_NAME)], &[listener.as_fd()])?;
    sd_notify::notify_with_fds(&[FdStore, FdName(LOCK_FD_NAME)], &[lock])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_goes_with_the_socket_of_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let (la, lb) = (
            UnixListener::bind(&a).unwrap(),
            UnixListener::bind(&b).unwrap(),
        );
        let lock = |socket: &std::path::Path| {
            let mut path = socket.as_os_str().to_owned();
            path.push(".lock");
            std::fs::File::create(path).unwrap()
        };
        let (lock_a, lock_b) = (lock(&a), lock(&b));
        assert!(locks_path_of(&lock_a, &la));
        assert!(locks_path_of(&lock_b, &lb));
        assert!(!locks_path_of(&lock_a, &lb));
        assert!(!locks_path_of(&lock_b, &la));
        // A socket bound by a relative path still finds its lock.
        let cwd = std::env::current_dir().unwrap();
        let relative = pathdiff(&a, &cwd);
        assert!(relative.is_relative());
        drop(la);
        std::fs::remove_file(&a).unwrap();
        let la = UnixListener::bind(&relative).unwrap();
        assert!(locks_path_of(&lock_a, &la));
    }

    /// `path` relative to `base` (both absolute), by `..` steps.
    fn pathdiff(path: &std::path::Path, base: &std::path::Path) -> std::path::PathBuf {
        let mut relative = std::path::PathBuf::new();
        for _ in base.components().skip(1) {
            relative.push("..");
        }
        relative.join(path.strip_prefix("/").unwrap())
    }
}
