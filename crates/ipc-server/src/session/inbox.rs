//! The read side of a session: the read buffer, the one decode path from bytes to requests,
//! the end of the stream, and when the buffer is given back.
//!
//! Every exchange loop (one request at a time, or several at once, or reading on while a
//! stream is sent) takes requests through [`Inbox::next_request`] and fills the buffer through
//! [`Inbox::fill`] (waiting) or [`Inbox::try_fill`] (what has already arrived, as a graceful
//! stop reads it), so framing, the size limit and the end of the stream are handled in one
//! place.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use localipc_core::{FdBinder, FrameCodec};
use tokio_util::codec::Decoder;

use super::error::SessionError;
use crate::config::ServerConfig;
use crate::transport::{FdError, Transport};

/// Bytes of its read buffer a connection holds without counting them against the server's
/// budget for unfinished messages (see [`ServerConfig::unfinished_budget`]): the usual small
/// message costs no shared counter.
const UNCOUNTED: usize = 16 * 1024;
/// Buffers up to this size are not worth giving back while the connection waits.
const SMALL_BUFFER: usize = 4096;
/// Largest read buffer kept between two large messages (see [`Inbox::should_release`]).
const KEEP_READ_BUFFER: usize = 256 * 1024;
/// While a stream is sent, bytes that arrive are read (to notice a peer that hangs up, and to
/// keep pipelined requests for after the stream) until this much is buffered.
pub(super) const READ_AHEAD: usize = 64 * 1024;
/// At a graceful stop, how long a connection on which nothing has arrived yet is given for
/// its first bytes (see [`Inbox::drain`]).
pub(crate) const FIRST_BYTES_GRACE: Duration = Duration::from_millis(250);

/// What a session has read and not yet handed out as requests.
#[derive(Debug)]
pub(crate) struct Inbox {
    buf: BytesMut,
    codec: FrameCodec,
    /// The peer will send nothing more (it may still read).
    eof: bool,
    /// How many bytes the next message probably takes (the last one's size on the wire).
    /// (Sizes are `u32`, as frames are at most `u32::MAX` bytes: every session's future holds
    /// an inbox, so it is kept small.)
    expect: u32,
    /// Size of the last request, which decides whether the buffer is kept.
    last: u32,
    /// At a graceful stop: how many more bytes may be read before closing.
    drain_budget: Option<u32>,
    /// Some byte has arrived on this connection.
    started: bool,
    /// Bytes of the buffer counted against the server's budget for unfinished messages.
    counted: u32,
    /// Descriptors received and not yet handed out with their requests (boxed: only
    /// connections that are sent descriptors have any).
    fds: Option<Box<FdBinder>>,
}

/// What [`Inbox::try_fill`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filled {
    /// Bytes were read.
    Some,
    /// The end of the stream: the peer sends nothing more.
    End,
    /// Nothing has arrived (or a graceful stop read all it may).
    Nothing,
}

impl Inbox {
    /// An empty inbox that decodes with `codec`.
    pub(crate) fn new(codec: FrameCodec) -> Self {
        let expect = small(codec.read_hint(0));
        Self {
            buf: BytesMut::new(),
            codec,
            eof: false,
            expect,
            last: 0,
            drain_budget: None,
            started: false,
            counted: 0,
            fds: None,
        }
    }

    /// The next complete request already read, if any; at the end of the stream, also a last
    /// one without its delimiter, where the framing allows one.
    ///
    /// # Errors
    ///
    /// A frame over the size limit, or the stream ending inside a frame that needs its end;
    /// descriptors that arrived in the middle of the request.
    pub(crate) fn next_request(&mut self) -> Result<Option<Bytes>, SessionError> {
        let before = self.buf.len();
        let request = match self.codec.decode(&mut self.buf)? {
            Some(request) => request,
            None if self.eof => match self.codec.decode_eof(&mut self.buf)? {
                Some(request) => request,
                None => return Ok(None),
            },
            None => return Ok(None),
        };
        if let Some(fds) = &mut self.fds {
            fds.advance(before - self.buf.len())
                .map_err(|_| FdError::MidMessage)?;
        }
        // The next message is probably about as large.
        self.expect = small(self.codec.read_hint(request.len()));
        self.last = small(request.len());
        Ok(Some(request))
    }

    /// Whether the peer has said it sends nothing more.
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// Bytes read and not yet handed out as requests.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The descriptors that came with the request [`next_request`](Self::next_request)
    /// handed out last, if any.
    pub(crate) fn take_fds(&mut self) -> Option<Vec<OwnedFd>> {
        self.fds.as_mut()?.take()
    }

    /// Whether reading on while a stream is sent is worth it: the peer has not ended its side,
    /// less than [`READ_AHEAD`] is buffered, and no descriptors wait for their request.
    pub(crate) fn reads_ahead(&self) -> bool {
        !self.eof
            && self.buf.len() < READ_AHEAD
            && self.fds.as_ref().is_none_or(|fds| !fds.is_waiting())
    }

