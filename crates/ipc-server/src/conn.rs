//! One accepted socket as the runtime sees it: registered for read readiness only, until a
//! write would block.
//!
//! tokio's `UnixStream` registers every socket for read and write readiness. Then each time the
//! peer reads a reply, the kernel reports the socket writable again, which wakes the runtime for
//! nothing: on a request/reply connection that is a spurious epoll event per exchange, and when
//! the server was waiting, an extra wake-up and context switch. Replies almost always fit in the
//! socket buffer, so a connection asks for write readiness only once a write has failed with
//! `EAGAIN`, and keeps it from then on (a peer that was slow to read once is likely to be again).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::task::Poll;

use bytes::{Buf, BytesMut};
use localipc_core::PeerCredentials;
use nix::sys::socket::{MsgFlags, UnixAddr, getsockopt, send, sendmsg, sockopt};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::config::MAX_FDS_PER_MESSAGE as MAX_FDS;
use crate::transport::{FdError, Transport};

/// Bytes of a read into the stack when no frame is half-read (more waits for the next round).
pub(crate) const SMALL_READ: usize = 4096;
/// Bytes asked of the kernel per read while a frame is half-read (doubling from there).
const READ_CHUNK: usize = 8 * 1024;
/// Most bytes asked of the kernel per read, when a large frame is arriving.
const MAX_READ: usize = 256 * 1024;
/// Most buffers handed to one vectored write. Small replies are coalesced into one buffer and
/// only replies of 4 KiB or more have their own, so 16 already carry 64 KiB or more; the array
/// is filled in on every write, so it is kept small.
const MAX_SLICES: usize = 16;

/// An accepted connection, registered with the runtime: a Unix stream, or a TCP one.
pub(crate) struct Connection<S: AsRawFd = UnixStream> {
    /// `None` only if re-registering for write readiness failed (the session then ends).
    fd: Option<AsyncFd<S>>,
    /// Whether the registration includes write readiness.
    writable: bool,
    /// Whether read readiness was cleared (while waiting for a hang-up) with data perhaps
    /// still unread: the next read then tries the socket before it waits.
    unread_maybe: bool,
    /// For a connection that accepts descriptors: what its reads take (boxed, so that the
    /// usual connection, which takes none, stays small and reads with `recv`).
    fds: Option<Box<FdPassing>>,
}

/// The descriptors a connection's reads take, and those its next write sends.
#[derive(Default)]
struct FdPassing {
    /// Most descriptors taken with one message; 0 when the connection accepts none (its
    /// reads then take none, with `recv`).
    cap: usize,
    /// The descriptors that came with the last read.
    received: Option<Vec<OwnedFd>>,
    /// The descriptors to send with the first byte of the next write.
    outgoing: Option<Vec<OwnedFd>>,
}

impl<S: StreamSocket> Connection<S> {
    /// Registers a freshly accepted stream for read readiness. Every read and write on it is
    /// made with `MSG_DONTWAIT`, so it need not be in non-blocking mode.
    pub(crate) fn new(stream: S) -> io::Result<Self> {
        Ok(Self {
            fd: Some(register(stream, Interest::READABLE)?),
            writable: false,
            unread_maybe: false,
            fds: None,
        })
    }

    /// From now on, reads take up to `max` descriptors (at most 253) with each message
    /// (`recvmsg` with `MSG_CMSG_CLOEXEC`); more, or a truncated control message, is an
    /// [`FdError`] and closes all of them.
    pub(crate) fn accept_fds(mut self, max: usize) -> Self {
        self.fds.get_or_insert_with(Box::default).cap = max.min(MAX_FDS);
        self
    }

    fn fd(&self) -> io::Result<&AsyncFd<S>> {
        registered(&self.fd)
    }

    /// Adds write readiness to the registration (once per connection).
    fn register_writable(&mut self) -> io::Result<()> {
        if self.writable {
            return Ok(());
        }
        let Some(fd) = self.fd.take() else {
            return Err(io::Error::other("connection lost its runtime registration"));
        };
        // Re-registering reports the current state, so readiness that arrived meanwhile is kept.
        let stream = fd.into_inner();
        self.fd = Some(register(stream, Interest::READABLE | Interest::WRITABLE)?);
        self.writable = true;
        Ok(())
    }
}

