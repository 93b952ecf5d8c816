//! The loads of a comparison, each one run of `cachet bench --json`, and
//! the `openssl s_time` cross-check.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cachet_bench::report::TicketRace;
use cachet_bench::Report;

/// One kind of load, the same for every server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Load {
    /// Full handshakes only: every connection starts without a session.
    New(Tls),
    /// Every connection but a client's first offers the last session.
    Resumed(Tls),
    /// HTTPS requests over keep-alive connections through to the backend.
    Proxied,
}

/// The TLS version of a load, as `cachet bench --tls` takes it.
pub(crate) use cachet_bench::options::TlsVersion as Tls;

/// Requests per connection for [`Load::Proxied`].
const KEEP_ALIVE_REQUESTS: u32 = 100;

impl Load {
    pub(crate) const ALL: [Load; 5] = [
        Load::New(Tls::V12),
        Load::New(Tls::V13),
        Load::Resumed(Tls::V12),
        Load::Resumed(Tls::V13),
        Load::Proxied,
    ];

    pub(crate) fn label(self) -> String {
        match self {
            Load::New(tls) => format!("new TLS {} handshakes/s", tls.as_str()),
            Load::Resumed(tls) => format!("resumed TLS {} handshakes/s", tls.as_str()),
            Load::Proxied => format!("proxied requests/s ({KEEP_ALIVE_REQUESTS} per connection)"),
        }
    }

    /// A short name for the chart.
    pub(crate) fn short(self) -> String {
        match self {
            Load::New(tls) => format!("new {}", tls.as_str()),
            Load::Resumed(tls) => format!("resumed {}", tls.as_str()),
            Load::Proxied => "proxied req".to_owned(),
        }
    }

    fn bench_args(self) -> Vec<String> {
        let (tls, resume, requests) = match self {
            Load::New(tls) => (tls, false, 0),
            Load::Resumed(tls) => (tls, true, 0),
            Load::Proxied => (Tls::V13, true, KEEP_ALIVE_REQUESTS),
        };
        vec![
            "--tls".to_owned(),
            tls.as_str().to_owned(),
            if resume { "--resume" } else { "--no-resume" }.to_owned(),
            "--requests-per-connection".to_owned(),
            requests.to_string(),
        ]
    }

    /// What the server's CPU time is divided by: handshakes (all of them,
    /// in a resumed load mostly resumed ones) or requests.
    pub(crate) fn operations(self, outcome: &Report) -> u64 {
        match self {
            Load::New(_) | Load::Resumed(_) => outcome.handshakes.total,
            Load::Proxied => outcome.requests.total,
        }
    }

    /// One operation, for labels.
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Load::New(_) | Load::Resumed(_) => "handshake",
            Load::Proxied => "request",
        }
    }

    /// The figure this load is judged by.
    pub(crate) fn figure(self, outcome: &Report) -> f64 {
        match self {
            Load::New(_) => outcome.handshakes.per_s,
            Load::Resumed(_) => outcome.handshakes.resumed_per_s,
            Load::Proxied => outcome.requests.per_s,
        }
    }
}

/// How hard and how long to push.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pressure {
    pub connections: usize,
    pub duration: Duration,
    /// New connections per second, across all clients.
    pub rate: Option<u32>,
    /// Stop once this many handshakes completed (`duration` then only
    /// bounds the run): what a run must count, whatever the machine's speed.
    pub handshakes: Option<u64>,
    /// Bound on each connection's handshake and on each request.
    pub timeout: Duration,
}

/// `cachet bench --json --insecure --timeout TIMEOUT`, for more options.
fn bench_command(cachet: &Path, timeout: Duration) -> Command {
    let mut command = Command::new(cachet);
    command
        .arg("bench")
        .args(["--json", "--insecure", "--timeout"])
        .arg(format!("{}", timeout.as_secs_f64()));
    command
}

