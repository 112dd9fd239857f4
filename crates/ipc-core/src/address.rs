//! [`Address`]: where a client reaches a server, written as Varlink tools write addresses
//! (`unix:PATH`, `unix:@NAME`, `ssh-unix:HOST:PATH`, `ssh-exec:HOST:COMMAND`), or as a bare
//! socket path, as before addresses had schemes.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Where a server is reached.
///
/// | written | meaning |
/// | --- | --- |
/// | `PATH`, `unix:PATH` | a socket file |
/// | `@NAME`, `unix:@NAME` | a name in Linux's abstract namespace (see [`crate::abstract_name`]) |
/// | `ssh-unix:[USER@]HOST:PATH` | the socket file `PATH` on `HOST`, through `ssh -W PATH` |
/// | `ssh-exec:[USER@]HOST:COMMAND` | a command on `HOST` whose stdin and stdout carry the protocol, such as `ipc-client bridge` |
/// | `tcp:HOST:PORT` | a TCP port, with TLS (plain only on loopback, where asked for) |
///
/// A bare path that starts with a scheme's name and a colon is written `./unix:...`. `HOST`
/// may be an IPv6 address in brackets (`ssh-unix:[::1]:/run/ipc.sock`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A socket file.
    Path(PathBuf),
    /// A name in Linux's abstract namespace, without its `@`.
    Abstract(Vec<u8>),
    /// A socket file on another host, reached through `ssh`.
    SshUnix {
        /// `[USER@]HOST`, as `ssh` takes it.
        destination: String,
        /// The socket's absolute path on that host.
        path: PathBuf,
    },
    /// A command on another host, started by `ssh`, whose stdin and stdout carry the protocol.
    SshExec {
        /// `[USER@]HOST`, as `ssh` takes it.
        destination: String,
        /// The command line, run by the remote user's shell.
        command: String,
    },
    /// A TCP port: a host name or IP address (an IPv6 one written in brackets), and a port.
    Tcp {
        /// The host name or IP address, without brackets.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Why an address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Nothing was given.
    #[error("the address is empty")]
    Empty,
    /// The address is not written as its scheme wants.
    #[error("bad address {address:?}: {reason}")]
    Malformed {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A Varlink scheme that this version does not speak.
    #[error(
        "{scheme}: addresses are not supported; use unix:, tcp:, ssh-unix: or ssh-exec: (a bare \
         path that starts with {scheme}: is written ./{scheme}:...)"
    )]
    Unsupported {
        /// The scheme, such as `tcp`.
        scheme: &'static str,
    },
}

/// Schemes that Varlink tools use and this version does not speak: refused by name rather
/// than taken for a file name.
const UNSUPPORTED: [&str; 3] = ["exec", "vsock", "ssh"];

impl Address {
    /// Reads an address (see the [type's docs](Address) for its forms).
    ///
    /// # Errors
    ///
    /// [`AddressError`] says what is wrong.
    pub fn parse(address: impl AsRef<OsStr>) -> Result<Self, AddressError> {
        let raw = address.as_ref().as_bytes();
        if raw.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some(rest) = raw.strip_prefix(b"unix:") {
            return match rest {
                [] => Err(malformed(raw, "unix: needs a socket path or @name")),
                [b'@', name @ ..] => Ok(Address::Abstract(name.to_vec())),
                path => Ok(Address::Path(PathBuf::from(OsStr::from_bytes(path)))),
            };
        }
        if let Some(rest) = raw.strip_prefix(b"ssh-unix:") {
            let (destination, path) = remote(raw, rest)?;
            if !path.starts_with('/') {
                return Err(malformed(
                    raw,
                    "ssh-unix: needs the socket's absolute path on the remote host",
                ));
            }
            return Ok(Address::SshUnix {
                destination,
                path: PathBuf::from(path),
            });
        }
        if let Some(rest) = raw.strip_prefix(b"ssh-exec:") {
            let (destination, command) = remote(raw, rest)?;
            return Ok(Address::SshExec {
                destination,
                command,
            });
        }
        if let Some(rest) = raw.strip_prefix(b"tcp:") {
            return tcp(raw, rest);
        }
        if let Some(scheme) = UNSUPPORTED.into_iter().find(|s| {
            raw.strip_prefix(s.as_bytes())
                .is_some_and(|r| r.starts_with(b":"))
        }) {
            return Err(AddressError::Unsupported { scheme });
        }
        Ok(match raw {
            [b'@', name @ ..] => Address::Abstract(name.to_vec()),
            _ => Address::Path(PathBuf::from(OsStr::from_bytes(raw))),
        })
    }

