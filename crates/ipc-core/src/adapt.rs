//! Adapters available on every [`Handler`]: [`HandlerExt::inspect`] and, with the `tower`
//! feature, `HandlerExt::into_service`.

use bytes::Bytes;

use crate::boxed::BoxError;
use crate::handler::{Context, Handler};
use crate::response::Response;

/// Adapters available on every [`Handler`].
pub trait HandlerExt: Handler + Sized {
    /// Wraps the handler so that `f` sees every exchange (the context, the request and the
    /// outcome) after it happens, without changing it: for logs, counters or metrics. Every
    /// reply kind passes through: one reply, none, or a stream (which `f` sees as
    /// [`Response::Stream`] when it starts; its items go to the client untouched).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use localipc_core::{Echo, HandlerExt};
    ///
    /// let served = Arc::new(AtomicU64::new(0));
    /// let counter = Arc::clone(&served);
    /// let handler = Echo.inspect(move |_ctx, _request, outcome| {
    ///     if outcome.as_ref().is_ok_and(|response| response.reply().is_some()) {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// # let _ = handler;
    /// ```
    fn inspect<F>(self, f: F) -> Inspect<Self, F>
    where
        F: Fn(&Context, &Bytes, &Result<Response, BoxError>) + Send + Sync + 'static,
    {
        Inspect { inner: self, f }
    }

    /// This handler as a `tower` service, for `ServiceBuilder` layers (feature `tower`; see
    /// [`crate::tower`]).
    #[cfg(feature = "tower")]
    fn into_service(self) -> crate::tower::HandlerService<Self> {
        crate::tower::HandlerService::new(self)
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
    F: Fn(&Context, &Bytes, &Result<Response, BoxError>) + Send + Sync + 'static,
{
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        // Cloning `Bytes` shares the buffer; the request is not copied.
        let seen = request.clone();
        let outcome = self.inner.handle(request, ctx).await;
        (self.f)(ctx, &seen, &outcome);
        outcome
    }

    fn connected(&self, ctx: &Context) {
        self.inner.connected(ctx);
    }

    fn disconnected(&self, ctx: &Context) {
        self.inner.disconnected(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Echo, PeerCredentials, ReplyStream};
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn inspect_sees_every_exchange_and_changes_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let h = Echo.inspect(move |ctx, req, out| {
            let reply = out.as_ref().ok().and_then(|r| r.reply().cloned());
            log.lock()
                .unwrap()
                .push((ctx.connection_id(), req.clone(), reply));
        });
        let ctx = Context::new(3, PeerCredentials::new(1, 2, None));
        let reply = h.handle(Bytes::from("a"), &ctx).await.unwrap();
        assert_eq!(reply.reply().unwrap(), "a");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(3, Bytes::from("a"), Some(Bytes::from("a")))]
        );
    }

    #[tokio::test]
    async fn inspect_passes_silent_and_streamed_responses_through() {
        let h = crate::handler_fn(|req: Bytes, _ctx| async move {
            Ok::<_, BoxError>(match &req[..] {
                b"quiet" => Response::Silent,
                _ => ReplyStream::new(futures::stream::iter([Ok(req)])).into(),
            })
        })
        .inspect(|_, _, _| {});
        let ctx = Context::new(1, PeerCredentials::new(1, 2, None));
        assert!(matches!(
            h.handle(Bytes::from("quiet"), &ctx).await.unwrap(),
            Response::Silent
        ));
        assert!(matches!(
            h.handle(Bytes::from("x"), &ctx).await.unwrap(),
            Response::Stream(_)
        ));
    }
}
