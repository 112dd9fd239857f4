//! TLS for `tcp:` addresses: the settings ([`TlsSettings`], certificates read from PEM files),
//! the handshake, and the client's verified certificate read into the peer's identity
//! ([`localipc_core::CertificateIdentity`]).
//!
//! Client certificates are required by default: a client must present one that chains to one
//! of the client CAs, and is valid now, or the handshake fails and the connection closes
//! before any request is read. TLS 1.3 and 1.2 are offered (rustls, with the ring provider).

mod conn;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use localipc_core::pem;
use localipc_core::{CertificateIdentity, CertificateName, Fingerprint, Peer};
use rustls::server::WebPkiClientVerifier;

pub(crate) use self::conn::TlsConnection;
use crate::error::ServerError;

/// How long a client has to complete the TLS handshake, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A client without a valid certificate is refused at the handshake (the default).
    #[default]
    Required,
    /// A client may present none; it is then [`Peer::Anonymous`], which an allow-list that
    /// names certificates refuses. One that presents an invalid certificate is still refused.
    Optional,
}

/// The files TLS is served with: the server's certificate chain and key, and the CAs that
/// client certificates must chain to. All PEM.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsSettings {
    /// The server's certificate, followed by any intermediates.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates that client certificates must chain to.
    pub client_ca: PathBuf,
    /// Whether clients must present a certificate.
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    /// Settings with the server's `cert` chain and `key`, requiring client certificates that
    /// chain to `client_ca`.
    pub fn new(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        client_ca: impl Into<PathBuf>,
    ) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca: client_ca.into(),
            client_auth: ClientAuth::Required,
        }
    }

    /// Sets [`client_auth`](Self::client_auth).
    #[must_use]
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Reads the files and builds the server's TLS configuration.
    ///
    /// # Errors
    ///
    /// [`ServerError::Tls`] naming the file that cannot be read or used.
    pub(crate) fn load(&self) -> Result<Arc<rustls::ServerConfig>, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = pem::certificates(&self.cert)?;
        let key = pem::private_key(&self.key)?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in pem::certificates(&self.client_ca)? {
            roots
                .add(ca)
                .map_err(|e| tls_error(&self.client_ca, format!("not a usable CA: {e}")))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
        let verifier = match self.client_auth {
            ClientAuth::Required => verifier,
            ClientAuth::Optional => verifier.allow_unauthenticated(),
        }
        .build()
        .map_err(|e| tls_error(&self.client_ca, e.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&self.cert, e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| tls_error(&self.key, format!("does not go with the certificate: {e}")))?;
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("client_ca", &self.client_ca)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

fn tls_error(path: &Path, reason: String) -> ServerError {
    ServerError::Tls {
        path: path.to_owned(),
        reason,
    }
}

impl From<pem::PemError> for ServerError {
    fn from(e: pem::PemError) -> Self {
        ServerError::Tls {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// Who a TLS client is: its verified certificate, if it presented one.
pub(crate) fn peer_of(tls: &rustls::ServerConnection, address: SocketAddr) -> Peer {
    match tls.peer_certificates().and_then(<[_]>::first) {
        Some(cert) => Peer::Certificate {
            identity: Arc::new(identity(cert.as_ref())),
            address,
        },
        None => Peer::Anonymous { address },
    }
}

/// What a certificate (DER, already verified) says of its holder.
fn identity(der: &[u8]) -> CertificateIdentity {
    use x509_parser::extensions::GeneralName;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(digest.as_ref());
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        // rustls verified it, so it parses; if it did not, the fingerprint still names it.
        return CertificateIdentity::new(Fingerprint(fingerprint), "");
    };
    let subject = cert.subject();
    let mut id = CertificateIdentity::new(Fingerprint(fingerprint), subject.to_string());
    for cn in subject.iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            id = id.with(CertificateName::CommonName(cn.to_owned()));
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let name = match name {
                GeneralName::DNSName(n) => CertificateName::Dns((*n).to_owned()),
                GeneralName::URI(u) => CertificateName::Uri((*u).to_owned()),
                GeneralName::RFC822Name(e) => CertificateName::Email((*e).to_owned()),
                GeneralName::IPAddress(bytes) => match ip_of(bytes) {
                    Some(ip) => CertificateName::Ip(ip),
                    None => continue,
                },
                _ => continue,
            };
            id = id.with(name);
        }
    }
    id
}

fn ip_of(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => Some(<[u8; 4]>::try_from(bytes).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(bytes).ok()?.into()),
        _ => None,
    }
}