    /// Keeps the descriptors the last read brought, if any, with where its bytes lie in the
    /// buffer (from `start`).
    ///
    /// # Errors
    ///
    /// [`FdError::Backlog`] when more than one message's worth would wait for their requests.
    fn keep_fds(
        &mut self,
        conn: &mut impl Transport,
        start: usize,
        config: &ServerConfig,
    ) -> Result<(), FdError> {
        if !config.accept_fds {
            return Ok(());
        }
        let Some(received) = conn.take_fds() else {
            return Ok(());
        };
        let fds = self.fds.get_or_insert_with(Box::default);
        if fds.held() + received.len() > config.max_fds_per_message {
            return Err(FdError::Backlog {
                max: config.max_fds_per_message,
            });
        }
        fds.received(start, self.buf.len(), received);
        Ok(())
    }

    /// Waits for bytes and reads them; `Ok(0)` at the end of the stream. Gives back a large
    /// buffer first, when nothing is half-read (see [`Self::should_release`]). Cancel-safe.
    ///
    /// # Errors
    ///
    /// The transport's read error; [`SessionError::Budget`] when the message being read
    /// would take the server past its budget for unfinished messages.
    pub(crate) async fn fill(
        &mut self,
        conn: &mut impl Transport,
        config: &ServerConfig,
    ) -> Result<usize, SessionError> {
        if self.should_release() {
            self.buf = BytesMut::new();
        }
        self.count(config)?;
        let start = self.buf.len();
        let n = conn.read(&mut self.buf, self.expect as usize).await?;
        self.keep_fds(conn, start, config)?;
        self.count(config)?;
        #[cfg(test)]
        super::properties::peaks::read_buffer(self.buf.len());
        if n == 0 {
            self.eof = true;
        }
        self.started |= n > 0;
        Ok(n)
    }

    /// From now on, reads take only what has already arrived, and at most `budget` bytes in
    /// all: what a graceful stop reads before it closes.
    pub(crate) fn start_draining(&mut self, budget: usize) {
        self.drain_budget.get_or_insert(small(budget));
    }

    /// Reads what has already arrived, without waiting (within the drain budget, if one is
    /// set).
    ///
    /// # Errors
    ///
    /// The transport's read error.
    pub(crate) fn try_fill(
        &mut self,
        conn: &mut impl Transport,
        config: &ServerConfig,
    ) -> Result<Filled, SessionError> {
        if self.eof || self.drain_budget == Some(0) {
            return Ok(if self.eof {
                Filled::End
            } else {
                Filled::Nothing
            });
        }
        let start = self.buf.len();
        let read = conn.try_read(&mut self.buf, self.expect as usize);
        self.keep_fds(conn, start, config)?;
        #[cfg(test)]
        super::properties::peaks::read_buffer(self.buf.len());
        self.count(config)?;
        match read {
            Ok(0) => {
                self.eof = true;
                Ok(Filled::End)
            }
            Ok(n) => {
                if let Some(budget) = &mut self.drain_budget {
                    *budget = budget.saturating_sub(small(n));
                }
                self.started = true;
                Ok(Filled::Some)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Filled::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Filled::Some),
            Err(e) => Err(e.into()),
        }
    }

    /// Counts the buffer, while it holds an unfinished message, against the server's budget
    /// (past the first [`UNCOUNTED`] bytes), or gives back what it no longer holds.
    ///
    /// # Errors
    ///
    /// [`SessionError::Budget`] when the budget cannot take it.
    fn count(&mut self, config: &ServerConfig) -> Result<(), SessionError> {
        let held = if self.buf.is_empty() {
            0
        } else {
            small(self.buf.capacity().saturating_sub(UNCOUNTED))
        };
        let counters = &config.counters;
        if held > self.counted {
            if !counters.hold_unfinished((held - self.counted) as usize, config.unfinished_budget) {
                return Err(SessionError::Budget {
                    budget: config.unfinished_budget,
                    held: self.buf.capacity(),
                });
            }
        } else if held < self.counted {
            counters.release_unfinished((self.counted - held) as usize);
        }
        self.counted = held;
        Ok(())
    }

    /// Gives back what the buffer counted against the budget (when the session ends).
    pub(crate) fn uncount(&mut self, config: &ServerConfig) {
        config.counters.release_unfinished(self.counted as usize);
        self.counted = 0;
    }

    /// What a graceful stop reads: what has already arrived (see [`try_fill`](Self::try_fill)),
    /// and on a connection where nothing has arrived yet, its first bytes if they come within
    /// [`FIRST_BYTES_GRACE`]. A client that has just connected is about to send, and at a
    /// restart of a socket-activated server its request would otherwise meet a closed
    /// connection.
    ///
    /// # Errors
    ///
    /// The transport's read error.
    pub(crate) async fn drain(
        &mut self,
        conn: &mut impl Transport,
        config: &ServerConfig,
    ) -> Result<Filled, SessionError> {
        let filled = self.try_fill(conn, config)?;
        if filled != Filled::Nothing || self.started || self.drain_budget == Some(0) {
            return Ok(filled);
        }
        // Boxed: rare, and its timer would enlarge every session's future.
        Box::pin(async {
            match tokio::time::timeout(FIRST_BYTES_GRACE, self.fill(conn, config)).await {
                Err(_) => Ok(Filled::Nothing),
                Ok(read) => Ok(match read? {
                    0 => Filled::End,
                    n => {
                        if let Some(budget) = &mut self.drain_budget {
                            *budget = budget.saturating_sub(small(n));
                        }
                        Filled::Some
                    }
                }),
            }
        })
        .await
    }

