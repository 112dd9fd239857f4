//! [`ListenAddress`]: what a server really listens on, for its logs and for
//! [`Server::address`](crate::Server::address).

use std::fmt;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

/// Where a server's clients connect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddress {
    /// A socket file at this path.
    Path(PathBuf),
    /// A name in Linux's abstract namespace, written `@name`. It has no file, so no file
    /// permissions protect it: only peer allow-lists keep other users out.
    Abstract(Vec<u8>),
    /// A socket with no name, such as an inherited descriptor that was never bound to one.
    Unnamed {
        /// The listening descriptor.
        fd: i32,
    },
    /// A TCP port, served with TLS unless `tls` is false (plain TCP on loopback).
    Tcp {
        /// The local address and port.
        address: std::net::SocketAddr,
        /// Whether connections are served with TLS.
        tls: bool,
    },
}

impl ListenAddress {
    /// What `listener` is bound to, as the kernel reports it.
    pub fn of(listener: &UnixListener) -> Self {
        let unnamed = || ListenAddress::Unnamed {
            fd: listener.as_raw_fd(),
        };
        let Ok(addr) = listener.local_addr() else {
            return unnamed();
        };
        if let Some(path) = addr.as_pathname() {
            ListenAddress::Path(path.to_owned())
        } else if let Some(name) = addr.as_abstract_name() {
            ListenAddress::Abstract(name.to_owned())
        } else {
            unnamed()
        }
    }

    /// The socket file's path, if the address is one.
    pub fn as_path(&self) -> Option<&std::path::Path> {
        match self {
            ListenAddress::Path(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Path(p) => write!(f, "{}", p.display()),
            ListenAddress::Abstract(name) => write!(f, "@{}", name.escape_ascii()),
            ListenAddress::Unnamed { fd } => write!(f, "an unnamed socket (descriptor {fd})"),
            ListenAddress::Tcp { address, tls: true } => write!(f, "tcp:{address}"),
            ListenAddress::Tcp {
                address,
                tls: false,
            } => write!(f, "tcp:{address} (plain)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::SocketAddr;

    #[test]
    fn reports_paths_abstract_names_and_unnamed_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let l = UnixListener::bind(&path).unwrap();
        assert_eq!(ListenAddress::of(&l), ListenAddress::Path(path.clone()));
        assert_eq!(
            ListenAddress::of(&l).to_string(),
            path.display().to_string()
        );

        let name = format!("ipc-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let l = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(ListenAddress::of(&l).to_string(), format!("@{name}"));
        assert_eq!(ListenAddress::of(&l).as_path(), None);

        // A socket that was never bound: autobind gives none here, so it reports its descriptor.
        let raw = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let fd = raw.as_raw_fd();
        let l = UnixListener::from(raw);
        assert_eq!(ListenAddress::of(&l), ListenAddress::Unnamed { fd });
    }
}
