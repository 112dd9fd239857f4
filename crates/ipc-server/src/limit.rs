//! The connection cap: how many connections may be open at once.
//!
//! A counter and a notification, rather than a semaphore: taking and returning a slot is one
//! atomic operation each, with no lock, which matters because it happens for every
//! connection. The accept loop is the only one that waits for a slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

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

    fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
