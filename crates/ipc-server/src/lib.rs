#![doc = include_str!("../README.md")]
//!
//! Modules: [`config`] (settings and their defaults), `socket_file` (the path on disk),
//! `listener` (accept loop and limits), `conn` (an accepted socket's registration and I/O),
//! `transport` (the seam a session runs over), `session` (one connection: its read side, its
//! write side, handler calls, streams), [`server`] (the public entry
//! point and shutdown), [`signal`] (SIGINT/SIGTERM for binaries), `activation` (systemd and
//! what a predecessor passes) and `handover` (a seamless restart), with the `systemd`
//! feature, [`error`].
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod access;
#[cfg(feature = "systemd")]
pub mod activation;
pub mod address;
mod builder;
pub mod config;
pub mod endpoint;
// The one place allowed `unsafe`: registering sockets with the runtime, reads into
// uninitialised memory, and taking a descriptor systemd passed.
#[allow(unsafe_code)]
mod conn;
pub mod error;
#[cfg(feature = "systemd")]
pub mod handover;
mod limit;
mod listener;
pub mod server;
mod session;
pub mod signal;
mod socket_file;
pub mod tls;
mod transport;

pub use access::AccessPolicy;
pub use address::ListenAddress;
pub use builder::Builder;
pub use bytes::Bytes;
pub use config::ServerConfig;
pub use endpoint::Endpoint;
pub use error::ServerError;
#[cfg(feature = "tower")]
pub use localipc_core::tower;
pub use localipc_core::{
    Ack, BoxError, BoxHandler, CertificateIdentity, CertificateName, Context, Echo, Framing,
    Handler, HandlerExt, Peer, PeerCredentials, ReplyStream, Response, ServerCounters,
    default_socket_path, handler_fn,
};
pub use server::{Server, ShutdownHandle};
pub use tls::{ClientAuth, TlsSettings};
