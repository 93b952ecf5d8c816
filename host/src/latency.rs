//! Latency histograms that several processes add to at once: how long
//! handshakes waited for a pull, for Redis.
//!
//! The counters are atomics in each process's shared-memory metrics block;
//! stats add the processes' figures up and render them as JSON (quantiles
//! and buckets) and as a Prometheus histogram, from the one bucket table
//! below.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde_json::{json, Value};

/// Upper bounds of the buckets, in microseconds (1, 2.5, 5 per decade from
/// 50 us to 10 s, so that "within 1 ms" is a bucket edge); a last bucket
/// holds the rest.
pub const BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];
/// Buckets: one per bound, and one beyond the last.
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// One histogram's atomics. `repr(C)`, valid when zeroed.
#[repr(C)]
#[derive(Debug, Default)]
pub struct LatencyCounters {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}
crate::sys::shm::zeroable!(LatencyCounters { buckets, sum_us });

impl LatencyCounters {
    pub fn record(&self, took: Duration) {
        let us = took.as_micros() as u64;
        let bucket = BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn snapshot(&self) -> Latency {
        Latency {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

/// A histogram's figures, of one process or of several added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Counts by [`BOUNDS_US`] bucket...
    pub buckets: [u64; BUCKETS],
    /// ...and the total, in microseconds.
    pub sum_us: u64,
}

impl Latency {
    /// Both added up.
    pub fn plus(&self, other: &Latency) -> Latency {
        Latency {
            buckets: std::array::from_fn(|i| self.buckets[i] + other.buckets[i]),
            sum_us: self.sum_us + other.sum_us,
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound, in microseconds, of the bucket holding the `q`
    /// quantile (0 < q <= 1); `None` when empty, or when it lies beyond
    /// the last bound.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return BOUNDS_US.get(bucket).copied();
            }
        }
        None
    }

    /// The buckets for JSON stats: `[{"le_us": 50, "count": N}, …,
    /// {"le_us": "inf", …}]`.
    pub fn json_buckets(&self) -> Value {
        BOUNDS_US
            .iter()
            .map(|bound| json!(bound))
            .chain([json!("inf")])
            .zip(self.buckets)
            .map(|(le_us, count)| json!({ "le_us": le_us, "count": count }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets_and_quantiles_read_back() {
        // 98 in the 500 us bucket, one in each of the 1 ms and 25 ms ones.
        let counters = LatencyCounters::default();
        let durations_us = [(98, 300), (1, 900), (1, 20_000)];
        for (times, us) in durations_us {
            (0..times).for_each(|_| counters.record(Duration::from_micros(us)));
        }
        let figures = counters.snapshot();
        assert_eq!(figures.count(), 100);
        assert_eq!(figures.quantile_us(0.5), Some(500));
        assert_eq!(figures.quantile_us(0.99), Some(1_000));
        assert_eq!(figures.quantile_us(1.0), Some(25_000));
        let doubled = figures.plus(&figures);
        assert_eq!(doubled.count(), 200);
        assert_eq!(doubled.quantile_us(0.5), Some(500));
        assert_eq!(Latency::default().quantile_us(0.99), None);
    }

    #[test]
    fn beyond_the_last_bound_has_no_upper_bound() {
        let counters = LatencyCounters::default();
        counters.record(Duration::from_secs(11));
        assert_eq!(counters.snapshot().buckets[BUCKETS - 1], 1);
        assert_eq!(counters.snapshot().quantile_us(0.99), None);
    }
}
