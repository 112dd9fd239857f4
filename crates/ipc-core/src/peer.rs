//! Who is at the other end of a connection ([`Peer`]): a local process, as the kernel reports
//! it ([`PeerCredentials`]), or a remote client, by the certificate it proved it holds
//! ([`CertificateIdentity`]); and how allow-lists name certificates ([`CertificateName`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Peer {
    /// A process on this host, over a Unix socket, with the credentials the kernel reported.
    Unix(PeerCredentials),
    /// A client over TCP with TLS, by the certificate it presented and the server verified.
    Certificate {
        /// What the certificate says of its holder.
        identity: Arc<CertificateIdentity>,
        /// The client's address and port.
        address: SocketAddr,
    },
    /// A client over TCP without a verified identity: plain TCP on a loopback address (only
    /// where the server was told to allow it), or TLS where client certificates are optional
    /// and none was presented.
    Anonymous {
        /// The client's address and port.
        address: SocketAddr,
    },
}

impl Peer {
    /// The kernel's credentials of a local peer; `None` for a remote one.
    pub fn unix(&self) -> Option<&PeerCredentials> {
        match self {
            Peer::Unix(credentials) => Some(credentials),
            _ => None,
        }
    }

    /// The verified certificate of a remote peer; `None` for a local or anonymous one.
    pub fn certificate(&self) -> Option<&CertificateIdentity> {
        match self {
            Peer::Certificate { identity, .. } => Some(identity),
            _ => None,
        }
    }

    /// The user id of a local peer; `None` for a remote one.
    pub fn uid(&self) -> Option<u32> {
        self.unix().map(|c| c.uid)
    }

    /// The network address of a remote peer; `None` for a local one.
    pub fn address(&self) -> Option<SocketAddr> {
        match self {
            Peer::Unix(_) => None,
            Peer::Certificate { address, .. } | Peer::Anonymous { address } => Some(*address),
        }
    }
}

impl From<PeerCredentials> for Peer {
    fn from(credentials: PeerCredentials) -> Self {
        Peer::Unix(credentials)
    }
}

/// `uid 1000 (pid 42)`, `certificate CN=alice (sha256:…) from 10.0.0.2:51000`, `anonymous
/// 127.0.0.1:51000`: for logs and error messages.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Unix(c) => {
                write!(f, "uid {} gid {}", c.uid, c.gid)?;
                match c.pid {
                    Some(pid) => write!(f, " (pid {pid})"),
                    None => Ok(()),
                }
            }
            Peer::Certificate { identity, address } => {
                write!(f, "certificate {identity} from {address}")
            }
            Peer::Anonymous { address } => write!(f, "anonymous {address}"),
        }
    }
}

/// The credentials of the process at the other end of a connection, as the kernel reported them
/// when it connected (`SO_PEERCRED`, and `SO_PEERGROUPS` for its supplementary groups).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
    /// The peer's process id, where the platform reports it.
    pub pid: Option<i32>,
    /// The peer's supplementary groups (Linux 4.13 and later report them; empty where the
    /// kernel does not).
    pub groups: Arc<[u32]>,
}

impl PeerCredentials {
    /// Credentials with the given user, group and process ids, and no supplementary groups.
    pub fn new(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        Self {
            uid,
            gid,
            pid,
            groups: Arc::from([]),
        }
    }

    /// These credentials with `groups` as the supplementary groups.
    pub fn with_groups(mut self, groups: impl Into<Arc<[u32]>>) -> Self {
        self.groups = groups.into();
        self
    }

    /// Whether the peer is a member of `gid`: its primary group, or one of its supplementary
    /// groups, as the kernel counts membership.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The SHA-256 digest of a certificate's DER encoding: the name that no two certificates
/// share. Shown and read as `sha256:` and 64 hex digits (colons between bytes are accepted).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = CertificateNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CertificateNameError::new(s, "a fingerprint is sha256: and 64 hex digits");
        let hex = s.strip_prefix("sha256:").unwrap_or(s).replace(':', "");
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

/// What a verified client certificate says of its holder: its subject, its subject
/// alternative names, and its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CertificateIdentity {
    /// The SHA-256 digest of the certificate.
    pub fingerprint: Fingerprint,
    /// The subject's distinguished name, as RFC 4514 writes it (`CN=alice,O=Example`).
    pub subject: String,
    /// The subject's common names (`CN`), in order.
    pub common_names: Vec<String>,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// URIs among the subject alternative names (a SPIFFE id, say).
    pub uris: Vec<String>,
    /// Email addresses among the subject alternative names.
    pub emails: Vec<String>,
}

