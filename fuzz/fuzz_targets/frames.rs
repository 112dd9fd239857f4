//! The frame decoders (line, NUL, length, raw) across arbitrary chunkings: the frames must not
//! depend on how the bytes arrive, no frame is larger than the maximum, and what was decoded
//! encodes back to the bytes it came from.
//!
//! Input: one byte picks the framing, one the maximum frame size, one how many chunk sizes
//! follow, then those chunk sizes (cycled), then the stream's bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use localipc_core::{FrameCodec, FrameError, Framing};
use tokio_util::codec::Decoder;

/// What a stream decodes to: its frames, and the error that stopped it, if any.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<Bytes>,
    error: Option<String>,
}

/// Decodes `data` fed in chunks of the `sizes` given (cycled; all at once if none).
fn decode(framing: Framing, max: usize, data: &[u8], sizes: &[usize]) -> Decoded {
    let mut codec = FrameCodec::new(framing, max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = data;
    let mut sizes = sizes.iter().copied().cycle();
    let step = |codec: &mut FrameCodec, buf: &mut BytesMut, frames: &mut Vec<Bytes>, eof| loop {
        let next = if eof {
            codec.decode_eof(buf)
        } else {
            codec.decode(buf)
        };
        match next {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return Ok(()),
            Err(e) => return Err(kind(&e)),
        }
    };
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if framing == Framing::Raw {
            // In raw framing a message is what one read returns: one decode per chunk.
            if let Ok(Some(frame)) = codec.decode(&mut buf) {
                frames.push(frame);
            }
            continue;
        }
        if let Err(error) = step(&mut codec, &mut buf, &mut frames, false) {
            return Decoded {
                frames,
                error: Some(error),
            };
        }
    }
    let error = step(&mut codec, &mut buf, &mut frames, true).err();
    Decoded { frames, error }
}

/// The error's kind, without the figures that may differ (how much was buffered).
fn kind(e: &FrameError) -> String {
    match e {
        FrameError::Truncated { .. } => "truncated".into(),
        other => other.to_string(),
    }
}

fuzz_target!(|input: &[u8]| {
    let [pick, max, count, rest @ ..] = input else {
        return;
    };
    let framing = Framing::ALL[usize::from(*pick) % 4];
    let max = if *max >= 200 {
        1 << 20
    } else {
        usize::from(*max % 64)
    };
    let count = usize::from(*count % 16).min(rest.len());
    let (sizes, data) = rest.split_at(count);
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();

    let whole = decode(framing, max, data, &[]);
    let chunked = decode(framing, max, data, &sizes);
    for frame in whole.frames.iter().chain(&chunked.frames) {
        assert!(
            frame.len() <= max,
            "a frame of {} bytes over {max}",
            frame.len()
        );
    }
    if framing == Framing::Raw {
        // Boundaries are the reads; the bytes, in order, are all there, none empty.
        assert!(chunked.frames.iter().all(|f| !f.is_empty()));
        let joined: Vec<u8> = chunked.frames.concat();
        assert_eq!(joined, data[..joined.len()], "raw bytes changed");
        return;
    }
    assert_eq!(whole, chunked, "frames depend on how the bytes arrived");

    // What was decoded encodes back to the bytes it came from.
    let codec = FrameCodec::new(framing, max);
    let mut encoded = BytesMut::new();
    for frame in &whole.frames {
        codec
            .encode_slice(frame, &mut encoded)
            .expect("a decoded frame encodes");
    }
    assert_eq!(
        decode(framing, max, &encoded, &sizes),
        Decoded {
            frames: whole.frames.clone(),
            error: None
        },
        "the encoding decodes to other frames"
    );
    if whole.error.is_none() {
        match framing {
            Framing::Length => assert_eq!(&encoded[..], data),
            // The last line may have come without its delimiter.
            _ => assert!(
                &encoded[..] == data || encoded[..encoded.len() - 1] == *data,
                "the frames and their delimiters are not the stream"
            ),
        }
    }
});
