//! curl as an independent HTTP/2, HTTP/1.1 and HTTP/1.0 client, verifying
//! the router's certificate against the test CA.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::tools;

/// Bound on one transfer, for curl's own `--max-time`; the process gets a
/// little longer before the test gives up on it.
const MAX_TIME: Duration = Duration::from_secs(120);

pub fn require_curl() {
    tools::require("curl", &["--version"], "curl");
}

/// The HTTP version curl is told to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// `--http2`: ALPN offers `h2` then `http/1.1`.
    V2,
    /// `--http1.1`: ALPN offers `http/1.1` only.
    V11,
    /// `--http1.0`: ALPN offers `http/1.0` only.
    V10,
}

impl Http {
    pub const ALL: [Http; 3] = [Http::V2, Http::V11, Http::V10];

    fn flag(self) -> &'static str {
        match self {
            Http::V2 => "--http2",
            Http::V11 => "--http1.1",
            Http::V10 => "--http1.0",
        }
    }

    /// The version in the status line a client of this version receives.
    pub fn response_version(self) -> &'static str {
        match self {
            Http::V2 => "HTTP/2",
            Http::V11 => "HTTP/1.1",
            Http::V10 => "HTTP/1.0",
        }
    }

    /// SERVER_PROTOCOL as the router passes it to a uwsgi backend.
    pub fn server_protocol(self) -> &'static str {
        match self {
            Http::V2 => "HTTP/2.0",
            Http::V11 => "HTTP/1.1",
            Http::V10 => "HTTP/1.0",
        }
    }
}

/// What curl received.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    /// The final response head as received (`--dump-header`), status line
    /// included; an interim `100 Continue` head is left out.
    pub head: String,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The status line, without its line end (nor a trailing space).
    pub fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default().trim_end()
    }

    /// The HTTP version of the status line: `HTTP/2`, `HTTP/1.1`...
    pub fn version(&self) -> &str {
        self.head.split(' ').next().unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    /// The value of response header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Runs curl against the router at `addr` as `https://localhost:PORT/PATH`
/// (resolved to `addr`, so the certificate is checked for `localhost`),
/// with `args` added (method, headers, `--data-binary @-`, `-T -`...) and
/// `stdin` as its standard input. Fails the test if curl fails.
pub fn fetch(
    addr: SocketAddr,
    ca: &Path,
    http: Http,
    path: &str,
    args: &[&str],
    stdin: &[u8],
) -> Fetched {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let body = dir.path().join("body");
    let head = dir.path().join("head");
    let url = format!("https://localhost:{}{path}", addr.port());
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", http.flag()])
        .args(["--max-time", &MAX_TIME.as_secs().to_string()])
        .arg("--cacert")
        .arg(ca)
        .args([
            "--resolve",
            &format!("localhost:{}:{}", addr.port(), addr.ip()),
        ])
        .arg("--output")
        .arg(&body)
        .arg("--dump-header")
        .arg(&head)
        .args(["--write-out", "%{http_code}"])
        .args(args)
        .arg(&url);
    let output = tools::run_bounded(&mut command, stdin, MAX_TIME + Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "curl {} {url} {args:?} failed ({}): {stderr}",
        http.flag(),
        output.status
    );
    let written = String::from_utf8_lossy(&output.stdout);
    let heads = std::fs::read_to_string(&head).expect("curl's --dump-header file");
    Fetched {
        status: written
            .parse()
            .unwrap_or_else(|_| panic!("curl's --write-out printed {written:?}")),
        head: final_head(&heads).to_owned(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

/// The last of the heads curl dumped (interim responses come first).
fn final_head(heads: &str) -> &str {
    heads
        .split("\r\n\r\n")
        .filter(|head| !head.is_empty())
        .last()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interim_heads_are_skipped() {
        let heads = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n";
        let fetched = Fetched {
            status: 200,
            head: final_head(heads).to_owned(),
            body: Vec::new(),
        };
        assert_eq!(fetched.version(), "HTTP/1.1");
        assert_eq!(fetched.status_line(), "HTTP/1.1 200 OK");
        assert_eq!(fetched.header("x-a"), Some("1"));
        assert_eq!(fetched.header("x-b"), None);
    }
}
