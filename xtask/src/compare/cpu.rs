//! CPU time of a server: user plus system time of its whole process tree
//! (master and workers, every thread), read from `/proc`. Divided by the
//! operations a load made, it is what one operation costs the server,
//! whatever the load generator (sharing the same cores) costs. The system
//! part is kept apart too: on loopback it is mostly TCP (a send runs the
//! receiver's TCP processing as well), which every server needs for the
//! same connections and requests, so it shows how much of a ratio a
//! server's own work can still move.

use std::fs;
use std::iter::Sum;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::memory::tree;

/// CPU time as the kernel accounts it: in user space and in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub(crate) fn total(self) -> Duration {
        self.user + self.system
    }

    fn saturating_sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

impl Sum for CpuTime {
    fn sum<I: Iterator<Item = CpuTime>>(times: I) -> CpuTime {
        times.fold(CpuTime::default(), |a, b| CpuTime {
            user: a.user + b.user,
            system: a.system + b.system,
        })
    }
}

/// What one operation cost a server, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PerOperation {
    /// User + system time.
    pub total_us: f64,
    /// Of it, system time.
    pub system_us: f64,
}

/// User and system time spent so far by `root` and its descendants.
pub(crate) fn of_tree(root: u32) -> Result<CpuTime> {
    // Ticks are 1/CLK_TCK s (100 on usual kernels); ask rather than assume.
    let ticks_per_s = clock_ticks()? as f64;
    let (mut user, mut system) = (0u64, 0u64);
    let mut seen = 0;
    for pid in tree(root) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // exited between listing and reading
        };
        let (u, s) = user_and_system_ticks(&stat)
            .with_context(|| format!("/proc/{pid}/stat is not as expected: {stat}"))?;
        user += u;
        system += s;
        seen += 1;
    }
    if seen == 0 {
        return Err(anyhow!("process {root} is gone"));
    }
    Ok(CpuTime {
        user: Duration::from_secs_f64(user as f64 / ticks_per_s),
        system: Duration::from_secs_f64(system as f64 / ticks_per_s),
    })
}

/// CPU time spent by some process trees (a server's, or a cluster's three)
/// from its start to [`Meter::spent`].
pub(crate) struct Meter {
    roots: Vec<u32>,
    start: CpuTime,
}

impl Meter {
    pub(crate) fn start(roots: &[u32]) -> Result<Meter> {
        Ok(Meter {
            roots: roots.to_vec(),
            start: of_trees(roots)?,
        })
    }

    pub(crate) fn spent(&self) -> Result<CpuTime> {
        Ok(of_trees(&self.roots)?.saturating_sub(self.start))
    }
}

fn of_trees(roots: &[u32]) -> Result<CpuTime> {
    roots.iter().map(|root| of_tree(*root)).sum()
}

/// Microseconds of CPU per operation; `None` without operations.
pub(crate) fn per_operation_us(spent: Duration, operations: u64) -> Option<f64> {
    (operations > 0).then(|| spent.as_secs_f64() * 1e6 / operations as f64)
}

/// The whole and the system part per operation; `None` without operations.
pub(crate) fn per_operation(spent: CpuTime, operations: u64) -> Option<PerOperation> {
    Some(PerOperation {
        total_us: per_operation_us(spent.total(), operations)?,
        system_us: per_operation_us(spent.system, operations)?,
    })
}

/// Fields 14 and 15 (utime, stime) of `/proc/PID/stat`, counted after the
/// command name, which may itself hold spaces and parentheses.
fn user_and_system_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user, system))
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
        assert_eq!(user_and_system_ticks(stat), Some((7, 3)));
    }

    #[test]
    fn cpu_per_operation() {
        assert_eq!(
            per_operation_us(Duration::from_millis(300), 2000),
            Some(150.0)
        );
        assert_eq!(per_operation_us(Duration::ZERO, 10), Some(0.0));
        assert_eq!(per_operation_us(Duration::from_secs(1), 0), None);
        let spent = CpuTime {
            user: Duration::from_millis(100),
            system: Duration::from_millis(200),
        };
        assert_eq!(
            per_operation(spent, 2000),
            Some(PerOperation {
                total_us: 150.0,
                system_us: 100.0
            })
        );
        assert_eq!(per_operation(spent, 0), None);
    }

    #[test]
    fn this_process_has_spent_time() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(of_tree(std::process::id()).unwrap().user > Duration::ZERO);
        let me = std::process::id();
        let meter = Meter::start(&[me, me]).unwrap();
        assert!(meter.spent().unwrap().total() < Duration::from_secs(3600));
    }
}