impl CertificateIdentity {
    /// An identity with `fingerprint` and `subject`, and no names yet.
    pub fn new(fingerprint: Fingerprint, subject: impl Into<String>) -> Self {
        Self {
            fingerprint,
            subject: subject.into(),
            common_names: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
        }
    }

    /// Adds `name` to the matching list (a subject or fingerprint replaces the one there).
    #[must_use]
    pub fn with(mut self, name: CertificateName) -> Self {
        match name {
            CertificateName::Fingerprint(f) => self.fingerprint = f,
            CertificateName::Subject(s) => self.subject = s,
            CertificateName::CommonName(n) => self.common_names.push(n),
            CertificateName::Dns(n) => self.dns_names.push(n),
            CertificateName::Ip(ip) => self.ip_addresses.push(ip),
            CertificateName::Uri(u) => self.uris.push(u),
            CertificateName::Email(e) => self.emails.push(e),
        }
        self
    }

    /// Whether the certificate carries `name`. DNS names and email addresses compare without
    /// regard to ASCII case; everything else compares exactly.
    pub fn matches(&self, name: &CertificateName) -> bool {
        let ci = |list: &[String], want: &str| list.iter().any(|n| n.eq_ignore_ascii_case(want));
        match name {
            CertificateName::Fingerprint(f) => self.fingerprint == *f,
            CertificateName::Subject(s) => self.subject == *s,
            CertificateName::CommonName(n) => self.common_names.iter().any(|c| c == n),
            CertificateName::Dns(n) => ci(&self.dns_names, n),
            CertificateName::Ip(ip) => self.ip_addresses.contains(ip),
            CertificateName::Uri(u) => self.uris.iter().any(|x| x == u),
            CertificateName::Email(e) => ci(&self.emails, e),
        }
    }
}

/// `CN=alice (sha256:…)`: the first common name, or the whole subject, and the fingerprint.
impl fmt::Display for CertificateIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.common_names.first() {
            Some(cn) => write!(f, "CN={cn}")?,
            None if !self.subject.is_empty() => f.write_str(&self.subject)?,
            None => f.write_str("(no subject)")?,
        }
        write!(f, " ({})", self.fingerprint)
    }
}

/// One way an allow-list or a policy names certificates. Written `cn:NAME`, `dns:NAME`,
/// `ip:ADDRESS`, `uri:URI`, `email:ADDRESS`, `subject:DN` (RFC 4514, as
/// [`CertificateIdentity::subject`] shows it) or `sha256:HEX` (the fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateName {
    /// The certificate whose SHA-256 digest this is.
    Fingerprint(Fingerprint),
    /// Certificates whose subject is exactly this distinguished name.
    Subject(String),
    /// Certificates with this common name in their subject.
    CommonName(String),
    /// Certificates with this DNS name among their alternative names.
    Dns(String),
    /// Certificates with this IP address among their alternative names.
    Ip(IpAddr),
    /// Certificates with this URI among their alternative names.
    Uri(String),
    /// Certificates with this email address among their alternative names.
    Email(String),
}

/// A certificate name that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad certificate name {given:?}: {reason}")]
pub struct CertificateNameError {
    given: String,
    reason: &'static str,
}

impl CertificateNameError {
    fn new(given: &str, reason: &'static str) -> Self {
        Self {
            given: given.to_owned(),
            reason,
        }
    }
}

