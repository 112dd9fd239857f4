//! An async client for `ipc-server`: connect to a Unix domain socket, send messages, read the
//! replies.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("demo.sock");
//! # let server = localipc_server::Server::builder(localipc_core::Echo).socket(&path).bind()?;
//! # let handle = server.handle();
//! # tokio::spawn(server.serve(std::future::pending()));
//! // With an echo server at `path`:
//! // one message, one reply, connection closed...
//! let reply = localipc_client::send(&path, "hello").await?;
//! assert_eq!(reply, "hello");
//!
//! // ...or many exchanges on one connection, one at a time or as a pipelined batch.
//! let mut client = localipc_client::Client::connect(&path).await?;
//! assert_eq!(client.request("one").await?, "one");
//! let replies = client.pipeline(["two", "three"]).await?;
//! assert_eq!(replies, ["two", "three"]);
//! # handle.shutdown();
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod channel;
pub mod client;
pub mod error;
mod runtime;

pub use bytes::Bytes;
pub use channel::Channel;
pub use client::{
    Client, ClientOptions, DEFAULT_RAW_QUIET, DEFAULT_TIMEOUT, connect_socket, send, send_with,
    within,
};
pub use error::{ClientError, PipelineError};
pub use localipc_core::{Framing, MAX_PATH_LEN, default_socket_path};
