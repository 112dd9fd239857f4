//! Server settings, their defaults and their validation. Every limit here has a flag in the
//! binary and a line in the README.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use localipc_core::{DEFAULT_MAX_FRAME, Framing, ServerCounters};

use crate::access::AccessPolicy;
use crate::endpoint::Endpoint;
use crate::error::ServerError;
pub use crate::tls::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::tls::TlsSettings;

/// Default cap on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default cap on open connections of one peer uid, when it is below three quarters of the
/// global cap (see [`ServerConfig::connections_per_uid`]).
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 128;
/// Default budget for bytes held in unfinished messages across all connections: 32 MiB, well
/// below the default connection cap times the default maximum message (1 GiB), and low enough
/// that a server under a 256 MiB address-space limit keeps room for everything else (each
/// runtime thread's C allocator arena alone reserves 64 MiB of address space).
pub const DEFAULT_UNFINISHED_BUDGET: usize = 32 * 1024 * 1024;
/// Default time a connection may go without sending a complete frame.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest time one handler call may take before its connection is closed.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of requests of one connection handled at once: one after another.
pub const DEFAULT_CONCURRENCY: usize = 1;
/// Most requests of one connection that may be handled at once.
pub const MAX_CONCURRENCY: usize = 1024;
/// Default time connections get to finish after shutdown begins.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on descriptors accepted with one message (as dbus-daemon's).
pub const DEFAULT_MAX_FDS_PER_MESSAGE: usize = 16;
pub use localipc_core::fds::MAX_FDS_PER_MESSAGE;
/// Default permission bits of the socket file: owner read and write only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// Everything the server needs to know besides its handler and its listening socket. Usually
/// filled in through [`crate::Builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where the socket file lives.
    pub socket_path: PathBuf,
    /// How messages are delimited.
    pub framing: Framing,
    /// Largest message accepted or sent, in bytes.
    pub max_frame: usize,
    /// Most connections open at once; at the limit the server stops accepting (the kernel's
    /// backlog queues the rest) until one closes.
    pub max_connections: usize,
    /// Most connections open at once from one peer: one uid (its `SO_PEERCRED` uid) on a Unix
    /// socket, one client certificate (by fingerprint) on TCP with TLS, one client IP address
    /// for anonymous TCP peers. One more is closed as soon as its peer is known, with a log
    /// line naming it. `None` takes
    /// [`DEFAULT_MAX_CONNECTIONS_PER_UID`], or three quarters of `max_connections` if that is
    /// less, so that no one uid can hold every slot (see
    /// [`connections_per_uid`](Self::connections_per_uid)).
    pub max_connections_per_uid: Option<usize>,
    /// Most bytes the server holds, across all connections, for messages that have not
    /// arrived whole (each connection's first 16 KiB are not counted). A connection whose
    /// unfinished message would take the total past it is closed (after the replies already
    /// made), so peers sending large messages slowly cannot exhaust the server's memory; a
    /// message larger than this can never be received.
    pub unfinished_budget: usize,
    /// A connection that sends no complete frame for this long, or does not take its replies for
    /// this long, is closed. `None` never closes idle connections.
    pub idle_timeout: Option<Duration>,
    /// A handler call that takes longer than this ends its connection (after the replies to
    /// the requests before it are written). `None` lets a call take as long as it likes.
    /// During shutdown, calls still running are also bounded by
    /// [`shutdown_timeout`](Self::shutdown_timeout).
    pub request_timeout: Option<Duration>,
    /// Most requests of one connection handled at once. `1` handles them one after another;
    /// above that, a connection's requests overlap (for handlers that wait on something), and
    /// their replies still leave in request order. At most this many requests are in flight
    /// per connection, beside the pending replies.
    pub concurrency: usize,
    /// After shutdown begins, connections still busy after this long are dropped.
    pub shutdown_timeout: Duration,
    /// Whether requests may carry file descriptors (`SCM_RIGHTS`). Off by default: the
    /// kernel then refuses descriptors sent to the server's connections where it can
    /// (`SO_PASSRIGHTS`, Linux 6.16 and later), so none is ever installed in the server. On,
    /// a handler takes a request's descriptors from its [`Context`](localipc_core::Context).
    pub accept_fds: bool,
    /// Most descriptors with one message (1 to [`MAX_FDS_PER_MESSAGE`]): accepted with a
    /// request, when [`accept_fds`](Self::accept_fds) is on (a message with more ends its
    /// connection, and all of them are closed; one connection holds at most
    /// `concurrency + 1` times this many), and pushed for one reply, when
    /// [`send_fds`](Self::send_fds) is.
    pub max_fds_per_message: usize,
    /// Whether replies may carry file descriptors (`SCM_RIGHTS`), which a handler attaches
    /// with [`Context::push_fd`](localipc_core::Context::push_fd), at most
    /// [`max_fds_per_message`](Self::max_fds_per_message) per reply; each goes with its
    /// reply's first byte. Off by default (a descriptor pushed is then refused, and closed).
    pub send_fds: bool,
    /// Permission bits of the socket file (for example `0o660`).
    pub socket_mode: u32,
    /// Group that owns the socket file; `None` keeps the server's group.
    pub socket_group: Option<u32>,
    /// Which peers may talk to the server.
    pub access: AccessPolicy,
    /// Where the server counts the connections its caps and allow-lists turned away or made
    /// wait; share it with a service that reports them (the Varlink `io.ipc.Server.Stats`).
    pub counters: Arc<ServerCounters>,
    /// Other addresses the server listens on, each with limits of its own (see [`Endpoint`]).
    /// Empty by default.
    pub also_listen: Vec<Endpoint>,
    /// What `tcp:` addresses are served with: TLS with these files. A `tcp:` address needs
    /// them unless [`plain_tcp`](Self::plain_tcp) is on.
    pub tls: Option<TlsSettings>,
    /// Serve `tcp:` addresses without TLS. Only loopback addresses may be served so (any other
    /// is refused at bind), and peers are then [`Peer::Anonymous`](localipc_core::Peer). Off
    /// by default.
    pub plain_tcp: bool,
    /// How long a TCP client has to complete the TLS handshake; one that has not by then is
    /// closed, and its connection slot freed.
    pub handshake_timeout: Duration,
}

