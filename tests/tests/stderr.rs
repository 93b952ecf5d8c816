//! A master and its workers share one stderr, and scripts read the
//! interface lines off it: every line must arrive whole, never with
//! another process's output written into it.
//!
//! The test makes the processes write at the same moment, many times: the
//! workers log every refused connection (`RUST_LOG=debug`) of a flood of
//! connections that send garbage, while the master prints a
//! `cachet: worker N pid P` line for each worker it replaces (the test
//! kills them one after another), then the workers all print
//! `cachet: reloaded` at once on each SIGHUP. Every line read back must be
//! an interface line that parses or a tracing event. Lines written in
//! pieces (one write per formatted piece, as `eprintln!` does) were cut by
//! the flood in most runs of this test; whole lines never are.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use cachet_tests::log::Line;
use cachet_tests::{wait_until, Pki, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WORKERS: usize = 4;
/// Workers killed, one after another, while the flood runs.
const REPLACEMENTS: usize = 24;
const RELOADS: usize = 4;
/// Connections sending garbage at once.
const FLOODERS: usize = 8;
/// Bound on each wait: far above what a loaded machine needs.
const SETTLE: Duration = Duration::from_secs(60);

/// Whether a worker's log event is its refusal of a flood connection: the
/// ClientHello is read (and refused) before rustls sees it; anything that
/// gets past that fails in rustls.
fn is_refusal(text: &str) -> bool {
    text.contains("no usable ClientHello") || text.contains("TLS handshake failed")
}

/// Connects, sends what is not a TLS ClientHello, reads until the router
/// closes; again and again until `stop`.
async fn flood(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    while !stop.load(Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut sink = [0u8; 512];
        let _ = tokio::time::timeout(SETTLE, stream.read(&mut sink)).await;
        sent.fetch_add(1, Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_on_the_shared_stderr_is_whole() {
    let pki = Pki::new();
    let leaf = pki.leaf("router", &["localhost"]);
    let workers = WORKERS.to_string();
    let router = Router::start_with_env(
        &[
            "--https",
            &leaf.https("127.0.0.1:0"),
            "--http-processes",
            &workers,
        ],
        &[("RUST_LOG", "debug")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| tokio::spawn(flood(router.addr(), Arc::clone(&stop), Arc::clone(&sent))))
        .collect();
    assert!(
        wait_until(SETTLE, || sent.load(Relaxed) >= 100).await,
        "the flood never got going:\n{}",
        router.log()
    );

    for round in 0..REPLACEMENTS {
        let id = round % WORKERS + 1;
        let victim = router.kill_worker(id);
        // The replacement's line (the latest for this worker names another
        // pid), or a cut line (the replacement's may be the one cut):
        // either ends the wait.
        let replaced = wait_until(SETTLE, || {
            let log = router.log();
            let mut cut = false;
            let mut latest = None;
            for line in log.lines() {
                match Line::parse(line) {
                    Ok(Line::Worker { id: i, pid }) if i == id => latest = Some(pid),
                    Ok(_) => {}
                    Err(_) => cut = true,
                }
            }
            cut || latest != Some(victim)
        })
        .await;
        let log = router.log();
        assert_whole(&log);
        assert!(replaced, "worker {id} (pid {victim}) not replaced:\n{log}");
    }
    // Every worker prints its line for each SIGHUP, all at about the same
    // moment, into the flood.
    for reload in 1..=RELOADS {
        router.hangup();
        let reloaded = wait_until(SETTLE, || {
            let log = router.log();
            let done = log.lines().filter(|l| *l == "cachet: reloaded").count();
            done >= reload * WORKERS || log.lines().any(|line| Line::parse(line).is_err())
        })
        .await;
        let log = router.log();
        assert_whole(&log);
        assert!(
            reloaded,
            "reload {reload}: not every worker reloaded:\n{log}"
        );
    }
    stop.store(true, Relaxed);
    for flooder in flooders {
        flooder.await.unwrap();
    }
    let log = router.log();
    let status = tokio::task::spawn_blocking(move || router.terminate())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}:\n{log}");

    assert_whole(&log);
    let lines: Vec<Line<'_>> = log.lines().filter_map(|l| Line::parse(l).ok()).collect();
    let started = lines
        .iter()
        .filter(|l| matches!(l, Line::Worker { .. }))
        .count();
    let failed_handshakes = lines
        .iter()
        .filter(|l| matches!(l, Line::Event { text, .. } if is_refusal(text)))
        .count();
    eprintln!(
        "{} lines, {failed_handshakes} refused connections logged, {started} workers started",
        lines.len()
    );
    assert_eq!(started, WORKERS + REPLACEMENTS, "{log}");
    assert!(
        failed_handshakes >= 100,
        "the workers did not log the flood:\n{log}"
    );
}

/// Fails on the first lines that are neither an interface line nor a
/// tracing event.
fn assert_whole(log: &str) {
    let bad: Vec<String> = log
        .lines()
        .filter_map(|line| Line::parse(line).err())
        .map(|bad| bad.to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "{} cut lines, the first ones:\n{}",
        bad.len(),
        bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}
