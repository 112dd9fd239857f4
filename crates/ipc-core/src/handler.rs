//! The [`Handler`] trait: what the server calls for every request, and the [`Context`] it gets.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

/// The error a handler may return: any error type, boxed. Returning one ends that connection
/// (the server logs it at `warn`); other connections are not affected.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Answers one request message with one reply message.
///
/// The server shares one handler between all its connections (as an `Arc<H>`), so `handle` takes
/// `&self`: keep shared state behind atomics or locks. Within one connection requests are handled
/// one at a time, in order, so replies come back in the order of the requests.
///
/// Implementations can be written as plain `async fn`:
///
/// ```
/// use bytes::Bytes;
/// use ipc_core::{BoxError, Context, Handler};
///
/// struct Hello;
///
/// impl Handler for Hello {
///     async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Bytes, BoxError> {
///         let name = String::from_utf8_lossy(&request);
///         Ok(format!("hello {name}, uid {}", ctx.peer().uid).into())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one request and returns the reply.
    ///
    /// # Errors
    ///
    /// Any error ends the connection the request came on; the server keeps serving the others.
    fn handle(
        &self,
        request: Bytes,
        ctx: &Context,
    ) -> impl Future<Output = Result<Bytes, BoxError>> + Send;
}

impl<H: Handler> Handler for Arc<H> {
    fn handle(
        &self,
        request: Bytes,
        ctx: &Context,
    ) -> impl Future<Output = Result<Bytes, BoxError>> + Send {
        (**self).handle(request, ctx)
    }
}

/// The credentials of the process at the other end of a connection, as the kernel reported them
/// when it connected (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
    /// The peer's process id, where the platform reports it.
    pub pid: Option<i32>,
}

impl PeerCredentials {
    /// Credentials with the given user, group and process ids.
    pub fn new(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        Self { uid, gid, pid }
    }
}

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Context {
    connection_id: u64,
    peer: PeerCredentials,
}

impl Context {
    /// A context for the connection numbered `connection_id` with the given peer.
    pub fn new(connection_id: u64, peer: PeerCredentials) -> Self {
        Self {
            connection_id,
            peer,
        }
    }

    /// A number that identifies the connection within one server run (it appears in the logs).
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The credentials of the connected process.
    pub fn peer(&self) -> PeerCredentials {
        self.peer
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

/// Makes a [`Handler`] from a closure that takes the request and a copy of the [`Context`].
///
/// ```
/// use bytes::Bytes;
/// use ipc_core::{BoxError, handler_fn};
///
/// let reverse = handler_fn(|req: Bytes, _ctx| async move {
///     let mut v = req.to_vec();
///     v.reverse();
///     Ok::<_, BoxError>(Bytes::from(v))
/// });
/// # let _ = reverse;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Bytes, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, BoxError>> + Send,
{
    HandlerFn { f }
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Bytes, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, BoxError>> + Send,
{
    fn handle(
        &self,
        request: Bytes,
        ctx: &Context,
    ) -> impl Future<Output = Result<Bytes, BoxError>> + Send {
        (self.f)(request, *ctx)
    }
}

/// Adapters available on every [`Handler`].
pub trait HandlerExt: Handler + Sized {
    /// Wraps the handler so that `f` sees every exchange (the context, the request and the
    /// outcome) after it happens, without changing it: for logs, counters or metrics.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use ipc_core::{Echo, HandlerExt};
    ///
    /// let served = Arc::new(AtomicU64::new(0));
    /// let counter = Arc::clone(&served);
    /// let handler = Echo.inspect(move |_ctx, _request, outcome| {
    ///     if outcome.is_ok() {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// # let _ = handler;
    /// ```
    fn inspect<F>(self, f: F) -> Inspect<Self, F>
    where
        F: Fn(&Context, &Bytes, &Result<Bytes, BoxError>) + Send + Sync + 'static,
    {
        Inspect { inner: self, f }
    }
}

impl<H: Handler> HandlerExt for H {}

/// A handler that reports every exchange of the one it wraps; see [`HandlerExt::inspect`].
#[derive(Clone)]
pub struct Inspect<H, F> {
    inner: H,
    f: F,
}

impl<H: std::fmt::Debug, F> std::fmt::Debug for Inspect<H, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspect")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<H, F> Handler for Inspect<H, F>
where
    H: Handler,
    F: Fn(&Context, &Bytes, &Result<Bytes, BoxError>) + Send + Sync + 'static,
{
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Bytes, BoxError> {
        // Cloning `Bytes` shares the buffer; the request is not copied.
        let seen = request.clone();
        let outcome = self.inner.handle(request, ctx).await;
        (self.f)(ctx, &seen, &outcome);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Echo;
    use std::sync::Mutex;

    #[tokio::test]
    async fn inspect_sees_every_exchange_and_changes_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let h = Echo.inspect(move |ctx, req, out| {
            log.lock().unwrap().push((
                ctx.connection_id(),
                req.clone(),
                out.as_ref().ok().cloned(),
            ));
        });
        let ctx = Context::new(3, PeerCredentials::new(1, 2, None));
        let reply = h.handle(Bytes::from("a"), &ctx).await.unwrap();
        assert_eq!(reply, "a");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(3, Bytes::from("a"), Some(Bytes::from("a")))]
        );
    }

    #[tokio::test]
    async fn closures_are_handlers() {
        let h = handler_fn(|req: Bytes, ctx: Context| async move {
            Ok::<_, BoxError>(Bytes::from(format!("{}:{}", ctx.peer().uid, req.len())))
        });
        let ctx = Context::new(1, PeerCredentials::new(42, 0, Some(9)));
        assert_eq!(h.handle(Bytes::from("abc"), &ctx).await.unwrap(), "42:3");
    }
}
