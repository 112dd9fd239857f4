#![doc = include_str!("../README.md")]
//!
//! - Server: describe an [`Interface`] in the Varlink IDL, implement its methods as async
//!   functions of typed parameters, put interfaces in a [`Service`] and give that to
//!   `localipc_server::Server` with [`localipc_core::Framing::Nul`]. The service serves
//!   `org.varlink.service` itself, and `io.ipc.Server` (`Stats`, `Monitor`) if asked to.
//! - Client: [`VarlinkClient`] makes typed calls, streamed calls, one-way and pipelined calls,
//!   and reads the service's descriptions.
//!
//! - Generated code: `localipc-varlink-codegen` turns a `.varlink` file into types, a server
//!   trait and typed clients at build time ([`include_interface!`]); they build on
//!   [`DeclaredError`], [`MethodError`] and [`TypedCallError`]. The service's own interfaces
//!   are generated so ([`interfaces`]).
//!
//! Modules: `wire` (the JSON messages), `idl` (descriptions, parameter checks), `method`
//! (typed methods behind one trait), `service` (dispatch), `standard` (the service's own
//! interfaces), `observe` (counters and events), `messages` (the built-in server's interface),
//! `typed` (what generated code builds on), `client`.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
mod client;
mod error;
mod idl;
mod interface;
mod messages;
mod method;
mod observe;
mod policy;
mod service;
mod standard;
mod typed;
mod wire;

pub use client::{DEFAULT_MAX_MESSAGE, Info, ReplyStream, VarlinkClient};
pub use error::{BuildError, CallError, SERVICE_INTERFACE, VarlinkError};
pub use idl::Description;
pub use interface::Interface;
/// What a method is told of its call: who called, on which connection.
pub use localipc_core::Context;
pub use messages::{MESSAGES_IDL, messages_interface};
pub use method::More;
pub use observe::DEFAULT_MONITOR_BACKLOG;
pub use policy::Policy;
pub use service::{Service, ServiceBuilder};
pub use standard::{SERVER_IDL, SHUTTING_DOWN, STREAM_ENDED};
pub use typed::{DeclaredError, MethodError, TypedCallError};
pub use wire::MIN_MAX_MESSAGE;

use serde::{Deserialize, Serialize};

/// Includes the code a build script generated for the interface `$name` with
/// `localipc_varlink_codegen::Generator::write`: `include_interface!("org.example.counter")`,
/// usually as the body of a module of its own.
#[macro_export]
macro_rules! include_interface {
    ($name:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $name, ".rs"));
    };
}

/// The interfaces every service of this crate can serve, as generated from their
/// descriptions: their types, errors, server traits and typed clients.
pub mod interfaces {
    /// `org.varlink.service`, which every Varlink service serves.
    pub mod service {
        crate::include_interface!("org.varlink.service");
    }
    /// `io.ipc.Server`: the server's counters and live events
    /// ([`ServiceBuilder::server_interface`](crate::ServiceBuilder)).
    pub mod server {
        crate::include_interface!("io.ipc.Server");
    }
    /// `io.ipc.Messages`: the built-in server's messages as typed calls.
    pub mod messages {
        crate::include_interface!("io.ipc.Messages");
    }
}

/// What generated code names, so that a crate using it needs no dependency of its own on
/// them. Not a stable API: only generated code may use it.
#[doc(hidden)]
pub mod __private {
    pub use futures;
    pub use serde;
    pub use serde_json;
}

/// No parameters: decodes from any object (and from omitted or `null` parameters, which the
/// service turns into `{}`), encodes as `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}
