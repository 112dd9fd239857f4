//! Reaching a server at an [`Address`]: a Unix socket of this host, one on another host
//! through the system's `ssh`, or a TCP port with TLS (see [`crate::tcp`]).
//!
//! # Through ssh
//!
//! `ssh-unix:[USER@]HOST:PATH` runs `ssh -W PATH -- [USER@]HOST`, which forwards its stdin
//! and stdout to the socket `PATH` on `HOST`; `ssh-exec:[USER@]HOST:COMMAND` runs
//! `ssh -T -- [USER@]HOST COMMAND`, whose stdin and stdout are the remote command's (such as
//! `ipc-client bridge`). Either way `ssh`'s stdin and stdout are one end of a socket pair,
//! and the client talks over the other end as over any connection. On the remote host the
//! server sees the user `ssh` logged in as, so its allow-lists and `ctx.peer()` apply to that
//! user.
//!
//! `ssh` runs with the user's own configuration (`~/.ssh/config`, keys, agent, known hosts)
//! and its messages and prompts go to the process's stderr and terminal. `$IPC_SSH` names
//! another program to run in its place, with the same arguments (a wrapper that adds `-F`,
//! say). Descriptors cannot cross `ssh`: a call that passes some fails with
//! [`ClientError::FdsNotCarried`].
//!
//! When the connection is dropped, `ssh` reads the end of its input and exits; it is waited
//! for on a thread of its own, and killed if it has not exited 10 seconds later.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use localipc_core::{Address, AddressError, MAX_PATH_LEN};
use tokio::net::UnixStream;

use crate::client::within;
use crate::error::ClientError;
use crate::tcp::{Stream, TcpOptions};

/// The environment variable that names the program run for `ssh-unix:` and `ssh-exec:`
/// addresses in place of `ssh`.
pub const SSH_ENV: &str = "IPC_SSH";

/// How long a dropped connection's `ssh` has to exit before it is killed.
const SSH_GRACE: Duration = Duration::from_secs(10);

/// A connected stream to a server, and the `ssh` that carries it when the address is remote.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    relay: Option<Relay>,
}

impl Connection {
    /// The Unix stream the client reads and writes, unless the connection is over TCP.
    pub fn unix_stream(&self) -> Option<&UnixStream> {
        self.stream.unix()
    }

    /// Whether the connection is over TCP (with TLS, or plain to loopback).
    pub fn is_tcp(&self) -> bool {
        self.stream.unix().is_none()
    }

    /// Whether the connection goes through `ssh` (descriptors cannot cross it).
    pub fn is_relayed(&self) -> bool {
        self.relay.is_some()
    }

    pub(crate) fn into_parts(self) -> (Stream, Option<Relay>) {
        (self.stream, self.relay)
    }
}

/// The connection as a byte stream, for a caller that frames messages itself (a bridge, a
/// load generator): reads and writes go to the server as they are, through TLS where the
/// address is `tcp:`.
impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl From<UnixStream> for Connection {
    /// A stream connected by other means, to a socket of this host.
    fn from(stream: UnixStream) -> Self {
        Self {
            stream: Stream::Unix(stream),
            relay: None,
        }
    }
}

/// Connects to `address` (a path or `@name` as before, or any form [`Address`] reads), within
/// `timeout` if one is given. For a remote address, the time limit covers starting `ssh`
/// only: its login shows in the first call. A `tcp:` address is reached with the options of
/// the environment ([`TcpOptions::from_env`]); [`connect_tcp`] takes them from the caller.
///
/// # Errors
///
/// [`ClientError::Address`] for an address that cannot be read; as [`connect_socket`] for a
/// local one; [`ClientError::Ssh`] if `ssh` cannot be started; as [`connect_tcp`] for a
/// `tcp:` one.
pub async fn connect(
    address: impl AsRef<Path>,
    timeout: Option<Duration>,
) -> Result<Connection, ClientError> {
    let address = Address::parse(address.as_ref().as_os_str()).map_err(ClientError::Address)?;
    connect_to(&address, timeout).await
}

