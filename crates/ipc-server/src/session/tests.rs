//! The session over an in-memory pipe ([`crate::transport::memory`]): no socket involved.

use super::*;
use crate::conn::Connection;
use crate::transport::memory::{self, MemoryTransport, Peer};
use localipc_core::{BoxError, Framing, PeerCredentials, handler_fn};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("took longer than the deadline")
}

/// Echoes, waits `N` ms over `sN`, fails on `fail`, panics on `panic`.
fn moody() -> impl Handler {
    handler_fn(|req: Bytes, _ctx| async move {
        match &req[..] {
            b"fail" => return Err::<Bytes, BoxError>("no".into()),
            b"panic" => panic!("on purpose"),
            r if r.starts_with(b"s") => {
                let ms: u64 = std::str::from_utf8(&r[1..]).unwrap().parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            _ => {}
        }
        Ok(req)
    })
}

/// A session with `handler` over a pipe of `capacity` bytes; returns it and the client's end.
fn session<H: Handler>(
    handler: H,
    framing: Framing,
    concurrency: usize,
    capacity: usize,
) -> (Session<H, MemoryTransport>, Peer, Trigger) {
    let (ours, theirs) = memory::pair(capacity);
    let shutdown = Trigger::default();
    let session = Session::new(
        ours,
        Arc::new(handler),
        Context::new(1, PeerCredentials::new(0, 0, None)),
        config(framing, concurrency),
        shutdown.clone(),
        Trigger::default(),
    );
    (session, theirs, shutdown)
}

/// Settings for a test session: a 1 MiB frame limit, an idle timeout of 60 s and a request
/// timeout of 30 s.
fn config(framing: Framing, concurrency: usize) -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        framing,
        max_frame: 1 << 20,
        idle_timeout: Some(Duration::from_secs(60)),
        request_timeout: Some(Duration::from_secs(30)),
        concurrency,
        ..ServerConfig::new("unused")
    })
}

/// Runs `session`, writes `requests`, and reads exactly `expected` with the connection kept
/// open (a half-close would hide a session that waits for more bytes); then hangs up and
/// returns how the session ended.
async fn answered_while_open<H: Handler>(
    session: Session<H, MemoryTransport>,
    mut client: Peer,
    requests: &[u8],
    expected: &[u8],
) -> Outcome {
    let running = tokio::spawn(session.run());
    client.write_all(requests).await.unwrap();
    expect_replies(&mut client, expected).await;
    drop(client);
    within(running).await.unwrap()
}

async fn read_all(client: &mut Peer) -> Vec<u8> {
    let mut out = Vec::new();
    within(client.read_to_end(&mut out)).await.unwrap();
    out
}

#[tokio::test]
async fn replies_come_in_request_order_with_pipelining() {
    for concurrency in [1, 4] {
        let (session, client, _) = session(moody(), Framing::Line, concurrency, 1 << 16);
        // The first request is the slowest: with concurrency the others finish first, and
        // still their replies wait for it.
        let batch = b"s40\ns10\na\ns20\nb\n";
        let outcome = answered_while_open(session, client, batch, batch).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        assert_eq!(outcome.answered, 5);
    }
}

#[tokio::test]
async fn the_replies_of_buffered_requests_go_out_in_one_write() {
    let (mut session, client, _) = session(moody(), Framing::Line, 1, 1 << 16);
    let batch: String = (0..50).map(|i| format!("m{i}\n")).collect();
    let counters = session.conn.counters();
    Arc::make_mut(&mut session.config).idle_timeout = None;
    let outcome = answered_while_open(session, client, batch.as_bytes(), batch.as_bytes()).await;
    assert_eq!(outcome.answered, 50);
    assert_eq!(
        counters.writes.load(Ordering::SeqCst),
        1,
        "one write for 50 replies"
    );
}

