//! What can go wrong talking to a server, one variant per thing a caller would handle
//! differently.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ipc_core::FrameError;

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
    /// The socket's permissions (or the server's allow-list) keep us out.
    #[error("permission denied at {}", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The server closed the connection before sending the reply.
    #[error("the server closed the connection without replying")]
    Closed,
    /// No reply within the time limit.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The message cannot be sent with this framing (too large, or a newline in line framing).
    #[error("cannot send the message: {0}")]
    Message(#[source] FrameError),
    /// The server's reply broke the framing (for example, larger than the maximum frame).
    #[error("bad reply from the server: {0}")]
    Protocol(#[source] FrameError),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] io::Error),
}
