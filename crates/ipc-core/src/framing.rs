//! Wire framing: how a byte stream is cut into messages, in both directions.
//!
//! - [`Framing::Line`]: a message is the bytes up to `\n` (the `\n` is not part of it); a reply is
//!   written followed by `\n`. Bytes are bytes: nothing is decoded as UTF-8, and a `\r` before the
//!   `\n` is kept as part of the message. A last line with no `\n` before the end of the stream is
//!   a complete message.
//! - [`Framing::Nul`]: as line framing, with a NUL byte (`\0`) in place of `\n`. This is how
//!   Varlink cuts its JSON messages.
//! - [`Framing::Length`]: a 4-byte big-endian length, then that many bytes of payload. A length of
//!   zero is an empty message. A stream that ends inside a frame is an error.
//! - [`Framing::Raw`]: no framing at all, as the classic socket programs speak: a message is
//!   whatever one read returns, and a reply is written as it is. Message boundaries are the
//!   sender's writes, so raw framing cannot pipeline.
//!
//! Every framing enforces a maximum message size before buffering it: a line that grows past the
//! maximum without a `\n`, or a length prefix larger than the maximum, is an error as soon as it
//! is seen. A length prefix is a claim by the peer, not a reason to reserve memory: the buffer
//! grows only with the bytes that actually arrive.

use std::fmt;
use std::io;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The default maximum size of one message, in bytes: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Bytes of one read in raw framing (or the maximum frame size, if smaller): in raw framing
/// a message is what one read returns.
pub const RAW_READ: usize = 64 * 1024;

/// Bytes of a length prefix.
const LENGTH_HEAD: usize = 4;

/// How messages are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Framing {
    /// A message is a line ended by `\n`.
    #[default]
    Line,
    /// A message is a 4-byte big-endian length followed by the payload.
    Length,
    /// A message is ended by a NUL byte (the framing of Varlink).
    Nul,
    /// No framing: a message is what one read returns; a reply is written as it is.
    Raw,
}

impl Framing {
    /// Every framing, in the order the flags list them.
    pub const ALL: [Framing; 4] = [Framing::Line, Framing::Length, Framing::Nul, Framing::Raw];

