//! [`Builder`]: where the server listens (a path, an already-bound listener, or an inherited file
//! descriptor), its settings, and its handler.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use localipc_core::{Framing, Handler};

use crate::access::AccessPolicy;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::server::Server;

/// Where the listening socket comes from.
#[derive(Debug)]
enum Source {
    /// Bind the address `config.socket_path`: create the socket file (and remove it on exit),
    /// or bind a name in the abstract namespace.
    Address,
    /// Serve sockets someone else created; a socket file is theirs and is never removed,
    /// unless the path's lock came with it (a handover). Each serves the address it is bound
    /// to.
    Passed {
        unix: Vec<(UnixListener, Option<std::fs::File>)>,
        tcp: Vec<std::net::TcpListener>,
    },
}

/// Configures and binds a [`Server`]. Start with [`Server::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use localipc_core::{Echo, Framing};
/// use localipc_server::Server;
///
/// # fn main() -> Result<(), localipc_server::ServerError> {
/// let server = Server::builder(Echo)
///     .socket("/run/myapp/control.sock")
///     .framing(Framing::Length)
///     .max_connections(64)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .socket_mode(0o660)
///     .bind()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `bind` is called"]
pub struct Builder<H> {
    handler: H,
    config: ServerConfig,
    source: Source,
}

impl<H: Handler> Server<H> {
    /// Starts configuring a server that answers with `handler`.
    pub fn builder(handler: H) -> Builder<H> {
        Builder {
            handler,
            config: ServerConfig::new(localipc_core::default_socket_path()),
            source: Source::Address,
        }
    }
}

