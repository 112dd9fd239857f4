//! A blocking client, for programs without an async runtime: command-line tools, build scripts,
//! tests. The same calls, errors, time limits and guarantees as the async [`crate::Client`],
//! which it runs on a small runtime of its own (one thread: the caller's).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("demo.sock");
//! # let rt = tokio::runtime::Runtime::new()?;
//! # let server = rt.block_on(async { localipc_server::Server::builder(localipc_core::Echo).socket(&path).bind() })?;
//! # let handle = server.handle();
//! # rt.spawn(server.serve(std::future::pending()));
//! use localipc_client::blocking::{Client, send};
//!
//! // With an echo server at `path`; no runtime in sight:
//! assert_eq!(send(&path, "hello")?, "hello");
//! let mut client = Client::connect(&path)?;
//! assert_eq!(client.request("one")?, "one");
//! assert_eq!(client.pipeline(["two", "three"])?, ["two", "three"]);
//! # handle.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Inside an async runtime
//!
//! A blocking client may be created, used and dropped anywhere, also on a thread that runs an
//! async runtime (where `Runtime::block_on` would panic): there, each call runs on a helper
//! thread while the calling thread waits. It still blocks that thread like any blocking call,
//! so on a runtime's worker the thread's other tasks wait meanwhile, and a call to a server
//! served by those very tasks can only end by its time limit. In async code prefer the async
//! client, or make the call inside `tokio::task::spawn_blocking`.
//!
//! # Time limits and abandoned calls
//!
//! Every call is bounded by [`ClientOptions::timeout`] (5 s by default). A call that times out
//! leaves the connection in step, as in the async client: its late replies are read and dropped
//! by the next call, which never returns a reply that belongs to another.

use std::path::Path;

use bytes::Bytes;

use crate::{ClientError, ClientOptions, PipelineError};

/// Runs a blocking client's async calls to completion on a runtime of its own: a current-thread
/// Tokio runtime with the I/O and time drivers, driven by the calling thread (or, on a thread
/// that runs an async runtime, by a helper thread: see the [module docs](self)). The Varlink
/// blocking client is built on it too.
#[derive(Debug)]
pub struct Runner {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Runner {
    /// A runner with a fresh runtime.
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] if the runtime's I/O driver cannot be created (out of descriptors).
    pub fn new() -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ClientError::Io)?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `call` to its end on this runner's runtime.
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] if the helper thread a call needs inside an async runtime cannot be
    /// started; `call` is then dropped unpolled.
    pub fn run<F>(&self, call: F) -> Result<F::Output, ClientError>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime();
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(runtime.block_on(call));
        }
        std::thread::scope(|scope| {
            let helper = std::thread::Builder::new()
                .name("ipc-blocking-call".into())
                .spawn_scoped(scope, || runtime.block_on(call))
                .map_err(ClientError::Io)?;
            Ok(helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("present until dropped")
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Dropping a runtime the usual way blocks, which panics inside an async context; this
        // runtime has no task of its own left to wait for.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A connection to a server, for any number of exchanges: [`crate::Client`] for blocking code.
#[derive(Debug)]
pub struct Client {
    // Dropped before the runner, whose runtime its socket is registered with.
    inner: crate::Client,
    runner: Runner,
}

impl Client {
    /// Connects with the default [`ClientOptions`]; see [`crate::Client::connect`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::connect`].
    pub fn connect(address: impl AsRef<Path> + Send) -> Result<Self, ClientError> {
        Self::connect_with(address, ClientOptions::default())
    }

    /// Connects with the given options; see [`crate::Client::connect_with`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::connect`].
    pub fn connect_with(
        address: impl AsRef<Path> + Send,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let runner = Runner::new()?;
        let inner = runner.run(crate::Client::connect_with(address, options))??;
        Ok(Self { inner, runner })
    }

    /// Sends one message and waits for its reply; see [`crate::Client::request`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::request`].
    pub fn request(&mut self, message: impl AsRef<[u8]> + Send) -> Result<Bytes, ClientError> {
        self.runner.run(self.inner.request(message))?
    }

    /// Sends one message with `fds` (file descriptors, passed with its first byte) and waits
    /// for its reply; returns the reply with the descriptors that came with it; see
    /// [`crate::Client::request_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::request_with_fds`].
    pub fn request_with_fds(
        &mut self,
        message: impl AsRef<[u8]> + Send,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(Bytes, Vec<std::os::fd::OwnedFd>), ClientError> {
        self.runner.run(self.inner.request_with_fds(message, fds))?
    }

    /// Sends every message before reading any reply, then returns the replies in order; see
    /// [`crate::Client::pipeline`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipeline`].
    pub fn pipeline<I>(&mut self, messages: I) -> Result<Vec<Bytes>, PipelineError>
    where
        I: IntoIterator + Send,
        I::IntoIter: Send,
        I::Item: AsRef<[u8]> + Send,
    {
        self.runner.run(self.inner.pipeline(messages))?
    }

    /// Whether the connection can still be used (see [`ClientError::Unusable`]).
    pub fn is_usable(&self) -> bool {
        self.inner.is_usable()
    }
}

/// Connects, sends one message, returns the reply and closes, within the default time limit;
/// see [`crate::send`].
///
/// # Errors
///
/// As [`crate::send`].
pub fn send(
    address: impl AsRef<Path> + Send,
    message: impl AsRef<[u8]> + Send,
) -> Result<Bytes, ClientError> {
    send_with(address, message, ClientOptions::default())
}

/// [`send`] with the given options; the time limit covers connecting and the exchange together.
///
/// # Errors
///
/// As [`send`].
pub fn send_with(
    address: impl AsRef<Path> + Send,
    message: impl AsRef<[u8]> + Send,
    options: ClientOptions,
) -> Result<Bytes, ClientError> {
    Runner::new()?.run(crate::send_with(address, message, options))?
}