#[tokio::test]
async fn a_peer_that_never_reads_stops_the_session_from_reading() {
    let (session, client, _) = session(moody(), Framing::Line, 1, 4096);
    let counters = session.conn.counters();
    let (_client_read, mut client_write) = tokio::io::split(client);
    // The client writes 8 MiB of requests and reads nothing.
    let writer = tokio::spawn(async move {
        let line = [b'x'; 1023];
        for _ in 0..8192 {
            if client_write.write_all(&line).await.is_err()
                || client_write.write_all(b"\n").await.is_err()
            {
                break;
            }
        }
    });
    let running = tokio::spawn(session.run());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = counters.read.load(Ordering::SeqCst);
    // Replies pending up to the high-water mark, plus what was read with them.
    assert!(
        read < 4 * WRITE_HIGH_WATER,
        "read {read} bytes from a peer that reads nothing"
    );
    assert!(!writer.is_finished(), "the writer was never held back");
    running.abort();
    writer.abort();
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (mut session, mut client, _) = session(moody(), Framing::Line, 1, 1 << 16);
    Arc::make_mut(&mut session.config).idle_timeout = Some(Duration::from_secs(5));
    client.write_all(b"once\n").await.unwrap();
    let started = Instant::now();
    let outcome = session.run().await;
    assert!(
        matches!(outcome.result, Err(SessionError::Idle(_))),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.answered, 1);
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(read_all(&mut client).await, b"once\n");
}

#[tokio::test]
async fn at_shutdown_every_request_already_read_is_answered() {
    for concurrency in [1, 3] {
        let (session, mut client, shutdown) = session(moody(), Framing::Line, concurrency, 1 << 16);
        let counters = session.conn.counters();
        client.write_all(b"s30\ns30\ns30\npartial").await.unwrap();
        let running = tokio::spawn(session.run());
        // Once the requests are read, shut down while the calls are running.
        within(async {
            while counters.read.load(Ordering::SeqCst) < 19 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        shutdown.fire();
        let outcome = within(running).await.unwrap();
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        assert_eq!(outcome.answered, 3);
        assert_eq!(read_all(&mut client).await, b"s30\ns30\ns30\n");
    }
}

#[tokio::test]
async fn a_failing_or_panicking_handler_lets_the_earlier_replies_out_first() {
    for concurrency in [1, 4] {
        for poison in ["fail", "panic"] {
            let (session, mut client, _) = session(moody(), Framing::Line, concurrency, 1 << 16);
            let input = format!("a\ns10\n{poison}\nz\n");
            client.write_all(input.as_bytes()).await.unwrap();
            let outcome = within(session.run()).await;
            assert!(outcome.result.is_err());
            assert_eq!(outcome.answered, 2, "{poison}, concurrency {concurrency}");
            assert_eq!(read_all(&mut client).await, b"a\ns10\n");
        }
    }
}

#[tokio::test]
async fn the_end_of_the_stream_inside_a_frame_is_an_error_after_the_replies() {
    let (session, mut client, _) = session(moody(), Framing::Length, 1, 1 << 16);
    client
        .write_all(b"\0\0\0\x02ok\0\0\0\x09par")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let outcome = within(session.run()).await;
    assert!(
        matches!(
            outcome.result,
            Err(SessionError::Frame(FrameError::Truncated { .. }))
        ),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.answered, 1);
    assert_eq!(read_all(&mut client).await, b"\0\0\0\x02ok");
}

#[tokio::test]
async fn concurrency_overlaps_the_calls_of_one_connection() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, max) = (Arc::clone(&in_flight), Arc::clone(&most));
    let handler = handler_fn(move |req: Bytes, _ctx| {
        let (now, max) = (Arc::clone(&now), Arc::clone(&max));
        async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BoxError>(req)
        }
    });
    let (session, client, _) = session(handler, Framing::Line, 3, 1 << 16);
    let batch: String = (0..12).map(|i| format!("{i}\n")).collect();
    let outcome = answered_while_open(session, client, batch.as_bytes(), batch.as_bytes()).await;
    assert_eq!(outcome.answered, 12);
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "at most, and at least, 3 at once"
    );
}

/// `count N` streams N numbered replies, `quiet` gets no reply, `live` streams one reply
/// and then waits forever; anything else is echoed.
struct Streaming;

impl Handler for Streaming {
    async fn handle(&self, request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
        let text = String::from_utf8_lossy(&request).into_owned();
        Ok(match text.split_once(' ') {
            Some(("count", n)) => {
                let n: usize = n.parse()?;
                let items = (0..n).map(|i| Ok(Bytes::from(format!("{i}"))));
                Response::Stream(ReplyStream::new(futures::stream::iter(items)))
            }
            _ if text == "quiet" => Response::Silent,
            _ if text == "live" => {
                let first = futures::stream::iter([Ok(Bytes::from("first"))]);
                let stream = first.chain(futures::stream::pending());
                Response::Stream(ReplyStream::new(stream).on_shutdown(Bytes::from("bye")))
            }
            _ => Response::Reply(request),
        })
    }
}

