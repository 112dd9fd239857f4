//! One Varlink interface: its description and the implementations of its methods, as a
//! service is built from them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::Stream;
use localipc_core::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BuildError, VarlinkError};
use crate::idl::Description;
use crate::method::{Many, Method, More, Once, Typed};
use crate::policy::Policy;

/// One interface: its description (Varlink IDL) and the implementations of its methods.
///
/// ```
/// use localipc_varlink::{Interface, More, VarlinkError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Greet { name: String }
/// #[derive(Serialize)]
/// struct Greeting { text: String }
///
/// let interface = Interface::new("interface org.example.hello\n\
///                                 method Greet(name: string) -> (text: string)\n")?
///     .method("Greet", |p: Greet, _ctx| async move {
///         Ok::<_, VarlinkError>(Greeting { text: format!("hello {}", p.name) })
///     });
/// # Ok::<(), localipc_varlink::BuildError>(())
/// ```
pub struct Interface {
    pub(crate) description: Description,
    pub(crate) methods: HashMap<String, Arc<dyn Method>>,
    /// Who may call any of its methods (everyone if `None`).
    pub(crate) policy: Option<Policy>,
    /// Who may call one method, on top of `policy`.
    pub(crate) method_policies: HashMap<String, Policy>,
}

impl std::fmt::Debug for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interface")
            .field("name", &self.description.name())
            .field("implemented", &self.methods.keys().collect::<Vec<_>>())
            .field("policy", &self.policy)
            .field("method_policies", &self.method_policies)
            .finish()
    }
}

impl Interface {
    /// An interface described by `idl`, with no method implemented yet. A method described but
    /// never implemented is answered with `MethodNotImplemented`.
    ///
    /// # Errors
    ///
    /// [`BuildError::Idl`] if `idl` is not a valid interface description.
    pub fn new(idl: impl Into<String>) -> Result<Self, BuildError> {
        Ok(Self {
            description: Description::parse(idl)?,
            methods: HashMap::new(),
            policy: None,
            method_policies: HashMap::new(),
        })
    }

    /// Lets only the callers `policy` allows call the interface's methods; the others get
    /// `org.varlink.service.PermissionDenied`, before the method runs and before its
    /// parameters are decoded, and the connection goes on. Calling it again replaces the
    /// policy. Without one, every caller the server admits may call.
    pub fn allow(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Lets only the callers `policy` allows call the method `name` (unqualified), on top of
    /// the interface's policy ([`allow`](Self::allow)): a call must pass both. Naming a method
    /// the description lacks is an error when the service is built; a generated interface's
    /// `Method` enum names only methods it has (`allow_method(counter::Method::Add, policy)`).
    pub fn allow_method(mut self, name: impl AsRef<str>, policy: Policy) -> Self {
        self.method_policies
            .insert(name.as_ref().to_owned(), policy);
        self
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        self.description.name()
    }

    /// Implements the method `name` (unqualified, as the description spells it) with an async
    /// function from its parameters to its reply. Calls with `more` get the one reply too, as
    /// the specification allows; one-way calls run it and get no reply.
    ///
    /// Parameters are decoded into `P` (a struct with one field per input parameter; omitted,
    /// `null` and `{}` parameters all decode as `{}`); the reply `R` is encoded as the reply's
    /// parameters, so it must serialize to an object. `E` is any error that converts into a
    /// [`VarlinkError`], sent as an error reply.
    pub fn method<P, R, E, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(P, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        P: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<VarlinkError> + 'static,
    {
        self.methods.insert(
            name.to_owned(),
            Arc::new(Typed::<F, Once<P, R, E, Fut>>::new(f)),
        );
        self
    }

    /// Implements the method `name` with a function that returns a stream of replies: the
    /// method must be called with `more` (else the caller gets `ExpectedMore`). Each item is
    /// a [`More`]: `More::next` for every reply but the last, `More::last` for the last; an
    /// `Err` item is sent as an error reply and ends the call. A stream that ends without a
    /// last reply is ended with the error `io.ipc.Server.StreamEnded`; one still open at
    /// shutdown, with `io.ipc.Server.ShuttingDown`.
    ///
    /// Server push is such a method: subscribers call it with `more`, and the stream yields
    /// what the application publishes (from a `tokio::sync::broadcast` channel, say).
    pub fn streaming<P, R, E, F, S>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(P, Context) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<More<R>, E>> + Send + 'static,
        P: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<VarlinkError> + 'static,
    {
        self.methods.insert(
            name.to_owned(),
            Arc::new(Typed::<F, Many<P, R, E, S>>::new(f)),
        );
        self
    }
}
