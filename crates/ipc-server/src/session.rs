//! One connection's session: read frames, call the handler for each, write the replies in order,
//! and log how the connection ended.
//!
//! Buffers are allocated only while data is moving and released while the connection waits, so
//! idle connections cost little memory. The replies of every request already buffered are
//! written together in one `write`, which matters to pipelining clients. While replies are being
//! written the session reads nothing, so a client that never reads cannot make it buffer without
//! bound.
//!
//! Nothing is lost at a close: whatever ends the session (a handler error, panic or timeout, a
//! bad frame after good ones, shutdown), the replies already made are written first, and the
//! count logged as `answered` is the number of replies that were written whole.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use ipc_core::{BoxError, Context, FrameCodec, FrameError, Handler};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, info, warn};

use crate::conn::{Connection, SMALL_READ};
use crate::outbox::Outbox;
use crate::trigger::Trigger;

/// Pending reply bytes at which the session stops handling requests and writes them out.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Most unread bytes dropped before closing a connection for an error (see
/// [`Connection::discard_unread`]).
const DISCARD_LIMIT: usize = 256 * 1024;

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
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SessionError {
    /// Whether the connection was closed for sitting idle (a policy, not a fault).
    fn is_idle(&self) -> bool {
        matches!(self, SessionError::Idle(_))
    }

    /// Whether this is the peer going away (not worth a warning).
    fn is_disconnect(&self) -> bool {
        let io = match self {
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
    /// itself failed.
    fn can_still_write(&self) -> bool {
        !matches!(self, SessionError::Io(_) | SessionError::WriteStalled(_))
    }
}

/// Runs one connection until the peer closes, an error, or shutdown.
pub(crate) struct Session<H> {
    pub(crate) conn: Connection,
    pub(crate) codec: FrameCodec,
    pub(crate) handler: Arc<H>,
    pub(crate) ctx: Context,
    pub(crate) idle_timeout: Option<Duration>,
    /// Longest a handler call may take; the connection is closed after a longer one.
    pub(crate) request_timeout: Option<Duration>,
    /// Fired when the server shuts down: finish the requests already read, then close.
    pub(crate) shutdown: Trigger,
}

impl<H: Handler> Session<H> {
    /// Runs the session to its end and logs how it ended; returns the replies written whole.
    pub(crate) async fn run(mut self) -> u64 {
        let mut outbox = Outbox::default();
        let mut result = self.exchange(&mut outbox).await;
        if let Err(e) = &result {
            // Whatever ended the exchange, the replies already made go out before the close.
            if e.can_still_write() && !outbox.is_empty() {
                if let Err(w) = self.write_out(&mut outbox).await {
                    debug!(error = %w, "could not write the last replies");
                }
            }
            self.conn.discard_unread(DISCARD_LIMIT);
        }
        let answered = outbox.replies_sent();
        match result.as_mut() {
            Ok(()) => debug!(answered, "closed"),
            Err(e) if e.is_disconnect() => debug!(answered, error = %e, "peer went away"),
            Err(e) if e.is_idle() => info!(answered, reason = %e, "closing idle connection"),
            Err(e) => warn!(answered, error = %e, "closing connection"),
        }
        answered
    }

    async fn exchange(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        let mut rbuf = BytesMut::new();
        let mut last_frame = Instant::now();
        let idle = self.idle_timeout.unwrap_or(Duration::MAX);
        let idle_sleep = tokio::time::sleep_until(deadline(last_frame, idle));
        tokio::pin!(idle_sleep);
        // Created once, so its waiter is registered once rather than on every wait.
        let trigger = self.shutdown.clone();
        let shutdown = trigger.fired();
        tokio::pin!(shutdown);
        let mut eof = false;
        let mut expect = self.codec.read_hint(0);

        loop {
            // Every complete request already read gets its reply, even during shutdown.
            let mut handled = false;
            while let Some(request) = self.codec.decode(&mut rbuf)? {
                handled = true;
                // The next message is probably about as large.
                expect = self.codec.read_hint(request.len());
                self.answer(request, outbox).await?;
                if outbox.len() >= WRITE_HIGH_WATER {
                    self.write_out(outbox).await?;
                }
            }
            if eof {
                if let Some(request) = self.codec.decode_eof(&mut rbuf)? {
                    self.answer(request, outbox).await?;
                }
                self.write_out(outbox).await?;
                return Ok(());
            }
            if handled && self.idle_timeout.is_some() {
                last_frame = Instant::now();
            }
            self.write_out(outbox).await?;

            if rbuf.is_empty() && rbuf.capacity() > SMALL_READ {
                // Nothing half-read: give a large buffer back while we wait.
                rbuf = BytesMut::new();
            }

            let read = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                read = self.conn.read(&mut rbuf, expect) => read,
                () = &mut idle_sleep, if self.idle_timeout.is_some() => {
                    let due = deadline(last_frame, idle);
                    if Instant::now() >= due {
                        return Err(SessionError::Idle(idle));
                    }
                    // Frames arrived since the timer was set: push it back and keep waiting.
                    idle_sleep.as_mut().reset(due);
                    continue;
                }
            };
            if read? == 0 {
                eof = true;
            }
        }
    }

    /// Calls the handler for one request and queues its reply.
    ///
    /// The call is polled once before anything else: most handlers answer at once, and they
    /// then cost no clock read and no timer entry. One that does not answer at once may take a
    /// while, so the replies already queued are written while it works, instead of waiting
    /// behind it.
    async fn answer(&mut self, request: Bytes, outbox: &mut Outbox) -> Result<(), SessionError> {
        let call = AssertUnwindSafe(self.handler.handle(request, &self.ctx)).catch_unwind();
        tokio::pin!(call);
        let outcome = match futures::poll!(call.as_mut()) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => {
                let due = self
                    .request_timeout
                    .map(|limit| (Instant::now() + limit, limit));
                write_out(&mut self.conn, self.idle_timeout, outbox).await?;
                match due {
                    Some((due, limit)) => tokio::time::timeout_at(due, call)
                        .await
                        .map_err(|_| SessionError::HandlerTimeout(limit))?,
                    None => call.await,
                }
            }
        };
        let reply = match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(SessionError::Handler(e)),
            Err(panic) => return Err(SessionError::HandlerPanicked(panic_message(&panic))),
        };
        outbox.push(&self.codec, reply)?;
        Ok(())
    }

    /// Writes every queued reply; see [`write_out`].
    async fn write_out(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        write_out(&mut self.conn, self.idle_timeout, outbox).await
    }
}

/// Writes every queued reply. With an idle timeout, a peer that takes nothing for that long is
/// given up on; one that keeps taking bytes, however slowly, is not.
async fn write_out(
    conn: &mut Connection,
    idle_timeout: Option<Duration>,
    outbox: &mut Outbox,
) -> Result<(), SessionError> {
    while !outbox.is_empty() {
        // Fast path, with no timer: the socket buffer usually has room.
        match conn.try_write_buf(outbox) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        // The socket is full: wait for the peer to take something.
        let written = match idle_timeout {
            Some(limit) => tokio::time::timeout(limit, conn.write_buf(outbox))
                .await
                .map_err(|_| SessionError::WriteStalled(limit))?,
            None => conn.write_buf(outbox).await,
        };
        match written {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn deadline(from: Instant, idle: Duration) -> Instant {
    from.checked_add(idle)
        .unwrap_or_else(|| from + Duration::from_secs(86400 * 365 * 30))
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
