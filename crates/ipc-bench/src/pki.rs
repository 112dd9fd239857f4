//! Certificates for the `tcp+tls` scenarios, made at each run: a CA, the server's certificate
//! for 127.0.0.1, and a client's, as PEM files in the suite's scratch directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// The files of one run's certificates.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signed both (PEM).
    pub ca: PathBuf,
    /// The server's certificate and key (PEM).
    pub server: (PathBuf, PathBuf),
    /// The client's certificate and key (PEM).
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Makes the certificates in `dir`.
    ///
    /// # Errors
    ///
    /// A file that cannot be written, or a certificate that cannot be made.
    pub fn make(dir: &Path) -> std::io::Result<Self> {
        let fail = |e: rcgen::Error| std::io::Error::other(e.to_string());
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "bench CA");
        let ca_key = KeyPair::generate().map_err(fail)?;
        let ca_pem = ca.self_signed(&ca_key).map_err(fail)?.pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, san: &str, usage| -> std::io::Result<(PathBuf, PathBuf)> {
            let mut params = CertificateParams::new(vec![san.to_owned()]).map_err(fail)?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().map_err(fail)?;
            let cert = params.signed_by(&key, &issuer).map_err(fail)?;
            let files = (
                dir.join(format!("{name}.pem")),
                dir.join(format!("{name}.key")),
            );
            std::fs::write(&files.0, cert.pem())?;
            std::fs::write(&files.1, key.serialize_pem())?;
            Ok(files)
        };
        let ca_file = dir.join("bench-ca.pem");
        std::fs::write(&ca_file, ca_pem)?;
        Ok(Self {
            server: leaf(
                "bench-server",
                "127.0.0.1",
                ExtendedKeyUsagePurpose::ServerAuth,
            )?,
            client: leaf(
                "bench-client",
                "client.bench",
                ExtendedKeyUsagePurpose::ClientAuth,
            )?,
            ca: ca_file,
        })
    }

    /// The client's options for the load generator.
    ///
    /// # Errors
    ///
    /// As [`localipc_client::TcpOptions::tls`].
    pub fn client_options(
        &self,
    ) -> Result<localipc_client::TcpOptions, localipc_client::ClientError> {
        localipc_client::TcpOptions::tls(&self.ca, Some((&self.client.0, &self.client.1)))
    }
}
