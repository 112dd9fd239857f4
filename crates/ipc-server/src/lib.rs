//! A Unix domain socket server that answers every message with a [`Handler`].
//!
//! It owns the socket file's whole life (stale-socket reclaim, permissions set before anyone can
//! connect, removal on exit), runs one task per connection with replies in order, enforces limits
//! on frames, connections and idle time, checks peer credentials, and shuts down gracefully.
//!
//! ```
//! use localipc_core::Echo;
//! use localipc_server::Server;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("demo.sock");
//! let server = Server::builder(Echo).socket(&path).bind()?;
//! let handle = server.handle();
//! let serving = tokio::spawn(server.serve(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }));
//!
//! // Any client that writes lines gets them back.
//! let mut conn = tokio::net::UnixStream::connect(&path).await?;
//! conn.write_all(b"hello\n").await?;
//! let mut reply = [0; 6];
//! conn.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"hello\n");
//!
//! handle.shutdown(); // or Ctrl-C
//! serving.await??;
//! assert!(!path.exists(), "the socket file is gone");
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`config`] (settings and their defaults), `socket_file` (the path on disk),
//! `listener` (accept loop and limits), `conn` (an accepted socket's registration and I/O),
//! `transport` (the seam a session runs over), `session` (one connection: its read side, its
//! write side, handler calls, streams), [`server`] (the public entry
//! point and shutdown), [`signal`] (SIGINT/SIGTERM for binaries), [`error`].
#![deny(missing_docs)]

pub mod access;
#[cfg(feature = "systemd")]
pub mod activation;
pub mod address;
mod builder;
pub mod config;
// The one place allowed `unsafe`: registering sockets with the runtime, reads into
// uninitialised memory, and taking a descriptor systemd passed.
#[allow(unsafe_code)]
mod conn;
pub mod error;
mod limit;
mod listener;
pub mod server;
mod session;
pub mod signal;
mod socket_file;
mod transport;

pub use access::AccessPolicy;
pub use address::ListenAddress;
pub use builder::Builder;
pub use bytes::Bytes;
pub use config::ServerConfig;
pub use error::ServerError;
#[cfg(feature = "tower")]
pub use localipc_core::tower;
pub use localipc_core::{
    Ack, BoxError, BoxHandler, Context, Echo, Framing, Handler, HandlerExt, PeerCredentials,
    ReplyStream, Response, ServerCounters, default_socket_path, handler_fn,
};
pub use server::{Server, ShutdownHandle};
