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
//! subscription), so the client refuses further calls ([`CallError::Unusable`]) instead of
//! waiting for it.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use ipc_client::{ClientError, connect_socket, io_error};
use ipc_core::{FrameCodec, Framing};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::Decoder;

use crate::error::{CallError, VarlinkError};
use crate::wire::{IncomingReply, OutgoingCall};
use crate::{Empty, SERVICE_INTERFACE};

/// The largest reply the client takes by default: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// What `org.varlink.service.GetInfo` says of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Who makes it.
    pub vendor: String,
    /// What it is.
    pub product: String,
    /// Its version.
    pub version: String,
    /// Where to learn more.
    pub url: String,
    /// The interfaces it serves.
    pub interfaces: Vec<String>,
}

/// One connection to a Varlink service.
///
/// # Cancel safety
///
/// Dropping a call's future (a timeout, a `select!`) never makes a later call return a reply
/// that belongs to another: the client counts the calls whose last reply it has not read, and
/// the next call first finishes writing what was cut off and reads and drops those replies. A
/// [`call_more`](Self::call_more) stream dropped before its last reply is the exception: its
/// call may never end (a subscription), so the client refuses further calls
/// ([`CallError::Unusable`]) instead of waiting for it.
#[derive(Debug)]
pub struct VarlinkClient {
    stream: UnixStream,
    codec: FrameCodec,
    rbuf: BytesMut,
    /// Bytes of calls made but not yet written (a write cut off by a dropped future).
    pending: BytesMut,
    /// Calls whose last reply has not been read.
    owed: usize,
    /// A streamed call was dropped before its end.
    abandoned: bool,
    /// Set by a reply the client could not read: the connection is out of step.
    broken: Option<String>,
    timeout: Option<Duration>,
}

impl VarlinkClient {
    /// Connects to the service at `path` (a socket file, or `@name` in the abstract
    /// namespace), with no time limit on calls and replies of up to
    /// [`DEFAULT_MAX_MESSAGE`] bytes.
    ///
    /// # Errors
    ///
    /// [`CallError::Connection`] with the reason (no socket, refused, permission...).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, CallError> {
        Self::connect_with(path, None, DEFAULT_MAX_MESSAGE).await
    }

    /// Connects with a time limit (for connecting, and then for each call) and a maximum
    /// reply size.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), or [`CallError::Timeout`].
    pub async fn connect_with(
        path: impl AsRef<Path>,
        timeout: Option<Duration>,
        max_message: usize,
    ) -> Result<Self, CallError> {
        let stream = connect_socket(path.as_ref(), timeout).await?;
        Ok(Self {
            stream,
            codec: FrameCodec::new(Framing::Nul, max_message),
            rbuf: BytesMut::new(),
            pending: BytesMut::new(),
            owed: 0,
            abandoned: false,
            broken: None,
            timeout,
        })
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
    /// [`CallError::Timeout`], [`CallError::Connection`], [`CallError::Json`],
    /// [`CallError::Protocol`] or [`CallError::Unusable`] otherwise.
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
            self.prepare()?;
            self.resync().await?;
            self.queue(method, parameters, false, false)?;
            let (reply, _) = self.reply::<R>().await?;
            reply.map_err(CallError::Reply)
        })
        .await
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
            self.prepare()?;
            self.resync().await?;
            self.queue(method, parameters, true, false)?;
            self.flush().await
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
    /// ([`CallError::Unusable`]): connect again.
    pub async fn call_more<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        parameters: &P,
    ) -> Result<impl Stream<Item = Result<R, CallError>> + '_, CallError> {
        within(self.timeout, async {
            self.prepare()?;
            self.resync().await?;
            self.queue(method, parameters, false, true)?;
            // Until the last reply is read, a dropped stream leaves its replies behind.
            self.abandoned = true;
            self.flush().await
        })
        .await?;
        Ok(futures::stream::unfold(
            (self, false),
            |(client, done)| async move {
                if done {
                    return None;
                }
                let item = within(client.timeout, client.reply::<R>()).await;
                let (item, done) = match item {
                    Ok((Ok(reply), continues)) => (Ok(reply), !continues),
                    Ok((Err(error), _)) => (Err(CallError::Reply(error)), true),
                    Err(e) => (Err(e), true),
                };
                if done && client.owed == 0 {
                    client.abandoned = false;
                }
                Some((item, (client, done)))
            },
        ))
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
            self.prepare()?;
            self.resync().await?;
            let mut count = 0;
            for (method, parameters) in calls {
                self.queue(method, &parameters, false, false)?;
                count += 1;
            }
            let mut replies = Vec::with_capacity(count);
            for _ in 0..count {
                replies.push(self.reply::<R>().await?.0);
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

    fn prepare(&self) -> Result<(), CallError> {
        if let Some(why) = &self.broken {
            return Err(CallError::Protocol(why.clone()));
        }
        if self.abandoned {
            return Err(CallError::Unusable);
        }
        Ok(())
    }

    /// Finishes what earlier, cancelled calls left: their unwritten bytes, their replies.
    async fn resync(&mut self) -> Result<(), CallError> {
        while self.owed > 0 {
            // A late reply of a cancelled call: not ours to return.
            let _late = self.reply::<serde::de::IgnoredAny>().await?;
        }
        self.flush().await
    }

    fn queue<P: Serialize>(
        &mut self,
        method: &str,
        parameters: &P,
        oneway: bool,
        more: bool,
    ) -> Result<(), CallError> {
        let call = OutgoingCall {
            method,
            parameters,
            oneway,
            more,
        };
        let mut bytes = serde_json::to_vec(&call)?;
        bytes.push(0);
        self.pending.extend_from_slice(&bytes);
        if !oneway {
            self.owed += 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CallError> {
        while !self.pending.is_empty() {
            self.stream
                .write_buf(&mut self.pending)
                .await
                .map_err(io_error)?;
        }
        Ok(())
    }

    /// The next reply, as `R` or an error reply, with whether more replies of its call follow.
    async fn reply<R: DeserializeOwned>(
        &mut self,
    ) -> Result<(Result<R, VarlinkError>, bool), CallError> {
        let frame = self.frame().await?;
        let reply: IncomingReply<'_> = match serde_json::from_slice(&frame) {
            Ok(reply) => reply,
            Err(e) => return Err(self.break_off(format!("{e}"))),
        };
        let continues = reply.continues && reply.error.is_none();
        if !continues {
            self.owed = self.owed.saturating_sub(1);
        }
        Ok((reply.into_result()?, continues))
    }

    /// The next message, writing what is pending meanwhile: a long pipeline cannot deadlock
    /// against replies the service cannot write.
    async fn frame(&mut self) -> Result<Bytes, CallError> {
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(self.break_off(e.to_string())),
            }
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(4096);
            }
            let (mut reader, mut writer) = self.stream.split();
            let read = if self.pending.is_empty() {
                reader.read_buf(&mut self.rbuf).await
            } else {
                tokio::select! {
                    read = reader.read_buf(&mut self.rbuf) => read,
                    written = writer.write_buf(&mut self.pending) => {
                        written.map_err(io_error)?;
                        continue;
                    }
                }
            };
            if read.map_err(io_error)? == 0 {
                return Err(ClientError::Closed.into());
            }
        }
    }

    fn break_off(&mut self, why: String) -> CallError {
        self.broken = Some(why.clone());
        CallError::Protocol(why)
    }
}

/// `f`, within `limit` if one is given.
async fn within<T>(
    limit: Option<Duration>,
    f: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, f)
            .await
            .map_err(|_| CallError::Timeout(limit))?,
        None => f.await,
    }
}
