//! One connection's session: read frames, call the handler for each, write the replies in order,
//! and log how the connection ended.
//!
//! Buffers are allocated only while data is moving and released while the connection waits, so
//! idle connections cost little memory; the one exception is a read buffer of up to 256 KiB kept
//! between two large messages, so a client that sends them one after another reuses it. The
//! replies of every request already buffered are written together in one `write`, which
//! matters to pipelining clients. While replies are being
//! written the session reads nothing, so a client that never reads cannot make it buffer without
//! bound.
//!
//! Nothing is lost at a close: whatever ends the session (a handler error, panic or timeout, a
//! bad frame after good ones, shutdown), the replies already made are written first, and the
//! count logged as `answered` is the number of replies that were written whole.
//!
//! With a concurrency above 1, up to that many requests of the connection are handled at once
//! (their calls run interleaved on the session's task); replies still leave in request order.
//! The session runs over any [`Transport`], so all of this is unit-tested over an in-memory pipe.
//!
//! Every connection costs one allocation of the session's future, so the future is kept small
//! (about 1 KiB for the built-in handlers, inside glibc's per-thread cache; a test holds it
//! there): the rare paths (a stream, a call that does not answer at once, a full socket,
//! concurrency above 1, the idle timer) are boxed, and the session registers once for the
//! server's stop signals, in [`Session::run`]; the exchanges only read the shutdown flag when
//! they are polled. A forced shutdown drops the session where it stands.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use ipc_core::{BoxError, Context, FrameCodec, FrameError, Handler, ReplyStream, Response};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, info, warn};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use ipc_core::Trigger;

use crate::config::ServerConfig;
use crate::conn::{Connection, SMALL_READ};
use crate::idle::IdleTimer;
use crate::outbox::Outbox;
use crate::transport::Transport;

/// Pending reply bytes at which the session stops handling requests and writes them out.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Largest read buffer kept between two large messages (see [`should_release`]).
const KEEP_READ_BUFFER: usize = 256 * 1024;
/// Most unread bytes dropped before closing a connection for an error (see
/// [`Connection::discard_unread`]).
const DISCARD_LIMIT: usize = 256 * 1024;

/// Why a session ended other than by a clean close.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("handler failed: {0}")]
    Handler(BoxError),
    #[error("handler panicked: {0}")]
    HandlerPanicked(String),
    #[error("handler did not answer within {0:?}")]
    HandlerTimeout(Duration),
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    #[error("client took none of its replies for {0:?}")]
    WriteStalled(Duration),
    #[error("dropped by a forced shutdown")]
    Forced,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SessionError {
    /// Whether the connection was closed for sitting idle (a policy, not a fault).
    fn is_idle(&self) -> bool {
        matches!(self, SessionError::Idle(_))
    }

    /// Whether this is the peer going away (not worth a warning).
    fn is_disconnect(&self) -> bool {
        let io = match self {
            SessionError::Io(e) => e,
            SessionError::Frame(FrameError::Io(e)) => e,
            _ => return false,
        };
        matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
    }

    /// Whether the connection can still carry the replies already made: yes unless writing
    /// itself failed.
    fn can_still_write(&self) -> bool {
        !matches!(self, SessionError::Io(_) | SessionError::WriteStalled(_))
    }
}

/// Runs one connection until the peer closes, an error, or shutdown.
pub(crate) struct Session<H: Handler, T = Connection> {
    conn: T,
    codec: FrameCodec,
    handler: Arc<H>,
    ctx: Context,
    /// The server's settings: the idle and request timeouts, the concurrency (shared, so they
    /// take one pointer in each connection's future).
    config: Arc<ServerConfig>,
    /// Fired when the server shuts down: finish the requests already read, then close.
    shutdown: Trigger,
    /// Fired (after `shutdown`) to drop the connection where it stands.
    force: Trigger,
}

