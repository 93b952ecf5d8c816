//! `cachet bench` against real routers: the CI smoke bench. Each run
//! stops after a number of handshakes (`--handshakes`), not after a time,
//! so what it counted does not depend on how fast the machine is; the
//! assertions are about what was counted (resumption works, nothing
//! failed), never about speed.

use std::process::Stdio;
use std::time::Duration;

use cachet_bench::report::TicketRace;
use cachet_bench::stats::ErrorKind;
use cachet_bench::Report;
use cachet_tests::ports::Refusing;
use cachet_tests::{backends, cached_router_args, cachet_bin, Pki, Router};

/// Concurrent clients of each run.
const CLIENTS: u64 = 4;
/// Handshakes after which a run stops.
const HANDSHAKES: u64 = 40;
/// What bounds a run that does not reach its handshakes (`--duration`),
/// and each connection and request in it (`--timeout`): far above what a
/// loaded machine needs.
const RUN_BOUND: &str = "120";
const EXCHANGE_BOUND: &str = "60";
/// Bound on the whole `cachet bench` process.
const BENCH_TIMEOUT: Duration = Duration::from_secs(300);

/// `N` independent routers (each with its own cache) in front of one HTTP
/// backend, serving a certificate from one CA.
async fn routers<const N: usize>() -> (Pki, backends::Backend, [Router; N]) {
    let pki = Pki::new();
    let backend = backends::http("app").await;
    let leaf = pki.leaf("localhost", &["localhost"]);
    // A cache far larger than a run's tickets: no session is evicted
    // before its client offers it.
    let args = cached_router_args(&leaf, backend.http_to(), 10_000, &[]);
    let routers = std::array::from_fn(|_| Router::start(&args));
    (pki, backend, routers)
}

/// Runs `cachet bench ARGS` to completion; its exit code and stdout.
async fn bench(args: &[String]) -> (Option<i32>, String) {
    let child = tokio::process::Command::new(cachet_bin())
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting cachet bench");
    let output = tokio::time::timeout(BENCH_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("cachet bench {args:?} ran over {BENCH_TIMEOUT:?}"))
        .expect("cachet bench's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // --json never draws a progress bar, and a run prints nothing else.
    assert!(
        !stderr.contains('\r'),
        "progress bar drawn with --json: {stderr}"
    );
    (
        output.status.code(),
        String::from_utf8(output.stdout).expect("UTF-8 output"),
    )
}

/// `cachet bench --json --timeout .. --ca .. ARGS TARGETS`, which must
/// succeed; the parsed report.
async fn report(pki: &Pki, args: &[&str], targets: &[&Router]) -> Report {
    let mut all: Vec<String> = [
        "--json",
        "--timeout",
        EXCHANGE_BOUND,
        "--ca",
        pki.ca_pem.to_str().expect("a UTF-8 temp path"),
    ]
    .iter()
    .chain(args)
    .map(|s| s.to_string())
    .collect();
    all.extend(targets.iter().map(|router| router.addr().to_string()));
    let (code, stdout) = bench(&all).await;
    assert_eq!(code, Some(0), "cachet bench {all:?}:\n{stdout}");
    parse(&stdout)
}

/// The report `cachet bench --json` printed.
fn parse(stdout: &str) -> Report {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("cachet bench printed no JSON report ({e}):\n{stdout}"))
}

/// `cachet bench --json` with the smoke settings; the parsed report.
async fn bench_json(pki: &Pki, extra: &[&str], targets: &[&Router]) -> Report {
    let (clients, handshakes) = (CLIENTS.to_string(), HANDSHAKES.to_string());
    let mut args = vec![
        "--handshakes",
        &handshakes,
        "--duration",
        RUN_BOUND,
        "--connections",
        &clients,
    ];
    args.extend(extra);
    report(pki, &args, targets).await
}

