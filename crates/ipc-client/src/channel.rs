//! The cancel-safe core of a client connection, shared by every client of the workspace (the
//! plain [`Client`](crate::Client) and the Varlink client): frames out, frames in, the replies
//! owed to calls, and the state in which the connection must not be used any more.
//!
//! A call may be abandoned at any await point (its time limit passed, or its future was
//! dropped in a `select!`). What it leaves behind stays consistent:
//! - **Unwritten bytes** stay queued and go out, whole, before the next call's;
//! - **Owed replies**: the channel counts the calls whose last reply has not been read, and
//!   the next call first reads and drops those ([`Channel::catch_up`]), so no call ever
//!   returns a reply that belongs to another;
//! - **Unusable**: where replies cannot be told apart (a reply that broke the framing, a
//!   stream dropped before its end, an abandoned call in raw framing), the channel refuses
//!   further use with [`ClientError::Unusable`] instead of guessing.
//!
//! Every `async` method here is cancel-safe in that sense: dropping its future loses nothing
//! that a later call would misread.
//!
//! # Descriptors
//!
//! A message may carry file descriptors (`SCM_RIGHTS`), by the convention of
//! [`localipc_core::fds`]: [`queue_with_fds`](Channel::queue_with_fds) sends them with the
//! message's first byte, and only when no earlier call is owed a reply (the server has then
//! read every earlier byte, so the kernel cannot join them with the message that carries the
//! descriptors). With [`accept_fds`](Channel::accept_fds), reads take the descriptors that
//! come with replies, and [`take_fds`](Channel::take_fds) hands out those of the frame read
//! last; without it, the kernel drops any a server sends.

use std::borrow::Cow;
use std::io;
use std::os::fd::OwnedFd;

use bytes::{Bytes, BytesMut};
use localipc_core::{FdBinder, FrameCodec, Framing};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio_util::codec::Decoder;

use crate::connect::{Connection, Relay};
use crate::error::ClientError;
use crate::tcp::Stream;

/// Free space below which the read buffer grows before a read.
const READ_ROOM: usize = 1024;
/// How much the read buffer grows by.
const READ_GROW: usize = 8 * 1024;

/// One connection's framing, queued bytes, owed replies and usability; see the
/// [module docs](self).
#[derive(Debug)]
pub struct Channel {
    stream: Stream,
    codec: FrameCodec,
    /// Bytes read and not yet decoded.
    rbuf: BytesMut,
    /// Framed messages not yet written.
    pending: BytesMut,
    /// Calls whose last reply has not been read.
    owed: usize,
    /// Why the connection cannot be used any more, once it cannot.
    broken: Option<Cow<'static, str>>,
    /// Set while a call whose replies may never end (a stream) is being read: if it is dropped
    /// before its end, the connection is unusable.
    open_call: Option<&'static str>,
    /// Descriptors, for a channel that passes them (boxed: most channels pass none).
    fds: Option<Box<Fds>>,
    /// The `ssh` that carries a remote connection (boxed: most connections are local).
    relay: Option<Box<Relay>>,
}

/// The descriptors a channel sends and receives.
#[derive(Debug, Default)]
struct Fds {
    /// Most descriptors taken with one reply; 0 when replies' descriptors are not taken.
    cap: usize,
    /// Descriptors to send with the first byte of what is queued.
    outgoing: Option<Vec<OwnedFd>>,
    /// Descriptors received and not yet bound to their reply, and those of the frame read
    /// last.
    binder: FdBinder,
}

pub use localipc_core::fds::MAX_FDS_PER_MESSAGE;

impl Channel {
    /// A channel over a `connection` (a connected [`UnixStream`], or what
    /// [`connect`](crate::connect()) returns), framing messages with `framing` and refusing
    /// replies larger than `max_frame` bytes.
    pub fn new(connection: impl Into<Connection>, framing: Framing, max_frame: usize) -> Self {
        let (stream, relay) = connection.into().into_parts();
        Self {
            stream,
            codec: FrameCodec::new(framing, max_frame),
            rbuf: BytesMut::new(),
            pending: BytesMut::new(),
            owed: 0,
            broken: None,
            open_call: None,
            fds: None,
            relay: relay.map(Box::new),
        }
    }

    /// From now on, reads take the descriptors that come with replies (up to `max` with one,
    /// at most [`MAX_FDS_PER_MESSAGE`]; more, or a control message the kernel truncated, is a
    /// protocol error), for [`take_fds`](Self::take_fds).
    pub fn accept_fds(&mut self, max: usize) {
        self.fds.get_or_insert_with(Box::default).cap = max.clamp(1, MAX_FDS_PER_MESSAGE);
    }

