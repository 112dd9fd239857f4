//! Certificates and keys read from PEM files, for TLS on both sides: the server's chain and
//! key, the CAs clients must chain to; a client's CAs, chain and key.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PemError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl PemError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Every certificate in the PEM file at `path`, in order.
///
/// # Errors
///
/// [`PemError`] if the file cannot be read, holds a block that is not valid PEM, or holds no
/// certificate.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::new(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::new(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::new(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// [`PemError`] if the file cannot be read or holds no private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| PemError::new(path, format!("no private key read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_what_is_wanted_say_so() {
        let dir = tempfile_dir();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not PEM at all\n").unwrap();
        let e = certificates(&empty).unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        assert!(
            private_key(&empty)
                .unwrap_err()
                .to_string()
                .contains("no private key")
        );
        let missing = dir.join("missing.pem");
        assert!(
            certificates(&missing)
                .unwrap_err()
                .to_string()
                .contains("missing.pem")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("localipc-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