/// The smoke assertions: sessions resume, requests go through, nothing fails.
fn assert_resumes(report: &Report, requests: bool) {
    // The run reached its count; each client's first handshake was its
    // only full one, every later one resumed.
    assert!(report.handshakes.total >= HANDSHAKES, "{report:#?}");
    let full = report.handshakes.full;
    assert!((1..=CLIENTS).contains(&full), "{report:#?}");
    assert_eq!(report.errors.total, 0, "{report:#?}");
    if requests {
        assert!(report.requests.total > 0, "{report:#?}");
        assert!(report.latency_ms.request.p99.is_some(), "{report:#?}");
    } else {
        assert_eq!(report.requests.total, 0, "{report:#?}");
    }
    assert!(
        report.latency_ms.handshake_resumed.p50.is_some(),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_sessions_resume_under_load() {
    let (pki, backend, [router]) = routers().await;
    let report = bench_json(&pki, &["--tls", "1.2", "--resume"], &[&router]).await;
    assert_resumes(&report, true);
    assert_eq!(report.settings.tls.as_str(), "1.2");
    // Every request counted reached the backend; a few more may have
    // been in flight when the run ended, uncounted.
    let counted = report.requests.total as usize;
    assert!(
        backend.served() >= counted,
        "{} served < {counted} counted",
        backend.served()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_resume_under_load_with_keep_alive() {
    let (pki, _backend, [router]) = routers().await;
    let report = bench_json(
        &pki,
        &["--tls", "1.3", "--resume", "--requests-per-connection", "3"],
        &[&router],
    )
    .await;
    assert_resumes(&report, true);
    // Keep-alive: three requests on every connection but each client's
    // last, which the end of the run may cut short.
    let handshakes = report.handshakes.total;
    assert!(
        report.requests.total >= 3 * (handshakes - CLIENTS),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_handshake_only_still_collects_tickets() {
    let (pki, backend, [router]) = routers().await;
    let report = bench_json(
        &pki,
        &["--tls", "1.3", "--requests-per-connection", "0"],
        &[&router],
    )
    .await;
    assert_resumes(&report, false);
    assert_eq!(backend.served(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resume_makes_every_handshake_full() {
    let (pki, _backend, [router]) = routers().await;
    for tls in ["1.2", "1.3"] {
        let report = bench_json(&pki, &["--tls", tls, "--no-resume"], &[&router]).await;
        assert!(report.handshakes.full >= HANDSHAKES, "{report:#?}");
        assert_eq!(report.handshakes.resumed, 0, "{report:#?}");
        assert_eq!(report.handshakes.resumption_ratio, Some(0.0), "{report:#?}");
        assert_eq!(report.errors.total, 0, "{report:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_targets_share_the_load_round_robin() {
    let (pki, _backend, [first, second]) = routers().await;
    let report = bench_json(&pki, &["--tls", "1.2"], &[&first, &second]).await;
    assert_eq!(report.errors.total, 0, "{report:#?}");
    assert!(report.requests.total > 0, "{report:#?}");
    assert_eq!(report.per_target.len(), 2, "{report:#?}");
    let handshakes: Vec<u64> = report
        .per_target
        .iter()
        .map(|t| t.full + t.resumed)
        .collect();
    // Round-robin: neither target gets more than one more connection per
    // client than the other.
    assert!(handshakes.iter().all(|&n| n > 0), "{report:#?}");
    assert!(
        handshakes[0].abs_diff(handshakes[1]) <= 4,
        "uneven spread {handshakes:?}: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_counted_not_fatal() {
    let refusing = Refusing::new();
    // Each client's first connect is refused at once; the duration only
    // bounds how many more it tries.
    let args: Vec<String> = [
        "--json",
        "--insecure",
        "--duration",
        "0.5",
        "--connections",
        "2",
        &refusing.addr().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, stdout) = bench(&args).await;
    // No handshake succeeded: exit 1, with the report still printed.
    assert_eq!(code, Some(1), "{stdout}");
    let report = parse(&stdout);
    assert!(report.errors.connect > 0, "{report:#?}");
    assert_eq!(report.handshakes.total, 0, "{report:#?}");
    assert!(
        report.errors.examples.contains_key(&ErrorKind::Connect),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_mistakes_exit_2_and_name_the_option() {
    let (code, _) = bench(&[
        "--insecure".into(),
        "--tls".into(),
        "1.1".into(),
        "h:1".into(),
    ])
    .await;
    assert_eq!(code, Some(2));
    let output =
        cachet_tests::run_to_exit(&["bench", "--connections", "lots", "--insecure", "h:1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`--connections`: `lots`"), "{stderr}");
    let output = cachet_tests::run_to_exit(&["bench", "--ticket-race", "9", "--insecure", "h:1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("two TARGETs or more"), "{stderr}");
    let output = cachet_tests::run_to_exit(&["bench", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Usage: cachet bench"));
}

/// `cachet bench --ticket-race ROUNDS --json` over `targets`; the report.
async fn race_json(pki: &Pki, rounds: u64, targets: &[&Router]) -> Report {
    report(pki, &["--ticket-race", &rounds.to_string()], targets).await
}

/// The ticket race's part of a `--ticket-race` report, which must be there.
fn race_of(report: &Report) -> &TicketRace {
    report
        .ticket_race
        .as_ref()
        .unwrap_or_else(|| panic!("no ticket_race in a race's report: {report:#?}"))
}

/// The ticket race counts what the servers did with one ticket offered to
/// several at once. Three independent routers know only their own tickets:
/// no round resumes anywhere. One router named three times gets the ticket
/// it issued twice at once, and its cache hands a ticket out once: every
/// round resumes exactly once, which also shows that both offers carried
/// the same ticket (with two, both would resume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_race_counts_resumptions_per_round() {
    const ROUNDS: u64 = 12;
    let (pki, backend, [a, b, c]) = routers().await;

    let report = race_json(&pki, ROUNDS, &[&a, &b, &c]).await;
    let race = race_of(&report);
    assert_eq!(race.rounds, ROUNDS, "{report:#?}");
    assert_eq!(race.resumed_nowhere, ROUNDS, "{report:#?}");
    assert_eq!(race.double_resumptions, 0, "{report:#?}");
    assert_eq!(race.no_ticket, 0, "{report:#?}");
    // One full handshake per round, and two offers.
    assert_eq!(report.handshakes.full, 3 * ROUNDS, "{report:#?}");
    assert_eq!(report.handshakes.offered, 2 * ROUNDS, "{report:#?}");
    assert_eq!(report.errors.total, 0, "{report:#?}");
    // Round-robin: each router issued a third of the tickets and was
    // offered the others' (a full handshake each): one per round.
    for target in &report.per_target {
        assert_eq!(target.full, ROUNDS, "{report:#?}");
    }

    let report = race_json(&pki, ROUNDS, &[&a, &a, &a]).await;
    let race = race_of(&report);
    assert_eq!(race.resumed_once, ROUNDS, "{report:#?}");
    assert_eq!(race.resumed_per_round, [0, ROUNDS, 0], "{report:#?}");
    assert_eq!(report.handshakes.resumed, ROUNDS, "{report:#?}");
    assert_eq!(report.errors.total, 0, "{report:#?}");
    assert_eq!(backend.served(), 0);
}

/// Handshake-only, each connection to the next target: a client offers
/// what the target it last used issued, not an older session. With one
/// client over three independent routers, every offer goes to a router
/// that never saw it, so none resumes (an older session or ticket from the
/// same router, three connections back, would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offers_what_its_last_target_issued() {
    let (pki, _backend, [a, b, c]) = routers().await;
    for tls in ["1.2", "1.3"] {
        let args = [
            "--tls",
            tls,
            "--requests-per-connection",
            "0",
            "--connections",
            "1",
            "--handshakes",
            "30",
            "--duration",
            RUN_BOUND,
        ];
        let report = report(&pki, &args, &[&a, &b, &c]).await;
        let total = report.handshakes.total;
        assert!(total >= 30, "{report:#?}");
        assert_eq!(report.handshakes.offered, total - 1, "{report:#?}");
        assert_eq!(report.handshakes.resumed, 0, "TLS {tls}: {report:#?}");
        assert_eq!(report.errors.total, 0, "{report:#?}");
    }
}
