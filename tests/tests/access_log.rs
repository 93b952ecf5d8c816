//! The access log: one line per request, written by every worker to one
//! file (or stderr), in plain text or JSON, saying who asked what over
//! which TLS session, what came back, from which backend, in how long.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cachet_tests::backends;
use cachet_tests::client::{self, Tls};
use cachet_tests::{router_args, Pki, Router};

/// Lines reach the file within the flush interval; allow a slow machine.
const LOG_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits (bounded) until `path` holds at least `count` lines; returns them.
fn wait_for_lines(path: &Path, count: usize) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let arrived =
        cachet_tests::wait_until_blocking(LOG_TIMEOUT, || read().lines().count() >= count);
    let text = read();
    assert!(
        arrived,
        "{} holds {} lines, expected {count}:\n{text}",
        path.display(),
        text.lines().count()
    );
    text.lines().map(str::to_owned).collect()
}

/// A router serving `localhost` (a certificate from `pki`) over HTTPS in
/// front of `to`, writing its access log to `access_log` (a path or
/// `stderr`), with the test's `extra` options.
fn logging_router(pki: &Pki, to: &str, access_log: &str, extra: &[&str]) -> Router {
    let leaf = pki.leaf("localhost", &["localhost"]);
    let log = ["--access-log", access_log];
    Router::start(&router_args(&leaf, to, &[&log[..], extra].concat()))
}

/// [`logging_router`] writing to the file `access.log` in `pki`'s
/// directory, whose path comes back with the router.
fn router_logging_to_file(pki: &Pki, to: &str, extra: &[&str]) -> (Router, PathBuf) {
    let log = pki.dir().join("access.log");
    let router = logging_router(pki, to, log.to_str().unwrap(), extra);
    (router, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_from_every_worker_say_who_what_and_how() {
    let pki = Pki::new();
    let backend = backends::uwsgi("u").await;
    let (router, log) = router_logging_to_file(
        &pki,
        &backend.uwsgi_to(),
        &[
            "--access-log-format",
            "json",
            "--http-processes",
            "2",
            "--cache",
            "100",
            "--ssl-sessions-use-cache",
        ],
    );

    // TLS 1.2 over HTTP/1.1: a full handshake, then a resumed one.
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);
    let first = client::get(&config, router.addr(), "localhost", "/first?q=1").await;
    assert!(!first.resumed);
    let second = client::get(&config, router.addr(), "localhost", "/second").await;
    assert!(second.resumed, "the second connection resumes");
    // TLS 1.3 over HTTP/2 with a request body.
    let config = client::config(&pki, Tls::V13, &[b"h2"]);
    let request = client::post_request(
        "localhost",
        "/third",
        &[("content-length", "5")],
        Bytes::from_static(b"hello"),
    );
    let third = client::send(&config, router.addr(), "localhost", request).await;

    let lines = wait_for_lines(&log, 3);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let find = |path: &str| {
        entries
            .iter()
            .find(|entry| entry["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {lines:#?}"))
    };
    for (path, exchange, tls, resumed, protocol, method) in [
        ("/first?q=1", &first, "TLSv1.2", false, "HTTP/1.1", "GET"),
        ("/second", &second, "TLSv1.2", true, "HTTP/1.1", "GET"),
        ("/third", &third, "TLSv1.3", false, "HTTP/2.0", "POST"),
    ] {
        let entry = find(path);
        assert_eq!(entry["client"], "127.0.0.1", "{entry}");
        assert!(entry["client_port"].as_u64().unwrap() > 0, "{entry}");
        assert_eq!(entry["sni"], "localhost", "{entry}");
        assert_eq!(entry["tls"], tls, "{entry}");
        assert_eq!(entry["resumed"], resumed, "{entry}");
        assert_eq!(entry["method"], method, "{entry}");
        assert_eq!(entry["protocol"], protocol, "{entry}");
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["bytes"], exchange.body.len() as u64, "{entry}");
        assert_eq!(entry["backend"], backend.uwsgi_to(), "{entry}");
        assert!(entry["duration_ms"].as_f64().unwrap() >= 0.0, "{entry}");
        assert!(entry["time"].as_str().unwrap().ends_with('Z'), "{entry}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lines_on_stderr_and_errors_are_logged_too() {
    let pki = Pki::new();
    // No backend listens: every request gets the router's own 502.
    let refusing = cachet_tests::ports::Refusing::new();
    let router = logging_router(&pki, &refusing.addr().to_string(), "stderr", &[]);
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    let exchange = client::get(&config, router.addr(), "localhost", "/a%20b\"c").await;
    assert_eq!(exchange.status, 502);
    assert!(
        // The quote is escaped: a client cannot end the field early.
        router.wait_for_log("\"GET /a%20b\\x22c HTTP/1.1\" 502", LOG_TIMEOUT),
        "{}",
        router.log()
    );
    let line = router
        .log()
        .lines()
        .find(|line| line.contains("\"GET /a%20b"))
        .unwrap()
        .to_owned();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[1].split(':').next(), Some("127.0.0.1"), "{line}");
    assert_eq!(fields[2], "localhost", "{line}");
    assert_eq!(fields[3], "TLSv1.3", "{line}");
    assert_eq!(fields[4], "full", "{line}");
    assert_eq!(fields[8], "502", "{line}");
    assert_eq!(fields[9], exchange.body.len().to_string(), "{line}");
    // No backend answered: none is named.
    assert_eq!(fields[10], "-", "{line}");
    assert!(fields[11].parse::<f64>().is_ok(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_the_file_after_rotation() {
    let pki = Pki::new();
    let backend = backends::http("h").await;
    let (router, log) = router_logging_to_file(&pki, &backend.http_to(), &[]);
    let config = client::config(&pki, Tls::V13, &[b"h2"]);
    client::get(&config, router.addr(), "localhost", "/before").await;
    wait_for_lines(&log, 1);
    let rotated = pki.dir().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    router.signal("HUP");
    assert!(
        router.wait_for_log("cachet: reloaded", LOG_TIMEOUT),
        "{}",
        router.log()
    );
    client::get(&config, router.addr(), "localhost", "/after").await;
    let lines = wait_for_lines(&log, 1);
    assert!(lines[0].contains("/after"), "{lines:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
}
