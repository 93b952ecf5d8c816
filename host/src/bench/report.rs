//! The end-of-run report: one JSON document for scripts, or a few aligned
//! lines for people. Both are built from the same [`Report`].

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::options::Options;
use super::stats::{ErrorKind, Latency, Stats};

/// Everything measured, with the settings that produced it.
pub struct Report<'a> {
    pub options: &'a Options,
    pub stats: &'a Stats,
    /// From the first connection to the last client's end.
    pub elapsed: Duration,
}

/// Quantiles reported for every latency, with their JSON names.
const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999)];

impl Report<'_> {
    fn per_second(&self, count: u64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            count as f64 / secs
        } else {
            0.0
        }
    }

    fn latencies(&self) -> [(&'static str, Latency); 4] {
        [
            ("handshake", self.stats.handshake_latency()),
            ("handshake_full", self.stats.handshake_full.clone()),
            ("handshake_resumed", self.stats.handshake_resumed.clone()),
            ("request", self.stats.request.clone()),
        ]
    }

    pub fn to_json(&self) -> Value {
        let stats = self.stats;
        let options = self.options;
        let mut latency = serde_json::Map::new();
        for (name, samples) in self.latencies() {
            latency.insert(name.to_owned(), latency_json(&samples));
        }
        let mut errors = serde_json::Map::new();
        errors.insert("total".into(), stats.total_errors().into());
        let mut examples = serde_json::Map::new();
        for kind in ErrorKind::ALL {
            errors.insert(kind.name().into(), stats.errors(kind).into());
            if let Some(example) = stats.error_example(kind) {
                examples.insert(kind.name().into(), example.into());
            }
        }
        errors.insert("examples".into(), examples.into());
        let per_target: Vec<Value> = options
            .targets
            .iter()
            .zip(&stats.per_target)
            .map(|(target, counts)| {
                json!({
                    "target": target,
                    "full": counts.full,
                    "resumed": counts.resumed,
                    "errors": counts.errors,
                })
            })
            .collect();
        json!({
            "settings": {
                "targets": options.targets,
                "connections": options.connections,
                "duration_s": options.duration.as_secs_f64(),
                "handshakes": options.handshakes,
                "requests_per_connection": options.requests_per_connection,
                "tls": options.tls.as_str(),
                "resume": options.resume,
                "path": options.path,
                "server_name": options.server_name,
                "rate": options.rate,
                "ticket_race": options.ticket_race,
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "handshakes": {
                "total": stats.full + stats.resumed,
                "full": stats.full,
                "resumed": stats.resumed,
                "per_s": self.per_second(stats.full + stats.resumed),
                "full_per_s": self.per_second(stats.full),
                "resumed_per_s": self.per_second(stats.resumed),
                "resumption_ratio": stats.resumption_ratio(),
                "offered": stats.offered,
                "offered_resumed": stats.offered_resumed,
            },
            "requests": {
                "total": stats.requests,
                "per_s": self.per_second(stats.requests),
            },
            "latency_ms": latency,
            "errors": errors,
            "per_target": per_target,
        })
    }

    pub fn to_text(&self) -> String {
        let options = self.options;
        let requests = match options.requests_per_connection {
            0 => "handshake only".to_owned(),
            1 => "1 request per connection".to_owned(),
            n => format!("{n} requests per connection"),
        };
        let mut out = format!(
            "cachet bench: {} target(s), {} connections, TLS {}, resumption {}, {requests}, {:.1} s\n",
            options.targets.len(),
            options.connections,
            options.tls.as_str(),
            if options.resume { "on" } else { "off" },
            self.elapsed.as_secs_f64(),
        );
        out.push_str(&self.figures_text());
        out
    }

    /// The report's lines after its first: handshakes, requests,
    /// latencies, errors, targets.
    pub fn figures_text(&self) -> String {
        let stats = self.stats;
        let options = self.options;
        let mut out = String::new();
        let ratio = match stats.resumption_ratio() {
            Some(ratio) => format!("{:.1}%", ratio * 100.0),
            None => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "handshakes  {:>9} full  {:>9.1}/s    {:>9} resumed {:>9.1}/s    resumption ratio {ratio}",
            stats.full,
            self.per_second(stats.full),
            stats.resumed,
            self.per_second(stats.resumed),
        );
        let _ = writeln!(
            out,
            "requests    {:>9}       {:>9.1}/s",
            stats.requests,
            self.per_second(stats.requests),
        );
        let _ = writeln!(
            out,
            "latency (ms)        {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p99", "p99.9", "max", "count"
        );
        for (name, samples) in self.latencies() {
            let cell = |value: Option<Duration>| match value {
                Some(value) => format!("{:.3}", millis(value)),
                None => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {name:<18}{:>9} {:>9} {:>9} {:>9} {:>9}",
                cell(samples.quantile(0.5)),
                cell(samples.quantile(0.99)),
                cell(samples.quantile(0.999)),
                cell(samples.max()),
                samples.count(),
            );
        }
        let _ = write!(out, "errors      {:>9}", stats.total_errors());
        for kind in ErrorKind::ALL {
            let _ = write!(out, "  {} {}", kind.name(), stats.errors(kind));
        }
        out.push('\n');
        for kind in ErrorKind::ALL {
            if let Some(example) = stats.error_example(kind) {
                let _ = writeln!(out, "  first {} error: {example}", kind.name());
            }
        }
        if options.targets.len() > 1 {
            for (target, counts) in options.targets.iter().zip(&stats.per_target) {
                let _ = writeln!(
                    out,
                    "  {target:<24} full {:>9}  resumed {:>9}  errors {:>9}",
                    counts.full, counts.resumed, counts.errors
                );
            }
        }
        out
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn latency_json(samples: &Latency) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("count".into(), samples.count().into());
    for (name, q) in QUANTILES {
        map.insert(name.into(), samples.quantile(q).map(millis).into());
    }
    map.insert("max".into(), samples.max().map(millis).into());
    map.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Options, Stats) {
        let options = Options {
            targets: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            ..Options::default()
        };
        let mut stats = Stats::new(2);
        stats.handshake(0, false, false, Duration::from_millis(4));
        stats.handshake(1, true, true, Duration::from_millis(1));
        stats.handshake(0, true, true, Duration::from_millis(1));
        stats.handshake(1, false, true, Duration::from_millis(4));
        stats.request(Duration::from_millis(2));
        stats.error(1, ErrorKind::Timeout, || "127.0.0.1:2: slow".into());
        (options, stats)
    }

    #[test]
    fn json_shape() {
        let (options, stats) = sample();
        let report = Report {
            options: &options,
            stats: &stats,
            elapsed: Duration::from_secs(2),
        };
        let json = report.to_json();
        assert_eq!(json["settings"]["tls"], "1.3");
        assert_eq!(json["settings"]["targets"][1], "127.0.0.1:2");
        assert_eq!(json["settings"]["rate"], Value::Null);
        assert_eq!(json["elapsed_s"], 2.0);
        let handshakes = &json["handshakes"];
        assert_eq!(handshakes["total"], 4);
        assert_eq!(handshakes["full"], 2);
        assert_eq!(handshakes["resumed"], 2);
        assert_eq!(handshakes["per_s"], 2.0);
        assert_eq!(handshakes["resumed_per_s"], 1.0);
        assert_eq!(handshakes["resumption_ratio"], 2.0 / 3.0);
        assert_eq!(handshakes["offered"], 3);
        assert_eq!(handshakes["offered_resumed"], 2);
        assert_eq!(json["settings"]["ticket_race"], Value::Null);
        assert_eq!(json["requests"]["total"], 1);
        assert_eq!(json["requests"]["per_s"], 0.5);
        for name in [
            "handshake",
            "handshake_full",
            "handshake_resumed",
            "request",
        ] {
            let latency = &json["latency_ms"][name];
            for field in ["p50", "p99", "p99_9", "max"] {
                assert!(latency[field].is_f64(), "{name}.{field}: {latency}");
            }
        }
        assert_eq!(json["latency_ms"]["handshake"]["count"], 4);
        // hdrhistogram reports the top of a sample's bucket: within 0.1%.
        let near = |value: &Value, want: f64| {
            let got = value.as_f64().unwrap();
            assert!((got - want).abs() <= want * 0.001, "{got} vs {want}");
        };
        near(&json["latency_ms"]["handshake_full"]["p50"], 4.0);
        near(&json["latency_ms"]["request"]["p99"], 2.0);
        let errors = &json["errors"];
        assert_eq!(errors["total"], 1);
        assert_eq!(errors["timeout"], 1);
        for kind in ["connect", "tls", "http", "other"] {
            assert_eq!(errors[kind], 0, "{kind}");
        }
        assert_eq!(errors["examples"]["timeout"], "127.0.0.1:2: slow");
        assert_eq!(
            json["per_target"][1],
            json!({"target": "127.0.0.1:2", "full": 1, "resumed": 1, "errors": 1})
        );
    }

    #[test]
    fn an_empty_run_has_nulls_not_panics() {
        let options = Options {
            targets: vec!["127.0.0.1:1".into()],
            ..Options::default()
        };
        let stats = Stats::new(1);
        let report = Report {
            options: &options,
            stats: &stats,
            elapsed: Duration::ZERO,
        };
        let json = report.to_json();
        assert_eq!(json["handshakes"]["resumption_ratio"], Value::Null);
        assert_eq!(json["handshakes"]["per_s"], 0.0);
        assert_eq!(json["latency_ms"]["request"]["p50"], Value::Null);
        let text = report.to_text();
        assert!(text.contains("resumption ratio n/a"), "{text}");
    }

    #[test]
    fn text_report_names_errors_and_targets() {
        let (options, stats) = sample();
        let report = Report {
            options: &options,
            stats: &stats,
            elapsed: Duration::from_secs(2),
        };
        let text = report.to_text();
        assert!(text.contains("resumption ratio 66.7%"), "{text}");
        assert!(text.contains("timeout 1"), "{text}");
        assert!(
            text.contains("first timeout error: 127.0.0.1:2: slow"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:2"), "{text}");
    }
}
