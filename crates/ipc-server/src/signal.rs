//! SIGINT and SIGTERM as a stream of shutdown requests, for binaries that embed the server.
//!
//! Create [`ShutdownSignals`] early: a signal is only caught once its handler is installed.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Listens for SIGINT (Ctrl-C) and SIGTERM.
#[derive(Debug)]
pub struct ShutdownSignals {
    int: Signal,
    term: Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The handlers could not be installed.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
