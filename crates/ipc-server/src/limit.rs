//! The connection caps: how many connections may be open at once, in all and per peer (a uid,
//! a client certificate, an anonymous client's IP address).
//!
//! The global cap is a counter and a notification, rather than a semaphore: taking and
//! returning a slot is one atomic operation each, with no lock, which matters because it
//! happens for every connection. The accept loop is the only one that waits for a slot.
//!
//! The per-peer cap is checked once the peer is known (after `accept`, or after the TLS
//! handshake): a connection over its peer's share is closed at once, so no peer can hold every
//! slot and lock the others out. Reaching and leaving a peer's cap is logged once each, with
//! the number refused meanwhile.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use localipc_core::{Fingerprint, Peer};
use tokio::sync::Notify;
use tracing::{info, warn};

/// The largest cap a server accepts (far above any process's descriptor limit; the counter
/// has room above it).
pub(crate) const MAX_CONNECTIONS: usize = usize::MAX >> 3;

/// At most `max` connections open at once.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
    /// Notified when a slot is returned while all were taken.
    freed: Notify,
}

/// One open connection's place under the cap, returned when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<ConnectionLimit>);

impl ConnectionLimit {
    /// A cap of `max` connections (at least one).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
        })
    }

    /// Takes a slot, waiting while all are taken.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the second look, so a slot returned in between is not missed.
            freed.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            freed.await;
        }
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == self.0.max {
            // All were taken: the accept loop may be waiting for this one.
            self.0.freed.notify_one();
        }
    }
}

/// Who a connection counts against under the per-peer cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    /// A local peer's uid.
    Uid(u32),
    /// A remote peer's certificate.
    Certificate(Fingerprint),
    /// An anonymous remote peer's IP address.
    Address(IpAddr),
}

impl PeerKey {
    pub(crate) fn of(peer: &Peer) -> Option<Self> {
        Some(match peer {
            Peer::Unix(c) => PeerKey::Uid(c.uid),
            Peer::Certificate { identity, .. } => PeerKey::Certificate(identity.fingerprint),
            Peer::Anonymous { address } => PeerKey::Address(address.ip()),
            _ => return None,
        })
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKey::Uid(uid) => write!(f, "uid {uid}"),
            PeerKey::Certificate(fp) => write!(f, "certificate {fp}"),
            PeerKey::Address(ip) => write!(f, "address {ip}"),
        }
    }
}

/// At most `max` connections open at once for any one peer.
#[derive(Debug)]
pub(crate) struct UidLimit {
    max: usize,
    /// Open connections and connections refused since the cap was reached, per peer with any
    /// open.
    uids: Mutex<HashMap<PeerKey, UidCount, UidHash>>,
}

/// Hashes a key with one multiplication per word (Fibonacci hashing), instead of the default
/// SipHash: the map is looked up twice per connection, and its keys are identities the kernel
/// or a certificate check vouched for (an anonymous TCP peer's address aside, and the map
/// holds at most the connection cap's worth).
type UidHash = std::hash::BuildHasherDefault<UidHasher>;

#[derive(Debug, Default)]
struct UidHasher(u64);

impl std::hash::Hasher for UidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u32(n as u32);
    }
}

#[derive(Debug, Default)]
struct UidCount {
    open: usize,
    refused: u64,
}

/// One open connection's place under its peer's cap, returned when dropped.
#[derive(Debug)]
pub(crate) struct UidSlot {
    limit: Arc<UidLimit>,
    uid: PeerKey,
}

impl UidLimit {
    /// A cap of `max` connections per uid (at least one), under a global cap of `global`; none
    /// at all if it is no lower than the global cap, which then bounds every uid alone.
    pub(crate) fn new(max: usize, global: usize) -> Option<Arc<Self>> {
        (max < global).then(|| {
            Arc::new(Self {
                max: max.max(1),
                uids: Mutex::default(),
            })
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PeerKey, UidCount, UidHash>> {
        // The map is left consistent at every point a panic could occur.
        self.uids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for a connection of `uid`, or `None` if that peer has its share open.
    pub(crate) fn try_acquire(self: &Arc<Self>, uid: PeerKey) -> Option<UidSlot> {
        let mut uids = self.lock();
        let count = uids.entry(uid).or_default();
        if count.open >= self.max {
            count.refused += 1;
            if count.refused == 1 {
                drop(uids);
                warn!(
                    peer = %uid,
                    max = self.max,
                    "this peer has its share of connections open; closing its new ones until one \
                     of them closes (logged again then)"
                );
            }
            return None;
        }
        count.open += 1;
        Some(UidSlot {
            limit: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut uids = self.limit.lock();
        let Some(count) = uids.get_mut(&self.uid) else {
            return;
        };
        count.open -= 1;
        let refused = std::mem::take(&mut count.refused);
        if count.open == 0 {
            uids.remove(&self.uid);
        }
        drop(uids);
        if refused > 0 {
            info!(
                peer = %self.uid,
                refused, "this peer is below its share of connections again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_uid_gets_its_share_and_no_more() {
        assert!(
            UidLimit::new(8, 8).is_none(),
            "no per-uid cap at the global one"
        );
        let limit = UidLimit::new(2, 8).unwrap();
        let a1 = limit.try_acquire(PeerKey::Uid(1)).unwrap();
        let _a2 = limit.try_acquire(PeerKey::Uid(1)).unwrap();
        assert!(
            limit.try_acquire(PeerKey::Uid(1)).is_none(),
            "a third for uid 1"
        );
        let b = limit
            .try_acquire(PeerKey::Uid(2))
            .expect("another uid is not held back");
        drop(a1);
        let _a3 = limit
            .try_acquire(PeerKey::Uid(1))
            .expect("a returned slot is free again");
        drop(b);
        assert!(
            !limit.lock().contains_key(&PeerKey::Uid(2)),
            "a uid with none open is forgotten"
        );
    }

    #[tokio::test]
    async fn waits_while_all_slots_are_taken() {
        let limit = ConnectionLimit::new(2);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        let mut third = tokio::spawn({
            let limit = Arc::clone(&limit);
            async move { limit.acquire().await }
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut third)
                .await
                .is_err(),
            "a third slot was given while two were taken"
        );
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("a returned slot wakes the waiter")
            .unwrap();
        assert_eq!(limit.open.load(Ordering::Acquire), 2);
    }

    #[tokio::test]
    async fn slots_return_when_dropped() {
        let limit = ConnectionLimit::new(3);
        for _ in 0..100 {
            let slots: Vec<Slot> = futures::future::join_all((0..3).map(|_| limit.acquire())).await;
            assert_eq!(limit.open.load(Ordering::Acquire), 3);
            drop(slots);
        }
        assert_eq!(limit.open.load(Ordering::Acquire), 0);
    }
}
