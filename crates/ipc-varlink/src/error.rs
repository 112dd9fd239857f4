//! Errors: [`VarlinkError`], an error reply (a method's typed failure, sent to the caller, after
//! which the connection goes on); [`CallError`], why a client call failed; [`BuildError`], why a
//! service could not be built.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The interface of the standard errors every Varlink service may send.
pub const SERVICE_INTERFACE: &str = "org.varlink.service";

/// An error reply: a qualified error name (`org.example.NotFound`) and its parameters. Methods
/// return it (or any error that converts into it) to fail a call; the connection goes on. A
/// client receives it as [`CallError::Reply`].
#[derive(Debug, Clone, PartialEq)]
pub struct VarlinkError {
    name: String,
    parameters: Value,
}

impl VarlinkError {
    /// An error named `name` (fully qualified: the interface, a dot, the error) with
    /// `parameters`, which must serialize to a JSON object (or `()` / an empty struct for
    /// none). Parameters that do not serialize to an object are sent as none.
    pub fn new(name: impl Into<String>, parameters: impl Serialize) -> Self {
        let parameters = match serde_json::to_value(parameters) {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => Value::Object(Default::default()),
        };
        Self {
            name: name.into(),
            parameters,
        }
    }

    /// An error with no parameters.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            parameters: Value::Object(Default::default()),
        }
    }

    /// The qualified error name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The error's parameters (a JSON object).
    pub fn parameters(&self) -> &Value {
        &self.parameters
    }

    /// The parameters as `T`.
    ///
    /// # Errors
    ///
    /// If the parameters do not fit `T`.
    pub fn parameters_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.parameters)
    }

    // The standard errors below repeat a name the caller sent: it is cut to 512 bytes (ending
    // in `…`), so that the error reply always fits.

    /// `org.varlink.service.InterfaceNotFound`: no such interface here (the name is cut to 512
    /// bytes, ending in `…`, so the reply always fits).
    pub fn interface_not_found(interface: &str) -> Self {
        Self::standard("InterfaceNotFound", "interface", interface)
    }

    /// `org.varlink.service.MethodNotFound`: the interface has no such method.
    pub fn method_not_found(method: &str) -> Self {
        Self::standard("MethodNotFound", "method", method)
    }

    /// `org.varlink.service.MethodNotImplemented`: the interface describes the method, but this
    /// service does not implement it.
    pub fn method_not_implemented(method: &str) -> Self {
        Self::standard("MethodNotImplemented", "method", method)
    }

    /// `org.varlink.service.InvalidParameter`: a parameter is missing, of the wrong type, or
    /// refused by the method.
    pub fn invalid_parameter(parameter: &str) -> Self {
        Self::standard("InvalidParameter", "parameter", parameter)
    }

    /// `org.varlink.service.PermissionDenied`: the caller may not make this call.
    pub fn permission_denied() -> Self {
        Self::named(format!("{SERVICE_INTERFACE}.PermissionDenied"))
    }

    /// `org.varlink.service.ExpectedMore`: the method streams its replies and must be called
    /// with `more`.
    pub fn expected_more() -> Self {
        Self::named(format!("{SERVICE_INTERFACE}.ExpectedMore"))
    }

    fn standard(error: &str, key: &str, value: &str) -> Self {
        let mut map = serde_json::Map::new();
        map.insert(
            key.to_owned(),
            Value::String(crate::wire::bounded_name(value).into_owned()),
        );
        Self {
            name: format!("{SERVICE_INTERFACE}.{error}"),
            parameters: Value::Object(map),
        }
    }
}

impl fmt::Display for VarlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.parameters {
            Value::Object(map) if map.is_empty() => Ok(()),
            parameters => write!(f, " {parameters}"),
        }
    }
}

impl std::error::Error for VarlinkError {}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server answered with an error reply. The connection is still usable.
    #[error("{0}")]
    Reply(VarlinkError),
    /// Connecting failed, or the connection failed, closed, or cannot be used any more
    /// ([`localipc_client::ClientError::Unusable`]: a reply broke it, or a streamed call was dropped
    /// before its end); see [`localipc_client::ClientError`].
    #[error(transparent)]
    Connection(#[from] localipc_client::ClientError),
    /// No reply within the time limit. The connection stays usable: the late reply is dropped
    /// by the next call.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The parameters of a call to `method` could not be sent as JSON, or its reply did not
    /// fit the type asked for. The connection stays usable.
    #[error("{method}: {source}")]
    Json {
        /// The method called.
        method: String,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// The server sent something that is not a Varlink reply. The connection cannot be used
    /// any more (later calls fail with [`localipc_client::ClientError::Unusable`]); a reply larger
    /// than the client's maximum message size is [`CallError::Connection`] with
    /// [`localipc_client::ClientError::Protocol`].
    #[error("not a Varlink reply: {0}")]
    Protocol(String),
}

impl CallError {
    /// A [`CallError::Json`] for a call to `method`.
    pub(crate) fn json(method: &str, source: serde_json::Error) -> Self {
        CallError::Json {
            method: method.to_owned(),
            source,
        }
    }

    /// The error reply, if the server sent one.
    pub fn reply(&self) -> Option<&VarlinkError> {
        match self {
            CallError::Reply(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a service could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An interface description is not valid Varlink IDL.
    #[error("invalid interface description: {0}")]
    Idl(String),
    /// A method was given an implementation but its interface does not describe it.
    #[error("{interface} describes no method {method}")]
    UnknownMethod {
        /// The interface.
        interface: String,
        /// The method.
        method: String,
    },
    /// Two interfaces have the same name.
    #[error("interface {0} is added twice")]
    DuplicateInterface(String),
}
