//! The [`Handler`] trait: what the server calls for every request, and the [`Context`] it gets;
//! [`BoxHandler`] for a handler chosen at run time; closures as handlers.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;

use crate::boxed::{BoxError, BoxFuture};
use crate::fds::{CallFds, PushFdError};
use crate::peer::Peer;
use crate::response::Response;
use crate::trigger::{Fired, Trigger};

/// Answers one request message: with one reply, none, or a stream of replies.
///
/// The server shares one handler between all its connections (as an `Arc<H>`), so `handle` takes
/// `&self`: keep shared state behind atomics or locks. Within one connection requests are handled
/// one at a time by default, or up to the server's per-connection concurrency at once; either
/// way the replies go back in the order of the requests.
///
/// There is one request entry point, [`handle`](Handler::handle), and it returns a [`Response`]
/// that carries every reply kind, so a wrapper that forwards it forwards them all: one-way calls
/// and streams pass through `inspect`, [`BoxHandler`] and the `tower` adapters unchanged.
///
/// [`connected`](Handler::connected) and [`disconnected`](Handler::disconnected) run when a
/// connection opens and when it goes (however it ends, also when a forced shutdown drops it),
/// so a handler can keep state per connection, keyed by [`Context::connection_id`], and never
/// leak it.
///
/// Implementations can be written as plain `async fn`; a reply of bytes (or text) becomes a
/// [`Response`] with `.into()`:
///
/// ```
/// use bytes::Bytes;
/// use localipc_core::{BoxError, Context, Handler, Response};
///
/// struct Hello;
///
/// impl Handler for Hello {
///     async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
///         let name = String::from_utf8_lossy(&request);
///         Ok(format!("hello {name}, {}", ctx.peer()).into())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one request and returns all its replies: [`Response::Reply`] for the usual one,
    /// [`Response::Silent`] for none (a one-way call), [`Response::Stream`] for many.
    ///
    /// # Errors
    ///
    /// Any error ends the connection the request came on (after the replies before it are
    /// written); the server keeps serving the others.
    fn handle(
        &self,
        request: Bytes,
        ctx: &Context,
    ) -> impl Future<Output = Result<Response, BoxError>> + Send;

    /// Runs when a connection is admitted, before its first request. Does nothing by default.
    /// The server calls it from its accept loop, so it should return quickly (no blocking).
    fn connected(&self, ctx: &Context) {
        let _ = ctx;
    }

    /// Runs when a connection has ended, whatever ended it. Does nothing by default.
    fn disconnected(&self, ctx: &Context) {
        let _ = ctx;
    }
}

/// Forwards every method of [`Handler`] to the handler `self` points to.
macro_rules! forward_handler {
    ($($pointer:ty),*) => {$(
        impl<H: Handler> Handler for $pointer {
            fn handle(
                &self,
                request: Bytes,
                ctx: &Context,
            ) -> impl Future<Output = Result<Response, BoxError>> + Send {
                (**self).handle(request, ctx)
            }

            fn connected(&self, ctx: &Context) {
                (**self).connected(ctx)
            }

            fn disconnected(&self, ctx: &Context) {
                (**self).disconnected(ctx)
            }
        }
    )*};
}

forward_handler!(Arc<H>, Box<H>, &'static H);

/// The dyn-compatible side of [`Handler`], which [`BoxHandler`] stores.
trait DynHandler: Send + Sync + 'static {
    fn handle_boxed<'a>(
        &'a self,
        request: Bytes,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Response, BoxError>>;
    fn connected_dyn(&self, ctx: &Context);
    fn disconnected_dyn(&self, ctx: &Context);
}

impl<H: Handler> DynHandler for H {
    fn handle_boxed<'a>(
        &'a self,
        request: Bytes,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Response, BoxError>> {
        Box::pin(self.handle(request, ctx))
    }

    fn connected_dyn(&self, ctx: &Context) {
        self.connected(ctx);
    }

    fn disconnected_dyn(&self, ctx: &Context) {
        self.disconnected(ctx);
    }
}

