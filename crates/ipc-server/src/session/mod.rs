//! One connection's session: read requests, call the handler for each, write the replies in
//! order, and log how the connection ended.
//!
//! The session is small on purpose, and each part has one owner:
//! - `inbox`: the read side (the buffer, the one decode path, the end of the stream, when the
//!   buffer is given back);
//! - `outbox`: the write side (pending replies as one `bytes::Buf`, replies written counted);
//! - `write`: writing the outbox, and telling a slow reader from a stalled one;
//! - `stream`: sending a stream's replies while watching the peer;
//! - `call`: one handler call, its panics caught and its time bounded;
//! - `idle`: the idle timer; `error`: why a session ended.
//!
//! The session reaches its socket only through [`Transport`], so all of this runs in unit and
//! property tests over an in-memory pipe.
//!
//! Buffers are allocated only while data is moving and released while the connection waits, so
//! idle connections cost little memory; the one exception is a read buffer of up to 256 KiB kept
//! between two large messages, so a client that sends them one after another reuses it. The
//! replies of every request already buffered are written together in one `write`, which
//! matters to pipelining clients. While replies are being written the session reads nothing, so
//! a client that never reads cannot make it buffer without bound.
//!
//! Nothing is lost at a close: whatever ends the session (a handler error, panic or timeout, a
//! bad frame after good ones, shutdown), the replies already made are written first, and the
//! count logged as `answered` is the number of replies that were written whole. At a graceful
//! stop the session first reads what the kernel already holds for the connection (without
//! waiting, up to one maximum frame plus [`DRAIN_EXTRA`]), and answers every complete request
//! in it: a request that reached the server's socket before the stop gets its reply.
//!
//! With a concurrency above 1, up to that many requests of the connection are handled at once
//! (their calls run interleaved on the session's task); replies still leave in request order.
//! Every complete request already read is started as soon as a slot is free, whether or not
//! more bytes come.
//!
//! Every connection costs one allocation of the session's future, so the future is kept small
//! (about 1 KiB for the built-in handlers, inside glibc's per-thread cache; a test holds it
//! there): the rare paths (a stream, a call that does not answer at once, a full socket,
//! concurrency above 1, the idle timer) are boxed, and the session registers once for the
//! server's stop signals, in [`Session::run`]; the exchanges only read the shutdown flag when
//! they are polled. A forced shutdown drops the session where it stands.

mod call;
mod error;
mod idle;
mod inbox;
mod outbox;
#[cfg(test)]
mod properties;
mod stream;
#[cfg(test)]
mod tests;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use localipc_core::{Context, FrameCodec, FrameError, Handler, ReplyStream, Response, Trigger};
use tracing::{debug, info, warn};

use self::call::{Answer, Due, call, caught, settle};
pub(crate) use self::error::SessionError;
use self::idle::IdleTimer;
use self::inbox::{Filled, Inbox};
use self::outbox::Outbox;
use self::stream::stream_out;
use self::write::write_out;
use crate::config::ServerConfig;
use crate::transport::Transport;

/// Pending reply bytes at which the session stops handling requests and writes them out.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Most unread bytes dropped before closing a connection for an error (see
/// [`Transport::discard_unread`]).
const DISCARD_LIMIT: usize = 256 * 1024;
/// At a graceful stop, the session reads at most one maximum frame plus this much of what the
/// kernel already holds, so a peer that keeps sending cannot hold the stop open.
pub(crate) const DRAIN_EXTRA: usize = 256 * 1024;

/// Runs one connection until the peer closes, an error, or shutdown.
pub(crate) struct Session<H: Handler, T> {
    conn: T,
    inbox: Inbox,
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
            inbox: Inbox::new(codec(&config)),
            handler,
            ctx,
            config,
            shutdown,
            force,
        }
    }
}

/// The frame codec the settings describe.
fn codec(config: &ServerConfig) -> FrameCodec {
    FrameCodec::new(config.framing, config.max_frame)
}

