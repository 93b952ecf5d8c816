//! `cargo xtask bench --access-log`: what the access log costs proxied
//! requests, the figure issue #13 bounds at 5%.
//!
//! Four routers run side by side with the same certificate, backend and
//! worker count: without an access log, with plain lines and with JSON
//! lines (each written to a file), and without again as a control. Round
//! after round, the proxied-request load of the comparison runs against
//! each in turn (so that a disturbance
//! of the machine hits all of them alike), each round starting with the
//! next router; medians of requests per second and
//! of the routers' own CPU time per request (user + system of the process
//! tree, from /proc) are compared with the router without a log.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context, Result};

use super::load::{self, Load};
use super::servers::{self, Setup};
use super::{backend, certs, cpu, median, KeyType, Plan};
use crate::processes::{release_cachet, Processes};

/// The variants measured, the first being the reference. The last is the
/// reference again: how far it lands from 1.0 is the noise of the run.
const VARIANTS: [(&str, Option<&str>); 4] = [
    ("no access log", None),
    ("access log, plain", Some("plain")),
    ("access log, JSON", Some("json")),
    ("no access log (control)", None),
];

struct Sample {
    requests_per_s: f64,
    cpu_us_per_request: f64,
}

/// Runs the comparison and prints a table; `quick` shortens it.
pub(crate) fn run(root: &Path, quick: bool) -> Result<String> {
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let rounds = plan.rounds.max(5);
    let scratch = tempdir(root)?;
    let certificate = certs::make(&scratch, KeyType::EcdsaP256)?;
    let backend = backend::start()?;
    let cachet = release_cachet(root)?;
    let setup = Setup {
        cachet: &cachet,
        certificate: &certificate,
        backend: backend.addr,
        workers: plan.workers,
        scratch: &scratch,
    };
    let mut processes = Processes::default();
    let mut routers = Vec::new();
    for (index, (label, format)) in VARIANTS.iter().enumerate() {
        let addr = servers::free_tcp_port()?;
        let mut command = Command::new(&cachet);
        command.args(servers::cachet_args(&setup, addr, None));
        if let Some(format) = format {
            let log = scratch.join(format!("access-{index}.log"));
            command.arg("--access-log").arg(&log);
            command.args(["--access-log-format", format]);
        }
        let pid = processes.start_cachet(&format!("cachet-{index}"), command)?;
        routers.push((*label, addr, pid));
    }
    let pressure = plan.pressure();
    let mut samples: Vec<Vec<Sample>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for round in 0..=rounds {
        // Each round starts with another router, so that no variant always
        // runs first (or right after the same neighbour).
        for offset in 0..routers.len() {
            let index = (round + offset) % routers.len();
            let (label, addr, pid) = &routers[index];
            let meter = cpu::Meter::start(&[*pid])?;
            let outcome = load::run(&cachet, &[*addr], Load::Proxied, pressure)?;
            let spent = meter.spent()?;
            if outcome.errors.total > 0 || outcome.requests.total == 0 {
                return Err(anyhow!(
                    "{label}: {} errors, {} requests",
                    outcome.errors.total,
                    outcome.requests.total
                ));
            }
            // Round 0 warms every router up and is not counted.
            if round > 0 {
                samples[index].push(Sample {
                    requests_per_s: outcome.requests.per_s,
                    cpu_us_per_request: cpu::per_operation_us(
                        spent.total(),
                        outcome.requests.total,
                    )
                    .unwrap_or(0.0),
                });
            }
        }
    }
    let medians: Vec<(f64, f64)> = samples
        .iter()
        .map(|rounds| {
            let rps: Vec<f64> = rounds.iter().map(|s| s.requests_per_s).collect();
            let cpu: Vec<f64> = rounds.iter().map(|s| s.cpu_us_per_request).collect();
            (median(&rps), median(&cpu))
        })
        .collect();
    let (base_rps, base_cpu) = medians[0];
    let mut table = format!(
        "Access log cost: proxied requests ({} clients, 100 requests per connection, \
         {} workers, ECDSA, TLS 1.3), medians of {rounds} interleaved rounds of {:?}\n\n\
         | router | requests/s | vs no log | server CPU per request | vs no log |\n\
         |---|---:|---:|---:|---:|\n",
        plan.connections, plan.workers, plan.run
    );
    for ((label, _, _), (rps, cpu)) in routers.iter().zip(&medians) {
        let _ = writeln!(
            table,
            "| {label} | {rps:.0} | {:.3} | {cpu:.1} us | {:.3} |",
            rps / base_rps,
            cpu / base_cpu
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(table)
}

fn tempdir(root: &Path) -> Result<std::path::PathBuf> {
    let dir =
        crate::processes::target_dir(root).join(format!("bench-access-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    Ok(dir)
}