impl<H: Handler, T> Session<H, T> {
    /// A session for one accepted connection: gives `ctx` the server's `shutdown` signal, calls
    /// [`Handler::connected`] now, and [`Handler::disconnected`] when the session is dropped,
    /// whether it ran to its end, was dropped by a forced shutdown, or never started. It starts
    /// when [`run`](Self::run) is polled.
    pub(crate) fn new(
        conn: T,
        handler: Arc<H>,
        ctx: Context,
        config: Arc<ServerConfig>,
        shutdown: Trigger,
        force: Trigger,
    ) -> Self {
        let ctx = ctx.with_shutdown(shutdown.clone());
        handler.connected(&ctx);
        Self {
            conn,
            codec: FrameCodec::new(config.framing, config.max_frame),
            handler,
            ctx,
            config,
            shutdown,
            force,
        }
    }
}

/// Calls [`Handler::disconnected`]: when the session ends, and also when a forced shutdown
/// drops it mid-way.
impl<H: Handler, T> Drop for Session<H, T> {
    fn drop(&mut self) {
        self.handler.disconnected(&self.ctx);
    }
}

/// How a session ended (the session logs it; tests read it).
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Outcome {
    /// Replies written whole.
    pub(crate) answered: u64,
    /// Why it ended, if not by a clean close or shutdown.
    pub(crate) result: Result<(), SessionError>,
}

impl<H: Handler, T: Transport> Session<H, T> {
    /// Runs the session to its end and logs how it ended.
    // Not an `async fn`: its argument would be stored twice in the future (once as given, once
    // as the local it is moved into), and this future is allocated for every connection.
    #[expect(clippy::manual_async_fn, reason = "an async fn's future is larger")]
    pub(crate) fn run(mut self) -> impl Future<Output = Outcome> + Send {
        async move {
            let mut outbox = Outbox::default();
            // The task's one registration for the server's stop signals. The exchange checks the
            // shutdown flag whenever it is polled (`stop_requested`), and this watcher's wake-up
            // is what polls it; the force signal always comes after shutdown, so it is waited
            // for only from then on.
            let (shutdown, force) = (self.shutdown.clone(), self.force.clone());
            let forced = async {
                shutdown.fired().await;
                force.fired().await;
            };
            let mut result = tokio::select! {
                biased;
                () = forced => Err(SessionError::Forced),
                result = self.serve(&mut outbox) => result,
            };
            let answered = outbox.replies_sent();
            match result.as_mut() {
                Ok(()) => debug!(answered, "closed"),
                Err(e) if e.is_disconnect() => debug!(answered, error = %e, "peer went away"),
                Err(e) if e.is_idle() => info!(answered, reason = %e, "closing idle connection"),
                Err(e) => warn!(answered, error = %e, "closing connection"),
            }
            Outcome { answered, result }
        }
    }

