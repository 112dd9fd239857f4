//! The boxed types that handlers, wrappers and adapters share: any error, any future.

use std::future::Future;
use std::pin::Pin;

/// The error a handler may return: any error type, boxed. Returning one ends that connection
/// (the server logs it at `warn`); other connections are not affected.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed future, as a [`BoxHandler`](crate::BoxHandler) or a `tower` adapter returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
