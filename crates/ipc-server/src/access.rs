//! Who may talk to the server: allow-lists checked against the peer credentials the kernel
//! reports for each connection (`SO_PEERCRED`, and `SO_PEERGROUPS` for its supplementary
//! groups), on top of the socket file's mode and group.

use localipc_core::PeerCredentials;

/// Allow-lists of user and group ids. A peer is admitted when both lists are empty, or when its
/// uid is in the uid list, or it is a member (primary or supplementary) of a group in the gid
/// list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl AccessPolicy {
    /// A policy with the given allow-lists (empty lists together admit everyone who can open the
    /// socket file).
    pub fn new(uids: Vec<u32>, gids: Vec<u32>) -> Self {
        Self { uids, gids }
    }

    /// Whether any allow-list is set.
    pub fn is_restricted(&self) -> bool {
        !self.uids.is_empty() || !self.gids.is_empty()
    }

    /// Whether `peer` may talk to the server: its uid is on the uid list, or it is a member of
    /// a group on the gid list (its primary group or a supplementary one, as the kernel counts
    /// membership).
    pub fn admits(&self, peer: &PeerCredentials) -> bool {
        !self.is_restricted()
            || self.uids.contains(&peer.uid)
            || self.gids.iter().any(|&gid| peer.in_group(gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_admits_everyone() {
        assert!(AccessPolicy::default().admits(&PeerCredentials::new(0, 0, None)));
    }

    #[test]
    fn uid_or_gid_match_admits() {
        let p = AccessPolicy::new(vec![1000], vec![50]);
        assert!(p.admits(&PeerCredentials::new(1000, 1, None)));
        assert!(p.admits(&PeerCredentials::new(7, 50, None)));
        assert!(!p.admits(&PeerCredentials::new(0, 0, Some(1))));
        let member = PeerCredentials::new(7, 7, None).with_groups([3, 50]);
        assert!(p.admits(&member), "a supplementary group counts");
        assert!(!p.admits(&PeerCredentials::new(7, 7, None).with_groups([3])));
    }
}
