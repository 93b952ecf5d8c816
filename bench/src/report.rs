//! The end-of-run report: one JSON document for scripts (`--json`), or a
//! few aligned lines for people. Both come from the same typed [`Report`],
//! which is also what readers of the JSON (xtask, the end-to-end tests)
//! deserialize, so a field renamed here is renamed for them at compile time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::options::{Options, Settings};
use super::stats::{ErrorKind, Latency, Stats};

/// Everything measured, with the settings that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub settings: Settings,
    /// From the first connection to the last client's end, in seconds.
    pub elapsed_s: f64,
    pub handshakes: Handshakes,
    pub requests: Requests,
    pub latency_ms: Latencies,
    pub errors: Errors,
    /// One entry per target, in the order given.
    pub per_target: Vec<TargetCounts>,
    /// Only in a `--ticket-race` report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_race: Option<TicketRace>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handshakes {
    /// Full and resumed.
    pub total: u64,
    pub full: u64,
    pub resumed: u64,
    pub per_s: f64,
    pub full_per_s: f64,
    pub resumed_per_s: f64,
    /// `offered_resumed / offered`; `None` when no handshake offered a
    /// session.
    pub resumption_ratio: Option<f64>,
    /// Handshakes after each client's first successful one: the only ones
    /// that had a session to offer.
    pub offered: u64,
    /// Of those, how many resumed.
    pub offered_resumed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub total: u64,
    pub per_s: f64,
}

/// Latency quantiles in milliseconds; `None` without samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub p99_9: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Every handshake, full and resumed.
    pub handshake: LatencyMs,
    pub handshake_full: LatencyMs,
    pub handshake_resumed: LatencyMs,
    pub request: LatencyMs,
}

/// Failed connections and requests, by [`ErrorKind`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    pub total: u64,
    pub connect: u64,
    pub tls: u64,
    pub http: u64,
    pub timeout: u64,
    pub other: u64,
    /// The first message of each kind that occurred.
    pub examples: BTreeMap<ErrorKind, String>,
}

/// Handshakes and errors on one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounts {
    pub target: String,
    pub full: u64,
    pub resumed: u64,
    pub errors: u64,
}

/// How the rounds of a `--ticket-race` ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRace {
    /// Rounds in which the ticket was offered.
    pub rounds: u64,
    /// `[k]`: rounds in which exactly `k` servers resumed the ticket.
    pub resumed_per_round: Vec<u64>,
    pub resumed_nowhere: u64,
    pub resumed_once: u64,
    /// Rounds in which two or more servers resumed the one ticket.
    pub double_resumptions: u64,
    /// Rounds whose first handshake failed or issued no ticket.
    pub no_ticket: u64,
}

impl Report {
    /// The report of a run of `options` that measured `stats` in `elapsed`.
    pub fn new(options: &Options, stats: &Stats, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64();
        let per_second = |count: u64| {
            if secs > 0.0 {
                count as f64 / secs
            } else {
                0.0
            }
        };
        let total = stats.full + stats.resumed;
        Report {
            settings: options.settings.clone(),
            elapsed_s: secs,
            handshakes: Handshakes {
                total,
                full: stats.full,
                resumed: stats.resumed,
                per_s: per_second(total),
                full_per_s: per_second(stats.full),
                resumed_per_s: per_second(stats.resumed),
                resumption_ratio: stats.resumption_ratio(),
                offered: stats.offered,
                offered_resumed: stats.offered_resumed,
            },
            requests: Requests {
                total: stats.requests,
                per_s: per_second(stats.requests),
            },
            latency_ms: Latencies {
                handshake: LatencyMs::new(&stats.handshake_latency()),
                handshake_full: LatencyMs::new(&stats.handshake_full),
                handshake_resumed: LatencyMs::new(&stats.handshake_resumed),
                request: LatencyMs::new(&stats.request),
            },
            errors: Errors {
                total: stats.total_errors(),
                connect: stats.errors(ErrorKind::Connect),
                tls: stats.errors(ErrorKind::Tls),
                http: stats.errors(ErrorKind::Http),
                timeout: stats.errors(ErrorKind::Timeout),
                other: stats.errors(ErrorKind::Other),
                examples: ErrorKind::ALL
                    .into_iter()
                    .filter_map(|kind| Some((kind, stats.error_example(kind)?.to_owned())))
                    .collect(),
            },
            per_target: options
                .settings
                .targets
                .iter()
                .zip(&stats.per_target)
                .map(|(target, counts)| TargetCounts {
                    target: target.clone(),
                    full: counts.full,
                    resumed: counts.resumed,
                    errors: counts.errors,
                })
                .collect(),
            ticket_race: None,
        }
    }

