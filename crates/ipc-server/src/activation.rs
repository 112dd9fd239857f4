//! systemd integration: socket activation (serve the listening socket systemd passes as fd 3)
//! and readiness notification (`READY=1`, `STOPPING=1` to `$NOTIFY_SOCKET`).
//!
//! Both are no-ops outside systemd: with no `LISTEN_PID`/`LISTEN_FDS` there is no inherited
//! socket, and with no `NOTIFY_SOCKET` nothing is sent.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use nix::sys::socket::{SockType, UnixAddr, getsockname, getsockopt, sockopt};
use tracing::debug;

use crate::error::ServerError;

/// Takes the listening socket systemd passed, if `LISTEN_PID` is this process and `LISTEN_FDS`
/// is set.
///
/// Returns `Ok(None)` when the process was not socket-activated, or when the socket was
/// already taken by an earlier call (a descriptor can be owned only once).
///
/// # Errors
///
/// [`ServerError::InvalidConfig`] when systemd passed more than one socket, or one that is not
/// a listening Unix stream socket.
pub fn systemd_listener() -> Result<Option<UnixListener>, ServerError> {
    let fds = sd_notify::listen_fds()
        .map_err(|e| ServerError::InvalidConfig(format!("bad socket activation variables: {e}")))?;
    let fds: Vec<_> = fds.collect();
    let fd = match fds.as_slice() {
        [] => return Ok(None),
        [fd] => *fd,
        more => {
            return Err(ServerError::InvalidConfig(format!(
                "systemd passed {} sockets; ipc-server serves exactly one (use one ListenStream=)",
                more.len()
            )));
        }
    };
    let Some(owned) = crate::conn::take_inherited(fd) else {
        return Ok(None);
    };
    check_listener(&owned)?;
    debug!(fd, "using the socket passed by systemd");
    Ok(Some(UnixListener::from(owned)))
}

fn check_listener(fd: &OwnedFd) -> Result<(), ServerError> {
    let bad = |what: &str| {
        Err(ServerError::InvalidConfig(format!(
            "the socket passed by systemd {what}; use ListenStream= with a path"
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
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
