//! What the clients measured. Each client fills its own [`Stats`] without
//! sharing anything; they are merged once the run is over.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Why a connection or a request failed. Named in the report as
/// [`ErrorKind::name`] spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// TCP connect refused or failed.
    Connect,
    /// The TLS handshake failed, or a TLS alert or record error later.
    Tls,
    /// A response whose status is not 2xx or 3xx.
    Http,
    /// Connect + handshake, or one request, took longer than `--timeout`.
    Timeout,
    /// Anything else: a malformed or truncated response, a reset.
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Http,
        ErrorKind::Timeout,
        ErrorKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Http => "http",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Latency samples in microseconds, 3 significant digits: bounded memory
/// however long the run, and a p99.9 that is exact to 0.1%.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // 1 µs to 1 h; auto-resize covers anything longer rather than
        // dropping the sample.
        let mut histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("3 significant digits over 1 µs..1 h is a valid histogram");
        histogram.auto(true);
        Latency(histogram)
    }

    pub fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // With auto-resize on, recording only fails past u64 range, which
        // saturating_record clamps instead.
        self.0.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both sides were made by `new` with the same precision, and auto-resize
        // is on, so adding cannot fail; a failure would only lose samples.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0.5 for p50), or `None` with no samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_micros(self.0.value_at_quantile(q)))
    }

    pub fn max(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_micros(self.0.max()))
    }
}

/// Handshakes and errors on one target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetStats {
    pub full: u64,
    pub resumed: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub full: u64,
    pub resumed: u64,
    /// Handshakes after each client's first successful one: the only ones
    /// that had a session to offer, so the denominator of the resumption
    /// ratio.
    pub offered: u64,
    /// Of those, how many resumed.
    pub offered_resumed: u64,
    pub requests: u64,
    errors: [u64; 5],
    /// The first message of each kind, so a report can say what went wrong.
    error_examples: [Option<String>; 5],
    pub handshake_full: Latency,
    pub handshake_resumed: Latency,
    pub request: Latency,
    pub per_target: Vec<TargetStats>,
}

impl Stats {
    pub fn new(targets: usize) -> Self {
        Stats {
            per_target: vec![TargetStats::default(); targets],
            ..Stats::default()
        }
    }

    /// A completed handshake; `after_first` when the client had completed
    /// one before (so had something to offer).
    pub fn handshake(&mut self, target: usize, resumed: bool, after_first: bool, took: Duration) {
        if resumed {
            self.resumed += 1;
            self.per_target[target].resumed += 1;
            self.handshake_resumed.record(took);
        } else {
            self.full += 1;
            self.per_target[target].full += 1;
            self.handshake_full.record(took);
        }
        if after_first {
            self.offered += 1;
            self.offered_resumed += u64::from(resumed);
        }
    }

    pub fn request(&mut self, took: Duration) {
        self.requests += 1;
        self.request.record(took);
    }

