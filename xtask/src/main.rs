//! `cargo xtask <task>`: the project's automation, in Rust so that it runs
//! the same on every machine.
//!
//! * `ci`: installs what the checks need (`prepare`), then everything CI
//!   checks: formatting, clippy, the whole test suite, the no_std builds of
//!   `cachet-core` and `cachet-appliance` for `thumbv7em-none-eabihf` (with
//!   and without `defmt`) and of the example appliance firmware, the core's
//!   self-checks on an emulated Cortex-M3 (`qemu`), a smoke run of the
//!   benchmark comparison (`bench --smoke`) and a short run of every fuzz
//!   target.
//! * `prepare`: the Rust targets, cargo-fuzz and the Debian packages the
//!   checks need, installed when missing (`prepare.rs` holds the list).
//! * `soak [ROUNDS]`: the tests ROUNDS times with every core kept busy.
//! * `qemu`: those self-checks alone (`qemu-system-arm`, `thumbv7m-none-eabi`).
//! * `fuzz [SECONDS]`: each fuzz target for SECONDS (default 30).
//! * `bench [--install] [--quick] [--skip-micro] [--smoke]`: the criterion benchmarks
//!   and cachet side by side with nginx, HAProxy, hitch and Sozu, then
//!   `docs/BENCHMARKS.md` and its chart from the results.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{self, Command};

use anyhow::{anyhow, Context, Result};

mod bench;
mod cluster;
mod compare;
mod fleet;
mod prepare;
mod processes;
mod qemu;
mod soak;

const EMBEDDED_TARGET: &str = "thumbv7em-none-eabihf";
const FUZZ_TARGETS: [&str; 4] = ["wire_parse", "sync_node", "cache_ops", "client_hello"];

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("prepare") => prepare::run(),
        Some("soak") => soak::run(&root(), &args[1..]),
        Some("fuzz") => {
            let seconds = match args.get(1).map(|s| s.parse::<u32>()) {
                None => Ok(30),
                Some(Ok(n)) => Ok(n),
                Some(Err(_)) => Err(anyhow!(
                    "fuzz: SECONDS must be a whole number, got {:?}",
                    args[1]
                )),
            };
            seconds.and_then(fuzz)
        }
        Some("bench") => bench::all(&root(), &args[1..]),
        Some("cluster") => cluster::run(&root()),
        Some("fleet") => fleet::run(&root(), &args[1..]),
        Some("qemu") => qemu::run(&root()),
        Some(other) => Err(anyhow!("unknown task {other:?}\n\n{USAGE}")),
        None => Err(anyhow!(USAGE)),
    };
    if let Err(error) = result {
        // `{:#}`: the whole chain, each context before its cause.
        eprintln!("xtask: {error:#}");
        process::exit(1);
    }
}

const USAGE: &str = "usage: cargo xtask <task>
  ci              install what is missing, then format, lint, test, no_std builds,
                  short fuzz runs
  prepare         install what `ci` needs: Rust targets, cargo-fuzz, Debian packages
  soak [ROUNDS]   the tests ROUNDS times (default 3) with every core kept busy
  fuzz [SECONDS]  run every fuzz target for SECONDS each (default 30)
  bench [--install] [--quick] [--skip-micro] [--smoke]
                  benchmarks, cachet against nginx/HAProxy/hitch/Sozu; writes docs/BENCHMARKS.md
  cluster         three routers, a backend and HAProxy on loopback, a short resumption load
  fleet [--routers N] [--quick] [--redis-timeout MS]
                  N routers (default 8) sharing sessions through Redis, then a Redis
                  Cluster: resumption, the ticket race, memory, Redis killed under load
  qemu            cachet-core's self-checks on an emulated Cortex-M3 (qemu-system-arm)";

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    // `cargo run` sets the variable for the process: prefer it to the value
    // baked in at build time, which goes stale when a target directory is
    // shared between checkouts.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs a command in `dir`, failing with the command line if it fails.
pub(crate) fn run(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    run_command(command)
}

/// Runs `command`, echoing it first, failing with the command line if it
/// fails.
pub(crate) fn run_command(mut command: Command) -> Result<()> {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("xtask: $ {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if status.success() {
        Ok(())
    } else {
        Err(anyhow!("`{line}` failed ({status})"))
    }
}

fn ci() -> Result<()> {
    let root = root();
    prepare::run()?;
    run(&root, "cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        &root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let (tally, passed) = run_tests(&root)?;
    if !passed {
        println!("tests: {} passed, {} failed", tally.passed, tally.failed);
        return Err(anyhow!("`cargo test --workspace` failed"));
    }
    // The comparison with nginx, HAProxy and hitch, every step once on
    // cachet alone, so that it cannot rot between full runs; and each
    // in-memory handshake of the benchmark once (it checks that the
    // resumed ones resume).
    bench::smoke_run(&root)?;
    run(
        &root,
        "cargo",
        &["test", "-p", "cachet", "--bench", "handshake"],
    )?;
    // The no_std crates build for a microcontroller, with and without
    // defmt logging; the example appliance firmware links.
    for package in ["cachet-core", "cachet-appliance"] {
        let build = ["build", "-p", package, "--target", EMBEDDED_TARGET];
        run(&root, "cargo", &build)?;
        run(
            &root,
            "cargo",
            &[&build[..], &["--features", "defmt"]].concat(),
        )?;
    }
    run(
        &root.join("appliance/firmware"),
        "cargo",
        &["build", "--release"],
    )?;
    qemu::run(&root)?;
    fuzz(20)?;
    // The test runners' own summaries scroll away above the fuzz output;
    // repeat the total as the run's last line.
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    Ok(())
}

/// Passed and failed tests over every `cargo test` binary.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
}

/// `cargo test --workspace`, echoing its output and adding up the
/// `test result:` lines; whether it passed.
pub(crate) fn run_tests(root: &Path) -> Result<(Tally, bool)> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    eprintln!("xtask: $ cargo test --workspace");
    let mut child = Command::new("cargo")
        .args(["test", "--workspace"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut tally = Tally::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            tally.passed += count_before(rest, " passed");
            tally.failed += count_before(rest, " failed");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok((tally, status.success()))
}

/// The number just before `label` in a line like
/// `ok. 34 passed; 0 failed; 0 ignored`.
fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs each fuzz target for `seconds`. Uses nightly when it is installed
/// (libFuzzer needs sanitizer flags only nightly accepts), else stable
/// without sanitizers (`-s none`).
fn fuzz(seconds: u32) -> Result<()> {
    let fuzz_dir = root().join("fuzz");
    let nightly = Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let max_time = format!("-max_total_time={seconds}");
    for target in FUZZ_TARGETS {
        let mut args: Vec<&str> = Vec::new();
        if nightly {
            args.push("+nightly");
        }
        args.extend(["fuzz", "run", target, "-O"]);
        if !nightly {
            args.extend(["-s", "none"]);
        }
        args.extend(["--", &max_time]);
        run(&fuzz_dir, "cargo", &args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_counts_from_cargo_test_summaries() {
        let line =
            "ok. 34 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 10.84s";
        assert_eq!(count_before(line, " passed"), 34);
        assert_eq!(count_before(line, " failed"), 2);
        assert_eq!(count_before("FAILED. 1 passed; 3 failed;", " failed"), 3);
    }
}
