//! `tower` both ways (feature `tower`): any [`tower_service::Service`] of [`Request`]s serves as a
//! [`Handler`] ([`ServiceHandler`]), and any handler becomes such a service ([`HandlerService`],
//! or [`HandlerExt::into_service`](crate::HandlerExt::into_service)), so the layers of `tower`
//! and its ecosystem (timeouts, concurrency and rate limits, load shedding, tracing) wrap a
//! handler as they wrap an axum or tonic service:
//!
//! ```
//! use std::time::Duration;
//! use localipc_core::tower::ServiceHandler;
//! use localipc_core::{Echo, HandlerExt};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // (A rate limit keeps a timer, so it is made inside a tokio runtime.)
//! let handler = ServiceHandler::new(
//!     ServiceBuilder::new()
//!         .timeout(Duration::from_secs(2))
//!         .concurrency_limit(64)
//!         .rate_limit(1000, Duration::from_secs(1))
//!         .service(Echo.into_service()),
//! );
//! # let _ = handler;
//! # }
//! ```
//!
//! The service's response is the handler's whole [`Response`]: one reply, none (a one-way
//! call) or a stream, so a Varlink service behind layers still answers one-way and `more`
//! calls as it does bare. A timeout layer bounds the call until its response is made; the
//! items of a stream are not bounded by it (the server's idle timeout watches those).
//!
//! The connection hooks ([`Handler::connected`], [`Handler::disconnected`]) do not cross a
//! service: a handler that needs them should wrap the service stack, not sit inside it.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use tower_service::Service;

use crate::boxed::{BoxError, BoxFuture};
use crate::handler::{Context, Handler};
use crate::response::Response;

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

/// A `tower` service serving as a [`Handler`]: its response is anything that becomes a
/// [`Response`] (`Response` itself, or `Bytes` for a service of plain replies).
///
/// The service need not be `Clone` (a `RateLimit` is not): the handler owns it, and every
/// request, from any connection, drives it to readiness and calls it in turn, under a lock
/// held only for that; the calls then run at the same time. So limits that a layer keeps in
/// its service (a rate limit's window, a concurrency limit's permits) apply to the server as
/// a whole, and requests wait for readiness in the order they came.
#[derive(Debug)]
pub struct ServiceHandler<S> {
    service: tokio::sync::Mutex<S>,
}

impl<S> ServiceHandler<S> {
    /// Serves requests with `service`.
    pub fn new(service: S) -> Self {
        Self {
            service: tokio::sync::Mutex::new(service),
        }
    }
}

impl<S> Handler for ServiceHandler<S>
where
    S: Service<Request> + Send + 'static,
    S::Response: Into<Response>,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        let call = {
            let mut service = self.service.lock().await;
            let ready = futures::future::poll_fn(|cx| service.poll_ready(cx)).await;
            if let Err(e) = ready {
                return Err(e.into());
            }
            service.call(Request::new(request, ctx.clone()))
        };
        match call.await {
            Ok(response) => Ok(response.into()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A [`Handler`] as a `tower` service, always ready; its response is the handler's whole
/// [`Response`].
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
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

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
    use crate::{HandlerExt, PeerCredentials, ReplyStream, handler_fn};
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

    /// The one reply of `handler` to `request`, or its error.
    async fn reply(handler: &impl Handler, request: String) -> Result<Bytes, BoxError> {
        let response = within(handler.handle(request.into(), &ctx())).await?;
        Ok(response.into_reply().expect("one reply"))
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
        assert_eq!(reply(&handler, "fast".into()).await.unwrap(), "fast");
        let err = reply(&handler, "slow".into()).await.unwrap_err();
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
                tokio::spawn(async move {
                    let response = h.handle(Bytes::from(format!("{i}")), &ctx()).await;
                    response.map(|r| r.into_reply().expect("one reply"))
                })
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
            assert_eq!(
                reply(&handler, format!("{i}")).await.unwrap(),
                format!("{i}")
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_that_is_not_clone_serves_behind_the_handler() {
        let handler = Arc::new(ServiceHandler::new(
            ServiceBuilder::new()
                .rate_limit(2, Duration::from_secs(1))
                .service(crate::Echo.into_service()),
        ));
        let start = tokio::time::Instant::now();
        for i in 0..6 {
            assert_eq!(
                reply(&*handler, format!("{i}")).await.unwrap(),
                format!("{i}")
            );
        }
        // Two per second: the fifth and sixth wait for the third window.
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn silent_and_streamed_responses_cross_the_service_stack() {
        let inner = handler_fn(|req: Bytes, _ctx| async move {
            Ok::<_, BoxError>(match &req[..] {
                b"quiet" => Response::Silent,
                _ => ReplyStream::new(futures::stream::iter([Ok(req.clone()), Ok(req)])).into(),
            })
        });
        let handler = ServiceHandler::new(
            ServiceBuilder::new()
                .timeout(Duration::from_secs(5))
                .concurrency_limit(4)
                .service(inner.into_service()),
        );
        let quiet = within(handler.handle("quiet".into(), &ctx()))
            .await
            .unwrap();
        assert!(matches!(quiet, Response::Silent));
        let Response::Stream(stream) = within(handler.handle("x".into(), &ctx())).await.unwrap()
        else {
            panic!("the stream was lost on the way");
        };
        use futures::StreamExt;
        let items: Vec<_> = within(stream.collect::<Vec<_>>()).await;
        assert_eq!(items.len(), 2);
    }
}
