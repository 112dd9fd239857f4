//! The interfaces a service serves itself: `org.varlink.service` (every Varlink service has
//! it) and, when asked for, `io.ipc.Server` (counters and a live event feed).

use std::sync::Arc;

use futures::Stream;
use localipc_core::Context;
use tokio::sync::broadcast::error::RecvError;

use crate::error::VarlinkError;
use crate::interface::Interface;
use crate::interfaces::server::{
    self, Event, MonitorParameters, MonitorReply, StatsParameters, StatsReply,
};
use crate::interfaces::service::{
    self, GetInfoParameters, GetInfoReply, GetInterfaceDescriptionParameters,
    GetInterfaceDescriptionReply,
};
use crate::method::More;
use crate::observe::{Observer, Subscription};
use crate::typed::MethodError;

/// `org.varlink.service`, as the specification gives it.
pub(crate) const SERVICE_IDL: &str = service::DESCRIPTION;

/// The interface of this server's own methods and errors.
pub const SERVER_IDL: &str = server::DESCRIPTION;

/// The error that ends a streamed call still open at shutdown.
pub const SHUTTING_DOWN: &str = "io.ipc.Server.ShuttingDown";
/// The error that ends a streamed call whose method stopped without a last reply.
pub const STREAM_ENDED: &str = "io.ipc.Server.StreamEnded";

/// What `org.varlink.service` answers.
struct Standard {
    info: GetInfoReply,
    /// The name and description of every interface.
    interfaces: Vec<(String, Arc<str>)>,
}

impl service::Methods for Standard {
    async fn get_info(
        &self,
        _: GetInfoParameters,
        _ctx: &Context,
    ) -> Result<GetInfoReply, MethodError<service::Error>> {
        Ok(self.info.clone())
    }

    async fn get_interface_description(
        &self,
        p: GetInterfaceDescriptionParameters,
        _ctx: &Context,
    ) -> Result<GetInterfaceDescriptionReply, MethodError<service::Error>> {
        self.interfaces
            .iter()
            .find(|(name, _)| *name == p.interface)
            .map(|(_, text)| GetInterfaceDescriptionReply {
                description: text.to_string(),
            })
            .ok_or_else(|| VarlinkError::interface_not_found(&p.interface).into())
    }
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
    let info = GetInfoReply {
        vendor: vendor.to_owned(),
        product: product.to_owned(),
        version: version.to_owned(),
        url: url.to_owned(),
        interfaces: interfaces.iter().map(|(name, _)| name.clone()).collect(),
    };
    service::interface(Arc::new(Standard { info, interfaces }))
}

impl server::Methods for Observer {
    async fn stats(
        &self,
        _: StatsParameters,
        _ctx: &Context,
    ) -> Result<StatsReply, MethodError<server::Error>> {
        Ok(self.stats.snapshot(&self.server))
    }

    fn monitor(
        self: Arc<Self>,
        _: MonitorParameters,
        _ctx: Context,
    ) -> impl Stream<Item = Result<More<MonitorReply>, MethodError<server::Error>>> + Send + 'static
    {
        monitor(self.subscribe())
    }
}

/// `io.ipc.Server` over the service's observer.
pub(crate) fn server_interface(observer: Arc<Observer>) -> Interface {
    server::interface(observer)
}

/// The events as a never-ending stream of replies.
fn monitor(
    subscription: Subscription,
) -> impl Stream<Item = Result<More<MonitorReply>, MethodError<server::Error>>> + Send + 'static {
    futures::stream::unfold(subscription, |mut subscription| async move {
        let event = match subscription.events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => Event::missed(missed),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(More::next(MonitorReply { event })), subscription))
    })
}