    /// The framing's name as the command-line flags spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Line => "line",
            Framing::Length => "length",
            Framing::Nul => "nul",
            Framing::Raw => "raw",
        }
    }

    /// Whether several messages can be in flight on one connection, their replies told apart
    /// by the framing (not so in raw framing, where message boundaries are the writes).
    pub fn can_pipeline(self) -> bool {
        !matches!(self, Framing::Raw)
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Framing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Framing::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Framing::ALL.iter().map(|f| f.as_str()).collect();
                format!(
                    "unknown framing {s:?} (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A message is larger than the maximum frame size.
    #[error("frame larger than the maximum of {max} bytes")]
    TooLarge {
        /// The maximum in force.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes of an incomplete frame left)")]
    Truncated {
        /// How many bytes of the incomplete frame were left undecoded.
        buffered: usize,
    },
    /// A message (request or reply) in line framing contains `\n`, which would split it into two messages.
    #[error("a message in line framing cannot contain a newline")]
    NewlineInMessage,
    /// A message in NUL framing contains a NUL byte, which would split it into two messages.
    #[error("a message in NUL framing cannot contain a NUL byte")]
    NulInMessage,
    /// Reading or writing the stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A tokio-util codec for any [`Framing`], with a maximum frame size in both directions.
#[derive(Debug)]
pub struct FrameCodec {
    inner: Inner,
    max: usize,
}

#[derive(Debug)]
enum Inner {
    Line {
        /// The byte that ends a message: `\n`, or NUL in NUL framing.
        end: u8,
        /// How far the buffer has been searched for `end`, so a long message is scanned once.
        searched: usize,
    },
    Length {
        /// The payload length of the frame being read, once its prefix has been taken.
        payload: Option<usize>,
    },
    Raw,
}

impl FrameCodec {
    /// A codec for `framing` that refuses messages larger than `max_frame` bytes (at most
    /// `u32::MAX`, what a 4-byte length prefix can say).
    pub fn new(framing: Framing, max_frame: usize) -> Self {
        let inner = match framing {
            Framing::Line => Inner::Line {
                end: b'\n',
                searched: 0,
            },
            Framing::Nul => Inner::Line {
                end: 0,
                searched: 0,
            },
            Framing::Length => Inner::Length { payload: None },
            Framing::Raw => Inner::Raw,
        };
        Self {
            inner,
            max: max_frame.min(u32::MAX as usize),
        }
    }

    /// The framing this codec speaks.
    pub fn framing(&self) -> Framing {
        match self.inner {
            Inner::Line { end: 0, .. } => Framing::Nul,
            Inner::Line { .. } => Framing::Line,
            Inner::Length { .. } => Framing::Length,
            Inner::Raw => Framing::Raw,
        }
    }

    /// The maximum message size, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// How many bytes a reader should ask for next, given the size of the last message: about
    /// as many as that message took on the wire (the next one is probably alike), and in raw
    /// framing, where a message is one read, [`RAW_READ`] or the maximum frame if smaller.
    pub fn read_hint(&self, last_payload: usize) -> usize {
        match self.inner {
            Inner::Line { .. } => last_payload + 1,
            Inner::Length { .. } => last_payload + LENGTH_HEAD,
            Inner::Raw => self.max.clamp(1, RAW_READ),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let max = self.max;
        match &mut self.inner {
            Inner::Line { end, searched } => {
                let start = (*searched).min(buf.len());
                match memchr::memchr(*end, &buf[start..]) {
                    Some(offset) => {
                        let len = start + offset;
                        *searched = 0;
                        if len > max {
                            return Err(FrameError::TooLarge { max });
                        }
                        let mut line = buf.split_to(len + 1);
                        line.truncate(len);
                        Ok(Some(line.freeze()))
                    }
                    None if buf.len() > max => Err(FrameError::TooLarge { max }),
                    None => {
                        *searched = buf.len();
                        Ok(None)
                    }
                }
            }
            Inner::Length { payload } => {
                let len = match *payload {
                    Some(len) => len,
                    None if buf.len() < LENGTH_HEAD => return Ok(None),
                    None => {
                        let len = buf.get_u32() as usize;
                        if len > max {
                            return Err(FrameError::TooLarge { max });
                        }
                        // No `reserve(len)`: the prefix is only a claim. The buffer grows as the
                        // payload arrives.
                        *payload = Some(len);
                        len
                    }
                };
                if buf.len() < len {
                    return Ok(None);
                }
                *payload = None;
                Ok(Some(buf.split_to(len).freeze()))
            }
            Inner::Raw if buf.is_empty() => Ok(None),
            // With a maximum of 0 no byte fits in a message: an empty frame here would take
            // nothing from the buffer, and a reader would get empty frames for ever.
            Inner::Raw if max == 0 => Err(FrameError::TooLarge { max }),
            Inner::Raw => {
                let len = buf.len().min(max);
                Ok(Some(buf.split_to(len).freeze()))
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        match self.inner {
            Inner::Line {
                ref mut searched, ..
            } if !buf.is_empty() => {
                // A last line without `\n` is a message; `decode` has already checked its size.
                *searched = 0;
                Ok(Some(buf.split().freeze()))
            }
            Inner::Length { ref mut payload } if payload.is_some() || !buf.is_empty() => {
                let head = if payload.take().is_some() {
                    LENGTH_HEAD
                } else {
                    0
                };
                let buffered = head + buf.len();
                buf.clear();
                Err(FrameError::Truncated { buffered })
            }
            _ => Ok(None),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_slice(&item, dst)
    }
}

impl FrameCodec {
    /// Appends `payload` as one frame to `dst`.
    ///
    /// # Errors
    ///
    /// As [`encode_head`](Self::encode_head); nothing is appended then.
    pub fn encode_slice(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_head(payload, dst)?;
        dst.reserve(payload.len() + self.trailer().len());
        dst.put_slice(payload);
        dst.put_slice(self.trailer());
        Ok(())
    }

    /// Checks that `payload` can go out as one frame and appends what precedes it on the wire
    /// to `dst` (the length prefix in length framing, nothing otherwise); the payload and
    /// then [`trailer`](Self::trailer) follow it. A writer can thus send a large payload from
    /// its own buffer, with a vectored write, instead of copying it.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] above the maximum frame size; [`FrameError::NewlineInMessage`]
    /// in line framing if the payload contains `\n`.
    pub fn encode_head(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if payload.len() > self.max {
            return Err(FrameError::TooLarge { max: self.max });
        }
        match self.inner {
            Inner::Line { end, .. } => {
                if memchr::memchr(end, payload).is_some() {
                    return Err(if end == 0 {
                        FrameError::NulInMessage
                    } else {
                        FrameError::NewlineInMessage
                    });
                }
            }
            // `new` caps the maximum at what the 4-byte prefix can say.
            Inner::Length { .. } => dst.put_u32(payload.len() as u32),
            Inner::Raw => {}
        }
        Ok(())
    }

    /// How many bytes [`encode_head`](Self::encode_head) appends before each payload: the
    /// length prefix in length framing, none otherwise.
    pub fn head_len(&self) -> usize {
        match self.inner {
            Inner::Length { .. } => LENGTH_HEAD,
            Inner::Line { .. } | Inner::Raw => 0,
        }
    }

    /// What follows each payload on the wire: `\n` in line framing, NUL in NUL framing,
    /// nothing otherwise.
    pub fn trailer(&self) -> &'static [u8] {
        match self.inner {
            Inner::Line { end: 0, .. } => b"\0",
            Inner::Line { .. } => b"\n",
            Inner::Length { .. } | Inner::Raw => b"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, input: &[u8]) -> Result<Vec<Bytes>, FrameError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf)? {
            out.push(f);
        }
        if let Some(f) = codec.decode_eof(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn head_len_is_what_encode_head_appends() {
        for framing in Framing::ALL {
            let codec = FrameCodec::new(framing, 1 << 20);
            let mut head = BytesMut::new();
            codec.encode_head(b"payload", &mut head).unwrap();
            assert_eq!(head.len(), codec.head_len(), "{framing}");
        }
    }

    #[test]
    fn nul_framing_cuts_at_nul_and_refuses_nul_in_replies() {
        let mut c = FrameCodec::new(Framing::Nul, 16);
        let frames = decode_all(&mut c, b"{\"a\":1}\0x\ny\0").unwrap();
        assert_eq!(frames, vec![Bytes::from("{\"a\":1}"), Bytes::from("x\ny")]);
        assert_eq!(c.framing(), Framing::Nul);
        let mut out = BytesMut::new();
        c.encode_slice(b"ok", &mut out).unwrap();
        assert_eq!(&out[..], b"ok\0");
        assert!(matches!(
            c.encode_slice(b"a\0b", &mut out),
            Err(FrameError::NulInMessage)
        ));
        let mut long = FrameCodec::new(Framing::Nul, 4);
        assert!(matches!(
            decode_all(&mut long, b"12345"),
            Err(FrameError::TooLarge { max: 4 })
        ));
    }

    #[test]
    fn line_splits_on_newline_and_keeps_cr_and_raw_bytes() {
        let mut c = FrameCodec::new(Framing::Line, 64);
        let frames = decode_all(&mut c, b"a\r\n\n\xff\xfe\nlast").unwrap();
        assert_eq!(frames, vec![&b"a\r"[..], b"", b"\xff\xfe", b"last"]);
    }

    #[test]
    fn line_waits_for_more_input_across_chunks() {
        let mut c = FrameCodec::new(Framing::Line, 64);
        let mut buf = BytesMut::from(&b"hel"[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"lo\nx");
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), "hello");
        assert_eq!(&buf[..], b"x");
    }

    #[test]
    fn line_rejects_oversize_before_the_newline_arrives() {
        let mut c = FrameCodec::new(Framing::Line, 4);
        let mut buf = BytesMut::from(&b"abcd"[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"e");
        assert!(matches!(
            c.decode(&mut buf),
            Err(FrameError::TooLarge { max: 4 })
        ));
        // Exactly the maximum is fine.
        let mut c = FrameCodec::new(Framing::Line, 4);
        assert_eq!(decode_all(&mut c, b"abcd\n").unwrap(), vec!["abcd"]);
    }

    #[test]
    fn line_encoder_appends_newline_and_refuses_embedded_ones() {
        let mut c = FrameCodec::new(Framing::Line, 8);
        let mut dst = BytesMut::new();
        c.encode(Bytes::from("hi"), &mut dst).unwrap();
        assert_eq!(&dst[..], b"hi\n");
        assert!(matches!(
            c.encode(Bytes::from("a\nb"), &mut dst),
            Err(FrameError::NewlineInMessage)
        ));
        assert!(matches!(
            c.encode(Bytes::from("123456789"), &mut dst),
            Err(FrameError::TooLarge { max: 8 })
        ));
    }

    #[test]
    fn length_round_trip_including_empty_frames() {
        let mut c = FrameCodec::new(Framing::Length, 16);
        let mut wire = BytesMut::new();
        for m in [&b"abc"[..], b"", b"\n\n"] {
            c.encode(Bytes::copy_from_slice(m), &mut wire).unwrap();
        }
        assert_eq!(&wire[..7], b"\0\0\0\x03abc");
        let frames = decode_all(&mut c, &wire).unwrap();
        assert_eq!(frames, vec![&b"abc"[..], b"", b"\n\n"]);
    }

    #[test]
    fn length_rejects_oversize_prefix_before_payload() {
        let mut c = FrameCodec::new(Framing::Length, 16);
        let mut buf = BytesMut::from(&b"\0\0\0\x11"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(FrameError::TooLarge { max: 16 })
        ));
        assert!(matches!(
            c.encode(Bytes::from(vec![0; 17]), &mut BytesMut::new()),
            Err(FrameError::TooLarge { max: 16 })
        ));
    }

    #[test]
    fn length_eof_inside_a_frame_is_an_error() {
        let mut c = FrameCodec::new(Framing::Length, 16);
        assert!(matches!(
            decode_all(&mut c, b"\0\0\0\x05ab"),
            Err(FrameError::Truncated { .. })
        ));
        let mut c = FrameCodec::new(Framing::Length, 16);
        assert!(matches!(
            decode_all(&mut c, b"\0\0"),
            Err(FrameError::Truncated { buffered: 2 })
        ));
    }

    #[test]
    fn framing_parses_and_prints() {
        assert_eq!("line".parse::<Framing>().unwrap(), Framing::Line);
        assert_eq!("length".parse::<Framing>().unwrap(), Framing::Length);
        assert_eq!("raw".parse::<Framing>().unwrap(), Framing::Raw);
        assert_eq!(
            "tlv".parse::<Framing>().unwrap_err(),
            "unknown framing \"tlv\" (expected one of: line, length, nul, raw)"
        );
        for f in Framing::ALL {
            assert_eq!(f.to_string().parse::<Framing>().unwrap(), f);
        }
    }

    #[test]
    fn a_length_prefix_reserves_nothing() {
        // The largest claim a prefix can make, with the largest maximum.
        let mut c = FrameCodec::new(Framing::Length, u32::MAX as usize);
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xffabc"[..]);
        let before = buf.capacity();
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= before,
            "capacity grew to {}",
            buf.capacity()
        );
        // The frame still completes once the payload is there, across calls.
        let mut c = FrameCodec::new(Framing::Length, 1 << 20);
        let mut buf = BytesMut::from(&b"\0\0\0\x05ab"[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() < 64);
        buf.extend_from_slice(b"cdeX");
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), "abcde");
        assert_eq!(&buf[..], b"X");
    }

    #[test]
    fn length_eof_after_the_prefix_alone_is_truncated() {
        let mut c = FrameCodec::new(Framing::Length, 16);
        assert!(matches!(
            decode_all(&mut c, b"\0\0\0\x05"),
            Err(FrameError::Truncated { buffered: 4 })
        ));
    }

    #[test]
    fn raw_takes_what_arrived_as_one_message_and_writes_replies_as_they_are() {
        let mut c = FrameCodec::new(Framing::Raw, 8);
        let mut buf = BytesMut::from(&b"texto\nwith newline"[..]);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), "texto\nwi");
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), "th newli");
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), "ne");
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(c.decode_eof(&mut buf).unwrap().is_none());
        let mut dst = BytesMut::new();
        c.encode(Bytes::from("a\nb"), &mut dst).unwrap();
        assert_eq!(&dst[..], b"a\nb");
        assert!(matches!(
            c.encode(Bytes::from("123456789"), &mut dst),
            Err(FrameError::TooLarge { max: 8 })
        ));
        assert_eq!(c.read_hint(0), 8);
        assert_eq!(
            FrameCodec::new(Framing::Raw, 1 << 20).read_hint(0),
            RAW_READ
        );
    }

    #[test]
    fn raw_with_a_maximum_of_zero_refuses_bytes_instead_of_yielding_empty_frames() {
        // Found by the `frames` fuzz target: an empty frame took nothing from the buffer, so a
        // reader got empty frames for ever.
        let mut c = FrameCodec::new(Framing::Raw, 0);
        let mut buf = BytesMut::from(&b"x"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(FrameError::TooLarge { max: 0 })
        ));
    }
}
