//! A Varlink service: interfaces with their methods, dispatched by name for every call that
//! arrives. [`Service`] is a [`Handler`], so the server runs it like any other; it answers
//! calls with typed replies, error replies, streams of replies or nothing (one-way calls), and
//! it serves `org.varlink.service` (`GetInfo`, `GetInterfaceDescription`) itself.
//!
//! A message that is not a call (not JSON, not an object, no `method`) ends the connection,
//! with a log line; a call to an unknown method or with parameters that do not fit gets an
//! error reply and the connection goes on.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use localipc_core::{BoxError, Context, Handler, ReplyStream, Response};
use serde_json::value::RawValue;
use tracing::{debug, info};

use crate::error::{BuildError, VarlinkError};
use crate::idl::Description;
use crate::interface::Interface;
use crate::method::{Failure, Method, Started};
use crate::observe::Observer;
use crate::policy::{Gate, Policy};
use crate::standard;
use crate::wire::{self, IncomingCall};

/// What `GetInfo` says of the service.
#[derive(Debug, Clone)]
struct Info {
    vendor: String,
    product: String,
    version: String,
    url: String,
}

/// Builds a [`Service`]; see [`Service::builder`].
#[derive(Debug)]
pub struct ServiceBuilder {
    info: Info,
    interfaces: Vec<Interface>,
    server_interface: bool,
    monitor_backlog: usize,
    monitor_policy: Policy,
    server_counters: Option<Arc<localipc_core::ServerCounters>>,
}

impl ServiceBuilder {
    /// The vendor `GetInfo` reports.
    pub fn vendor(mut self, vendor: impl Into<String>) -> Self {
        self.info.vendor = vendor.into();
        self
    }

    /// The product `GetInfo` reports.
    pub fn product(mut self, product: impl Into<String>) -> Self {
        self.info.product = product.into();
        self
    }

    /// The version `GetInfo` reports.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.info.version = version.into();
        self
    }

    /// The URL `GetInfo` reports.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.info.url = url.into();
        self
    }

    /// Adds an interface.
    pub fn interface(mut self, interface: Interface) -> Self {
        self.interfaces.push(interface);
        self
    }

    /// Adds the interface `io.ipc.Server`: `Stats` (connections, calls, errors and bytes
    /// since the start) and `Monitor` (with `more`, a live stream of connection and call
    /// events), so that operators can watch a running service.
    pub fn server_interface(mut self) -> Self {
        self.server_interface = true;
        self
    }

    /// Events kept for a `Monitor` subscriber that has not read them yet (default
    /// [`DEFAULT_MONITOR_BACKLOG`](crate::DEFAULT_MONITOR_BACKLOG); at least 1). One that
    /// falls further behind loses the oldest and is sent a `missed` event with their count.
    pub fn monitor_backlog(mut self, events: usize) -> Self {
        self.monitor_backlog = events;
        self
    }

    /// Who may call `io.ipc.Server.Monitor` (default: root and the server's own user, since
    /// its events name every caller's uid, pid and methods). `Stats` is open to every caller.
    pub fn monitor_policy(mut self, policy: Policy) -> Self {
        self.monitor_policy = policy;
        self
    }

    /// The counters of the server this service runs in (give the server the same ones, with
    /// `localipc_server::Builder::counters`): `io.ipc.Server.Stats` then reports how often its
    /// connection caps and allow-lists came into play. Without them those fields are 0.
    pub fn server_counters(mut self, counters: Arc<localipc_core::ServerCounters>) -> Self {
        self.server_counters = Some(counters);
        self
    }

    /// Builds the service.
    ///
    /// # Errors
    ///
    /// [`BuildError::UnknownMethod`] if a method was implemented that its interface does not
    /// describe; [`BuildError::DuplicateInterface`] if two interfaces share a name.
    pub fn build(self) -> Result<Service, BuildError> {
        let observer = Arc::new(Observer::new(
            self.monitor_backlog,
            self.server_counters.unwrap_or_default(),
        ));
        let mut interfaces = Vec::new();
        if self.server_interface {
            interfaces.push(
                standard::server_interface(Arc::clone(&observer))
                    .allow_method("Monitor", self.monitor_policy),
            );
        }
        interfaces.extend(self.interfaces);
        // Every interface's name and description, for GetInfo and GetInterfaceDescription.
        let mut described: Vec<(String, Arc<str>)> = Vec::new();
        described.push((
            crate::SERVICE_INTERFACE.to_owned(),
            Arc::from(standard::SERVICE_IDL),
        ));
        for interface in &interfaces {
            if described.iter().any(|(n, _)| n == interface.name()) {
                return Err(BuildError::DuplicateInterface(interface.name().to_owned()));
            }
            described.push((
                interface.name().to_owned(),
                Arc::from(interface.description.text()),
            ));
        }
        let service_interface = standard::service_interface(
            &self.info.vendor,
            &self.info.product,
            &self.info.version,
            &self.info.url,
            described,
        );
        let mut methods = HashMap::with_hasher(NameHash);
        let mut known = HashMap::new();
        for interface in std::iter::once(service_interface).chain(interfaces) {
            let name = interface.name().to_owned();
            let unknown = interface
                .methods
                .keys()
                .chain(interface.method_policies.keys())
                .find(|method| !interface.description.has_method(method));
            if let Some(method) = unknown {
                return Err(BuildError::UnknownMethod {
                    interface: name,
                    method: method.clone(),
                });
            }
            for (method, implementation) in interface.methods {
                let gate = Gate::new(
                    interface.policy.as_ref(),
                    interface.method_policies.get(&method),
                );
                let entry = Entry {
                    implementation,
                    gate,
                };
                methods.insert(format!("{name}.{method}"), entry);
            }
            known.insert(name, interface.description);
        }
        Ok(Service(Arc::new(Inner {
            methods,
            interfaces: known,
            observer,
        })))
    }
}

