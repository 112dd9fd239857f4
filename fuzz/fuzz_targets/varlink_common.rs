//! What the Varlink targets share: the service the `ipc-server` binary serves, a call run to
//! the end of what it answers without waiting, and the checks every reply must pass.

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use localipc_core::{Context, Handler, PeerCredentials, Response};
use serde_json::Value;

/// Most replies of one streamed call that a target reads.
const STREAM_ITEMS: usize = 64;

/// The built-in service: `io.ipc.Messages`, `io.ipc.Server` and `org.varlink.service`, with a
/// small monitor backlog. Its `Monitor` is open to the targets' callers (uid 1000), and its
/// `Ack` is for root only, so that calls refused by a policy are fuzzed too.
pub fn service() -> localipc_varlink::Service {
    use localipc_varlink::Policy;
    localipc_varlink::Service::builder()
        .vendor("fuzz")
        .interface(localipc_varlink::messages_interface("ok").allow_method("Ack", Policy::uid(0)))
        .server_interface()
        .monitor_policy(Policy::uid(1000))
        .monitor_backlog(4)
        .build()
        .expect("the built-in interfaces build")
}

/// A connection's context.
pub fn context(id: u64) -> Context {
    Context::new(id, PeerCredentials::new(1000, 1000, Some(1)))
}

/// What a call answered, as far as it answers without waiting.
#[derive(Debug)]
pub enum Answer {
    /// The service refused the message as a call: the connection would close.
    Refused,
    /// No reply (a one-way call).
    Silent,
    /// These replies, in order; `ended` if the last one ends the call.
    Replies { replies: Vec<Bytes>, ended: bool },
    /// The call had not answered yet.
    Waiting,
}

/// Calls `service` with `message` and reads what it answers at once (at most
/// [`STREAM_ITEMS`] replies of a stream).
pub fn answer(service: &localipc_varlink::Service, ctx: &Context, message: &[u8]) -> Answer {
    let Some(result) = service
        .handle(Bytes::copy_from_slice(message), ctx)
        .now_or_never()
    else {
        return Answer::Waiting;
    };
    match result {
        Err(_) => Answer::Refused,
        Ok(Response::Silent) => Answer::Silent,
        Ok(Response::Reply(reply)) => Answer::Replies {
            replies: vec![reply],
            ended: true,
        },
        Ok(Response::Stream(mut stream)) => {
            let mut replies = Vec::new();
            let mut ended = false;
            while replies.len() < STREAM_ITEMS {
                match stream.next().now_or_never() {
                    Some(Some(Ok(reply))) => {
                        let last = !check_reply(&reply);
                        replies.push(reply);
                        if last {
                            ended = true;
                            assert!(
                                matches!(stream.next().now_or_never(), Some(None)),
                                "a stream went on after its last reply"
                            );
                            break;
                        }
                    }
                    Some(Some(Err(e))) => panic!("a built-in stream failed: {e}"),
                    Some(None) => panic!("a stream ended without a last reply"),
                    None => break,
                }
            }
            Answer::Replies { replies, ended }
        }
    }
}

/// Checks that `reply` is a Varlink reply that NUL framing can carry; returns whether more
/// replies of its call follow.
pub fn check_reply(reply: &[u8]) -> bool {
    assert!(!reply.contains(&0), "a reply holds a NUL byte");
    let value: Value = serde_json::from_slice(reply).expect("a reply is JSON");
    let object = value.as_object().expect("a reply is a JSON object");
    let continues = object
        .get("continues")
        .map(|c| c.as_bool().expect("continues is a bool"));
    match object.get("error") {
        Some(name) => {
            let name = name.as_str().expect("an error name is a string");
            assert!(name.contains('.'), "error {name:?} is not qualified");
            assert_ne!(continues, Some(true), "an error reply continues");
        }
        None => assert!(
            object.get("parameters").is_some_and(Value::is_object),
            "a reply without an error has no parameters object: {value}"
        ),
    }
    if let Some(parameters) = object.get("parameters") {
        assert!(
            parameters.is_object(),
            "parameters are not an object: {value}"
        );
    }
    continues == Some(true)
}

/// The flags of a message that is a JSON object: whether it asks for no reply, and for more.
/// Its members are taken as raw JSON, so an object whose numbers `Value` cannot hold (such as
/// `4e99999`, valid JSON) is still an object.
pub fn flags(message: &[u8]) -> Option<(bool, bool)> {
    use serde_json::value::RawValue;
    let object: std::collections::HashMap<String, Box<RawValue>> =
        serde_json::from_slice(message).ok()?;
    let flag = |name: &str| {
        object
            .get(name)
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };
    Some((flag("oneway"), flag("more")))
}