#[tokio::test]
async fn a_streams_replies_come_before_the_next_requests_and_silent_calls_get_none() {
    for concurrency in [1, 4] {
        let (session, client, _) = session(Streaming, Framing::Line, concurrency, 1 << 16);
        let counters = session.conn.counters();
        let mut expected = String::from("a\n0\n1\n2\nb\n");
        for i in 0..2000 {
            expected.push_str(&format!("{i}\n"));
        }
        expected.push_str("c\n");
        let requests = b"a\ncount 3\nquiet\nb\ncount 2000\nc\n";
        let outcome = answered_while_open(session, client, requests, expected.as_bytes()).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        assert_eq!(outcome.answered, 2006);
        // Replies that are ready together leave together.
        let writes = counters.writes.load(Ordering::SeqCst);
        assert!(writes <= 3, "{writes} writes for 2006 replies");
    }
}

#[tokio::test]
async fn shutdown_ends_an_open_stream_with_its_farewell_and_answers_what_follows() {
    let (session, mut client, shutdown) = session(Streaming, Framing::Line, 1, 1 << 16);
    client.write_all(b"live\nafter\n").await.unwrap();
    let running = tokio::spawn(session.run());
    let mut first = [0u8; 6];
    within(client.read_exact(&mut first)).await.unwrap();
    assert_eq!(&first, b"first\n");
    shutdown.fire();
    let outcome = within(running).await.unwrap();
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(read_all(&mut client).await, b"bye\nafter\n");
}

#[tokio::test]
async fn a_stream_that_fails_ends_the_connection_after_its_earlier_replies() {
    struct Failing;
    impl Handler for Failing {
        async fn handle(&self, _req: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
            let items: Vec<Result<Bytes, BoxError>> =
                vec![Ok(Bytes::from("one")), Err("broken".into())];
            Ok(Response::Stream(ReplyStream::new(futures::stream::iter(
                items,
            ))))
        }
    }
    let (session, mut client, _) = session(Failing, Framing::Line, 1, 1 << 16);
    client.write_all(b"go\nnever\n").await.unwrap();
    let outcome = within(session.run()).await;
    assert!(matches!(outcome.result, Err(SessionError::Handler(_))));
    assert_eq!(read_all(&mut client).await, b"one\n");
}

/// Each connection's session future is allocated once, when it is spawned. glibc serves
/// blocks up to 1,032 bytes from a per-thread cache; a larger one takes its slow path (and
/// its free, too) for every connection. The built-in handlers' sessions stay under that.
#[tokio::test]
async fn the_session_future_fits_the_allocators_thread_cache() {
    const THREAD_CACHE_MAX: usize = 1032;
    fn size<H: Handler>(handler: H) -> usize {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let session = Session::new(
            Connection::new(ours).unwrap(),
            Arc::new(handler),
            Context::new(1, PeerCredentials::new(0, 0, None)),
            config(Framing::Line, 1),
            Trigger::default(),
            Trigger::default(),
        );
        std::mem::size_of_val(&session.run())
    }
    for (name, bytes) in [
        ("echo", size(localipc_core::Echo)),
        ("ack", size(localipc_core::Ack::default())),
    ] {
        assert!(
            bytes <= THREAD_CACHE_MAX,
            "the {name} session's future is {bytes} bytes, over {THREAD_CACHE_MAX}"
        );
    }
}

