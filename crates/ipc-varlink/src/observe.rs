//! What a service observes of its own work, for the `io.ipc.Server` interface: counters
//! (`Stats`) and a live feed of connection and call events (`Monitor`).
//!
//! Events go through a bounded broadcast channel, and only while someone subscribes. A
//! subscriber that falls behind loses the oldest events (and is told how many), so one that
//! never reads costs the server a bounded amount of memory: the names an event carries are cut
//! to 512 bytes, so an event takes at most about 1.2 KiB, and the backlog (1,024 events by
//! default) at most about 1.2 MiB, whatever the callers send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use localipc_core::{Context, ServerCounters};
use tokio::sync::broadcast;

use crate::interfaces::server::{Event, EventKind, StatsReply};

/// Events kept by default for a subscriber that has not read them yet.
pub const DEFAULT_MONITOR_BACKLOG: usize = 1024;

/// The service's counters since it started.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    connections_open: AtomicU64,
    connections_served: AtomicU64,
    calls: AtomicU64,
    errors: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    refused_permission: AtomicU64,
}

impl Stats {
    /// The counters, with those of the server the service runs in.
    pub(crate) fn snapshot(&self, server: &ServerCounters) -> StatsReply {
        let load = |c: &AtomicU64| int(c.load(Ordering::Relaxed));
        StatsReply {
            connections_open: load(&self.connections_open),
            connections_served: load(&self.connections_served),
            calls: load(&self.calls),
            errors: load(&self.errors),
            bytes_received: load(&self.bytes_received),
            bytes_sent: load(&self.bytes_sent),
            connection_cap_reached: int(server.connection_cap_reached()),
            refused_uid_share: int(server.refused_uid_share()),
            refused_allow_list: int(server.refused_allow_list()),
            unfinished_bytes: int(server.unfinished_bytes() as u64),
            refused_unfinished_budget: int(server.refused_unfinished_budget()),
            refused_permission: load(&self.refused_permission),
        }
    }

    /// A call of `bytes` bytes on the wire arrived.
    pub(crate) fn call(&self, bytes: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(bytes as u64 + 1, Ordering::Relaxed);
    }

    /// A reply of `bytes` bytes was made.
    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes_sent
            .fetch_add(bytes as u64 + 1, Ordering::Relaxed);
    }

    /// A call was refused by a policy.
    pub(crate) fn refused(&self) {
        self.refused_permission.fetch_add(1, Ordering::Relaxed);
    }

    /// An error reply was made.
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A count as a Varlink `int`.
fn int(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl Event {
    fn new(kind: EventKind, connection: u64) -> Self {
        Self {
            kind,
            connection: int(connection),
            uid: None,
            pid: None,
            method: None,
            error: None,
            missed: None,
        }
    }

    /// What a subscriber that fell behind is sent: how many events it lost.
    pub(crate) fn missed(count: u64) -> Self {
        Self {
            missed: Some(int(count)),
            ..Self::new(EventKind::Missed, 0)
        }
    }
}

/// Counters plus the event feed.
#[derive(Debug)]
pub(crate) struct Observer {
    pub(crate) stats: Stats,
    /// The server's own counters (all 0 unless the service was given them).
    pub(crate) server: Arc<ServerCounters>,
    events: broadcast::Sender<Event>,
    /// Open subscriptions: one atomic load tells every call whether to make events at all
    /// (the channel's own count takes its lock).
    subscribers: Arc<AtomicUsize>,
}

/// A subscription to the events; unsubscribes when dropped.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) events: broadcast::Receiver<Event>,
    subscribers: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Observer {
    /// An observer that keeps up to `backlog` events (at least 1) for a subscriber, and
    /// reports `server`'s counters beside its own.
    pub(crate) fn new(backlog: usize, server: Arc<ServerCounters>) -> Self {
        Self {
            stats: Stats::default(),
            server,
            events: broadcast::channel(backlog.max(1)).0,
            subscribers: Arc::default(),
        }
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            events: self.events.subscribe(),
            subscribers: Arc::clone(&self.subscribers),
        }
    }

    fn watched(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn connected(&self, ctx: &Context) {
        self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
        self.stats
            .connections_served
            .fetch_add(1, Ordering::Relaxed);
        if self.watched() {
            let peer = ctx.peer().unix();
            let _ = self.events.send(Event {
                uid: peer.map(|p| p.uid.into()),
                pid: peer.and_then(|p| p.pid).map(Into::into),
                ..Event::new(EventKind::Connected, ctx.connection_id())
            });
        }
    }

    pub(crate) fn disconnected(&self, ctx: &Context) {
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        if self.watched() {
            let _ = self
                .events
                .send(Event::new(EventKind::Disconnected, ctx.connection_id()));
        }
    }

    /// A call of `method` was answered, with the error `error` if it failed.
    pub(crate) fn answered(&self, ctx: &Context, method: &str, error: Option<&str>) {
        if self.watched() {
            // Names are cut (see `wire::bounded_name`), so every event is small: it fits any
            // reasonable maximum message, and the backlog is bounded in bytes as well as in
            // events.
            let _ = self.events.send(Event {
                method: Some(crate::wire::bounded_name(method).into_owned()),
                error: error.map(|e| crate::wire::bounded_name(e).into_owned()),
                ..Event::new(EventKind::Call, ctx.connection_id())
            });
        }
    }
}
