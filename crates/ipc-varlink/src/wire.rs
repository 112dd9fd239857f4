//! The Varlink messages as JSON: a call (`method`, `parameters`, `oneway`, `more`, `upgrade`)
//! and a reply (`parameters`, `continues`, `error`). Each message is one JSON object; on the
//! wire each is followed by a NUL byte ([`localipc_core::Framing::Nul`]).

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::VarlinkError;

/// A call as it arrives, borrowing from the received message.
#[derive(Debug, Deserialize)]
pub(crate) struct IncomingCall<'a> {
    #[serde(borrow)]
    pub(crate) method: Cow<'a, str>,
    /// Omitted, `null` and `{}` all mean "no parameters".
    #[serde(default, borrow)]
    pub(crate) parameters: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) oneway: bool,
    #[serde(default)]
    pub(crate) more: bool,
    #[serde(default)]
    pub(crate) upgrade: bool,
}

/// A call as a client sends it.
#[derive(Debug, Serialize)]
pub(crate) struct OutgoingCall<'a, P> {
    pub(crate) method: &'a str,
    pub(crate) parameters: &'a P,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) oneway: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) more: bool,
}

/// A reply as a client receives it.
#[derive(Debug, Deserialize)]
pub(crate) struct IncomingReply<'a> {
    #[serde(default, borrow)]
    pub(crate) parameters: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) continues: bool,
    #[serde(default, borrow)]
    pub(crate) error: Option<Cow<'a, str>>,
}

impl IncomingReply<'_> {
    /// Whether more replies of its call follow (an error reply is always the last).
    pub(crate) fn continues(&self) -> bool {
        self.continues && self.error.is_none()
    }

    /// The reply's parameters as `T` (none count as `{}`), or its error.
    pub(crate) fn into_result<T: serde::de::DeserializeOwned>(
        self,
    ) -> Result<Result<T, VarlinkError>, serde_json::Error> {
        let parameters = parameters_or_empty(self.parameters);
        match self.error {
            Some(name) => {
                let parameters: serde_json::Value = serde_json::from_str(parameters.get())?;
                Ok(Err(VarlinkError::new(name.into_owned(), parameters)))
            }
            None => serde_json::from_str(parameters.get()).map(Ok),
        }
    }
}

/// The most bytes of a name (of a method, an interface, a parameter or an error) that an error
/// reply or a `Monitor` event repeats: a name the peer made up may be as large as a message,
/// and repeated whole it would make a reply larger than the peer may receive.
pub(crate) const MAX_REPEATED_NAME: usize = 512;

/// The smallest maximum message size a Varlink service needs: its error replies and `Monitor`
/// events repeat names of up to 512 bytes (six times that, escaped in JSON,
/// at worst), so with messages of at least this size they always fit.
pub const MIN_MAX_MESSAGE: usize = 8192;

/// `name`, cut to at most [`MAX_REPEATED_NAME`] bytes (on a character boundary) and ending in
/// `…` if it was cut.
pub(crate) fn bounded_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.len() <= MAX_REPEATED_NAME {
        return std::borrow::Cow::Borrowed(name);
    }
    const MARK: &str = "…";
    let mut end = MAX_REPEATED_NAME - MARK.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{MARK}", &name[..end]))
}

/// `{}`, for calls and replies with no parameters.
pub(crate) fn empty() -> &'static RawValue {
    // A constant that is valid JSON.
    serde_json::from_str("{}").unwrap_or_else(|_| unreachable!("{{}} is JSON"))
}

/// The parameters, or `{}` where there are none (omitted or `null`).
pub(crate) fn parameters_or_empty(parameters: Option<&RawValue>) -> &RawValue {
    match parameters {
        Some(raw) if raw.get() != "null" => raw,
        _ => empty(),
    }
}

/// A reply carrying `parameters`, with `continues` set when more replies follow. `hint` is
/// the size the parameters probably take (the call's, or the last reply's), so that the buffer
/// is allocated once.
pub(crate) fn encode_reply(
    parameters: &impl Serialize,
    continues: bool,
    hint: usize,
) -> Result<Bytes, serde_json::Error> {
    const HEAD: &[u8] = b"{\"parameters\":";
    const CONTINUES: &[u8] = b",\"continues\":true}";
    let mut out = Vec::with_capacity(HEAD.len() + hint + CONTINUES.len());
    out.extend_from_slice(HEAD);
    serde_json::to_writer(&mut out, parameters)?;
    if continues {
        out.extend_from_slice(CONTINUES);
    } else {
        out.push(b'}');
    }
    Ok(Bytes::from(out))
}

/// An error reply.
pub(crate) fn encode_error(error: &VarlinkError) -> Bytes {
    #[derive(Serialize)]
    struct ErrorReply<'a> {
        error: &'a str,
        parameters: &'a serde_json::Value,
    }
    let reply = ErrorReply {
        error: error.name(),
        parameters: error.parameters(),
    };
    // A string and a JSON value always serialize.
    serde_json::to_vec(&reply)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"error\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_parameters_may_be_omitted_null_or_empty() {
        for text in [
            r#"{"method":"a.b.C"}"#,
            r#"{"method":"a.b.C","parameters":null}"#,
            r#"{"method":"a.b.C","parameters":{}}"#,
        ] {
            let call: IncomingCall<'_> = serde_json::from_str(text).unwrap();
            assert_eq!(parameters_or_empty(call.parameters).get(), "{}", "{text}");
            assert!(!call.more && !call.oneway && !call.upgrade);
        }
    }

    #[test]
    fn replies_encode_as_the_specification_shows() {
        let reply = encode_reply(&serde_json::json!({"n": 1}), true, 0).unwrap();
        assert_eq!(&reply[..], br#"{"parameters":{"n":1},"continues":true}"#);
        let reply = encode_reply(&serde_json::json!({}), false, 64).unwrap();
        assert_eq!(&reply[..], br#"{"parameters":{}}"#);
        let error = encode_error(&VarlinkError::method_not_found("a.b.C"));
        let parsed: IncomingReply<'_> = serde_json::from_slice(&error).unwrap();
        let result: Result<serde_json::Value, _> = parsed.into_result().unwrap();
        assert_eq!(result.unwrap_err(), VarlinkError::method_not_found("a.b.C"));
    }
}