    /// The descriptors that came with the frame [`next_frame`](Self::next_frame) returned
    /// last, if any (only with [`accept_fds`](Self::accept_fds)).
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        self.fds
            .as_mut()
            .and_then(|fds| fds.binder.take())
            .unwrap_or_default()
    }

    /// Frames `message` and queues it to be written with `fds`, which go with its first byte;
    /// it counts as owed if `replies`. Only when nothing is queued and no call is owed (call
    /// [`catch_up`](Self::catch_up) first), so that the server reads the descriptors with this
    /// message and no earlier one.
    ///
    /// # Errors
    ///
    /// [`ClientError::Message`] if the message does not fit the framing;
    /// [`ClientError::TooManyFds`] past [`MAX_FDS_PER_MESSAGE`];
    /// [`ClientError::FdsNotCarried`] on a connection through `ssh`; [`ClientError::Unusable`]
    /// if something is still queued or owed. Nothing is queued then (and `fds` are closed).
    pub fn queue_with_fds(
        &mut self,
        message: impl AsRef<[u8]>,
        fds: Vec<OwnedFd>,
        replies: bool,
    ) -> Result<(), ClientError> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(ClientError::TooManyFds {
                count: fds.len(),
                max: MAX_FDS_PER_MESSAGE,
            });
        }
        if !fds.is_empty() && (self.relay.is_some() || self.stream.unix().is_none()) {
            return Err(ClientError::FdsNotCarried);
        }
        if !self.pending.is_empty() || self.owed > 0 {
            return Err(ClientError::Unusable {
                reason: "descriptors are sent only once every earlier call is answered".into(),
            });
        }
        self.queue([message], replies)?;
        if !fds.is_empty() {
            self.fds.get_or_insert_with(Box::default).outgoing = Some(fds);
        }
        Ok(())
    }

    /// The framing of this channel.
    pub fn framing(&self) -> Framing {
        self.codec.framing()
    }

    /// Whether the connection can still be used.
    pub fn is_usable(&self) -> bool {
        self.check().is_ok()
    }

    /// Calls whose last reply has not been read (those of abandoned calls included).
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// Fails with [`ClientError::Unusable`] if the connection must not be used any more.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unusable`], with the reason.
    pub fn check(&self) -> Result<(), ClientError> {
        match (&self.broken, self.open_call) {
            (Some(reason), _) => Err(ClientError::Unusable {
                reason: reason.to_string(),
            }),
            (None, Some(reason)) => Err(ClientError::Unusable {
                reason: reason.to_owned(),
            }),
            (None, None) => Ok(()),
        }
    }

    /// Marks the connection unusable for good, and returns the error that says so.
    pub fn break_off(&mut self, reason: impl Into<Cow<'static, str>>) -> ClientError {
        let reason = reason.into();
        let error = ClientError::Unusable {
            reason: reason.to_string(),
        };
        self.broken.get_or_insert(reason);
        error
    }

    /// Frames `messages` and queues them to be written; each one that gets replies counts as
    /// owed (`replies`). Either all are queued or, if one cannot be framed, none is.
    ///
    /// # Errors
    ///
    /// [`ClientError::Message`] if a message does not fit the framing (too large, or holding
    /// its delimiter); nothing is queued then.
    pub fn queue<I>(&mut self, messages: I, replies: bool) -> Result<usize, ClientError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mark = self.pending.len();
        let mut count = 0;
        for message in messages {
            if let Err(e) = self.codec.encode_slice(message.as_ref(), &mut self.pending) {
                self.pending.truncate(mark);
                return Err(ClientError::Message(e));
            }
            count += 1;
        }
        if replies {
            self.owed += count;
        }
        Ok(count)
    }

    /// Writes every queued byte. Cancel-safe: what was not written stays queued, ahead of
    /// anything queued later.
    ///
    /// # Errors
    ///
    /// The connection's failure ([`ClientError::Closed`] if the server went away); the
    /// channel is then unusable.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if let Err(e) = self.send_fds().await {
            return Err(self.fail(fd_send_error(e)));
        }
        while !self.pending.is_empty() {
            if let Err(e) = self.stream.write_buf(&mut self.pending).await {
                return Err(self.fail(crate::client::io_error(e)));
            }
        }
        // TLS keeps records that the socket did not take yet.
        if let Err(e) = self.stream.flush().await {
            return Err(self.fail(crate::client::io_error(e)));
        }
        Ok(())
    }

    /// The next frame from the server, writing queued bytes meanwhile (so a long pipeline
    /// cannot deadlock against replies the server cannot write). Cancel-safe: bytes read stay
    /// buffered for the next call.
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] if the server closes first, [`ClientError::Protocol`] for a
    /// reply that breaks the framing, [`ClientError::Io`]; the channel is then unusable.
    pub async fn next_frame(&mut self) -> Result<Bytes, ClientError> {
        loop {
            let before = self.rbuf.len();
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(frame)) => {
                    self.bind_fds(before - self.rbuf.len())?;
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => return Err(self.fail(ClientError::Protocol(e))),
            }
            if let Err(e) = self.send_fds().await {
                return Err(self.fail(fd_send_error(e)));
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_ROOM {
                self.rbuf.reserve(READ_GROW);
            }
            // With replies' descriptors taken, reads are made with recvmsg (on a Unix stream,
            // the only kind that carries them).
            let fds = self.fds.as_deref_mut().filter(|fds| fds.cap > 0);
            let read = match (fds, &mut self.stream) {
                (Some(fds), Stream::Unix(unix)) => {
                    read_with_fds(unix, &mut self.rbuf, fds, &mut self.pending).await
                }
                _ => read_or_write(&mut self.stream, &mut self.rbuf, &mut self.pending).await,
            };
            let read = match read {
                Ok(Progress::Wrote) => continue,
                Ok(Progress::Read(n)) => Ok(n),
                Err(e) => Err(e),
            };
            match read {
                Ok(0) => {
                    // The server closed: what is left is a last reply only where the framing
                    // allows one without its end (a line without its newline).
                    return match self.codec.decode_eof(&mut self.rbuf) {
                        Ok(Some(frame)) => {
                            self.broken
                                .get_or_insert(Cow::Borrowed("the server closed the connection"));
                            Ok(frame)
                        }
                        Ok(None) => Err(self.fail(ClientError::Closed)),
                        Err(e) => Err(self.fail(ClientError::Protocol(e))),
                    };
                }
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidData && self.stream.unix().is_some() =>
                {
                    return Err(self.fail(ClientError::Fds(e.to_string())));
                }
                Err(e) => return Err(self.fail(crate::client::io_error(e))),
            }
        }
    }

    /// The frame of `taken` bytes was decoded: binds the descriptors that came with its first
    /// byte to it.
    fn bind_fds(&mut self, taken: usize) -> Result<(), ClientError> {
        let Some(fds) = self.fds.as_deref_mut() else {
            return Ok(());
        };
        if let Err(e) = fds.binder.advance(taken) {
            return Err(self.fail(ClientError::Fds(e.to_string())));
        }
        Ok(())
    }

    /// Sends the descriptors due with the first queued byte, with as much of the queue as the
    /// socket takes in that `sendmsg`. Cancel-safe: they are sent, or kept, whole.
    async fn send_fds(&mut self) -> io::Result<()> {
        let Some(fds) = self.fds.as_deref_mut() else {
            return Ok(());
        };
        let (Some(outgoing), false) = (&fds.outgoing, self.pending.is_empty()) else {
            return Ok(());
        };
        let pending = &self.pending;
        let Some(stream) = self.stream.unix() else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let written = stream
            .async_io(Interest::WRITABLE, || {
                let bytes = [io::IoSlice::new(pending)];
                localipc_core::fds::send_with_fds(stream, &bytes, outgoing)
            })
            .await?;
        fds.outgoing = None;
        bytes::Buf::advance(&mut self.pending, written);
        Ok(())
    }

    /// One owed call has had its last reply.
    pub fn settle(&mut self) {
        self.owed = self.owed.saturating_sub(1);
    }

    /// Finishes what abandoned calls left: writes their unwritten bytes and reads and drops
    /// their replies, until no call is owed. `ends_call` says whether a reply is its call's
    /// last (in the plain protocol every reply is), or fails with the protocol's own error.
    ///
    /// # Errors
    ///
    /// As [`next_frame`](Self::next_frame); [`ClientError::Unusable`] if the channel already
    /// is, or if the framing cannot tell an abandoned call's reply from the next one's (raw);
    /// whatever `ends_call` fails with.
    pub async fn catch_up<E: From<ClientError>>(
        &mut self,
        mut ends_call: impl FnMut(&mut Self, &Bytes) -> Result<bool, E>,
    ) -> Result<(), E> {
        self.check()?;
        if self.owed > 0 && !self.framing().can_pipeline() {
            return Err(self
                .break_off("an earlier call was abandoned before its raw reply ended")
                .into());
        }
        while self.owed > 0 {
            // A late reply of an abandoned call: not ours to return.
            let late = self.next_frame().await?;
            if ends_call(self, &late)? {
                self.settle();
            }
        }
        Ok(self.flush().await?)
    }

    /// Marks the start of a call whose replies may never end (a subscription): until
    /// [`close_call`](Self::close_call), the connection counts as unusable, so if the caller
    /// drops the call mid-way, later calls are refused with `reason` instead of reading its
    /// replies for ever.
    pub fn open_call(&mut self, reason: &'static str) {
        self.open_call = Some(reason);
    }

    /// The call opened by [`open_call`](Self::open_call) has had its last reply.
    pub fn close_call(&mut self) {
        self.open_call = None;
    }

    /// Records `error`, which leaves the connection of no more use, and returns it. Through
    /// `ssh`, the other end going away is `ssh` ending, which says more.
    fn fail(&mut self, error: ClientError) -> ClientError {
        let error = match (error, self.relay.as_deref_mut()) {
            (ClientError::Closed, Some(relay)) => relay.ended(),
            (error, _) => error,
        };
        self.broken.get_or_insert(Cow::Owned(error.to_string()));
        error
    }
}

