//! CPU time of a server: user plus system time of its whole process tree
//! (master and workers, every thread), read from `/proc`. Divided by the
//! operations a load made, it is what one operation costs the server,
//! whatever the load generator (sharing the same cores) costs.

use std::fs;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::memory::tree;

/// User + system time spent so far by `root` and its descendants.
pub(crate) fn of_tree(root: u32) -> Result<Duration> {
    // Ticks are 1/CLK_TCK s (100 on usual kernels); ask rather than assume.
    let ticks_per_s = clock_ticks()?;
    let mut ticks = 0u64;
    let mut seen = 0;
    for pid in tree(root) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // exited between listing and reading
        };
        ticks += user_and_system_ticks(&stat)
            .with_context(|| format!("/proc/{pid}/stat is not as expected: {stat}"))?;
        seen += 1;
    }
    if seen == 0 {
        return Err(anyhow!("process {root} is gone"));
    }
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_s as f64))
}

/// CPU time spent by some process trees (a server's, or a cluster's three)
/// from its start to [`Meter::spent`].
pub(crate) struct Meter {
    roots: Vec<u32>,
    start: Duration,
}

impl Meter {
    pub(crate) fn start(roots: &[u32]) -> Result<Meter> {
        Ok(Meter {
            roots: roots.to_vec(),
            start: of_trees(roots)?,
        })
    }

    pub(crate) fn spent(&self) -> Result<Duration> {
        Ok(of_trees(&self.roots)?.saturating_sub(self.start))
    }
}

fn of_trees(roots: &[u32]) -> Result<Duration> {
    roots.iter().map(|root| of_tree(*root)).sum()
}

/// Microseconds of CPU per operation; `None` without operations.
pub(crate) fn per_operation_us(spent: Duration, operations: u64) -> Option<f64> {
    (operations > 0).then(|| spent.as_secs_f64() * 1e6 / operations as f64)
}

/// Fields 14 and 15 (utime, stime) of `/proc/PID/stat`, counted after the
/// command name, which may itself hold spaces and parentheses.
fn user_and_system_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn clock_ticks() -> Result<u64> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("getconf CLK_TCK")?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        assert_eq!(user_and_system_ticks(stat), Some(10));
    }

    #[test]
    fn cpu_per_operation() {
        assert_eq!(
            per_operation_us(Duration::from_millis(300), 2000),
            Some(150.0)
        );
        assert_eq!(per_operation_us(Duration::ZERO, 10), Some(0.0));
        assert_eq!(per_operation_us(Duration::from_secs(1), 0), None);
    }

    #[test]
    fn this_process_has_spent_time() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(of_tree(std::process::id()).unwrap() > Duration::ZERO);
        let me = std::process::id();
        let meter = Meter::start(&[me, me]).unwrap();
        assert!(meter.spent().unwrap() < Duration::from_secs(3600));
    }
}
