//! Replies waiting to be written, in order: small ones copied together into one buffer, large
//! ones kept as they are, and all of them handed to the kernel in one vectored write. An echoed
//! 64 KiB message is thus never copied in user space.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use ipc_core::{FrameCodec, FrameError};

use crate::conn::Connection;

/// Replies at least this large are written from their own buffer instead of being copied.
const COPY_BELOW: usize = 4096;
/// Most buffers handed to one write.
const MAX_SLICES: usize = 64;
/// A coalescing buffer that grew past this is freed once written rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The replies of one connection not yet written.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Whole buffers to write before `tail`, oldest first.
    chunks: VecDeque<Bytes>,
    /// Where small replies and frame heads are copied.
    tail: BytesMut,
}

impl Outbox {
    /// Queues `reply` framed by `codec`.
    pub(crate) fn push(&mut self, codec: &FrameCodec, reply: Bytes) -> Result<(), FrameError> {
        codec.encode_head(&reply, &mut self.tail)?;
        if reply.len() < COPY_BELOW {
            self.tail.extend_from_slice(&reply);
        } else {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(reply);
        }
        self.tail.extend_from_slice(codec.trailer());
        Ok(())
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum::<usize>() + self.tail.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.tail.is_empty()
    }

    /// One write of as much as the socket takes now; `WouldBlock` if it takes nothing.
    pub(crate) fn write_to(&mut self, conn: &Connection) -> io::Result<usize> {
        if self.chunks.is_empty() {
            // Only small replies: one buffer.
            let written = conn.try_write_vectored(&[IoSlice::new(&self.tail)])?;
            self.consume(written);
            return Ok(written);
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        for chunk in self.chunks.iter().take(MAX_SLICES - 1) {
            slices[count] = IoSlice::new(chunk);
            count += 1;
        }
        if count == self.chunks.len() && !self.tail.is_empty() {
            slices[count] = IoSlice::new(&self.tail);
            count += 1;
        }
        let written = conn.try_write_vectored(&slices[..count])?;
        self.consume(written);
        Ok(written)
    }

    /// Drops the first `n` bytes, which have been written.
    fn consume(&mut self, mut n: usize) {
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
    use ipc_core::Framing;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
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

    #[tokio::test]
    async fn writes_the_same_bytes_as_the_encoder_in_any_mix_of_sizes() {
        for framing in [Framing::Line, Framing::Length] {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            let mut conn = Connection::new(ours).unwrap();
            let codec = FrameCodec::new(framing, 1 << 20);
            let replies = replies();
            let expected = encoded(framing, &replies);
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).unwrap();
                got
            });
            let mut outbox = Outbox::default();
            for r in &replies {
                outbox.push(&codec, r.clone()).unwrap();
            }
            assert_eq!(outbox.len(), expected.len());
            while !outbox.is_empty() {
                match outbox.write_to(&conn) {
                    Ok(n) => assert!(n > 0),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        conn.write_ready(|c| outbox.write_to(c)).await.unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            drop(conn);
            assert!(reader.join().unwrap() == expected, "{framing}");
        }
    }

    #[test]
    fn refuses_what_the_framing_cannot_carry() {
        let mut outbox = Outbox::default();
        let line = FrameCodec::new(Framing::Line, 8);
        assert!(matches!(
            outbox.push(&line, Bytes::from_static(b"a\nb")),
            Err(FrameError::NewlineInMessage)
        ));
        assert!(matches!(
            outbox.push(&line, Bytes::from_static(b"123456789")),
            Err(FrameError::TooLarge { max: 8 })
        ));
        let big = FrameCodec::new(Framing::Line, 1 << 20);
        assert!(matches!(
            outbox.push(&big, Bytes::from(vec![b'\n'; 10_000])),
            Err(FrameError::NewlineInMessage)
        ));
        assert!(outbox.is_empty());
    }
}
