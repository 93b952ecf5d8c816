//! `cachet bench` options, parsed by hand so that every error names the
//! option and the value that were wrong.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};

/// The TLS version every client is pinned to; in the report as
/// [`TlsVersion::as_str`] spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V12,
    #[serde(rename = "1.3")]
    V13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V12 => "1.2",
            TlsVersion::V13 => "1.3",
        }
    }
}

/// How server certificates are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Against the PEM roots in this file.
    Roots(PathBuf),
    /// Not at all (`--insecure`); handshake signatures are still verified,
    /// so the handshake costs what a real one costs.
    AnyCertificate,
}

/// The options that shape what a run measures: the report carries them
/// as they were.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `host:port`, as given; resolved once when the run starts.
    pub targets: Vec<String>,
    pub connections: usize,
    /// In the report as `duration_s`, seconds.
    #[serde(rename = "duration_s", with = "seconds")]
    pub duration: Duration,
    /// Stop once this many handshakes completed, over all clients, if
    /// that comes before the end of `duration`.
    pub handshakes: Option<u64>,
    /// 0: handshake only, no HTTP request.
    pub requests_per_connection: u32,
    pub tls: TlsVersion,
    pub resume: bool,
    pub path: String,
    pub server_name: String,
    /// New connections per second across all clients.
    pub rate: Option<u32>,
    /// `--ticket-race N`: N rounds of one TLS 1.3 ticket offered to every
    /// target but its issuer at once, instead of a load.
    pub ticket_race: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            targets: Vec::new(),
            connections: 16,
            duration: Duration::from_secs(10),
            handshakes: None,
            requests_per_connection: 1,
            tls: TlsVersion::V13,
            resume: true,
            path: "/".to_owned(),
            server_name: "localhost".to_owned(),
            rate: None,
            ticket_race: None,
        }
    }
}

/// A [`Duration`] as a number of seconds, as the report writes it.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }

    /// Refuses what is no duration (negative, not finite, too large)
    /// instead of panicking on a damaged report.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(|error| {
            serde::de::Error::custom(format!("`{secs}` is not a number of seconds: {error}"))
        })
    }
}

/// Everything the command line sets.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub settings: Settings,
    pub trust: Trust,
    /// Print the report as JSON.
    pub json: bool,
    /// Bound on connect + handshake, and on each request.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            settings: Settings::default(),
            trust: Trust::AnyCertificate,
            json: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Options),
    Help,
}

/// A command-line mistake, worded for the user.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(String);

fn error(message: impl Into<String>) -> OptionError {
    OptionError(message.into())
}

/// Upper bound on `--connections`: each is a task with its own buffers and
/// session store, and more than this from one process measures the client.
const MAX_CONNECTIONS: usize = 100_000;

/// Upper bound on `--ticket-race` rounds: each is a few handshakes, one
/// after the other, and more would run for hours.
const MAX_RACE_ROUNDS: u64 = 1_000_000;

/// Options that shape a load, which a ticket race does not run.
const LOAD_ONLY: [&str; 8] = [
    "--connections",
    "--duration",
    "--handshakes",
    "--requests-per-connection",
    "--resume",
    "--no-resume",
    "--path",
    "--rate",
];

pub const HELP: &str = "\
cachet bench: a resumption-aware HTTPS load generator

Usage: cachet bench [OPTIONS] TARGET...

Each TARGET is host:port (HTTPS). Connections are spread over the targets
round-robin, as a TCP balancer would. Each client opens connection after
connection for the duration, offering the last TLS session or ticket it got,
from whichever target issued it.

Options:
  --connections N               concurrent clients (default 16)
  --duration SECS               how long to run (default 10; fractions allowed)
  --handshakes N                stop sooner, once N handshakes completed over all
                                clients (what a test waits for, bounded by --duration)
  --requests-per-connection N   HTTP/1.1 requests on each connection, kept alive
                                (default 1; 0 = handshake only)
  --tls 1.2|1.3                 TLS version (default 1.3)
  --resume / --no-resume        offer the last session or ticket (default resume)
  --path PATH                   request path (default /)
  --server-name NAME            SNI and Host header (default localhost)
  --ca FILE                     PEM file of the roots that server certificates
                                must chain to
  --insecure                    accept any server certificate
  --rate N                      at most N new connections per second, all clients
  --timeout SECS                bound on connect + handshake, and on each request
                                (default 10)
  --json                        print one JSON document on stdout instead of the report
  --ticket-race N               instead of a load, N rounds of: a full TLS 1.3
                                handshake with the next TARGET (round-robin), then
                                its newest ticket offered to every other TARGET at
                                the same instant; reports how many rounds resumed
                                on no target, on one, and on two or more (a ticket
                                used twice). Needs two TARGETs or more; only
                                --tls 1.3, --server-name, --ca/--insecure,
                                --timeout and --json apply
  -h, --help                    this text