/// [`connect`] to an address already read.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_to(
    address: &Address,
    timeout: Option<Duration>,
) -> Result<Connection, ClientError> {
    if let Some(args) = ssh_args(address) {
        crate::runtime::check(timeout)?;
        let (ours, relay) = start_ssh(address, args)?;
        ours.set_nonblocking(true)?;
        let stream = crate::runtime::with_io(async { UnixStream::from_std(ours) }).await??;
        return Ok(Connection {
            stream: Stream::Unix(stream),
            relay: Some(relay),
        });
    }
    if let Address::Tcp { .. } = address {
        return connect_tcp(address, &TcpOptions::from_env()?, timeout).await;
    }
    match address.local_path() {
        Some(path) => Ok(connect_socket(&path, timeout).await?.into()),
        None => Err(ClientError::Address(AddressError::Unsupported {
            scheme: address.scheme(),
        })),
    }
}

/// Connects to a `tcp:` address with `options` (TLS, or plain TCP to loopback), within
/// `timeout` if one is given, which covers the TLS handshake.
///
/// # Errors
///
/// [`ClientError::TcpRefused`] if nothing listens there; [`ClientError::Tls`] if the
/// handshake fails (the server's certificate is not trusted, or the server refused this
/// client's), or plain TCP is asked for to another host; [`ClientError::Timeout`];
/// [`ClientError::Io`].
pub async fn connect_tcp(
    address: &Address,
    options: &TcpOptions,
    timeout: Option<Duration>,
) -> Result<Connection, ClientError> {
    Ok(Connection {
        stream: options.connect(address, timeout).await?,
        relay: None,
    })
}

/// Connects a Unix stream socket to `path` (a socket file, or `@name` in the abstract
/// namespace), within `timeout` if one is given, with the errors of
/// [`Client::connect`](crate::Client::connect).
///
/// # Errors
///
/// [`ClientError::NoSocket`], [`ClientError::Refused`], [`ClientError::NotASocket`],
/// [`ClientError::PermissionDenied`], [`ClientError::PathTooLong`],
/// [`ClientError::Timeout`] or [`ClientError::Io`].
pub async fn connect_socket(
    path: &Path,
    timeout: Option<Duration>,
) -> Result<UnixStream, ClientError> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_LEN {
        return Err(ClientError::PathTooLong {
            path: path.to_owned(),
            len,
            max: MAX_PATH_LEN,
        });
    }
    let target = match localipc_core::abstract_name(path) {
        // tokio takes a leading NUL as the abstract namespace.
        Some(name) => {
            use std::os::unix::ffi::OsStrExt;
            let mut target = b"\0".to_vec();
            target.extend_from_slice(name);
            PathBuf::from(std::ffi::OsStr::from_bytes(&target))
        }
        None => path.to_owned(),
    };
    within(
        timeout,
        crate::runtime::with_io(UnixStream::connect(&target)),
    )
    .await??
    .map_err(|e| connect_error(path, e))
}

fn connect_error(path: &Path, e: io::Error) -> ClientError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::NotFound => ClientError::NoSocket { path },
        io::ErrorKind::ConnectionRefused => {
            // Linux also refuses a connect to a regular file: tell the two apart.
            match localipc_core::probe(&path) {
                Ok(localipc_core::PathState::NotASocket(_)) => ClientError::NotASocket { path },
                _ => ClientError::Refused { path },
            }
        }
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
        _ => ClientError::Io(e),
    }
}

/// The `ssh` that carries a remote connection.
#[derive(Debug)]
pub(crate) struct Relay {
    child: Option<Child>,
}

impl Relay {
    /// Why the connection ended, when the other end closed it: `ssh`'s exit status, if it has
    /// exited (it closes its end as it exits, so the status follows the close closely).
    pub(crate) fn ended(&mut self) -> ClientError {
        let status = self.child.as_mut().and_then(|child| {
            exit_within(child, Duration::from_millis(20), Duration::from_millis(1))
        });
        ClientError::SshEnded { status }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // It exits once it has read the end of its input (and passed on what came before).
        let reaper = std::thread::Builder::new().name("ipc-ssh-reaper".into());
        let _ = reaper.spawn(move || reap(child));
    }
}

