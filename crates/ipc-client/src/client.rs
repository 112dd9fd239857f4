//! Connecting and exchanging messages: [`Client`] for many exchanges on one connection, [`send`]
//! for one.
//!
//! # Replies never mix up
//!
//! A `Client` counts the replies it is owed (through [`Channel`], the core it shares with the
//! Varlink client). When a call ends before its replies arrive (its
//! time limit passed, or its future was dropped, say in a `select!`), those replies still come,
//! later; the next call first finishes writing any message that was cut short, then reads and
//! drops the replies owed to the abandoned call, and only then sends its own. So a call never
//! returns a reply that belongs to another request. The next call's time limit covers that
//! catching up.
//!
//! In raw framing the replies carry no boundaries, so there is nothing to count: after an
//! abandoned call the client refuses further use with [`ClientError::Unusable`]. It does the
//! same after the connection broke (the server closed it, or sent something unreadable).

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use localipc_core::{DEFAULT_MAX_FRAME, FrameError, Framing};

use crate::channel::Channel;
use crate::connect::Connection;
use crate::error::{ClientError, PipelineError};

/// Default time limit of one exchange (and of [`send`] as a whole).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default quiet interval that ends a reply in raw framing: see [`ClientOptions::raw_quiet`].
pub const DEFAULT_RAW_QUIET: Duration = Duration::from_millis(100);

/// How the client talks to the server.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The framing; must match the server's.
    pub framing: Framing,
    /// Largest message sent or reply accepted, in bytes.
    pub max_frame: usize,
    /// Time limit of connecting, and of each call; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// In raw framing, where a reply has no end marker: once some of the reply has arrived, the
    /// reply ends when the server closes the connection or sends nothing more for this long.
    pub raw_quiet: Duration,
    /// Most descriptors taken with one reply (`SCM_RIGHTS`), for
    /// [`Client::request_with_fds`]; 0, the default, takes none (the kernel then drops any
    /// the server sends). A reply with more breaks the connection ([`ClientError::Fds`]).
    pub accept_fds: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            framing: Framing::default(),
            max_frame: DEFAULT_MAX_FRAME,
            timeout: Some(DEFAULT_TIMEOUT),
            raw_quiet: DEFAULT_RAW_QUIET,
            accept_fds: 0,
        }
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::framing`].
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Sets [`ClientOptions::max_frame`].
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets [`ClientOptions::timeout`].
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::accept_fds`].
    pub fn accept_fds(mut self, max: usize) -> Self {
        self.accept_fds = max;
        self
    }

    /// Sets [`ClientOptions::raw_quiet`].
    pub fn raw_quiet(mut self, quiet: Duration) -> Self {
        self.raw_quiet = quiet;
        self
    }
}

/// A connection to a server, for any number of exchanges.
///
/// See the [module docs](self) for how a call that is abandoned (timed out or dropped) is kept
/// from mixing up the replies of later calls.
#[derive(Debug)]
pub struct Client {
    channel: Channel,
    options: ClientOptions,
}

impl Client {
    /// Connects with the default [`ClientOptions`].
    ///
    /// `address` is a socket file, `@name` for a name in Linux's abstract namespace (see
    /// [`localipc_core::abstract_name`]), or any form [`Address`](localipc_core::Address)
    /// reads: `unix:PATH`, `unix:@NAME`, and a server on another host through `ssh`
    /// (`ssh-unix:HOST:PATH`, `ssh-exec:HOST:COMMAND`; see [`crate::connect`](mod@crate::connect)).
    ///
    /// # Errors
    ///
    /// [`ClientError::NoSocket`], [`ClientError::Refused`], [`ClientError::NotASocket`],
    /// [`ClientError::PermissionDenied`], [`ClientError::PathTooLong`],
    /// [`ClientError::Address`], [`ClientError::Ssh`], [`ClientError::Timeout`],
    /// [`ClientError::Runtime`] or [`ClientError::Io`].
    pub async fn connect(address: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with(address, ClientOptions::default()).await
    }