/// Calls [`Handler::disconnected`]: when the session ends, and also when a forced shutdown
/// drops it mid-way.
impl<H: Handler, T> Drop for Session<H, T> {
    fn drop(&mut self) {
        self.inbox.uncount(&self.config);
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
            let mut outbox = Outbox::new(codec(&self.config));
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
            if T::LINGERS && !matches!(result, Err(SessionError::Forced)) {
                // The replies written reach the peer before the close (a TCP socket would drop
                // what it has not sent yet), unless the stop is forced meanwhile. Boxed: only
                // TCP connections make this wait.
                let (force, conn) = (self.force.clone(), &mut self.conn);
                Box::pin(async move {
                    tokio::select! {
                        biased;
                        () = force.fired() => {}
                        () = conn.close() => {}
                    }
                })
                .await;
            }
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
                if e.can_still_write()
                    && !outbox.is_empty()
                    && let Err(w) = self.write_out(outbox).await
                {
                    debug!(error = %w, "could not write the last replies");
                }
                self.conn.discard_unread(DISCARD_LIMIT);
            }
            result
        }
    }

    /// The exchange one request at a time.
    async fn exchange(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        let mut idle = IdleTimer::new(self.config.idle_timeout);
        loop {
            // Every complete request already read gets its reply, even during shutdown; at the
            // end of the stream, so does a last one without its delimiter, where the framing
            // allows one. (One call site, so the session's future holds one call's state.)
            let (mut handled, mut paused) = (false, false);
            while let Some(request) = self.inbox.next_request()? {
                handled = true;
                self.answer(request, outbox).await?;
                if outbox.should_write() {
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
            if self.inbox.at_eof() {
                return Ok(());
            }
            if self.shutdown.is_fired() {
                // Read what has already arrived, answer it, then close.
                self.inbox
                    .start_draining(self.config.max_frame + DRAIN_EXTRA);
                match self.inbox.drain(&mut self.conn, &self.config).await? {
                    Filled::Some | Filled::End => continue,
                    Filled::Nothing => return Ok(()),
                }
            }
            let read = tokio::select! {
                biased;
                () = stop_requested(&self.shutdown) => continue,
                read = self.inbox.fill(&mut self.conn, &self.config) => read,
                limit = idle.expired() => return Err(SessionError::Idle(limit)),
            };
            read?;
        }
    }

    /// The exchange with up to `concurrency` requests handled at once: calls start as requests
    /// are read (while fewer than that are running and the pending replies are under the
    /// high-water mark), and their replies are queued in request order as the calls finish.
    async fn exchange_concurrently(&mut self, outbox: &mut Outbox) -> Result<(), SessionError> {
        let Session {
            conn,
            inbox,
            handler,
            ctx,
            config,
            shutdown,
            ..
        } = self;
        let (handler, ctx, limit) = (&**handler, &*ctx, config.concurrency);
        let (idle_timeout, request_timeout) = (config.idle_timeout, config.request_timeout);
        let mut calls = FuturesOrdered::new();
        let mut idle = IdleTimer::new(idle_timeout);
        loop {
            // Start calls for the requests already read, up to the limit.
            let mut progress = false;
            while calls.len() < limit && !outbox.should_write() {
                let request = match inbox.next_request() {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(e) => {
                        // A bad frame after good ones: the calls already running finish and
                        // their replies go out first.
                        while let Some(response) = calls.next().await {
                            deliver(conn, inbox, config, outbox, response?, shutdown).await?;
                        }
                        return Err(e);
                    }
                };
                progress = true;
                idle.activity();
                let fds = inbox.take_fds();
                calls.push_back(call(
                    handler,
                    ctx,
                    request,
                    fds,
                    config.send_max(),
                    request_timeout,
                ));
            }
            // Queue the replies of the calls already done, in order, and write them.
            while let Poll::Ready(Some(response)) = futures::poll!(calls.next()) {
                progress = true;
                deliver(conn, inbox, config, outbox, response?, shutdown).await?;
            }
            write_out(conn, idle_timeout, outbox).await?;
            if progress {
                // Calls finished and freed their slots: requests already buffered start now,
                // without waiting for more bytes.
                continue;
            }
            let stopping = shutdown.is_fired();
            if stopping && !inbox.at_eof() {
                inbox.start_draining(config.max_frame + DRAIN_EXTRA);
                if inbox.drain(conn, config).await? != Filled::Nothing {
                    continue;
                }
            }
            let reading = !inbox.at_eof() && !stopping;
            if calls.is_empty() && !reading {
                // Every request read has its reply (a partial frame left at shutdown is not a
                // request); the session is done.
                return Ok(());
            }
            tokio::select! {
                biased;
                () = stop_requested(shutdown), if !stopping => {}
                Some(response) = calls.next() => {
                    deliver(conn, inbox, config, outbox, response?, shutdown).await?;
                }
                read = inbox.fill(conn, config), if reading && calls.len() < limit => {
                    read?;
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
            // Rare, and boxed, so that every session's future stays small.
            match self.inbox.take_fds() {
                None if !self.config.send_fds => {}
                fds => return Box::pin(answer_with_fds(self, request, fds, outbox)).await,
            }
            // In its own block, so the call's state and the stream's below share the same
            // space in the session's future.
            let response = {
                // Pinned where it is made (`tokio::pin!` would move it, and the future would
                // hold it twice).
                let mut call = std::pin::pin!(caught(&*self.handler, &self.ctx, request));
                let outcome = match futures::poll!(call.as_mut()) {
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
                };
                settle(outcome)?
            };
            if let Some(stream) = queue(outbox, response, None)? {
                stream_out(
                    &mut self.conn,
                    &mut self.inbox,
                    &self.config,
                    outbox,
                    (stream, None),
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

/// Answers a request that came with descriptors, or any request when replies may carry some:
/// calls the handler with the call's own context (see [`call`]), writing the replies queued
/// before it while it works, then queues its replies with the descriptors pushed for them.
async fn answer_with_fds<H: Handler, T: Transport>(
    session: &mut Session<H, T>,
    request: Bytes,
    fds: Option<Vec<std::os::fd::OwnedFd>>,
    outbox: &mut Outbox,
) -> Result<(), SessionError> {
    let Session {
        conn,
        inbox,
        handler,
        ctx,
        config,
        shutdown,
        ..
    } = session;
    let call = call(
        &**handler,
        ctx,
        request,
        fds,
        config.send_max(),
        config.request_timeout,
    );
    let answer = finish_call(
        std::pin::pin!(call),
        None,
        conn,
        config.idle_timeout,
        outbox,
    )
    .await??;
    deliver(conn, inbox, config, outbox, answer, shutdown).await
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

/// Queues the response of one request of the concurrent exchange, and sends a stream's replies
/// through to its end.
async fn deliver(
    conn: &mut impl Transport,
    inbox: &mut Inbox,
    config: &ServerConfig,
    outbox: &mut Outbox,
    (response, own): Answer,
    shutdown: &Trigger,
) -> Result<(), SessionError> {
    if let Some(stream) = queue(outbox, response, own.as_ref())? {
        stream_out(conn, inbox, config, outbox, (stream, own), shutdown).await?;
    }
    Ok(())
}

/// Queues the response of one request: its one reply (with the descriptors the call pushed
/// for it, if it has its own context `own`), or nothing; a stream is handed back, for
/// [`stream_out`].
fn queue(
    outbox: &mut Outbox,
    response: Response,
    own: Option<&Context>,
) -> Result<Option<ReplyStream>, FrameError> {
    match (response, own) {
        (Response::Reply(reply), None) => outbox.push(reply)?,
        (Response::Reply(reply), Some(own)) => {
            outbox.push_with_fds(reply, own.take_pushed_fds())?
        }
        // Descriptors pushed for no reply are closed.
        (Response::Silent, own) => drop(own.map(Context::take_pushed_fds)),
        (Response::Stream(stream), _) => return Ok(Some(stream)),
    }
    Ok(None)
}

/// Queues one more reply of a call: with the descriptors it pushed for it, if it has its own
/// context `own`.
fn push_reply(outbox: &mut Outbox, reply: Bytes, own: Option<&Context>) -> Result<(), FrameError> {
    match own {
        None => outbox.push(reply),
        Some(own) => outbox.push_with_fds(reply, own.take_pushed_fds()),
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
