//! One connection's session: read frames, call the handler for each, write the replies in order.
//!
//! Buffers are allocated only while data is moving and released while the connection waits, so
//! idle connections cost little memory. The replies of every request already buffered are
//! written together in one `write`, which matters to pipelining clients. While replies are being
//! written the session reads nothing, so a client that never reads cannot make it buffer without
//! bound.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use ipc_core::{BoxError, Context, FrameCodec, FrameError, Handler};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use crate::conn::{Connection, SMALL_READ};
use crate::outbox::Outbox;
use crate::trigger::Trigger;

/// Pending reply bytes at which the session stops handling requests and writes them out.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Bytes a frame takes besides its payload, at most (the length prefix, or the newline).
const FRAMING_ROOM: usize = 4;

/// Why a session ended other than by a clean close.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("handler failed: {0}")]
    Handler(BoxError),
    #[error("handler panicked: {0}")]
    HandlerPanicked(String),
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    #[error("client did not take its replies for {0:?}")]
    WriteStalled(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SessionError {
    /// Whether the connection was closed for sitting idle (a policy, not a fault).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self, SessionError::Idle(_))
    }

    /// Whether this is the peer going away (not worth a warning).
    pub(crate) fn is_disconnect(&self) -> bool {
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
}

/// Runs one connection until the peer closes, an error, or shutdown.
pub(crate) struct Session<H> {
    pub(crate) conn: Connection,
    pub(crate) codec: FrameCodec,
    pub(crate) handler: Arc<H>,
    pub(crate) ctx: Context,
    pub(crate) idle_timeout: Option<Duration>,
    /// Cancelled when the server shuts down: finish the requests already read, then close.
    pub(crate) shutdown: Trigger,
}

impl<H: Handler> Session<H> {
    /// Runs the session; returns how many requests were answered, or why it ended early.
    pub(crate) async fn run(mut self) -> Result<u64, (SessionError, u64)> {
        let mut answered = 0;
        match self.exchange(&mut answered).await {
            Ok(()) => Ok(answered),
            Err(e) => Err((e, answered)),
        }
    }

    async fn exchange(&mut self, answered: &mut u64) -> Result<(), SessionError> {
        let mut rbuf = BytesMut::new();
        let mut outbox = Outbox::default();
        let mut last_frame = Instant::now();
        let idle = self.idle_timeout.unwrap_or(Duration::MAX);
        let idle_sleep = tokio::time::sleep_until(deadline(last_frame, idle));
        tokio::pin!(idle_sleep);
        // Created once, so its waiter is registered once rather than on every wait.
        let trigger = self.shutdown.clone();
        let shutdown = trigger.fired();
        tokio::pin!(shutdown);
        let mut eof = false;
        let mut expect = 0;

        loop {
            // Every complete request already read gets its reply, even during shutdown.
            let mut handled = false;
            while let Some(request) = self.codec.decode(&mut rbuf)? {
                handled = true;
                // The next message is probably about as large (with its framing).
                expect = request.len() + FRAMING_ROOM;
                self.answer(request, &mut outbox).await?;
                *answered += 1;
                if outbox.len() >= WRITE_HIGH_WATER {
                    self.write_out(&mut outbox).await?;
                }
            }
            if eof {
                if let Some(request) = self.codec.decode_eof(&mut rbuf)? {
                    self.answer(request, &mut outbox).await?;
                    *answered += 1;
                }
                self.write_out(&mut outbox).await?;
                return Ok(());
            }
            if handled && self.idle_timeout.is_some() {
                last_frame = Instant::now();
            }
            self.write_out(&mut outbox).await?;

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
    async fn answer(
        &mut self,
        request: bytes::Bytes,
        outbox: &mut Outbox,
    ) -> Result<(), SessionError> {
        let call = AssertUnwindSafe(self.handler.handle(request, &self.ctx)).catch_unwind();
        let reply = match call.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(SessionError::Handler(e)),
            Err(panic) => return Err(SessionError::HandlerPanicked(panic_message(&panic))),
        };
        outbox.push(&self.codec, reply)?;
        Ok(())
    }

    /// Writes every queued reply, waiting at most the idle timeout for the peer to take them.
    async fn write_out(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        // Fast path, without building the waiting future: the socket buffer usually has room.
        if self.write_now(outbox)? {
            return Ok(());
        }
        self.write_rest(outbox).await
    }

    /// Writes what the socket takes without waiting; whether everything went.
    fn write_now(&self, outbox: &mut Outbox) -> Result<bool, SessionError> {
        while !outbox.is_empty() {
            match outbox.write_to(&self.conn) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Waits for the peer to take the rest, at most the idle timeout.
    async fn write_rest(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        let conn = &mut self.conn;
        let rest = async {
            while !outbox.is_empty() {
                conn.write_ready(|c| outbox.write_to(c)).await?;
            }
            Ok::<(), io::Error>(())
        };
        match self.idle_timeout {
            Some(limit) => tokio::time::timeout(limit, rest)
                .await
                .map_err(|_| SessionError::WriteStalled(limit))??,
            None => rest.await?,
        }
        Ok(())
    }
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