    /// Connects with the given options.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_with(
        address: impl AsRef<Path>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        if !options.framing.can_pipeline() {
            // Raw replies end after a quiet interval, which takes a timer.
            crate::runtime::check(Some(options.raw_quiet))?;
        }
        let connection = crate::connect::connect(address, options.timeout).await?;
        Ok(Self::from_connection(connection, options))
    }

    /// A client over a connection made by other means: [`connect_tcp`](crate::connect_tcp)
    /// with TLS options of the caller's, say.
    pub fn from_connection(connection: impl Into<Connection>, options: ClientOptions) -> Self {
        let mut channel = Channel::new(connection, options.framing, options.max_frame);
        if options.accept_fds > 0 {
            channel.accept_fds(options.accept_fds);
        }
        Self { channel, options }
    }

    /// Sends one message and waits for its reply.
    ///
    /// # Errors
    ///
    /// [`ClientError::Message`] if the message does not fit the framing (nothing is sent),
    /// [`ClientError::Closed`] if the server closes first, [`ClientError::Timeout`],
    /// [`ClientError::Protocol`], [`ClientError::Unusable`] or [`ClientError::Io`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in this sense: dropping the future loses this call's reply, but never hands
    /// it to a later call (the next call drops it when it arrives). In raw framing, a dropped
    /// call leaves the client [`ClientError::Unusable`].
    pub async fn request(&mut self, message: impl AsRef<[u8]>) -> Result<Bytes, ClientError> {
        match self.pipeline([message]).await {
            Ok(mut replies) => Ok(replies.pop().expect("one reply per message")),
            Err(e) => Err(e.error),
        }
    }

    /// Sends one message with `fds` (file descriptors, passed with its first byte) and waits
    /// for its reply; returns the reply with the descriptors that came with it (none unless
    /// [`ClientOptions::accept_fds`] is set). The message leaves once every earlier call is
    /// answered, so the server binds the descriptors to it and no other.
    ///
    /// # Errors
    ///
    /// As [`Client::request`]; [`ClientError::TooManyFds`] past 253 descriptors, or
    /// [`ClientError::FdsNotCarried`] on a connection through `ssh` (nothing is sent then);
    /// [`ClientError::Fds`] for a reply with more descriptors than accepted.
    ///
    /// # Cancel safety
    ///
    /// As [`Client::request`]. The descriptors go whole with the message or not at all.
    pub async fn request_with_fds(
        &mut self,
        message: impl AsRef<[u8]>,
        fds: Vec<OwnedFd>,
    ) -> Result<(Bytes, Vec<OwnedFd>), ClientError> {
        let result = within(self.options.timeout, async {
            self.channel
                .catch_up(|_, _| Ok::<_, ClientError>(true))
                .await?;
            self.channel.queue_with_fds(message, fds, true)?;
            self.channel.flush().await?;
            let reply = if self.options.framing.can_pipeline() {
                let reply = self.channel.next_frame().await?;
                (reply, self.channel.take_fds())
            } else {
                self.raw_reply().await?
            };
            self.channel.settle();
            Ok(reply)
        })
        .await
        .and_then(|r| r);
        if matches!(result, Err(ClientError::Timeout(_))) && !self.options.framing.can_pipeline() {
            self.channel
                .break_off("an earlier call timed out in raw framing");
        }
        result
    }

    /// Sends every message before reading any reply, then returns the replies in order. Writing
    /// and reading overlap, so a batch larger than the socket buffers cannot deadlock. In raw
    /// framing, which cannot tell pipelined replies apart, the messages are sent one after
    /// another, each after the reply to the one before.
    ///
    /// # Errors
    ///
    /// A [`PipelineError`]: the replies that did arrive, in order, and why the rest did not (as
    /// for [`Client::request`]). The time limit applies to the whole batch. Every message is
    /// checked against the framing before anything is sent.
    ///
    /// # Cancel safety
    ///
    /// As [`Client::request`]: the replies of a dropped batch are never returned by a later
    /// call.
    pub async fn pipeline<I>(&mut self, messages: I) -> Result<Vec<Bytes>, PipelineError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut replies = Vec::new();
        let limit = self.options.timeout;
        // A time-out, or the exchange's own result.
        let result = within(limit, self.exchange(messages, &mut replies))
            .await
            .and_then(|r| r);
        match result {
            Ok(()) => Ok(replies),
            Err(error) => {
                if matches!(error, ClientError::Timeout(_)) && !self.options.framing.can_pipeline()
                {
                    self.channel
                        .break_off("an earlier call timed out in raw framing");
                }
                Err(PipelineError { replies, error })
            }
        }
    }

    /// Whether the connection can still be used (see [`ClientError::Unusable`]).
    pub fn is_usable(&self) -> bool {
        self.channel.is_usable()
    }

    async fn exchange<I>(
        &mut self,
        messages: I,
        replies: &mut Vec<Bytes>,
    ) -> Result<(), ClientError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        // Replies owed to abandoned calls come first: they are read and dropped (every
        // reply is its request's only one).
        self.channel
            .catch_up(|_, _| Ok::<_, ClientError>(true))
            .await?;
        if !self.options.framing.can_pipeline() {
            for message in messages {
                self.channel.queue([message], true)?;
                self.channel.flush().await?;
                let (reply, _fds) = self.raw_reply().await?;
                self.channel.settle();
                replies.push(reply);
            }
            return Ok(());
        }
        // Every message is framed first, so one that cannot be sent sends none; they are
        // written while the replies are read.
        let count = self.channel.queue(messages, true)?;
        while replies.len() < count {
            let reply = self.channel.next_frame().await?;
            self.channel.settle();
            replies.push(reply);
        }
        Ok(())
    }

    /// Collects a reply in raw framing: what arrives until the server closes or goes quiet,
    /// with the descriptors that came with it.
    async fn raw_reply(&mut self) -> Result<(Bytes, Vec<OwnedFd>), ClientError> {
        let mut reply = BytesMut::from(&self.channel.next_frame().await?[..]);
        let mut fds = self.channel.take_fds();
        loop {
            match tokio::time::timeout(self.options.raw_quiet, self.channel.next_frame()).await {
                Err(_quiet) => break,
                // The reply ends with the connection, which is of no more use.
                Ok(Err(ClientError::Closed)) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(more)) => {
                    reply.extend_from_slice(&more);
                    fds.extend(self.channel.take_fds());
                }
            }
            if reply.len() > self.options.max_frame {
                return Err(ClientError::Protocol(FrameError::TooLarge {
                    max: self.options.max_frame,
                }));
            }
        }
        Ok((reply.freeze(), fds))
    }
}

