//! Memory of a server: its whole process tree (master and workers).
//!
//! Resident set sizes count a shared page once per process that maps it,
//! which would charge a shared session cache N times over; the
//! proportional set size (PSS) divides each shared page among its users, so
//! the sum over a tree counts every page once. Both are reported.

use std::fs;

use anyhow::{anyhow, Result};

/// Memory of a process tree, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub pss_kib: u64,
    pub rss_kib: u64,
    pub processes: usize,
}

/// The footprint of `root` and all its descendants.
pub(crate) fn of_tree(root: u32) -> Result<Footprint> {
    let mut footprint = Footprint::default();
    for pid in tree(root) {
        let path = format!("/proc/{pid}/smaps_rollup");
        let Ok(text) = fs::read_to_string(&path) else {
            // It exited between listing and reading.
            continue;
        };
        footprint.pss_kib += field_kib(&text, "Pss:").unwrap_or(0);
        footprint.rss_kib += field_kib(&text, "Rss:").unwrap_or(0);
        footprint.processes += 1;
    }
    if footprint.processes == 0 {
        return Err(anyhow!("process {root} is gone"));
    }
    Ok(footprint)
}

/// `root` and its descendants, from every process's parent in /proc.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let pid = found[next];
        found.extend(parents.iter().filter(|(_, p)| *p == pid).map(|(c, _)| *c));
        next += 1;
    }
    found
}

/// The parent pid from `/proc/PID/stat`: the field after the command name,
/// which may itself contain spaces and parentheses.
fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process() {
        let me = of_tree(std::process::id()).unwrap();
        assert!(me.processes >= 1);
        assert!(me.rss_kib > 0 && me.pss_kib > 0 && me.pss_kib <= me.rss_kib);
    }

    #[test]
    fn reads_fields() {
        let text =
            "00400000-7fff [rollup]\nRss:               10372 kB\nPss:                4201 kB\n";
        assert_eq!(field_kib(text, "Rss:"), Some(10372));
        assert_eq!(field_kib(text, "Pss:"), Some(4201));
        assert_eq!(field_kib(text, "Swap:"), None);
    }
}
