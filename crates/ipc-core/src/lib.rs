//! Shared pieces of the workspace: the [`Handler`] trait, the built-in handlers, the wire framing
//! and the default socket path.
//!
//! This crate has no sockets and no signals; `ipc-server` and `ipc-client` own those. Writing a
//! handler takes a few lines:
//!
//! ```
//! use bytes::Bytes;
//! use localipc_core::{BoxError, Context, Handler, Response};
//!
//! /// Replies with the request in upper case.
//! struct Upper;
//!
//! impl Handler for Upper {
//!     async fn handle(&self, request: Bytes, _ctx: &Context) -> Result<Response, BoxError> {
//!         Ok(request.to_ascii_uppercase().into())
//!     }
//! }
//! # let ctx = Context::new(1, localipc_core::PeerCredentials::new(1000, 1000, None));
//! # let reply = futures::executor::block_on(Upper.handle(Bytes::from_static(b"hi"), &ctx)).unwrap();
//! # assert_eq!(reply.reply().unwrap(), "HI");
//! ```
#![deny(missing_docs)]

pub mod adapt;
pub mod boxed;
pub mod counters;
pub mod framing;
pub mod handler;
pub mod handlers;
pub mod path;
pub mod response;
#[cfg(feature = "tower")]
pub mod tower;
pub mod trigger;

pub use adapt::{HandlerExt, Inspect};
pub use boxed::{BoxError, BoxFuture};
pub use counters::ServerCounters;
pub use framing::{DEFAULT_MAX_FRAME, FrameCodec, FrameError, Framing, RAW_READ};
pub use handler::{BoxHandler, Context, Handler, HandlerFn, PeerCredentials, handler_fn};
pub use handlers::{Ack, DEFAULT_ACK_TEXT, Echo};
pub use path::{
    FileKind, MAX_PATH_LEN, PathState, SOCKET_ENV, abstract_name, default_socket_dir,
    default_socket_path, probe,
};
pub use response::{ReplyStream, Response};
pub use trigger::{Fired, Trigger};
