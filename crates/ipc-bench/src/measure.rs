//! What a load run measures and checks, shared by both load generators (the tokio one in
//! `load` and the lean one in `lean`): the settings, the counters, the requests with their
//! unique counters, and the check of each reply against its request.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use localipc_core::Framing;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in all.
    Msgs(u64),
    /// After this long.
    Duration(Duration),
}

/// The message protocol of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// Opaque messages, echoed.
    #[default]
    Plain,
    /// Varlink calls of `io.ipc.Messages.Echo` (NUL framing).
    Varlink,
}

/// The start of every Varlink request, before the payload.
const VARLINK_HEAD: &[u8] = br#"{"method":"io.ipc.Messages.Echo","parameters":{"message":""#;
/// The end of every Varlink request, after the payload.
const VARLINK_TAIL: &[u8] = b"\"}}\0";
/// The start of a compact Varlink echo reply (ours, zlink's), before the payload.
const VARLINK_REPLY_HEAD: &[u8] = br#"{"parameters":{"message":""#;
/// The end of a compact Varlink echo reply, after the payload.
const VARLINK_REPLY_TAIL: &[u8] = br#""}}"#;

/// An echo reply in Varlink, borrowing the message.
#[derive(serde::Deserialize)]
struct VarlinkReply<'a> {
    #[serde(borrow)]
    parameters: VarlinkMessage<'a>,
}

#[derive(serde::Deserialize)]
struct VarlinkMessage<'a> {
    message: &'a str,
}

/// What to send and how.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The message protocol (Varlink takes NUL framing, whatever `framing` says).
    pub protocol: Protocol,
    /// Server socket.
    pub socket: PathBuf,
    /// Framing the server speaks.
    pub framing: Framing,
    /// Concurrent connections.
    pub conns: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Request size in bytes.
    pub size: usize,
    /// When to stop.
    pub stop: Stop,
    /// Connect, send one request, read the reply and close, for every request.
    pub oneshot: bool,
    /// Check that each reply equals its request (an echo server); otherwise only count.
    pub verify: bool,
    /// The lean client (module `lean`): one thread, sockets registered for read readiness
    /// only, so the load generator costs the machine what a hand-written epoll client does.
    /// Unix sockets only.
    pub lean: bool,
    /// For a `tcp:` address in `socket`: how to reach it (TLS, or plain to loopback).
    pub tcp: Option<localipc_client::TcpOptions>,
}

/// Everything one run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// Replies received and accepted.
    pub msgs: u64,
    /// Request plus reply payload bytes moved.
    pub bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Round-trip latency of each request, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Requests whose connection ended before their reply.
    pub lost: u64,
    /// Replies that belonged to another request of the same connection.
    pub reordered: u64,
    /// Replies that matched no request.
    pub corrupted: u64,
    /// Connections that failed (connect or I/O errors).
    pub io_errors: u64,
}

impl LoadReport {
    /// Replies per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64()
    }

    /// Payload megabytes (10^6) per second, both directions.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    /// Latency at quantile `q` (0.5, 0.99...), in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e3
    }

    /// Whether every reply was right and nothing was lost.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.reordered == 0 && self.corrupted == 0 && self.io_errors == 0
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The settings make no sense.
    #[error("invalid load settings: {0}")]
    Invalid(String),
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Smallest request that holds the 16-digit counter.
pub const MIN_SIZE: usize = 16;

/// What every connection of one run shares: the request budget and connection numbers.
pub(crate) struct Shared {
    remaining: AtomicI64,
    deadline: Option<Instant>,
    next_conn: AtomicU64,
}

impl Shared {
    /// The budget of a run that starts at `start` and ends as `stop` says.
    pub(crate) fn new(stop: Stop, start: Instant) -> Self {
        Self {
            remaining: AtomicI64::new(match stop {
                Stop::Msgs(n) => n as i64,
                Stop::Duration(_) => i64::MAX,
            }),
            deadline: match stop {
                Stop::Duration(d) => Some(start + d),
                Stop::Msgs(_) => None,
            },
            next_conn: AtomicU64::new(0),
        }
    }

