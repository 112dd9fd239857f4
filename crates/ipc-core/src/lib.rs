#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adapt;
pub mod address;
pub mod boxed;
pub mod counters;
pub mod fds;
pub mod framing;
pub mod handler;
pub mod handlers;
pub mod path;
pub mod peer;
pub mod pem;
pub mod response;
#[cfg(feature = "tower")]
pub mod tower;
pub mod trigger;

pub use adapt::{HandlerExt, Inspect};
pub use address::{Address, AddressError};
pub use boxed::{BoxError, BoxFuture};
pub use counters::ServerCounters;
pub use fds::{FdBinder, MidMessage, PushFdError};
pub use framing::{DEFAULT_MAX_FRAME, FrameCodec, FrameError, Framing, RAW_READ};
pub use handler::{BoxHandler, Context, Handler, HandlerFn, handler_fn};
pub use handlers::{Ack, DEFAULT_ACK_TEXT, Echo};
pub use path::{
    FileKind, MAX_PATH_LEN, PathState, SOCKET_ENV, abstract_name, default_socket_dir,
    default_socket_path, probe,
};
pub use peer::{
    CertificateIdentity, CertificateName, CertificateNameError, Fingerprint, Peer, PeerCredentials,
};
pub use response::{ReplyStream, Response};
pub use trigger::{Fired, Trigger};
