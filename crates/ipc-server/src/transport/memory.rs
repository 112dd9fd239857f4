//! An in-memory [`Transport`] and its peer, for unit and property tests of the session.
//!
//! The peer decides exactly how bytes arrive: every write of the peer is one chunk, and one
//! read of the session takes at most one chunk, so a test (or a property) chooses every read
//! split. It behaves as a Unix stream socket does where the session can tell: a half-close
//! ([`Peer`]'s `shutdown`) ends the session's reads but not its writes; dropping the peer hangs
//! up (writes fail with `BrokenPipe`, [`Transport::hung_up`] completes); a full pipe takes a
//! write only once the peer has taken most of it (Linux reports a Unix socket writable when
//! three quarters of its send buffer has drained), and counts what the peer has not read.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Transport;

/// A connected pair: the session's end, and the peer's, which holds at most `capacity` bytes
/// of replies it has not read.
pub(crate) fn pair(capacity: usize) -> (MemoryTransport, Peer) {
    let shared = Arc::new(Mutex::new(Shared {
        capacity: capacity.max(1),
        ..Shared::default()
    }));
    let counters = Arc::new(Counters::default());
    (
        MemoryTransport {
            shared: Arc::clone(&shared),
            counters,
            attached: None,
        },
        Peer { shared },
    )
}

/// What the two ends share.
#[derive(Debug, Default)]
struct Shared {
    /// Chunks the peer wrote and the session has not read, oldest first.
    to_session: VecDeque<Bytes>,
    /// Their bytes: the peer's writes wait while `capacity` bytes are unread.
    to_session_len: usize,
    /// Reply bytes the session wrote and the peer has not read.
    to_peer: BytesMut,
    capacity: usize,
    /// The peer shut down its sending side.
    peer_shut_down: bool,
    /// The peer was dropped.
    peer_gone: bool,
    /// The session's end was dropped.
    session_gone: bool,
    /// Reply bytes the session wrote, in all.
    written: usize,
    /// Where in the replies descriptors came (the byte they came with), and how many.
    fds: Vec<(usize, usize)>,
    session_waker: Option<Waker>,
    peer_waker: Option<Waker>,
    peer_write_waker: Option<Waker>,
}

impl Shared {
    fn wake_session(&mut self) {
        if let Some(waker) = self.session_waker.take() {
            waker.wake();
        }
    }

    fn wake_peer(&mut self) {
        for waker in [self.peer_waker.take(), self.peer_write_waker.take()]
            .into_iter()
            .flatten()
        {
            waker.wake();
        }
    }

    fn pop_chunk(&mut self) -> Option<Bytes> {
        let chunk = self.to_session.pop_front()?;
        self.to_session_len -= chunk.len();
        Some(chunk)
    }
}

/// What the session's end has done so far, shared so that it can be read after the transport
/// moved into a session.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Write calls that wrote something.
    pub(crate) writes: AtomicUsize,
    /// Bytes read.
    pub(crate) read: AtomicUsize,
}

/// The session's end.
#[derive(Debug)]
pub(crate) struct MemoryTransport {
    shared: Arc<Mutex<Shared>>,
    counters: Arc<Counters>,
    /// Descriptors to go with the first byte of the next write.
    attached: Option<Vec<std::os::fd::OwnedFd>>,
}

impl MemoryTransport {
    /// The counters, shared: they go on counting after the transport moves.
    pub(crate) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .expect("the pipe's lock is never poisoned")
    }

    /// One read, or `None` if nothing has arrived.
    fn read_now(&self, rbuf: &mut BytesMut) -> Option<usize> {
        let mut shared = self.lock();
        match shared.pop_chunk() {
            Some(chunk) => {
                rbuf.extend_from_slice(&chunk);
                self.counters.read.fetch_add(chunk.len(), Ordering::SeqCst);
                shared.wake_peer();
                Some(chunk.len())
            }
            None if shared.peer_shut_down || shared.peer_gone => Some(0),
            None => None,
        }
    }

    /// One write of what fits, without waiting.
    fn write_now<B: Buf>(&mut self, buf: &mut B) -> io::Result<usize> {
        let mut shared = self
            .shared
            .lock()
            .expect("the pipe's lock is never poisoned");
        if shared.peer_gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let room = shared.capacity.saturating_sub(shared.to_peer.len());
        if room == 0 && buf.has_remaining() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut written = 0;
        while written < room && buf.has_remaining() {
            let chunk = buf.chunk();
            let n = chunk.len().min(room - written);
            shared.to_peer.extend_from_slice(&chunk[..n]);
            buf.advance(n);
            written += n;
        }
        if written > 0 {
            if let Some(fds) = self.attached.take() {
                let at = shared.written;
                shared.fds.push((at, fds.len()));
            }
            shared.written += written;
            self.counters.writes.fetch_add(1, Ordering::SeqCst);
            shared.wake_peer();
        }
        Ok(written)
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let mut shared = self.lock();
        shared.session_gone = true;
        shared.wake_peer();
    }
}

