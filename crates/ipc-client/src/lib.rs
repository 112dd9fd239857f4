#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
pub mod channel;
pub mod client;
pub mod connect;
pub mod error;
mod runtime;
pub mod tcp;

pub use bytes::Bytes;
pub use channel::{Channel, MAX_FDS_PER_MESSAGE};
pub use client::{
    Client, ClientOptions, DEFAULT_RAW_QUIET, DEFAULT_TIMEOUT, send, send_with, within,
};
pub use connect::{Connection, SSH_ENV, connect, connect_socket, connect_tcp, connect_to};
pub use error::{ClientError, PipelineError};
pub use localipc_core::{Address, AddressError, Framing, MAX_PATH_LEN, default_socket_path};
pub use tcp::TcpOptions;
