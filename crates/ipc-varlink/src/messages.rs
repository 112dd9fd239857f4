//! `io.ipc.Messages`: the built-in server's interface in Varlink, the typed form of its plain
//! `echo` and `ack` handlers plus a streaming method.

use futures::Stream;
use localipc_core::Context;
use serde::{Deserialize, Serialize};

use crate::error::VarlinkError;
use crate::interface::Interface;
use crate::method::More;

/// The description of `io.ipc.Messages`.
pub const MESSAGES_IDL: &str = "\
# The built-in server's messages, as typed calls.
interface io.ipc.Messages

# Returns the message unchanged.
method Echo(message: string) -> (message: string)

# Acknowledges a message with the server's acknowledgement text.
method Ack(message: string) -> (reply: string)

# Call with more: `count` replies, numbered from 0, each carrying the message
# (empty if none is given). A count of 0 gets one reply with index -1.
method Count(count: int, message: ?string) -> (index: int, message: string)
";

#[derive(Serialize, Deserialize)]
struct Message {
    message: String,
}

#[derive(Serialize)]
struct Acknowledgement {
    reply: std::sync::Arc<str>,
}

#[derive(Deserialize)]
struct CountRequest {
    count: i64,
    message: Option<String>,
}

#[derive(Serialize)]
struct Counted {
    index: i64,
    message: std::sync::Arc<str>,
}

/// The `io.ipc.Messages` interface, acknowledging with `ack_text`.
pub fn messages_interface(ack_text: &str) -> Interface {
    let ack: std::sync::Arc<str> = ack_text.into();
    Interface::new(MESSAGES_IDL)
        .unwrap_or_else(|e| unreachable!("a built-in description is valid: {e}"))
        .method("Echo", |m: Message, _ctx: Context| async move {
            Ok::<_, VarlinkError>(m)
        })
        .method("Ack", move |_: Message, _ctx: Context| {
            let reply = Acknowledgement {
                reply: std::sync::Arc::clone(&ack),
            };
            async move { Ok::<_, VarlinkError>(reply) }
        })
        .streaming("Count", |r: CountRequest, _ctx: Context| count(r))
}

fn count(
    request: CountRequest,
) -> impl Stream<Item = Result<More<Counted>, VarlinkError>> + Send + 'static {
    let message: std::sync::Arc<str> = request.message.unwrap_or_default().into();
    let items: Box<dyn Iterator<Item = Result<More<Counted>, VarlinkError>> + Send> =
        if request.count < 0 {
            Box::new(std::iter::once(Err(VarlinkError::invalid_parameter(
                "count",
            ))))
        } else if request.count == 0 {
            Box::new(std::iter::once(Ok(More::last(Counted {
                index: -1,
                message,
            }))))
        } else {
            let last = request.count - 1;
            Box::new((0..request.count).map(move |index| {
                let counted = Counted {
                    index,
                    message: std::sync::Arc::clone(&message),
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