/// Runs `load` against `targets` (round-robin) with `cachet bench`.
pub(crate) fn run(
    cachet: &Path,
    targets: &[SocketAddr],
    load: Load,
    pressure: Pressure,
) -> Result<Report> {
    let mut command = bench_command(cachet, pressure.timeout);
    command
        .arg("--connections")
        .arg(pressure.connections.to_string())
        .arg("--duration")
        .arg(format!("{}", pressure.duration.as_secs_f64()))
        .args(load.bench_args());
    if let Some(rate) = pressure.rate {
        command.arg("--rate").arg(rate.to_string());
    }
    if let Some(handshakes) = pressure.handshakes {
        command.arg("--handshakes").arg(handshakes.to_string());
    }
    command.args(targets.iter().map(SocketAddr::to_string));
    let output = command.output().context("cannot run cachet bench")?;
    if output.stdout.is_empty() {
        bail!(
            "cachet bench printed nothing ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("cachet bench's JSON report")
}

/// What `cachet bench --ticket-race` counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Race {
    pub counts: TicketRace,
    /// Failed connections over all rounds.
    pub errors: u64,
}

/// `rounds` rounds of `cachet bench --ticket-race` over `targets`.
pub(crate) fn ticket_race(
    cachet: &Path,
    targets: &[SocketAddr],
    rounds: u64,
    timeout: Duration,
) -> Result<Race> {
    let mut command = bench_command(cachet, timeout);
    command
        .arg("--ticket-race")
        .arg(rounds.to_string())
        .args(targets.iter().map(SocketAddr::to_string));
    let output = command
        .output()
        .context("cannot run cachet bench --ticket-race")?;
    let report: Report = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "cachet bench --ticket-race printed no JSON report ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    race_of(report)
}

fn race_of(report: Report) -> Result<Race> {
    let counts = report
        .ticket_race
        .context("cachet bench --ticket-race's report has no ticket_race")?;
    Ok(Race {
        counts,
        errors: report.errors.total,
    })
}

/// The `openssl s_time` loads: one client, one connection at a time.
pub(crate) const S_TIME_LOADS: [(&str, &[&str]); 3] = [
    ("new TLS 1.2", &["-new", "-tls1_2"]),
    ("resumed TLS 1.2", &["-reuse", "-tls1_2"]),
    ("new TLS 1.3", &["-new", "-tls1_3"]),
];

/// Connections per second `openssl s_time` made in `seconds`.
pub(crate) fn s_time(addr: SocketAddr, flags: &[&str], seconds: u32) -> Result<f64> {
    let output = Command::new("openssl")
        .arg("s_time")
        .arg("-connect")
        .arg(addr.to_string())
        .args(flags)
        .arg("-time")
        .arg(seconds.to_string())
        .output()
        .context("cannot run openssl s_time")?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_s_time(&text).with_context(|| {
        format!(
            "openssl s_time {flags:?} against {addr} printed no rate: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// From a line like `2476 connections in 3 real seconds, 0 bytes read per
/// connection`: connections per real second.
fn parse_s_time(text: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (count, rest) = line.trim().split_once(" connections in ")?;
        let (seconds, _) = rest.split_once(" real seconds")?;
        let count: f64 = count.trim().parse().ok()?;
        let seconds: f64 = seconds.trim().parse().ok()?;
        (seconds > 0.0).then(|| count / seconds)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s_time_output() {
        let text = "Collecting connection statistics for 3 seconds\n\
                    ********\n\n\
                    2476 connections in 2.05s; 1207.80 connections/user sec, bytes read 0\n\
                    2476 connections in 4 real seconds, 0 bytes read per connection\n";
        assert_eq!(parse_s_time(text), Some(619.0));
        assert_eq!(parse_s_time("ERROR\n"), None);
    }

    #[test]
    fn reads_a_ticket_race() {
        use cachet_bench::options::Options;
        use cachet_bench::stats::Stats;

        let mut options = Options::default();
        options.settings.targets = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        let mut report = Report::new(&options, &Stats::new(2), Duration::from_secs(1));
        let error = race_of(report.clone()).unwrap_err();
        assert!(error.to_string().contains("no ticket_race"), "{error}");
        let counts = TicketRace {
            rounds: 10,
            resumed_per_round: vec![1, 8, 1],
            resumed_nowhere: 1,
            resumed_once: 8,
            double_resumptions: 1,
            no_ticket: 0,
        };
        report.ticket_race = Some(counts.clone());
        report.errors.total = 2;
        let race = race_of(report).unwrap();
        assert_eq!(race, Race { counts, errors: 2 });
    }
}
