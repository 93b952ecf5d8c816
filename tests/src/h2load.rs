//! h2load (nghttp2-client): many HTTP/2 streams multiplexed on a few
//! connections, or HTTP/1.1 requests pipelined on them, and its summary
//! read back.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::tools;

pub fn require_h2load() {
    tools::require("h2load", &["--version"], "nghttp2-client");
}

/// A load to put on the router.
#[derive(Clone, Debug)]
pub struct Load<'a> {
    /// `-n`: requests in all.
    pub requests: u32,
    /// `-c`: connections.
    pub clients: u32,
    /// `-m`: streams in flight per connection (with `h1`, requests
    /// pipelined).
    pub streams: u32,
    /// `--h1`: HTTP/1.1 (ALPN `http/1.1`) instead of HTTP/2.
    pub h1: bool,
    pub path: &'a str,
    /// `-d`: a file whose content is POSTed with each request.
    pub data: Option<&'a std::path::Path>,
    /// Bound on the whole run.
    pub timeout: Duration,
}

/// h2load's summary.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 4],
    /// The `finished in ...` line, for the record.
    pub finished: String,
}

/// Runs h2load against `https://localhost:PORT/PATH` at `addr` and returns
/// its summary; fails the test if h2load does not finish or prints none.
pub fn run(addr: SocketAddr, load: &Load<'_>) -> (Summary, String) {
    let mut command = Command::new("h2load");
    command
        .args(["-n", &load.requests.to_string()])
        .args(["-c", &load.clients.to_string()])
        .args(["-m", &load.streams.to_string()])
        .arg(format!("--connect-to={addr}"));
    if load.h1 {
        command.arg("--h1");
    }
    if let Some(data) = load.data {
        command.arg("-d").arg(data);
    }
    command.arg(format!("https://localhost:{}{}", addr.port(), load.path));
    let output = tools::run_bounded(&mut command, b"", load.timeout);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let summary = parse(&stdout).unwrap_or_else(|| {
        panic!(
            "no summary from h2load ({}); stdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (summary, stdout)
}

/// Reads the `requests:`, `status codes:` and `finished in` lines.
pub fn parse(stdout: &str) -> Option<Summary> {
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix).map(str::trim))
    };
    // "2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"
    let counts = |text: &str| -> Option<Vec<(String, u64)>> {
        text.split(',')
            .map(|item| {
                let (count, name) = item.trim().split_once(' ')?;
                Some((name.to_owned(), count.parse().ok()?))
            })
            .collect()
    };
    let requests = counts(line("requests:")?)?;
    let count = |name: &str| {
        requests
            .iter()
            .find(|(key, _)| key == name)
            .map(|&(_, count)| count)
    };
    let codes = counts(line("status codes:")?)?;
    let mut status = [0; 4];
    for (class, slot) in ["2xx", "3xx", "4xx", "5xx"].into_iter().zip(&mut status) {
        *slot = codes
            .iter()
            .find(|(key, _)| key == class)
            .map(|&(_, count)| count)?;
    }
    Some(Summary {
        total: count("total")?,
        succeeded: count("succeeded")?,
        failed: count("failed")?,
        errored: count("errored")?,
        timeout: count("timeout")?,
        status,
        finished: format!("finished in {}", line("finished in")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary() {
        let stdout = "starting benchmark...\n\
            finished in 3.05s, 655.74 req/s, 1.02MB/s\n\
            requests: 2000 total, 2000 started, 1998 done, 1997 succeeded, 3 failed, 2 errored, 1 timeout\n\
            status codes: 1997 2xx, 0 3xx, 1 4xx, 0 5xx\n\
            traffic: 3.11MB (3258421) total\n";
        let summary = parse(stdout).unwrap();
        assert_eq!(
            summary,
            Summary {
                total: 2000,
                succeeded: 1997,
                failed: 3,
                errored: 2,
                timeout: 1,
                status: [1997, 0, 1, 0],
                finished: "finished in 3.05s, 655.74 req/s, 1.02MB/s".to_owned(),
            }
        );
        assert_eq!(parse("connection refused\n"), None);
    }
}
