//! Worker processes over one shared session cache, under a master.

use std::collections::BTreeMap;
use std::time::Duration;

use cachet_tests::client::{self, Tls};
use cachet_tests::openssl::{require_openssl, s_client, s_client_again, Session};
use cachet_tests::{backends, counter, send_signal as kill, wait_until, Pki, Router};

/// Bound on waiting for a worker's replacement, a repair, a sweep.
const SETTLE: Duration = Duration::from_secs(60);

/// Handshakes each worker has counted, by worker number.
fn handshakes_by_worker(router: &Router) -> BTreeMap<u64, u64> {
    let stats = router.stats();
    stats["workers"]
        .as_array()
        .expect("a workers list")
        .iter()
        .map(|w| {
            (
                w["id"].as_u64().unwrap(),
                w["handshakes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

async fn router_with_workers(
    pki: &Pki,
    workers: usize,
    extra: &[&str],
) -> (Router, backends::Backend) {
    let leaf = pki.leaf("router", &["localhost"]);
    let backend = backends::http("app").await;
    let mut args = vec![
        "--https".to_string(),
        leaf.https("127.0.0.1:0"),
        "--http-to".to_string(),
        backend.http_to(),
        "--http-processes".to_string(),
        workers.to_string(),
        "--cache".to_string(),
        "1000".to_string(),
        "--ssl-sessions-use-cache".to_string(),
        "--stats".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    (Router::start(&args), backend)
}

/// Which worker served the last handshake: the one whose count went up.
fn served_by(before: &BTreeMap<u64, u64>, after: &BTreeMap<u64, u64>) -> u64 {
    let grown: Vec<u64> = after
        .iter()
        .filter(|(id, n)| before.get(id).copied().unwrap_or(0) < **n)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        grown.len(),
        1,
        "exactly one worker served it: {before:?} -> {after:?}"
    );
    grown[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_made_by_one_worker_resume_on_another() {
    let pki = Pki::new();
    let (router, _backend) = router_with_workers(&pki, 2, &[]).await;
    assert_eq!(router.worker_pids().len(), 2);
    let addr = router.addr();
    for version in [Tls::V12, Tls::V13] {
        let config = client::config(&pki, version, &[b"http/1.1"]);
        let before = handshakes_by_worker(&router);
        let first = client::get(&config, addr, "localhost", "/").await;
        assert!(!first.resumed);
        let maker = served_by(&before, &handshakes_by_worker(&router));
        // Freeze the worker that made the session: only the other one can
        // accept now, so the resumption below crosses processes.
        let maker_pid = router.worker_pids()[&(maker as usize)];
        kill(maker_pid, "STOP");
        for _ in 0..10 {
            let before = handshakes_by_worker(&router);
            let again = client::get(&config, addr, "localhost", "/").await;
            assert!(again.resumed, "{version:?}: resumed on the other worker");
            assert_ne!(served_by(&before, &handshakes_by_worker(&router)), maker);
        }
        kill(maker_pid, "CONT");
    }
    let stats = router.stats();
    assert!(stats["caches"][0]["hits"].as_u64().unwrap() >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sessions_resume_across_workers() {
    require_openssl();
    let pki = Pki::new();
    let (router, _backend) = router_with_workers(&pki, 2, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    for tls in ["-tls1_2", "-tls1_3"] {
        let session = dir.path().join(format!("{tls}.pem"));
        let before = handshakes_by_worker(&router);
        let (kind, _) = s_client(router.addr(), tls, "localhost", &pki.ca_pem, None, &session);
        assert_eq!(kind, Session::New);
        let maker = served_by(&before, &handshakes_by_worker(&router));
        let maker_pid = router.worker_pids()[&(maker as usize)];
        kill(maker_pid, "STOP");
        for _ in 0..5 {
            let (kind, out) = s_client_again(router.addr(), tls, &pki.ca_pem, &session);
            assert_eq!(kind, Session::Reused, "{tls} on the other worker:\n{out}");
        }
        kill(maker_pid, "CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_and_the_cache_keeps_serving() {
    let pki = Pki::new();
    let (router, _backend) = router_with_workers(&pki, 2, &[]).await;
    let addr = router.addr();
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);
    assert!(!client::get(&config, addr, "localhost", "/").await.resumed);

    // Load while a worker dies: connections keep coming from two clients.
    let load = {
        let pki_config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
        tokio::spawn(async move {
            for _ in 0..40 {
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    client::connect(&pki_config, addr, "localhost"),
                )
                .await;
            }
        })
    };
    let started = std::time::Instant::now();
    let victim = router.kill_worker(1);
    let replaced = router.wait_for_new_worker(1, victim, SETTLE).await;
    eprintln!(
        "worker 1 replaced by pid {replaced} after {:?}",
        started.elapsed()
    );
    load.await.unwrap();

    for _ in 0..10 {
        assert!(client::get(&config, addr, "localhost", "/").await.resumed);
    }
    let stats = router.stats();
    let worker1 = stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == 1)
        .unwrap()
        .clone();
    assert_eq!(worker1["restarts"], 1);
    assert_eq!(worker1["pid"], replaced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_holding_the_cache_lock_does_not_wedge_the_others() {
    let pki = Pki::new();
    let leaf = pki.leaf("router", &["localhost"]);
    let backend = backends::http("app").await;
    let args = [
        "--https".to_string(),
        leaf.https("127.0.0.1:0"),
        "--http-to".to_string(),
        backend.http_to(),
        "--http-processes".to_string(),
        "2".to_string(),
        "--cache".to_string(),
        "1000".to_string(),
        "--ssl-sessions-use-cache".to_string(),
    ];
    // Worker 1 takes the cache lock on its first session and never lets go.
    let router = Router::start_with_env(&args, &[("CACHET_TEST_HOLD_CACHE_LOCK", "1")]);
    let addr = router.addr();
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);
    // Handshakes until one reaches worker 1; from then on every handshake
    // that needs the cache waits for the lock, so each attempt ends when
    // it completes or when the lock is seen taken, whichever comes first.
    let mut attempts = 0;
    while !router.log().contains("holding the cache lock") {
        attempts += 1;
        assert!(
            attempts < 200,
            "worker 1 never took the lock:\n{}",
            router.log()
        );
        tokio::select! {
            _ = tokio::time::timeout(SETTLE, client::connect(&config, addr, "localhost")) => {}
            _ = wait_until(SETTLE, || router.log().contains("holding the cache lock")) => {}
        }
    }
    router.kill_worker(1);
    assert!(
        wait_until(SETTLE, || router.log().contains("session cache repaired")).await,
        "the next lock holder repairs the cache:\n{}",
        router.log()
    );
    // Both workers (the survivor and worker 1's replacement) serve, and
    // sessions resume.
    let first = tokio::time::timeout(SETTLE, client::get(&config, addr, "localhost", "/"))
        .await
        .expect("a handshake completes after the lock holder died");
    assert_eq!(first.status, 200);
    for _ in 0..10 {
        let again = tokio::time::timeout(SETTLE, client::get(&config, addr, "localhost", "/"))
            .await
            .expect("handshakes keep completing");
        assert!(again.resumed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_sweeps_expired_sessions() {
    let pki = Pki::new();
    let (router, _backend) = router_with_workers(&pki, 2, &["--ssl-sessions-timeout", "1"]).await;
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    for _ in 0..3 {
        client::get(&config, router.addr(), "localhost", "/").await;
    }
    // What was stored is counted for good (the items may already be gone
    // again on a slow machine: they live one second).
    let stored = counter(&router.stats()["sessions"], "sets");
    assert!(stored >= 3, "{:#}", router.stats());
    // No client looks them up again: only the master's sweep can free them.
    let swept = wait_until(SETTLE, || {
        let stats = router.stats();
        stats["caches"][0]["items"] == 0 && counter(&stats["sessions"], "expired") > 0
    })
    .await;
    assert!(swept, "sessions not swept: {:#}", router.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let pki = Pki::new();
    let leaf = pki.leaf("router", &["localhost"]);
    let (held, hold) = backends::held_http().await;
    let router = Router::start(&[
        "--https".to_string(),
        leaf.https("127.0.0.1:0"),
        "--http-to".to_string(),
        held.http_to(),
        "--http-processes".to_string(),
        "2".to_string(),
    ]);
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    let addr = router.addr();
    let in_flight =
        tokio::spawn(async move { client::get(&config, addr, "localhost", "/held").await });
    // The request reaches the backend, which holds it; then the router is
    // asked to stop, and the backend answers only once both workers say
    // they are draining.
    assert!(wait_until(SETTLE, || held.served() == 1).await);
    router.signal("TERM");
    let draining = wait_until(SETTLE, || {
        router
            .log()
            .matches("shutting down: no new connections, draining")
            .count()
            == 2
    })
    .await;
    assert!(
        draining,
        "the workers never started draining:\n{}",
        router.log()
    );
    hold.release();
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200, "the in-flight request completed");
    assert_eq!(response.text(), "held");
    let status = tokio::task::spawn_blocking(move || router.wait_for_exit())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_bad_certificate_stops_the_master_at_once_naming_the_file() {
    let (_dir, bad) = cachet_tests::temp_file("bad.pem", "not a certificate");
    let https = format!("127.0.0.1:0,{0},{0}", bad.display());
    let output = cachet_tests::run_to_exit(&["--https", &https, "--http-processes", "2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(
        !stderr.contains("cachet: worker"),
        "no worker started: {stderr}"
    );
}

/// `reuse-port`: each worker accepts on sockets of its own, bound to the
/// same address with SO_REUSEPORT. The kernel spreads connections over
/// them, sessions still resume across workers (one shared cache), and a
/// killed worker's socket, which the master keeps open, is served again by
/// its replacement: no connection is refused or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reuse_port_each_worker_accepts_on_its_own_socket() {
    let pki = Pki::new();
    let (router, backend) = router_with_workers(&pki, 2, &["--reuse-port"]).await;
    let addr = router.addr();
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);
    let connections = 40;
    for i in 0..connections {
        let exchange = client::get(&config, addr, "localhost", &format!("/{i}")).await;
        assert_eq!(exchange.status, 200, "{}", exchange.text());
    }
    let by_worker = handshakes_by_worker(&router);
    assert_eq!(by_worker.values().sum::<u64>(), connections);
    // 40 connections from 40 source ports all hashed to one socket would
    // be a 1 in 2^39 event.
    assert!(
        by_worker.values().all(|&n| n > 0),
        "one socket per worker, both used: {by_worker:?}"
    );
    let stats = router.stats();
    assert!(
        stats["caches"][0]["hits"].as_u64().unwrap() >= connections - 2,
        "sessions resumed whichever worker made them: {:#}",
        stats["caches"][0]
    );

    let victim = router.kill_worker(1);
    for i in 0..20 {
        let exchange = client::get(&config, addr, "localhost", &format!("/after/{i}")).await;
        assert_eq!(exchange.status, 200, "{}", exchange.text());
    }
    router.wait_for_new_worker(1, victim, SETTLE).await;
    assert_eq!(backend.served(), 60);
}
