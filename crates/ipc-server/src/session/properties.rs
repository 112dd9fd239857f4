//! Properties of the session over the in-memory pipe, for peers generated as real ones behave:
//! arbitrary requests (answered at once, later, never, as a stream, failing, panicking, large),
//! cut into arbitrary read chunks, at concurrency 1 to 8, in line and length framing, with a
//! peer that keeps its connection open while it reads, half-closes, or walks away at an
//! arbitrary point.
//!
//! Whatever the peer does: every reply the server made is written before any close, in request
//! order, each exactly once, and none after a failed request; the session ends when the peer
//! goes; the read buffer and the pending replies stay within their documented bounds.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use localipc_core::{BoxError, Context, Framing, Handler, PeerCredentials, ReplyStream, Response};
use localipc_core::{FrameCodec, Trigger};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::inbox::READ_AHEAD;
use super::{Session, WRITE_HIGH_WATER};
use crate::config::ServerConfig;
use crate::transport::memory;

/// The most bytes each session held, per thread (each property runs its sessions on one
/// thread).
pub(crate) mod peaks {
    use std::cell::Cell;

    thread_local! {
        static READ_BUFFER: Cell<usize> = const { Cell::new(0) };
        static PENDING_REPLIES: Cell<usize> = const { Cell::new(0) };
    }

    /// Notes the read buffer's length.
    pub(crate) fn read_buffer(len: usize) {
        READ_BUFFER.with(|peak| peak.set(peak.get().max(len)));
    }

    /// Notes the bytes of replies waiting to be written.
    pub(crate) fn pending_replies(len: usize) {
        PENDING_REPLIES.with(|peak| peak.set(peak.get().max(len)));
    }

    /// The peaks since the last call, and starts again from zero.
    pub(crate) fn take() -> (usize, usize) {
        (
            READ_BUFFER.with(|peak| peak.replace(0)),
            PENDING_REPLIES.with(|peak| peak.replace(0)),
        )
    }
}

/// How long (in the test's paused time) anything may take before the property fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// One request, and how the handler answers it.
#[derive(Debug, Clone)]
enum Request {
    /// Echoed at once; `pad` bytes long (more than one read's worth, when large).
    Now { pad: usize },
    /// Echoed after `ms` milliseconds.
    Later { ms: u64 },
    /// No reply.
    Silent,
    /// `n` replies, each after `ms` milliseconds (0: all ready at once).
    Stream { n: usize, ms: u64 },
    /// The handler fails: the connection closes after the replies before it.
    Fail,
    /// The handler panics: likewise.
    Panic,
    /// A subscription: one reply, then none for ever (until the peer goes).
    Forever,
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        6 => (0usize..64).prop_map(|pad| Request::Now { pad }),
        1 => (2_000usize..150_000).prop_map(|pad| Request::Now { pad }),
        3 => (0u64..30).prop_map(|ms| Request::Later { ms }),
        2 => Just(Request::Silent),
        2 => (0usize..300, prop_oneof![Just(0u64), 1u64..5]).prop_map(|(n, ms)| Request::Stream { n, ms }),
        1 => Just(Request::Fail),
        1 => Just(Request::Panic),
        1 => Just(Request::Forever),
    ]
}

impl Request {
    /// The request's text: its kind, its index (so every reply is told apart), its figures.
    fn text(&self, index: usize) -> Vec<u8> {
        let mut text = match self {
            Request::Now { pad } => format!("now {index} {}", "x".repeat(*pad)),
            Request::Later { ms } => format!("later {index} {ms}"),
            Request::Silent => format!("silent {index}"),
            Request::Stream { n, ms } => format!("stream {index} {n} {ms}"),
            Request::Fail => format!("fail {index}"),
            Request::Panic => format!("panic {index}"),
            Request::Forever => format!("forever {index}"),
        };
        text.truncate(text.trim_end().len());
        text.into_bytes()
    }

    /// Its replies, and what follows them.
    fn replies(&self, index: usize) -> (Vec<Vec<u8>>, Then) {
        match self {
            Request::Now { .. } | Request::Later { .. } => (vec![self.text(index)], Then::More),
            Request::Silent => (Vec::new(), Then::More),
            Request::Stream { n, .. } => (
                (0..*n)
                    .map(|k| format!("{index}:{k}").into_bytes())
                    .collect(),
                Then::More,
            ),
            Request::Fail | Request::Panic => (Vec::new(), Then::Close),
            Request::Forever => (vec![format!("{index}:0").into_bytes()], Then::Nothing),
        }
    }
}

/// What follows a request's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// The replies of the next request (or, after the last one, nothing until the peer goes).
    More,
    /// The server closes the connection.
    Close,
    /// Nothing, while the connection stays open.
    Nothing,
}

/// Answers the requests [`Request::text`] writes.
struct Model;