    /// The `--json` document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report has no map with non-string keys")
    }

    /// The report for people: a line of settings, then the figures.
    pub fn to_text(&self) -> String {
        let settings = &self.settings;
        let requests = match settings.requests_per_connection {
            0 => "handshake only".to_owned(),
            1 => "1 request per connection".to_owned(),
            n => format!("{n} requests per connection"),
        };
        let mut out = format!(
            "cachet bench: {} target(s), {} connections, TLS {}, resumption {}, {requests}, {:.1} s\n",
            settings.targets.len(),
            settings.connections,
            settings.tls.as_str(),
            if settings.resume { "on" } else { "off" },
            self.elapsed_s,
        );
        out.push_str(&self.figures_text());
        out
    }

    /// The report's lines after its first: handshakes, requests,
    /// latencies, errors, targets.
    pub fn figures_text(&self) -> String {
        let (handshakes, errors) = (&self.handshakes, &self.errors);
        let mut out = String::new();
        let ratio = match handshakes.resumption_ratio {
            Some(ratio) => format!("{:.1}%", ratio * 100.0),
            None => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "handshakes  {:>9} full  {:>9.1}/s    {:>9} resumed {:>9.1}/s    resumption ratio {ratio}",
            handshakes.full, handshakes.full_per_s, handshakes.resumed, handshakes.resumed_per_s,
        );
        let _ = writeln!(
            out,
            "requests    {:>9}       {:>9.1}/s",
            self.requests.total, self.requests.per_s,
        );
        let _ = writeln!(
            out,
            "latency (ms)        {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p99", "p99.9", "max", "count"
        );
        for (name, latency) in self.latency_ms.named() {
            let cell = |value: Option<f64>| match value {
                Some(value) => format!("{value:.3}"),
                None => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {name:<18}{:>9} {:>9} {:>9} {:>9} {:>9}",
                cell(latency.p50),
                cell(latency.p99),
                cell(latency.p99_9),
                cell(latency.max),
                latency.count,
            );
        }
        let _ = write!(out, "errors      {:>9}", errors.total);
        for kind in ErrorKind::ALL {
            let _ = write!(out, "  {} {}", kind.name(), errors.count(kind));
        }
        out.push('\n');
        for (kind, example) in &errors.examples {
            let _ = writeln!(out, "  first {} error: {example}", kind.name());
        }
        if self.per_target.len() > 1 {
            for counts in &self.per_target {
                let _ = writeln!(
                    out,
                    "  {:<24} full {:>9}  resumed {:>9}  errors {:>9}",
                    counts.target, counts.full, counts.resumed, counts.errors
                );
            }
        }
        out
    }
}

impl LatencyMs {
    fn new(samples: &Latency) -> LatencyMs {
        let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
        LatencyMs {
            count: samples.count(),
            p50: samples.quantile(0.5).map(millis),
            p99: samples.quantile(0.99).map(millis),
            p99_9: samples.quantile(0.999).map(millis),
            max: samples.max().map(millis),
        }
    }
}

