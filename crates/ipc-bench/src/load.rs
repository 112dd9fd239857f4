//! The load generator: many connections, each keeping a number of requests in flight, every
//! reply checked against its request.
//!
//! In the plain protocol a request is the payload in the chosen framing; in Varlink it is a call
//! of `io.ipc.Messages.Echo` whose `message` is the payload, and the reply's `message` is
//! checked. Each request carries a unique counter (connection number and sequence) at its start, padded
//! to the requested size, so against an echo server a lost, reordered or corrupted reply is
//! caught and counted, never silently accepted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use localipc_core::FrameCodec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::Decoder;

pub use crate::measure::{LoadConfig, LoadError, LoadReport, MIN_SIZE, Protocol, Stop};
use crate::measure::{Shared, Tally, check_reply, counter, new_histogram};

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
    let shared = Arc::new(Shared::new(config.stop, start));
    if config.lean && config.tcp.is_none() {
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
/// Connects to the server under load: its Unix socket, or, with [`LoadConfig::tcp`], its
/// `tcp:` address.
async fn open(config: &LoadConfig) -> Option<Conn> {
    match &config.tcp {
        None => UnixStream::connect(&config.socket)
            .await
            .ok()
            .map(Conn::Unix),
        Some(options) => {
            let address = localipc_core::Address::parse(&config.socket).ok()?;
            localipc_client::connect_tcp(&address, options, None)
                .await
                .ok()
                .map(|c| Conn::Tcp(Box::new(c)))
        }
    }
}

/// A connection of the load: each kind is served by its own copy of the loops.
enum Conn {
    Unix(UnixStream),
    Tcp(Box<localipc_client::Connection>),
}

async fn connection_loop(
    config: &LoadConfig,
    shared: &Shared,
    hist: &mut Histogram<u64>,
    tally: &mut Tally,
) {
    match open(config).await {
        Some(Conn::Unix(stream)) => exchange(stream, config, shared, hist, tally).await,
        Some(Conn::Tcp(stream)) => exchange(*stream, config, shared, hist, tally).await,
        None => tally.io_errors += 1,
    }
}

/// Keeps `config.pipeline` requests in flight on `stream` until the load stops.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    config: &LoadConfig,
    shared: &Shared,
    hist: &mut Histogram<u64>,
    tally: &mut Tally,
) {
    let conn = shared.next_conn();
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
            // Flushed: TLS may keep records the socket did not take (nothing on a Unix one).
            if stream.write_all(&wbuf).await.is_err() || stream.flush().await.is_err() {
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
        wbuf.clear();
        config.put_request(&mut wbuf, c);
        rbuf.clear();
        let reply = match open(config).await {
            Some(Conn::Unix(stream)) => one_exchange(stream, &wbuf, &mut rbuf, &mut codec).await,
            Some(Conn::Tcp(stream)) => one_exchange(*stream, &wbuf, &mut rbuf, &mut codec).await,
            None => {
                tally.io_errors += 1;
                tally.lost += 1;
                continue;
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

/// Sends `request` on `stream` and reads its reply (`None` if the connection fails first).
async fn one_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    rbuf: &mut BytesMut,
    codec: &mut FrameCodec,
) -> Option<bytes::Bytes> {
    stream.write_all(request).await.ok()?;
    stream.flush().await.ok()?;
    loop {
        match codec.decode(rbuf) {
            Ok(Some(reply)) => return Some(reply),
            Ok(None) => {}
            Err(_) => return None,
        }
        match stream.read_buf(rbuf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