    pub fn error(&mut self, target: usize, kind: ErrorKind, message: impl FnOnce() -> String) {
        self.errors[kind.index()] += 1;
        self.per_target[target].errors += 1;
        self.error_examples[kind.index()].get_or_insert_with(message);
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn error_example(&self, kind: ErrorKind) -> Option<&str> {
        self.error_examples[kind.index()].as_deref()
    }

    /// All handshakes, full and resumed.
    pub fn handshake_latency(&self) -> Latency {
        let mut all = self.handshake_full.clone();
        all.merge(&self.handshake_resumed);
        all
    }

    /// resumed / handshakes that had a session to offer; `None` before any.
    pub fn resumption_ratio(&self) -> Option<f64> {
        (self.offered > 0).then(|| self.offered_resumed as f64 / self.offered as f64)
    }

    pub fn merge(&mut self, other: &Stats) {
        self.full += other.full;
        self.resumed += other.resumed;
        self.offered += other.offered;
        self.offered_resumed += other.offered_resumed;
        self.requests += other.requests;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        for (mine, theirs) in self.error_examples.iter_mut().zip(&other.error_examples) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
        self.handshake_full.merge(&other.handshake_full);
        self.handshake_resumed.merge(&other.handshake_resumed);
        self.request.merge(&other.request);
        if self.per_target.len() < other.per_target.len() {
            self.per_target
                .resize(other.per_target.len(), TargetStats::default());
        }
        for (mine, theirs) in self.per_target.iter_mut().zip(&other.per_target) {
            mine.full += theirs.full;
            mine.resumed += theirs.resumed;
            mine.errors += theirs.errors;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_a_uniform_run() {
        let mut latency = Latency::new();
        for i in 1..=1000 {
            latency.record(ms(i));
        }
        // Within hdrhistogram's 3 significant digits of the exact ranks.
        let close = |got: Option<Duration>, want: Duration| {
            let got = got.unwrap().as_secs_f64();
            let want = want.as_secs_f64();
            assert!((got - want).abs() <= want * 0.001, "{got} vs {want}");
        };
        close(latency.quantile(0.5), ms(500));
        close(latency.quantile(0.99), ms(990));
        close(latency.quantile(0.999), ms(999));
        close(latency.max(), ms(1000));
        assert_eq!(latency.count(), 1000);
    }

    #[test]
    fn a_rare_outlier_shows_in_p999_only() {
        let mut latency = Latency::new();
        for _ in 0..9990 {
            latency.record(ms(1));
        }
        for _ in 0..10 {
            latency.record(ms(900));
        }
        assert_eq!(latency.quantile(0.5), Some(Duration::from_micros(1000)));
        assert_eq!(latency.quantile(0.99), Some(Duration::from_micros(1000)));
        let p999 = latency.quantile(0.9995).unwrap();
        assert!(p999 >= ms(899), "{p999:?}");
    }

    #[test]
    fn empty_and_tiny_samples() {
        let mut latency = Latency::new();
        assert_eq!(latency.quantile(0.5), None);
        assert_eq!(latency.max(), None);
        // Under a microsecond still counts, as 1 µs.
        latency.record(Duration::from_nanos(10));
        assert_eq!(latency.quantile(0.5), Some(Duration::from_micros(1)));
    }

    #[test]
    fn merging_adds_counts_samples_and_keeps_the_first_example() {
        let mut a = Stats::new(2);
        a.handshake(0, false, false, ms(5));
        a.handshake(1, true, true, ms(1));
        a.request(ms(2));
        a.error(0, ErrorKind::Connect, || "refused".into());
        let mut b = Stats::new(2);
        b.handshake(1, false, false, ms(6));
        b.handshake(0, true, true, ms(1));
        b.handshake(0, false, true, ms(7));
        b.error(1, ErrorKind::Connect, || "later".into());
        b.error(1, ErrorKind::Http, || "503".into());
        a.merge(&b);
        assert_eq!((a.full, a.resumed), (3, 2));
        assert_eq!((a.offered, a.offered_resumed), (3, 2));
        assert_eq!(a.resumption_ratio(), Some(2.0 / 3.0));
        assert_eq!(a.requests, 1);
        assert_eq!(a.errors(ErrorKind::Connect), 2);
        assert_eq!(a.errors(ErrorKind::Http), 1);
        assert_eq!(a.total_errors(), 3);
        assert_eq!(a.error_example(ErrorKind::Connect), Some("refused"));
        assert_eq!(a.error_example(ErrorKind::Http), Some("503"));
        assert_eq!(a.handshake_latency().count(), 5);
        assert_eq!(
            a.per_target,
            [
                TargetStats {
                    full: 2,
                    resumed: 1,
                    errors: 1
                },
                TargetStats {
                    full: 1,
                    resumed: 1,
                    errors: 2
                },
            ]
        );
    }

    #[test]
    fn no_ratio_without_a_second_handshake() {
        let mut stats = Stats::new(1);
        stats.handshake(0, false, false, ms(1));
        assert_eq!(stats.resumption_ratio(), None);
    }
}
