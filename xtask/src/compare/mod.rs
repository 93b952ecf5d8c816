//! `cargo xtask bench`'s comparison: cachet side by side with nginx,
//! HAProxy and hitch on loopback, under the same loads.
//!
//! The run, in order:
//! 1. per key type (ECDSA P-256, then RSA 2048): every installed server is
//!    started with the same certificate, backend ([`backend`]) and worker
//!    count ([`servers`]); with ECDSA, each first gets 20000 full
//!    handshakes on a fresh start for the memory figure ([`memory`]); after
//!    a warm-up, every load of [`load::Load::ALL`] runs against every
//!    server in turn, round after round, so that a disturbance of the
//!    machine hits all of them alike; with ECDSA, `openssl s_time` then
//!    measures the handshake rows with a client that is not cachet's;
//! 2. three nodes of each server behind the load generator's round-robin:
//!    a cachet cluster, and independent nginx, HAProxy and hitch instances,
//!    for the cross-node resumption ratio.
//!
//! Medians of the rounds are what the report quotes.

pub(crate) mod access_log_cost;
mod backend;
mod certs;
pub(crate) mod chart;
pub(crate) mod cpu;
pub(crate) mod load;
mod memory;
pub(crate) mod report;
pub(crate) mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub(crate) use certs::KeyType;
use load::{Load, Outcome, Pressure, Tls};
pub(crate) use memory::Footprint;
use servers::{ClusterNode, Kind, Server, Setup};

use crate::processes::{debug_cachet, release_cachet, Processes};

/// How long and how often; `--quick` shrinks everything, `--smoke` more.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub rounds: usize,
    pub run: Duration,
    pub connections: usize,
    pub s_time_seconds: u32,
    /// Full handshakes made before the memory figure is read.
    pub sessions: u64,
    pub workers: usize,
    /// Whether nginx, HAProxy and hitch run too, when installed.
    pub peers: bool,
    /// A release build of cachet (else the debug build, for the smoke run).
    pub release: bool,
    /// Each load run stops after this many handshakes (`run` then only
    /// bounds it), so that it measures something however slow the machine.
    pub handshakes: Option<u64>,
    /// Bound on each connection's handshake and request.
    pub timeout: Duration,
}

impl Plan {
    pub(crate) fn full() -> Plan {
        Plan {
            rounds: 3,
            run: Duration::from_secs(4),
            connections: 16,
            s_time_seconds: 5,
            sessions: 20_000,
            workers: 2,
            peers: true,
            release: true,
            handshakes: None,
            timeout: Duration::from_secs(10),
        }
    }

    pub(crate) fn quick() -> Plan {
        Plan {
            rounds: 3,
            run: Duration::from_millis(1500),
            s_time_seconds: 2,
            ..Plan::full()
        }
    }

    /// Every step once, briefly, cachet alone, on the debug build: CI's
    /// check that the comparison still runs end to end.
    pub(crate) fn smoke() -> Plan {
        Plan {
            rounds: 1,
            // Only a bound: every run stops at its handshakes.
            run: Duration::from_secs(120),
            connections: 4,
            s_time_seconds: 1,
            sessions: 300,
            workers: 2,
            peers: false,
            release: false,
            handshakes: Some(40),
            timeout: Duration::from_secs(60),
        }
    }

    /// The plan's load, unpaced.
    pub(crate) fn pressure(&self) -> Pressure {
        Pressure {
            connections: self.connections,
            duration: self.run,
            rate: None,
            handshakes: self.handshakes,
            timeout: self.timeout,
        }
    }

    fn warm_up(&self) -> Duration {
        self.run.min(Duration::from_secs(1))
    }
}

/// Everything measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// The servers compared, with their versions; cachet first.
    pub servers: Vec<(Kind, String)>,
    /// Peers that are not installed.
    pub missing: Vec<Kind>,
    pub throughput: Vec<Throughput>,
    pub cross_node: Vec<CrossNode>,
    pub memory: Vec<MemoryFigure>,
    pub s_time: Vec<STime>,
    /// Servers that failed to start or to serve, and why.
    pub failures: Vec<String>,
    /// What the servers logged on the way, summarised.
    pub notes: Vec<String>,
}