    /// Whether to give the read buffer back before waiting for the next message: when nothing
    /// is half-read and the buffer is large, unless the last request was large too and the
    /// buffer no larger than [`KEEP_READ_BUFFER`]. A client that sends large messages one after
    /// another then reuses one buffer (a fresh 64 KiB allocation per message costs page
    /// faults), and a connection whose last message was small holds no large buffer while it
    /// waits.
    fn should_release(&self) -> bool {
        self.buf.is_empty()
            && self.buf.capacity() > SMALL_BUFFER
            && (self.last as usize <= SMALL_BUFFER || self.buf.capacity() > KEEP_READ_BUFFER)
    }
}

/// `n` as a `u32`, at most `u32::MAX`.
fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use localipc_core::Framing;

    fn inbox(capacity: usize, last: u32, content: &[u8]) -> Inbox {
        let mut inbox = Inbox::new(FrameCodec::new(Framing::Line, 1 << 20));
        inbox.buf = BytesMut::with_capacity(capacity);
        inbox.buf.extend_from_slice(content);
        inbox.last = last;
        inbox
    }

    #[test]
    fn a_large_read_buffer_is_kept_only_between_large_messages() {
        assert!(
            !inbox(70_000, 65_536, b"").should_release(),
            "kept after a large message"
        );
        assert!(
            inbox(70_000, 10, b"").should_release(),
            "released after a small one"
        );
        assert!(
            inbox(KEEP_READ_BUFFER + 1, 1 << 20, b"").should_release(),
            "never above the cap"
        );
        assert!(
            !inbox(70_000, 10, b"half a frame").should_release(),
            "never while a frame is half-read"
        );
        assert!(!inbox(SMALL_BUFFER, 10, b"").should_release());
    }

    #[test]
    fn a_last_line_without_its_newline_is_a_request_only_at_the_end() {
        let mut inbox = inbox(64, 0, b"one\ntwo");
        assert_eq!(inbox.next_request().unwrap().unwrap(), "one");
        assert_eq!(inbox.next_request().unwrap(), None);
        inbox.eof = true;
        assert_eq!(inbox.next_request().unwrap().unwrap(), "two");
        assert_eq!(inbox.next_request().unwrap(), None);
    }

    #[tokio::test]
    async fn an_unfinished_message_past_the_servers_budget_ends_the_session() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut peer) = crate::transport::memory::pair(1 << 20);
        let mut config = ServerConfig::new("unused");
        config.unfinished_budget = 64 * 1024;
        let mut inbox = Inbox::new(FrameCodec::new(Framing::Line, 1 << 20));
        // Half a line within the budget: counted.
        peer.write_all(&[b'x'; 40 * 1024]).await.unwrap();
        inbox.fill(&mut conn, &config).await.unwrap();
        let held = config.counters.unfinished_bytes();
        assert!(held > 0 && held <= 64 * 1024, "{held}");
        // More of it, past the budget: refused, and nothing more counted.
        peer.write_all(&[b'x'; 200 * 1024]).await.unwrap();
        let e = inbox.fill(&mut conn, &config).await.unwrap_err();
        assert!(matches!(e, SessionError::Budget { .. }), "{e}");
        assert_eq!(config.counters.unfinished_bytes(), held);
        assert_eq!(config.counters.refused_unfinished_budget(), 1);
        // The session's end gives back what it held.
        inbox.uncount(&config);
        assert_eq!(config.counters.unfinished_bytes(), 0);
    }

    #[tokio::test]
    async fn a_drain_reads_only_what_has_arrived_and_within_its_budget() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut peer) = crate::transport::memory::pair(1 << 16);
        let mut inbox = Inbox::new(FrameCodec::new(Framing::Line, 1 << 20));
        let config = ServerConfig::new("unused");
        inbox.start_draining(6);
        assert_eq!(inbox.try_fill(&mut conn, &config).unwrap(), Filled::Nothing);
        peer.write_all(b"abcd\n").await.unwrap();
        peer.write_all(b"efgh\n").await.unwrap();
        peer.write_all(b"ijkl\n").await.unwrap();
        assert_eq!(inbox.try_fill(&mut conn, &config).unwrap(), Filled::Some);
        assert_eq!(inbox.try_fill(&mut conn, &config).unwrap(), Filled::Some);
        // 10 bytes read: the budget of 6 is spent.
        assert_eq!(inbox.try_fill(&mut conn, &config).unwrap(), Filled::Nothing);
        assert_eq!(inbox.buffered(), 10);
    }
}
