//! The Varlink service fed a sequence of arbitrary messages on one connection (the input cut
//! at NUL bytes, as the wire cuts it), with a `Monitor` subscriber on another: no message
//! breaks the service for the calls after it, every reply is well formed, and the subscriber
//! only ever sees well-formed events.
#![no_main]

use futures::{FutureExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use localipc_core::{Handler, Response};

#[path = "varlink_common.rs"]
#[allow(dead_code)]
mod common;

use common::{Answer, answer, check_reply};

fuzz_target!(|input: &[u8]| {
    let service = common::service();
    let watcher = common::context(1);
    let Ok(Response::Stream(mut events)) = service
        .handle(
            bytes::Bytes::from_static(br#"{"method":"io.ipc.Server.Monitor","more":true}"#),
            &watcher,
        )
        .now_or_never()
        .expect("Monitor answers at once")
    else {
        panic!("Monitor is not a stream");
    };
    let ctx = common::context(2);
    service.connected(&ctx);
    for message in input.split(|&b| b == 0).take(64) {
        if let Answer::Replies { replies, .. } = answer(&service, &ctx, message) {
            for reply in &replies {
                check_reply(reply);
            }
        }
        // The subscriber's events so far are replies too, and continue.
        while let Some(Some(event)) = events.next().now_or_never() {
            let event = event.expect("a monitor event");
            assert!(check_reply(&event), "a monitor event ends the stream");
        }
    }
    service.disconnected(&ctx);
    // Whatever came before, the service still answers.
    let Answer::Replies { replies, ended } = answer(
        &service,
        &ctx,
        br#"{"method":"io.ipc.Messages.Echo","parameters":{"message":"still here"}}"#,
    ) else {
        panic!("the service stopped answering");
    };
    assert!(ended);
    assert_eq!(
        &replies[0][..],
        br#"{"parameters":{"message":"still here"}}"#
    );
});
