//! Replay protection that survives a restart (docs/CLUSTER.md, *Verified
//! senders*): router A's datagrams to router B are captured on the way by
//! the test relay; B is killed (SIGKILL) and restarted on the same
//! addresses, so its replay windows are gone; every captured datagram is
//! then replayed to B. B rejects each one, counted by reason, applies
//! nothing, and of [`TRIES`] sessions that died meanwhile none comes back:
//!
//! - TLS 1.2 sessions pushed from A to B with a lifetime that then ran out:
//!   replayed, the pushes would store them again for the lifetime they
//!   carried;
//! - TLS 1.3 tickets made on A and used once on B (which took them from A
//!   by pull): the captured pull answers carry them whole.
//!
//! A router verifies a sender before applying its changes, under a fresh
//! challenge; a restarted B verifies A's master and workers again, each
//! from its current sequence number, so everything captured before is
//! below the floor.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

use cachet_tests::client::Tls;
use cachet_tests::cluster::{
    fifo_config, resumes, run_bounded, start_node, sync, sync_addr, try_node, Harness, NAME, SETTLE,
};
use cachet_tests::openssl::{require_openssl, s_client, Session};
use cachet_tests::ports::on_free_udp_ports;
use cachet_tests::udp_proxy::{Capture, Faults, UdpProxy};
use cachet_tests::{counter, wait_until, Router};
use rustls::ClientConfig;
use serde_json::Value;

/// Sessions (and tickets) that die and are offered to the restarted B.
const TRIES: usize = 1000;
/// Clients at once.
const CLIENTS: usize = 8;
/// Datagrams a relay keeps, far more than a test sends.
const CAPTURE: usize = 50_000;
/// Replayed datagrams sent before waiting for B to have counted them, so
/// that no socket buffer overflows and each one is really judged.
const BATCH: usize = 50;
/// `ssl-sessions-timeout` of the router whose TLS 1.2 sessions must die.
const SHORT_LIFETIME_S: &str = "3";

/// `args` with `--ssl-sessions-timeout` set to `seconds`.
fn with_lifetime(mut args: Vec<String>, seconds: &str) -> Vec<String> {
    let at = args
        .iter()
        .position(|a| a == "--ssl-sessions-timeout")
        .expect("the harness sets a session lifetime");
    args[at + 1] = seconds.to_owned();
    args
}

/// `args` of a router with a master and two workers.
fn with_workers(mut args: Vec<String>) -> Vec<String> {
    args.extend(["--master", "--http-processes", "2"].map(String::from));
    args
}

fn handshakes(router: &Router) -> Value {
    router.stats()["tls"].clone()
}

/// Waits (bounded) until `node` has verified `senders` peers' senders
/// since it started: the peers' answers to its greeting came in.
async fn await_verified(node: &Router, senders: u64) {
    let verified = wait_until(SETTLE, || {
        counter(&sync(node), "senders_verified") >= senders
    })
    .await;
    assert!(
        verified,
        "the restarted router verified fewer than {senders} senders: {:#}",
        sync(node)
    );
}

/// Sends every one of `datagrams` to `node`'s sync address, a batch at a
/// time, and waits after each batch until `node` has rejected all sent so
/// far: every replayed datagram must be rejected. Returns what `node`
/// counted meanwhile.
async fn replay(node: &Router, datagrams: &[Vec<u8>]) -> Value {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a socket to replay from");
    let target = sync_addr(node);
    let base = sync(node);
    let rejected = || counter(&sync(node), "rejected") - counter(&base, "rejected");
    let mut fired = 0u64;
    for batch in datagrams.chunks(BATCH) {
        for datagram in batch {
            socket.send_to(datagram, target).expect("replaying");
        }
        fired += batch.len() as u64;
        let judged = wait_until(SETTLE, || rejected() >= fired).await;
        assert!(
            judged,
            "{} of {fired} replayed datagrams rejected: {:#}",
            rejected(),
            sync(node)
        );
    }
    let after = sync(node);
    let delta = |field: &str| counter(&after, field) - counter(&base, field);
    let reasons = ["replay", "stale", "unverified"].map(|r| (r, delta(&format!("rejected_{r}"))));
    eprintln!(
        "replayed {} datagrams: rejected {}, by reason {reasons:?}",
        datagrams.len(),
        delta("rejected")
    );
    assert_eq!(delta("rejected"), datagrams.len() as u64, "{after:#}");
    assert_eq!(
        reasons.iter().map(|(_, n)| n).sum::<u64>(),
        datagrams.len() as u64,
        "rejected for another reason than a replay: {after:#}"
    );
    assert_eq!(delta("applied_sets"), 0, "{after:#}");
    assert_eq!(delta("applied_deletes"), 0, "{after:#}");
    after
}

