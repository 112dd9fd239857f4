//! File descriptors passed with messages (`SCM_RIGHTS` on a Unix socket): which message the
//! descriptors of a read belong to ([`FdBinder`]), and the descriptors of one call, those that
//! came with its request and those pushed for its replies (held by
//! [`Context`](crate::Context)).
//!
//! # The convention
//!
//! It is sd-varlink's, which zlink and varlink-go follow:
//! - A sender passes descriptors with the `sendmsg` that carries the first byte of the message
//!   they belong to, and starts no later message until they are out.
//! - A receiver binds the descriptors of a read to the first message that starts in that read.
//!   (The kernel may join, in one read, bytes that earlier writes sent and were not read yet
//!   with the write that carried descriptors, but never the bytes of later writes, so the
//!   message whose first byte came with them is the first that starts in that read, or, when
//!   the read began inside a message, the next one.) A read that brings descriptors and holds
//!   no message's first byte brought them in the middle of a message: a protocol error.
//! - Varlink parameters name descriptors by their index in this list, in the order sent.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

/// Descriptors read and not yet bound to their message: for a reader that decodes messages
/// from a buffer of bytes read (a server's session, a client's channel).
///
/// Tell it of each read that brought descriptors ([`received`](Self::received)), and of each
/// message taken from the front of the buffer ([`advance`](Self::advance)); then
/// [`take`](Self::take) hands out the descriptors of that message, if it has any.
#[derive(Debug, Default)]
pub struct FdBinder {
    /// Each read's descriptors with where its bytes start and end in the read buffer, oldest
    /// first.
    pending: VecDeque<(usize, usize, Vec<OwnedFd>)>,
    /// How many descriptors `pending` holds.
    held: usize,
    /// The descriptors of the message taken last.
    current: Option<Vec<OwnedFd>>,
}

/// Descriptors arrived in the middle of a message, not with its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("descriptors arrived in the middle of a message; they must come with its first byte")]
pub struct MidMessage;

impl FdBinder {
    /// A read put bytes `start..end` of the read buffer there, and brought `fds`.
    pub fn received(&mut self, start: usize, end: usize, fds: Vec<OwnedFd>) {
        if fds.is_empty() {
            return;
        }
        self.held += fds.len();
        self.pending.push_back((start, end, fds));
    }

    /// How many descriptors wait for their message.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether descriptors wait for their message.
    pub fn is_waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// A message of `taken` bytes was taken from the front of the buffer: binds the
    /// descriptors that came with its first byte to it (for [`take`](Self::take)), and moves
    /// the positions of the others. Descriptors of the message before that were not taken are
    /// closed.
    ///
    /// # Errors
    ///
    /// [`MidMessage`] if a read that brought descriptors lies wholly inside the message.
    pub fn advance(&mut self, taken: usize) -> Result<(), MidMessage> {
        self.current = None;
        if let Some((0, _, _)) = self.pending.front()
            && let Some((_, _, fds)) = self.pending.pop_front()
        {
            self.held -= fds.len();
            self.current = Some(fds);
        }
        for (start, end, _) in &mut self.pending {
            if *start < taken {
                if *end <= taken {
                    return Err(MidMessage);
                }
                // The read began inside this message: its descriptors belong to the next one.
                *start = taken;
            }
            *start -= taken;
            *end -= taken;
        }
        Ok(())
    }

    /// The descriptors of the message taken last, if any came with it.
    pub fn take(&mut self) -> Option<Vec<OwnedFd>> {
        self.current.take()
    }
}

/// The most descriptors one message can carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Why [`recv_with_fds`] failed. Descriptors received with the bytes are closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvFdsError {
    /// More descriptors came than the reader takes with one read.
    #[error("{got} descriptors came with one message; at most {max} are accepted")]
    TooMany {
        /// How many came.
        got: usize,
        /// How many are accepted.
        max: usize,
    },
    /// The kernel could not hand over every descriptor (`MSG_CTRUNC`).
    #[error("more descriptors came with one message than the kernel could hand over (MSG_CTRUNC)")]
    Truncated,
    /// The read failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One `recvmsg(2)` from `socket` into `buf`, without waiting, taking the descriptors that
/// come with the bytes (with `MSG_CMSG_CLOEXEC`, so none leaks into a child process), owned
/// from the moment they are received. Returns the bytes read and the descriptors.
///
/// # Errors
///
/// [`RecvFdsError::TooMany`] past `max` descriptors, [`RecvFdsError::Truncated`] for a
/// control message the kernel truncated (every descriptor received is closed then), or the
/// read's error (`WouldBlock` when nothing has arrived).
pub fn recv_with_fds(
    socket: impl AsFd,
    buf: &mut [u8],
    max: usize,
) -> Result<(usize, Vec<OwnedFd>), RecvFdsError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit();
        rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        socket,
        &mut [io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    // Owned at once: any return below closes them.
    let fds: Vec<OwnedFd> = control
        .drain()
        .filter_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => Some(fds),
            _ => None,
        })
        .flatten()
        .collect();
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(RecvFdsError::Truncated);
    }
    if fds.len() > max {
        return Err(RecvFdsError::TooMany {
            got: fds.len(),
            max,
        });
    }
    Ok((msg.bytes, fds))
}

