//! How the pulls of one process ended ([`crate::sync::pull`]): the
//! outcomes, the counters in the process's metrics block, and their
//! figures.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cachet_core::sync::PullOutcome;

use crate::latency::{Latency, LatencyCounters};

/// How a connection's pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The session is in the cache now.
    Found,
    /// Every peer asked answered that it has none.
    NotFound,
    /// The deadline passed first.
    TimedOut,
    /// Not asked: too many pulls in flight, or no peer answering.
    Dropped,
}

impl From<PullOutcome> for Pulled {
    fn from(outcome: PullOutcome) -> Pulled {
        match outcome {
            PullOutcome::Found => Pulled::Found,
            PullOutcome::NotFound => Pulled::NotFound,
            PullOutcome::TimedOut => Pulled::TimedOut,
        }
    }
}

/// A process's pull counters, in its shared-memory metrics block.
/// `repr(C)`, all atomics, valid when zeroed.
#[repr(C)]
#[derive(Debug, Default)]
pub struct PullCounters {
    asked: AtomicU64,
    found: AtomicU64,
    not_found: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
    wait: LatencyCounters,
}
crate::sys::shm::zeroable!(PullCounters {
    asked,
    found,
    not_found,
    timed_out,
    dropped,
    wait
});

/// Pull figures of one process, or of all added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullFigures {
    /// Pulls asked of the peers.
    pub asked: u64,
    pub found: u64,
    pub not_found: u64,
    pub timed_out: u64,
    /// Misses not pulled: bounds reached, or no peer answering.
    pub dropped: u64,
    /// How long handshakes waited for the pulls asked.
    pub wait: Latency,
}

impl PullCounters {
    pub fn count(&self, pulled: Pulled, waited: Duration) {
        let counter = match pulled {
            Pulled::Found => &self.found,
            Pulled::NotFound => &self.not_found,
            Pulled::TimedOut => &self.timed_out,
            Pulled::Dropped => {
                self.dropped.fetch_add(1, Relaxed);
                return;
            }
        };
        counter.fetch_add(1, Relaxed);
        self.asked.fetch_add(1, Relaxed);
        self.wait.record(waited);
    }

    pub fn snapshot(&self) -> PullFigures {
        PullFigures {
            asked: self.asked.load(Relaxed),
            found: self.found.load(Relaxed),
            not_found: self.not_found.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            wait: self.wait.snapshot(),
        }
    }
}

impl PullFigures {
    /// Both added up.
    pub fn plus(&self, other: &PullFigures) -> PullFigures {
        PullFigures {
            asked: self.asked + other.asked,
            found: self.found + other.found,
            not_found: self.not_found + other.not_found,
            timed_out: self.timed_out + other.timed_out,
            dropped: self.dropped + other.dropped,
            wait: self.wait.plus(&other.wait),
        }
    }

    /// Pulls by how they ended, named as in stats.
    pub fn outcomes(&self) -> [(&'static str, u64); 4] {
        [
            ("found", self.found),
            ("not_found", self.not_found),
            ("timed_out", self.timed_out),
            ("dropped", self.dropped),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_are_counted_by_outcome_and_only_asked_ones_timed() {
        // How the wait is bucketed is `latency`'s business, tested there.
        let counters = PullCounters::default();
        let outcomes = [
            Pulled::Found,
            Pulled::Found,
            Pulled::NotFound,
            Pulled::TimedOut,
            Pulled::Dropped,
        ];
        for pulled in outcomes {
            counters.count(pulled, Duration::from_micros(300));
        }
        let figures = counters.snapshot();
        assert_eq!(
            figures.outcomes(),
            [
                ("found", 2),
                ("not_found", 1),
                ("timed_out", 1),
                ("dropped", 1)
            ]
        );
        assert_eq!(figures.asked, 4, "a dropped miss was never asked");
        assert_eq!(figures.wait.count(), 4, "nor timed");
        let doubled = figures.plus(&figures);
        assert_eq!(
            (doubled.asked, doubled.dropped, doubled.wait.count()),
            (8, 2, 8)
        );
    }
}