    /// Exchanges requests and replies until the end, then, if it ended in an error, writes the
    /// replies already made (if the connection can still carry them).
    #[expect(clippy::manual_async_fn, reason = "an async fn's future is larger")]
    fn serve<'a>(
        &'a mut self,
        outbox: &'a mut Outbox,
    ) -> impl Future<Output = Result<(), SessionError>> + Send + 'a {
        async move {
            let result = if self.config.concurrency > 1 {
                // Boxed, so that the usual one-at-a-time session's future stays small (it is
                // allocated for every connection).
                Box::pin(self.exchange_concurrently(outbox)).await
            } else {
                self.exchange(outbox).await
            };
            if let Err(e) = &result {
                // Whatever ended the exchange, the replies already made go out before the close.
                if e.can_still_write() && !outbox.is_empty() {
                    if let Err(w) = self.write_out(outbox).await {
                        debug!(error = %w, "could not write the last replies");
                    }
                }
                self.conn.discard_unread(DISCARD_LIMIT);
            }
            result
        }
    }

    async fn exchange(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        let mut rbuf = BytesMut::new();
        let mut idle = IdleTimer::new(self.config.idle_timeout);
        let mut eof = false;
        let mut expect = self.codec.read_hint(0);
        // Size of the last request, which decides whether the read buffer is kept.
        let mut last = 0;

        loop {
            // Every complete request already read gets its reply, even during shutdown; at the
            // end of the stream, so does a last one without its delimiter, where the framing
            // allows one. (One call site, so the session's future holds one call's state.)
            let (mut handled, mut paused) = (false, false);
            loop {
                let request = match self.codec.decode(&mut rbuf)? {
                    Some(request) => request,
                    None if eof => match self.codec.decode_eof(&mut rbuf)? {
                        Some(request) => request,
                        None => break,
                    },
                    None => break,
                };
                handled = true;
                // The next message is probably about as large.
                expect = self.codec.read_hint(request.len());
                last = request.len();
                self.answer(request, outbox).await?;
                if outbox.len() >= WRITE_HIGH_WATER {
                    // Write these out before answering the rest of what is buffered.
                    paused = true;
                    break;
                }
            }
            if handled {
                idle.activity();
            }
            self.write_out(outbox).await?;
            if paused {
                continue;
            }
            if eof {
                return Ok(());
            }

            if should_release(&rbuf, last) {
                rbuf = BytesMut::new();
            }

            let read = tokio::select! {
                biased;
                () = stop_requested(&self.shutdown) => return Ok(()),
                read = self.conn.read(&mut rbuf, expect) => read,
                limit = idle.expired() => return Err(SessionError::Idle(limit)),
            };
            if read? == 0 {
                eof = true;
            }
        }
    }

    /// The exchange with up to `concurrency` requests handled at once: calls start as requests
    /// are read (while fewer than that are running and the pending replies are under the
    /// high-water mark), and their replies are queued in request order as the calls finish.
    async fn exchange_concurrently(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        let Session {
            conn,
            codec,
            handler,
            ctx,
            config,
            shutdown,
            ..
        } = self;
        let (handler, ctx, limit) = (&**handler, &*ctx, config.concurrency);
        let (idle_timeout, request_timeout) = (config.idle_timeout, config.request_timeout);
        let mut rbuf = BytesMut::new();
        let mut calls = FuturesOrdered::new();
        let mut idle = IdleTimer::new(idle_timeout);
        let (mut eof, mut stopping) = (false, false);
        let mut expect = codec.read_hint(0);
        let mut last = 0;

        loop {
            // Start calls for the requests already read, up to the limit.
            while calls.len() < limit && outbox.len() < WRITE_HIGH_WATER {
                let request = match codec.decode(&mut rbuf)? {
                    Some(request) => request,
                    None if eof => match codec.decode_eof(&mut rbuf)? {
                        Some(request) => request,
                        None => break,
                    },
                    None => break,
                };
                expect = codec.read_hint(request.len());
                last = request.len();
                idle.activity();
                calls.push_back(call(handler, ctx, request, request_timeout));
            }
            // Queue the replies of the calls already done, in order, and write them.
            while let Poll::Ready(Some(response)) = futures::poll!(calls.next()) {
                if let Some(stream) = queue(codec, outbox, response?)? {
                    stream_out(conn, idle_timeout, codec, outbox, stream, shutdown).await?;
                }
            }
            write_out(conn, idle_timeout, outbox).await?;
            let reading = !eof && !stopping;
            if calls.is_empty() && !reading {
                // Every request read has its reply (a partial frame left at shutdown is not a
                // request); the session is done.
                return Ok(());
            }
            if should_release(&rbuf, last) {
                rbuf = BytesMut::new();
            }
            tokio::select! {
                biased;
                () = stop_requested(shutdown), if !stopping => stopping = true,
                Some(response) = calls.next() => {
                    if let Some(stream) = queue(codec, outbox, response?)? {
                        stream_out(conn, idle_timeout, codec, outbox, stream, shutdown).await?;
                    }
                }
                read = conn.read(&mut rbuf, expect), if reading && calls.len() < limit => {
                    if read? == 0 {
                        eof = true;
                    }
                }
                limit = idle.expired(), if reading && calls.is_empty() => {
                    return Err(SessionError::Idle(limit));
                }
            }
        }
    }

    /// Calls the handler for one request and queues its reply.
    ///
    /// The call is polled once before anything else: most handlers answer at once, and they
    /// then cost no clock read and no timer entry. One that does not answer at once may take a
    /// while, so the replies already queued are written while it works, instead of waiting
    /// behind it.
    // Not an `async fn`, which would store `request` twice (see `run`).
    #[expect(clippy::manual_async_fn, reason = "an async fn's future is larger")]
    fn answer<'a>(
        &'a mut self,
        request: Bytes,
        outbox: &'a mut Outbox,
    ) -> impl Future<Output = Result<(), SessionError>> + Send + 'a {
        async move {
            // In its own block, so the call's state and the stream's below share the same space in
            // the session's future.
            let outcome = {
                // Pinned where it is made (`tokio::pin!` would move it, and the future would
                // hold it twice).
                let mut call = std::pin::pin!(
                    AssertUnwindSafe(self.handler.respond(request, &self.ctx)).catch_unwind()
                );
                match futures::poll!(call.as_mut()) {
                    Poll::Ready(outcome) => outcome,
                    // Boxed: its timer and writes would otherwise enlarge every session's future.
                    Poll::Pending => {
                        Box::pin(finish_call(
                            call,
                            self.config.request_timeout,
                            &mut self.conn,
                            self.config.idle_timeout,
                            outbox,
                        ))
                        .await?
                    }
                }
            };
            if let Some(stream) = queue(&self.codec, outbox, settle(outcome)?)? {
                stream_out(
                    &mut self.conn,
                    self.config.idle_timeout,
                    &self.codec,
                    outbox,
                    stream,
                    &self.shutdown,
                )
                .await?;
            }
            Ok(())
        }
    }

    /// Writes every queued reply; see [`write_out`].
    async fn write_out(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        write_out(&mut self.conn, self.config.idle_timeout, outbox).await
    }
}

