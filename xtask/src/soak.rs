//! `cargo xtask soak [ROUNDS]`: the tests, round after round, with every
//! core kept busy by `stress --cpu N`: the one-command check that the
//! suite does not flake on a loaded machine.
//!
//! Each round is what `cargo xtask ci` runs that timing could upset:
//! `cargo test --workspace` and the bench smoke run. Everything is built
//! before the load starts, so the rounds measure the tests, not the
//! compiler. Every round runs even after one failed, so a flake shows how
//! often it happens; the task fails if any round did, and ends with the
//! rounds' added `tests: N passed, N failed`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::processes::Group;
use crate::{bench, run_tests, Tally};

const DEFAULT_ROUNDS: u32 = 3;
/// stress stops by itself after this long per round, should the task be
/// killed before it could stop it.
const STRESS_SECONDS_PER_ROUND: u32 = 3600;

const USAGE: &str = "usage: cargo xtask soak [ROUNDS]
  runs `cargo test --workspace` and the bench smoke run ROUNDS times (default 3)
  while `stress --cpu N` keeps every core busy (N: the number of cores)";

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let rounds = match args {
        [] => DEFAULT_ROUNDS,
        [n] => n.parse().ok().filter(|&n| n > 0).with_context(|| {
            format!("soak: ROUNDS must be a whole number above 0, got {n:?}\n{USAGE}")
        })?,
        _ => bail!(USAGE),
    };
    crate::prepare::run()?;
    // Built unloaded: the tests and the binary they start.
    crate::run(root, "cargo", &["test", "--workspace", "--no-run"])?;
    crate::run(root, "cargo", &["build", "-p", "cachet"])?;

    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let _stress = stress(cores, rounds)?;
    let mut total = Tally::default();
    let mut failed_rounds = Vec::new();
    for round in 1..=rounds {
        eprintln!("xtask: soak round {round}/{rounds}, {cores} cores busy with stress");
        let outcome = run_tests(root).and_then(|(tally, passed)| {
            total.passed += tally.passed;
            total.failed += tally.failed;
            let smoke = bench::smoke_run(root);
            match (passed, smoke) {
                (true, Ok(())) => Ok(()),
                (false, _) => Err(anyhow!("`cargo test --workspace` failed")),
                (true, Err(e)) => Err(e),
            }
        });
        if let Err(error) = outcome {
            eprintln!("xtask: soak round {round}/{rounds} failed: {error:#}");
            failed_rounds.push(round);
        }
    }
    println!("tests: {} passed, {} failed", total.passed, total.failed);
    if failed_rounds.is_empty() {
        eprintln!("xtask: soak: {rounds} rounds passed with {cores} cores busy");
        Ok(())
    } else {
        Err(anyhow!(
            "soak: round(s) {failed_rounds:?} of {rounds} failed (see above)"
        ))
    }
}

/// `stress --cpu N`, stopped with its workers when dropped.
fn stress(cores: usize, rounds: u32) -> Result<Group> {
    let mut command = Command::new("stress");
    command
        .args(["--quiet", "--cpu", &cores.to_string(), "--timeout"])
        .arg(format!("{}s", rounds * STRESS_SECONDS_PER_ROUND))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    eprintln!("xtask: $ stress --cpu {cores}");
    Group::spawn(command)
}