/// Any [`Handler`], boxed, so that one can be chosen at run time (from a flag, a config
/// file...) and the server still has one type. `Box<dyn Handler>` is not possible, because
/// `handle` returns an `impl Future`; this type boxes that future instead (one allocation per
/// request).
///
/// ```
/// use localipc_core::{Ack, BoxHandler, Echo};
///
/// let mode = "ack";
/// let handler = match mode {
///     "ack" => BoxHandler::new(Ack::default()),
///     _ => BoxHandler::new(Echo),
/// };
/// # let _ = handler;
/// ```
pub struct BoxHandler(Box<dyn DynHandler>);

impl BoxHandler {
    /// Boxes `handler`.
    pub fn new(handler: impl Handler) -> Self {
        BoxHandler(Box::new(handler))
    }
}

impl std::fmt::Debug for BoxHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxHandler").finish_non_exhaustive()
    }
}

impl Handler for BoxHandler {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        self.0.handle_boxed(request, ctx).await
    }

    fn connected(&self, ctx: &Context) {
        self.0.connected_dyn(ctx);
    }

    fn disconnected(&self, ctx: &Context) {
        self.0.disconnected_dyn(ctx);
    }
}

/// What a handler knows about the connection a request came on, and whether the server is
/// shutting down.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Context {
    connection_id: u64,
    peer: Peer,
    shutdown: Trigger,
    /// The descriptors of the call being handled, if it has any or may send some (see
    /// [`take_fd`](Context::take_fd) and [`push_fd`](Context::push_fd)).
    fds: Option<Arc<CallFds>>,
}

impl PartialEq for Context {
    /// Two contexts are equal when they describe the same connection and peer.
    fn eq(&self, other: &Self) -> bool {
        self.connection_id == other.connection_id && self.peer == other.peer
    }
}

impl Eq for Context {}

impl Context {
    /// A context for the connection numbered `connection_id` with the given peer (and a
    /// shutdown signal that never fires; see [`with_shutdown`](Self::with_shutdown)).
    pub fn new(connection_id: u64, peer: impl Into<Peer>) -> Self {
        Self {
            connection_id,
            peer: peer.into(),
            shutdown: Trigger::default(),
            fds: None,
        }
    }

    /// This context for one call whose request came with `fds` (descriptors passed with
    /// `SCM_RIGHTS`, in the order the peer sent them), and whose replies may carry up to
    /// `send_max` descriptors each ([`push_fd`](Self::push_fd); 0 for none). The server makes
    /// one for each request that carries descriptors, and for every request when it sends
    /// descriptors; tests of a handler can too.
    pub fn for_call(mut self, fds: Vec<OwnedFd>, send_max: usize) -> Self {
        self.fds = Some(Arc::new(CallFds::new(fds, send_max)));
        self
    }

    /// This context for one request that came with `fds`, and whose replies carry none:
    /// `for_call(fds, 0)`.
    pub fn with_fds(self, fds: Vec<OwnedFd>) -> Self {
        self.for_call(fds, 0)
    }

    /// How many descriptors came with the request (taken or not). Zero unless the server
    /// accepts descriptors and the peer sent some with this request.
    pub fn fd_count(&self) -> usize {
        self.fds.as_ref().map_or(0, |fds| fds.received_count())
    }

    /// Takes the descriptor at `index` (0 for the first the peer sent with this request; in
    /// Varlink, parameters name descriptors by this index). `None` if there is none at that
    /// index or it was taken before. A descriptor not taken by the time
    /// [`Handler::handle`] returns is closed, so take those a stream needs before returning it.
    pub fn take_fd(&self, index: usize) -> Option<OwnedFd> {
        self.fds.as_ref()?.take_received(index)
    }

    /// Closes the descriptors of the request that were not taken. The server calls this when
    /// [`Handler::handle`] returns; after it, [`take_fd`](Self::take_fd) finds none (the
    /// [`fd_count`](Self::fd_count) stays).
    pub fn close_fds(&self) {
        if let Some(fds) = &self.fds {
            fds.close_received();
        }
    }

