//! One handler call: its panics caught, its time bounded by the request timeout.

use std::any::Any;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use localipc_core::{BoxError, Context, Handler, Response};
use tokio::time::Instant;

use super::error::SessionError;

/// A call's response, with the call's own context when it has one (the descriptors pushed
/// for its replies are taken from it).
pub(super) type Answer = (Response, Option<Context>);

/// One handler call, with its panics caught and its time bounded by the request timeout
/// (counted from now).
///
/// A request that came with descriptors, or any request when replies may carry up to
/// `send_max` descriptors, gets its own copy of `ctx`, which holds them; those of the request
/// the handler did not take are closed when the call returns.
pub(super) fn call<'a, H: Handler>(
    handler: &'a H,
    ctx: &'a Context,
    request: Bytes,
    fds: Option<Vec<OwnedFd>>,
    send_max: usize,
    timeout: Option<Duration>,
) -> impl Future<Output = Result<Answer, SessionError>> + Send + 'a {
    let due = Due::from_now(timeout);
    async move {
        let own = (fds.is_some() || send_max > 0)
            .then(|| ctx.clone().for_call(fds.unwrap_or_default(), send_max));
        let outcome = due
            .bound(caught(handler, own.as_ref().unwrap_or(ctx), request))
            .await;
        if let Some(own) = &own {
            own.close_fds();
        }
        Ok((settle(outcome?)?, own))
    }
}

/// The handler's call for `request`, with a panic inside it caught as an `Err`.
pub(super) fn caught<'a, H: Handler>(
    handler: &'a H,
    ctx: &'a Context,
    request: Bytes,
) -> impl Future<Output = Caught<Response>> + Send + 'a {
    AssertUnwindSafe(handler.handle(request, ctx)).catch_unwind()
}

/// What a call (or a stream's next item) came to: its result, or the panic that ended it.
pub(super) type Caught<T> = Result<Result<T, BoxError>, Box<dyn Any + Send>>;

/// When a handler call must have answered by, if the request timeout sets a limit.
#[derive(Clone, Copy)]
pub(super) struct Due(Option<(Instant, Duration)>);

impl Due {
    /// The request timeout `limit`, counted from now.
    pub(super) fn from_now(limit: Option<Duration>) -> Self {
        Due(limit.map(|limit| (Instant::now() + limit, limit)))
    }

    /// `call`'s output, or [`SessionError::HandlerTimeout`] if it is not done by then.
    pub(super) async fn bound<F: Future>(self, call: F) -> Result<F::Output, SessionError> {
        match self.0 {
            Some((due, limit)) => tokio::time::timeout_at(due, call)
                .await
                .map_err(|_| SessionError::HandlerTimeout(limit)),
            None => Ok(call.await),
        }
    }
}

/// The response of a finished call, or why there is none.
pub(super) fn settle<T>(outcome: Caught<T>) -> Result<T, SessionError> {
    match outcome {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(SessionError::Handler(e)),
        Err(panic) => Err(SessionError::HandlerPanicked(panic_message(&panic))),
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
