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
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 8 * 1024;
/// Most bytes asked of the kernel per read, when a large frame is arriving.
const MAX_READ: usize = 256 * 1024;
/// Pending reply bytes at which the session stops handling requests and writes them out.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Buffers that grew past this (large frames) are freed rather than kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;

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
    pub(crate) stream: UnixStream,
    pub(crate) codec: FrameCodec,
    pub(crate) handler: Arc<H>,
    pub(crate) ctx: Context,
    pub(crate) idle_timeout: Option<Duration>,
    /// Cancelled when the server shuts down: finish the requests already read, then close.
    pub(crate) shutdown: CancellationToken,
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
        let mut wbuf = BytesMut::new();
        let mut last_frame = Instant::now();
        let idle = self.idle_timeout.unwrap_or(Duration::MAX);
        let idle_sleep = tokio::time::sleep_until(deadline(last_frame, idle));
        tokio::pin!(idle_sleep);
        // Created once, so its waiter is registered once rather than on every wait.
        let shutdown = self.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut eof = false;

        loop {
            // Every complete request already read gets its reply, even during shutdown.
            let mut handled = false;
            while let Some(request) = self.codec.decode(&mut rbuf)? {
                handled = true;
                self.answer(request, &mut wbuf).await?;
                *answered += 1;
                if wbuf.len() >= WRITE_HIGH_WATER {
                    self.write_out(&mut wbuf).await?;
                }
            }
            if eof {
                if let Some(request) = self.codec.decode_eof(&mut rbuf)? {
                    self.answer(request, &mut wbuf).await?;
                    *answered += 1;
                }
                self.write_out(&mut wbuf).await?;
                return Ok(());
            }
            if handled {
                last_frame = Instant::now();
            }
            self.write_out(&mut wbuf).await?;

            if rbuf.is_empty() && rbuf.capacity() > SMALL_READ {
                // Nothing half-read: give a large buffer back while we wait.
                rbuf = BytesMut::new();
            }

            tokio::select! {
                biased;
                () = &mut cancelled => return Ok(()),
                ready = self.stream.readable() => ready?,
                () = &mut idle_sleep, if self.idle_timeout.is_some() => {
                    let due = deadline(last_frame, idle);
                    if Instant::now() >= due {
                        return Err(SessionError::Idle(idle));
                    }
                    // Frames arrived since the timer was set: push it back and keep waiting.
                    idle_sleep.as_mut().reset(due);
                    continue;
                }
            }
            match self.read_some(&mut rbuf) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads what the socket holds into `rbuf`; `Ok(0)` is the end of the stream.
    ///
    /// A read that returns less than it asked for has drained the socket, so it also tells the
    /// runtime the socket is no longer readable: the next wait goes straight to epoll instead of
    /// first making a read that fails with EAGAIN, which saves a system call per exchange. This
    /// is safe with tokio's edge-triggered epoll: the readiness seen before the read is the one
    /// cleared (data that arrives later raises a new event), exactly as after a real EAGAIN.
    fn read_some(&self, rbuf: &mut BytesMut) -> io::Result<usize> {
        if rbuf.is_empty() {
            // The common case, a new small message: read into a small stack buffer and keep
            // only what arrived, so an idle connection holds no large buffer.
            let mut chunk = [0u8; SMALL_READ];
            let mut got = None;
            let result = self.stream.try_io(Interest::READABLE, || {
                let n = recv_now(&self.stream, &mut chunk)?;
                got = Some(n);
                if n > 0 && n < SMALL_READ {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            return match got {
                Some(n) => {
                    rbuf.extend_from_slice(&chunk[..n]);
                    Ok(n)
                }
                None => result,
            };
        }
        // Part of a frame is waiting: read more at once (doubling), up to a cap.
        rbuf.reserve(READ_CHUNK.max(rbuf.len()).min(MAX_READ));
        let room = rbuf.capacity() - rbuf.len();
        let mut got = None;
        let result = self.stream.try_io(Interest::READABLE, || {
            let n = self.stream.try_read_buf(rbuf)?;
            got = Some(n);
            if n > 0 && n < room {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (result, got) {
            (_, Some(n)) => Ok(n),
            (result, None) => result,
        }
    }

    /// Calls the handler for one request and queues its reply.
    async fn answer(
        &mut self,
        request: bytes::Bytes,
        wbuf: &mut BytesMut,
    ) -> Result<(), SessionError> {
        let call = AssertUnwindSafe(self.handler.handle(request, &self.ctx)).catch_unwind();
        let reply = match call.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(SessionError::Handler(e)),
            Err(panic) => return Err(SessionError::HandlerPanicked(panic_message(&panic))),
        };
        self.codec.encode(reply, wbuf)?;
        Ok(())
    }

    /// Writes every queued reply, waiting at most the idle timeout for the peer to take them.
    async fn write_out(&mut self, wbuf: &mut BytesMut) -> Result<(), SessionError> {
        if wbuf.is_empty() {
            return Ok(());
        }
        // Fast path: the socket buffer usually has room, and no timer is needed.
        let mut written = 0;
        while written < wbuf.len() {
            match self.stream.try_write(&wbuf[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if written < wbuf.len() {
            let rest = self.stream.write_all(&wbuf[written..]);
            match self.idle_timeout {
                Some(limit) => tokio::time::timeout(limit, rest)
                    .await
                    .map_err(|_| SessionError::WriteStalled(limit))??,
                None => rest.await?,
            }
        }
        if wbuf.capacity() > KEEP_CAPACITY {
            *wbuf = BytesMut::new();
        } else {
            wbuf.clear();
        }
        Ok(())
    }
}

/// Bytes of a read into the stack when no frame is half-read (more waits for the next round).
const SMALL_READ: usize = 4096;

/// `recv(2)` with `MSG_DONTWAIT` on the stream's socket.
fn recv_now(stream: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, recv};
    Ok(recv(
        std::os::fd::AsRawFd::as_raw_fd(stream),
        buf,
        MsgFlags::MSG_DONTWAIT,
    )?)
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