    /// Attaches `fd` to the next reply of this call: the reply [`Handler::handle`] returns, or
    /// a stream's next item. Returns its index among that reply's descriptors (0 for the
    /// first), by which a Varlink reply's parameters name it. The descriptor goes with the
    /// reply's first byte and is closed here once sent (or if the reply is never sent).
    ///
    /// # Errors
    ///
    /// [`PushFdError::NotEnabled`] unless the server sends descriptors (its `send_fds`
    /// setting); [`PushFdError::TooMany`] past the most one message may carry. `fd` is closed
    /// then.
    pub fn push_fd(&self, fd: OwnedFd) -> Result<usize, PushFdError> {
        match &self.fds {
            Some(fds) => fds.push(fd),
            None => Err(PushFdError::NotEnabled),
        }
    }

    /// Pushes every descriptor of the request not taken yet for the next reply, in order (an
    /// echo's descriptors). Where the server sends none, they are closed.
    #[inline]
    pub fn echo_fds(&self) {
        // Most calls have none: one test, inlined into the caller.
        if let Some(fds) = &self.fds {
            fds.echo();
        }
    }

    /// Takes the descriptors pushed since the last reply: the server calls this for each reply
    /// it sends, and sends them with it.
    pub fn take_pushed_fds(&self) -> Vec<OwnedFd> {
        self.fds
            .as_ref()
            .map_or_else(Vec::new, |fds| fds.take_pushed())
    }

    /// This context with `shutdown` as the server's shutdown signal.
    pub fn with_shutdown(mut self, shutdown: Trigger) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Completes when the server has begun to shut down (at once if it has). A long-running
    /// call can race it to finish early, instead of holding the drain for the whole shutdown
    /// timeout:
    ///
    /// ```
    /// # use localipc_core::{BoxError, Context};
    /// # use bytes::Bytes;
    /// async fn watch(ctx: &Context) -> Result<Bytes, BoxError> {
    ///     let work = std::future::pending::<Bytes>(); // a long wait for something
    ///     tokio::select! {
    ///         reply = work => Ok(reply),
    ///         () = ctx.shutdown() => Ok(Bytes::from("shutting down")),
    ///     }
    /// }
    /// ```
    pub fn shutdown(&self) -> Fired<'_> {
        self.shutdown.fired()
    }

    /// Whether the server has begun to shut down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_fired()
    }

    /// A number that identifies the connection within one server run (it appears in the logs).
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// Who is connected: a local process's credentials, or a remote client's verified
    /// certificate.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

/// A [`Handler`] made from a closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F> {
    f: F,
}

impl<F> std::fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerFn").finish_non_exhaustive()
    }
}

