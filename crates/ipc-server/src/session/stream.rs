//! Sending the replies of one stream, while watching the peer.
//!
//! A stream may stay quiet for a long time (a subscription), so while it waits for its next
//! item the session keeps an eye on the socket: bytes that arrive are pipelined requests, kept
//! (up to [`READ_AHEAD`](super::inbox::READ_AHEAD)) for after the stream; a peer that shuts
//! down only its sending side may still read, so its stream goes on; a peer that hangs up or
//! resets the connection ends the stream and the session at once, which frees its connection
//! slot and runs the `disconnected` hook without waiting for the stream's next item.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;

use futures::{FutureExt, StreamExt};
use localipc_core::{Context, ReplyStream, Trigger};

use super::call::{Caught, settle};
use super::error::SessionError;
use super::inbox::Inbox;
use super::outbox::Outbox;
use super::write::write_out;
use super::{push_reply, stop_requested};
use crate::config::ServerConfig;
use crate::transport::Transport;

/// Queues and writes the replies of one stream until it ends. Replies that are ready together
/// leave in one write; while the peer does not read, the stream is not polled. At shutdown the
/// stream is dropped between two replies and its farewell message, if any, is its last reply.
/// A panic inside the stream is caught and ends the connection, as a handler panic does.
/// With the call's own context `own`, each reply carries the descriptors pushed before it.
///
/// Boxed: streams are rare, and inline their state would enlarge every session's future.
pub(super) fn stream_out<'a>(
    conn: &'a mut impl Transport,
    inbox: &'a mut Inbox,
    config: &'a ServerConfig,
    outbox: &'a mut Outbox,
    (mut stream, own): (ReplyStream, Option<Context>),
    shutdown: &'a Trigger,
) -> Pin<Box<impl Future<Output = Result<(), SessionError>> + Send + 'a>> {
    let idle_timeout = config.idle_timeout;
    Box::pin(async move {
        loop {
            if shutdown.is_fired() {
                if let Some(last) = stream.take_farewell() {
                    push_reply(outbox, last, own.as_ref())?;
                }
                return Ok(());
            }
            let next = AssertUnwindSafe(stream.next()).catch_unwind();
            tokio::pin!(next);
            let item = match futures::poll!(next.as_mut()) {
                Poll::Ready(item) => item,
                Poll::Pending => {
                    // Nothing more is ready: send what is queued, then wait for the stream
                    // while watching the peer.
                    write_out(conn, idle_timeout, outbox).await?;
                    match wait_for_item(conn, inbox, config, next, shutdown).await? {
                        Some(item) => item,
                        None => continue,
                    }
                }
            };
            let item: Caught<_> = item.map(|item| item.transpose());
            match settle(item)? {
                Some(reply) => {
                    push_reply(outbox, reply, own.as_ref())?;
                    if outbox.should_write() {
                        write_out(conn, idle_timeout, outbox).await?;
                    }
                }
                None => return Ok(()),
            }
        }
    })
}

/// The stream's next item, or `None` at shutdown; [`SessionError::HungUp`] if the peer hangs
/// up first.
async fn wait_for_item<F: Future + Unpin>(
    conn: &mut impl Transport,
    inbox: &mut Inbox,
    config: &ServerConfig,
    mut next: F,
    shutdown: &Trigger,
) -> Result<Option<F::Output>, SessionError> {
    loop {
        // Reads while there is room for pipelined requests; past that (or once the peer has
        // ended its side), waits for the hang-up alone.
        let watch = async {
            if inbox.reads_ahead() {
                inbox.fill(conn, config).await.map(|_| false)
            } else {
                Ok(conn.hung_up().await.map(|()| true)?)
            }
        };
        tokio::select! {
            biased;
            () = stop_requested(shutdown) => return Ok(None),
            item = &mut next => return Ok(Some(item)),
            hung_up = watch => {
                if hung_up? {
                    return Err(SessionError::HungUp);
                }
            }
        }
    }
}