/// Finishes a call that did not answer on its first poll: writes the replies queued before it
/// while it works, and bounds it by the request timeout (counted from now).
async fn finish_call<F: Future>(
    call: Pin<&mut F>,
    request_timeout: Option<Duration>,
    conn: &mut impl Transport,
    idle_timeout: Option<Duration>,
    outbox: &mut Outbox,
) -> Result<F::Output, SessionError> {
    let due = Due::from_now(request_timeout);
    write_out(conn, idle_timeout, outbox).await?;
    due.bound(call).await
}

/// One handler call, with its panics caught and its time bounded by the request timeout
/// (counted from now).
fn call<'a, H: Handler>(
    handler: &'a H,
    ctx: &'a Context,
    request: Bytes,
    timeout: Option<Duration>,
) -> impl Future<Output = Result<Response, SessionError>> + Send + 'a {
    let due = Due::from_now(timeout);
    let call = AssertUnwindSafe(handler.respond(request, ctx)).catch_unwind();
    async move { settle(due.bound(call).await?) }
}

/// When a handler call must have answered by, if the request timeout sets a limit.
#[derive(Clone, Copy)]
struct Due(Option<(Instant, Duration)>);

impl Due {
    /// The request timeout `limit`, counted from now.
    fn from_now(limit: Option<Duration>) -> Self {
        Due(limit.map(|limit| (Instant::now() + limit, limit)))
    }

    /// `call`'s output, or [`SessionError::HandlerTimeout`] if it is not done by then.
    async fn bound<F: Future>(self, call: F) -> Result<F::Output, SessionError> {
        match self.0 {
            Some((due, limit)) => tokio::time::timeout_at(due, call)
                .await
                .map_err(|_| SessionError::HandlerTimeout(limit)),
            None => Ok(call.await),
        }
    }
}

/// Queues the response of one request: its one reply, or nothing; a stream is handed back, for
/// [`stream_out`].
fn queue(
    codec: &FrameCodec,
    outbox: &mut Outbox,
    response: Response,
) -> Result<Option<ReplyStream>, FrameError> {
    match response {
        Response::Reply(reply) => outbox.push(codec, reply)?,
        Response::Silent => {}
        Response::Stream(stream) => return Ok(Some(stream)),
    }
    Ok(None)
}

