//! Who may talk to the server: allow-lists checked against who each connection's peer is:
//! the credentials the kernel reports for a local one (`SO_PEERCRED`, and `SO_PEERGROUPS` for
//! its supplementary groups), on top of the socket file's mode and group; the verified
//! certificate of a remote one.

use localipc_core::{CertificateName, Peer, PeerCredentials};

/// Allow-lists of user ids, group ids and certificate names. A peer is admitted when every
/// list is empty, or when it is on one: its uid is in the uid list, or it is a member (primary
/// or supplementary) of a group in the gid list, or its certificate carries a name in the
/// certificate list. A peer without an identity (plain TCP, or TLS without a client
/// certificate) is admitted only where no list is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
    certificates: Vec<CertificateName>,
}

impl AccessPolicy {
    /// A policy with the given allow-lists (empty lists together admit everyone who can open the
    /// socket file).
    pub fn new(uids: Vec<u32>, gids: Vec<u32>) -> Self {
        Self {
            uids,
            gids,
            certificates: Vec::new(),
        }
    }

    /// This policy, also admitting certificates that carry one of `names`.
    #[must_use]
    pub fn certificates(mut self, names: Vec<CertificateName>) -> Self {
        self.certificates = names;
        self
    }

    /// Whether any allow-list is set.
    pub fn is_restricted(&self) -> bool {
        !self.uids.is_empty() || !self.gids.is_empty() || !self.certificates.is_empty()
    }

    /// Whether `peer` may talk to the server: a local peer's uid is on the uid list, or it is
    /// a member of a group on the gid list (its primary group or a supplementary one, as the
    /// kernel counts membership); a remote peer's certificate carries a name on the
    /// certificate list.
    pub fn admits(&self, peer: &Peer) -> bool {
        if !self.is_restricted() {
            return true;
        }
        match peer {
            Peer::Unix(credentials) => self.admits_local(credentials),
            Peer::Certificate { identity, .. } => {
                self.certificates.iter().any(|name| identity.matches(name))
            }
            _ => false,
        }
    }

    fn admits_local(&self, peer: &PeerCredentials) -> bool {
        self.uids.contains(&peer.uid) || self.gids.iter().any(|&gid| peer.in_group(gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(uid: u32, gid: u32) -> Peer {
        PeerCredentials::new(uid, gid, None).into()
    }

    #[test]
    fn empty_policy_admits_everyone() {
        assert!(AccessPolicy::default().admits(&local(0, 0)));
        let anonymous = Peer::Anonymous {
            address: "127.0.0.1:1".parse().unwrap(),
        };
        assert!(AccessPolicy::default().admits(&anonymous));
        assert!(!AccessPolicy::new(vec![0], vec![]).admits(&anonymous));
    }

    #[test]
    fn certificates_are_admitted_by_name() {
        use localipc_core::{CertificateIdentity, Fingerprint};
        let alice = CertificateIdentity::new(Fingerprint([1; 32]), "CN=alice")
            .with(CertificateName::CommonName("alice".into()));
        let peer = Peer::Certificate {
            identity: std::sync::Arc::new(alice),
            address: "10.0.0.1:4000".parse().unwrap(),
        };
        let by = |name: &str| AccessPolicy::default().certificates(vec![name.parse().unwrap()]);
        assert!(by("cn:alice").admits(&peer));
        assert!(!by("cn:bob").admits(&peer));
        assert!(
            !by("cn:alice").admits(&local(0, 0)),
            "a uid is not a certificate"
        );
        assert!(
            !AccessPolicy::new(vec![0], vec![0]).admits(&peer),
            "nor the reverse"
        );
    }

    #[test]
    fn uid_or_gid_match_admits() {
        let p = AccessPolicy::new(vec![1000], vec![50]);
        assert!(p.admits(&local(1000, 1)));
        assert!(p.admits(&local(7, 50)));
        assert!(!p.admits(&PeerCredentials::new(0, 0, Some(1)).into()));
        let member = PeerCredentials::new(7, 7, None).with_groups([3, 50]);
        assert!(p.admits(&member.into()), "a supplementary group counts");
        assert!(!p.admits(&PeerCredentials::new(7, 7, None).with_groups([3]).into()));
    }
}
