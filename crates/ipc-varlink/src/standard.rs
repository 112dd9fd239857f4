//! The interfaces a service serves itself: `org.varlink.service` (every Varlink service has
//! it) and, when asked for, `io.ipc.Server` (counters and a live event feed).

use std::sync::Arc;

use futures::Stream;
use localipc_core::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::Empty;
use crate::error::VarlinkError;
use crate::interface::Interface;
use crate::method::More;
use crate::observe::{Event, Observer, Subscription};

/// `org.varlink.service`, as the specification gives it.
pub(crate) const SERVICE_IDL: &str = "\
# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)

# Client is denied access
error PermissionDenied ()

# Method is expected to be called with 'more' set to true, but wasn't
error ExpectedMore ()
";

/// The interface of this server's own methods and errors.
pub const SERVER_IDL: &str = "\
# What the server has done since it started, and a live view of what it does.
interface io.ipc.Server

# Something that happened: a connection opened or closed, a call answered, or
# events a subscriber missed because it fell behind.
type Event (
  kind: (connected, disconnected, call, missed),
  connection: int,
  uid: ?int,
  pid: ?int,
  method: ?string,
  error: ?string,
  missed: ?int
)

# The counters since the server started. Bytes count whole messages on the
# wire, NUL included. connection_cap_reached: times every connection slot was
# taken (new connections waited); refused_uid_share: connections closed because
# their uid had its share open; refused_allow_list: connections closed because
# their peer was on no allow-list; unfinished_bytes: bytes held now for
# messages not yet complete; refused_unfinished_budget: connections closed
# because their message would have taken that past the server's budget;
# refused_permission: calls refused by a policy (PermissionDenied).
method Stats() -> (
  connections_open: int,
  connections_served: int,
  calls: int,
  errors: int,
  bytes_received: int,
  bytes_sent: int,
  connection_cap_reached: int,
  refused_uid_share: int,
  refused_allow_list: int,
  unfinished_bytes: int,
  refused_unfinished_budget: int,
  refused_permission: int
)

# Call with more: a reply for every connection opened or closed and every
# call answered, from now until the call ends. Only for root and the server's
# own user, unless the service says otherwise: events name other callers.
method Monitor() -> (event: Event)

# The server is shutting down: a streamed call still open ends with this.
error ShuttingDown ()

# The method's stream ended without its last reply.
error StreamEnded ()
";

/// The error that ends a streamed call still open at shutdown.
pub const SHUTTING_DOWN: &str = "io.ipc.Server.ShuttingDown";
/// The error that ends a streamed call whose method stopped without a last reply.
pub const STREAM_ENDED: &str = "io.ipc.Server.StreamEnded";

#[derive(Serialize)]
struct GetInfoReply {
    vendor: String,
    product: String,
    version: String,
    url: String,
    interfaces: Vec<String>,
}

#[derive(Deserialize)]
struct DescriptionRequest {
    interface: String,
}

#[derive(Serialize)]
struct DescriptionReply {
    description: Arc<str>,
}

#[derive(Serialize)]
struct MonitorReply {
    event: Event,
}

fn parse(idl: &str) -> Interface {
    Interface::new(idl).unwrap_or_else(|e| unreachable!("a built-in description is valid: {e}"))
}

/// `org.varlink.service` for a service with the given identity and interfaces (name and
/// description of each).
pub(crate) fn service_interface(
    vendor: &str,
    product: &str,
    version: &str,
    url: &str,
    interfaces: Vec<(String, Arc<str>)>,
) -> Interface {
    let info = Arc::new(GetInfoReply {
        vendor: vendor.to_owned(),
        product: product.to_owned(),
        version: version.to_owned(),
        url: url.to_owned(),
        interfaces: interfaces.iter().map(|(name, _)| name.clone()).collect(),
    });
    let interfaces = Arc::new(interfaces);
    parse(SERVICE_IDL)
        .method("GetInfo", move |_: Empty, _ctx: Context| {
            let info = Arc::clone(&info);
            async move { Ok::<_, VarlinkError>(info) }
        })
        .method(
            "GetInterfaceDescription",
            move |p: DescriptionRequest, _ctx: Context| {
                let found = interfaces
                    .iter()
                    .find(|(name, _)| *name == p.interface)
                    .map(|(_, text)| DescriptionReply {
                        description: Arc::clone(text),
                    })
                    .ok_or_else(|| VarlinkError::interface_not_found(&p.interface));
                async move { found }
            },
        )
}

/// `io.ipc.Server` over the service's observer.
pub(crate) fn server_interface(observer: Arc<Observer>) -> Interface {
    let stats = Arc::clone(&observer);
    parse(SERVER_IDL)
        .method("Stats", move |_: Empty, _ctx: Context| {
            let counters = stats.stats.snapshot(&stats.server);
            async move { Ok::<_, VarlinkError>(counters) }
        })
        .streaming("Monitor", move |_: Empty, _ctx: Context| {
            monitor(observer.subscribe())
        })
}

/// The events as a never-ending stream of replies.
fn monitor(
    subscription: Subscription,
) -> impl Stream<Item = Result<More<MonitorReply>, VarlinkError>> + Send + 'static {
    futures::stream::unfold(subscription, |mut subscription| async move {
        let event = match subscription.events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => Event::missed(missed),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(More::next(MonitorReply { event })), subscription))
    })
}
