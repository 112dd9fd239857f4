//! A seamless restart: the running server hands its listening socket (and the path's lock) to
//! a successor, waits for it to be ready, then stops accepting and drains its own connections.
//! No connection is refused meanwhile: the socket never closes, and connections queued in its
//! backlog are accepted by whichever process accepts next.
//!
//! The successor starts as under socket activation: the listening socket is its descriptor 3
//! and the lock file its descriptor 4 (a server with [`Endpoint`](crate::Endpoint)s passes
//! each of its sockets in turn, each followed by its lock), with `LISTEN_FDS`,
//! `LISTEN_FDNAMES` (named [`LISTENER_FD_NAME`] and [`LOCK_FD_NAME`]) and `LISTEN_PID` set, so
//! [`activation::inherited`](crate::activation::inherited) takes them. It says it is ready
//! with `READY=1` to `$NOTIFY_SOCKET`, as a systemd service does (`ipc-server` does once it
//! serves; a program of your own calls [`activation::notify_ready`](crate::activation::notify_ready)),
//! and here that socket is a private one of the server that hands over. The socket file is
//! never unlinked during a handover: the successor owns it, and removes it at its end.
//!
//! One handover at a time. A successor that exits, or is not ready within its
//! [`ready_timeout`](Successor::ready_timeout), is killed, and the server goes on serving.
//! Under systemd (`$NOTIFY_SOCKET` set for the server itself), the server then tells systemd
//! the successor is the service's main process (`MAINPID=`).

use std::ffi::OsString;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tracing::{debug, info, warn};

use crate::activation::{LISTENER_FD_NAME, LOCK_FD_NAME};

/// How long a successor has to say it is ready, unless set: 30 s.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The program that takes over, with its arguments (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Successor {
    program: PathBuf,
    args: Vec<OsString>,
    ready_timeout: Duration,
}

impl Successor {
    /// Runs `program`, with no arguments yet.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// This program again, as the file at its path is now (a binary upgraded in place is the
    /// new one), with the arguments this process was started with.
    ///
    /// # Errors
    ///
    /// The error of [`std::env::current_exe`].
    pub fn this_program() -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        // A binary replaced on disk shows as "PATH (deleted)": the path is the new one.
        let program = match exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => exe,
        };
        Ok(Self::new(program).args(std::env::args_os().skip(1)))
    }

    /// Adds arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// How long the successor has to say it is ready [default: [`DEFAULT_READY_TIMEOUT`]].
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

/// Why a handover did not happen (the server goes on serving).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// Another handover is under way.
    #[error("a handover is already under way")]
    InProgress,
    /// The server is not serving (it stopped, or is stopping).
    #[error("the server is not serving")]
    NotServing,
    /// The successor could not be started.
    #[error("cannot start the successor {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The successor exited before it said it was ready.
    #[error("the successor exited before it was ready ({0})")]
    Exited(ExitStatus),
    /// The successor did not say it was ready in time; it was killed.
    #[error("the successor was not ready within {0:?}; it was stopped")]
    NotReady(Duration),
    /// Setting up the handover failed.
    #[error("cannot hand over: {0}")]
    Io(#[from] io::Error),
}

/// A successor started, until it is ready (or not): killed if this is dropped before.
///
/// Its exit is awaited by a thread of its own, not by the runtime's process driver, which
/// would otherwise look for exited children at every wake-up of every connection's runtime.
pub(crate) struct Launch {
    pid: u32,
    /// The successor's process, for a kill that cannot reach another process that took its
    /// id after it exited.
    pidfd: std::os::fd::OwnedFd,
    /// Its exit status, from the thread that waits for it.
    exited: tokio::sync::oneshot::Receiver<io::Result<ExitStatus>>,
    /// Where the successor says it is ready.
    notify: tokio::net::UnixDatagram,
    /// The private directory of `notify`, removed with it.
    dir: PathBuf,
    timeout: Duration,
    /// When the successor must be ready by.
    deadline: tokio::time::Instant,
    /// The successor became ready: it is left running.
    done: bool,
}

