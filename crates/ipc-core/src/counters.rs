//! Counters of the connections a server turned away or made wait, shared between the server
//! that counts them and whatever reports them (the Varlink `io.ipc.Server.Stats`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How often a server's connection caps and allow-lists came into play since it started. A
/// server counts into it (see `localipc_server::Builder::counters`); a service reports it.
#[derive(Debug, Default)]
pub struct ServerCounters {
    connection_cap_reached: AtomicU64,
    refused_uid_share: AtomicU64,
    refused_allow_list: AtomicU64,
    unfinished_bytes: AtomicUsize,
    refused_unfinished_budget: AtomicU64,
}

impl ServerCounters {
    /// Times every connection slot was taken, so that new connections had to wait.
    pub fn connection_cap_reached(&self) -> u64 {
        self.connection_cap_reached.load(Ordering::Relaxed)
    }

    /// Connections closed at once because their uid had its share of connections open.
    pub fn refused_uid_share(&self) -> u64 {
        self.refused_uid_share.load(Ordering::Relaxed)
    }

    /// Connections closed at once because their peer was on no allow-list.
    pub fn refused_allow_list(&self) -> u64 {
        self.refused_allow_list.load(Ordering::Relaxed)
    }

    /// Bytes the server holds for messages not yet complete, across all connections.
    pub fn unfinished_bytes(&self) -> usize {
        self.unfinished_bytes.load(Ordering::Relaxed)
    }

    /// Connections closed because the budget for unfinished messages was spent.
    pub fn refused_unfinished_budget(&self) -> u64 {
        self.refused_unfinished_budget.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more of unfinished messages if the total stays within `budget`; counts a
    /// refusal and returns false if not.
    pub fn hold_unfinished(&self, bytes: usize, budget: usize) -> bool {
        let held = self
            .unfinished_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= budget)
            })
            .is_ok();
        if !held {
            self.refused_unfinished_budget
                .fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    /// Gives back `bytes` of unfinished messages taken with
    /// [`hold_unfinished`](Self::hold_unfinished).
    pub fn release_unfinished(&self, bytes: usize) {
        self.unfinished_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Counts one time every connection slot was taken.
    pub fn count_connection_cap_reached(&self) {
        self.connection_cap_reached.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection refused over its uid's share.
    pub fn count_refused_uid_share(&self) {
        self.refused_uid_share.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection refused by the allow-lists.
    pub fn count_refused_allow_list(&self) {
        self.refused_allow_list.fetch_add(1, Ordering::Relaxed);
    }
}
