//! A session's idle timer: how long the connection may sit without a complete request.
//!
//! The timer is set once and pushed back only when it fires early (frames arrived since), so a
//! busy connection costs no timer update per request. Without an idle timeout there is no
//! timer at all; with one, the timer is made on the first wait and kept on the heap, which
//! keeps it out of the session's future (allocated for every connection).

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Times how long a connection has gone without a complete request.
#[derive(Debug)]
pub(crate) struct IdleTimer(Option<Armed>);

/// The timer of a connection with an idle timeout.
#[derive(Debug)]
struct Armed {
    limit: Duration,
    /// When the last complete request arrived (or the connection opened).
    last: Instant,
    /// Made at the first wait.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    /// A timer that [`expired`](Self::expired) ends after `limit` without
    /// [`activity`](Self::activity); `None` never ends.
    pub(crate) fn new(limit: Option<Duration>) -> Self {
        Self(limit.map(|limit| Armed {
            limit,
            last: Instant::now(),
            sleep: None,
        }))
    }

    /// Records that a complete request arrived.
    pub(crate) fn activity(&mut self) {
        if let Some(armed) = &mut self.0 {
            armed.last = Instant::now();
        }
    }

    /// Completes, with the limit, once the connection has gone that long without a complete
    /// request; never without a limit. Cancel-safe: dropping it keeps the timer.
    pub(crate) async fn expired(&mut self) -> Duration {
        let Some(armed) = &mut self.0 else {
            return std::future::pending().await;
        };
        let (limit, last) = (armed.limit, armed.last);
        let sleep = armed
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline(last, limit))));
        loop {
            sleep.as_mut().await;
            let due = deadline(armed.last, limit);
            if Instant::now() >= due {
                return limit;
            }
            // Requests arrived since the timer was set: push it back and keep waiting.
            sleep.as_mut().reset(due);
        }
    }
}

/// `from + idle`, or a far-off instant if that does not fit.
fn deadline(from: Instant, idle: Duration) -> Instant {
    from.checked_add(idle)
        .unwrap_or_else(|| from + Duration::from_secs(86400 * 365 * 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_limit_without_activity() {
        let mut timer = IdleTimer::new(Some(Duration::from_secs(5)));
        let start = Instant::now();
        assert_eq!(timer.expired().await, Duration::from_secs(5));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_end_back() {
        let mut timer = IdleTimer::new(Some(Duration::from_secs(5)));
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        // A wait that is cancelled keeps the timer armed.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), timer.expired())
                .await
                .is_err()
        );
        timer.activity();
        timer.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn never_expires_without_a_limit() {
        let mut timer = IdleTimer::new(None);
        assert!(
            tokio::time::timeout(Duration::from_secs(86400), timer.expired())
                .await
                .is_err()
        );
        assert!(timer.0.is_none(), "no timer was made");
    }
}
