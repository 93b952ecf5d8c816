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
//!    for the cross-node resumption ratio (a fixed number of resumption
//!    attempts per TLS version), then the ticket race (one TLS 1.3 ticket
//!    offered to two nodes at once: single use), then, on cachet, each
//!    node's pull figures ([`pulls`]).
//!
//! Every load run also measures the server's own CPU time ([`cpu`]), per
//! operation. Medians of the rounds are what the report quotes.

pub(crate) mod access_log_cost;
pub(crate) mod backend;
pub(crate) mod certs;
pub(crate) mod chart;
pub(crate) mod cpu;
pub(crate) mod load;
pub(crate) mod memory;
pub(crate) mod pulls;
pub(crate) mod report;
pub(crate) mod servers;
mod syscalls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use cachet_bench::Report;
pub(crate) use certs::KeyType;
use load::{Load, Pressure, Tls};
pub(crate) use memory::Footprint;
use pulls::Pulls;
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
    /// Resumption attempts (handshakes offering a session) each cross-node
    /// run makes, per TLS version and pace.
    pub cross_node_attempts: u64,
    /// Rounds of the ticket race on each three nodes.
    pub race_rounds: u64,
}

impl Plan {
    pub(crate) fn full() -> Plan {
        Plan {
            // Five: on a shared machine one slow slot of 4 s moves a load
            // by 10 to 20%, and a median of three lets two such slots set
            // it (docs/BENCH.md, "Where cachet falls short").
            rounds: 5,
            run: Duration::from_secs(4),
            connections: 16,
            s_time_seconds: 5,
            sessions: 20_000,
            workers: 2,
            peers: true,
            release: true,
            handshakes: None,
            timeout: Duration::from_secs(10),
            cross_node_attempts: 10_000,
            race_rounds: 1_000,
        }
    }

