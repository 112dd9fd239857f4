//! A blocking Varlink client, for programs without an async runtime: the same calls, errors,
//! time limits and guarantees as the async [`crate::VarlinkClient`], run on a small runtime of
//! its own ([`localipc_client::blocking::Runner`], which also says how it behaves on a thread
//! that runs an async runtime: it works there, never panics, but blocks that thread).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("demo.sock");
//! # let rt = tokio::runtime::Runtime::new()?;
//! # let service = localipc_varlink::Service::builder()
//! #     .interface(localipc_varlink::messages_interface("ok")).build()?;
//! # let server = rt.block_on(async {
//! #     localipc_server::Server::builder(service).socket(&path)
//! #         .framing(localipc_core::Framing::Nul).bind() })?;
//! # let handle = server.handle();
//! # rt.spawn(server.serve(std::future::pending()));
//! use localipc_varlink::blocking::VarlinkClient;
//! use serde_json::{Value, json};
//!
//! let mut client = VarlinkClient::connect(&path)?;
//! let reply: Value = client.call("io.ipc.Messages.Echo", &json!({"message": "hi"}))?;
//! assert_eq!(reply["message"], "hi");
//! let counted = client.call_more::<_, Value>("io.ipc.Messages.Count", &json!({"count": 3}))?;
//! assert_eq!(counted.count(), 3);
//! # handle.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use localipc_client::blocking::Runner;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::ReplyStream;
use crate::{CallError, DEFAULT_MAX_MESSAGE, Info, VarlinkError};

/// One connection to a Varlink service: [`crate::VarlinkClient`] for blocking code.
///
/// # Abandoned calls
///
/// A call that times out leaves the connection in step: its late replies are read and dropped
/// by the next call. An iterator of [`call_more`](Self::call_more) dropped before its last
/// reply makes the client refuse further calls, as the async client's stream does.
#[derive(Debug)]
pub struct VarlinkClient {
    // Dropped before the runner, whose runtime its socket is registered with.
    inner: crate::VarlinkClient,
    runner: Runner,
}

impl VarlinkClient {
    /// Connects with no time limit on calls; see [`crate::VarlinkClient::connect`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::connect`].
    pub fn connect(address: impl AsRef<Path> + Send) -> Result<Self, CallError> {
        Self::connect_with(address, None, DEFAULT_MAX_MESSAGE)
    }

    /// Connects with a time limit and a maximum message size; see
    /// [`crate::VarlinkClient::connect_with`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::connect_with`].
    pub fn connect_with(
        address: impl AsRef<Path> + Send,
        timeout: Option<Duration>,
        max_message: usize,
    ) -> Result<Self, CallError> {
        let runner = Runner::new()?;
        let inner = runner.run(crate::VarlinkClient::connect_with(
            address,
            timeout,
            max_message,
        ))??;
        Ok(Self { inner, runner })
    }

    /// Sets the time limit of each call; see [`crate::VarlinkClient::set_timeout`].
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.set_timeout(timeout);
    }

    /// Calls `method` and returns its reply; see [`crate::VarlinkClient::call`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::call`].
    pub fn call<P: Serialize + Sync, R: DeserializeOwned + Send>(
        &mut self,
        method: &str,
        parameters: &P,
    ) -> Result<R, CallError> {
        self.runner.run(self.inner.call(method, parameters))?
    }

    /// Calls `method` with `fds` (file descriptors, passed with the call) and returns its
    /// reply with the descriptors that came with it; see
    /// [`crate::VarlinkClient::call_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::call_with_fds`].
    pub fn call_with_fds<P: Serialize + Sync, R: DeserializeOwned + Send>(
        &mut self,
        method: &str,
        parameters: &P,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(R, Vec<std::os::fd::OwnedFd>), CallError> {
        self.runner
            .run(self.inner.call_with_fds(method, parameters, fds))?
    }

    /// From now on, takes the descriptors that come with replies (up to `max` with one); see
    /// [`crate::VarlinkClient::accept_fds`].
    pub fn accept_fds(&mut self, max: usize) {
        self.inner.accept_fds(max);
    }

    /// Sends a one-way call; see [`crate::VarlinkClient::oneway`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::oneway`].
    pub fn oneway<P: Serialize + Sync>(
        &mut self,
        method: &str,
        parameters: &P,
    ) -> Result<(), CallError> {
        self.runner.run(self.inner.oneway(method, parameters))?
    }

    /// Calls `method` with `more` and returns its replies as an iterator, which ends after the
    /// last reply (or an error, its last item); see [`crate::VarlinkClient::call_more`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::call_more`].
    pub fn call_more<'c, P: Serialize + Sync, R: DeserializeOwned + Send + 'c>(
        &'c mut self,
        method: &str,
        parameters: &P,
    ) -> Result<Replies<'c, R>, CallError> {
        let stream = self
            .runner
            .run(self.inner.call_more(method, parameters))??;
        Ok(Replies {
            runner: &self.runner,
            stream: Some(stream),
        })
    }

    /// Sends every call at once, then reads their replies in order; see
    /// [`crate::VarlinkClient::pipeline`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::pipeline`].
    pub fn pipeline<'m, P: Serialize + Send, R: DeserializeOwned + Send>(
        &mut self,
        calls: impl IntoIterator<Item = (&'m str, P), IntoIter: Send> + Send,
    ) -> Result<Vec<Result<R, VarlinkError>>, CallError> {
        self.runner.run(self.inner.pipeline(calls))?
    }

    /// `org.varlink.service.GetInfo`; see [`crate::VarlinkClient::info`].
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn info(&mut self) -> Result<Info, CallError> {
        self.runner.run(self.inner.info())?
    }

    /// `org.varlink.service.GetInterfaceDescription`; see
    /// [`crate::VarlinkClient::describe`].
    ///
    /// # Errors
    ///
    /// As [`crate::VarlinkClient::describe`].
    pub fn describe(&mut self, interface: &str) -> Result<String, CallError> {
        self.runner.run(self.inner.describe(interface))?
    }
}

/// The replies of a [`VarlinkClient::call_more`], read as they are asked for, each within the
/// client's time limit.
pub struct Replies<'c, R> {
    runner: &'c Runner,
    /// `None` once it has ended.
    stream: Option<ReplyStream<'c, R>>,
}

impl<R> std::fmt::Debug for Replies<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("ended", &self.stream.is_none())
            .finish()
    }
}

impl<R: Send> Iterator for Replies<'_, R> {
    type Item = Result<R, CallError>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream.as_mut()?;
        let item = match self.runner.run(stream.next()) {
            Ok(item) => item,
            // No helper thread for the call: said once, then the iterator ends.
            Err(e) => Some(Err(e.into())),
        };
        if !matches!(item, Some(Ok(_))) {
            self.stream = None;
        }
        item
    }
}
