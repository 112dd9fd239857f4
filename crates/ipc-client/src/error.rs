//! What can go wrong talking to a server, one variant per thing a caller would handle
//! differently.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use localipc_core::{AddressError, FrameError};

/// Why an exchange with the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing exists at the socket path: no server has run there.
    #[error("no socket at {}: is the server running?", path.display())]
    NoSocket {
        /// The socket path.
        path: PathBuf,
    },
    /// A socket file exists but no server accepts on it (a stale socket).
    #[error("connection refused at {}: stale socket, no server is listening", path.display())]
    Refused {
        /// The socket path.
        path: PathBuf,
    },
    /// The path exists but is not a socket.
    #[error("{} is not a socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket file's permissions (or its directory's) keep this user out. A server's peer
    /// allow-list does not show here: it accepts, then closes ([`ClientError::Closed`]).
    #[error("permission denied at {}", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The path does not fit in a Unix socket address.
    #[error("socket path {} is {len} bytes long; the limit is {max}", path.display())]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest that fits.
        max: usize,
    },
    /// The server closed the connection before the reply came. Common causes: it is stopping
    /// or restarting (a request sent after it stopped reading); its peer allow-list does not
    /// admit this user; it could not read the message (a framing that is not the server's, or
    /// a message over its maximum size); or its handler failed. The server's log says which.
    #[error(
        "the server closed the connection before replying (it may be stopping or restarting, \
         it may not admit this user, or it could not read this framing or size of message; its \
         log says why)"
    )]
    Closed,
    /// No reply within the time limit. The connection stays usable: the late replies are
    /// dropped by the next call.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The message cannot be sent with this framing (too large, or a newline in line framing);
    /// nothing was sent.
    #[error("cannot send the message: {0}")]
    Message(#[source] FrameError),
    /// The server's reply broke the framing (for example, larger than the maximum frame).
    #[error("bad reply from the server: {0}")]
    Protocol(#[source] FrameError),
    /// The connection cannot be used any more: it broke in an earlier call, or, in raw
    /// framing, an earlier call was abandoned and its late reply could not be told apart from
    /// the next one. Connect again.
    #[error("this connection cannot be used any more: {reason}")]
    Unusable {
        /// What happened to it.
        reason: String,
    },
    /// More descriptors than one message can carry; nothing was sent.
    #[error("cannot send {count} descriptors with one message; at most {max} go with one")]
    TooManyFds {
        /// The descriptors given.
        count: usize,
        /// The most one message carries.
        max: usize,
    },
    /// The server's socket refuses descriptors (on Linux 6.16 and later, a server that does
    /// not accept them says so in the kernel); nothing of the message was sent.
    #[error("the server does not accept file descriptors")]
    FdsRefused,
    /// The descriptors that came with the replies broke the convention (more than accepted
    /// with one reply, or sent in the middle of one); the connection cannot be used any more.
    #[error("bad descriptors from the server: {0}")]
    Fds(String),
    /// The address cannot be read, or names a scheme this client does not speak.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The program that carries `ssh-unix:` and `ssh-exec:` addresses (`ssh`, or what
    /// `$IPC_SSH` names) cannot be started.
    #[error("cannot start {} for an ssh address: {source}", program.display())]
    Ssh {
        /// The program.
        program: PathBuf,
        /// Why it cannot be started.
        #[source]
        source: io::Error,
    },
    /// The connection through `ssh` ended before the reply: `ssh` could not log in or
    /// connect, the remote socket or command failed, or the remote command exited. `ssh`'s own
    /// messages, on stderr, say which.
    #[error(
        "the connection through ssh ended before the reply ({}; ssh's messages say why)",
        match status { Some(s) => format!("ssh {s}"), None => "ssh still running".into() }
    )]
    SshEnded {
        /// `ssh`'s exit status, when it had exited.
        status: Option<std::process::ExitStatus>,
    },
    /// The `ssh` to run for an `ssh-unix:` address is an OpenSSH older than 9.4, whose `-W`
    /// cannot reach a Unix socket.
    #[error(
        "ssh-unix: needs OpenSSH 9.4 or later (ssh -W to a socket path), and ssh is {version}; \
         use ssh-exec:HOST:ipc-client bridge --socket PATH instead, or name a newer ssh in \
         IPC_SSH"
    )]
    SshTooOld {
        /// What `ssh -V` said it is.
        version: String,
    },
    /// Descriptors cannot go through `ssh` or TCP; nothing was sent.
    #[error(
        "file descriptors cannot be passed through ssh or TCP; pass them to a local server only"
    )]
    FdsNotCarried,
    /// Nothing listens at a `tcp:` address.
    #[error("connection refused at tcp:{address}: is the server running and listening there?")]
    TcpRefused {
        /// `HOST:PORT`.
        address: String,
    },
    /// TLS failed: its settings (a file that cannot be read, no CA given), or the handshake
    /// (the server's certificate is not trusted, or the server refused this client's
    /// certificate or its lack of one).
    #[error("TLS: {0}")]
    Tls(String),
    /// The Tokio runtime the client runs on lacks what it needs: the client needs the I/O
    /// driver, and the time driver whenever a time limit is set or raw framing is used
    /// (`Builder::enable_all` gives both).
    #[error("the client cannot run on this runtime: {0}")]
    Runtime(&'static str),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A pipelined batch that did not complete: the replies that arrived, in the order of their
/// requests, and why the others did not.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {} replies)", replies.len())]
pub struct PipelineError {
    /// The replies received before the failure, in request order.
    pub replies: Vec<Bytes>,
    /// Why the batch stopped.
    #[source]
    pub error: ClientError,
}

impl From<PipelineError> for ClientError {
    /// Keeps the cause and drops the replies received.
    fn from(e: PipelineError) -> Self {
        e.error
    }
}

impl From<ClientError> for PipelineError {
    /// A batch that failed before any reply (while connecting, say).
    fn from(error: ClientError) -> Self {
        PipelineError {
            replies: Vec::new(),
            error,
        }
    }
}