    /// A number for a new connection.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes one request's worth of budget; false when the run is over.
    pub(crate) fn take(&self) -> bool {
        if let Some(deadline) = self.deadline {
            return Instant::now() < deadline;
        }
        self.remaining.fetch_sub(1, Ordering::Relaxed) > 0
    }
}

/// What one connection (or the lean client) counted.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) msgs: u64,
    pub(crate) bytes: u64,
    pub(crate) lost: u64,
    pub(crate) reordered: u64,
    pub(crate) corrupted: u64,
    pub(crate) io_errors: u64,
}

impl LoadConfig {
    /// The framing on the wire.
    pub(crate) fn wire_framing(&self) -> Framing {
        match self.protocol {
            Protocol::Plain => self.framing,
            Protocol::Varlink => Framing::Nul,
        }
    }

    /// Appends the framed request for `counter` to `wbuf`, without allocating.
    pub(crate) fn put_request(&self, wbuf: &mut BytesMut, counter: u64) {
        match self.protocol {
            Protocol::Plain => put_request(wbuf, self.framing, counter, self.size),
            Protocol::Varlink => {
                wbuf.extend_from_slice(VARLINK_HEAD);
                put_request(wbuf, Framing::Raw, counter, self.size);
                wbuf.extend_from_slice(VARLINK_TAIL);
            }
        }
    }

