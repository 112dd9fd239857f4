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

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use localipc_core::{FrameCodec, Framing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::Decoder;

use crate::error::ClientError;

/// Free space below which the read buffer grows before a read.
const READ_ROOM: usize = 1024;
/// How much the read buffer grows by.
const READ_GROW: usize = 8 * 1024;

/// One connection's framing, queued bytes, owed replies and usability; see the
/// [module docs](self).
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
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
}

impl Channel {
    /// A channel over a connected `stream`, framing messages with `framing` and refusing
    /// replies larger than `max_frame` bytes.
    pub fn new(stream: UnixStream, framing: Framing, max_frame: usize) -> Self {
        Self {
            stream,
            codec: FrameCodec::new(framing, max_frame),
            rbuf: BytesMut::new(),
            pending: BytesMut::new(),
            owed: 0,
            broken: None,
            open_call: None,
        }
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
        while !self.pending.is_empty() {
            if let Err(e) = self.stream.write_buf(&mut self.pending).await {
                return Err(self.fail(crate::client::io_error(e)));
            }
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
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(self.fail(ClientError::Protocol(e))),
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_ROOM {
                self.rbuf.reserve(READ_GROW);
            }
            let (mut reader, mut writer) = self.stream.split();
            let read = if self.pending.is_empty() {
                reader.read_buf(&mut self.rbuf).await
            } else {
                tokio::select! {
                    read = reader.read_buf(&mut self.rbuf) => read,
                    written = writer.write_buf(&mut self.pending) => match written {
                        Ok(_) => continue,
                        Err(e) => Err(e),
                    },
                }
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
                Err(e) => return Err(self.fail(crate::client::io_error(e))),
            }
        }
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

    /// Records `error`, which leaves the connection of no more use, and returns it.
    fn fail(&mut self, error: ClientError) -> ClientError {
        self.broken.get_or_insert(Cow::Owned(error.to_string()));
        error
    }
}
