//! [`Endpoint`]: another address a server listens on beside its main one, with limits of its
//! own. Every endpoint is served by the same handler and stops with the server; what an endpoint
//! leaves unset is the server's.

use std::path::PathBuf;

use crate::access::AccessPolicy;
use crate::config::ServerConfig;
use crate::tls::TlsSettings;

/// Another address the server listens on (see [`ServerConfig::also_listen`] and
/// [`Builder::also_listen`](crate::Builder::also_listen)), with limits of its own. Its
/// connections count against its own caps, not the main address's, and its allow-lists
/// replace the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint {
    /// The address: a path, `@name`, `unix:PATH`, `unix:@NAME` or `tcp:HOST:PORT`.
    pub address: PathBuf,
    /// Its own [`ServerConfig::max_connections`]; `None` takes the server's.
    pub max_connections: Option<usize>,
    /// Its own [`ServerConfig::max_connections_per_uid`]; `None` takes the server's.
    pub max_connections_per_uid: Option<usize>,
    /// Its own allow-lists; `None` takes the server's.
    pub access: Option<AccessPolicy>,
    /// Its socket file's permission bits; `None` takes the server's.
    pub socket_mode: Option<u32>,
    /// Its socket file's group; `None` takes the server's.
    pub socket_group: Option<u32>,
    /// For a `tcp:` address, its own TLS files; `None` takes the server's.
    pub tls: Option<TlsSettings>,
    /// For a `tcp:` address, whether it is served without TLS (loopback only); `None` takes
    /// the server's.
    pub plain_tcp: Option<bool>,
}

impl Endpoint {
    /// An endpoint at `address` with the server's limits.
    pub fn new(address: impl Into<PathBuf>) -> Self {
        Self {
            address: address.into(),
            max_connections: None,
            max_connections_per_uid: None,
            access: None,
            socket_mode: None,
            socket_group: None,
            tls: None,
            plain_tcp: None,
        }
    }

    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Sets [`max_connections_per_uid`](Self::max_connections_per_uid).
    #[must_use]
    pub fn max_connections_per_uid(mut self, n: usize) -> Self {
        self.max_connections_per_uid = Some(n);
        self
    }

    /// Sets [`access`](Self::access).
    #[must_use]
    pub fn access(mut self, access: AccessPolicy) -> Self {
        self.access = Some(access);
        self
    }

    /// Sets [`socket_mode`](Self::socket_mode).
    #[must_use]
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = Some(mode);
        self
    }

    /// Sets [`socket_group`](Self::socket_group).
    #[must_use]
    pub fn socket_group(mut self, gid: u32) -> Self {
        self.socket_group = Some(gid);
        self
    }

    /// Sets [`tls`](Self::tls).
    #[must_use]
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`plain_tcp`](Self::plain_tcp).
    #[must_use]
    pub fn plain_tcp(mut self, plain: bool) -> Self {
        self.plain_tcp = Some(plain);
        self
    }

    /// The settings its connections are served with: the server's, with this endpoint's
    /// address and limits.
    pub(crate) fn config(&self, server: &ServerConfig) -> ServerConfig {
        let mut config = server.clone();
        config.socket_path = self.address.clone();
        config.also_listen = Vec::new();
        if let Some(n) = self.max_connections {
            config.max_connections = n;
        }
        if self.max_connections_per_uid.is_some() {
            config.max_connections_per_uid = self.max_connections_per_uid;
        }
        if let Some(access) = &self.access {
            config.access = access.clone();
        }
        if let Some(mode) = self.socket_mode {
            config.socket_mode = mode;
        }
        if self.socket_group.is_some() {
            config.socket_group = self.socket_group;
        }
        if self.tls.is_some() {
            config.tls.clone_from(&self.tls);
        }
        if let Some(plain) = self.plain_tcp {
            config.plain_tcp = plain;
        }
        config
    }
}