impl<H: Handler> Builder<H> {
    /// Listens on a socket file at `path` [default: [`localipc_core::default_socket_path`]].
    ///
    /// A path written `@name` is a name in Linux's abstract namespace instead (see
    /// [`localipc_core::abstract_name`]): no file is created, and since no file permissions apply,
    /// any local process can connect unless [`access`](Self::access) allow-lists keep it out.
    /// The Varlink forms `unix:PATH` and `unix:@NAME` mean the same (see
    /// [`Address`](localipc_core::Address)). `tcp:HOST:PORT` listens on TCP, with
    /// [`tls`](Self::tls) (or [`plain_tcp`](Self::plain_tcp) on a loopback address). An
    /// address of another host, or of a scheme this version does not speak, fails at
    /// [`bind`](Self::bind).
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.socket_path = path.into();
        self.source = Source::Address;
        self
    }

    /// Listens on `endpoint`'s address too, with limits of its own (see [`Endpoint`]): its
    /// connections count against its own caps and pass its own allow-lists. Repeat for more.
    /// Under a handover or systemd's socket activation, a socket passed in at an endpoint's
    /// address serves that endpoint.
    ///
    /// [`Endpoint`]: crate::Endpoint
    pub fn also_listen(mut self, endpoint: crate::Endpoint) -> Self {
        self.config.also_listen.push(endpoint);
        self
    }

    /// Serves an already-bound, listening socket. Its file (if any) belongs to whoever bound it:
    /// the server never removes it, and the socket mode and group settings do not apply. The
    /// server reports the address the socket really has ([`Server::address`]).
    pub fn listener(mut self, listener: UnixListener) -> Self {
        self.source = Source::Passed {
            unix: vec![(listener, None)],
            tcp: Vec::new(),
        };
        self
    }

    /// Serves what [`activation::inherited`](crate::activation::inherited) took: a socket
    /// passed by systemd, whose file is never removed (as with [`Builder::listener`]), or one
    /// handed over by a predecessor (or kept in systemd's file descriptor store) with the
    /// path's lock, whose file is then this server's: removed at its end, or handed on. A TCP
    /// socket passed serves the `tcp:` address it is bound to (an address with port 0 takes
    /// one passed on its host).
    #[cfg(feature = "systemd")]
    pub fn inherited(mut self, inherited: crate::activation::Inherited) -> Self {
        self.source = Source::Passed {
            unix: inherited.unix,
            tcp: inherited.tcp,
        };
        self
    }

    /// Serves an inherited listening socket, such as one passed by a service manager. As with
    /// [`Builder::listener`], its file is never removed.
    pub fn fd(self, fd: OwnedFd) -> Self {
        self.listener(UnixListener::from(fd))
    }

    /// Replaces every setting at once. The listening source is kept, unless it was a socket
    /// path: then `config.socket_path` is the new one.
    pub fn config(mut self, config: ServerConfig) -> Self {
        let path = config.socket_path.clone();
        self.config = config;
        match self.source {
            Source::Passed { .. } => self,
            Source::Address => self.socket(path),
        }
    }

    /// Sets [`ServerConfig::framing`].
    pub fn framing(mut self, framing: Framing) -> Self {
        self.config.framing = framing;
        self
    }

    /// Sets [`ServerConfig::max_frame`].
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Sets [`ServerConfig::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Sets [`ServerConfig::counters`]: where the server counts the connections its caps and
    /// allow-lists turned away or made wait.
    pub fn counters(mut self, counters: std::sync::Arc<localipc_core::ServerCounters>) -> Self {
        self.config.counters = counters;
        self
    }

    /// Sets [`ServerConfig::unfinished_budget`].
    pub fn unfinished_budget(mut self, bytes: usize) -> Self {
        self.config.unfinished_budget = bytes;
        self
    }

    /// Sets [`ServerConfig::max_connections_per_uid`].
    pub fn max_connections_per_uid(mut self, n: usize) -> Self {
        self.config.max_connections_per_uid = Some(n);
        self
    }

    /// Sets [`ServerConfig::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::request_timeout`].
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::concurrency`].
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// Sets [`ServerConfig::accept_fds`].
    pub fn accept_fds(mut self, on: bool) -> Self {
        self.config.accept_fds = on;
        self
    }

    /// Sets [`ServerConfig::send_fds`].
    pub fn send_fds(mut self, on: bool) -> Self {
        self.config.send_fds = on;
        self
    }

    /// Sets [`ServerConfig::max_fds_per_message`].
    pub fn max_fds_per_message(mut self, n: usize) -> Self {
        self.config.max_fds_per_message = n;
        self
    }

    /// Sets [`ServerConfig::shutdown_timeout`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::socket_mode`].
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.config.socket_mode = mode;
        self
    }

    /// Sets [`ServerConfig::socket_group`].
    pub fn socket_group(mut self, gid: Option<u32>) -> Self {
        self.config.socket_group = gid;
        self
    }

    /// Sets [`ServerConfig::access`].
    pub fn access(mut self, access: AccessPolicy) -> Self {
        self.config.access = access;
        self
    }

    /// Sets [`ServerConfig::tls`]: what `tcp:` addresses are served with.
    pub fn tls(mut self, tls: crate::TlsSettings) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Sets [`ServerConfig::plain_tcp`]: `tcp:` addresses without TLS, loopback ones only.
    pub fn plain_tcp(mut self, on: bool) -> Self {
        self.config.plain_tcp = on;
        self
    }

    /// Sets [`ServerConfig::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Creates the socket (or checks the one given) and returns the server, ready to
    /// [`serve`](Server::serve). Needs no runtime.
    ///
    /// # Errors
    ///
    /// [`ServerError`]: invalid settings, a live server or a non-socket at the path, an unsafe
    /// directory, a given descriptor that is not a Unix stream listener, or a failing system call.
    pub fn bind(self) -> Result<Server<H>, ServerError> {
        match self.source {
            Source::Address => Server::bind(self.config, self.handler),
            // One Unix socket passed in: it is the main one, whatever its address (systemd's
            // `ListenStream=` decides where the server listens).
            Source::Passed { mut unix, tcp } if unix.len() == 1 && tcp.is_empty() => Server::adopt(
                unix.pop(),
                self.config,
                self.handler,
                Vec::new(),
                Vec::new(),
            ),
            // Several (from a predecessor with endpoints, or systemd): each serves the address
            // it is bound to; the main one is the socket at the main address, or else the Unix
            // one at no endpoint's address.
            Source::Passed { mut unix, tcp } => {
                let main = crate::server::pick_main(&unix, &self.config).map(|i| unix.remove(i));
                Server::adopt(main, self.config, self.handler, unix, tcp)
            }
        }
    }
}