    /// The address of a local socket, as the server and [`crate::probe`] take it: a path, or
    /// `@name` for an abstract name. `None` for a remote address.
    pub fn local_path(&self) -> Option<PathBuf> {
        match self {
            Address::Path(path) => Some(path.clone()),
            Address::Abstract(name) => {
                let mut bytes = b"@".to_vec();
                bytes.extend_from_slice(name);
                Some(PathBuf::from(OsString::from_vec(bytes)))
            }
            Address::SshUnix { .. } | Address::SshExec { .. } | Address::Tcp { .. } => None,
        }
    }

    /// The scheme the address is written with: `unix` (also for a bare path), `ssh-unix` or
    /// `ssh-exec`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Address::Path(_) | Address::Abstract(_) => "unix",
            Address::SshUnix { .. } => "ssh-unix",
            Address::SshExec { .. } => "ssh-exec",
            Address::Tcp { .. } => "tcp",
        }
    }

    /// Whether the address is reached through `ssh` rather than a socket of this host.
    pub fn is_remote(&self) -> bool {
        matches!(self, Address::SshUnix { .. } | Address::SshExec { .. })
    }

    /// `HOST:PORT` of a `tcp:` address, as a socket address resolver takes it (an IPv6 host in
    /// brackets); `None` for the other forms.
    pub fn tcp_target(&self) -> Option<String> {
        match self {
            Address::Tcp { host, port } if host.contains(':') => Some(format!("[{host}]:{port}")),
            Address::Tcp { host, port } => Some(format!("{host}:{port}")),
            _ => None,
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<&Path> for Address {
    /// A path taken as a socket file, whatever it starts with; `@name` is an abstract name, as
    /// everywhere in the workspace.
    fn from(path: &Path) -> Self {
        match crate::abstract_name(path) {
            Some(name) => Address::Abstract(name.to_vec()),
            None => Address::Path(path.to_owned()),
        }
    }
}

impl fmt::Display for Address {
    /// A socket file shows as its bare path, so messages read as they did before addresses
    /// had schemes, unless the bare path would read as something else (`@name`, or a scheme):
    /// then as `unix:PATH`. The other forms show as they are written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Path(path) => {
                let bare = path.as_os_str().as_bytes();
                let misread = bare.is_empty()
                    || bare.starts_with(b"@")
                    || ["unix", "ssh-unix", "ssh-exec", "tcp"]
                        .into_iter()
                        .chain(UNSUPPORTED)
                        .any(|s| {
                            bare.strip_prefix(s.as_bytes())
                                .is_some_and(|r| r.starts_with(b":"))
                        });
                let scheme = if misread { "unix:" } else { "" };
                write!(f, "{scheme}{}", path.display())
            }
            // Printable names as they are; others escaped, for reading.
            Address::Abstract(name) if name.iter().all(|b| (b' '..=b'~').contains(b)) => {
                write!(f, "@{}", String::from_utf8_lossy(name))
            }
            Address::Abstract(name) => write!(f, "@{}", name.escape_ascii()),
            Address::SshUnix { destination, path } => {
                write!(f, "ssh-unix:{}:{}", bracketed(destination), path.display())
            }
            Address::SshExec {
                destination,
                command,
            } => write!(f, "ssh-exec:{}:{command}", bracketed(destination)),
            Address::Tcp { .. } => write!(f, "tcp:{}", self.tcp_target().unwrap_or_default()),
        }
    }
}

/// Reads the `HOST:PORT` of a `tcp:` address (HOST possibly `[v6]`).
fn tcp(raw: &[u8], rest: &[u8]) -> Result<Address, AddressError> {
    let rest = std::str::from_utf8(rest).map_err(|_| malformed(raw, "tcp: must be valid UTF-8"))?;
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| malformed(raw, "an IPv6 host needs its closing ]"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| malformed(raw, "write it tcp:HOST:PORT"))?;
        let address = host
            .split_once('%')
            .map_or(host, |(address, _scope)| address);
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(malformed(raw, "brackets hold an IPv6 address"));
        }
        (host, port)
    } else {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| malformed(raw, "write it tcp:HOST:PORT"))?;
        if host.contains(':') {
            return Err(malformed(
                raw,
                "an IPv6 host is written in brackets: tcp:[::1]:PORT",
            ));
        }
        (host, port)
    };
    let bad_host = host.is_empty()
        || host.starts_with(['-', '.'])
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b));
    if bad_host {
        return Err(malformed(
            raw,
            "the host is missing or not a host name or IP address",
        ));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| malformed(raw, "the port is not a number from 0 to 65535"))?;
    Ok(Address::Tcp {
        host: host.to_owned(),
        port,
    })
}

