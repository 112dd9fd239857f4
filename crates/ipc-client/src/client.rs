//! Connecting and exchanging messages: [`Client`] for many exchanges on one connection, [`send`]
//! for one.

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ipc_core::{DEFAULT_MAX_FRAME, FrameCodec, FrameError, Framing};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::error::ClientError;

/// Default time limit of one exchange (and of [`send`] as a whole).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the client talks to the server.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The framing; must match the server's.
    pub framing: Framing,
    /// Largest message sent or reply accepted, in bytes.
    pub max_frame: usize,
    /// Time limit of connecting, and of each exchange; `None` waits for ever.
    pub timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            framing: Framing::default(),
            max_frame: DEFAULT_MAX_FRAME,
            timeout: Some(DEFAULT_TIMEOUT),
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
}

/// A connection to a server, for any number of exchanges.
#[derive(Debug)]
pub struct Client {
    reader: FramedRead<OwnedReadHalf, FrameCodec>,
    writer: FramedWrite<OwnedWriteHalf, FrameCodec>,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects with the default [`ClientOptions`].
    ///
    /// # Errors
    ///
    /// [`ClientError::NoSocket`], [`ClientError::Refused`], [`ClientError::NotASocket`],
    /// [`ClientError::PermissionDenied`], [`ClientError::Timeout`] or [`ClientError::Io`].
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with(path, ClientOptions::default()).await
    }

    /// Connects with the given options.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_with(
        path: impl AsRef<Path>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let stream = within(options.timeout, UnixStream::connect(path))
            .await?
            .map_err(|e| connect_error(path, e))?;
        let (read, write) = stream.into_split();
        Ok(Self {
            reader: FramedRead::new(read, FrameCodec::new(options.framing, options.max_frame)),
            writer: FramedWrite::new(write, FrameCodec::new(options.framing, options.max_frame)),
            timeout: options.timeout,
        })
    }

    /// Sends one message and waits for its reply.
    ///
    /// # Errors
    ///
    /// [`ClientError::Message`] if the message does not fit the framing, [`ClientError::Closed`]
    /// if the server closes first, [`ClientError::Timeout`], [`ClientError::Protocol`] or
    /// [`ClientError::Io`].
    pub async fn request(&mut self, message: impl Into<Bytes>) -> Result<Bytes, ClientError> {
        let message = message.into();
        within(self.timeout, async {
            self.writer.send(message).await.map_err(send_error)?;
            self.receive().await
        })
        .await?
    }

    /// Sends every message before reading any reply, then returns the replies in order. Writing
    /// and reading overlap, so a batch larger than the socket buffers cannot deadlock.
    ///
    /// # Errors
    ///
    /// As [`Client::request`]; the time limit applies to the whole batch.
    pub async fn pipeline<I>(&mut self, messages: I) -> Result<Vec<Bytes>, ClientError>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        let messages: Vec<Bytes> = messages.into_iter().map(Into::into).collect();
        let count = messages.len();
        let Client { reader, writer, .. } = self;
        let write = async {
            for m in messages {
                writer.feed(m).await.map_err(send_error)?;
            }
            writer.flush().await.map_err(send_error)
        };
        let read = async {
            let mut replies = Vec::with_capacity(count);
            while replies.len() < count {
                replies.push(next_reply(reader).await?);
            }
            Ok(replies)
        };
        within(self.timeout, async {
            let ((), replies) = futures::try_join!(write, read)?;
            Ok(replies)
        })
        .await?
    }

    async fn receive(&mut self) -> Result<Bytes, ClientError> {
        next_reply(&mut self.reader).await
    }
}

async fn next_reply(
    reader: &mut FramedRead<OwnedReadHalf, FrameCodec>,
) -> Result<Bytes, ClientError> {
    match reader.next().await {
        Some(Ok(reply)) => Ok(reply),
        None => Err(ClientError::Closed),
        Some(Err(FrameError::Io(e))) if is_disconnect(&e) => Err(ClientError::Closed),
        Some(Err(FrameError::Io(e))) => Err(ClientError::Io(e)),
        Some(Err(e)) => Err(ClientError::Protocol(e)),
    }
}

/// Connects, sends one message, returns the reply and closes, all within the default time limit.
///
/// # Errors
///
/// As [`Client::connect`] and [`Client::request`].
pub async fn send(path: impl AsRef<Path>, message: impl Into<Bytes>) -> Result<Bytes, ClientError> {
    send_with(path, message, ClientOptions::default()).await
}

/// [`send`] with the given options; the time limit covers connecting and the exchange together.
///
/// # Errors
///
/// As [`Client::connect`] and [`Client::request`].
pub async fn send_with(
    path: impl AsRef<Path>,
    message: impl Into<Bytes>,
    options: ClientOptions,
) -> Result<Bytes, ClientError> {
    let message = message.into();
    let path = path.as_ref();
    let inner = options.timeout(None);
    within(options.timeout, async move {
        Client::connect_with(path, inner)
            .await?
            .request(message)
            .await
    })
    .await?
}

async fn within<T>(limit: Option<Duration>, f: impl Future<Output = T>) -> Result<T, ClientError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, f)
            .await
            .map_err(|_| ClientError::Timeout(limit)),
        None => Ok(f.await),
    }
}

fn connect_error(path: &Path, e: io::Error) -> ClientError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::NotFound => ClientError::NoSocket { path },
        io::ErrorKind::ConnectionRefused => {
            // Linux also refuses a connect to a regular file: tell the two apart.
            match ipc_core::probe(&path) {
                Ok(ipc_core::PathState::NotASocket(_)) => ClientError::NotASocket { path },
                _ => ClientError::Refused { path },
            }
        }
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
        _ => ClientError::Io(e),
    }
}

fn send_error(e: FrameError) -> ClientError {
    match e {
        FrameError::Io(e) if is_disconnect(&e) => ClientError::Closed,
        FrameError::Io(e) => ClientError::Io(e),
        e => ClientError::Message(e),
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}
