//! System calls per proxied request: every process (and thread) of a
//! server's tree under `strace -f -c` for one proxied run, the calls counted divided
//! by the requests the load completed.
//!
//! strace slows the server down many times over, so the run's rate means
//! nothing; the count per request is what matters: each call is a kernel
//! entry, and on loopback a send also runs the receiver's TCP processing.
//! Counted once per server (ECDSA), after the timed rounds.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::load::{self, Load, Pressure};
use super::memory::tree;
use super::servers::Server;

/// How long strace may take to attach to every thread.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// System calls per proxied request of `server`, under `pressure`.
pub(crate) fn per_request(
    cachet: &Path,
    server: &Server,
    pressure: Pressure,
    scratch: &Path,
) -> Result<f64> {
    let processes = tree(server.pid);
    if processes.is_empty() {
        bail!("{} has no process to trace", server.name);
    }
    let summary = scratch.join(format!("{}.strace", server.name));
    // `-p` takes every thread of a process along; `-f` adds children and
    // threads started later.
    let mut command = Command::new("strace");
    command.arg("-f").arg("-c").arg("-o").arg(&summary);
    for pid in &processes {
        command.arg("-p").arg(pid.to_string());
    }
    let mut strace = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run strace (Debian package `strace`)")?;
    // strace says "Process N attached" (with "with M threads" for a
    // threaded one) for each process; only once all are traced does the
    // load start, or early calls would go uncounted.
    let stderr = strace.stderr.take().expect("piped");
    let (attached, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("attached") && attached.send(()).is_err() {
                return;
            }
        }
    });
    for _ in &processes {
        if seen.recv_timeout(ATTACH_TIMEOUT).is_err() {
            let _ = strace.kill();
            let _ = strace.wait();
            bail!("strace did not attach to every process of {}", server.name);
        }
    }
    let outcome = load::run(cachet, &[server.addr], Load::Proxied, pressure);
    // SIGINT makes strace detach and write its summary (kill(1): xtask
    // has no unsafe).
    let interrupted = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let waited = strace.wait();
    let outcome = outcome?;
    interrupted.context("kill -INT strace")?;
    waited.context("waiting for strace")?;
    let text = std::fs::read_to_string(&summary)
        .with_context(|| format!("strace's summary {}", summary.display()))?;
    let calls =
        total_calls(&text).ok_or_else(|| anyhow!("no total line in strace's summary:\n{text}"))?;
    let requests = Load::Proxied.operations(&outcome);
    if requests == 0 {
        bail!("{}: no request completed under strace", server.name);
    }
    Ok(calls as f64 / requests as f64)
}

/// The calls column of the `total` line of `strace -c`'s table.
fn total_calls(summary: &str) -> Option<u64> {
    let line = summary
        .lines()
        .find(|line| line.split_whitespace().last() == Some("total"))?;
    // % time, seconds, usecs/call, calls, [errors], total
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total() {
        let summary = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 64.79    0.240791          15     15093         5 writev
 26.75    0.099434           6     14969        21 recvfrom
------ ----------- ----------- --------- --------- ----------------
100.00    0.371655          11     33410       161 total
";
        assert_eq!(total_calls(summary), Some(33410));
        assert_eq!(total_calls("nothing"), None);
    }
}
