//! Errors that stop the server from starting or serving.

use std::io;
use std::path::PathBuf;

/// Why the server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A live server already answers at the path, or another server holds the path's lock
    /// (it is starting or running there); either is left alone.
    #[error("{} is in use by another server", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket exists at the path; it is never deleted.
    #[error("{} exists and is not a socket ({kind}); refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What the path is: a regular file, a directory, a symbolic link...
        kind: &'static str,
    },
    /// The socket directory fails a safety check.
    #[error("unsafe socket directory {}: {problem}; {fix}", dir.display())]
    InsecureDirectory {
        /// The directory.
        dir: PathBuf,
        /// Which check failed.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// The path does not fit in a Unix socket address.
    #[error("socket path {} is {len} bytes long; the limit is {max}", path.display())]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest path that fits.
        max: usize,
    },
    /// This user may not create the socket in its directory.
    #[error("cannot create the socket {}: no permission to write in {} ({source})", path.display(), dir.display())]
    DirectoryNotWritable {
        /// The socket path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// The refusal.
        #[source]
        source: io::Error,
    },
    /// The socket address cannot be read, or names a scheme this version does not speak.
    #[error("cannot listen there: {0}")]
    Address(#[from] localipc_core::AddressError),
    /// The socket address is on another host (`ssh-unix:`, `ssh-exec:`): a server listens on a
    /// socket of its own host.
    #[error("a server listens on a socket of its own host, not {address}")]
    NotLocal {
        /// The address, as given.
        address: String,
    },
    /// A TLS file cannot be read or used.
    #[error("TLS: {}: {reason}", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// An operating-system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ServerError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ServerError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