One of --ca and --insecure is required. Exit status: 0 when at least one
handshake succeeded (errors are counted in the report), 1 when none did or
the run could not start, 2 for a command-line mistake.
";

/// Parses the arguments after `bench`.
pub fn parse(args: &[OsString]) -> Result<Parsed, OptionError> {
    // Help wins over any mistake elsewhere on the line.
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Parsed::Help);
    }
    let mut options = Options::default();
    let mut ca: Option<PathBuf> = None;
    let mut insecure = false;
    let mut given: Vec<String> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| error(format!("argument `{}` is not UTF-8", arg.to_string_lossy())))?;
        if !arg.starts_with('-') {
            options.settings.targets.push(parse_target(arg)?);
            continue;
        }
        // `--name=value` and `--name value` are both accepted.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg, None),
        };
        given.push(name.to_owned());
        let mut value = || -> Result<String, OptionError> {
            if let Some(value) = &inline {
                return Ok(value.clone());
            }
            let next = args
                .next()
                .ok_or_else(|| error(format!("`{name}` needs a value")))?;
            next.to_str().map(str::to_owned).ok_or_else(|| {
                error(format!(
                    "`{name}`: value `{}` is not UTF-8",
                    next.to_string_lossy()
                ))
            })
        };
        match name {
            "--connections" => {
                options.settings.connections = one_to(MAX_CONNECTIONS, name, &value()?)?;
            }
            "--duration" => options.settings.duration = seconds(name, &value()?)?,
            "--handshakes" => {
                let why = "would stop before the first; omit it to run for `--duration`";
                options.settings.handshakes = Some(not_zero(why, name, &value()?)?);
            }
            "--timeout" => options.timeout = seconds(name, &value()?)?,
            "--requests-per-connection" => {
                options.settings.requests_per_connection = number(name, &value()?)?;
            }
            "--tls" => {
                options.settings.tls = match value()?.as_str() {
                    "1.2" => TlsVersion::V12,
                    "1.3" => TlsVersion::V13,
                    other => {
                        return Err(error(format!(
                            "`--tls`: `{other}` is not a TLS version (1.2 or 1.3)"
                        )))
                    }
                }
            }
            "--resume" | "--no-resume" | "--insecure" | "--json" if inline.is_some() => {
                return Err(error(format!("`{name}` takes no value")));
            }
            "--resume" => options.settings.resume = true,
            "--no-resume" => options.settings.resume = false,
            "--insecure" => insecure = true,
            "--json" => options.json = true,
            "--path" => {
                let path = value()?;
                if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
                {
                    return Err(error(format!(
                        "`--path`: `{path}` is not a request path (it starts with `/` and has no spaces)"
                    )));
                }
                options.settings.path = path;
            }
            "--server-name" => {
                let name_value = value()?;
                if ServerName::try_from(name_value.as_str()).is_err() {
                    return Err(error(format!(
                        "`--server-name`: `{name_value}` is not a DNS name or IP address"
                    )));
                }
                options.settings.server_name = name_value;
            }
            "--ca" => ca = Some(PathBuf::from(value()?)),
            "--rate" => {
                let why = "would open no connection; omit `--rate` for no cap";
                options.settings.rate = Some(not_zero(why, name, &value()?)?);
            }
            "--ticket-race" => {
                options.settings.ticket_race = Some(one_to(MAX_RACE_ROUNDS, name, &value()?)?);
            }
            _ => return Err(error(format!("unknown option `{name}`"))),
        }
    }
    options.trust =
        match (ca, insecure) {
            (Some(_), true) => return Err(error("`--ca` and `--insecure` exclude each other")),
            (Some(path), false) => Trust::Roots(path),
            (None, true) => Trust::AnyCertificate,
            (None, false) => return Err(error(
                "no way to check server certificates: give `--ca FILE` (PEM roots) or `--insecure`",
            )),
        };
    if options.settings.targets.is_empty() {
        return Err(error("no TARGET: give at least one host:port"));
    }
    if options.settings.ticket_race.is_some() {
        check_race(&options, &given)?;
    }
    Ok(Parsed::Run(options))
}