    /// Whether `reply` (unframed) answers the request for `counter`.
    pub(crate) fn is_reply_to(&self, reply: &[u8], counter: u64) -> bool {
        match self.protocol {
            Protocol::Plain => is_reply_to(reply, counter, self.size),
            Protocol::Varlink => {
                // The compact encoding (ours, zlink's) is checked in place; any other spacing
                // (the Python server's) is parsed.
                let message = reply
                    .strip_prefix(VARLINK_REPLY_HEAD)
                    .and_then(|rest| rest.strip_suffix(VARLINK_REPLY_TAIL));
                if message.is_some_and(|m| is_reply_to(m, counter, self.size)) {
                    return true;
                }
                serde_json::from_slice::<VarlinkReply<'_>>(reply)
                    .is_ok_and(|r| is_reply_to(r.parameters.message.as_bytes(), counter, self.size))
            }
        }
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 ns to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// The counter of request `seq` on connection `conn`.
pub(crate) fn counter(conn: u64, seq: u64) -> u64 {
    (conn << 40) | seq
}

/// The counter as the 16 hex digits that open a request.
fn hex(counter: u64) -> [u8; MIN_SIZE] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; MIN_SIZE];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((counter >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The request body: the counter, then `x` up to `size` bytes.
#[cfg(test)]
fn request(counter: u64, size: usize) -> bytes::Bytes {
    let mut body = hex(counter).to_vec();
    body.resize(size, b'x');
    bytes::Bytes::from(body)
}

/// What follows the counter in every request.
const PADDING: [u8; 256] = [b'x'; 256];

/// Appends the framed request for `counter` to `wbuf`, without allocating.
pub(crate) fn put_request(wbuf: &mut BytesMut, framing: Framing, counter: u64, size: usize) {
    if framing == Framing::Length {
        wbuf.extend_from_slice(&(size as u32).to_be_bytes());
    }
    wbuf.extend_from_slice(&hex(counter));
    let mut left = size - MIN_SIZE;
    while left > 0 {
        let n = left.min(PADDING.len());
        wbuf.extend_from_slice(&PADDING[..n]);
        left -= n;
    }
    if framing == Framing::Line {
        wbuf.extend_from_slice(b"\n");
    }
}

/// Matches `reply` with the oldest request in flight and counts it: right, reordered (it
/// belongs to another request in flight) or corrupted; records its latency.
pub(crate) fn check_reply(
    config: &LoadConfig,
    in_flight: &mut VecDeque<(u64, Instant)>,
    reply: &[u8],
    now: Instant,
    hist: &mut Histogram<u64>,
    tally: &mut Tally,
) {
    let Some((expected, sent)) = in_flight.pop_front() else {
        tally.corrupted += 1;
        return;
    };
    let _ = hist.record(now.duration_since(sent).as_nanos() as u64);
    tally.bytes += (config.size + reply.len()) as u64;
    if !config.verify || config.is_reply_to(reply, expected) {
        tally.msgs += 1;
    } else if in_flight.iter().any(|&(c, _)| config.is_reply_to(reply, c)) {
        tally.reordered += 1;
    } else {
        tally.corrupted += 1;
    }
}

/// Whether `reply` is exactly the request for `counter`.
pub(crate) fn is_reply_to(reply: &[u8], counter: u64, size: usize) -> bool {
    reply.len() == size
        && reply[..MIN_SIZE] == hex(counter)
        && reply[MIN_SIZE..]
            .chunks(PADDING.len())
            .all(|chunk| *chunk == PADDING[..chunk.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use localipc_core::FrameCodec;
    use tokio_util::codec::Decoder;

    #[test]
    fn varlink_requests_are_echo_calls_and_their_replies_verify() {
        let config = LoadConfig {
            protocol: Protocol::Varlink,
            socket: PathBuf::new(),
            framing: Framing::Line,
            conns: 1,
            pipeline: 1,
            size: 32,
            stop: Stop::Msgs(1),
            oneshot: false,
            verify: true,
            lean: false,
            tcp: None,
        };
        let mut wbuf = BytesMut::new();
        config.put_request(&mut wbuf, 7);
        let mut codec = FrameCodec::new(Framing::Nul, 1024);
        let call = codec.decode(&mut wbuf).unwrap().unwrap();
        let call: serde_json::Value = serde_json::from_slice(&call).unwrap();
        assert_eq!(call["method"], "io.ipc.Messages.Echo");
        let message = call["parameters"]["message"].as_str().unwrap().to_owned();
        assert!(is_reply_to(message.as_bytes(), 7, 32));
        // Replies with other spacing (the Python server's) verify too; others' do not.
        let reply = format!("{{\"parameters\": {{\"message\": \"{message}\"}}}}");
        assert!(config.is_reply_to(reply.as_bytes(), 7));
        assert!(!config.is_reply_to(reply.as_bytes(), 8));
        assert!(!config.is_reply_to(b"{\"error\":\"x\"}", 7));
        let compact = format!("{{\"parameters\":{{\"message\":\"{message}\"}}}}");
        assert!(config.is_reply_to(compact.as_bytes(), 7));
        assert!(!config.is_reply_to(compact.as_bytes(), 6));
        let bad = compact.replace("xxx", "xyx");
        assert!(!config.is_reply_to(bad.as_bytes(), 7));
    }

    #[test]
    fn requests_are_unique_and_sized() {
        let a = request(counter(1, 2), 64);
        let b = request(counter(2, 1), 64);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(!a.contains(&b'\n'));
        assert_eq!(&hex(0x0123_4567_89ab_cdef), b"0123456789abcdef");
    }

    #[test]
    fn framed_requests_match_the_codec_and_verify() {
        for framing in [Framing::Line, Framing::Length] {
            let mut wbuf = BytesMut::new();
            put_request(&mut wbuf, framing, 42, 300);
            let mut codec = FrameCodec::new(framing, 1024);
            let body = codec.decode(&mut wbuf).unwrap().unwrap();
            assert_eq!(body, request(42, 300));
            assert!(wbuf.is_empty());
            assert!(is_reply_to(&body, 42, 300));
            assert!(!is_reply_to(&body, 43, 300));
            let mut bad = body.to_vec();
            bad[200] = b'y';
            assert!(!is_reply_to(&bad, 42, 300));
            let mut bad_tail = body.to_vec();
            bad_tail[299] = b'y';
            assert!(!is_reply_to(&bad_tail, 42, 300));
            assert!(!is_reply_to(&body[..299], 42, 300));
        }
    }
}
