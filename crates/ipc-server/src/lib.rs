//! A Unix domain socket server that answers every message with a [`Handler`].
//!
//! It owns the socket file's whole life (stale-socket reclaim, permissions set before anyone can
//! connect, removal on exit), runs one task per connection with replies in order, enforces limits
//! on frames, connections and idle time, checks peer credentials, and shuts down gracefully.
//!
//! ```no_run
//! use ipc_core::Echo;
//! use ipc_server::Server;
//!
//! # async fn run() -> Result<(), ipc_server::ServerError> {
//! let server = Server::builder(Echo).socket("/tmp/demo.sock").bind()?;
//! server
//!     .serve(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`config`] (settings and their defaults), [`socket_file`] (the path on disk),
//! `listener` (accept loop and limits), `session` (one connection), [`server`] (the public entry
//! point and shutdown), [`signal`] (SIGINT/SIGTERM for binaries), [`error`].
#![deny(missing_docs)]

pub mod access;
mod builder;
pub mod config;
pub mod error;
mod listener;
pub mod server;
mod session;
pub mod signal;
pub mod socket_file;

pub use access::AccessPolicy;
pub use builder::Builder;
pub use config::ServerConfig;
pub use error::ServerError;
pub use ipc_core::{Ack, Context, Echo, Framing, Handler, PeerCredentials};
pub use server::{Server, ShutdownHandle};
