//! A Varlink client: typed calls, streamed calls (`more`), one-way calls, pipelined calls and
//! introspection, on one connection.
//!
//! # Cancel safety
//!
//! Every call is cancel-safe in the sense that matters: dropping its future (a timeout, a
//! `select!`) never makes a later call return a reply that belongs to another. The client
//! counts the calls whose last reply it has not read; the next call first finishes writing
//! what was cut off and reads and drops those replies. A [`call_more`](VarlinkClient::call_more)
//! stream dropped before its last reply is the exception: its call may never end (a
//! subscription), so the client refuses further calls (`ClientError::Unusable`) instead of
//! waiting for it.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use localipc_client::{Channel, ClientError, connect};
use localipc_core::Framing;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{CallError, VarlinkError};
use crate::wire::{IncomingReply, OutgoingCall};
use crate::{Empty, SERVICE_INTERFACE};

/// The largest reply the client takes by default: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// What `org.varlink.service.GetInfo` says of a service: who makes it (`vendor`), what it is
/// (`product`), its `version`, where to learn more (`url`) and the `interfaces` it serves.
pub type Info = crate::interfaces::service::GetInfoReply;

/// The replies of a [`VarlinkClient::call_more`], as they arrive; it borrows the client until
/// its end.
pub type ReplyStream<'c, R> = Pin<Box<dyn Stream<Item = Result<R, CallError>> + Send + 'c>>;

/// One connection to a Varlink service.
///
/// # Cancel safety
///
/// Dropping a call's future (a timeout, a `select!`) never makes a later call return a reply
/// that belongs to another: the client counts the calls whose last reply it has not read, and
/// the next call first finishes writing what was cut off and reads and drops those replies
/// (the same [`Channel`] core as the plain [`localipc_client::Client`]). A
/// [`call_more`](Self::call_more) stream dropped before its last reply is the exception: its
/// call may never end (a subscription), so the client refuses further calls
/// ([`ClientError::Unusable`] in [`CallError::Connection`]) instead of waiting for it.
#[derive(Debug)]
pub struct VarlinkClient {
    channel: Channel,
    timeout: Option<Duration>,
}

/// Why a connection is refused after a dropped streamed call.
const DROPPED_STREAM: &str =
    "a streamed call on this connection was dropped before its end; its replies would follow";

impl VarlinkClient {
    /// Connects to the service at `address` (a socket file, `@name` in the abstract
    /// namespace, or any form [`Address`](localipc_core::Address) reads, `ssh-unix:` and
    /// `ssh-exec:` included; see [`localipc_client::connect`](mod@localipc_client::connect)), with no time limit on calls and
    /// messages of up to [`DEFAULT_MAX_MESSAGE`] bytes.
    ///
    /// # Errors
    ///
    /// [`CallError::Connection`] with the reason (no socket, refused, permission...).
    pub async fn connect(address: impl AsRef<Path>) -> Result<Self, CallError> {
        Self::connect_with(address, None, DEFAULT_MAX_MESSAGE).await
    }

    /// Connects with a time limit (for connecting, and then for each call) and a maximum
    /// message size (for calls sent and replies taken).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), or [`CallError::Timeout`].
    pub async fn connect_with(
        address: impl AsRef<Path>,
        timeout: Option<Duration>,
        max_message: usize,
    ) -> Result<Self, CallError> {
        let connection = connect(address, timeout).await?;
        Ok(Self::from_connection(connection, timeout, max_message))
    }

    /// A client over a connection made by other means
    /// ([`localipc_client::connect_tcp`] with TLS options of the caller's, say), with the
    /// time limit and maximum message size of [`connect_with`](Self::connect_with).
    pub fn from_connection(
        connection: impl Into<localipc_client::Connection>,
        timeout: Option<Duration>,
        max_message: usize,
    ) -> Self {
        Self {
            channel: Channel::new(connection, Framing::Nul, max_message),
            timeout,
        }
    }