/// One load against one server with one key type, every round.
#[derive(Debug, Clone)]
pub(crate) struct Throughput {
    pub key_type: KeyType,
    pub load: Load,
    pub kind: Kind,
    /// The load's figure, per round.
    pub samples: Vec<f64>,
    pub errors: u64,
    /// Resumption ratio of the last round (resumed loads).
    pub resumption_ratio: f64,
}

impl Throughput {
    pub(crate) fn median(&self) -> f64 {
        median(&self.samples)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CrossNode {
    pub kind: Kind,
    pub tls: Tls,
    /// New connections per second across all clients; `None`: each client
    /// reconnects the moment its last connection closed.
    pub pace: Option<u32>,
    pub ratio: f64,
    pub handshakes: u64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct MemoryFigure {
    pub kind: Kind,
    pub idle: Footprint,
    pub loaded: Footprint,
    /// Full handshakes made (each stored a session).
    pub sessions: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct STime {
    pub kind: Kind,
    pub load: &'static str,
    pub per_second: f64,
}

impl Results {
    /// The median figure of `load` on `kind` with `key_type`.
    pub(crate) fn median(&self, key_type: KeyType, load: Load, kind: Kind) -> Option<f64> {
        self.throughput
            .iter()
            .find(|t| t.key_type == key_type && t.load == load && t.kind == kind)
            .map(Throughput::median)
    }

    pub(crate) fn compared(&self) -> impl Iterator<Item = Kind> + '_ {
        self.servers.iter().map(|(kind, _)| *kind)
    }
}

pub(crate) fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Installs the missing peers from Debian's packages.
pub(crate) fn install() -> Result<(), String> {
    let missing: Vec<&str> = servers::PEERS
        .iter()
        .filter(|kind| kind.version().is_none())
        .filter_map(|kind| kind.package())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    crate::run(Path::new("/"), "apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    crate::run(Path::new("/"), "apt-get", &args)
}

/// Runs the whole comparison.
pub(crate) fn run(root: &Path, plan: Plan) -> Result<Results, String> {
    crate::processes::require("openssl", &["version"])?;
    let cachet = if plan.release {
        release_cachet(root)?
    } else {
        debug_cachet(root)?
    };
    let scratch = Scratch::new()?;
    let backend = backend::start()?;

    let mut results = Results::default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    results
        .servers
        .push((Kind::Cachet, format!("cachet (commit {commit})")));
    for kind in servers::PEERS.into_iter().filter(|_| plan.peers) {
        match kind.version() {
            Some(version) => results.servers.push((kind, version)),
            None => results.missing.push(kind),
        }
    }

    for key_type in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        let certificate = certs::make(&scratch.0, key_type)?;
        let setup = Setup {
            cachet: &cachet,
            certificate: &certificate,
            backend: backend.addr,
            workers: plan.workers,
            scratch: &scratch.0,
        };
        let with_extras = key_type == KeyType::EcdsaP256;
        compare_one_key_type(&mut results, &setup, plan, with_extras)?;
    }
    let certificate = certs::make(&scratch.0, KeyType::EcdsaP256)?;
    let setup = Setup {
        cachet: &cachet,
        certificate: &certificate,
        backend: backend.addr,
        workers: 1,
        scratch: &scratch.0,
    };
    cross_node(&mut results, &setup, plan)?;
    eprintln!("xtask: the backend served {} requests", backend.served());
    Ok(results)
}

/// Throughput (and, with `extras`, memory and `s_time`) for one key type.
fn compare_one_key_type(
    results: &mut Results,
    setup: &Setup<'_>,
    plan: Plan,
    extras: bool,
) -> Result<(), String> {
    let key_type = setup.certificate.key_type;
    let mut processes = Processes::default();
    let mut running: Vec<Server> = Vec::new();
    let kinds: Vec<Kind> = results.compared().collect();
    for kind in kinds {
        let name = format!("{}-{:?}", kind.name(), key_type).to_lowercase();
        match servers::start(&mut processes, kind, &name, setup, None) {
            Ok(server) => running.push(server),
            Err(e) if kind == Kind::Cachet => return Err(e),
            Err(e) => results
                .failures
                .push(format!("{} did not start: {e}", kind.name())),
        }
    }
    eprintln!(
        "xtask: {}: {} servers up",
        key_type.label(),
        running
            .iter()
            .map(|s| format!("{} on {}", s.kind.name(), s.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pressure = plan.pressure();
    if extras {
        for server in &running {
            results
                .memory
                .push(memory_figure(setup.cachet, server, plan)?);
        }
    }
    // Warm-up: code paths, backend connections, allocator pools.
    for server in &running {
        for load in [Load::New(Tls::V13), Load::Proxied] {
            let warm = Pressure {
                duration: plan.warm_up(),
                ..pressure
            };
            load::run(setup.cachet, &[server.addr], load, warm)?;
        }
    }
    for round in 1..=plan.rounds {
        for load in Load::ALL {
            for server in &running {
                let outcome = load::run(setup.cachet, &[server.addr], load, pressure)?;
                eprintln!(
                    "xtask: {} round {round}/{}: {} {}: {:.0} ({} errors)",
                    key_type.label(),
                    plan.rounds,
                    server.kind.name(),
                    load.label(),
                    load.figure(&outcome),
                    outcome.errors
                );
                record(results, key_type, load, server.kind, &outcome);
            }
        }
    }
    if extras {
        for server in &running {
            for (label, flags) in load::S_TIME_LOADS {
                match load::s_time(server.addr, flags, plan.s_time_seconds) {
                    Ok(per_second) => results.s_time.push(STime {
                        kind: server.kind,
                        load: label,
                        per_second,
                    }),
                    Err(e) => results.failures.push(e),
                }
            }
        }
    }
    for server in &running {
        if let Some(summary) = log_summary(&processes.log(&server.name)) {
            results.notes.push(format!(
                "{} ({}) {summary}",
                server.kind.name(),
                key_type.label()
            ));
        }
    }
    Ok(())
}

fn record(results: &mut Results, key_type: KeyType, load: Load, kind: Kind, outcome: &Outcome) {
    let figure = load.figure(outcome);
    match results
        .throughput
        .iter_mut()
        .find(|t| t.key_type == key_type && t.load == load && t.kind == kind)
    {
        Some(entry) => {
            entry.samples.push(figure);
            entry.errors += outcome.errors;
            entry.resumption_ratio = outcome.resumption_ratio;
        }
        None => results.throughput.push(Throughput {
            key_type,
            load,
            kind,
            samples: vec![figure],
            errors: outcome.errors,
            resumption_ratio: outcome.resumption_ratio,
        }),
    }
}

/// Errors and warnings a server logged, counted, with the first one
/// quoted; `None` when it logged none. (Connections the load generator
/// drops at the end of a run show up here as "unexpected eof" on the
/// OpenSSL-based servers.)
fn log_summary(log: &str) -> Option<String> {
    const NOISE: [&str; 5] = [
        "starting",
        "online",
        "initialization complete",
        "Loading",
        "NOTICE",
    ];
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !NOISE.iter().any(|n| l.contains(n)))
        .collect();
    let first = lines.first()?;
    let quoted: String = first.chars().take(200).collect();
    Some(format!(
        "logged {} lines, the first: `{quoted}`",
        lines.len()
    ))
}

/// The footprint of a freshly started server, then after it stored
/// `plan.sessions` sessions (full TLS 1.2 handshakes, no resumption).
fn memory_figure(cachet: &Path, server: &Server, plan: Plan) -> Result<MemoryFigure, String> {
    let idle = memory::of_tree(server.pid)?;
    let mut sessions = 0;
    // Paced so that a slow server still gets every handshake done; repeated
    // until enough sessions were made.
    let rate = 2500u32;
    for _ in 0..10 {
        if sessions >= plan.sessions {
            break;
        }
        let seconds = ((plan.sessions - sessions) as f64 / f64::from(rate)).max(1.0);
        let pressure = Pressure {
            connections: plan.connections,
            duration: Duration::from_secs_f64(seconds),
            rate: Some(rate),
            handshakes: None,
            timeout: plan.timeout,
        };
        let outcome = load::run(cachet, &[server.addr], Load::New(Tls::V12), pressure)?;
        sessions += outcome.full;
    }
    // Let workers finish what they were doing before reading.
    std::thread::sleep(Duration::from_millis(500));
    let loaded = memory::of_tree(server.pid)?;
    eprintln!(
        "xtask: {}: {} KiB PSS idle, {} KiB after {sessions} sessions",
        server.kind.name(),
        idle.pss_kib,
        loaded.pss_kib
    );
    Ok(MemoryFigure {
        kind: server.kind,
        idle,
        loaded,
        sessions,
    })
}

/// How fast clients come back in the cross-node runs: at once (the worst
/// case for replication, which races the client's next connection), and at
/// a pace where each of 16 clients reconnects every 20 ms or so, still far
/// sooner than a browser opens its next connection.
const CROSS_NODE_PACES: [Option<u32>; 2] = [None, Some(800)];

pub(crate) fn pace_label(pace: Option<u32>) -> String {
    match pace {
        None => "back to back".to_owned(),
        Some(rate) => format!("{rate} connections/s"),
    }
}

/// Three nodes of each kind, one worker each, behind round-robin.
fn cross_node(results: &mut Results, setup: &Setup<'_>, plan: Plan) -> Result<(), String> {
    let key_file = setup.scratch.join("cluster.key");
    let key = Command::new(setup.cachet)
        .arg("keygen")
        .output()
        .map_err(|e| format!("cachet keygen: {e}"))?;
    std::fs::write(&key_file, &key.stdout).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let kinds: Vec<Kind> = results.compared().collect();
    for kind in kinds {
        let Some((_processes, nodes)) = three_nodes(results, setup, kind, &key_file)? else {
            continue;
        };
        for pace in CROSS_NODE_PACES {
            for tls in [Tls::V12, Tls::V13] {
                let pressure = Pressure {
                    connections: plan.connections,
                    duration: plan.run,
                    rate: pace,
                    handshakes: plan.handshakes,
                    timeout: plan.timeout,
                };
                let outcome = load::run(setup.cachet, &nodes, Load::Resumed(tls), pressure)?;
                eprintln!(
                    "xtask: three {} nodes, TLS {}, {}: {:.1}% resumed",
                    kind.name(),
                    tls.as_str(),
                    pace_label(pace),
                    100.0 * outcome.resumption_ratio
                );
                results.cross_node.push(CrossNode {
                    kind,
                    tls,
                    pace,
                    ratio: outcome.resumption_ratio,
                    handshakes: outcome.handshakes,
                    errors: outcome.errors,
                });
            }
        }
    }
    Ok(())
}

/// Three nodes of `kind` (a cachet cluster: each node is given the others'
/// sync ports, free a moment before; should one have been taken meanwhile,
/// all three start again on fresh ones). `None` when they did not start,
/// which is recorded in `results`.
fn three_nodes(
    results: &mut Results,
    setup: &Setup<'_>,
    kind: Kind,
    key_file: &Path,
) -> Result<Option<(Processes, Vec<std::net::SocketAddr>)>, String> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let mut processes = Processes::default();
        let syncs = [
            servers::free_udp_port()?,
            servers::free_udp_port()?,
            servers::free_udp_port()?,
        ];
        let mut nodes = Vec::new();
        for (i, sync) in syncs.iter().enumerate() {
            let cluster = ClusterNode {
                key_file,
                sync: *sync,
                peers: syncs.iter().filter(|s| *s != sync).copied().collect(),
            };
            let name = format!("{}-node{}", kind.name(), i + 1).to_lowercase();
            let cluster = (kind == Kind::Cachet).then_some(&cluster);
            match servers::start(&mut processes, kind, &name, setup, cluster) {
                Ok(server) => nodes.push(server.addr),
                Err(e) if e.contains("Address already in use") && attempt < ATTEMPTS => break,
                Err(e) => {
                    results.failures.push(format!(
                        "{} node {} did not start: {e}",
                        kind.name(),
                        i + 1
                    ));
                    return Ok(None);
                }
            }
        }
        if nodes.len() == 3 {
            return Ok(Some((processes, nodes)));
        }
        eprintln!("xtask: a sync port was taken before its node bound it; new ports");
    }
    unreachable!("the last attempt returns")
}

/// A directory of the run's own, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("cachet-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
