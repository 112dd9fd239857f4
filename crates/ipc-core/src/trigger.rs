//! [`Trigger`]: a one-way signal with many waiters (the server's shutdown, forced shutdown) that
//! costs one atomic load to poll while it has not fired. Handlers see the server's shutdown
//! through it ([`Context::shutdown`](crate::Context::shutdown)).
//!
//! Every session waits on the shutdown signals each time it waits for its socket. A
//! `CancellationToken` takes two mutexes on every poll, which showed in profiles of a busy
//! server; a [`Fired`] future registers its task once, and after that only reads a flag until
//! the task's waker changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    notify: Notify,
}

/// A signal that fires once and stays fired; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Trigger(Arc<Inner>);

impl Trigger {
    /// Fires the signal: every waiter, present and future, completes.
    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether the signal has fired.
    pub fn is_fired(&self) -> bool {
        self.0.fired.load(Ordering::SeqCst)
    }

    /// A future that completes when the signal fires (at once if it has).
    pub fn fired(&self) -> Fired<'_> {
        Fired {
            inner: &self.0,
            // Created now, so a `fire` from here on wakes it even before its first poll.
            notified: self.0.notify.notified(),
            registered: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// Completes when its [`Trigger`] fires.
    #[derive(Debug)]
    pub struct Fired<'a> {
        inner: &'a Inner,
        #[pin]
        notified: Notified<'a>,
        // The waker the `Notified` holds, once it has been polled.
        registered: Option<Waker>,
    }
}

impl Future for Fired<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.inner.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            // The notification already holds a waker for this task.
            return Poll::Pending;
        }
        match this.notified.poll(cx) {
            // Only `fire` notifies.
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                *this.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_every_waiter_once_fired() {
        let trigger = Trigger::default();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let t = trigger.clone();
                tokio::spawn(async move { t.fired().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(futures::poll!(std::pin::pin!(trigger.fired())).is_pending());
        trigger.fire();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("woken")
                .unwrap();
        }
        assert!(futures::poll!(std::pin::pin!(trigger.fired())).is_ready());
    }

    #[tokio::test]
    async fn completes_at_once_when_already_fired() {
        let trigger = Trigger::default();
        trigger.fire();
        // Ready on the first poll, with no wake-up needed.
        assert!(futures::poll!(std::pin::pin!(trigger.fired())).is_ready());
    }

    #[tokio::test]
    async fn a_future_created_before_the_fire_but_never_polled_completes() {
        let trigger = Trigger::default();
        let fired = trigger.fired();
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), fired)
            .await
            .expect("completed");
    }

    #[tokio::test]
    async fn stays_pending_across_polls_until_fired() {
        let trigger = Trigger::default();
        let mut fired = std::pin::pin!(trigger.fired());
        for _ in 0..3 {
            assert!(futures::poll!(fired.as_mut()).is_pending());
        }
        let t = trigger.clone();
        tokio::spawn(async move { t.fire() });
        tokio::time::timeout(Duration::from_secs(5), fired)
            .await
            .expect("woken after repeated polls");
    }
}
