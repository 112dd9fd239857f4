//! `io.ipc.Messages`: the built-in server's interface in Varlink, the typed form of its plain
//! `echo` and `ack` handlers plus a streaming method, implemented over the code generated
//! from its description (`interfaces/io.ipc.Messages.varlink`).

use std::sync::Arc;

use futures::Stream;
use localipc_core::Context;

use crate::error::VarlinkError;
use crate::interface::Interface;
use crate::interfaces::messages::{
    self, AckParameters, AckReply, CountParameters, CountReply, EchoParameters, EchoReply, Error,
};
use crate::method::More;
use crate::typed::MethodError;

/// The description of `io.ipc.Messages`.
pub const MESSAGES_IDL: &str = messages::DESCRIPTION;

/// The built-in server's messages.
struct Messages {
    ack: String,
}

impl messages::Methods for Messages {
    async fn echo(
        &self,
        p: EchoParameters,
        ctx: &Context,
    ) -> Result<EchoReply, MethodError<Error>> {
        ctx.echo_fds();
        Ok(EchoReply { message: p.message })
    }

    async fn ack(&self, _: AckParameters, _ctx: &Context) -> Result<AckReply, MethodError<Error>> {
        Ok(AckReply {
            reply: self.ack.clone(),
        })
    }

    fn count(
        self: Arc<Self>,
        p: CountParameters,
        _ctx: Context,
    ) -> impl Stream<Item = Result<More<CountReply>, MethodError<Error>>> + Send + 'static {
        count(p)
    }
}

/// The `io.ipc.Messages` interface, acknowledging with `ack_text`.
pub fn messages_interface(ack_text: &str) -> Interface {
    messages::interface(Arc::new(Messages {
        ack: ack_text.to_owned(),
    }))
}

type Item = Result<More<CountReply>, MethodError<Error>>;

fn count(request: CountParameters) -> impl Stream<Item = Item> + Send + 'static {
    let message = request.message.unwrap_or_default();
    let items: Box<dyn Iterator<Item = Item> + Send> = if request.count < 0 {
        Box::new(std::iter::once(Err(VarlinkError::invalid_parameter(
            "count",
        )
        .into())))
    } else if request.count == 0 {
        Box::new(std::iter::once(Ok(More::last(CountReply {
            index: -1,
            message,
        }))))
    } else {
        let last = request.count - 1;
        Box::new((0..request.count).map(move |index| {
            let counted = CountReply {
                index,
                message: message.clone(),
            };
            Ok(if index == last {
                More::last(counted)
            } else {
                More::next(counted)
            })
        }))
    };
    futures::stream::iter(items)
}
