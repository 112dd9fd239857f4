//! What one request produces on the wire: one reply, none, or a stream of replies. Plain
//! handlers always make one reply; a protocol with one-way calls and streamed replies (Varlink)
//! makes the other two.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::boxed::BoxError;

/// The replies to one request, as [`Handler::handle`](crate::Handler::handle) returns them.
/// The session writes them in request order: a stream's replies all leave before the next
/// request's.
///
/// A reply of bytes or text converts into [`Response::Reply`] with `.into()` (from `Bytes`,
/// `Vec<u8>`, `String`, `&'static str` and `&'static [u8]`), and a [`ReplyStream`] into
/// [`Response::Stream`].
#[derive(Debug)]
pub enum Response {
    /// One reply message.
    Reply(Bytes),
    /// No reply at all (a one-way call).
    Silent,
    /// Any number of reply messages, written as they come.
    Stream(ReplyStream),
}

impl Response {
    /// The one reply, if this is [`Response::Reply`].
    pub fn reply(&self) -> Option<&Bytes> {
        match self {
            Response::Reply(reply) => Some(reply),
            _ => None,
        }
    }

    /// The one reply, if this is [`Response::Reply`]; `self` back otherwise.
    ///
    /// # Errors
    ///
    /// `self`, when it is [`Response::Silent`] or [`Response::Stream`].
    pub fn into_reply(self) -> Result<Bytes, Self> {
        match self {
            Response::Reply(reply) => Ok(reply),
            other => Err(other),
        }
    }
}

impl From<Bytes> for Response {
    fn from(reply: Bytes) -> Self {
        Response::Reply(reply)
    }
}

impl From<Vec<u8>> for Response {
    fn from(reply: Vec<u8>) -> Self {
        Response::Reply(reply.into())
    }
}

impl From<String> for Response {
    fn from(reply: String) -> Self {
        Response::Reply(reply.into())
    }
}

impl From<&'static str> for Response {
    fn from(reply: &'static str) -> Self {
        Response::Reply(Bytes::from_static(reply.as_bytes()))
    }
}

impl From<&'static [u8]> for Response {
    fn from(reply: &'static [u8]) -> Self {
        Response::Reply(Bytes::from_static(reply))
    }
}

impl From<ReplyStream> for Response {
    fn from(stream: ReplyStream) -> Self {
        Response::Stream(stream)
    }
}

/// A stream of reply messages for one request, with the message that ends it early if the
/// server shuts down while it is still open.
///
/// The session polls the stream only while its peer keeps up: when the peer stops reading, the
/// stream is not polled, so a producer that drops what a slow subscriber missed (a tokio
/// `broadcast` channel, for example) keeps the server's memory bounded. An `Err` item ends
/// the connection, as a handler error does, after the replies before it are written.
pub struct ReplyStream {
    stream: Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>,
    farewell: Option<Bytes>,
}

impl ReplyStream {
    /// A reply stream over `stream`. At shutdown it is dropped between two replies, with no
    /// further message unless [`on_shutdown`](Self::on_shutdown) gives one.
    pub fn new(stream: impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static) -> Self {
        Self {
            stream: Box::pin(stream),
            farewell: None,
        }
    }

    /// The message written, as the last reply of this request, when the server shuts down
    /// before the stream has ended.
    pub fn on_shutdown(mut self, last: Bytes) -> Self {
        self.farewell = Some(last);
        self
    }

    /// Takes the message to write at shutdown (see [`on_shutdown`](Self::on_shutdown)).
    pub fn take_farewell(&mut self) -> Option<Bytes> {
        self.farewell.take()
    }
}

impl Stream for ReplyStream {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyStream")
            .field("farewell", &self.farewell)
            .finish_non_exhaustive()
    }
}
