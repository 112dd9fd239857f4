//! Wire framing: how a byte stream is cut into messages, in both directions.
//!
//! - [`Framing::Line`]: a message is the bytes up to `\n` (the `\n` is not part of it); a reply is
//!   written followed by `\n`. Bytes are bytes: nothing is decoded as UTF-8, and a `\r` before the
//!   `\n` is kept as part of the message. A last line with no `\n` before the end of the stream is
//!   a complete message.
//! - [`Framing::Length`]: a 4-byte big-endian length, then that many bytes of payload. A length of
//!   zero is an empty message. A stream that ends inside a frame is an error.
//!
//! Both enforce a maximum message size before buffering it: a line that grows past the maximum
//! without a `\n`, or a length prefix larger than the maximum, is an error as soon as it is seen.

use std::fmt;
use std::io;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The default maximum size of one message, in bytes: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// How messages are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Framing {
    /// A message is a line ended by `\n`.
    #[default]
    Line,
    /// A message is a 4-byte big-endian length followed by the payload.
    Length,
}

impl Framing {
    /// The framing's name as the command-line flags spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Line => "line",
            Framing::Length => "length",
        }
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
        match s {
            "line" => Ok(Framing::Line),
            "length" => Ok(Framing::Length),
            other => Err(format!(
                "unknown framing {other:?} (expected line or length)"
            )),
        }
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
    /// Reading or writing the stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A tokio-util codec for either [`Framing`], with a maximum frame size in both directions.
#[derive(Debug)]
pub struct FrameCodec {
    inner: Inner,
    max: usize,
}

#[derive(Debug)]
enum Inner {
    Line {
        /// How far the buffer has been searched for `\n`, so a long line is scanned once.
        searched: usize,
    },
    Length(LengthDelimitedCodec),
}

impl FrameCodec {
    /// A codec for `framing` that refuses messages larger than `max_frame` bytes (at most
    /// `u32::MAX`, what a 4-byte length prefix can say).
    pub fn new(framing: Framing, max_frame: usize) -> Self {
        let max_frame = max_frame.min(u32::MAX as usize);
        let inner = match framing {
            Framing::Line => Inner::Line { searched: 0 },
            Framing::Length => Inner::Length(
                LengthDelimitedCodec::builder()
                    .length_field_length(4)
                    .big_endian()
                    .max_frame_length(max_frame)
                    .new_codec(),
            ),
        };
        Self {
            inner,
            max: max_frame,
        }
    }

    /// The framing this codec speaks.
    pub fn framing(&self) -> Framing {
        match self.inner {
            Inner::Line { .. } => Framing::Line,
            Inner::Length(_) => Framing::Length,
        }
    }

    /// The maximum message size, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    fn length_error(&self, e: io::Error) -> FrameError {
        // LengthDelimitedCodec reports an over-size frame as an io::Error wrapping its own type.
        if e.get_ref()
            .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>())
        {
            FrameError::TooLarge { max: self.max }
        } else {
            FrameError::Io(e)
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let max = self.max;
        match &mut self.inner {
            Inner::Line { searched } => {
                let start = (*searched).min(buf.len());
                match memchr::memchr(b'\n', &buf[start..]) {
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
            Inner::Length(codec) => match codec.decode(buf) {
                Ok(frame) => Ok(frame.map(BytesMut::freeze)),
                Err(e) => Err(self.length_error(e)),
            },
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        match self.inner {
            Inner::Line { ref mut searched } => {
                // A last line without `\n` is a message; `decode` has already checked its size.
                *searched = 0;
                Ok(Some(buf.split().freeze()))
            }
            Inner::Length(_) => Err(FrameError::Truncated {
                buffered: buf.len(),
            }),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_head(&item, dst)?;
        dst.reserve(item.len() + self.trailer().len());
        dst.put_slice(&item);
        dst.put_slice(self.trailer());
        Ok(())
    }
}

impl FrameCodec {
    /// Checks that `payload` can go out as one frame and appends what precedes it on the wire
    /// to `dst` (the length prefix in length framing, nothing in line framing); the payload and
    /// then [`trailer`](Self::trailer) follow it. A writer can thus send a large payload from
    /// its own buffer, with a vectored write, instead of copying it as [`Encoder::encode`] does.
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
            Inner::Line { .. } => {
                if memchr::memchr(b'\n', payload).is_some() {
                    return Err(FrameError::NewlineInMessage);
                }
            }
            // `new` caps the maximum at what the 4-byte prefix can say.
            Inner::Length(_) => dst.put_u32(payload.len() as u32),
        }
        Ok(())
    }

    /// What follows each payload on the wire: `\n` in line framing, nothing in length framing.
    pub fn trailer(&self) -> &'static [u8] {
        match self.inner {
            Inner::Line { .. } => b"\n",
            Inner::Length(_) => b"",
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
        assert!("tlv".parse::<Framing>().is_err());
        assert_eq!(Framing::Length.to_string(), "length");
    }
}