/// Why a `sendmsg` with descriptors failed: `EPERM` is the peer's socket refusing them
/// (`SO_PASSRIGHTS` off).
fn fd_send_error(e: io::Error) -> ClientError {
    if e.kind() == io::ErrorKind::PermissionDenied {
        ClientError::FdsRefused
    } else {
        crate::client::io_error(e)
    }
}

/// What a wait on the stream did.
enum Progress {
    /// Read this many bytes (0: the end of the stream).
    Read(usize),
    /// Wrote some of the queued bytes.
    Wrote,
}

/// Waits until the stream has bytes to read, and reads them into `rbuf`; meanwhile writes
/// what is queued (and, over TLS, the records the socket did not take yet), returning after
/// a write, so a long pipeline cannot deadlock against replies the server cannot write.
/// Cancel-safe: bytes are only taken or written by the poll that reports them.
async fn read_or_write(
    stream: &mut Stream,
    rbuf: &mut BytesMut,
    pending: &mut BytesMut,
) -> io::Result<Progress> {
    use std::pin::Pin;
    use std::task::Poll;
    use tokio::io::AsyncWrite;
    std::future::poll_fn(|cx| {
        if pending.is_empty() {
            if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
        } else if let Poll::Ready(written) = Pin::new(&mut *stream).poll_write(cx, pending) {
            bytes::Buf::advance(pending, written?);
            return Poll::Ready(Ok(Progress::Wrote));
        }
        let n = std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut *stream),
            cx,
            rbuf
        ))?;
        Poll::Ready(Ok(Progress::Read(n)))
    })
    .await
}