impl Handler for Model {
    async fn handle(&self, request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
        let text = std::str::from_utf8(&request)?.to_owned();
        let mut words = text.split(' ');
        let (kind, index) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let mut number = || -> Result<u64, BoxError> { Ok(words.next().unwrap_or("").parse()?) };
        match kind {
            "now" => Ok(Response::Reply(request)),
            "later" => {
                tokio::time::sleep(Duration::from_millis(number()?)).await;
                Ok(Response::Reply(request))
            }
            "silent" => Ok(Response::Silent),
            "stream" => {
                let (n, ms) = (number()?, number()?);
                let index = index.to_owned();
                let items = futures::stream::iter(0..n).then(move |k| {
                    let reply = Bytes::from(format!("{index}:{k}"));
                    async move {
                        if ms > 0 {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        Ok(reply)
                    }
                });
                Ok(Response::Stream(ReplyStream::new(items)))
            }
            "forever" => {
                let first = futures::stream::iter([Ok(Bytes::from(format!("{index}:0")))]);
                Ok(Response::Stream(ReplyStream::new(
                    first.chain(futures::stream::pending()),
                )))
            }
            "fail" => Err("failed on purpose".into()),
            "panic" => panic!("panicked on purpose"),
            _ => Err(format!("not a model request: {text}").into()),
        }
    }
}

/// What the peer does once it has written its requests.
#[derive(Debug, Clone)]
enum Ending {
    /// Keeps the connection open while it reads every reply it is owed, then hangs up.
    KeepOpen,
    /// Shuts down its sending side, then reads until the server closes.
    HalfClose,
    /// Writes only the first `chunks` chunks, reads `bytes` bytes of replies (or until the
    /// server closes), and hangs up.
    WalkAway { chunks: usize, bytes: usize },
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        2 => Just(Ending::KeepOpen),
        2 => Just(Ending::HalfClose),
        2 => (0usize..40, 0usize..20_000).prop_map(|(chunks, bytes)| Ending::WalkAway { chunks, bytes }),
    ]
}

/// One generated peer.
#[derive(Debug, Clone)]
struct Peer {
    framing: Framing,
    concurrency: usize,
    /// The pipe's capacity in each direction: a read takes at most this much.
    capacity: usize,
    requests: Vec<Request>,
    /// Sizes of the chunks the requests' bytes are cut into (cycled), each one write.
    chunks: Vec<usize>,
    ending: Ending,
}

fn peer() -> impl Strategy<Value = Peer> {
    (
        prop_oneof![Just(Framing::Line), Just(Framing::Length)],
        1usize..=8,
        prop_oneof![Just(1usize << 16), 256usize..8192],
        prop::collection::vec(request(), 1..30),
        prop::collection::vec(1usize..3000, 1..8),
        ending(),
    )
        .prop_map(
            |(framing, concurrency, capacity, requests, chunks, ending)| Peer {
                framing,
                concurrency,
                capacity,
                requests,
                chunks,
                ending,
            },
        )
}

/// `messages`, framed.
fn framed(framing: Framing, messages: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let codec = FrameCodec::new(framing, 1 << 20);
    let mut out = BytesMut::new();
    for message in messages {
        codec.encode_slice(&message, &mut out).expect("frames");
    }
    out.to_vec()
}

/// The bytes the peer must get for `requests`, and what follows them.
fn expected(framing: Framing, requests: &[Request]) -> (Vec<u8>, Then) {
    let mut replies = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let (these, then) = request.replies(index);
        replies.extend(these);
        if then != Then::More {
            return (framed(framing, replies), then);
        }
    }
    (framed(framing, replies), Then::More)
}

/// Runs one generated peer against a session, in paused time, and checks every property.
fn check(peer: Peer) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    // Nothing the peer does may hang the test: the whole run has a deadline too.
    runtime.block_on(async move {
        tokio::time::timeout(3 * DEADLINE, run(peer))
            .await
            .unwrap_or_else(|_| Err(TestCaseError::fail("the run took longer than its deadline")))
    })
}