/// What `--ticket-race` cannot be combined with.
fn check_race(options: &Options, given: &[String]) -> Result<(), OptionError> {
    if let Some(name) = given.iter().find(|name| LOAD_ONLY.contains(&name.as_str())) {
        return Err(error(format!(
            "`{name}` shapes a load and does not apply to `--ticket-race`"
        )));
    }
    if options.settings.tls != TlsVersion::V13 {
        return Err(error(
            "`--ticket-race` races TLS 1.3 tickets: `--tls 1.2` has none",
        ));
    }
    if options.settings.targets.len() < 2 {
        return Err(error(
            "`--ticket-race` offers each ticket to the targets that did not issue it: give two TARGETs or more",
        ));
    }
    Ok(())
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, OptionError> {
    value
        .parse()
        .map_err(|_| error(format!("`{name}`: `{value}` is not a whole number")))
}

/// A whole number from 1 to `max`.
fn one_to<T>(max: T, name: &str, value: &str) -> Result<T, OptionError>
where
    T: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display,
{
    let n: T = number(name, value)?;
    if n < T::from(1) || n > max {
        return Err(error(format!("`{name}`: `{n}` is not between 1 and {max}")));
    }
    Ok(n)
}

/// A whole number other than 0, which `why` says makes no sense.
fn not_zero<T>(why: &str, name: &str, value: &str) -> Result<T, OptionError>
where
    T: std::str::FromStr + PartialEq + From<u8>,
{
    let n: T = number(name, value)?;
    if n == T::from(0) {
        return Err(error(format!("`{name}`: `0` {why}")));
    }
    Ok(n)
}

fn seconds(name: &str, value: &str) -> Result<Duration, OptionError> {
    let secs: f64 = value
        .parse()
        .map_err(|_| error(format!("`{name}`: `{value}` is not a number of seconds")))?;
    // An hour-long cap keeps `Duration::from_secs_f64` far from overflow and
    // a typo like `--duration 100000` from running for a day.
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(error(format!(
            "`{name}`: `{value}` is not between 0 and 86400 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Checks `host:port` (or `[v6]:port`) without resolving it.
fn parse_target(target: &str) -> Result<String, OptionError> {
    let bad = || {
        error(format!(
            "target `{target}` is not host:port (e.g. 127.0.0.1:8443 or [::1]:8443)"
        ))
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && !host.contains(':')
    };
    match port.parse::<u16>() {
        Ok(port) if port != 0 && host_ok => Ok(target.to_owned()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Parsed, OptionError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args)
    }

    fn run(args: &[&str]) -> Options {
        match parse_strs(args) {
            Ok(Parsed::Run(options)) => options,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn fails(args: &[&str]) -> String {
        match parse_strs(args) {
            Err(error) => error.to_string(),
            Ok(parsed) => panic!("{args:?} parsed as {parsed:?}"),
        }
    }

    #[test]
    fn defaults() {
        let options = run(&["--insecure", "127.0.0.1:8443"]);
        assert_eq!(options.settings.connections, 16);
        assert_eq!(options.settings.duration, Duration::from_secs(10));
        assert_eq!(options.settings.requests_per_connection, 1);
        assert_eq!(options.settings.tls, TlsVersion::V13);
        assert!(options.settings.resume);
        assert_eq!(options.settings.path, "/");
        assert_eq!(options.settings.server_name, "localhost");
        assert_eq!(options.trust, Trust::AnyCertificate);
        assert!(!options.json);
        assert_eq!(options.settings.rate, None);
        assert_eq!(options.settings.handshakes, None);
        assert_eq!(options.settings.ticket_race, None);
        assert_eq!(options.settings.targets, ["127.0.0.1:8443"]);
    }

    #[test]
    fn a_ticket_race() {
        let options = run(&[
            "--ticket-race",
            "300",
            "--insecure",
            "--tls",
            "1.3",
            "--timeout",
            "5",
            "--json",
            "127.0.0.1:1",
            "127.0.0.1:2",
            "127.0.0.1:3",
        ]);
        assert_eq!(options.settings.ticket_race, Some(300));
        assert_eq!(options.settings.targets.len(), 3);
        assert_eq!(options.timeout, Duration::from_secs(5));
        let cases: &[(&[&str], &str)] = &[
            (&["--ticket-race", "0"], "`--ticket-race`: `0`"),
            (&["--ticket-race", "many"], "`--ticket-race`: `many`"),
            (
                &["--ticket-race", "5", "--connections", "4"],
                "`--connections` shapes a load",
            ),
            (
                &["--ticket-race", "5", "--no-resume"],
                "`--no-resume` shapes",
            ),
            (&["--ticket-race", "5", "--rate=10"], "`--rate` shapes"),
            (
                &["--ticket-race", "5", "--tls", "1.2"],
                "`--tls 1.2` has none",
            ),
        ];
        for (args, expected) in cases {
            let args: Vec<&str> = args
                .iter()
                .copied()
                .chain(["--insecure", "h:1", "h:2"])
                .collect();
            let message = fails(&args);
            assert!(
                message.contains(expected),
                "{args:?}: `{message}` does not contain `{expected}`"
            );
        }
        let message = fails(&["--ticket-race", "5", "--insecure", "h:1"]);
        assert!(message.contains("two TARGETs or more"), "{message}");
    }

    #[test]
    fn every_option() {
        let options = run(&[
            "--connections",
            "4",
            "--duration=2.5",
            "--requests-per-connection",
            "0",
            "--tls",
            "1.2",
            "--no-resume",
            "--path",
            "/health?x=1",
            "--server-name",
            "example.com",
            "--ca",
            "/tmp/ca.pem",
            "--json",
            "--rate",
            "100",
            "--timeout",
            "3",
            "--handshakes",
            "40",
            "a.example:443",
            "[::1]:8443",
        ]);
        assert_eq!(options.settings.connections, 4);
        assert_eq!(options.settings.duration, Duration::from_millis(2500));
        assert_eq!(options.settings.requests_per_connection, 0);
        assert_eq!(options.settings.tls, TlsVersion::V12);
        assert!(!options.settings.resume);
        assert_eq!(options.settings.path, "/health?x=1");
        assert_eq!(options.settings.server_name, "example.com");
        assert_eq!(options.trust, Trust::Roots("/tmp/ca.pem".into()));
        assert!(options.json);
        assert_eq!(options.settings.rate, Some(100));
        assert_eq!(options.timeout, Duration::from_secs(3));
        assert_eq!(options.settings.handshakes, Some(40));
        assert_eq!(options.settings.targets, ["a.example:443", "[::1]:8443"]);
    }

    #[test]
    fn help() {
        assert_eq!(parse_strs(&["--help"]), Ok(Parsed::Help));
        assert_eq!(parse_strs(&["--connections", "x", "-h"]), Ok(Parsed::Help));
    }

    fn assert_fails_with(args: &[&str], expected: &str) {
        let message = fails(args);
        assert!(
            message.contains(expected),
            "{args:?}: `{message}` does not contain `{expected}`"
        );
    }

    #[test]
    fn errors_name_the_option_and_value() {
        let bad_values = [
            ("--connections", "many"),
            ("--connections", "0"),
            ("--duration", "-1"),
            ("--duration", "soon"),
            ("--tls", "1.1"),
            ("--rate", "0"),
            ("--handshakes", "0"),
            ("--handshakes", "-3"),
            ("--path", "index.html"),
            ("--server-name", "a b"),
        ];
        for (option, value) in bad_values {
            let args = [option, value, "--insecure", "h:1"];
            assert_fails_with(&args, &format!("`{option}`: `{value}`"));
        }
    }

    #[test]
    fn errors_name_what_is_wrong_with_the_command_line() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--insecure", "--connections"],
                "`--connections` needs a value",
            ),
            (
                &["--insecure", "--json=yes", "h:1"],
                "`--json` takes no value",
            ),
            (
                &["--insecure", "--frobnicate", "h:1"],
                "unknown option `--frobnicate`",
            ),
            (&["--insecure", "localhost"], "target `localhost`"),
            (&["--insecure", "localhost:0"], "target `localhost:0`"),
            (&["--insecure", "::1:443"], "target `::1:443`"),
            (&["--insecure"], "no TARGET"),
            (&["h:1"], "`--ca FILE`"),
            (
                &["--ca", "x.pem", "--insecure", "h:1"],
                "exclude each other",
            ),
        ];
        for (args, expected) in cases {
            assert_fails_with(args, expected);
        }
    }
}