/// One `sendmsg(2)` of `bytes` on `socket` with `fds` (`SCM_RIGHTS`), without waiting and
/// without `SIGPIPE`; returns how many bytes went (the descriptors go with the first of them).
///
/// # Errors
///
/// The send's error: `WouldBlock` when the socket is full, `PermissionDenied` when the peer's
/// socket refuses descriptors (`SO_PASSRIGHTS` off).
pub fn send_with_fds(
    socket: impl AsFd,
    bytes: &[io::IoSlice<'_>],
    fds: &[OwnedFd],
) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let mut space =
        vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(io::Error::other(
            "no room for the descriptors' control message",
        ));
    }
    Ok(rustix::net::sendmsg(
        socket,
        bytes,
        &mut control,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    )?)
}

/// The descriptors of one call: those of its request, each taken at most once, and those
/// pushed for its next reply.
#[derive(Debug, Default)]
pub(crate) struct CallFds {
    received: Mutex<Vec<Option<OwnedFd>>>,
    /// Most descriptors pushed per reply; 0 when the connection sends none.
    send_max: usize,
    pushed: Mutex<Vec<OwnedFd>>,
}

/// Why a descriptor could not be pushed for a reply (it is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushFdError {
    /// The server does not send descriptors (see its `send_fds` setting), or this context is
    /// not one of a call.
    #[error("this server does not send descriptors with replies")]
    NotEnabled,
    /// The reply already has as many descriptors as one message may carry.
    #[error("a reply carries at most {max} descriptors")]
    TooMany {
        /// The most one reply carries.
        max: usize,
    },
}

/// Locks `m`; a panic while it was held leaves a list of descriptors, still valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CallFds {
    pub(crate) fn new(received: Vec<OwnedFd>, send_max: usize) -> Self {
        Self {
            received: Mutex::new(received.into_iter().map(Some).collect()),
            send_max,
            pushed: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn received_count(&self) -> usize {
        lock(&self.received).len()
    }

    pub(crate) fn take_received(&self, index: usize) -> Option<OwnedFd> {
        lock(&self.received).get_mut(index).and_then(Option::take)
    }

    pub(crate) fn close_received(&self) {
        lock(&self.received)
            .iter_mut()
            .for_each(|fd| drop(fd.take()));
    }

    pub(crate) fn push(&self, fd: OwnedFd) -> Result<usize, PushFdError> {
        if self.send_max == 0 {
            return Err(PushFdError::NotEnabled);
        }
        let mut pushed = lock(&self.pushed);
        if pushed.len() >= self.send_max {
            return Err(PushFdError::TooMany { max: self.send_max });
        }
        pushed.push(fd);
        Ok(pushed.len() - 1)
    }

    /// Pushes every received descriptor not taken yet (refused ones are closed). Out of line:
    /// the usual request has none, and its handler's code stays small.
    #[cold]
    #[inline(never)]
    pub(crate) fn echo(&self) {
        let received: Vec<_> = lock(&self.received)
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for fd in received {
            let _ = self.push(fd);
        }
    }

    pub(crate) fn take_pushed(&self) -> Vec<OwnedFd> {
        std::mem::take(&mut *lock(&self.pushed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_fds(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect()
    }

    #[test]
    fn binds_a_reads_descriptors_to_the_first_message_that_starts_in_it() {
        let mut fds = FdBinder::default();
        // Three 4-, 4- and 6-byte messages; the first read brought 1 with the first, a read
        // that began in the middle of the second brought 2, for the third.
        fds.received(0, 4, some_fds(1));
        fds.received(6, 14, some_fds(2));
        assert_eq!(fds.held(), 3);
        fds.advance(4).unwrap();
        assert_eq!(fds.take().map(|f| f.len()), Some(1), "one");
        fds.advance(4).unwrap();
        assert!(fds.take().is_none(), "two came with none");
        fds.advance(6).unwrap();
        assert_eq!(fds.take().map(|f| f.len()), Some(2), "three");
        assert_eq!(fds.held(), 0);
        assert!(!fds.is_waiting());
        // A read wholly inside a message.
        fds.received(2, 5, some_fds(1));
        assert_eq!(fds.advance(8), Err(MidMessage));
    }

    #[test]
    fn pushes_up_to_the_limit_and_only_where_enabled() {
        let off = CallFds::new(Vec::new(), 0);
        assert_eq!(
            off.push(some_fds(1).remove(0)),
            Err(PushFdError::NotEnabled)
        );
        let on = CallFds::new(Vec::new(), 2);
        assert_eq!(on.push(some_fds(1).remove(0)), Ok(0));
        assert_eq!(on.push(some_fds(1).remove(0)), Ok(1));
        assert_eq!(
            on.push(some_fds(1).remove(0)),
            Err(PushFdError::TooMany { max: 2 })
        );
        assert_eq!(on.take_pushed().len(), 2);
        assert_eq!(on.push(some_fds(1).remove(0)), Ok(0), "a new reply's list");
    }
}