impl<S: StreamSocket> Connection<S> {
    /// Closes gracefully: ends the sending side (the peer reads the end of the stream after
    /// everything written), then drops what the peer sends until it has taken every byte
    /// written or ended its own side, for [`LINGER`] at most. Closing a TCP socket whose input
    /// holds unread bytes resets the connection, and a reset drops what the kernel has not
    /// sent yet: replies a slow reader had not taken would be lost. Once the peer has ended
    /// its side and its bytes are dropped, no more can come, and the kernel sends what is
    /// left after the close.
    pub(crate) async fn linger(&mut self) {
        let Ok(fd) = self.fd() else { return };
        let socket = fd.get_ref();
        let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Write);
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            // Once the peer has ended its side (nothing more can come), or the connection is
            // reset or gone (nothing is left to save), the close loses nothing.
            if !matches!(drop_input(socket, DISCARD_PER_PAUSE), Input::Waiting) {
                return;
            }
            let everything_taken = unsent(socket).is_none_or(|unsent| unsent == 0);
            if everything_taken || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    }
}

impl Connection<UnixStream> {
    /// The peer's user, group and process ids (`SO_PEERCRED`).
    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let stream = self.fd()?.get_ref();
        let c = getsockopt(stream, sockopt::PeerCredentials)?;
        let peer = PeerCredentials::new(c.uid(), c.gid(), Some(c.pid()));
        Ok(peer.with_groups(peer_groups(stream)?))
    }
}

