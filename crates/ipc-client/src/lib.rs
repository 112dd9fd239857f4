//! An async client for `ipc-server`: connect to a Unix domain socket, send messages, read the
//! replies.
//!
//! ```no_run
//! # async fn run() -> Result<(), ipc_client::ClientError> {
//! // One message, one reply, connection closed.
//! let reply = ipc_client::send("/tmp/demo.sock", "hello").await?;
//! assert_eq!(reply, "hello");
//!
//! // Many exchanges on one connection.
//! let mut client = ipc_client::Client::connect("/tmp/demo.sock").await?;
//! let a = client.request("one").await?;
//! let replies = client.pipeline(["two", "three"]).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod client;
pub mod error;

pub use client::{Client, ClientOptions, DEFAULT_TIMEOUT, send, send_with};
pub use error::ClientError;
pub use ipc_core::Framing;
