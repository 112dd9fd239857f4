//! The write side of a session: replies waiting to be written, in order: small ones copied together into one buffer, large
//! ones kept as they are. The queue is a [`bytes::Buf`] whose chunks go to the kernel in one
//! vectored write, so an echoed 64 KiB message is never copied in user space. It also counts
//! the replies that have left whole, which is what the server reports as answered.
//!
//! A reply may carry descriptors, which must go with its first byte: the queue marks where
//! such a reply starts, and as a [`Buf`] it stops short of the next mark, so a write ends
//! before that reply and the next write starts with it, its descriptors attached
//! ([`Outbox::take_due_fds`]).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::OwnedFd;

use bytes::{Buf, Bytes, BytesMut};
use localipc_core::{FrameCodec, FrameError, Framing};

/// Replies at least this large are written from their own buffer instead of being copied.
const COPY_BELOW: usize = 4096;
/// A coalescing buffer that grew past this is freed once written rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A reply with descriptors: where it starts, in bytes since the connection opened, and its
/// descriptors.
type Mark = (u64, Vec<OwnedFd>);

/// The replies of one connection not yet written.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// How replies are framed, and their largest size (the framing's codec is made from
    /// these when a reply is pushed: it is a few bytes, and not holding it keeps every
    /// session's future smaller).
    framing: Framing,
    max_frame: u32,
    /// Whole buffers to write before `tail`, oldest first.
    chunks: VecDeque<Bytes>,
    /// Where small replies and frame heads are copied.
    tail: BytesMut,
    /// Where each reply older than the newest and not yet written whole ends, counted in bytes
    /// since the connection opened (the newest ends at `queued`). Usually empty: a reply is most
    /// often written before the next one is queued, and then nothing is allocated here.
    older_ends: VecDeque<u64>,
    /// Replies queued since the connection opened.
    pushed: u64,
    /// Bytes queued since the connection opened: where the newest reply ends.
    queued: u64,
    /// Bytes written since the connection opened.
    written: u64,
    /// Replies with descriptors not yet written: where each starts (in bytes since the
    /// connection opened) and its descriptors, oldest first. Boxed: only servers that send
    /// descriptors have any.
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every session's future, not 32"
    )]
    marks: Option<Box<VecDeque<Mark>>>,
}

impl Outbox {
    /// An empty outbox that frames replies as `codec` does.
    pub(crate) fn new(codec: FrameCodec) -> Self {
        Self {
            framing: codec.framing(),
            // A codec's maximum is at most `u32::MAX`.
            max_frame: u32::try_from(codec.max_frame()).unwrap_or(u32::MAX),
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            older_ends: VecDeque::new(),
            pushed: 0,
            queued: 0,
            written: 0,
            marks: None,
        }
    }

    /// Queues `reply`, framed, with `fds` to go with its first byte. A reply of no bytes at
    /// all (an empty one in raw framing) cannot carry descriptors: they are closed.
    pub(crate) fn push_with_fds(
        &mut self,
        reply: Bytes,
        fds: Vec<OwnedFd>,
    ) -> Result<(), FrameError> {
        let start = self.queued;
        self.push(reply)?;
        if !fds.is_empty() && self.queued > start {
            let marks = self.marks.get_or_insert_with(Box::default);
            marks.push_back((start, fds));
        }
        Ok(())
    }

    /// The descriptors of the reply whose first byte is the next to be written, if it has
    /// any: they go with the next write, which then carries no later reply with descriptors.
    /// Whether the session should write what waits before it queues more: past the
    /// high-water mark of bytes, or holding a reply with descriptors. So at most one reply's
    /// descriptors wait here (beside those of the calls still running), and a peer that reads
    /// nothing cannot make the server hold descriptors without bound.
    #[inline]
    pub(crate) fn should_write(&self) -> bool {
        self.len() >= super::WRITE_HIGH_WATER || self.has_fds()
    }

    /// Whether replies with descriptors wait (then [`take_due_fds`](Self::take_due_fds) is
    /// called before each write).
    #[inline]
    pub(crate) fn has_fds(&self) -> bool {
        self.marks.as_ref().is_some_and(|marks| !marks.is_empty())
    }

    pub(crate) fn take_due_fds(&mut self) -> Option<Vec<OwnedFd>> {
        let marks = self.marks.as_mut()?;
        if marks.front()?.0 != self.written {
            return None;
        }
        marks.pop_front().map(|(_, fds)| fds)
    }

