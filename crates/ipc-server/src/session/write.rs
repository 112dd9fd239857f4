//! Writing the outbox: at once while the socket has room, and otherwise waiting for the peer,
//! which is given up on only when it takes nothing for the idle timeout.
//!
//! A peer that reads slowly but steadily is not a stalled one. Waiting for the socket to be
//! reported writable is no measure of that: Linux reports a Unix socket writable only once most
//! of its send buffer has drained, which a slow reader may take longer than the idle timeout to
//! do while it takes bytes all along. So while a write waits, the session looks, a few times
//! per idle timeout, at how much the peer has left unread ([`Transport::unread_by_peer`]), and
//! each time that has gone down, the peer has made progress and the wait starts over.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use super::error::SessionError;
use super::outbox::Outbox;
use crate::transport::Transport;

/// How many times per idle timeout a waiting write looks at the peer's progress.
const PROGRESS_CHECKS: u32 = 4;

/// Writes every queued reply. With an idle timeout, a peer that takes nothing for that long is
/// given up on; one that keeps taking bytes, however slowly, is not.
pub(super) async fn write_out(
    conn: &mut impl Transport,
    idle_timeout: Option<Duration>,
    outbox: &mut Outbox,
) -> Result<(), SessionError> {
    while !outbox.is_empty() {
        // A reply with descriptors starts this write; they go with its first byte.
        if outbox.has_fds() {
            attach_due_fds(conn, outbox)?;
        }
        // Fast path, with no timer: the socket buffer usually has room.
        match conn.try_write_buf(outbox) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        // The socket is full: wait for the peer to take something. Boxed, as the timer it
        // needs would otherwise enlarge every session's future, for a wait most never make.
        Box::pin(wait_for_room(conn, idle_timeout, outbox)).await?;
    }
    Ok(())
}

/// Hands the transport the descriptors of the reply whose first byte is written next, if it
/// has any (out of line: only servers that send descriptors get here).
#[cold]
#[inline(never)]
fn attach_due_fds(conn: &mut impl Transport, outbox: &mut Outbox) -> io::Result<()> {
    match outbox.take_due_fds() {
        Some(fds) => conn.attach_fds(fds),
        None => Ok(()),
    }
}

/// Waits until the socket takes more of `outbox`, writing what it can then; with an idle
/// timeout, a peer that takes nothing for that long is given up on.
async fn wait_for_room(
    conn: &mut impl Transport,
    idle_timeout: Option<Duration>,
    outbox: &mut Outbox,
) -> Result<(), SessionError> {
    let written = match idle_timeout {
        None => conn.write_buf(outbox).await,
        Some(limit) => {
            let check = (limit / PROGRESS_CHECKS).max(Duration::from_millis(1));
            let mut unread = conn.unread_by_peer();
            let mut progress = Instant::now();
            loop {
                match tokio::time::timeout(check, conn.write_buf(outbox)).await {
                    Ok(written) => break written,
                    Err(_) => {
                        let now = conn.unread_by_peer();
                        if matches!((now, unread), (Some(now), Some(before)) if now < before) {
                            progress = Instant::now();
                        }
                        unread = now;
                        if progress.elapsed() >= limit {
                            return Err(SessionError::WriteStalled(limit));
                        }
                    }
                }
            }
        }
    };
    match written {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e.into()),
    }
}
