//! What a client connection is doing, for the decisions taken from
//! outside its request loop: closing it when idle, and how to stop it at
//! shutdown.
//!
//! Requests are counted, not timed, so that a request costs no clock read;
//! the connection's periodic check ([`IdleWatch`]) does the timing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A connection's requests and state, shared between its request loop and
/// the task's periodic check.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun so far.
    begun: AtomicU64,
    /// An HTTP/1.x connection waiting for the first byte of its next
    /// request: it can be closed at once, losing nothing.
    between_requests: AtomicBool,
    /// The connection is to close after the response in progress.
    closing: AtomicBool,
}

/// Marks a request in flight until dropped (even if the handler is cancelled).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Activity {
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Relaxed);
        self.begun.fetch_add(1, Relaxed);
        Busy(Arc::clone(self))
    }

    pub fn set_between_requests(&self, between: bool) {
        self.between_requests.store(between, Relaxed);
    }

    pub fn is_between_requests(&self) -> bool {
        self.between_requests.load(Relaxed)
    }

    /// Asks the request loop to close the connection after the response in
    /// progress.
    pub fn close_after_response(&self) {
        self.closing.store(true, Relaxed);
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Relaxed)
    }
}

/// What a connection's idle check saw last: a connection is quiet from
/// the first check that finds nothing in flight and no request begun since
/// the check before, so it closes between one and one and a quarter idle
/// timeouts after its last request (checks come every quarter).
#[derive(Debug)]
pub struct IdleWatch {
    begun: u64,
    quiet_since: Instant,
}

impl IdleWatch {
    pub fn new(now: Instant) -> Self {
        Self {
            begun: 0,
            quiet_since: now,
        }
    }

    /// How long the connection has been quiet, as of `now`.
    pub fn quiet_for(&mut self, activity: &Activity, now: Instant) -> Duration {
        let begun = activity.begun.load(Relaxed);
        if activity.in_flight.load(Relaxed) > 0 || begun != self.begun {
            self.begun = begun;
            self.quiet_since = now;
        }
        now.saturating_duration_since(self.quiet_since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_counts_from_the_first_check_that_sees_no_request() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let activity = Arc::new(Activity::default());
        let mut watch = IdleWatch::new(start);
        assert_eq!(watch.quiet_for(&activity, at(15)), Duration::from_secs(15));
        let busy = activity.begin();
        assert_eq!(watch.quiet_for(&activity, at(30)), Duration::ZERO);
        assert_eq!(
            watch.quiet_for(&activity, at(45)),
            Duration::ZERO,
            "in flight"
        );
        drop(busy);
        assert_eq!(watch.quiet_for(&activity, at(60)), Duration::from_secs(15));
        // A request that begins and ends between two checks still counts.
        drop(activity.begin());
        assert_eq!(watch.quiet_for(&activity, at(75)), Duration::ZERO);
        assert_eq!(watch.quiet_for(&activity, at(135)), Duration::from_secs(60));
    }
}