impl ServerConfig {
    /// Settings with every default and the socket at `socket_path`.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self {
            socket_path: socket_path.into(),
            framing: Framing::default(),
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_uid: None,
            unfinished_budget: DEFAULT_UNFINISHED_BUDGET,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            concurrency: DEFAULT_CONCURRENCY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            accept_fds: false,
            max_fds_per_message: DEFAULT_MAX_FDS_PER_MESSAGE,
            send_fds: false,
            socket_mode: DEFAULT_SOCKET_MODE,
            socket_group: None,
            access: AccessPolicy::default(),
            counters: Arc::default(),
            also_listen: Vec::new(),
            tls: None,
            plain_tcp: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl ServerConfig {
    /// Most descriptors a handler may push for one reply: 0 unless replies carry some.
    pub(crate) fn send_max(&self) -> usize {
        if self.send_fds {
            self.max_fds_per_message
        } else {
            0
        }
    }

    /// The per-uid cap in force: [`max_connections_per_uid`](Self::max_connections_per_uid)
    /// if set, else [`DEFAULT_MAX_CONNECTIONS_PER_UID`] or three quarters of
    /// [`max_connections`](Self::max_connections), whichever is less (at least 1).
    pub fn connections_per_uid(&self) -> usize {
        self.max_connections_per_uid.unwrap_or_else(|| {
            DEFAULT_MAX_CONNECTIONS_PER_UID
                .min(self.max_connections - self.max_connections / 4)
                .max(1)
        })
    }

    /// Checks every setting; the server calls this before it binds.
    ///
    /// # Errors
    ///
    /// [`ServerError::InvalidConfig`] naming the setting and the values it accepts.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |what: String| Err(ServerError::InvalidConfig(what));
        let max_frame = u32::MAX as usize;
        if self.max_frame == 0 || self.max_frame > max_frame {
            return bad(format!(
                "max frame is {} bytes; it must be between 1 and {max_frame}",
                self.max_frame
            ));
        }
        let max_connections = crate::limit::MAX_CONNECTIONS;
        if self.max_connections == 0 || self.max_connections > max_connections {
            return bad(format!(
                "max connections is {}; it must be between 1 and {max_connections}",
                self.max_connections
            ));
        }
        if let Some(per_uid) = self.max_connections_per_uid
            && (per_uid == 0 || per_uid > self.max_connections)
        {
            return bad(format!(
                "max connections per uid is {per_uid}; it must be between 1 and the max \
                     connections ({})",
                self.max_connections
            ));
        }
        if self.unfinished_budget == 0 {
            return bad("the budget for unfinished messages must be above zero".to_owned());
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!(
                "concurrency is {}; it must be between 1 and {MAX_CONCURRENCY}",
                self.concurrency
            ));
        }
        if self.max_fds_per_message == 0 || self.max_fds_per_message > MAX_FDS_PER_MESSAGE {
            return bad(format!(
                "max descriptors per message is {}; it must be between 1 and \
                 {MAX_FDS_PER_MESSAGE}",
                self.max_fds_per_message
            ));
        }
        if self.socket_mode > 0o777 {
            return bad(format!(
                "socket mode is {:o}; it must be at most 0777",
                self.socket_mode
            ));
        }
        if self.handshake_timeout.is_zero() {
            return bad("the TLS handshake timeout must be above zero".to_owned());
        }
        for (name, timeout) in [
            ("idle timeout", self.idle_timeout),
            ("request timeout", self.request_timeout),
        ] {
            if timeout.is_some_and(|t| t.is_zero()) {
                return bad(format!("{name} must be above zero (None disables it)"));
            }
        }
        for endpoint in &self.also_listen {
            endpoint.config(self).validate().map_err(|e| match e {
                ServerError::InvalidConfig(what) => {
                    ServerError::InvalidConfig(format!("{}: {what}", endpoint.address.display()))
                }
                e => e,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_per_uid_cap_stays_below_the_global_one() {
        let mut c = ServerConfig::new("/tmp/x.sock");
        assert_eq!(c.connections_per_uid(), 128);
        c.max_connections = 64;
        assert_eq!(c.connections_per_uid(), 48);
        c.max_connections = 1;
        assert_eq!(c.connections_per_uid(), 1);
        c.max_connections_per_uid = Some(1);
        c.max_connections = 1024;
        assert_eq!(c.connections_per_uid(), 1);
    }

    #[test]
    fn validation_names_the_setting_and_its_range() {
        let ok = ServerConfig::new("/tmp/x.sock");
        ok.validate().unwrap();
        let err = |f: fn(&mut ServerConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(err(|c| c.max_frame = 0).contains("between 1 and 4294967295"));
        assert!(err(|c| c.max_frame = 1 << 40).contains("max frame is 1099511627776"));
        let huge = err(|c| c.max_connections = usize::MAX);
        assert!(huge.contains("must be between 1 and"), "{huge}");
        assert!(err(|c| c.socket_mode = 0o4755).contains("at most 0777"));
        assert!(err(|c| c.max_connections_per_uid = Some(0)).contains("per uid is 0"));
        let over = err(|c| c.max_connections_per_uid = Some(2000));
        assert!(
            over.contains("between 1 and the max connections (1024)"),
            "{over}"
        );
        assert!(err(|c| c.concurrency = 0).contains("between 1 and 1024"));
        assert!(err(|c| c.max_fds_per_message = 254).contains("between 1 and 253"));
        assert!(err(|c| c.idle_timeout = Some(Duration::ZERO)).contains("idle timeout"));
        assert!(err(|c| c.request_timeout = Some(Duration::ZERO)).contains("request timeout"));
    }
}
