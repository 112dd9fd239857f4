//! `tcp:HOST:PORT` addresses: TLS by default, with the CAs the server's certificate must
//! chain to and, for a server that requires one (the default), a client certificate
//! ([`TcpOptions`]); plain TCP only to a loopback address, and only when asked for.
//!
//! The binaries and [`connect_to`](crate::connect_to) read the options from the environment
//! ([`TcpOptions::from_env`]): `IPC_TLS_CA`, `IPC_TLS_CERT`, `IPC_TLS_KEY`,
//! `IPC_TLS_SERVER_NAME`, and `IPC_PLAIN_TCP=1`.

use std::fmt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use localipc_core::Address;
use localipc_core::pem;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

use crate::client::within;
use crate::error::ClientError;

/// The environment variable naming the PEM file of the CAs a server's certificate must chain
/// to.
pub const TLS_CA_ENV: &str = "IPC_TLS_CA";
/// The environment variable naming the PEM file of the client's certificate chain.
pub const TLS_CERT_ENV: &str = "IPC_TLS_CERT";
/// The environment variable naming the PEM file of the client's private key.
pub const TLS_KEY_ENV: &str = "IPC_TLS_KEY";
/// The environment variable naming the server's name as its certificate carries it, when it
/// is not the address's host.
pub const TLS_SERVER_NAME_ENV: &str = "IPC_TLS_SERVER_NAME";
/// The environment variable that asks for plain TCP (`1`), to a loopback address only.
pub const PLAIN_TCP_ENV: &str = "IPC_PLAIN_TCP";

/// How a `tcp:` address is reached: TLS with a configuration, or plain TCP to loopback.
#[derive(Clone)]
pub struct TcpOptions {
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<String>,
}

impl fmt::Debug for TcpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpOptions")
            .field("tls", &self.tls.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TcpOptions {
    /// TLS, trusting the CAs in `ca` (PEM) for the server's certificate, and presenting the
    /// certificate chain and key of `identity` (PEM files) if given.
    ///
    /// # Errors
    ///
    /// [`ClientError::Tls`] naming the file that cannot be read or used.
    pub fn tls(
        ca: impl AsRef<Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem::certificates(ca.as_ref()).map_err(pem_error)? {
            roots
                .add(cert)
                .map_err(|e| tls_error(ca.as_ref(), format!("not a usable CA: {e}")))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = pem::certificates(cert).map_err(pem_error)?;
                let key = pem::private_key(key).map_err(pem_error)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error(cert, format!("does not go with the key: {e}")))?
            }
        };
        Ok(Self {
            tls: Some(Arc::new(config)),
            server_name: None,
        })
    }

    /// Plain TCP, without TLS: only to a loopback address (anything else is refused at
    /// connect), for a server that serves plain TCP there.
    pub fn plain() -> Self {
        Self {
            tls: None,
            server_name: None,
        }
    }

    /// Checks the server's certificate for `name` rather than for the address's host.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The options the environment gives: plain TCP with `IPC_PLAIN_TCP=1`; else TLS with the
    /// CAs of `IPC_TLS_CA`, the certificate and key of `IPC_TLS_CERT` and `IPC_TLS_KEY` (both
    /// or neither), and the name of `IPC_TLS_SERVER_NAME` if set.
    ///
    /// # Errors
    ///
    /// [`ClientError::Tls`] if `IPC_TLS_CA` is not set, only one of the certificate and key
    /// is, or a file cannot be used.
    pub fn from_env() -> Result<Self, ClientError> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if var(PLAIN_TCP_ENV).is_some_and(|v| v == "1") {
            return Ok(Self::plain());
        }
        let Some(ca) = var(TLS_CA_ENV) else {
            return Err(ClientError::Tls(format!(
                "a tcp: address needs TLS: set {TLS_CA_ENV} (--tls-ca) to the CA file that \
                 the server's certificate chains to ({PLAIN_TCP_ENV}=1 for plain TCP to \
                 loopback)"
            )));
        };
        let (cert, key) = (var(TLS_CERT_ENV), var(TLS_KEY_ENV));
        let identity = match (&cert, &key) {
            (Some(cert), Some(key)) => Some((Path::new(cert), Path::new(key))),
            (None, None) => None,
            _ => {
                return Err(ClientError::Tls(format!(
                    "{TLS_CERT_ENV} and {TLS_KEY_ENV} (--tls-cert, --tls-key) go together"
                )));
            }
        };
        let options = Self::tls(ca, identity)?;
        Ok(match var(TLS_SERVER_NAME_ENV) {
            Some(name) => options.server_name(name.to_string_lossy()),
            None => options,
        })
    }

    /// Connects to `address` (a `tcp:` one) with these options, within `timeout` (which
    /// covers the TLS handshake too).
    pub(crate) async fn connect(
        &self,
        address: &Address,
        timeout: Option<Duration>,
    ) -> Result<Stream, ClientError> {
        let (Address::Tcp { host, .. }, Some(target)) = (address, address.tcp_target()) else {
            return Err(ClientError::Address(
                localipc_core::AddressError::Unsupported {
                    scheme: address.scheme(),
                },
            ));
        };
        within(
            timeout,
            crate::runtime::with_io(self.connect_now(host, &target)),
        )
        .await??
    }

    async fn connect_now(&self, host: &str, target: &str) -> Result<Stream, ClientError> {
        let tcp = TcpStream::connect(target)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => ClientError::TcpRefused {
                    address: target.to_owned(),
                },
                _ => ClientError::Io(e),
            })?;
        // Requests go as soon as they are written: the channel already coalesces them.
        tcp.set_nodelay(true)?;
        let Some(config) = &self.tls else {
            if !tcp.peer_addr()?.ip().is_loopback() {
                return Err(ClientError::Tls(format!(
                    "plain TCP goes to a loopback address only, not {target}; use TLS"
                )));
            }
            return Ok(Stream::Tcp(tcp));
        };
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| ClientError::Tls(format!("{name:?} is not a server name")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(crate::client::io_error)?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

fn pem_error(e: pem::PemError) -> ClientError {
    ClientError::Tls(e.to_string())
}

fn tls_error(path: &Path, reason: String) -> ClientError {
    ClientError::Tls(format!("{}: {reason}", path.display()))
}

/// The stream a channel talks over: a Unix socket (local, or the pair to `ssh`), TCP with
/// TLS, or plain TCP.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
    Tcp(TcpStream),
}

impl Stream {
    /// The Unix socket, where descriptors can go.
    pub(crate) fn unix(&self) -> Option<&UnixStream> {
        match self {
            Stream::Unix(s) => Some(s),
            _ => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