/// Connects, sends one message, returns the reply and closes, all within the default time limit.
///
/// # Errors
///
/// As [`Client::connect`] and [`Client::request`].
pub async fn send(
    address: impl AsRef<Path>,
    message: impl AsRef<[u8]>,
) -> Result<Bytes, ClientError> {
    send_with(address, message, ClientOptions::default()).await
}

/// [`send`] with the given options; the time limit covers connecting and the exchange together.
///
/// # Errors
///
/// As [`Client::connect`] and [`Client::request`].
pub async fn send_with(
    address: impl AsRef<Path>,
    message: impl AsRef<[u8]>,
    options: ClientOptions,
) -> Result<Bytes, ClientError> {
    let address = address.as_ref();
    let inner = options.timeout(None);
    within(options.timeout, async move {
        Client::connect_with(address, inner)
            .await?
            .request(message)
            .await
    })
    .await?
}

/// Runs `f` within `limit` if one is given: how every call of the workspace's clients is
/// bounded.
///
/// # Errors
///
/// [`ClientError::Timeout`] when the limit passes first; [`ClientError::Runtime`] outside a
/// Tokio runtime, or on one without timers when a limit is given.
pub async fn within<T>(
    limit: Option<Duration>,
    f: impl Future<Output = T>,
) -> Result<T, ClientError> {
    crate::runtime::check(limit)?;
    match limit {
        Some(limit) => tokio::time::timeout(limit, f)
            .await
            .map_err(|_| ClientError::Timeout(limit)),
        None => Ok(f.await),
    }
}

/// An I/O error on an open connection: the peer going away is [`ClientError::Closed`].
pub(crate) fn io_error(e: io::Error) -> ClientError {
    if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return ClientError::Tls(tls.to_string());
    }
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ClientError::Closed,
        _ => ClientError::Io(e),
    }
}