    /// Queues `reply`, framed.
    pub(crate) fn push(&mut self, reply: Bytes) -> Result<(), FrameError> {
        let codec = &FrameCodec::new(self.framing, self.max_frame as usize);
        let (head, trailer) = (codec.head_len(), codec.trailer());
        let copy = reply.len() < COPY_BELOW;
        // One reservation for the head, a copied reply and the trailer, instead of one each.
        let copied = if copy { reply.len() } else { 0 };
        self.tail.reserve(head + copied + trailer.len());
        codec.encode_head(&reply, &mut self.tail)?;
        if self.queued > self.written {
            // The reply before this one is not written whole yet.
            self.older_ends.push_back(self.queued);
        }
        self.queued += (head + reply.len() + trailer.len()) as u64;
        self.pushed += 1;
        if copy {
            self.tail.extend_from_slice(&reply);
        } else {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(reply);
        }
        self.tail.extend_from_slice(trailer);
        #[cfg(test)]
        super::properties::peaks::pending_replies(self.len());
        // An empty reply in raw framing is no bytes at all: written as soon as those before it.
        self.settle();
        Ok(())
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        (self.queued - self.written) as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == self.written
    }

    /// How many replies have been written whole.
    pub(crate) fn replies_sent(&self) -> u64 {
        let newest_unsent = u64::from(self.queued > self.written);
        self.pushed - self.older_ends.len() as u64 - newest_unsent
    }
}

impl Outbox {
    /// Bytes the next write may take: all that waits, or up to the start of the next reply
    /// with descriptors, which must start a write of its own (none until its descriptors
    /// are taken by [`take_due_fds`](Self::take_due_fds)). So even a writer that goes on
    /// taking chunks stops there.
    #[inline]
    fn writable_now(&self) -> usize {
        match &self.marks {
            None => self.len(),
            Some(marks) => self.before_next_mark(marks),
        }
    }

    #[cold]
    fn before_next_mark(&self, marks: &VecDeque<Mark>) -> usize {
        match marks.iter().find(|(start, _)| *start >= self.written) {
            Some((start, _)) => (start - self.written) as usize,
            None => self.len(),
        }
    }

    /// Forgets the ends of older replies that have been written whole.
    fn settle(&mut self) {
        while self
            .older_ends
            .front()
            .is_some_and(|&end| end <= self.written)
        {
            self.older_ends.pop_front();
        }
    }
}

impl Buf for Outbox {
    fn remaining(&self) -> usize {
        self.writable_now()
    }

    fn chunk(&self) -> &[u8] {
        let chunk = match self.chunks.front() {
            Some(chunk) => chunk,
            None => &self.tail[..],
        };
        if self.marks.is_none() {
            return chunk;
        }
        &chunk[..chunk.len().min(self.writable_now())]
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let slices = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
            .filter(|s| !s.is_empty());
        if self.marks.is_some() {
            // Up to the next reply with descriptors only.
            let mut room = self.writable_now();
            for (slot, slice) in dst.iter_mut().zip(slices) {
                if room == 0 {
                    break;
                }
                let slice = &slice[..slice.len().min(room)];
                room -= slice.len();
                *slot = IoSlice::new(slice);
                count += 1;
            }
            return count;
        }
        for (slot, slice) in dst.iter_mut().zip(slices) {
            *slot = IoSlice::new(slice);
            count += 1;
        }
        count
    }

