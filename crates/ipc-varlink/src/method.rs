//! Methods as the service stores them: an async function from typed parameters to a typed
//! reply (or a stream of replies), behind one object-safe trait so that a service holds
//! methods of any types.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{self, Poll, ready};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use localipc_core::{BoxError, Context};
use pin_project_lite::pin_project;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::VarlinkError;
use crate::wire;

/// One reply of a streamed call: its parameters, and whether more replies follow.
///
/// A streaming method yields [`More::next`] for every reply but the last, and
/// [`More::last`] for the last one. A stream that never ends (a subscription) only ever
/// yields `next`; the server ends it at shutdown.
#[derive(Debug, Clone, PartialEq)]
pub struct More<T> {
    /// The reply's parameters.
    pub parameters: T,
    /// Whether more replies follow this one.
    pub continues: bool,
}

impl<T> More<T> {
    /// A reply that more replies follow.
    pub fn next(parameters: T) -> Self {
        Self {
            parameters,
            continues: true,
        }
    }

    /// The last reply of the call.
    pub fn last(parameters: T) -> Self {
        Self {
            parameters,
            continues: false,
        }
    }
}

/// Why a started call produced no reply: an error reply for the caller, or a failure that
/// ends the connection (a reply that cannot be encoded).
#[derive(Debug)]
pub(crate) enum Failure {
    Reply(VarlinkError),
    Broken(BoxError),
}

impl From<VarlinkError> for Failure {
    fn from(e: VarlinkError) -> Self {
        Failure::Reply(e)
    }
}

pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Result<Bytes, Failure>> + Send>>;
/// Encoded replies with their `continues` flag.
pub(crate) type ReplyItems = Pin<Box<dyn Stream<Item = Result<(Bytes, bool), Failure>> + Send>>;

/// A call that has started.
pub(crate) enum Started {
    One(ReplyFuture),
    Stream(ReplyItems),
}

/// A method of any parameter and reply types.
pub(crate) trait Method: Send + Sync + 'static {
    /// Decodes the parameters and starts the call.
    fn start(&self, parameters: &RawValue, ctx: Context) -> Result<Started, serde_json::Error>;
}

/// A method implemented by the function `f`; `K` says how it answers ([`Once`] or [`Many`])
/// and carries the types it is generic over (it holds none of them).
pub(crate) struct Typed<F, K> {
    f: F,
    kind: PhantomData<K>,
}

impl<F, K> Typed<F, K> {
    pub(crate) fn new(f: F) -> Self {
        Self {
            f,
            kind: PhantomData,
        }
    }
}

/// The parameter, reply, error and result types of a method's function.
type Signature<P, R, E, X> = PhantomData<fn(P) -> (R, E, X)>;

/// Answers once: `f` returns a future of the reply.
pub(crate) struct Once<P, R, E, Fut>(Signature<P, R, E, Fut>);

/// Answers with a stream: `f` returns a stream of replies.
pub(crate) struct Many<P, R, E, S>(Signature<P, R, E, S>);

impl<F, P, R, E, Fut> Method for Typed<F, Once<P, R, E, Fut>>
where
    F: Fn(P, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    P: DeserializeOwned + 'static,
    R: Serialize + 'static,
    E: Into<VarlinkError> + 'static,
{
    fn start(&self, parameters: &RawValue, ctx: Context) -> Result<Started, serde_json::Error> {
        // Replies are often about as large as their calls (an echo).
        let hint = parameters.get().len() + 16;
        let parameters: P = serde_json::from_str(parameters.get())?;
        let call = (self.f)(parameters, ctx);
        Ok(Started::One(Box::pin(Answer { call, hint })))
    }
}

pin_project! {
    /// A call that answers once, then its reply encoded. Polled where it is, as an `async`
    /// block would not be: it copies the call's future into its own state at the first poll.
    struct Answer<Fut> {
        #[pin]
        call: Fut,
        // About how large the reply will be.
        hint: usize,
    }
}

impl<Fut, R, E> Future for Answer<Fut>
where
    Fut: Future<Output = Result<R, E>>,
    R: Serialize,
    E: Into<VarlinkError>,
{
    type Output = Result<Bytes, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let reply = ready!(this.call.poll(cx)).map_err(|e| Failure::Reply(e.into()))?;
        Poll::Ready(
            wire::encode_reply(&reply, false, *this.hint).map_err(|e| Failure::Broken(e.into())),
        )
    }
}

impl<F, P, R, E, S> Method for Typed<F, Many<P, R, E, S>>
where
    F: Fn(P, Context) -> S + Send + Sync + 'static,
    S: Stream<Item = Result<More<R>, E>> + Send + 'static,
    P: DeserializeOwned + 'static,
    R: Serialize + 'static,
    E: Into<VarlinkError> + 'static,
{
    fn start(&self, parameters: &RawValue, ctx: Context) -> Result<Started, serde_json::Error> {
        let parameters: P = serde_json::from_str(parameters.get())?;
        // Each reply's buffer is sized by the one before.
        let mut hint = 64;
        let items = (self.f)(parameters, ctx).map(move |item| match item {
            Ok(reply) => {
                let bytes = wire::encode_reply(&reply.parameters, reply.continues, hint)
                    .map_err(|e| Failure::Broken(e.into()))?;
                hint = bytes.len();
                Ok((bytes, reply.continues))
            }
            Err(e) => Err(Failure::Reply(e.into())),
        });
        Ok(Started::Stream(Box::pin(items)))
    }
}