impl Latencies {
    /// Each latency with its name in the report.
    pub fn named(&self) -> [(&'static str, &LatencyMs); 4] {
        [
            ("handshake", &self.handshake),
            ("handshake_full", &self.handshake_full),
            ("handshake_resumed", &self.handshake_resumed),
            ("request", &self.request),
        ]
    }
}

impl Errors {
    /// The errors of one kind.
    pub fn count(&self, kind: ErrorKind) -> u64 {
        match kind {
            ErrorKind::Connect => self.connect,
            ErrorKind::Tls => self.tls,
            ErrorKind::Http => self.http,
            ErrorKind::Timeout => self.timeout,
            ErrorKind::Other => self.other,
        }
    }
}

impl TicketRace {
    pub fn to_text(&self) -> String {
        format!(
            "ticket race  {} rounds: resumed nowhere {}, once {}, twice or more {} \
             (double resumptions: {} of {}); {} rounds without a ticket\n",
            self.rounds,
            self.resumed_nowhere,
            self.resumed_once,
            self.double_resumptions,
            self.double_resumptions,
            self.rounds,
            self.no_ticket,
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn sample() -> Report {
        let mut options = Options::default();
        options.settings.targets = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        let mut stats = Stats::new(2);
        stats.handshake(0, false, false, Duration::from_millis(4));
        stats.handshake(1, true, true, Duration::from_millis(1));
        stats.handshake(0, true, true, Duration::from_millis(1));
        stats.handshake(1, false, true, Duration::from_millis(4));
        stats.request(Duration::from_millis(2));
        stats.error(1, ErrorKind::Timeout, || "127.0.0.1:2: slow".into());
        Report::new(&options, &stats, Duration::from_secs(2))
    }

    /// The wire format, field by field: scripts read these names.
    #[test]
    fn json_shape() {
        let json: Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(json["settings"]["tls"], "1.3");
        assert_eq!(json["settings"]["targets"][1], "127.0.0.1:2");
        assert_eq!(json["settings"]["rate"], Value::Null);
        assert_eq!(json["settings"]["duration_s"], 10.0);
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
        assert_eq!(json.get("ticket_race"), None, "only in a race's report");
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
        assert_eq!(errors["examples"], json!({"timeout": "127.0.0.1:2: slow"}));
        assert_eq!(
            json["per_target"][1],
            json!({"target": "127.0.0.1:2", "full": 1, "resumed": 1, "errors": 1})
        );
    }

    /// Every kind has its count in the JSON under its own name.
    #[test]
    fn every_error_kind_is_a_field() {
        let json = serde_json::to_value(sample()).unwrap();
        for kind in ErrorKind::ALL {
            assert!(json["errors"][kind.name()].is_u64(), "{}", kind.name());
        }
    }

    /// What a reader deserializes is what was printed, a race included.
    #[test]
    fn the_json_reads_back_as_the_report() {
        let mut report = sample();
        report.ticket_race = Some(TicketRace {
            rounds: 3,
            resumed_per_round: vec![1, 2, 0],
            resumed_nowhere: 1,
            resumed_once: 2,
            double_resumptions: 0,
            no_ticket: 1,
        });
        let read: Report = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(read, report);
        assert_eq!(read.errors.count(ErrorKind::Timeout), 1);
        assert_eq!(
            read.errors.examples[&ErrorKind::Timeout],
            "127.0.0.1:2: slow"
        );
    }

    /// A document that is not a report is an error that names the field,
    /// not zeros.
    #[test]
    fn a_missing_field_is_an_error() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["handshakes"].as_object_mut().unwrap().remove("full");
        let error = serde_json::from_value::<Report>(json).unwrap_err();
        assert!(error.to_string().contains("`full`"), "{error}");
    }

    /// A damaged duration is refused with its value, never a panic.
    #[test]
    fn a_negative_duration_is_an_error() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["settings"]["duration_s"] = (-1.0).into();
        let error = serde_json::from_value::<Report>(json).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`-1` is not a number of seconds"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_run_has_nulls_not_panics() {
        let mut options = Options::default();
        options.settings.targets = vec!["127.0.0.1:1".into()];
        let report = Report::new(&options, &Stats::new(1), Duration::ZERO);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["handshakes"]["resumption_ratio"], Value::Null);
        assert_eq!(json["handshakes"]["per_s"], 0.0);
        assert_eq!(json["latency_ms"]["request"]["p50"], Value::Null);
        let text = report.to_text();
        assert!(text.contains("resumption ratio n/a"), "{text}");
    }

    #[test]
    fn text_report_names_errors_and_targets() {
        let text = sample().to_text();
        assert!(text.contains("resumption ratio 66.7%"), "{text}");
        assert!(text.contains("timeout 1"), "{text}");
        assert!(
            text.contains("first timeout error: 127.0.0.1:2: slow"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:2"), "{text}");
    }
}