    fn advance(&mut self, cnt: usize) {
        assert!(
            cnt <= self.remaining(),
            "advanced past the end of the outbox"
        );
        self.written += cnt as u64;
        let mut n = cnt;
        while n > 0 {
            let Some(chunk) = self.chunks.front_mut() else {
                self.tail.advance(n);
                break;
            };
            if n < chunk.len() {
                chunk.advance(n);
                break;
            }
            n -= chunk.len();
            self.chunks.pop_front();
        }
        self.settle();
        if self.is_empty() {
            if self.tail.capacity() > KEEP_CAPACITY {
                self.tail = BytesMut::new();
            } else {
                self.tail.clear();
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use localipc_core::Framing;
    use tokio_util::codec::Encoder;

    /// What the plain encoder would have written for these replies.
    fn encoded(framing: Framing, replies: &[Bytes]) -> Vec<u8> {
        let mut codec = FrameCodec::new(framing, 1 << 20);
        let mut out = BytesMut::new();
        for r in replies {
            codec.encode(r.clone(), &mut out).unwrap();
        }
        out.to_vec()
    }

    fn replies() -> Vec<Bytes> {
        let mut out = Vec::new();
        for i in 0..200usize {
            let size = match i % 5 {
                0 => 10,
                1 => COPY_BELOW,
                2 => 70_000,
                3 => 0,
                _ => COPY_BELOW - 1,
            };
            out.push(Bytes::from(vec![b'a' + (i % 26) as u8; size]));
        }
        out
    }

    /// Drains `outbox` the way a writer does, `step` bytes at most per write, through
    /// `chunks_vectored` (at most `slots` slices per write), taking the due descriptors
    /// before each write. Returns the bytes, and each write's start, length and descriptors.
    fn drain(outbox: &mut Outbox, step: usize, slots: usize) -> (Vec<u8>, Vec<[usize; 3]>) {
        let (mut out, mut writes) = (Vec::new(), Vec::new());
        while !outbox.is_empty() {
            let fds = outbox.take_due_fds().map_or(0, |fds| fds.len());
            let limit = outbox.remaining();
            let mut slices = vec![IoSlice::new(&[]); slots];
            let n = outbox.chunks_vectored(&mut slices);
            assert!(n > 0);
            let mut took = 0;
            for s in &slices[..n] {
                let want = (step - took).min(s.len());
                out.extend_from_slice(&s[..want]);
                took += want;
                if took == step {
                    break;
                }
            }
            assert!(took > 0 && took <= limit);
            writes.push([out.len() - took, took, fds]);
            outbox.advance(took);
        }
        (out, writes)
    }

    #[test]
    fn writes_the_same_bytes_as_the_encoder_in_any_mix_of_sizes() {
        for framing in Framing::ALL {
            for (step, slots) in [(usize::MAX, 64), (1000, 3), (7, 1), (65_536, 2)] {
                let replies = replies();
                let expected = encoded(framing, &replies);
                let mut outbox = Outbox::new(FrameCodec::new(framing, 1 << 20));
                for r in &replies {
                    outbox.push(r.clone()).unwrap();
                }
                assert_eq!(outbox.len(), expected.len());
                assert_eq!(outbox.chunk(), &expected[..outbox.chunk().len()]);
                let (got, _) = drain(&mut outbox, step, slots);
                assert!(got == expected, "{framing} step {step}");
                assert_eq!(outbox.replies_sent(), replies.len() as u64);
                assert!(outbox.is_empty());
            }
        }
    }

    #[test]
    fn descriptors_start_a_write_with_their_replys_first_byte() {
        for framing in Framing::ALL {
            for (step, slots) in [(usize::MAX, 64), (1000, 3), (7, 1)] {
                let replies = replies();
                let expected = encoded(framing, &replies);
                let mut outbox = Outbox::new(FrameCodec::new(framing, 1 << 20));
                // Every third reply carries (i % 4 + 1) descriptors; where each reply starts.
                let mut starts = Vec::new();
                let mut at = 0;
                for (i, r) in replies.iter().enumerate() {
                    let before = outbox.len();
                    let fds = if i % 3 == 0 {
                        (0..i % 4 + 1)
                            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let carries = fds.len();
                    outbox.push_with_fds(r.clone(), fds).unwrap();
                    let size = outbox.len() - before;
                    if carries > 0 && size > 0 {
                        starts.push((at, carries));
                    }
                    at += size;
                }
                let (out, writes) = drain(&mut outbox, step, slots);
                assert!(out == expected, "{framing} step {step}");
                // Each reply's descriptors start a write, and no write runs into the next
                // reply with descriptors.
                let sent: Vec<_> = writes
                    .iter()
                    .filter(|[_, _, fds]| *fds > 0)
                    .map(|&[start, _, fds]| (start, fds))
                    .collect();
                for [start, len, _] in &writes {
                    let inside = starts.iter().any(|(s, _)| s > start && *s < start + len);
                    assert!(
                        !inside,
                        "{framing} step {step}: a write over a reply's start"
                    );
                }
                assert_eq!(sent, starts, "{framing} step {step}");
            }
        }
    }

    #[test]
    fn counts_only_replies_written_whole() {
        let mut outbox = Outbox::new(FrameCodec::new(Framing::Line, 1 << 20));
        for r in ["one", "two", "three"] {
            outbox.push(Bytes::from(r)).unwrap();
        }
        outbox.advance(3); // "one" without its newline
        assert_eq!(outbox.replies_sent(), 0);
        outbox.advance(1);
        assert_eq!(outbox.replies_sent(), 1);
        outbox.advance(6); // "two\n" and "th"
        assert_eq!(outbox.replies_sent(), 2);
        assert_eq!(outbox.chunk(), b"ree\n");
        outbox.advance(4);
        assert_eq!(outbox.replies_sent(), 3);
        // An empty reply in raw framing is no bytes, and counts as written at once.
        let mut raw = Outbox::new(FrameCodec::new(Framing::Raw, 16));
        raw.push(Bytes::from("x")).unwrap();
        raw.push(Bytes::new()).unwrap();
        assert_eq!(raw.replies_sent(), 0);
        raw.advance(1);
        assert_eq!(raw.replies_sent(), 2);
    }

    #[test]
    fn refuses_what_the_framing_cannot_carry() {
        let mut outbox = Outbox::new(FrameCodec::new(Framing::Line, 8));
        assert!(matches!(
            outbox.push(Bytes::from_static(b"a\nb")),
            Err(FrameError::NewlineInMessage)
        ));
        assert!(matches!(
            outbox.push(Bytes::from_static(b"123456789")),
            Err(FrameError::TooLarge { max: 8 })
        ));
        assert!(outbox.is_empty());
        let mut big = Outbox::new(FrameCodec::new(Framing::Line, 1 << 20));
        assert!(matches!(
            big.push(Bytes::from(vec![b'\n'; 10_000])),
            Err(FrameError::NewlineInMessage)
        ));
        assert!(big.is_empty());
    }
}
