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

/// What this process inherited to serve: a listening socket, and with it, from a server that
/// handed its path over (or from systemd's file descriptor store), the path's lock, which
/// makes the socket file this server's (see [`Builder::inherited`](crate::Builder::inherited)).
#[derive(Debug)]
pub struct Inherited {
    pub(crate) listener: UnixListener,
    pub(crate) lock: Option<std::fs::File>,
}

impl Inherited {
    /// The listening socket.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Whether the path's lock came with it: the socket file is then this server's.
    pub fn owns_path(&self) -> bool {
        self.lock.is_some()
    }

    /// The listening socket alone; the lock, if any, is closed.
    pub fn into_listener(self) -> UnixListener {
        self.listener
    }
}

/// Takes what systemd (socket activation, or the file descriptor store) or a predecessor
/// passed, if `LISTEN_PID` is this process and `LISTEN_FDS` is set: one listening socket, and
/// the path's lock if one is named [`LOCK_FD_NAME`].
///
/// Returns `Ok(None)` when nothing was passed, or when it was already taken by an earlier
/// call (a descriptor can be owned only once).
///
/// # Errors
///
/// [`ServerError::InvalidConfig`] when more than one socket was passed, or one that is not a
/// listening Unix stream socket, or a lock that is not a regular file.
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
    let (mut sockets, mut locks) = (Vec::new(), Vec::new());
    for ((_, name), fd) in passed.into_iter().zip(owned) {
        if name == LOCK_FD_NAME {
            locks.push(std::fs::File::from(fd));
        } else {
            sockets.push(fd);
        }
    }
    let listener = match <[OwnedFd; 1]>::try_from(sockets) {
        Ok([fd]) => fd,
        Err(more) => {
            return Err(ServerError::InvalidConfig(format!(
                "{} sockets were passed; ipc-server serves exactly one (use one ListenStream=)",
                more.len()
            )));
        }
    };
    check_listener(&listener)?;
    let lock = match <[std::fs::File; 1]>::try_from(locks) {
        Ok([lock]) if lock.metadata().is_ok_and(|m| m.is_file()) => Some(lock),
        Ok(_) => {
            return Err(ServerError::InvalidConfig(format!(
                "the descriptor named {LOCK_FD_NAME} is not a lock file"
            )));
        }
        Err(none) if none.is_empty() => None,
        Err(_) => {
            return Err(ServerError::InvalidConfig(format!(
                "more than one descriptor is named {LOCK_FD_NAME}"
            )));
        }
    };
    debug!(owns_path = lock.is_some(), "using the socket passed in");
    Ok(Some(Inherited {
        listener: UnixListener::from(listener),
        lock,
    }))
}

/// Takes the listening socket systemd passed, if `LISTEN_PID` is this process and `LISTEN_FDS`
/// is set: [`inherited`], without the path's lock (closed if one was passed).
///
/// # Errors
///
/// As [`inherited`].
pub fn systemd_listener() -> Result<Option<UnixListener>, ServerError> {
    Ok(inherited()?.map(Inherited::into_listener))
}

fn check_listener(fd: &OwnedFd) -> Result<(), ServerError> {
    let bad = |what: &str| {
        Err(ServerError::InvalidConfig(format!(
            "the socket passed in {what}; use ListenStream= with a path"
        )))
    };
    if getsockname::<UnixAddr>(std::os::fd::AsRawFd::as_raw_fd(fd)).is_err() {
        return bad("is not a Unix domain socket");
    }
    if getsockopt(fd, sockopt::SockType) != Ok(SockType::Stream) {
        return bad("is not a stream socket");
    }
    if getsockopt(fd, sockopt::AcceptConn) != Ok(true) {
        return bad("is not listening");
    }
    Ok(())
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