/// Offers each client's session (or first ticket) to `node` once; returns
/// how many resumed, after checking that each was offered.
async fn offer_each(node: &Router, clients: &[Arc<ClientConfig>], offered: &str) -> usize {
    let before = counter(&handshakes(node)["offered"], offered);
    let addr = node.addr();
    let resumed = run_bounded(CLIENTS, clients.to_vec(), move |config| async move {
        resumes(&config, addr).await
    })
    .await;
    let after = counter(&handshakes(node)["offered"], offered);
    assert!(
        after - before >= clients.len() as u64,
        "{} {offered} offered for {} clients: a client gave up its session",
        after - before,
        clients.len()
    );
    resumed.into_iter().filter(|&r| r).count()
}

/// TLS 1.2 sessions A pushed to B, captured on the way, expired; B is
/// restarted and the capture replayed to it: none of them resumes on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_replayed_to_a_restarted_router_stay_dead() {
    let h = Harness::new().await;
    // A (a master, two workers) pushes to B through the capturing relay;
    // B lists A, whom it greets (and so verifies) when it starts.
    let (a, b, relay, b_args) = on_free_udp_ports(2, |addrs| {
        let (a_addr, b_addr) = (addrs[0], addrs[1]);
        let relay = UdpProxy::start_capturing(b_addr, Faults::none(), Capture::sent(CAPTURE))
            .expect("starting the relay");
        let b_args = with_lifetime(h.args(b_addr, &[a_addr], &h.key), SHORT_LIFETIME_S);
        let b = try_node(&b_args)?;
        let a_args = h.args(a_addr, &[relay.addr()], &h.key);
        let a = try_node(&with_workers(with_lifetime(a_args, SHORT_LIFETIME_S)))?;
        Ok((a, b, relay, b_args))
    });

    let clients: Vec<Arc<ClientConfig>> =
        (0..TRIES).map(|_| fifo_config(&h.pki, Tls::V12)).collect();
    let a_addr = a.addr();
    let made = run_bounded(CLIENTS, clients.clone(), move |config| async move {
        resumes(&config, a_addr).await
    })
    .await;
    assert!(
        made.iter().all(|&resumed| !resumed),
        "a fresh client resumed"
    );
    // Every session crossed to B (through the relay, and directly: B's
    // hello taught A its address).
    let pushed = wait_until(SETTLE, || {
        counter(&sync(&b), "applied_sets") >= TRIES as u64
    })
    .await;
    assert!(pushed, "B applied too few of A's sessions: {:#}", sync(&b));
    // And every one ran out of time, on A as everywhere.
    let expired = wait_until(SETTLE, || a.cache_items() == 0).await;
    assert!(expired, "A still holds {} sessions", a.cache_items());
    let captured = relay.captured();
    assert!(captured.len() >= TRIES / 10, "captured {}", captured.len());

    // B dies and comes back on its addresses, with nothing in memory.
    drop(b);
    let b = start_node(&b_args);
    // A's master vouches for itself and its two workers, and A's
    // bootstrap answer (empty) for itself.
    await_verified(&b, 4).await;
    replay(&b, &captured).await;

    let resumed = offer_each(&b, &clients, "tls12_session_id").await;
    assert_eq!(
        resumed, 0,
        "{resumed} of {TRIES} expired sessions resurrected on B"
    );
}

/// `openssl s_client -tls1_3` on `addr` (in a blocking task), offering
/// the session saved in `sess_in`, saving the one it ends with in
/// `sess_out`.
async fn s_client13(
    addr: SocketAddr,
    ca: PathBuf,
    sess_in: Option<PathBuf>,
    sess_out: PathBuf,
) -> Session {
    let run = move || s_client(addr, "-tls1_3", NAME, &ca, sess_in.as_deref(), &sess_out).0;
    tokio::task::spawn_blocking(run)
        .await
        .expect("an s_client task")
}

/// Runs `s_client13` for each ticket `i` with what `files(i)` names (the
/// session offered, if any, and where the new one is saved); returns how
/// many resumed.
async fn s_client_each(
    addr: SocketAddr,
    h: &Harness,
    files: impl Fn(usize) -> (Option<PathBuf>, PathBuf),
) -> usize {
    let jobs: Vec<(Option<PathBuf>, PathBuf)> = (0..TRIES).map(files).collect();
    let ca = h.pki.ca_pem.clone();
    let sessions = run_bounded(CLIENTS, jobs, move |(sess_in, sess_out)| {
        s_client13(addr, ca.clone(), sess_in, sess_out)
    })
    .await;
    sessions.iter().filter(|s| **s == Session::Reused).count()
}

