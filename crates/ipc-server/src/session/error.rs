//! Why a session ended other than by a clean close, and what that allows at the end.

use std::io;
use std::time::Duration;

use localipc_core::{BoxError, FrameError};

use crate::transport::FdError;

/// Why a session ended other than by a clean close.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("handler failed: {0}")]
    Handler(BoxError),
    #[error("handler panicked: {0}")]
    HandlerPanicked(String),
    #[error("handler did not answer within {0:?}")]
    HandlerTimeout(Duration),
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    #[error("client took none of its replies for {0:?}")]
    WriteStalled(Duration),
    #[error("the peer hung up while its replies were streaming")]
    HungUp,
    #[error("dropped by a forced shutdown")]
    Forced,
    #[error(
        "the server's budget of {budget} bytes for unfinished messages is spent; this \
         connection held {held} bytes of one"
    )]
    Budget { budget: usize, held: usize },
    #[error("descriptors refused: {0}")]
    Fds(#[from] FdError),
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for SessionError {
    /// A read that refused descriptors is a [`SessionError::Fds`]; any other error is I/O.
    fn from(e: io::Error) -> Self {
        match e.downcast::<FdError>() {
            Ok(fds) => SessionError::Fds(fds),
            Err(e) => SessionError::Io(e),
        }
    }
}

impl SessionError {
    /// Whether the connection was closed for sitting idle (a policy, not a fault).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self, SessionError::Idle(_))
    }

    /// Whether this is the peer going away (not worth a warning).
    pub(crate) fn is_disconnect(&self) -> bool {
        let io = match self {
            SessionError::HungUp => return true,
            SessionError::Io(e) => e,
            SessionError::Frame(FrameError::Io(e)) => e,
            _ => return false,
        };
        matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
    }

    /// Whether the connection can still carry the replies already made: yes unless writing
    /// itself failed or the peer is gone.
    pub(crate) fn can_still_write(&self) -> bool {
        !matches!(
            self,
            SessionError::Io(_) | SessionError::WriteStalled(_) | SessionError::HungUp
        )
    }
}