async fn run(peer: Peer) -> Result<(), TestCaseError> {
    {
        let config = std::sync::Arc::new(ServerConfig {
            framing: peer.framing,
            max_frame: 1 << 20,
            idle_timeout: Some(Duration::from_secs(600)),
            request_timeout: Some(Duration::from_secs(600)),
            concurrency: peer.concurrency,
            ..ServerConfig::new("unused")
        });
        let (ours, theirs) = memory::pair(peer.capacity);
        let session = Session::new(
            ours,
            std::sync::Arc::new(Model),
            Context::new(1, PeerCredentials::new(0, 0, None)),
            config,
            Trigger::default(),
            Trigger::default(),
        );
        peaks::take();
        let running = tokio::spawn(session.run());
        let (mut rx, mut tx) = tokio::io::split(theirs);

        let wire = framed(
            peer.framing,
            peer.requests.iter().enumerate().map(|(i, r)| r.text(i)),
        );
        debug_assert_eq!(wire.len(), wire_len(peer.framing, &peer.requests));
        let mut cuts = Vec::new();
        let mut at = 0;
        for size in peer.chunks.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let end = (at + size).min(wire.len());
            cuts.push(wire[at..end].to_vec());
            at = end;
        }
        let (all, then) = expected(peer.framing, &peer.requests);
        let written = match peer.ending {
            Ending::WalkAway { chunks, .. } => chunks.min(cuts.len()),
            _ => cuts.len(),
        };
        // A peer that walks away is owed the replies of the requests it wrote whole.
        let sent: usize = cuts[..written].iter().map(Vec::len).sum();
        let whole = (1..=peer.requests.len())
            .take_while(|&n| wire_len(peer.framing, &peer.requests[..n]) <= sent)
            .last()
            .unwrap_or(0);
        let owed = expected(peer.framing, &peer.requests[..whole]).0.len();
        let half_close = matches!(peer.ending, Ending::HalfClose);
        // The writer runs beside the reader, as a real peer's would: a small pipe fills up.
        let writer = tokio::spawn(async move {
            for chunk in &cuts[..written] {
                if tx.write_all(chunk).await.is_err() {
                    return tx;
                }
                tokio::task::yield_now().await;
            }
            if half_close {
                let _ = tx.shutdown().await;
            }
            tx
        });

        let mut got = Vec::new();
        let read = async {
            match peer.ending {
                // Every reply it is owed, with the connection open: a server that waits for
                // more bytes, or for a close, fails here.
                Ending::KeepOpen if then != Then::Close => {
                    got.resize(all.len(), 0);
                    rx.read_exact(&mut got).await.map(|_| ())
                }
                // A half-closed subscriber keeps its subscription.
                Ending::HalfClose if then == Then::Nothing => {
                    got.resize(all.len(), 0);
                    rx.read_exact(&mut got).await.map(|_| ())
                }
                Ending::WalkAway { bytes, .. } => {
                    let mut buf = vec![0; 4096];
                    while got.len() < bytes.min(owed) {
                        let n = rx.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    Ok(())
                }
                _ => rx.read_to_end(&mut got).await.map(|_| ()),
            }
        };
        let read = tokio::time::timeout(DEADLINE, read).await;
        prop_assert!(
            read.is_ok(),
            "the peer waited more than {DEADLINE:?} for its replies: got {} of {} bytes",
            got.len(),
            all.len()
        );
        prop_assert!(read.unwrap().is_ok());
        match peer.ending {
            Ending::WalkAway { .. } => prop_assert!(
                all.starts_with(&got),
                "the replies read are not the start of those owed"
            ),
            // Everything before a failure, exactly once, in order, and nothing after it.
            _ => prop_assert!(
                got == all,
                "replies differ: got {} bytes, owed {}",
                got.len(),
                all.len()
            ),
        }
        // The peer goes, even in the middle of a write: the session ends, whatever it was
        // doing.
        writer.abort();
        match writer.await {
            Ok(tx) => drop(rx.unsplit(tx)),
            // The writer's half went with its task.
            Err(_) => drop(rx),
        }
        let outcome = tokio::time::timeout(DEADLINE, running).await;
        prop_assert!(outcome.is_ok(), "the session outlived its peer");
        let outcome = outcome.unwrap().expect("the session's task");
        if then == Then::Close && !matches!(peer.ending, Ending::WalkAway { .. }) {
            prop_assert!(
                outcome.result.is_err(),
                "a failed request did not end the session"
            );
        }

        let (read_peak, pending_peak) = peaks::take();
        let largest = wire_largest(peer.framing, &peer.requests);
        prop_assert!(
            read_peak <= largest.max(READ_AHEAD) + peer.capacity,
            "the read buffer reached {read_peak} bytes"
        );
        prop_assert!(
            pending_peak <= WRITE_HIGH_WATER + peer.concurrency * largest,
            "pending replies reached {pending_peak} bytes"
        );
        Ok(())
    }
}

/// The bytes of `requests` on the wire.
fn wire_len(framing: Framing, requests: &[Request]) -> usize {
    framed(framing, requests.iter().enumerate().map(|(i, r)| r.text(i))).len()
}

/// The largest request or reply on the wire.
fn wire_largest(framing: Framing, requests: &[Request]) -> usize {
    (0..requests.len())
        .map(|i| framed(framing, [requests[i].text(i)]).len())
        .max()
        .unwrap_or(0)
        .max(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_reply_made_reaches_the_peer_in_order_exactly_once(peer in peer()) {
        check(peer)?;
    }
}