    /// Sets the time limit of each call (and of each reply of a streamed call); `None` for
    /// none.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Calls `method` (qualified: `org.example.ftl.Monitor`) with `parameters` and returns
    /// its reply.
    ///
    /// # Errors
    ///
    /// [`CallError::Reply`] for an error reply (the connection goes on);
    /// [`CallError::Timeout`], [`CallError::Connection`], [`CallError::Json`] or
    /// [`CallError::Protocol`] otherwise.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: see the [type docs](VarlinkClient#cancel-safety).
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        parameters: &P,
    ) -> Result<R, CallError> {
        within(self.timeout, async {
            self.catch_up().await?;
            self.queue(method, parameters, false, false)?;
            let (reply, _) = self.reply::<R>(method).await?;
            reply.map_err(CallError::Reply)
        })
        .await
    }

    /// Calls `method` with `fds` (file descriptors, passed with the call's first byte;
    /// parameters name them by index, 0 for the first) and returns its reply with the
    /// descriptors that came with it (none unless [`accept_fds`](Self::accept_fds) was
    /// called), which the reply's parameters name by index in the same way. The call leaves
    /// once every earlier call is answered, so the service binds the descriptors to it.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call); [`CallError::Connection`] with
    /// [`ClientError::TooManyFds`] past 253 descriptors or [`ClientError::FdsNotCarried`]
    /// through `ssh` (nothing is sent then), or [`ClientError::Fds`] for a reply with more
    /// descriptors than accepted.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Self::call); the descriptors go whole with the call or not at all.
    pub async fn call_with_fds<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        parameters: &P,
        fds: Vec<OwnedFd>,
    ) -> Result<(R, Vec<OwnedFd>), CallError> {
        within(self.timeout, async {
            self.catch_up().await?;
            let call = encode(method, parameters, false, false)?;
            self.channel.queue_with_fds(call, fds, true)?;
            let (reply, _) = self.reply::<R>(method).await?;
            let fds = self.channel.take_fds();
            Ok((reply.map_err(CallError::Reply)?, fds))
        })
        .await
    }

    /// From now on, takes the descriptors that come with replies (up to `max` with one, at
    /// most 253), for [`call_with_fds`](Self::call_with_fds); by default the kernel drops any
    /// a service sends. A reply with more breaks the connection.
    pub fn accept_fds(&mut self, max: usize) {
        self.channel.accept_fds(max);
    }

    /// Calls `method` without waiting for, or getting, a reply (`oneway`).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), without [`CallError::Reply`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a call cut off half-way is finished by the next call.
    pub async fn oneway<P: Serialize>(
        &mut self,
        method: &str,
        parameters: &P,
    ) -> Result<(), CallError> {
        within(self.timeout, async {
            self.catch_up().await?;
            self.queue(method, parameters, true, false)?;
            Ok(self.channel.flush().await?)
        })
        .await
    }

    /// Calls `method` with `more` and returns its replies as a stream, which ends after the
    /// last reply (or an error reply, its last item). Each item is read within the client's
    /// time limit.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), for sending the call; the stream's items carry the rest.
    ///
    /// # Cancel safety
    ///
    /// Dropping the stream before its end makes the client refuse further calls
    /// ([`ClientError::Unusable`]): connect again.
    pub async fn call_more<'c, P: Serialize, R: DeserializeOwned + Send + 'c>(
        &'c mut self,
        method: &str,
        parameters: &P,
    ) -> Result<ReplyStream<'c, R>, CallError> {
        within(self.timeout, async {
            self.catch_up().await?;
            self.queue(method, parameters, false, true)?;
            // Until the last reply is read, a dropped stream leaves its replies behind.
            self.channel.open_call(DROPPED_STREAM);
            Ok(self.channel.flush().await?)
        })
        .await?;
        let method = method.to_owned();
        Ok(Box::pin(futures::stream::unfold(
            (self, method, false),
            |(client, method, done)| async move {
                if done {
                    return None;
                }
                let item = within(client.timeout, client.reply::<R>(&method)).await;
                let (item, done) = match item {
                    Ok((Ok(reply), continues)) => (Ok(reply), !continues),
                    Ok((Err(error), _)) => (Err(CallError::Reply(error)), true),
                    Err(e) => (Err(e), true),
                };
                if done {
                    client.channel.close_call();
                }
                Some((item, (client, method, done)))
            },
        )))
    }

    /// Sends every call at once, then reads their replies, in order: one result per call. The
    /// calls must share parameter and reply types (use `serde_json::Value` to mix).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), except that error replies are results in the list.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the replies not yet read are dropped by the next call.
    pub async fn pipeline<'m, P: Serialize, R: DeserializeOwned>(
        &mut self,
        calls: impl IntoIterator<Item = (&'m str, P)>,
    ) -> Result<Vec<Result<R, VarlinkError>>, CallError> {
        within(self.timeout, async {
            self.catch_up().await?;
            let mut methods = Vec::new();
            for (method, parameters) in calls {
                self.queue(method, &parameters, false, false)?;
                methods.push(method);
            }
            let mut replies = Vec::with_capacity(methods.len());
            for method in methods {
                replies.push(self.reply::<R>(method).await?.0);
            }
            Ok(replies)
        })
        .await
    }

    /// `org.varlink.service.GetInfo`: who the service is and which interfaces it serves.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn info(&mut self) -> Result<Info, CallError> {
        self.call("org.varlink.service.GetInfo", &Empty {}).await
    }

    /// `org.varlink.service.GetInterfaceDescription`: the description of `interface`, in the
    /// Varlink IDL.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call); [`CallError::Reply`] with `InterfaceNotFound` if the service
    /// does not serve it.
    pub async fn describe(&mut self, interface: &str) -> Result<String, CallError> {
        #[derive(Serialize)]
        struct Request<'a> {
            interface: &'a str,
        }
        #[derive(Deserialize)]
        struct Reply {
            description: String,
        }
        let reply: Reply = self
            .call(
                &format!("{SERVICE_INTERFACE}.GetInterfaceDescription"),
                &Request { interface },
            )
            .await?;
        Ok(reply.description)
    }

    /// Finishes what earlier, abandoned calls left: their unwritten bytes, their replies (a
    /// call's last reply is the one that does not continue).
    async fn catch_up(&mut self) -> Result<(), CallError> {
        self.channel
            .catch_up(|channel, frame| Ok(!parse_reply(channel, frame)?.continues()))
            .await
    }

    /// Queues a call to `method`.
    fn queue<P: Serialize>(
        &mut self,
        method: &str,
        parameters: &P,
        oneway: bool,
        more: bool,
    ) -> Result<(), CallError> {
        let call = encode(method, parameters, oneway, more)?;
        self.channel.queue([call], !oneway)?;
        Ok(())
    }

    /// The next reply, to a call of `method`, as `R` or an error reply, with whether more
    /// replies of its call follow.
    async fn reply<R: DeserializeOwned>(
        &mut self,
        method: &str,
    ) -> Result<(Result<R, VarlinkError>, bool), CallError> {
        let frame = self.channel.next_frame().await?;
        let reply = parse_reply(&mut self.channel, &frame)?;
        let continues = reply.continues();
        if !continues {
            self.channel.settle();
        }
        let reply = reply
            .into_result()
            .map_err(|e| CallError::json(method, e))?;
        Ok((reply, continues))
    }
}

/// A call to `method`, as JSON.
fn encode<P: Serialize>(
    method: &str,
    parameters: &P,
    oneway: bool,
    more: bool,
) -> Result<Vec<u8>, CallError> {
    let call = OutgoingCall {
        method,
        parameters,
        oneway,
        more,
    };
    serde_json::to_vec(&call).map_err(|e| CallError::json(method, e))
}

/// `frame` as a Varlink reply; anything else leaves `channel` unusable, out of step.
fn parse_reply<'f>(channel: &mut Channel, frame: &'f [u8]) -> Result<IncomingReply<'f>, CallError> {
    serde_json::from_slice(frame).map_err(|e| {
        let why = e.to_string();
        channel.break_off(why.clone());
        CallError::Protocol(why)
    })
}

/// `f`, within `limit` if one is given (see [`localipc_client::within`]).
async fn within<T>(
    limit: Option<Duration>,
    f: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match localipc_client::within(limit, f).await {
        Ok(result) => result,
        Err(ClientError::Timeout(limit)) => Err(CallError::Timeout(limit)),
        Err(e) => Err(e.into()),
    }
}
