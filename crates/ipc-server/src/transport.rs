//! The seam a session runs over: read into a buffer, write a [`bytes::Buf`] without waiting,
//! wait for room to write.
//!
//! [`Connection`](crate::conn::Connection) is the implementation the server uses: an accepted
//! socket registered for read readiness only, read into uninitialised memory, written with
//! `MSG_NOSIGNAL` vectored sends. The session knows nothing of that, so it can run, in unit
//! tests, over any `AsyncRead + AsyncWrite` ([`IoTransport`], over a `tokio::io::duplex` pipe).

use std::future::Future;
use std::io;

use bytes::{Buf, BytesMut};

/// What a session needs of the byte stream it serves.
pub(crate) trait Transport: Send {
    /// Waits until data can be read, then reads what is there into `rbuf` (about `hint` bytes
    /// are expected); `Ok(0)` is the end of the stream. Cancel-safe: bytes are only taken by
    /// the poll that returns them.
    fn read(
        &mut self,
        rbuf: &mut BytesMut,
        hint: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes what the stream takes now from `buf` and advances `buf` past it, without
    /// waiting; `WouldBlock` if it takes nothing.
    fn try_write_buf<B: Buf>(&mut self, buf: &mut B) -> io::Result<usize>;

    /// Waits until the stream has room, then writes as [`try_write_buf`](Self::try_write_buf);
    /// for after a write failed with `WouldBlock`.
    fn write_buf<B: Buf + Send>(
        &mut self,
        buf: &mut B,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Drops up to `limit` bytes that the peer sent and nobody will read, without waiting,
    /// before a close for an error.
    fn discard_unread(&mut self, limit: usize);
}

#[cfg(test)]
pub(crate) use io_transport::IoTransport;

#[cfg(test)]
mod io_transport {
    use std::io::{self, IoSlice};
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use bytes::{Buf, BytesMut};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

    use super::Transport;

    /// Any `AsyncRead + AsyncWrite` as a [`Transport`]; counts its writes and the bytes it
    /// read, so tests can see how replies were coalesced and when reading stopped.
    #[derive(Debug)]
    pub(crate) struct IoTransport<S> {
        io: S,
        counters: Arc<Counters>,
    }

    /// What an [`IoTransport`] has done so far.
    #[derive(Debug, Default)]
    pub(crate) struct Counters {
        /// Write calls that wrote something.
        pub(crate) writes: AtomicUsize,
        /// Bytes read.
        pub(crate) read: AtomicUsize,
    }

    impl<S> IoTransport<S> {
        pub(crate) fn new(io: S) -> Self {
            Self {
                io,
                counters: Arc::default(),
            }
        }

        /// The counters, shared: they go on counting after the transport moves.
        pub(crate) fn counters(&self) -> Arc<Counters> {
            Arc::clone(&self.counters)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin + Send> IoTransport<S> {
        fn poll_write_some<B: Buf>(
            &mut self,
            cx: &mut Context<'_>,
            buf: &mut B,
        ) -> Poll<io::Result<usize>> {
            let mut slices = [IoSlice::new(&[]); 64];
            let count = buf.chunks_vectored(&mut slices);
            let written = std::task::ready!(
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
            )?;
            if written == 0 && buf.has_remaining() {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            buf.advance(written);
            self.counters.writes.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Ok(written))
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for IoTransport<S> {
        async fn read(&mut self, rbuf: &mut BytesMut, hint: usize) -> io::Result<usize> {
            rbuf.reserve(hint.max(4096));
            let n = self.io.read_buf(rbuf).await?;
            self.counters.read.fetch_add(n, Ordering::SeqCst);
            Ok(n)
        }

        fn try_write_buf<B: Buf>(&mut self, buf: &mut B) -> io::Result<usize> {
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            match self.poll_write_some(&mut cx, buf) {
                Poll::Ready(result) => result,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        }

        async fn write_buf<B: Buf + Send>(&mut self, buf: &mut B) -> io::Result<usize> {
            std::future::poll_fn(|cx| self.poll_write_some(cx, buf)).await
        }

        fn discard_unread(&mut self, _limit: usize) {}
    }
}