/// TLS 1.3 tickets made on A and used once on B (taken from A by B's
/// pull, the answers captured on their way back); B is restarted and the
/// capture replayed to it: none of the used tickets resumes on B, offered
/// again by `openssl s_client -sess_in`, as the ticket's thief would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_tickets_replayed_to_a_restarted_router_stay_used() {
    require_openssl();
    let h = Harness::new().await;
    // B reaches A only through the relay, which keeps A's answers.
    let (a, b, relay, b_args) = on_free_udp_ports(2, |addrs| {
        let (a_addr, b_addr) = (addrs[0], addrs[1]);
        let capture = Capture::sent_and_replies(CAPTURE);
        let relay =
            UdpProxy::start_capturing(a_addr, Faults::none(), capture).expect("starting the relay");
        let a = try_node(&h.args(a_addr, &[], &h.key))?;
        let b_args = h.args(b_addr, &[relay.addr()], &h.key);
        let b = try_node(&b_args)?;
        Ok((a, b, relay, b_args))
    });
    let dir = h.pki.dir().to_owned();
    let made = |i: usize| dir.join(format!("made{i}.pem"));
    let scratch = |i: usize| dir.join(format!("scratch{i}.pem"));

    let resumed = s_client_each(a.addr(), &h, |i| (None, made(i))).await;
    assert_eq!(resumed, 0, "a fresh client resumed");
    let used = s_client_each(b.addr(), &h, |i| (Some(made(i)), scratch(i))).await;
    assert_eq!(used, TRIES, "tickets of A that did not resume on B");
    assert_eq!(
        counter(&sync(&b)["pulls"], "found"),
        TRIES as u64,
        "every ticket came by pull: {:#}",
        sync(&b)
    );
    let captured = relay.replies();
    assert!(captured.len() >= TRIES, "captured {}", captured.len());

    drop(b);
    let b = start_node(&b_args);
    // A (one process) vouches for its receiver and its sender, and its
    // bootstrap answer for itself.
    await_verified(&b, 3).await;
    replay(&b, &captured).await;

    let offered = || counter(&handshakes(&b)["offered"], "tls13_psk");
    let before = offered();
    let resumed = s_client_each(b.addr(), &h, |i| (Some(made(i)), scratch(i))).await;
    assert_eq!(
        resumed, 0,
        "{resumed} of {TRIES} used tickets resurrected on B"
    );
    assert!(
        offered() - before >= TRIES as u64,
        "a client did not offer its ticket"
    );
    // B asked A for each, and A had none to give.
    let pulls = &sync(&b)["pulls"];
    assert_eq!(counter(pulls, "found"), 0, "{pulls:#}");
}

/// libfaketime's preload library, from Debian's `faketime` package.
fn libfaketime() -> std::path::PathBuf {
    cachet_tests::tools::require("faketime", &["-f", "+0", "true"], "faketime");
    let found = std::fs::read_dir("/usr/lib")
        .expect("reading /usr/lib")
        .filter_map(Result::ok)
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .chain([std::path::PathBuf::from(
            "/usr/lib/faketime/libfaketime.so.1",
        )])
        .find(|path| path.exists());
    found.expect("no libfaketime.so.1 under /usr/lib (apt-get install faketime)")
}

/// Verifying senders compares no clocks: a router whose clock runs ten
/// minutes ahead (libfaketime, for it and its workers) and one on time
/// verify each other, reject nothing, and sessions made on either resume
/// on the other, TLS 1.2 (pushed) and TLS 1.3 (pulled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_ten_minutes_ahead_exchanges_sessions_both_ways() {
    let preload = libfaketime();
    let h = Harness::new().await;
    let (ahead, on_time) = on_free_udp_ports(2, |addrs| {
        let args = with_workers(h.args(addrs[0], &[addrs[1]], &h.key));
        let env = [
            ("LD_PRELOAD", preload.to_str().expect("a UTF-8 path")),
            ("FAKETIME", "+10m"),
        ];
        let ahead = Router::try_start_with_env(&args, &env)?;
        let on_time = try_node(&h.args(addrs[1], &[addrs[0]], &h.key))?;
        Ok((ahead, on_time))
    });
    let skew = counter(&ahead.stats(), "started_at") - counter(&on_time.stats(), "started_at");
    assert!(
        (590..900).contains(&skew),
        "the clocks are {skew} s apart, not ten minutes: is libfaketime in effect?"
    );

    for (from, to) in [(&ahead, &on_time), (&on_time, &ahead)] {
        for version in [Tls::V12, Tls::V13] {
            for _ in 0..5 {
                let config = fifo_config(&h.pki, version);
                let before = counter(&sync(to), "applied_sets");
                assert!(!resumes(&config, from.addr()).await);
                if version == Tls::V12 {
                    // Pushed: wait until it arrived, so that no pull is needed.
                    let arrived =
                        wait_until(SETTLE, || counter(&sync(to), "applied_sets") > before).await;
                    assert!(arrived, "a push never arrived: {:#}", sync(to));
                }
                assert!(
                    resumes(&config, to.addr()).await,
                    "a {version:?} session did not cross: {:#}",
                    sync(to)
                );
            }
        }
    }
    for node in [&ahead, &on_time] {
        let s = sync(node);
        assert_eq!(counter(&s, "rejected"), 0, "{s:#}");
        assert!(counter(&s, "senders_verified") > 0, "{s:#}");
    }
}