    pub(crate) fn quick() -> Plan {
        Plan {
            rounds: 3,
            run: Duration::from_millis(1500),
            s_time_seconds: 2,
            cross_node_attempts: 2_000,
            race_rounds: 200,
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
            cross_node_attempts: 40,
            race_rounds: 10,
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
    pub races: Vec<RaceFigure>,
    /// Each cachet cluster node's pull figures, in node order; empty when
    /// the binary publishes none.
    pub pulls: Vec<Pulls>,
    /// The same on a fresh cluster after one client's resumptions, one
    /// connection at a time: what a pull costs when the machine is not
    /// saturated by the load generator and the other nodes.
    pub pulls_one_client: Vec<Pulls>,
    pub memory: Vec<MemoryFigure>,
    pub s_time: Vec<STime>,
    /// System calls per proxied request, per server (ECDSA).
    pub syscalls: Vec<(Kind, f64)>,
    /// What rustls' side of each handshake load costs through memory, in
    /// microseconds (`cargo bench -p cachet --bench handshake`): the least
    /// user time a handshake of that kind can cost a router on rustls, which
    /// the CPU verdicts add to the kernel's part. Empty when not measured.
    pub tls_alone: Vec<(Load, f64)>,
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
    /// The server's CPU time per operation, in microseconds, per round.
    pub cpu_us: Vec<f64>,
    /// Of it, system (kernel) time, per round.
    pub system_us: Vec<f64>,
    pub errors: u64,
    /// Resumption ratio of the last round (resumed loads).
    pub resumption_ratio: f64,
}

impl Throughput {
    pub(crate) fn median(&self) -> f64 {
        median(&self.samples)
    }

    pub(crate) fn cpu_median(&self) -> Option<f64> {
        (!self.cpu_us.is_empty()).then(|| median(&self.cpu_us))
    }

    pub(crate) fn system_median(&self) -> Option<f64> {
        (!self.system_us.is_empty()).then(|| median(&self.system_us))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CrossNode {
    pub kind: Kind,
    pub tls: Tls,
    /// New connections per second across all clients; `None`: each client
    /// reconnects the moment its last connection closed.
    pub pace: Option<u32>,
    /// Resumed of attempts.
    pub ratio: f64,
    /// Handshakes that offered a session, and of those, resumed.
    pub attempts: u64,
    pub resumed: u64,
    pub handshakes: u64,
    pub errors: u64,
    /// CPU time of the three nodes per handshake, in microseconds.
    pub cpu_us: Option<f64>,
}

/// The ticket race on three nodes of one kind.
#[derive(Debug, Clone)]
pub(crate) struct RaceFigure {
    pub kind: Kind,
    pub race: load::Race,
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

    /// The median server CPU per operation of `load` on `kind`.
    pub(crate) fn cpu_median(&self, key_type: KeyType, load: Load, kind: Kind) -> Option<f64> {
        self.throughput
            .iter()
            .find(|t| t.key_type == key_type && t.load == load && t.kind == kind)
            .and_then(Throughput::cpu_median)
    }

    /// The median system (kernel) time per operation of `load` on `kind`.
    pub(crate) fn system_median(&self, key_type: KeyType, load: Load, kind: Kind) -> Option<f64> {
        self.throughput
            .iter()
            .find(|t| t.key_type == key_type && t.load == load && t.kind == kind)
            .and_then(Throughput::system_median)
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

/// Installs the missing peers: Debian's packages (and strace), and Sozu
/// with `cargo install` (after the package its build needs).
pub(crate) fn install() -> Result<()> {
    let mut missing: Vec<&str> = servers::PEERS
        .iter()
        .filter(|kind| kind.version().is_none())
        .filter_map(|kind| kind.package())
        .collect();
    // For the system calls per proxied request.
    if !cachet_tests::tools::installed("strace", &["-V"]) {
        missing.push("strace");
    }
    if !missing.is_empty() {
        crate::run(Path::new("/"), "apt-get", &["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        crate::run(Path::new("/"), "apt-get", &args)?;
    }
    if Kind::Sozu.version().is_none() {
        let sozu = format!("sozu@{}", servers::SOZU_VERSION);
        crate::run(Path::new("/"), "cargo", &["install", "--locked", &sozu])?;
    }
    Ok(())
}

/// Runs the whole comparison.
pub(crate) fn run(root: &Path, plan: Plan) -> Result<Results> {
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
) -> Result<()> {
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
                .push(format!("{} did not start: {e:#}", kind.name())),
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
                let meter = cpu::Meter::start(&[server.pid])?;
                let outcome = load::run(setup.cachet, &[server.addr], load, pressure)?;
                let cost = cpu::per_operation(meter.spent()?, load.operations(&outcome));
                eprintln!(
                    "xtask: {} round {round}/{}: {} {}: {:.0} ({} errors), server CPU {} per {}",
                    key_type.label(),
                    plan.rounds,
                    server.kind.name(),
                    load.label(),
                    load.figure(&outcome),
                    outcome.errors.total,
                    cost.map_or_else(
                        || "n/a".to_owned(),
                        |c| format!("{:.1} us ({:.1} in the kernel)", c.total_us, c.system_us)
                    ),
                    load.operation()
                );
                record(results, key_type, load, server.kind, &outcome, cost);
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
                    Err(e) => results.failures.push(format!("{e:#}")),
                }
            }
        }
    }
    // Under strace, so after every timed figure; not in the smoke run,
    // whose machine may not allow tracing.
    if extras && plan.peers {
        for server in &running {
            match syscalls::per_request(setup.cachet, server, pressure, setup.scratch) {
                Ok(calls) => results.syscalls.push((server.kind, calls)),
                Err(e) => results
                    .failures
                    .push(format!("system calls of {}: {e:#}", server.kind.name())),
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

fn record(
    results: &mut Results,
    key_type: KeyType,
    load: Load,
    kind: Kind,
    outcome: &Report,
    cost: Option<cpu::PerOperation>,
) {
    let index = match results
        .throughput
        .iter()
        .position(|t| t.key_type == key_type && t.load == load && t.kind == kind)
    {
        Some(index) => index,
        None => {
            results.throughput.push(Throughput {
                key_type,
                load,
                kind,
                samples: Vec::new(),
                cpu_us: Vec::new(),
                system_us: Vec::new(),
                errors: 0,
                resumption_ratio: 0.0,
            });
            results.throughput.len() - 1
        }
    };
    let entry = &mut results.throughput[index];
    entry.samples.push(load.figure(outcome));
    if let Some(cost) = cost {
        entry.cpu_us.push(cost.total_us);
        entry.system_us.push(cost.system_us);
    }
    entry.errors += outcome.errors.total;
    entry.resumption_ratio = outcome.handshakes.resumption_ratio.unwrap_or(0.0);
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
fn memory_figure(cachet: &Path, server: &Server, plan: Plan) -> Result<MemoryFigure> {
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
        sessions += outcome.handshakes.full;
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

/// Bound on one cross-node run, which stops at its attempts: far more
/// than a paced run of the full plan needs (12.5 s at 800 per second).
const CROSS_NODE_BOUND: Duration = Duration::from_secs(300);

/// Three nodes of each kind, one worker each, behind round-robin: the
/// cross-node runs, the ticket race, and on cachet the pull figures.
fn cross_node(results: &mut Results, setup: &Setup<'_>, plan: Plan) -> Result<()> {
    let key_file = setup.scratch.join("cluster.key");
    let key = Command::new(setup.cachet)
        .arg("keygen")
        .output()
        .context("cachet keygen")?;
    std::fs::write(&key_file, &key.stdout).with_context(|| format!("{}", key_file.display()))?;
    let kinds: Vec<Kind> = results.compared().collect();
    for kind in kinds {
        let Some(cluster) = three_nodes(results, setup, kind, &key_file)? else {
            continue;
        };
        let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
        let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.pid).collect();
        for pace in CROSS_NODE_PACES {
            for tls in [Tls::V12, Tls::V13] {
                let figure = cross_node_run(setup, plan, &addrs, &pids, kind, tls, pace)?;
                if figure.attempts < plan.cross_node_attempts {
                    results.failures.push(format!(
                        "three {} nodes, TLS {}, {}: {} resumption attempts of the {} wanted \
                         in {CROSS_NODE_BOUND:?}",
                        kind.name(),
                        tls.as_str(),
                        pace_label(pace),
                        figure.attempts,
                        plan.cross_node_attempts
                    ));
                }
                results.cross_node.push(figure);
            }
        }
        match load::ticket_race(setup.cachet, &addrs, plan.race_rounds, plan.timeout) {
            Ok(race) => {
                eprintln!(
                    "xtask: three {} nodes, ticket race: double resumptions {} of {} rounds \
                     (once {}, nowhere {}, no ticket {}, {} errors)",
                    kind.name(),
                    race.counts.double_resumptions,
                    race.counts.rounds,
                    race.counts.resumed_once,
                    race.counts.resumed_nowhere,
                    race.counts.no_ticket,
                    race.errors
                );
                results.races.push(RaceFigure { kind, race });
            }
            Err(e) => results
                .failures
                .push(format!("three {} nodes, ticket race: {e:#}", kind.name())),
        }
        if kind == Kind::Cachet {
            results.pulls = pull_figures(results, &cluster.stats);
            drop(cluster);
            results.pulls_one_client = one_client_pulls(results, setup, plan, &key_file)?;
        }
    }
    Ok(())
}

/// TLS 1.3 resumptions by one client, one connection at a time, round-robin
/// over a fresh cachet cluster: every attempt on a node that did not issue
/// the ticket is a pull. Returns the nodes' pull figures.
fn one_client_pulls(
    results: &mut Results,
    setup: &Setup<'_>,
    plan: Plan,
    key_file: &Path,
) -> Result<Vec<Pulls>> {
    let Some(cluster) = three_nodes(results, setup, Kind::Cachet, key_file)? else {
        return Ok(Vec::new());
    };
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let pressure = Pressure {
        connections: 1,
        duration: CROSS_NODE_BOUND,
        rate: None,
        handshakes: Some(plan.cross_node_attempts / 4 + 1),
        timeout: plan.timeout,
    };
    let outcome = load::run(setup.cachet, &addrs, Load::Resumed(Tls::V13), pressure)?;
    let figures = pull_figures(results, &cluster.stats);
    let worst = pulls::worst_p99_us(&figures);
    eprintln!(
        "xtask: three cachet nodes, one client: {} of {} attempts resumed, pull wait p99 up to \
         {worst:?} us",
        outcome.handshakes.offered_resumed, outcome.handshakes.offered
    );
    Ok(figures)
}

/// One cross-node run: `plan.cross_node_attempts` resumption attempts
/// (each client's first handshake has nothing to offer), with the nodes'
/// CPU time.
fn cross_node_run(
    setup: &Setup<'_>,
    plan: Plan,
    addrs: &[SocketAddr],
    pids: &[u32],
    kind: Kind,
    tls: Tls,
    pace: Option<u32>,
) -> Result<CrossNode> {
    let pressure = Pressure {
        connections: plan.connections,
        duration: CROSS_NODE_BOUND,
        rate: pace,
        handshakes: Some(plan.cross_node_attempts + plan.connections as u64),
        timeout: plan.timeout,
    };
    let meter = cpu::Meter::start(pids)?;
    let outcome = load::run(setup.cachet, addrs, Load::Resumed(tls), pressure)?;
    let cpu_us = cpu::per_operation_us(meter.spent()?.total(), outcome.handshakes.total);
    eprintln!(
        "xtask: three {} nodes, TLS {}, {}: {} of {} attempts resumed ({:.1}%), {} errors",
        kind.name(),
        tls.as_str(),
        pace_label(pace),
        outcome.handshakes.offered_resumed,
        outcome.handshakes.offered,
        100.0 * outcome.handshakes.resumption_ratio.unwrap_or(0.0),
        outcome.errors.total
    );
    Ok(CrossNode {
        kind,
        tls,
        pace,
        ratio: outcome.handshakes.resumption_ratio.unwrap_or(0.0),
        attempts: outcome.handshakes.offered,
        resumed: outcome.handshakes.offered_resumed,
        handshakes: outcome.handshakes.total,
        errors: outcome.errors.total,
        cpu_us,
    })
}

/// Each cachet node's pull figures; none when the binary has none (said)
/// or one could not be read (a failure).
fn pull_figures(results: &mut Results, stats: &[SocketAddr]) -> Vec<Pulls> {
    let mut figures = Vec::new();
    for (i, addr) in stats.iter().enumerate() {
        let read =
            crate::cluster::read_stats(&addr.to_string()).and_then(|s| pulls::from_stats(&s));
        match read {
            Ok(Some(pulls)) => figures.push(pulls),
            Ok(None) => {
                eprintln!("xtask: cachet node {} publishes no pull figures", i + 1);
                return Vec::new();
            }
            Err(e) => {
                results
                    .failures
                    .push(format!("cachet node {} pull figures: {e:#}", i + 1));
                return Vec::new();
            }
        }
    }
    figures
}

/// Three running nodes of one kind, stopped when dropped.
struct Cluster {
    _processes: Processes,
    nodes: Vec<Server>,
    /// cachet's stats addresses (empty for the others).
    stats: Vec<SocketAddr>,
}

/// Three nodes of `kind` (a cachet cluster: each node is given the others'
/// sync ports and a stats port, free a moment before; should one have been
/// taken meanwhile, all three start again on fresh ones). `None` when they
/// did not start, which is recorded in `results`.
fn three_nodes(
    results: &mut Results,
    setup: &Setup<'_>,
    kind: Kind,
    key_file: &Path,
) -> Result<Option<Cluster>> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let mut processes = Processes::default();
        let syncs = [
            servers::free_udp_port()?,
            servers::free_udp_port()?,
            servers::free_udp_port()?,
        ];
        let mut nodes = Vec::new();
        let mut stats = Vec::new();
        for (i, sync) in syncs.iter().enumerate() {
            let cluster = ClusterNode {
                key_file,
                sync: *sync,
                peers: syncs.iter().filter(|s| *s != sync).copied().collect(),
                stats: servers::free_tcp_port()?,
            };
            let name = format!("{}-node{}", kind.name(), i + 1).to_lowercase();
            let cluster = (kind == Kind::Cachet).then_some(&cluster);
            match servers::start(&mut processes, kind, &name, setup, cluster) {
                Ok(server) => {
                    nodes.push(server);
                    stats.extend(cluster.map(|c| c.stats));
                }
                // The server's own words, somewhere in the chain.
                Err(e)
                    if format!("{e:#}").contains("Address already in use")
                        && attempt < ATTEMPTS =>
                {
                    break
                }
                Err(e) => {
                    results.failures.push(format!(
                        "{} node {} did not start: {e:#}",
                        kind.name(),
                        i + 1
                    ));
                    return Ok(None);
                }
            }
        }
        if nodes.len() == 3 {
            return Ok(Some(Cluster {
                _processes: processes,
                nodes,
                stats,
            }));
        }
        eprintln!("xtask: a port was taken before its node bound it; new ports");
    }
    unreachable!("the last attempt returns")
}

/// A directory of the run's own, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("cachet-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
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