/// Reads exactly `expected.len()` bytes, with the connection left open, and compares.
async fn expect_replies(client: &mut Peer, expected: &[u8]) {
    let mut got = vec![0; expected.len()];
    within(client.read_exact(&mut got)).await.unwrap();
    assert!(
        got == expected,
        "got {:?}",
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_while_the_connection_stays_open() {
    for concurrency in [1, 2, 8] {
        let (session, mut client, _) = session(moody(), Framing::Line, concurrency, 1 << 20);
        let running = tokio::spawn(session.run());
        let batch: String = (0..2000).map(|i| format!("m{i}\n")).collect();
        // One write, and no half-close: every reply must come while the client waits.
        client.write_all(batch.as_bytes()).await.unwrap();
        expect_replies(&mut client, batch.as_bytes()).await;
        client.write_all(b"a\nb\nc\n").await.unwrap();
        expect_replies(&mut client, b"a\nb\nc\n").await;
        drop(client);
        let outcome = within(running).await.unwrap();
        assert_eq!(outcome.answered, 2003, "concurrency {concurrency}");
    }
}

#[tokio::test]
async fn at_shutdown_requests_that_arrived_but_were_not_read_are_answered() {
    for concurrency in [1, 3] {
        let (session, mut client, shutdown) = session(moody(), Framing::Line, concurrency, 1 << 16);
        let running = tokio::spawn(session.run());
        client.write_all(b"first\n").await.unwrap();
        expect_replies(&mut client, b"first\n").await;
        // These arrive while the server is stopping: still in the pipe, unread.
        shutdown.fire();
        for i in 0..10 {
            client
                .write_all(format!("r{i}\n").as_bytes())
                .await
                .unwrap();
        }
        let outcome = within(running).await.unwrap();
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        let expected: String = (0..10).map(|i| format!("r{i}\n")).collect();
        assert_eq!(outcome.answered, 11, "concurrency {concurrency}");
        assert_eq!(read_all(&mut client).await, expected.as_bytes());
    }
}

#[tokio::test]
async fn a_subscriber_that_hangs_up_ends_its_session_at_once() {
    for concurrency in [1, 4] {
        let (session, mut client, _) = session(Streaming, Framing::Line, concurrency, 1 << 16);
        let running = tokio::spawn(session.run());
        client.write_all(b"live\n").await.unwrap();
        expect_replies(&mut client, b"first\n").await;
        // The stream stays quiet for ever; the client walks away.
        drop(client);
        let outcome = within(running).await.unwrap();
        assert!(
            matches!(outcome.result, Err(SessionError::HungUp)),
            "{:?}",
            outcome.result
        );
    }
}

#[tokio::test]
async fn a_half_closed_subscriber_keeps_its_stream_and_pipelined_calls_wait_for_it() {
    let (session, mut client, shutdown) = session(Streaming, Framing::Line, 1, 1 << 16);
    let running = tokio::spawn(session.run());
    client.write_all(b"live\nafter\n").await.unwrap();
    client.shutdown().await.unwrap();
    expect_replies(&mut client, b"first\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!running.is_finished(), "a half-close ended the stream");
    shutdown.fire();
    let outcome = within(running).await.unwrap();
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(read_all(&mut client).await, b"bye\nafter\n");
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_steady_reader_is_not_closed_as_stalled() {
    let (mut session, mut client, _) = session(Streaming, Framing::Line, 1, 8192);
    Arc::make_mut(&mut session.config).idle_timeout = Some(Duration::from_secs(1));
    let running = tokio::spawn(session.run());
    client.write_all(b"count 6000\n").await.unwrap();
    let expected: String = (0..6000).map(|i| format!("{i}\n")).collect();
    // 200 bytes every 100 ms: the pipe never drains to a quarter for seconds at a time.
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let mut chunk = vec![0; 200.min(expected.len() - got.len())];
        client.read_exact(&mut chunk).await.unwrap();
        got.extend_from_slice(&chunk);
        assert!(client.unread() <= 8192);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got == expected.as_bytes());
    drop(client);
    let outcome = running.await.unwrap();
    assert_eq!(outcome.answered, 6000);
}

/// Echoes, and for `fdN` pushes N descriptors with the reply; for `streamN`, streams N
/// replies `itemK`, each with K+1 descriptors.
struct Pusher;

impl Handler for Pusher {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        let null = || std::fs::File::open("/dev/null").map(std::os::fd::OwnedFd::from);
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some(n) = text.strip_prefix("stream") {
            let n: usize = n.parse()?;
            let ctx = ctx.clone();
            let items = futures::stream::iter(0..n).then(move |k| {
                let ctx = ctx.clone();
                async move {
                    for _ in 0..=k {
                        ctx.push_fd(null()?)?;
                    }
                    tokio::task::yield_now().await;
                    Ok(Bytes::from(format!("item{k}")))
                }
            });
            return Ok(Response::Stream(ReplyStream::new(items)));
        }
        if let Some(n) = text.strip_prefix("fd") {
            for _ in 0..n.parse::<usize>()? {
                ctx.push_fd(null()?)?;
            }
        }
        Ok(request.into())
    }
}

#[tokio::test]
async fn pushed_descriptors_start_a_write_with_their_replys_first_byte() {
    for concurrency in [1, 4] {
        // A small pipe: replies are written in many pieces.
        let (ours, client) = memory::pair(7);
        let config = Arc::new(ServerConfig {
            send_fds: true,
            ..(*config(Framing::Line, concurrency)).clone()
        });
        let session = Session::new(
            ours,
            Arc::new(Pusher),
            Context::new(1, PeerCredentials::new(0, 0, None)),
            config,
            Trigger::default(),
            Trigger::default(),
        );
        let running = tokio::spawn(session.run());
        let mut requests = String::new();
        let (mut replies, mut expected) = (String::new(), Vec::new());
        for i in 0..60 {
            let request = match i % 4 {
                0 => format!("fd{}", i % 5 + 1),
                1 => format!("plain{i}"),
                2 => "stream3".to_owned(),
                _ => "fd0".to_owned(),
            };
            requests.push_str(&request);
            requests.push('\n');
            if request == "stream3" {
                for k in 0..3 {
                    expected.push((replies.len(), k + 1));
                    replies.push_str(&format!("item{k}\n"));
                }
            } else {
                if let Some(n) = request.strip_prefix("fd").map(|n| n.parse().unwrap())
                    && n > 0
                {
                    expected.push((replies.len(), n));
                }
                replies.push_str(&request);
                replies.push('\n');
            }
        }
        // Written while the replies are read: the pipe holds only a few bytes.
        let (mut reader, mut writer) = tokio::io::split(client);
        let writing = tokio::spawn(async move {
            writer.write_all(requests.as_bytes()).await.unwrap();
            writer
        });
        let mut got = vec![0; replies.len()];
        within(reader.read_exact(&mut got)).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&got), replies);
        let client = reader.unsplit(within(writing).await.unwrap());
        assert_eq!(client.fds_received(), expected, "concurrency {concurrency}");
        drop(client);
        within(running).await.unwrap().result.unwrap();
    }
}

