//! The seam a session runs over: read into a buffer (waiting or not), write a [`bytes::Buf`]
//! without waiting, wait for room to write, tell how much the peer has not taken yet, and notice
//! that the peer hung up.
//!
//! [`Connection`](crate::conn::Connection) is the implementation the server uses: an accepted
//! socket registered for read readiness only, read into uninitialised memory, written with
//! `MSG_NOSIGNAL` vectored sends. The session knows nothing of that, so it runs, in unit and
//! property tests, over an in-memory pipe ([`memory`]) that the test drives chunk by chunk.
//!
//! # The contract, for implementers
//!
//! - **Bytes in order, no boundaries.** A read returns whatever has arrived, in order; a
//!   message may span reads and a read may hold several. The session frames them.
//! - **End of stream is a half-close.** `Ok(0)` from a read means the peer sends nothing more;
//!   it may still read replies. Only [`hung_up`](Transport::hung_up) says it can take no more.
//! - **Readiness.** [`read`](Transport::read) and [`write_buf`](Transport::write_buf) wait;
//!   [`try_read`](Transport::try_read) and [`try_write_buf`](Transport::try_write_buf) never
//!   do, and say `WouldBlock`. Every waiting method is cancel-safe: bytes are only taken or
//!   written by the poll that reports them, so a session can race them in `select!`.
//! - **Progress of a slow reader.** [`unread_by_peer`](Transport::unread_by_peer) counts bytes
//!   written and not yet taken by the peer, so a peer that reads slowly but steadily is told
//!   apart from one that stopped; a transport that cannot tell returns `None`.
//! - **The close.** [`close`](Transport::close) ends a session that ended gracefully: a
//!   transport whose written bytes can still be lost at the close (TCP discards what it has
//!   not sent when the socket closes with unread input) keeps them until the peer has them,
//!   for a bounded time.
//! - **Descriptors** (for a transport that carries them): a read hands over the descriptors
//!   that came with its bytes through [`take_fds`](Transport::take_fds); the session binds
//!   them to the first message that starts in that read (see `session::inbox`); descriptors
//!   handed to [`attach_fds`](Transport::attach_fds) go with the first byte of the next write.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;

use bytes::{Buf, BytesMut};

#[cfg(test)]
pub(crate) mod memory;

/// What a session needs of the byte stream it serves; see the [module docs](self) for the
/// contract.
pub(crate) trait Transport: Send {
    /// Waits until data can be read, then reads what is there into `rbuf` (about `hint` bytes
    /// are expected); `Ok(0)` is the end of the stream. Cancel-safe: bytes are only taken by
    /// the poll that returns them.
    fn read(
        &mut self,
        rbuf: &mut BytesMut,
        hint: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Reads what has already arrived into `rbuf`, without waiting: `WouldBlock` if nothing
    /// has, `Ok(0)` at the end of the stream. What a graceful stop reads before it closes.
    fn try_read(&mut self, rbuf: &mut BytesMut, hint: usize) -> io::Result<usize>;

    /// Writes what the stream takes now from `buf` and advances `buf` past it, without
    /// waiting; `WouldBlock` if it takes nothing.
    fn try_write_buf<B: Buf>(&mut self, buf: &mut B) -> io::Result<usize>;

    /// Waits until the stream has room, then writes as [`try_write_buf`](Self::try_write_buf);
    /// for after a write failed with `WouldBlock`.
    fn write_buf<B: Buf + Send>(
        &mut self,
        buf: &mut B,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Bytes written that the peer has not taken yet, if the transport can tell. It goes down
    /// as the peer reads, which is how a slow reader is told apart from a stalled one.
    fn unread_by_peer(&self) -> Option<usize>;

    /// Completes once the peer has closed its end entirely (it can take no more replies), not
    /// merely shut down its sending side. Cancel-safe. For a session that is not reading (a
    /// stream is being sent) and must still notice a peer that walked away.
    fn hung_up(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Drops up to `limit` bytes that the peer sent and nobody will read, without waiting,
    /// before a close for an error.
    fn discard_unread(&mut self, limit: usize);

    /// Whether [`close`](Self::close) has anything to do.
    const LINGERS: bool = false;

    /// Ends the connection after a graceful end of its session, once every byte written has
    /// reached the peer (or a bounded time has passed). Nothing to do by default: a Unix
    /// socket's bytes are in the peer's queue as soon as they are written.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// The descriptors that came with the bytes of the last read, if any. A transport that
    /// carries none returns `None`.
    fn take_fds(&mut self) -> Option<Vec<OwnedFd>> {
        None
    }

    /// Sends `fds` with the first byte of the next write that writes something (they are
    /// closed here once sent, or when the transport is dropped). A transport that carries
    /// none says `Unsupported`.
    fn attach_fds(&mut self, fds: Vec<OwnedFd>) -> io::Result<()> {
        drop(fds);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport carries no descriptors",
        ))
    }
}

/// Why descriptors sent to the server were refused (the connection then ends, and every one
/// of them is closed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FdError {
    #[error("{got} descriptors came with one message; at most {max} are accepted")]
    TooMany { got: usize, max: usize },
    #[error("more descriptors came with one message than the kernel could hand over (MSG_CTRUNC)")]
    Truncated,
    #[error("descriptors arrived in the middle of a message; they must come with its first byte")]
    MidMessage,
    #[error("more than {max} descriptors were sent ahead of the requests they come with")]
    Backlog { max: usize },
}

impl From<FdError> for io::Error {
    fn from(e: FdError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}