/// Queues and writes the replies of one stream until it ends. Replies that are ready together
/// leave in one write; while the peer does not read, the stream is not polled. At shutdown the
/// stream is dropped between two replies and its farewell message, if any, is its last reply.
/// A panic inside the stream is caught and ends the connection, as a handler panic does.
///
/// Boxed: streams are rare, and inline their state would enlarge every session's future.
fn stream_out<'a>(
    conn: &'a mut impl Transport,
    idle_timeout: Option<Duration>,
    codec: &'a FrameCodec,
    outbox: &'a mut Outbox,
    mut stream: ReplyStream,
    shutdown: &'a Trigger,
) -> Pin<Box<impl Future<Output = Result<(), SessionError>> + Send + 'a>> {
    Box::pin(async move {
        loop {
            if shutdown.is_fired() {
                if let Some(last) = stream.take_farewell() {
                    outbox.push(codec, last)?;
                }
                return Ok(());
            }
            let next = AssertUnwindSafe(stream.next()).catch_unwind();
            tokio::pin!(next);
            let item = match futures::poll!(next.as_mut()) {
                Poll::Ready(item) => item,
                Poll::Pending => {
                    // Nothing more is ready: send what is queued, then wait for the stream.
                    write_out(conn, idle_timeout, outbox).await?;
                    tokio::select! {
                        biased;
                        () = stop_requested(shutdown) => continue,
                        item = next => item,
                    }
                }
            };
            match settle(item.map(|item| item.transpose()))? {
                Some(reply) => {
                    outbox.push(codec, reply)?;
                    if outbox.len() >= WRITE_HIGH_WATER {
                        write_out(conn, idle_timeout, outbox).await?;
                    }
                }
                None => return Ok(()),
            }
        }
    })
}

/// The response of a finished call, or why there is none.
fn settle<T>(
    outcome: Result<Result<T, BoxError>, Box<dyn std::any::Any + Send>>,
) -> Result<T, SessionError> {
    match outcome {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(SessionError::Handler(e)),
        Err(panic) => Err(SessionError::HandlerPanicked(panic_message(&panic))),
    }
}