#[tokio::test]
async fn a_peer_that_reads_nothing_cannot_make_the_server_hold_descriptors() {
    // A stream whose every item carries 4 descriptors, to a peer that reads nothing: the
    // session stops polling the stream once an item with descriptors waits to be written, so
    // it holds at most one item's worth, not the 32,768 items of the 64 KiB it would
    // otherwise queue before writing.
    struct Endless(Arc<AtomicUsize>);
    impl Handler for Endless {
        async fn handle(&self, _request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
            let (made, ctx) = (Arc::clone(&self.0), ctx.clone());
            let items = futures::stream::iter(0..).map(move |_| {
                made.fetch_add(1, Ordering::SeqCst);
                for _ in 0..4 {
                    ctx.push_fd(std::fs::File::open("/dev/null")?.into())?;
                }
                Ok(Bytes::from_static(b"i"))
            });
            Ok(Response::Stream(ReplyStream::new(items)))
        }
    }
    for concurrency in [1, 4] {
        let made = Arc::new(AtomicUsize::new(0));
        let (ours, mut client) = memory::pair(64);
        let config = Arc::new(ServerConfig {
            send_fds: true,
            ..(*config(Framing::Line, concurrency)).clone()
        });
        let session = Session::new(
            ours,
            Arc::new(Endless(Arc::clone(&made))),
            Context::new(1, PeerCredentials::new(0, 0, None)),
            config,
            Trigger::default(),
            Trigger::default(),
        );
        let running = tokio::spawn(session.run());
        within(client.write_all(b"go\n")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The items the pipe took (2 bytes each; their descriptors are in flight, as in a
        // socket's buffer, where the kernel charges them) and one waiting to be written.
        let items = made.load(Ordering::SeqCst);
        assert!(
            items <= 64 / 2 + 2,
            "concurrency {concurrency}: {items} items made while the peer read nothing"
        );
        drop(client);
        within(running).await.unwrap();
    }
}