/// Starts `successor` with `listener` as its descriptor 3 and `lock` (if any) as its 4.
pub(crate) fn launch(
    successor: &Successor,
    sockets: &[(BorrowedFd<'_>, Option<BorrowedFd<'_>>)],
) -> Result<Launch, HandoverError> {
    let dir = private_dir()?;
    let notify_path = dir.join("notify");
    let notify = match UnixDatagram::bind(&notify_path)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::UnixDatagram::from_std)
    {
        Ok(notify) => notify,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    // From descriptor 3 on: each listening socket, followed by its path's lock if it has one.
    let mut mappings = Vec::new();
    let mut names = Vec::new();
    for (listener, lock) in sockets {
        let fds = std::iter::once((listener, LISTENER_FD_NAME))
            .chain(lock.as_ref().map(|lock| (lock, LOCK_FD_NAME)));
        for (fd, name) in fds {
            mappings.push(FdMapping {
                parent_fd: fd.try_clone_to_owned()?,
                child_fd: 3 + mappings.len() as i32,
            });
            names.push(name);
        }
    }
    let names = names.join(":");
    // The shell sets LISTEN_PID to its own process id, which `exec` keeps for the program.
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(&successor.program)
        .args(&successor.args)
        .env("LISTEN_FDS", mappings.len().to_string())
        .env("LISTEN_FDNAMES", names)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("LISTEN_PID");
    let spawned = command
        .fd_mappings(mappings)
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|c| c.spawn());
    let mut child = match spawned {
        Ok(child) => child,
        Err(source) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(HandoverError::Spawn {
                program: successor.program.clone(),
                source,
            });
        }
    };
    let pid = child.id();
    // Opened before anything can reap the child, so it names this very process.
    let pidfd = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::other("the successor has no process id"))
        .and_then(|p| {
            Ok(rustix::process::pidfd_open(
                p,
                rustix::process::PidfdFlags::empty(),
            )?)
        });
    let pidfd = match pidfd {
        Ok(pidfd) => pidfd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    let (tx, exited) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("successor-wait".into())
        .spawn(move || {
            let _ = tx.send(child.wait());
        })?;
    info!(
        pid,
        program = %successor.program.display(),
        "handing the socket over: successor started"
    );
    Ok(Launch {
        pid,
        pidfd,
        exited,
        notify,
        dir,
        timeout: successor.ready_timeout,
        deadline: tokio::time::Instant::now() + successor.ready_timeout,
        done: false,
    })
}

impl Launch {
    /// Waits until the successor says `READY=1`: returns its process id. A successor that
    /// exits first, or is not ready within the timeout, is killed and reaped.
    pub(crate) async fn ready(&mut self) -> Result<u32, HandoverError> {
        let pid = self.pid;
        let deadline = tokio::time::sleep_until(self.deadline);
        tokio::pin!(deadline);
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                received = self.notify.recv(&mut buf) => {
                    let n = received?;
                    let message = String::from_utf8_lossy(&buf[..n]);
                    debug!(pid, message = %message.trim_end(), "successor says");
                    if message.lines().any(|line| line == "READY=1") {
                        self.done = true;
                        tell_service_manager(pid);
                        return Ok(pid);
                    }
                }
                status = &mut self.exited => {
                    let status = status.map_err(|_| io::Error::other("lost the successor"))??;
                    return Err(HandoverError::Exited(status));
                }
                () = &mut deadline => {
                    self.stop().await;
                    return Err(HandoverError::NotReady(self.timeout));
                }
            }
        }
    }

    /// Kills the successor and waits until it is reaped.
    async fn stop(&mut self) {
        self.kill();
        let _ = (&mut self.exited).await;
    }

    fn kill(&self) {
        if let Err(e) =
            rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL)
        {
            // Gone already (ESRCH), which is what is wanted.
            debug!(error = %e, "cannot kill the successor");
        }
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if !self.done {
            // A handover given up on (the server stops, or the successor failed): the
            // successor must not serve. Killed now, reaped by its waiting thread.
            self.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Under systemd, the successor is the service's main process from now on.
fn tell_service_manager(pid: u32) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::MainPid(pid)])
    {
        warn!(error = %e, "cannot tell systemd the successor's process id");
    }
}

/// A fresh directory only this user can enter, for the readiness socket.
fn private_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "localipc-handover-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// A handover asked of a running server, and where its outcome goes.
pub(crate) type Request = (
    Successor,
    tokio::sync::oneshot::Sender<Result<u32, HandoverError>>,
);
