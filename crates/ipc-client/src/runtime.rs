//! What the client needs of the Tokio runtime it runs on, checked before use so that a
//! runtime built without a driver gives an error instead of a panic deep inside a call.
//!
//! The client needs a Tokio runtime with its I/O driver (`enable_io`), and, whenever a time
//! limit is set or raw framing is used, its time driver too (`enable_time`);
//! `Builder::enable_all` or `#[tokio::main]` give both.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::error::ClientError;

/// Checks that the current runtime can run a client, and keep time if `limit` is set.
///
/// # Errors
///
/// [`ClientError::Runtime`] with what is missing.
pub(crate) fn check(limit: Option<Duration>) -> Result<(), ClientError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ClientError::Runtime(
            "it must run inside a Tokio runtime (#[tokio::main], or Runtime::block_on)",
        ));
    }
    if let Some(limit) = limit {
        // Tokio has no query for its time driver: making a timer panics without one, at once
        // and before anything is registered, so the attempt is the question.
        if catch_unwind(AssertUnwindSafe(|| drop(tokio::time::sleep(limit)))).is_err() {
            return Err(ClientError::Runtime(
                "a time limit needs the runtime's timers (Builder::enable_time or enable_all)",
            ));
        }
    }
    Ok(())
}

/// Runs `io`, the first use of the runtime's I/O driver (registering a new socket), turning the
/// panic Tokio raises on a runtime without that driver into [`ClientError::Runtime`]. Tokio has
/// no query for its I/O driver either; registering panics at once, before anything is
/// registered, and prints its own panic message once.
///
/// # Errors
///
/// [`ClientError::Runtime`] when the runtime has no I/O driver.
pub(crate) async fn with_io<F: Future>(io: F) -> Result<F::Output, ClientError> {
    use futures::FutureExt;
    AssertUnwindSafe(io).catch_unwind().await.map_err(|_| {
        ClientError::Runtime(
            "the client needs the runtime's I/O driver (Builder::enable_io or enable_all)",
        )
    })
}