/// Makes a [`Handler`] from a closure that takes the request and a copy of the [`Context`], and
/// returns anything that becomes a [`Response`] (`Bytes`, a `String`, a `Response` itself...)
/// with any error that becomes a [`BoxError`].
///
/// ```
/// use bytes::Bytes;
/// use localipc_core::{BoxError, handler_fn};
///
/// let reverse = handler_fn(|req: Bytes, _ctx| async move {
///     let mut v = req.to_vec();
///     v.reverse();
///     Ok::<_, BoxError>(Bytes::from(v))
/// });
/// # let _ = reverse;
/// ```
pub fn handler_fn<F, Fut, R, E>(f: F) -> HandlerFn<F>
where
    F: Fn(Bytes, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send,
    R: Into<Response>,
    E: Into<BoxError>,
{
    HandlerFn { f }
}

impl<F, Fut, R, E> Handler for HandlerFn<F>
where
    F: Fn(Bytes, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send,
    R: Into<Response>,
    E: Into<BoxError>,
{
    fn handle(
        &self,
        request: Bytes,
        ctx: &Context,
    ) -> impl Future<Output = Result<Response, BoxError>> + Send {
        let call = (self.f)(request, ctx.clone());
        async move {
            match call.await {
                Ok(response) => Ok(response.into()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerCredentials;
    use crate::{Echo, HandlerExt};

    async fn reply(h: &impl Handler, request: &'static str, ctx: &Context) -> Bytes {
        let response = h.handle(Bytes::from(request), ctx).await.unwrap();
        response.into_reply().expect("one reply")
    }

    /// Counts its connections through the hooks.
    #[derive(Default)]
    struct Hooked(std::sync::atomic::AtomicI64);

    impl Handler for Hooked {
        async fn handle(&self, request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
            Ok(request.into())
        }
        fn connected(&self, _ctx: &Context) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn disconnected(&self, _ctx: &Context) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn boxed_and_wrapped_handlers_keep_the_hooks() {
        static HOOKED: Hooked = Hooked(std::sync::atomic::AtomicI64::new(0));
        let ctx = Context::new(1, PeerCredentials::new(1, 2, None));
        let handlers = [
            BoxHandler::new(&HOOKED),
            BoxHandler::new(Box::new(&HOOKED)),
            BoxHandler::new(Arc::new(&HOOKED)),
            BoxHandler::new((&HOOKED).inspect(|_, _, _| {})),
        ];
        for h in &handlers {
            h.connected(&ctx);
            assert_eq!(reply(h, "x", &ctx).await, "x");
        }
        assert_eq!(HOOKED.0.load(std::sync::atomic::Ordering::SeqCst), 4);
        for h in &handlers {
            h.disconnected(&ctx);
        }
        assert_eq!(HOOKED.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_handler_chosen_at_run_time() {
        let ctx = Context::new(1, PeerCredentials::new(1, 2, None));
        for (mode, expected) in [("echo", "x"), ("ack", crate::DEFAULT_ACK_TEXT)] {
            let h = match mode {
                "ack" => BoxHandler::new(crate::Ack::default()),
                _ => BoxHandler::new(Echo),
            };
            assert_eq!(reply(&h, "x", &ctx).await, expected);
        }
    }

    #[tokio::test]
    async fn the_context_tells_of_shutdown() {
        let trigger = Trigger::default();
        let ctx = Context::new(1, PeerCredentials::new(1, 2, None)).with_shutdown(trigger.clone());
        assert!(!ctx.is_shutting_down());
        assert!(futures::poll!(std::pin::pin!(ctx.shutdown())).is_pending());
        trigger.fire();
        assert!(ctx.is_shutting_down());
        tokio::time::timeout(std::time::Duration::from_secs(5), ctx.shutdown())
            .await
            .expect("fired");
    }

    #[test]
    fn a_requests_descriptors_are_taken_once_and_the_rest_closed() {
        let (r, w) = std::io::pipe().unwrap();
        let ctx =
            Context::new(1, PeerCredentials::new(1, 2, None)).with_fds(vec![r.into(), w.into()]);
        let copy = ctx.clone();
        assert_eq!(ctx.fd_count(), 2);
        let read_end = copy.take_fd(0).expect("taken through any copy");
        assert!(ctx.take_fd(0).is_none(), "taken once");
        assert!(ctx.take_fd(2).is_none());
        ctx.close_fds();
        assert!(ctx.take_fd(1).is_none(), "closed");
        assert_eq!(ctx.fd_count(), 2);
        // The write end was closed: the read end sees the end of the stream.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(read_end), &mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            Context::new(1, PeerCredentials::new(1, 2, None)).fd_count(),
            0
        );
    }

    #[tokio::test]
    async fn closures_are_handlers() {
        let h = handler_fn(|req: Bytes, ctx: Context| async move {
            Ok::<_, BoxError>(Bytes::from(format!(
                "{}:{}",
                ctx.peer().uid().unwrap_or(0),
                req.len()
            )))
        });
        let ctx = Context::new(1, PeerCredentials::new(42, 0, Some(9)));
        assert_eq!(reply(&h, "abc", &ctx).await, "42:3");
    }
}
