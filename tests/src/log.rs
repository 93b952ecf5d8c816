//! The router's stderr, line by line.
//!
//! Two kinds of line share it: the interface lines scripts and tests read
//! (`cachet: listening https 127.0.0.1:8443`, `cachet: worker 1 pid 4242`,
//! `cachet: ready`, `cachet: reloaded`, ...; see the host's `listen`,
//! `master` and `reload` modules) and tracing's event lines
//! (`2026-01-01T00:00:00.000000Z  INFO cachet::router: router started`).
//! [`Line::parse`] reads both strictly, so that a line another process's
//! output was written into shows as an error naming the line rather than
//! as a wrong port.

use std::fmt;
use std::net::SocketAddr;

/// One line of the router's stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// `cachet: listening KIND ADDR`.
    Listening { kind: &'a str, addr: SocketAddr },
    /// `cachet: worker ID pid PID`, printed by a master for each worker it
    /// starts.
    Worker { id: usize, pid: u32 },
    /// `cachet: ready`.
    Ready,
    /// `cachet: reloaded`.
    Reloaded,
    /// `cachet: reload failed`.
    ReloadFailed,
    /// `cachet: error: ...`, or `cachet: worker ID: error: ...`.
    Error(&'a str),
    /// `cachet: test hook: ...`.
    TestHook(&'a str),
    /// A tracing event: its level and what follows it.
    Event { level: &'a str, text: &'a str },
}

/// A line that is neither an interface line nor a tracing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: String,
    pub why: &'static str,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.why, self.line)
    }
}

impl std::error::Error for BadLine {}

const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

impl<'a> Line<'a> {
    pub fn parse(line: &'a str) -> Result<Line<'a>, BadLine> {
        let bad = |why| BadLine {
            line: line.to_owned(),
            why,
        };
        let Some(rest) = line.strip_prefix("cachet: ") else {
            return event(line).ok_or_else(|| bad("neither a `cachet:` line nor a tracing event"));
        };
        if let Some(listening) = rest.strip_prefix("listening ") {
            let (kind, addr) = listening
                .split_once(' ')
                .ok_or_else(|| bad("not `listening KIND ADDR`"))?;
            let addr = addr
                .parse()
                .map_err(|_| bad("the listening address does not parse"))?;
            return Ok(Line::Listening { kind, addr });
        }
        if let Some(worker) = rest.strip_prefix("worker ") {
            let (id, what) = worker
                .split_once(' ')
                .ok_or_else(|| bad("not `worker ID ...`"))?;
            if let Some(error) = what.strip_prefix("error: ") {
                return match id.strip_suffix(':').map(str::parse::<usize>) {
                    Some(Ok(_)) => Ok(Line::Error(error)),
                    _ => Err(bad("not `worker ID: error: ...`")),
                };
            }
            let pid = what
                .strip_prefix("pid ")
                .ok_or_else(|| bad("not `worker ID pid PID`"))?;
            return match (id.parse(), pid.parse()) {
                (Ok(id), Ok(pid)) => Ok(Line::Worker { id, pid }),
                _ => Err(bad("the worker number or pid does not parse")),
            };
        }
        match rest {
            "ready" => Ok(Line::Ready),
            "reloaded" => Ok(Line::Reloaded),
            "reload failed" => Ok(Line::ReloadFailed),
            _ => {
                if let Some(error) = rest.strip_prefix("error: ") {
                    Ok(Line::Error(error))
                } else if let Some(hook) = rest.strip_prefix("test hook: ") {
                    Ok(Line::TestHook(hook))
                } else {
                    Err(bad("an unknown `cachet:` line"))
                }
            }
        }
    }
}

/// `TIMESTAMP LEVEL TARGET: TEXT`, as tracing-subscriber's default format
/// without colours writes it.
fn event(line: &str) -> Option<Line<'_>> {
    let (timestamp, rest) = line.split_once(' ')?;
    let digits = |range: std::ops::Range<usize>| {
        timestamp
            .get(range)
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
    };
    let shaped = timestamp.len() >= 21
        && digits(0..4)
        && timestamp.get(4..5) == Some("-")
        && timestamp.get(10..11) == Some("T")
        && timestamp.ends_with('Z');
    if !shaped {
        return None;
    }
    let (level, text) = rest.trim_start().split_once(' ')?;
    let target_ends = text.find(": ")?;
    let target_ok = text[..target_ends]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    (LEVELS.contains(&level) && target_ok).then_some(Line::Event { level, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_interface_line() {
        assert_eq!(
            Line::parse("cachet: listening https 127.0.0.1:8443"),
            Ok(Line::Listening {
                kind: "https",
                addr: "127.0.0.1:8443".parse().unwrap()
            })
        );
        assert_eq!(
            Line::parse("cachet: worker 12 pid 4242"),
            Ok(Line::Worker { id: 12, pid: 4242 })
        );
        assert_eq!(Line::parse("cachet: ready"), Ok(Line::Ready));
        assert_eq!(Line::parse("cachet: reloaded"), Ok(Line::Reloaded));
        assert_eq!(Line::parse("cachet: reload failed"), Ok(Line::ReloadFailed));
        assert_eq!(
            Line::parse("cachet: worker 2: error: no socket"),
            Ok(Line::Error("no socket"))
        );
        assert_eq!(
            Line::parse("cachet: error: option `https`"),
            Ok(Line::Error("option `https`"))
        );
    }

    #[test]
    fn reads_tracing_events() {
        let line = "2026-11-28T07:44:30.133811Z  WARN cachet::router: no `http-to` backend: every request will get 502";
        assert_eq!(
            Line::parse(line),
            Ok(Line::Event {
                level: "WARN",
                text: "cachet::router: no `http-to` backend: every request will get 502"
            })
        );
        let line = "2026-11-28T07:44:30.1Z DEBUG cachet::proxy::serve: TLS handshake failed peer=127.0.0.1:5";
        assert!(matches!(
            Line::parse(line),
            Ok(Line::Event { level: "DEBUG", .. })
        ));
    }

    #[test]
    fn refuses_lines_another_line_was_written_into() {
        for mangled in [
            "cachet: listening https 127.0.0.2026-11-28T07:44:30.133811Z  INFO cachet::router: router started",
            "1:34567",
            "cachet: worker 3 pid 2026-11-28T07:44:30.133811Z DEBUG cachet::proxy::serve: x",
            "4242",
            "cachet: ready2026-11-28T07:44:30.133811Z DEBUG cachet::proxy::serve: x",
            "cachet: readcachet: ready",
            "",
        ] {
            assert!(Line::parse(mangled).is_err(), "{mangled:?} parsed");
        }
    }
}