/// Waits for `child` to exit, and kills it after [`SSH_GRACE`].
fn reap(mut child: Child) -> Option<ExitStatus> {
    if let Some(status) = exit_within(&mut child, SSH_GRACE, Duration::from_millis(20)) {
        return Some(status);
    }
    tracing::debug!(
        pid = child.id(),
        "ssh did not exit after its input ended: killed"
    );
    let _ = child.kill();
    child.wait().ok()
}

/// `child`'s exit status, looked for every `step` for up to `limit`; `None` if it is still
/// running then (or cannot be asked).
fn exit_within(child: &mut Child, limit: Duration, step: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(step),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The arguments of `ssh` for a remote `address`; `None` for a local one.
fn ssh_args(address: &Address) -> Option<Vec<OsString>> {
    let (options, destination, last): (&[&str], _, OsString) = match address {
        Address::SshUnix { destination, path } => {
            (&["-e", "none", "-W"], destination, path.clone().into())
        }
        Address::SshExec {
            destination,
            command,
        } => (&["-e", "none", "-T"], destination, command.into()),
        _ => return None,
    };
    let mut args: Vec<OsString> = options.iter().map(OsString::from).collect();
    match address {
        // -W takes the path; the destination comes after the options.
        Address::SshUnix { .. } => args.extend([last, "--".into(), destination.into()]),
        _ => args.extend(["--".into(), destination.into(), last]),
    }
    Some(args)
}

/// Starts `ssh` with `args` for `address`, its stdin and stdout one end of a socket pair; the
/// other end is returned.
fn start_ssh(
    address: &Address,
    args: Vec<OsString>,
) -> Result<(std::os::unix::net::UnixStream, Relay), ClientError> {
    let program = std::env::var_os(SSH_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("ssh"), PathBuf::from);
    if let Address::SshUnix { .. } = address {
        forwards_to_sockets(&program)?;
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    let child = std::process::Command::new(&program)
        .args(args)
        .stdin(Stdio::from(theirs.try_clone()?))
        .stdout(Stdio::from(theirs))
        .spawn()
        .map_err(|source| ClientError::Ssh {
            program: program.clone(),
            source,
        })?;
    tracing::debug!(%address, pid = child.id(), "ssh started");
    Ok((ours, Relay { child: Some(child) }))
}

/// Fails if `program -V` says it is an OpenSSH older than 9.4, whose `-W` does not reach
/// a Unix socket: it logs in and then forwards nothing, so the call would only time out.
/// Anything else (another version string, or none) is left to try.
fn forwards_to_sockets(program: &Path) -> Result<(), ClientError> {
    let Ok(output) = std::process::Command::new(program)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
    else {
        // Starting it again will say why.
        return Ok(());
    };
    let said = String::from_utf8_lossy(&output.stderr);
    match openssh_version(&said) {
        Some(version) if version < (9, 4) => Err(ClientError::SshTooOld {
            version: said
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The major and minor version in what `ssh -V` prints (`OpenSSH_9.2p1 Debian-2, ...`).
fn openssh_version(said: &str) -> Option<(u32, u32)> {
    let version = said.trim_start().strip_prefix("OpenSSH_")?;
    let (major, rest) = version.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_arguments() {
        let args = |s: &str| {
            ssh_args(&s.parse().unwrap()).map(|a| {
                a.into_iter()
                    .map(|a| a.into_string().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            args("ssh-unix:me@box:/run/ipc.sock").unwrap(),
            ["-e", "none", "-W", "/run/ipc.sock", "--", "me@box"]
        );
        assert_eq!(
            args("ssh-exec:box:ipc-client bridge").unwrap(),
            ["-e", "none", "-T", "--", "box", "ipc-client bridge"]
        );
        assert_eq!(args("/run/ipc.sock"), None);
    }

    #[test]
    fn openssh_versions() {
        let said = "OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026";
        assert_eq!(openssh_version(said), Some((9, 2)));
        assert_eq!(openssh_version("OpenSSH_10.0p2 Debian-7"), Some((10, 0)));
        assert_eq!(openssh_version("OpenSSH_9.10"), Some((9, 10)));
        assert_eq!(openssh_version("Dropbear v2022.83"), None);
    }
}