/// Splits `[USER@]HOST:REST` (HOST possibly `[v6]`) into a destination for `ssh` and REST.
fn remote(raw: &[u8], rest: &[u8]) -> Result<(String, String), AddressError> {
    let rest = std::str::from_utf8(rest)
        .map_err(|_| malformed(raw, "a remote address must be valid UTF-8"))?;
    let (user, host_and_rest) = match rest.split_once('@') {
        // An `@` after the first `:` belongs to the path or command.
        Some((user, tail)) if !user.contains(':') && !user.contains('[') => (Some(user), tail),
        _ => (None, rest),
    };
    let (host, tail) = if let Some(v6) = host_and_rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| malformed(raw, "an IPv6 host needs its closing ]"))?;
        let tail = after
            .strip_prefix(':')
            .ok_or_else(|| malformed(raw, "the host must be followed by :"))?;
        (host, tail)
    } else {
        host_and_rest
            .split_once(':')
            .ok_or_else(|| malformed(raw, "write it HOST:PATH or HOST:COMMAND"))?
    };
    if host.is_empty() || host.starts_with('-') {
        return Err(malformed(raw, "the host is missing or starts with -"));
    }
    if user.is_some_and(|u| u.is_empty() || u.starts_with('-')) {
        return Err(malformed(raw, "the user is empty or starts with -"));
    }
    if tail.is_empty() {
        return Err(malformed(
            raw,
            "nothing after the host: give the path or command",
        ));
    }
    let destination = match user {
        Some(user) => format!("{user}@{host}"),
        None => host.to_owned(),
    };
    Ok((destination, tail.to_owned()))
}

/// A destination as written in an address: an IPv6 host in brackets.
fn bracketed(destination: &str) -> String {
    let (user, host) = match destination.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, destination),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match user {
        Some(user) => format!("{user}@{host}"),
        None => host,
    }
}

