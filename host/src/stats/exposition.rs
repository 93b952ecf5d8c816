//! Prometheus text exposition (format 0.0.4): families, samples, and the
//! lines of the metrics table (see [`crate::metrics::TABLE`]).

use std::fmt::Write;

use crate::latency::Latency;
use crate::metrics::MetricsSnapshot;

/// A family with a sample per item (a worker, a backend, a peer): its
/// name, type, help, and the item's value.
pub(super) type PerItem<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Accumulates metric families, writing HELP and TYPE once per family.
#[derive(Default)]
pub(super) struct Exposition {
    pub(super) text: String,
}

impl Exposition {
    /// The lines of the metrics table, each family's header once, before
    /// its first sample.
    pub(super) fn table(&mut self, metrics: &MetricsSnapshot) {
        let mut previous = None;
        for (line, count) in metrics.lines() {
            let Some((family, values)) = line.prometheus else {
                continue;
            };
            if previous != Some(family.name) {
                self.family(family.name, family.kind.as_str(), family.help);
                previous = Some(family.name);
            }
            let labels: Vec<(&str, &str)> = family
                .labels
                .iter()
                .copied()
                .zip(values.iter().copied())
                .collect();
            self.sample(family.name, &labels, count);
        }
    }

    pub(super) fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
                .collect();
            let _ = write!(self.text, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.text, " {value}");
    }

    pub(super) fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A counter family with one sample per value of a single `label`.
    pub(super) fn counter_by<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, "counter", help);
        for (value, count) in samples {
            self.sample(name, &[(label, value)], count);
        }
    }

    /// Families with one sample per item of `items`, labelled `label` =
    /// `label_of(item)`.
    pub(super) fn per_item<T>(
        &mut self,
        families: &[PerItem<T>],
        items: &[T],
        label: &str,
        label_of: impl Fn(&T) -> String,
    ) {
        for (name, kind, help, value) in families {
            self.family(name, kind, help);
            for item in items {
                self.sample(name, &[(label, &label_of(item))], value(item));
            }
        }
    }

    /// A histogram family in seconds: cumulative buckets, sum and count.
    pub(super) fn histogram(&mut self, name: &str, help: &str, latency: &Latency) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in crate::latency::BOUNDS_US.iter().zip(latency.buckets) {
            cumulative += count;
            let le = format!("{}", *bound as f64 / 1e6);
            self.sample(&bucket, &[("le", &le)], cumulative);
        }
        self.sample(&bucket, &[("le", "+Inf")], latency.count());
        let _ = writeln!(self.text, "{name}_sum {}", latency.sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), &[], latency.count());
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