/// A Varlink service, ready to serve: give it to the server as its handler (with
/// [`localipc_core::Framing::Nul`], the framing Varlink uses). Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use localipc_server::{Framing, Server};
/// use localipc_varlink::{Interface, Service, VarlinkError};
///
/// let interface = Interface::new("interface org.example.ping\nmethod Ping() -> ()\n")?
///     .method("Ping", |_: localipc_varlink::Empty, _ctx| async { Ok::<_, VarlinkError>(localipc_varlink::Empty {}) });
/// let service = Service::builder().product("pinger").interface(interface).build()?;
/// let server = Server::builder(service)
///     .socket("/run/user/1000/ping.sock")
///     .framing(Framing::Nul)
///     .bind()?;
/// server.serve(std::future::pending()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Service(Arc<Inner>);

struct Inner {
    /// Implemented methods by qualified name (`interface.Method`).
    methods: HashMap<String, Entry, NameHash>,
    /// Every interface served, by name.
    interfaces: HashMap<String, Description>,
    observer: Arc<Observer>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("interfaces", &self.0.interfaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An implemented method and who may call it.
struct Entry {
    implementation: Arc<dyn Method>,
    gate: Gate,
}

/// Hashes method names with FNV-1a: the names are the service's own (a caller can only miss
/// them, never add to them), so no flooding-resistant hash is needed, and this one costs a
/// fraction of SipHash on every call.
#[derive(Debug, Clone, Copy, Default)]
struct NameHash;

impl std::hash::BuildHasher for NameHash {
    type Hasher = Fnv;

    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// The FNV-1a hasher.
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A message that is not a Varlink call: the connection is closed.
#[derive(Debug, thiserror::Error)]
enum MalformedCall {
    #[error("not a Varlink call: not UTF-8: {0}")]
    Utf8(std::str::Utf8Error),
    #[error("not a Varlink call: {0}")]
    Json(serde_json::Error),
    #[error("not a Varlink call: a call is a JSON object")]
    NotAnObject,
}

/// What JSON counts as white space.
const JSON_SPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// A streamed call's replies, ended as the specification wants: after the last reply or an
/// error reply, and with an error reply if the method's stream stops without a last one.
struct Replies {
    items: crate::method::ReplyItems,
    done: bool,
    service: Service,
    ctx: Context,
    method: Arc<str>,
}

impl Service {
    /// A builder with no interface but `org.varlink.service`.
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder {
            info: Info {
                vendor: String::new(),
                product: String::new(),
                version: String::new(),
                url: String::new(),
            },
            interfaces: Vec::new(),
            server_interface: false,
            monitor_backlog: crate::DEFAULT_MONITOR_BACKLOG,
            monitor_policy: Policy::uid(0).or(Policy::same_user()),
            server_counters: None,
        }
    }

    /// The names of the interfaces served, `org.varlink.service` included.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.0.interfaces.keys().map(String::as_str)
    }

    /// Looks the call's method up and starts it.
    fn start(&self, call: &IncomingCall<'_>, ctx: &Context) -> Result<Started, VarlinkError> {
        let method = &*call.method;
        if call.upgrade {
            // This server speaks nothing but Varlink on a connection.
            return Err(VarlinkError::invalid_parameter("upgrade"));
        }
        let parameters = wire::parameters_or_empty(call.parameters);
        let Some(entry) = self.0.methods.get(method) else {
            return Err(self.missing(method));
        };
        // Before anything of the call is decoded.
        if let Some(policy) = entry.gate.refusal(ctx) {
            info!(
                connection = ctx.connection_id(),
                peer = %ctx.peer(),
                method,
                allowed = %policy,
                "call refused by policy"
            );
            self.0.observer.stats.refused();
            return Err(VarlinkError::permission_denied());
        }
        // Parameters are an object (the decoder alone would also fill a struct from an array,
        // by position).
        if !parameters.get().starts_with('{') {
            return Err(VarlinkError::invalid_parameter("parameters"));
        }
        entry
            .implementation
            .start(parameters, ctx.clone())
            .map_err(|e| self.invalid(method, parameters, &e))
    }

    /// The error for a method with no implementation.
    fn missing(&self, method: &str) -> VarlinkError {
        let Some((interface, name)) = method.rsplit_once('.') else {
            return VarlinkError::interface_not_found(method);
        };
        match self.0.interfaces.get(interface) {
            None => VarlinkError::interface_not_found(interface),
            Some(d) if d.has_method(name) => VarlinkError::method_not_implemented(method),
            Some(_) => VarlinkError::method_not_found(method),
        }
    }

    /// The `InvalidParameter` error for parameters that did not decode: the description
    /// names the parameter that does not fit; failing that, the decoder's message does.
    fn invalid(&self, method: &str, parameters: &RawValue, e: &serde_json::Error) -> VarlinkError {
        let by_description = method.rsplit_once('.').and_then(|(interface, name)| {
            let value = serde_json::from_str(parameters.get()).ok()?;
            self.0
                .interfaces
                .get(interface)?
                .invalid_parameter(name, &value)
        });
        let parameter = by_description.unwrap_or_else(|| {
            // serde names a missing or unknown field between backquotes (other messages quote
            // the value, which is not a parameter's name).
            let text = e.to_string();
            ["missing field `", "unknown field `"]
                .iter()
                .find_map(|start| {
                    let rest = &text[text.find(start)? + start.len()..];
                    rest.split('`').next().map(str::to_owned)
                })
                .unwrap_or_else(|| "parameters".to_owned())
        });
        debug!(method, parameter, error = %e, "invalid parameters");
        VarlinkError::invalid_parameter(&parameter)
    }

    /// The reply for an error, counted and reported.
    fn error_reply(&self, ctx: &Context, method: &str, error: &VarlinkError) -> Bytes {
        let observer = &self.0.observer;
        observer.stats.error();
        observer.answered(ctx, method, Some(error.name()));
        let reply = wire::encode_error(error);
        observer.stats.sent(reply.len());
        reply
    }
}

impl Handler for Service {
    /// Answers one call: its reply, none for a one-way call, or a stream for a `more` call.
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        let observer = &self.0.observer;
        observer.stats.call(request.len());
        // One UTF-8 check of the whole message; the parser then reads it as text.
        let text = std::str::from_utf8(&request).map_err(MalformedCall::Utf8)?;
        // A call is an object (the decoder alone would also take an array of its fields).
        if !text.trim_start_matches(JSON_SPACE).starts_with('{') {
            return Err(MalformedCall::NotAnObject.into());
        }
        let call: IncomingCall<'_> = serde_json::from_str(text).map_err(MalformedCall::Json)?;
        let answer = |reply: Bytes| {
            if call.oneway {
                Response::Silent
            } else {
                Response::Reply(reply)
            }
        };
        let started = match self.start(&call, ctx) {
            Ok(started) => started,
            Err(error) => return Ok(answer(self.error_reply(ctx, &call.method, &error))),
        };
        match started {
            Started::One(reply) => match reply.await {
                Ok(reply) => {
                    observer.stats.sent(reply.len());
                    observer.answered(ctx, &call.method, None);
                    Ok(answer(reply))
                }
                Err(Failure::Reply(error)) => {
                    Ok(answer(self.error_reply(ctx, &call.method, &error)))
                }
                Err(Failure::Broken(e)) => Err(e),
            },
            Started::Stream(_) if call.oneway => Ok(Response::Silent),
            Started::Stream(_) if !call.more => {
                let error = VarlinkError::expected_more();
                Ok(answer(self.error_reply(ctx, &call.method, &error)))
            }
            Started::Stream(items) => {
                observer.answered(ctx, &call.method, None);
                let farewell = wire::encode_error(&VarlinkError::named(standard::SHUTTING_DOWN));
                let replies = Replies {
                    items,
                    done: false,
                    service: self.clone(),
                    ctx: ctx.clone(),
                    method: Arc::from(&*call.method),
                };
                Ok(Response::Stream(
                    ReplyStream::new(replies.into_stream()).on_shutdown(farewell),
                ))
            }
        }
    }

    fn connected(&self, ctx: &Context) {
        self.0.observer.connected(ctx);
    }

    fn disconnected(&self, ctx: &Context) {
        self.0.observer.disconnected(ctx);
    }
}

impl Replies {
    fn into_stream(self) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
        futures::stream::unfold(self, |mut this| async move {
            if this.done {
                return None;
            }
            let observer = &this.service.0.observer;
            let item = match this.items.next().await {
                Some(Ok((reply, continues))) => {
                    this.done = !continues;
                    observer.stats.sent(reply.len());
                    Ok(reply)
                }
                Some(Err(Failure::Reply(error))) => {
                    this.done = true;
                    Ok(this.service.error_reply(&this.ctx, &this.method, &error))
                }
                Some(Err(Failure::Broken(e))) => {
                    this.done = true;
                    Err(e)
                }
                None => {
                    this.done = true;
                    let error = VarlinkError::named(standard::STREAM_ENDED);
                    Ok(this.service.error_reply(&this.ctx, &this.method, &error))
                }
            };
            Some((item, this))
        })
    }
}
