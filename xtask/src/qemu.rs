//! `cargo xtask qemu`: `cachet-core`'s self-checks on an emulated Cortex-M3.
//!
//! Builds the `qemu/` firmware (its own cargo project, for
//! `thumbv7m-none-eabi`) and boots it under `qemu-system-arm` as an
//! LM3S6965 with 64 KiB of RAM, through the runner in
//! `qemu/.cargo/config.toml`. The firmware reports over semihosting and
//! ends with `N passed, M failed`; the task passes only on that line with
//! at least one check and none failed, so a firmware that stops early (a
//! panic, a fault) cannot pass by exiting 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::processes::Group;

pub(crate) const TARGET: &str = "thumbv7m-none-eabi";
const EMULATOR: &str = "qemu-system-arm";

/// The checks take a few seconds under emulation; a firmware spinning in a
/// fault handler would otherwise hold CI until its own time runs out.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Builds and runs the self-check firmware; fails unless every check passed.
pub fn run(root: &Path) -> Result<()> {
    let dir = root.join("qemu");
    check_tools()?;
    // Built apart from the run, so that the timeout measures the emulated
    // run alone, not a cold build of the crypto crates.
    crate::run(&dir, "cargo", &["build", "--release"])?;
    let (lines, status) = run_firmware(&dir)?;
    let summary = lines.iter().rev().find_map(|line| tally(line));
    match summary {
        Some((passed, 0)) if passed > 0 && status.success() => Ok(()),
        Some((passed, failed)) => Err(anyhow!(
            "qemu self-checks: {passed} passed, {failed} failed (cargo run: {status})"
        )),
        None => Err(anyhow!(
            "qemu self-checks: no `N passed, M failed` line; the firmware stopped early \
             (cargo run: {status})"
        )),
    }
}

/// Fails with the command that installs what is missing.
fn check_tools() -> Result<()> {
    if !crate::prepare::target_installed(&crate::prepare::sysroot()?, TARGET) {
        return Err(anyhow!(
            "the {TARGET} target is not installed; add it with `rustup target add {TARGET}`"
        ));
    }
    let emulator = Command::new(EMULATOR)
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !emulator.is_ok_and(|s| s.success()) {
        return Err(anyhow!(
            "{EMULATOR} not found; on Debian or Ubuntu: `apt-get install qemu-system-arm`"
        ));
    }
    Ok(())
}

/// `cargo run --release` in `dir`, echoing and collecting its standard
/// output, killed if it outlasts [`TIMEOUT`].
fn run_firmware(dir: &Path) -> Result<(Vec<String>, std::process::ExitStatus)> {
    eprintln!("xtask: $ cargo run --release   (in qemu/, {TIMEOUT:?} at most)");
    let mut command = Command::new("cargo");
    command
        .args(["run", "--release"])
        .current_dir(dir)
        // qemu's -nographic console reads the terminal: with it, the
        // emulator in its own process group would be stopped by SIGTTIN.
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // cargo starts qemu as its own child; a group of their own lets a
    // timeout kill both, not leave the emulator running behind cargo.
    let mut group = Group::spawn(command)?;
    let stdout = group.child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if sender.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + TIMEOUT;
    let mut lines = Vec::new();
    loop {
        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                drop(group);
                return Err(anyhow!(
                    "qemu self-checks did not finish within {TIMEOUT:?}; killed"
                ));
            }
        }
    }
    let status = group.child.wait().context("waiting for cargo run")?;
    Ok((lines, status))
}

/// The counts of a firmware summary line, `N passed, M failed`.
fn tally(line: &str) -> Option<(u64, u64)> {
    let (passed, failed) = line.trim().split_once(" passed, ")?;
    let failed = failed.strip_suffix(" failed")?;
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::tally;

    #[test]
    fn reads_only_exact_summary_lines() {
        assert_eq!(tally("18 passed, 0 failed"), Some((18, 0)));
        assert_eq!(tally("  3 passed, 2 failed\r"), Some((3, 2)));
        assert_eq!(tally("ok cache_clear"), None);
        assert_eq!(tally("FAILED x: 1 passed, 0 failed?"), None);
        assert_eq!(tally("tests: 1 passed; 0 failed"), None);
    }
}
