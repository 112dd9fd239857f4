//! `tower` both ways (feature `tower`): any [`tower_service::Service`] of [`Request`]s serves as a
//! [`Handler`] ([`ServiceHandler`]), and any handler becomes such a service ([`HandlerService`],
//! or [`HandlerExt::into_service`](crate::HandlerExt::into_service)), so the layers of `tower`
//! and its ecosystem (timeouts, concurrency and rate limits, load shedding, tracing) wrap a
//! handler as they wrap an axum or tonic service:
//!
//! ```
//! use std::time::Duration;
//! use ipc_core::tower::ServiceHandler;
//! use ipc_core::{Echo, HandlerExt};
//! use tower::ServiceBuilder;
//!
//! let handler = ServiceHandler::new(
//!     ServiceBuilder::new()
//!         .timeout(Duration::from_secs(2))
//!         .concurrency_limit(64)
//!         .service(Echo.into_service()),
//! );
//! # let _ = handler;
//! ```
//!
//! The connection hooks ([`Handler::connected`], [`Handler::disconnected`]) do not cross a
//! service: a handler that needs them should wrap the service stack, not sit inside it.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use tower_service::Service;

use crate::handler::{BoxError, BoxFuture, Context, Handler};

/// One request as a service sees it: the message and the context of its connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Request {
    /// The request message.
    pub body: Bytes,
    /// The connection it came on.
    pub ctx: Context,
}

impl Request {
    /// A request of `body` on the connection `ctx`.
    pub fn new(body: Bytes, ctx: Context) -> Self {
        Self { body, ctx }
    }
}

/// A `tower` service serving as a [`Handler`].
///
/// Each request gets a clone of the service (services are cheap handles to shared state, and
/// clones share limits such as `ConcurrencyLimit`'s semaphore), which is driven to readiness
/// and then called: the usual way to call a service from shared code.
#[derive(Debug, Clone)]
pub struct ServiceHandler<S> {
    service: S,
}

impl<S> ServiceHandler<S> {
    /// Serves requests with `service`.
    pub fn new(service: S) -> Self {
        Self { service }
    }
}

impl<S> Handler for ServiceHandler<S>
where
    S: Service<Request, Response = Bytes> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    fn handle(
        &self,
        request: Bytes,
        ctx: &Context,
    ) -> impl Future<Output = Result<Bytes, BoxError>> + Send {
        let mut service = self.service.clone();
        let request = Request::new(request, ctx.clone());
        async move {
            futures::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            service.call(request).await.map_err(Into::into)
        }
    }
}

/// A [`Handler`] as a `tower` service, always ready.
#[derive(Debug)]
pub struct HandlerService<H> {
    handler: Arc<H>,
}

impl<H> Clone for HandlerService<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
        }
    }
}

impl<H: Handler> HandlerService<H> {
    /// Serves `handler` as a service.
    pub fn new(handler: H) -> Self {
        Self {
            handler: Arc::new(handler),
        }
    }
}

impl<H: Handler> Service<Request> for HandlerService<H> {
    type Response = Bytes;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Bytes, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            let Request { body, ctx } = request;
            handler.handle(body, &ctx).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HandlerExt, PeerCredentials, handler_fn};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tower::{Layer, ServiceBuilder};

    fn ctx() -> Context {
        Context::new(1, PeerCredentials::new(1, 1, None))
    }

    async fn within<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("took longer than 10 s")
    }

    #[tokio::test]
    async fn the_timeout_layer_ends_a_slow_call() {
        let slow = handler_fn(|req: Bytes, _ctx| async move {
            if &req[..] == b"slow" {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok::<_, BoxError>(req)
        });
        let handler = ServiceHandler::new(
            ServiceBuilder::new()
                .timeout(Duration::from_millis(50))
                .service(slow.into_service()),
        );
        assert_eq!(
            within(handler.handle("fast".into(), &ctx())).await.unwrap(),
            "fast"
        );
        let err = within(handler.handle("slow".into(), &ctx()))
            .await
            .unwrap_err();
        assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    }

    #[tokio::test]
    async fn the_concurrency_limit_layer_caps_calls_in_flight() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (now, max) = (Arc::clone(&in_flight), Arc::clone(&most));
        let busy = handler_fn(move |req: Bytes, _ctx| {
            let (now, max) = (Arc::clone(&now), Arc::clone(&max));
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(req)
            }
        });
        let handler = Arc::new(ServiceHandler::new(
            ServiceBuilder::new()
                .concurrency_limit(2)
                .service(busy.into_service()),
        ));
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let h = Arc::clone(&handler);
                tokio::spawn(async move { h.handle(Bytes::from(format!("{i}")), &ctx()).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(within(call).await.unwrap().unwrap(), format!("{i}"));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    /// A layer that counts the calls through it.
    #[derive(Clone)]
    struct Count(Arc<AtomicUsize>);

    #[derive(Clone)]
    struct Counted<S> {
        inner: S,
        seen: Arc<AtomicUsize>,
    }

    impl<S> Layer<S> for Count {
        type Service = Counted<S>;
        fn layer(&self, inner: S) -> Counted<S> {
            Counted {
                inner,
                seen: Arc::clone(&self.0),
            }
        }
    }

    impl<S: Service<Request>> Service<Request> for Counted<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;
        fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }
        fn call(&mut self, request: Request) -> S::Future {
            self.seen.fetch_add(1, Ordering::SeqCst);
            self.inner.call(request)
        }
    }

    #[tokio::test]
    async fn a_counting_layer_sees_every_call() {
        let count = Arc::new(AtomicUsize::new(0));
        let handler = ServiceHandler::new(
            ServiceBuilder::new()
                .layer(Count(Arc::clone(&count)))
                .service(crate::Echo.into_service()),
        );
        for i in 0..100 {
            let reply = within(handler.handle(Bytes::from(format!("{i}")), &ctx())).await;
            assert_eq!(reply.unwrap(), format!("{i}"));
        }
        assert_eq!(count.load(Ordering::SeqCst), 100);
    }
}
