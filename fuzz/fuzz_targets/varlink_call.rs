//! The Varlink call parser and dispatch, fed one arbitrary message: it never panics; what is
//! not a JSON object is refused; every reply is a well-formed Varlink reply; a one-way call
//! gets none; a stream's replies continue until exactly one last reply.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "varlink_common.rs"]
mod common;

use common::{Answer, answer, flags};

fuzz_target!(|message: &[u8]| {
    let service = common::service();
    let ctx = common::context(1);
    let answer = answer(&service, &ctx, message);
    let Some((oneway, more)) = flags(message) else {
        assert!(
            matches!(answer, Answer::Refused),
            "a message that is not a JSON object was taken as a call: {answer:?}"
        );
        return;
    };
    match answer {
        Answer::Refused | Answer::Waiting => {}
        Answer::Silent => assert!(oneway, "a call that wants a reply got none"),
        Answer::Replies { replies, ended } => {
            assert!(!oneway, "a one-way call got a reply");
            assert!(!replies.is_empty(), "a call got an empty stream");
            if !more {
                assert!(
                    ended && replies.len() == 1,
                    "a call without more got {replies:?}"
                );
            }
        }
    }
});