impl FromStr for CertificateName {
    type Err = CertificateNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const KINDS: &str = "write cn:, dns:, ip:, uri:, email:, subject: or sha256: before it";
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| CertificateNameError::new(s, KINDS))?;
        if value.is_empty() {
            return Err(CertificateNameError::new(s, "the name is empty"));
        }
        let value_owned = value.to_owned();
        Ok(match kind {
            "sha256" => CertificateName::Fingerprint(s.parse()?),
            "subject" => CertificateName::Subject(value_owned),
            "cn" => CertificateName::CommonName(value_owned),
            "dns" => CertificateName::Dns(value_owned),
            "uri" => CertificateName::Uri(value_owned),
            "email" => CertificateName::Email(value_owned),
            "ip" => CertificateName::Ip(
                value
                    .parse()
                    .map_err(|_| CertificateNameError::new(s, "not an IP address"))?,
            ),
            _ => return Err(CertificateNameError::new(s, KINDS)),
        })
    }
}

impl fmt::Display for CertificateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateName::Fingerprint(fp) => write!(f, "{fp}"),
            CertificateName::Subject(s) => write!(f, "subject:{s}"),
            CertificateName::CommonName(n) => write!(f, "cn:{n}"),
            CertificateName::Dns(n) => write!(f, "dns:{n}"),
            CertificateName::Ip(ip) => write!(f, "ip:{ip}"),
            CertificateName::Uri(u) => write!(f, "uri:{u}"),
            CertificateName::Email(e) => write!(f, "email:{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> CertificateIdentity {
        CertificateIdentity::new(Fingerprint([7; 32]), "CN=alice,O=Example")
            .with(CertificateName::CommonName("alice".into()))
            .with(CertificateName::Dns("Alice.Example.org".into()))
            .with(CertificateName::Ip("10.0.0.2".parse().unwrap()))
            .with(CertificateName::Uri("spiffe://example.org/alice".into()))
    }

    #[test]
    fn names_read_back_as_written_and_match() {
        let fp = format!("{}", Fingerprint([7; 32]));
        for written in [
            "cn:alice",
            "dns:alice.example.org",
            "ip:10.0.0.2",
            "uri:spiffe://example.org/alice",
            "subject:CN=alice,O=Example",
            fp.as_str(),
        ] {
            let name: CertificateName = written.parse().unwrap();
            assert_eq!(name.to_string(), written);
            assert!(alice().matches(&name), "{written} names alice");
        }
        for other in [
            "cn:bob",
            "dns:bob.example.org",
            "ip:10.0.0.3",
            "uri:spiffe://x/alice",
        ] {
            assert!(!alice().matches(&other.parse().unwrap()), "{other}");
        }
        assert!(!alice().matches(&CertificateName::Fingerprint(Fingerprint([8; 32]))));
    }

    #[test]
    fn bad_names_say_why() {
        for bad in [
            "alice",
            "cn:",
            "ip:alice",
            "sha256:12",
            "host:alice",
            "sha256:zz",
        ] {
            let e = bad.parse::<CertificateName>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        let colons = (0..32).map(|_| "0a").collect::<Vec<_>>().join(":");
        assert_eq!(
            format!("sha256:{colons}").parse::<Fingerprint>().unwrap(),
            Fingerprint([10; 32])
        );
    }

    proptest::proptest! {
        /// Any text behind any kind: a name or an error, never a panic; a name shows as text
        /// that reads back as the same name.
        #[test]
        fn any_text_reads_or_fails_cleanly(
            kind in proptest::sample::select(&[
                "", "cn:", "dns:", "ip:", "uri:", "email:", "subject:", "sha256:", "x:",
            ][..]),
            tail in ".{0,80}",
        ) {
            let text = format!("{kind}{tail}");
            if let Ok(name) = text.parse::<CertificateName>() {
                proptest::prop_assert_eq!(name.to_string().parse::<CertificateName>(), Ok(name));
            }
        }
    }

    #[test]
    fn peers_show_who_they_are() {
        let unix = Peer::from(PeerCredentials::new(1000, 100, Some(42)));
        assert_eq!(unix.to_string(), "uid 1000 gid 100 (pid 42)");
        assert_eq!(unix.uid(), Some(1000));
        let remote = Peer::Certificate {
            identity: Arc::new(alice()),
            address: "10.0.0.2:5000".parse().unwrap(),
        };
        assert!(
            remote
                .to_string()
                .starts_with("certificate CN=alice (sha256:0707")
        );
        assert_eq!(remote.uid(), None);
        assert!(remote.certificate().is_some());
    }
}
