//! What code generated from an interface description (by `localipc-varlink-codegen`) builds
//! on: the errors an interface declares as a Rust enum ([`DeclaredError`]), what a typed method
//! fails with ([`MethodError`]) and what a typed call fails with ([`TypedCallError`]).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{CallError, VarlinkError};

/// The errors one interface declares, as a Rust type: generated code implements it for each
/// interface's `Error` enum. It (de)serializes as an error reply does, `{"error": NAME,
/// "parameters": {...}}`, with qualified names.
pub trait DeclaredError: Serialize + DeserializeOwned + Sized + Send + 'static {
    /// The qualified names of the errors, as the description declares them.
    const NAMES: &'static [&'static str];

    /// The error reply that carries this error.
    fn into_reply(self) -> VarlinkError {
        match serde_json::to_value(&self) {
            Ok(Value::Object(mut message)) => {
                let name = match message.remove("error") {
                    Some(Value::String(name)) => name,
                    _ => String::new(),
                };
                let parameters = message.remove("parameters").unwrap_or(Value::Null);
                VarlinkError::new(name, parameters)
            }
            // Generated enums always serialize to a tagged object.
            _ => VarlinkError::named(String::new()),
        }
    }

    /// This error, if `reply` is one the interface declares; `Err` if its name is declared
    /// but its parameters do not fit.
    fn from_reply(reply: &VarlinkError) -> Option<Result<Self, serde_json::Error>> {
        if !Self::NAMES.contains(&reply.name()) {
            return None;
        }
        let message = serde_json::json!({
            "error": reply.name(),
            "parameters": reply.parameters(),
        });
        Some(serde_json::from_value(message))
    }
}

/// What a method of a generated server trait fails with: an error its interface declares, or
/// any other error reply (the standard `org.varlink.service.InvalidParameter`, say). Both
/// convert into it with `?` or `.into()`.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodError<E> {
    /// An error the method's interface declares.
    Declared(E),
    /// Any other error reply.
    Other(VarlinkError),
}

impl<E> From<VarlinkError> for MethodError<E> {
    fn from(e: VarlinkError) -> Self {
        MethodError::Other(e)
    }
}

impl<E: DeclaredError> From<MethodError<E>> for VarlinkError {
    fn from(e: MethodError<E>) -> Self {
        match e {
            MethodError::Declared(e) => e.into_reply(),
            MethodError::Other(e) => e,
        }
    }
}

impl<E: fmt::Debug> fmt::Display for MethodError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodError::Declared(e) => write!(f, "{e:?}"),
            MethodError::Other(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug> std::error::Error for MethodError<E> {}

/// Why a call made through a generated client failed: the server answered with an error the
/// interface declares, or the call failed otherwise (another error reply, such as
/// `org.varlink.service.PermissionDenied`, or the connection, a time limit, a reply that does
/// not fit the reply type).
#[derive(Debug, thiserror::Error)]
pub enum TypedCallError<E: fmt::Debug> {
    /// The server answered with an error the interface declares. The connection goes on.
    #[error("{0:?}")]
    Declared(E),
    /// Any other failure, as the untyped client reports it.
    #[error(transparent)]
    Call(#[from] CallError),
}

impl<E: fmt::Debug> TypedCallError<E> {
    /// The declared error, if the server answered with one.
    pub fn declared(&self) -> Option<&E> {
        match self {
            TypedCallError::Declared(e) => Some(e),
            TypedCallError::Call(_) => None,
        }
    }
}

impl<E: DeclaredError + fmt::Debug> TypedCallError<E> {
    /// Sorts a failed call: an error reply the interface declares becomes
    /// [`TypedCallError::Declared`]. One whose parameters do not fit stays a
    /// [`CallError::Reply`], so nothing the server said is lost.
    pub fn sort(e: CallError) -> Self {
        if let CallError::Reply(reply) = &e
            && let Some(Ok(declared)) = E::from_reply(reply)
        {
            return TypedCallError::Declared(declared);
        }
        TypedCallError::Call(e)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "error", content = "parameters")]
    enum Declared {
        #[serde(rename = "org.example.NotFound")]
        NotFound { name: String },
        #[serde(rename = "org.example.Busy")]
        Busy {},
    }

    impl DeclaredError for Declared {
        const NAMES: &'static [&'static str] = &["org.example.NotFound", "org.example.Busy"];
    }

    #[test]
    fn declared_errors_go_to_replies_and_back() {
        for declared in [Declared::NotFound { name: "x".into() }, Declared::Busy {}] {
            let reply = VarlinkError::from(MethodError::Declared(declared));
            let back = Declared::from_reply(&reply)
                .expect("declared")
                .expect("fits");
            let again = VarlinkError::from(MethodError::Declared(back));
            assert_eq!(reply, again);
        }
        let busy = VarlinkError::from(MethodError::Declared(Declared::Busy {}));
        assert_eq!(busy.name(), "org.example.Busy");
        assert_eq!(busy.parameters(), &serde_json::json!({}));
    }

    #[test]
    fn other_replies_are_not_declared() {
        let denied = VarlinkError::permission_denied();
        assert!(Declared::from_reply(&denied).is_none());
        let sorted = TypedCallError::<Declared>::sort(CallError::Reply(denied.clone()));
        assert!(matches!(sorted, TypedCallError::Call(CallError::Reply(e)) if e == denied));
        // A declared name with parameters that do not fit stays the untyped reply.
        let odd = VarlinkError::new("org.example.NotFound", serde_json::json!({"name": 3}));
        let sorted = TypedCallError::<Declared>::sort(CallError::Reply(odd.clone()));
        assert!(matches!(sorted, TypedCallError::Call(CallError::Reply(e)) if e == odd));
        let fits = VarlinkError::new("org.example.NotFound", serde_json::json!({"name": "a"}));
        let sorted = TypedCallError::<Declared>::sort(CallError::Reply(fits));
        assert_eq!(
            sorted.declared(),
            Some(&Declared::NotFound { name: "a".into() })
        );
    }
}