/// The server's transport: see the module docs for what each method saves.
impl<S: StreamSocket> Transport for Connection<S> {
    /// Waits until the socket is readable and reads what it holds into `rbuf`; `Ok(0)` is the
    /// end of the stream. Cancel-safe: bytes are only taken in the poll that returns them.
    ///
    /// A read that returns less than it asked for has drained the socket, so it also clears the
    /// readiness: the next wait goes straight to epoll instead of first making a read that fails
    /// with `EAGAIN`, which saves a system call per exchange. This is safe with edge-triggered
    /// epoll: the readiness seen before the read is the one cleared (data that arrives later
    /// raises a new event), exactly as after a real `EAGAIN`.
    ///
    /// `expect` is how many bytes the next message probably takes (the size of the last one):
    /// above a few KiB the read goes straight into a buffer that large, so a large message
    /// arrives in one read instead of a small one and then the rest.
    async fn read(&mut self, rbuf: &mut BytesMut, expect: usize) -> io::Result<usize> {
        if std::mem::take(&mut self.unread_maybe) {
            match self.try_read(rbuf, expect) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return result,
            }
        }
        let fd = registered(&self.fd)?;
        let intake = &mut self.fds;
        // poll_read_ready keeps the waker in the registration's one reader slot (this session
        // is the socket's only reader), which costs less than a `readable()` future per wait.
        std::future::poll_fn(|cx| {
            loop {
                let mut ready = std::task::ready!(fd.poll_read_ready(cx))?;
                match read_from(fd.get_ref(), intake, rbuf, expect) {
                    Ok((n, asked)) => {
                        if n > 0 && n < asked {
                            ready.clear_ready();
                        }
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
        .await
    }

    /// Reads what the socket holds, without waiting for more (`WouldBlock` if it holds
    /// nothing).
    fn try_read(&mut self, rbuf: &mut BytesMut, expect: usize) -> io::Result<usize> {
        loop {
            let stream = registered(&self.fd)?.get_ref();
            match read_from(stream, &mut self.fds, rbuf, expect) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result.map(|(n, _asked)| n),
            }
        }
    }

    /// Writes what the socket buffer takes now from `buf`, in order, without waiting, and
    /// advances `buf` past it; `WouldBlock` if it takes nothing. Several chunks of `buf` go out
    /// in one vectored write.
    fn try_write_buf<B: Buf>(&mut self, buf: &mut B) -> io::Result<usize> {
        send_buf(registered(&self.fd)?.get_ref(), &mut self.fds, buf)
    }

    /// Waits until the socket has room, then writes from `buf` as [`try_write_buf`] does;
    /// returns how many bytes went (more than zero unless `buf` is empty). For after a write
    /// failed with `WouldBlock`: this is what first asks the runtime for write readiness.
    ///
    /// [`try_write_buf`]: Self::try_write_buf
    async fn write_buf<B: Buf + Send>(&mut self, buf: &mut B) -> io::Result<usize> {
        self.register_writable()?;
        loop {
            let mut ready = registered(&self.fd)?.writable().await?;
            match send_buf(ready.get_inner(), &mut self.fds, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    /// What the kernel still holds of what was written (`SIOCOUTQ`): it drops as the peer
    /// reads, one kernel buffer (up to about 32 KiB) at a time.
    fn unread_by_peer(&self) -> Option<usize> {
        unsent(self.fd().ok()?.get_ref())
    }

    /// Waits for the kernel to report the peer gone: `POLLHUP`, which a Unix stream socket
    /// shows once the peer closed (a half-close shows only as the end of the stream), or a
    /// pending error such as a reset. Every read event wakes it; one that is not a hang-up is
    /// cleared (the next read then looks at the socket first, as data may wait there).
    async fn hung_up(&mut self) -> io::Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        // Set before waiting, so that a wait dropped half-way leaves it set too.
        self.unread_maybe = true;
        let fd = self.fd()?;
        std::future::poll_fn(|cx| {
            loop {
                let mut ready = std::task::ready!(fd.poll_read_ready(cx))?;
                let mut polled = [PollFd::new(fd.get_ref(), S::HANG_UP)];
                rustix::event::poll(&mut polled, Some(&Timespec::default()))?;
                if polled[0]
                    .revents()
                    .intersects(PollFlags::HUP | PollFlags::ERR | S::HANG_UP)
                {
                    return Poll::Ready(Ok(()));
                }
                ready.clear_ready();
            }
        })
        .await
    }

    const LINGERS: bool = S::LINGERS;

    async fn close(&mut self) {
        if S::LINGERS {
            self.linger().await;
        }
    }

    fn take_fds(&mut self) -> Option<Vec<OwnedFd>> {
        self.fds.as_mut()?.received.take()
    }

    /// Keeps `fds` for the next send, which passes them (`SCM_RIGHTS`) with its first byte.
    fn attach_fds(&mut self, fds: Vec<OwnedFd>) -> io::Result<()> {
        self.fds.get_or_insert_with(Box::default).outgoing = Some(fds);
        Ok(())
    }

    /// Reads and drops what the peer has sent and nobody will read (at most `limit` bytes,
    /// without waiting), before a close for an error. Closing a Unix socket with unread data
    /// makes the peer's reads fail with `ECONNRESET` once it has read what was sent to it; the
    /// replies are still there to read, but a simple client may give up at the error.
    fn discard_unread(&mut self, limit: usize) {
        if let Ok(fd) = self.fd() {
            drop_input(fd.get_ref(), limit);
        }
    }
}

/// What [`drop_input`] found.
enum Input {
    /// Nothing more has arrived for now, or the limit was reached.
    Waiting,
    /// The peer ended its side: nothing more can come.
    Ended,
    /// The connection was reset, or is gone.
    Gone,
}

/// Reads and drops what the peer has sent, without waiting, up to about `limit` bytes.
fn drop_input(socket: &impl AsFd, limit: usize) -> Input {
    let mut chunk = [MaybeUninit::<u8>::uninit(); SMALL_READ];
    let mut dropped = 0;
    while dropped < limit {
        match recv_uninit(socket, &mut chunk) {
            Ok([]) => return Input::Ended,
            Ok(got) => dropped += got.len(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Input::Waiting,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Input::Gone,
        }
    }
    Input::Waiting
}

/// Takes ownership of the descriptors systemd (or a predecessor) passed, once in the process's
/// life; `None` if they were taken before. Only for descriptors `sd_notify::listen_fds`
/// returned, which checks that `LISTEN_PID` is this process.
#[cfg(feature = "systemd")]
pub(crate) fn take_inherited(fds: &[std::os::fd::RawFd]) -> Option<Vec<OwnedFd>> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: by the socket activation protocol (LISTEN_PID names this process, checked by
    // sd_notify), each of `fds` is open and was handed to this process, and nothing else in
    // the process owns it; the `TAKEN` flag makes sure each becomes an owner only once.
    Some(
        fds.iter()
            .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect(),
    )
}

/// A socket type that owns its file descriptor for its whole life.
pub(crate) trait OwnedSocket: AsRawFd + AsFd {}
impl OwnedSocket for UnixStream {}
impl OwnedSocket for UnixListener {}
impl OwnedSocket for TcpStream {}
impl OwnedSocket for TcpListener {}

/// A connected stream socket a session can run over.
pub(crate) trait StreamSocket: OwnedSocket + Send + Sync + 'static {
    /// Whether a close can lose what was written: TCP drops what it has not sent when a socket
    /// closes with unread input (it resets the connection), so it lingers (see
    /// [`Connection::linger`]).
    const LINGERS: bool;

    /// What `poll` reports, beside `POLLHUP` and `POLLERR`, once the peer is gone: nothing
    /// more for a Unix stream, whose half-close shows only as the end of the stream;
    /// `POLLRDHUP` for TCP, where a peer that closed and one that only shut down its sending
    /// side look the same (both send a FIN).
    const HANG_UP: rustix::event::PollFlags;
}

impl StreamSocket for UnixStream {
    const LINGERS: bool = false;
    const HANG_UP: rustix::event::PollFlags = rustix::event::PollFlags::empty();
}

impl StreamSocket for TcpStream {
    const LINGERS: bool = true;
    const HANG_UP: rustix::event::PollFlags = rustix::event::PollFlags::RDHUP;
}

/// Most bytes a lingering close drops between two looks at the peer's progress.
const DISCARD_PER_PAUSE: usize = 256 * 1024;
/// Longest a closing TCP connection waits for its peer to take what was written.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// What the kernel still holds of what was written to `socket` (`SIOCOUTQ`: for TCP, what
/// the peer has not acknowledged yet).
pub(crate) fn unsent(socket: &impl AsRawFd) -> Option<usize> {
    let mut unread: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one `int` through the pointer, which points to a live one.
    let rc = unsafe { nix::libc::ioctl(socket.as_raw_fd(), nix::libc::TIOCOUTQ, &mut unread) };
    (rc == 0).then(|| usize::try_from(unread).unwrap_or(0))
}

/// Registers a socket with the runtime for `interest` only.
pub(crate) fn register<S: OwnedSocket>(socket: S, interest: Interest) -> io::Result<AsyncFd<S>> {
    // SAFETY: the std socket types own their descriptor: it stays open, and `as_raw_fd` returns
    // it, for as long as the value lives, which the `AsyncFd` owns until it is dropped or
    // `into_inner` gives it back.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| e.into_parts().1)
}

/// The registered socket, unless re-registering it failed.
fn registered<S: AsRawFd>(fd: &Option<AsyncFd<S>>) -> io::Result<&AsyncFd<S>> {
    fd.as_ref()
        .ok_or_else(|| io::Error::other("connection lost its runtime registration"))
}

/// One send on `stream` of what `buf` holds (vectored when it holds several chunks), without
/// waiting, passing the descriptors `fds` holds for it with its first byte; advances `buf`
/// past what went.
fn send_buf<B: Buf>(
    stream: &(impl AsRawFd + AsFd),
    fds: &mut Option<Box<FdPassing>>,
    buf: &mut B,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let count = buf.chunks_vectored(&mut slices);
    // MSG_NOSIGNAL: a peer that went away is an EPIPE error, never a SIGPIPE that kills an
    // application embedding the server without ignoring that signal.
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    let fd = stream.as_raw_fd();
    let written = match &slices[..count] {
        [] => 0,
        // Descriptors to pass with the first byte: rare, out of line.
        some if fds.as_ref().is_some_and(|f| f.outgoing.is_some()) => {
            send_attached(stream, some, fds)?
        }
        // The usual case (small replies coalesced); send(2) skips copying in an iovec.
        [one] => send(fd, one, flags)?,
        several => sendmsg::<UnixAddr>(fd, several, &[], flags, None)?,
    };
    buf.advance(written);
    Ok(written)
}

/// One `sendmsg` of `slices` with the descriptors `fds` holds for it (without waiting or
/// `SIGPIPE`, as the usual sends); once sent, the peer has its own copies and ours are closed.
#[cold]
#[inline(never)]
fn send_attached(
    stream: &impl AsFd,
    slices: &[IoSlice<'_>],
    fds: &mut Option<Box<FdPassing>>,
) -> io::Result<usize> {
    let Some(passing) = fds.as_deref_mut() else {
        return Ok(0);
    };
    let outgoing = passing.outgoing.as_deref().unwrap_or_default();
    let written = localipc_core::fds::send_with_fds(stream, slices, outgoing)?;
    passing.outgoing = None;
    Ok(written)
}

/// One non-blocking read from `stream` into `rbuf`, taking descriptors as `fds` says (none
/// unless the connection accepts them); returns the bytes read and how many were asked for.
#[inline(always)]
fn read_from(
    stream: &impl AsFd,
    fds: &mut Option<Box<FdPassing>>,
    rbuf: &mut BytesMut,
    expect: usize,
) -> io::Result<(usize, usize)> {
    match fds {
        Some(fds) if fds.cap > 0 => read_with_fds(stream, fds, rbuf, expect),
        _ => read_some(rbuf, expect, |buf| recv_uninit(stream, buf)),
    }
}

/// [`read_some`] with `recvmsg`, for a connection that accepts descriptors (kept out of the
/// usual read's code).
#[inline(never)]
fn read_with_fds(
    stream: &impl AsFd,
    fds: &mut FdPassing,
    rbuf: &mut BytesMut,
    expect: usize,
) -> io::Result<(usize, usize)> {
    let FdPassing { cap, received, .. } = fds;
    read_some(rbuf, expect, |buf| {
        recv_with_fds(stream, buf, *cap, received)
    })
}

/// One read into `rbuf` through `recv`: returns the bytes read and how many were asked for.
fn read_some(
    rbuf: &mut BytesMut,
    expect: usize,
    mut recv: impl FnMut(&mut [MaybeUninit<u8>]) -> io::Result<&mut [u8]>,
) -> io::Result<(usize, usize)> {
    if rbuf.is_empty() && expect <= SMALL_READ {
        // The common case, a new small message: read into a small stack buffer and keep only
        // what arrived, so an idle connection holds no large buffer.
        let mut chunk = [MaybeUninit::<u8>::uninit(); SMALL_READ];
        let got = recv(&mut chunk)?;
        rbuf.extend_from_slice(got);
        return Ok((got.len(), SMALL_READ));
    }
    // A large message is expected (the last one was), or part of a frame is waiting: read more
    // at once (what is expected, or doubling), up to a cap, straight into the buffer's spare
    // capacity. The buffer is only allocated now that there is data, so waiting costs nothing.
    let want = if rbuf.is_empty() {
        expect
    } else {
        READ_CHUNK.max(rbuf.len())
    };
    rbuf.reserve(want.min(MAX_READ));
    let spare = rbuf.spare_capacity_mut();
    let asked = spare.len();
    let n = recv(spare)?.len();
    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity (it returns the
    // part of the buffer it filled).
    unsafe { rbuf.set_len(rbuf.len() + n) };
    Ok((n, asked))
}

/// `recvmsg(2)` without waiting, taking the descriptors that come with the bytes (with
/// `MSG_CMSG_CLOEXEC`, so none leaks into a child process) into `received`, as owned
/// descriptors from the moment they are received. More than `cap`, or a control message the
/// kernel truncated, is an [`FdError`], and every descriptor received is closed.
fn recv_with_fds<'b>(
    stream: &impl AsFd,
    buf: &'b mut [MaybeUninit<u8>],
    cap: usize,
    received: &mut Option<Vec<OwnedFd>>,
) -> io::Result<&'b mut [u8]> {
    use localipc_core::fds::RecvFdsError;
    // recvmsg takes initialised memory: a cost only connections that accept descriptors pay.
    buf.fill(MaybeUninit::new(0));
    // SAFETY: every byte of `buf` was initialised just above, and `MaybeUninit<u8>` has the
    // layout of `u8`.
    let buf: &'b mut [u8] = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [u8]) };
    let (n, fds) = localipc_core::fds::recv_with_fds(stream, buf, cap).map_err(|e| match e {
        RecvFdsError::TooMany { got, max } => FdError::TooMany { got, max }.into(),
        RecvFdsError::Truncated => FdError::Truncated.into(),
        RecvFdsError::Io(e) => e,
        other => io::Error::other(other),
    })?;
    // Descriptors with no bytes (at the end of the stream) belong to nothing: closed here.
    *received = (!fds.is_empty() && n > 0).then_some(fds);
    Ok(&mut buf[..n])
}

/// `recv(2)` without waiting into memory that need not be initialised (zero-filling it first
/// would cost as much as the read); returns the part the kernel filled.
fn recv_uninit<'b>(stream: &impl AsFd, buf: &'b mut [MaybeUninit<u8>]) -> io::Result<&'b mut [u8]> {
    let ((filled, _rest), _len) = rustix::net::recv(stream, buf, rustix::net::RecvFlags::DONTWAIT)?;
    Ok(filled)
}

/// Sets whether the kernel lets peers send file descriptors to `listener`'s connections
/// (`SO_PASSRIGHTS`, Linux 6.16 and later, inherited by every accepted socket). Off, a peer's
/// `sendmsg` carrying `SCM_RIGHTS` fails with `EPERM`, so no descriptor is ever queued for the
/// server. Returns `false` on an older kernel, which has no such option and always lets them
/// through; there, with descriptors not accepted, one sent is dropped by the kernel unread,
/// since the server then reads with `recv`, which takes no control messages, and is never
/// installed in the server.
pub(crate) fn pass_rights(listener: &impl AsRawFd, on: bool) -> io::Result<bool> {
    /// Not in the `libc` crate yet: `include/uapi/asm-generic/socket.h`.
    const SO_PASSRIGHTS: nix::libc::c_int = 83;
    let value: nix::libc::c_int = on.into();
    // SAFETY: `value` is a valid `c_int` for the duration of the call, and its size is the
    // length passed; the kernel only reads it.
    let rc = unsafe {
        nix::libc::setsockopt(
            listener.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            SO_PASSRIGHTS,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of_val(&value) as nix::libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(nix::libc::ENOPROTOOPT) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The supplementary groups of the process at the other end of `stream` (`SO_PEERGROUPS`,
/// which neither nix nor rustix wraps); empty on a kernel older than 4.13, which has no such
/// option.
fn peer_groups(stream: &UnixStream) -> io::Result<std::sync::Arc<[u32]>> {
    use nix::libc::{ENOPROTOOPT, ERANGE, SO_PEERGROUPS, SOL_SOCKET, gid_t, socklen_t};
    const GID: usize = std::mem::size_of::<gid_t>();
    let get = |buf: &mut [gid_t]| -> Result<usize, (io::Error, usize)> {
        let mut len = std::mem::size_of_val(buf) as socklen_t;
        // SAFETY: `buf` is valid for writes of `len` bytes, which the kernel writes at most;
        // it sets `len` to the bytes written (or, with ERANGE, to the bytes needed).
        let rc = unsafe {
            nix::libc::getsockopt(
                stream.as_raw_fd(),
                SOL_SOCKET,
                SO_PEERGROUPS,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / GID;
        if rc == 0 {
            Ok(count.min(buf.len()))
        } else {
            Err((io::Error::last_os_error(), count))
        }
    };
    // Most processes have a few groups: they are read on the stack, and only a longer list is
    // asked for again, at its size (at most NGROUPS_MAX, 65,536).
    let mut few = [0 as gid_t; 32];
    let needed = match get(&mut few) {
        Ok(count) => return Ok(std::sync::Arc::from(&few[..count])),
        Err((e, _)) if e.raw_os_error() == Some(ENOPROTOOPT) => {
            return Ok(std::sync::Arc::from([]));
        }
        Err((e, needed)) if e.raw_os_error() == Some(ERANGE) && needed <= 65_536 => needed,
        Err((e, _)) => return Err(e),
    };
    let mut many = vec![0 as gid_t; needed];
    let count = get(&mut many).map_err(|(e, _)| e)?;
    many.truncate(count);
    Ok(std::sync::Arc::from(many))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A connection and its peer; the peer's blocking calls give up after a while, so a test
    /// fails instead of hanging.
    fn pair() -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        theirs
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        theirs
            .set_write_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        (Connection::new(ours).unwrap(), theirs)
    }

    /// Runs `f` with a deadline, so a regression fails instead of hanging.
    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(10), f)
            .await
            .expect("took longer than 10 s")
    }

    #[tokio::test]
    async fn reads_small_messages_then_the_end_of_stream() {
        let (mut conn, mut peer) = pair();
        let mut rbuf = BytesMut::new();
        peer.write_all(b"one\n").unwrap();
        assert_eq!(within(conn.read(&mut rbuf, 0)).await.unwrap(), 4);
        peer.write_all(b"two\n").unwrap();
        assert_eq!(within(conn.read(&mut rbuf, 0)).await.unwrap(), 4);
        assert_eq!(&rbuf[..], b"one\ntwo\n");
        drop(peer);
        assert_eq!(within(conn.read(&mut rbuf, 0)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_expected_large_message_comes_in_one_read() {
        let (mut conn, mut peer) = pair();
        // Two of these fit in a Unix socket's default buffer (about 200 KB).
        let message = vec![7u8; 40_000];
        peer.write_all(&message).unwrap();
        let mut rbuf = BytesMut::new();
        // Nothing expected: a small read first.
        assert_eq!(within(conn.read(&mut rbuf, 0)).await.unwrap(), SMALL_READ);
        peer.write_all(&message).unwrap();
        let mut rbuf = BytesMut::new();
        let rest = 2 * message.len() - SMALL_READ;
        // The rest of the first and all of the second, at once.
        assert_eq!(within(conn.read(&mut rbuf, rest)).await.unwrap(), rest);
    }

    #[tokio::test]
    async fn a_large_frame_arrives_whole_across_reads() {
        let (mut conn, mut peer) = pair();
        let sent: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writer = std::thread::spawn(move || peer.write_all(&sent).unwrap());
        let mut rbuf = BytesMut::new();
        while rbuf.len() < expected.len() {
            assert!(within(conn.read(&mut rbuf, 0)).await.unwrap() > 0);
        }
        writer.join().unwrap();
        assert!(rbuf[..] == expected[..]);
    }

    /// Writes all of `buf`, waiting for room as the session does.
    async fn write_all(conn: &mut Connection, mut buf: &[u8]) {
        while !buf.is_empty() {
            assert!(within(conn.write_buf(&mut buf)).await.unwrap() > 0);
        }
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_buffer_waits_for_the_peer() {
        let (mut conn, mut peer) = pair();
        let sent: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
        // Nobody reads yet: the socket buffer fills and the write is refused.
        let mut written = 0;
        loop {
            match conn.try_write_buf(&mut &sent[written..]) {
                Ok(n) => written += n,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
        }
        assert!(written < sent.len());
        assert!(!conn.writable, "no write readiness until a write blocks");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        write_all(&mut conn, &sent[written..]).await;
        assert!(
            conn.writable,
            "write readiness was added to the registration"
        );
        drop(conn);
        assert!(reader.join().unwrap() == sent);
    }

    #[tokio::test]
    async fn writing_to_a_closed_peer_is_a_broken_pipe_error() {
        let (mut conn, peer) = pair();
        drop(peer);
        let e = conn.try_write_buf(&mut &b"reply\n"[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn reports_the_peer_credentials() {
        let (conn, _peer) = pair();
        let peer = conn.peer_credentials().unwrap();
        assert_eq!(peer.uid, nix::unistd::getuid().as_raw());
        let mut mine: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        let mut theirs = peer.groups.to_vec();
        mine.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(
            theirs, mine,
            "the supplementary groups, as getgroups(2) says"
        );
        assert_eq!(peer.pid, Some(std::process::id() as i32));
    }
}