/// Completes once `shutdown` has fired, without registering for its notification: only for
/// futures polled inside [`Session::run`], whose watcher of the stop signals is registered and
/// wakes the task when it fires (one registration per connection instead of one per wait).
fn stop_requested(shutdown: &Trigger) -> impl Future<Output = ()> + Send + '_ {
    std::future::poll_fn(move |_| {
        if shutdown.is_fired() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// Writes every queued reply. With an idle timeout, a peer that takes nothing for that long is
/// given up on; one that keeps taking bytes, however slowly, is not.
async fn write_out(
    conn: &mut impl Transport,
    idle_timeout: Option<Duration>,
    outbox: &mut Outbox,
) -> Result<(), SessionError> {
    while !outbox.is_empty() {
        // Fast path, with no timer: the socket buffer usually has room.
        match conn.try_write_buf(outbox) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        // The socket is full: wait for the peer to take something. Boxed, as the timer it
        // needs would otherwise enlarge every session's future, for a wait most never make.
        Box::pin(wait_for_room(conn, idle_timeout, outbox)).await?;
    }
    Ok(())
}

/// Waits until the peer takes something, writing what it can then; with an idle timeout, a
/// peer that takes nothing for that long is given up on.
async fn wait_for_room(
    conn: &mut impl Transport,
    idle_timeout: Option<Duration>,
    outbox: &mut Outbox,
) -> Result<(), SessionError> {
    let written = match idle_timeout {
        Some(limit) => tokio::time::timeout(limit, conn.write_buf(outbox))
            .await
            .map_err(|_| SessionError::WriteStalled(limit))?,
        None => conn.write_buf(outbox).await,
    };
    match written {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether to give the read buffer back before waiting for the next message: when nothing is
/// half-read and the buffer is large, unless the last request (`last` bytes) was large too and
/// the buffer no larger than [`KEEP_READ_BUFFER`]. A client that sends large messages one after
/// another then reuses one buffer (a fresh 64 KiB allocation per message costs page faults), and
/// a connection whose last message was small holds no large buffer while it waits.
fn should_release(rbuf: &BytesMut, last: usize) -> bool {
    rbuf.is_empty()
        && rbuf.capacity() > SMALL_READ
        && (last <= SMALL_READ || rbuf.capacity() > KEEP_READ_BUFFER)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    //! The session over an in-memory pipe (`tokio::io::duplex`): no socket involved.

    use super::*;
    use crate::transport::IoTransport;
    use ipc_core::{Framing, PeerCredentials, handler_fn};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

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
    ) -> (Session<H, IoTransport<DuplexStream>>, DuplexStream, Trigger) {
        let (ours, theirs) = tokio::io::duplex(capacity);
        let shutdown = Trigger::default();
        let session = Session::new(
            IoTransport::new(ours),
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

    async fn read_all(client: &mut DuplexStream) -> Vec<u8> {
        let mut out = Vec::new();
        within(client.read_to_end(&mut out)).await.unwrap();
        out
    }

    #[tokio::test]
    async fn replies_come_in_request_order_with_pipelining() {
        for concurrency in [1, 4] {
            let (session, mut client, _) = session(moody(), Framing::Line, concurrency, 1 << 16);
            // The first request is the slowest: with concurrency the others finish first, and
            // still their replies wait for it.
            client.write_all(b"s40\ns10\na\ns20\nb\n").await.unwrap();
            client.shutdown().await.unwrap();
            let outcome = within(session.run()).await;
            assert!(outcome.result.is_ok(), "{:?}", outcome.result);
            assert_eq!(outcome.answered, 5);
            assert_eq!(read_all(&mut client).await, b"s40\ns10\na\ns20\nb\n");
        }
    }

    #[tokio::test]
    async fn the_replies_of_buffered_requests_go_out_in_one_write() {
        let (mut session, mut client, _) = session(moody(), Framing::Line, 1, 1 << 16);
        let batch: String = (0..50).map(|i| format!("m{i}\n")).collect();
        client.write_all(batch.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        let counters = session.conn.counters();
        Arc::make_mut(&mut session.config).idle_timeout = None;
        let outcome = within(session.run()).await;
        assert_eq!(outcome.answered, 50);
        assert_eq!(read_all(&mut client).await, batch.as_bytes());
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
            let (session, mut client, shutdown) =
                session(moody(), Framing::Line, concurrency, 1 << 16);
            let counters = session.conn.counters();
            client.write_all(b"s30\ns30\ns30\npartial").await.unwrap();
            let running = tokio::spawn(session.run());
            // Once the requests are read, shut down while the calls are running.
            while counters.read.load(Ordering::SeqCst) < 19 {
                tokio::task::yield_now().await;
            }
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
                let (session, mut client, _) =
                    session(moody(), Framing::Line, concurrency, 1 << 16);
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

    #[test]
    fn a_large_read_buffer_is_kept_only_between_large_messages() {
        let big = BytesMut::with_capacity(70_000);
        assert!(!should_release(&big, 65_536), "kept after a large message");
        assert!(should_release(&big, 10), "released after a small one");
        let huge = BytesMut::with_capacity(KEEP_READ_BUFFER + 1);
        assert!(should_release(&huge, 1 << 20), "never above the cap");
        let mut half = BytesMut::with_capacity(70_000);
        half.extend_from_slice(b"half a frame");
        assert!(
            !should_release(&half, 10),
            "never while a frame is half-read"
        );
        assert!(!should_release(&BytesMut::with_capacity(SMALL_READ), 10));
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
        let (session, mut client, _) = session(handler, Framing::Line, 3, 1 << 16);
        let batch: String = (0..12).map(|i| format!("{i}\n")).collect();
        client.write_all(batch.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        let outcome = within(session.run()).await;
        assert_eq!(outcome.answered, 12);
        assert_eq!(read_all(&mut client).await, batch.as_bytes());
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
        async fn handle(&self, request: Bytes, _ctx: &Context) -> Result<Bytes, BoxError> {
            Ok(request)
        }

        async fn respond(&self, request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
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
            let (session, mut client, _) = session(Streaming, Framing::Line, concurrency, 1 << 16);
            let counters = session.conn.counters();
            client
                .write_all(b"a\ncount 3\nquiet\nb\ncount 2000\nc\n")
                .await
                .unwrap();
            client.shutdown().await.unwrap();
            let outcome = within(session.run()).await;
            assert!(outcome.result.is_ok(), "{:?}", outcome.result);
            let mut expected = String::from("a\n0\n1\n2\nb\n");
            for i in 0..2000 {
                expected.push_str(&format!("{i}\n"));
            }
            expected.push_str("c\n");
            assert_eq!(
                String::from_utf8(read_all(&mut client).await).unwrap(),
                expected
            );
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
            async fn handle(&self, request: Bytes, _ctx: &Context) -> Result<Bytes, BoxError> {
                Ok(request)
            }
            async fn respond(&self, _req: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
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
            ("echo", size(ipc_core::Echo)),
            ("ack", size(ipc_core::Ack::default())),
        ] {
            assert!(
                bytes <= THREAD_CACHE_MAX,
                "the {name} session's future is {bytes} bytes, over {THREAD_CACHE_MAX}"
            );
        }
    }
}