/// Waits until `stream` is readable and reads into `rbuf` with `recvmsg`, keeping the
/// descriptors that come with the bytes in `fds`' binder, and writes what is queued
/// meanwhile. Cancel-safe: bytes are only taken by the poll that returns them.
async fn read_with_fds(
    stream: &mut UnixStream,
    rbuf: &mut BytesMut,
    fds: &mut Fds,
    pending: &mut BytesMut,
) -> io::Result<Progress> {
    let (reader, mut writer) = stream.split();
    if !pending.is_empty() {
        tokio::select! {
            read = read_fds(reader.as_ref(), rbuf, fds) => return read.map(Progress::Read),
            written = writer.write_buf(pending) => {
                written?;
                return Ok(Progress::Wrote);
            }
        }
    }
    read_fds(reader.as_ref(), rbuf, fds)
        .await
        .map(Progress::Read)
}

/// Waits until `stream` is readable and reads into `rbuf` with `recvmsg`, keeping the
/// descriptors that come with the bytes in `fds`' binder. Cancel-safe: bytes are only taken
/// by the poll that returns them.
async fn read_fds(stream: &UnixStream, rbuf: &mut BytesMut, fds: &mut Fds) -> io::Result<usize> {
    use localipc_core::fds::RecvFdsError;
    let start = rbuf.len();
    let room = rbuf.capacity() - start;
    let cap = fds.cap;
    let (n, received) = stream
        .async_io(Interest::READABLE, || {
            // recvmsg takes initialised memory: the spare room is zeroed, then cut back.
            rbuf.resize(start + room, 0);
            let result = localipc_core::fds::recv_with_fds(stream, &mut rbuf[start..], cap);
            let (n, received) = match result {
                Ok(got) => got,
                Err(RecvFdsError::Io(e)) => {
                    rbuf.truncate(start);
                    return Err(e);
                }
                Err(e) => {
                    rbuf.truncate(start);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                }
            };
            rbuf.truncate(start + n);
            Ok((n, received))
        })
        .await?;
    if n > 0 {
        fds.binder.received(start, start + n, received);
    }
    Ok(n)
}