impl Transport for MemoryTransport {
    async fn read(&mut self, rbuf: &mut BytesMut, _hint: usize) -> io::Result<usize> {
        std::future::poll_fn(|cx| match self.read_now(rbuf) {
            Some(n) => Poll::Ready(Ok(n)),
            None => {
                self.lock().session_waker = Some(cx.waker().clone());
                // A chunk may have come between the look and the registration.
                match self.read_now(rbuf) {
                    Some(n) => Poll::Ready(Ok(n)),
                    None => Poll::Pending,
                }
            }
        })
        .await
    }

    fn try_read(&mut self, rbuf: &mut BytesMut, _hint: usize) -> io::Result<usize> {
        self.read_now(rbuf)
            .ok_or_else(|| io::ErrorKind::WouldBlock.into())
    }

    fn try_write_buf<B: Buf>(&mut self, buf: &mut B) -> io::Result<usize> {
        self.write_now(buf)
    }

    async fn write_buf<B: Buf + Send>(&mut self, buf: &mut B) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            let mut shared = self.lock();
            // Writable once three quarters of the pipe have drained, as a Unix socket is.
            let writable = shared.to_peer.len() * 4 <= shared.capacity;
            if !writable && !shared.peer_gone {
                shared.session_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            drop(shared);
            match self.write_now(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.lock().session_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                result => Poll::Ready(result),
            }
        })
        .await
    }

    fn unread_by_peer(&self) -> Option<usize> {
        Some(self.lock().to_peer.len())
    }

    async fn hung_up(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut shared = self.lock();
            if shared.peer_gone {
                Poll::Ready(Ok(()))
            } else {
                shared.session_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    fn discard_unread(&mut self, limit: usize) {
        let mut shared = self.lock();
        let mut dropped = 0;
        while dropped < limit {
            let Some(chunk) = shared.pop_chunk() else {
                break;
            };
            dropped += chunk.len();
        }
    }

    /// Records where the descriptors go (they are closed then): see [`Peer::fds_received`].
    fn attach_fds(&mut self, fds: Vec<std::os::fd::OwnedFd>) -> io::Result<()> {
        self.attached = Some(fds);
        Ok(())
    }
}

/// The peer's end: every write is one chunk for the session; `shutdown` is a half-close;
/// dropping it hangs up.
#[derive(Debug)]
pub(crate) struct Peer {
    shared: Arc<Mutex<Shared>>,
}

impl Peer {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .expect("the pipe's lock is never poisoned")
    }

    /// Where in the replies descriptors came so far (the offset of the byte they came with),
    /// and how many each time.
    pub(crate) fn fds_received(&self) -> Vec<(usize, usize)> {
        self.lock().fds.clone()
    }

    /// Bytes of replies written and not read yet by this peer.
    pub(crate) fn unread(&self) -> usize {
        self.lock().to_peer.len()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let mut shared = self.lock();
        shared.peer_gone = true;
        shared.wake_session();
    }
}

impl AsyncRead for Peer {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut shared = self.lock();
        if shared.to_peer.is_empty() {
            if shared.session_gone {
                return Poll::Ready(Ok(()));
            }
            shared.peer_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.remaining().min(shared.to_peer.len());
        buf.put_slice(&shared.to_peer.split_to(n));
        shared.wake_session();
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer {
    /// One chunk of at most what the session has room for (`capacity` unread bytes).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = self.lock();
        if shared.session_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if shared.peer_shut_down {
            return Poll::Ready(Err(io::Error::other("write after shutdown")));
        }
        let room = shared.capacity.saturating_sub(shared.to_session_len);
        if room == 0 && !buf.is_empty() {
            shared.peer_write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(room);
        if n > 0 {
            shared
                .to_session
                .push_back(Bytes::copy_from_slice(&buf[..n]));
            shared.to_session_len += n;
            shared.wake_session();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = self.lock();
        shared.peer_shut_down = true;
        shared.wake_session();
        Poll::Ready(Ok(()))
    }
}
