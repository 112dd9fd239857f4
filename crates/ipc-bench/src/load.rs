//! The load generator: many connections, each keeping a number of requests in flight, every
//! reply checked against its request.
//!
//! In the plain protocol a request is the payload in the chosen framing; in Varlink it is a call
//! of `io.ipc.Messages.Echo` whose `message` is the payload, and the reply's `message` is
//! checked. Each request carries a unique counter (connection number and sequence) at its start, padded
//! to the requested size, so against an echo server a lost, reordered or corrupted reply is
//! caught and counted, never silently accepted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use ipc_core::{FrameCodec, Framing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::Decoder;

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
    pub lean: bool,
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

/// Runs the load on a single-threaded runtime in the calling thread (pin the thread to place
/// the load generator on a CPU).
///
/// # Errors
///
/// [`LoadError`] for settings that make no sense or a runtime that cannot start.
pub fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    if config.size < MIN_SIZE {
        return Err(LoadError::Invalid(format!(
            "--size must be at least {MIN_SIZE} bytes (the request counter)"
        )));
    }
    if config.conns == 0 || config.pipeline == 0 {
        return Err(LoadError::Invalid(
            "--conns and --pipeline must be at least 1".into(),
        ));
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        remaining: AtomicI64::new(match config.stop {
            Stop::Msgs(n) => n as i64,
            Stop::Duration(_) => i64::MAX,
        }),
        deadline: match config.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Msgs(_) => None,
        },
        next_conn: AtomicU64::new(0),
    });
    if config.lean {
        let measured = crate::lean::run(config, &shared)?;
        return Ok(report(start, vec![measured]));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(report(start, runtime.block_on(run_async(config, shared))))
}

async fn run_async(config: &LoadConfig, shared: Arc<Shared>) -> Vec<(Histogram<u64>, Tally)> {
    let mut tasks = Vec::with_capacity(config.conns);
    for _ in 0..config.conns {
        let (config, shared) = (config.clone(), Arc::clone(&shared));
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut tally = Tally::default();
            if config.oneshot {
                oneshot_loop(&config, &shared, &mut hist, &mut tally).await;
            } else {
                connection_loop(&config, &shared, &mut hist, &mut tally).await;
            }
            (hist, tally)
        }));
    }
    let mut results = Vec::with_capacity(config.conns);
    for task in tasks {
        results.push(task.await.expect("load task panicked"));
    }
    results
}

/// Adds up what every connection measured.
fn report(start: Instant, results: Vec<(Histogram<u64>, Tally)>) -> LoadReport {
    let mut latency = new_histogram();
    let mut total = Tally::default();
    for (hist, t) in results {
        latency.add(&hist).expect("histograms share bounds");
        total.msgs += t.msgs;
        total.bytes += t.bytes;
        total.lost += t.lost;
        total.reordered += t.reordered;
        total.corrupted += t.corrupted;
        total.io_errors += t.io_errors;
    }
    LoadReport {
        msgs: total.msgs,
        bytes: total.bytes,
        elapsed: start.elapsed(),
        latency,
        lost: total.lost,
        reordered: total.reordered,
        corrupted: total.corrupted,
        io_errors: total.io_errors,
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

async fn connection_loop(
    config: &LoadConfig,
    shared: &Shared,
    hist: &mut Histogram<u64>,
    tally: &mut Tally,
) {
    let conn = shared.next_conn();
    let mut stream = match UnixStream::connect(&config.socket).await {
        Ok(s) => s,
        Err(_) => {
            tally.io_errors += 1;
            return;
        }
    };
    let mut codec = FrameCodec::new(config.wire_framing(), config.size.max(1 << 20));
    // Counters of the requests in flight, oldest first, with the time their batch was sent.
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(config.pipeline);
    let mut wbuf = BytesMut::with_capacity(config.pipeline * (config.size + 5));
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut seq = 0u64;
    let mut done = false;
    loop {
        // Top up the pipeline and send the new requests in one write.
        let sent = Instant::now();
        while !done && in_flight.len() < config.pipeline {
            if !shared.take() {
                done = true;
                break;
            }
            let c = counter(conn, seq);
            seq += 1;
            config.put_request(&mut wbuf, c);
            in_flight.push_back((c, sent));
        }
        if !wbuf.is_empty() {
            if stream.write_all(&wbuf).await.is_err() {
                tally.io_errors += 1;
                tally.lost += in_flight.len() as u64;
                return;
            }
            wbuf.clear();
        }
        if in_flight.is_empty() {
            return;
        }
        // Read at least one reply.
        match stream.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => {
                tally.io_errors += 1;
                tally.lost += in_flight.len() as u64;
                return;
            }
            Ok(_) => {}
        }
        let now = Instant::now();
        loop {
            let reply = match codec.decode(&mut rbuf) {
                Ok(Some(reply)) => reply,
                Ok(None) => break,
                Err(_) => {
                    tally.corrupted += 1;
                    tally.lost += in_flight.len() as u64;
                    return;
                }
            };
            check_reply(config, &mut in_flight, &reply, now, hist, tally);
        }
        if rbuf.is_empty() && rbuf.capacity() < 16 * 1024 {
            rbuf.reserve(64 * 1024);
        }
    }
}

async fn oneshot_loop(
    config: &LoadConfig,
    shared: &Shared,
    hist: &mut Histogram<u64>,
    tally: &mut Tally,
) {
    let conn = shared.next_conn();
    let mut codec = FrameCodec::new(config.wire_framing(), config.size.max(1 << 20));
    let mut wbuf = BytesMut::new();
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut seq = 0u64;
    while shared.take() {
        let c = counter(conn, seq);
        seq += 1;
        let start = Instant::now();
        let mut stream = match UnixStream::connect(&config.socket).await {
            Ok(s) => s,
            Err(_) => {
                tally.io_errors += 1;
                tally.lost += 1;
                continue;
            }
        };
        wbuf.clear();
        config.put_request(&mut wbuf, c);
        if stream.write_all(&wbuf).await.is_err() {
            tally.io_errors += 1;
            tally.lost += 1;
            continue;
        }
        rbuf.clear();
        let reply = loop {
            match codec.decode(&mut rbuf) {
                Ok(Some(reply)) => break Some(reply),
                Ok(None) => {}
                Err(_) => break None,
            }
            match stream.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => break None,
                Ok(_) => {}
            }
        };
        match reply {
            Some(reply) => {
                let _ = hist.record(start.elapsed().as_nanos() as u64);
                tally.bytes += (config.size + reply.len()) as u64;
                if !config.verify || config.is_reply_to(&reply, c) {
                    tally.msgs += 1;
                } else {
                    tally.corrupted += 1;
                }
            }
            None => tally.lost += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
