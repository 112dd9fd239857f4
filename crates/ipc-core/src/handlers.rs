//! The built-in handlers: [`Echo`] and [`Ack`].

use bytes::Bytes;

use crate::boxed::BoxError;
use crate::handler::{Context, Handler};
use crate::response::Response;

/// The reply [`Ack`] sends by default.
pub const DEFAULT_ACK_TEXT: &str = "Mensagem recebida!";

/// Replies with the request bytes, exactly (no copy: the reply shares the request's buffer),
/// and with the descriptors that came with the request, where the server sends descriptors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    // Answers at once: a ready future, with nothing to hold across an await, inlined into
    // the server's call.
    #[inline]
    fn handle(
        &self,
        request: Bytes,
        ctx: &Context,
    ) -> impl std::future::Future<Output = Result<Response, BoxError>> + Send {
        ctx.echo_fds();
        std::future::ready(Ok(request.into()))
    }
}

/// Replies to every request with the same fixed text, [`DEFAULT_ACK_TEXT`] unless set.
#[derive(Debug, Clone)]
pub struct Ack {
    reply: Bytes,
}

impl Ack {
    /// An acknowledging handler that replies with `reply`.
    pub fn new(reply: impl Into<Bytes>) -> Self {
        Self {
            reply: reply.into(),
        }
    }

    /// The reply this handler sends.
    pub fn reply(&self) -> &Bytes {
        &self.reply
    }
}

impl Default for Ack {
    fn default() -> Self {
        Self::new(DEFAULT_ACK_TEXT)
    }
}

impl Handler for Ack {
    async fn handle(&self, _request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
        // Cloning `Bytes` bumps a reference count; the text is never copied.
        Ok(self.reply.clone().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerCredentials;

    fn ctx() -> Context {
        Context::new(7, PeerCredentials::new(1000, 100, Some(42)))
    }

    async fn reply(handler: impl Handler, request: Bytes) -> Bytes {
        let response = handler.handle(request, &ctx()).await.unwrap();
        response.into_reply().expect("one reply")
    }

    #[tokio::test]
    async fn echo_returns_the_exact_bytes() {
        let req = Bytes::from_static(b"\xff\x00abc\r");
        assert_eq!(reply(Echo, req.clone()).await, req);
    }

    #[tokio::test]
    async fn ack_defaults_to_the_original_text() {
        assert_eq!(
            reply(Ack::default(), Bytes::new()).await,
            "Mensagem recebida!"
        );
    }

    #[tokio::test]
    async fn ack_text_is_settable() {
        assert_eq!(reply(Ack::new("ok"), Bytes::from("x")).await, "ok");
    }
}