fn malformed(raw: &[u8], reason: &'static str) -> AddressError {
    AddressError::Malformed {
        address: String::from_utf8_lossy(raw).into_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Address, AddressError> {
        s.parse()
    }

    #[test]
    fn local_forms() {
        let path = |p: &str| Ok(Address::Path(PathBuf::from(p)));
        assert_eq!(parse("/run/ipc.sock"), path("/run/ipc.sock"));
        assert_eq!(parse("unix:/run/ipc.sock"), path("/run/ipc.sock"));
        assert_eq!(parse("rel/ipc.sock"), path("rel/ipc.sock"));
        // A colon in a file name is a file name, unless it names a scheme.
        assert_eq!(parse("a:b.sock"), path("a:b.sock"));
        assert_eq!(parse("./tcp:1"), path("./tcp:1"));
        assert_eq!(parse("@ctl"), Ok(Address::Abstract(b"ctl".to_vec())));
        assert_eq!(parse("unix:@ctl"), Ok(Address::Abstract(b"ctl".to_vec())));
        assert_eq!(
            parse("unix:@ctl").unwrap().local_path(),
            Some(PathBuf::from("@ctl"))
        );
        assert_eq!(parse(""), Err(AddressError::Empty));
        assert!(matches!(
            parse("unix:"),
            Err(AddressError::Malformed { .. })
        ));
        // Not UTF-8: still a path.
        let odd = OsStr::from_bytes(b"/tmp/\xff.sock");
        assert_eq!(Address::parse(odd), Ok(Address::Path(PathBuf::from(odd))));
    }

    #[test]
    fn remote_forms() {
        assert_eq!(
            parse("ssh-unix:me@box:/run/ipc.sock"),
            Ok(Address::SshUnix {
                destination: "me@box".into(),
                path: "/run/ipc.sock".into()
            })
        );
        assert_eq!(
            parse("ssh-unix:[::1]:/run/a:b.sock"),
            Ok(Address::SshUnix {
                destination: "::1".into(),
                path: "/run/a:b.sock".into()
            })
        );
        assert_eq!(
            parse("ssh-exec:box:ipc-client bridge --socket /run/x@y.sock"),
            Ok(Address::SshExec {
                destination: "box".into(),
                command: "ipc-client bridge --socket /run/x@y.sock".into()
            })
        );
        assert_eq!(
            parse("ssh-exec:u@[fe80::1]:cat"),
            Ok(Address::SshExec {
                destination: "u@fe80::1".into(),
                command: "cat".into()
            })
        );
        for bad in [
            "ssh-unix:box",
            "ssh-unix:box:",
            "ssh-unix:box:relative.sock",
            "ssh-unix::/run/x",
            "ssh-unix:-oProxyCommand=x:/run/x",
            "ssh-exec:@box:cat",
            "ssh-exec:[::1:cat",
            "ssh-exec:[::1]cat",
        ] {
            assert!(
                matches!(parse(bad), Err(AddressError::Malformed { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        assert!(parse("ssh-unix:box:/x").unwrap().is_remote());
        assert_eq!(parse("ssh-unix:box:/x").unwrap().local_path(), None);
    }

    #[test]
    fn unsupported_schemes_are_named() {
        for (address, scheme) in [
            ("exec:/usr/bin/x", "exec"),
            ("vsock:3:1", "vsock"),
            ("ssh:box:/x", "ssh"),
        ] {
            assert_eq!(parse(address), Err(AddressError::Unsupported { scheme }));
        }
        assert!(
            AddressError::Unsupported { scheme: "vsock" }
                .to_string()
                .contains("./vsock:")
        );
    }

    #[test]
    fn tcp_forms() {
        let tcp = |host: &str, port| {
            Ok(Address::Tcp {
                host: host.into(),
                port,
            })
        };
        assert_eq!(parse("tcp:127.0.0.1:7000"), tcp("127.0.0.1", 7000));
        assert_eq!(
            parse("tcp:ipc.example.org:443"),
            tcp("ipc.example.org", 443)
        );
        assert_eq!(parse("tcp:[::1]:7000"), tcp("::1", 7000));
        assert_eq!(parse("tcp:[fe80::1%eth0]:1"), tcp("fe80::1%eth0", 1));
        assert_eq!(
            parse("tcp:[::1]:7000").unwrap().tcp_target().as_deref(),
            Some("[::1]:7000")
        );
        for bad in [
            "tcp:",
            "tcp:host",
            "tcp::80",
            "tcp:host:",
            "tcp:host:65536",
            "tcp:host:-1",
            "tcp:::1:80",
            "tcp:[::1]80",
            "tcp:[nope]:80",
            "tcp:-oops:80",
            "tcp:a b:80",
            "tcp:a/b:80",
        ] {
            assert!(
                matches!(parse(bad), Err(AddressError::Malformed { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        let address = parse("tcp:h:1").unwrap();
        assert_eq!(address.local_path(), None);
        assert!(!address.is_remote(), "not through ssh");
        assert_eq!(address.scheme(), "tcp");
    }

    proptest::proptest! {
        /// Any bytes: an address or an error, never a panic; what is read from printable input
        /// shows as an address that reads back the same.
        #[test]
        fn any_input_reads_or_fails_cleanly(
            prefix in proptest::sample::select(&[
                "", "unix:", "@", "unix:@", "ssh-unix:", "ssh-exec:", "tcp:", "unix:tcp:",
                "unix:ssh-exec:", "./", "unix:unix:",
            ][..]),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
        ) {
            let mut raw = prefix.as_bytes().to_vec();
            raw.extend_from_slice(&tail);
            if let Ok(address) = Address::parse(OsStr::from_bytes(&raw)) {
                // Printable input: what a person would type, and read back.
                if raw.iter().all(|b| (b' '..=b'~').contains(b)) {
                    proptest::prop_assert_eq!(parse(&address.to_string()), Ok(address));
                }
            }
        }

        /// Remote addresses built from parts read back as those parts.
        #[test]
        fn remote_parts_survive(
            user in proptest::option::of("[a-z_][a-z0-9_.-]{0,8}"),
            host in "[a-z0-9][a-z0-9.-]{0,12}|\\[[0-9a-f:]{2,12}\\]",
            rest in "/[ -~]{0,20}",
        ) {
            let destination = match &user {
                Some(user) => format!("{user}@{host}"),
                None => host.clone(),
            };
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let expected = match &user {
                Some(user) => format!("{user}@{bare}"),
                None => bare.to_owned(),
            };
            let address = parse(&format!("ssh-unix:{destination}:{rest}")).unwrap();
            proptest::prop_assert_eq!(address, Address::SshUnix {
                destination: expected.clone(),
                path: PathBuf::from(&rest),
            });
            let address = parse(&format!("ssh-exec:{destination}:{rest}")).unwrap();
            proptest::prop_assert_eq!(address, Address::SshExec {
                destination: expected,
                command: rest,
            });
        }
    }

    #[test]
    fn displays_as_written() {
        for s in [
            "/run/ipc.sock",
            "@ctl",
            "ssh-unix:me@box:/run/ipc.sock",
            "ssh-unix:[::1]:/run/x",
            "ssh-exec:u@[fe80::1]:ipc-client bridge",
            "tcp:127.0.0.1:7000",
            "tcp:[::1]:7000",
        ] {
            let address = parse(s).unwrap();
            assert_eq!(address.to_string(), s);
            assert_eq!(parse(&address.to_string()), Ok(address));
        }
        assert_eq!(parse("unix:/x").unwrap().to_string(), "/x");
    }
}
