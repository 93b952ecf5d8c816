//! Pull on miss: a router that lacks the session a client offers fetches it
//! from its peers before the handshake, and a TLS 1.3 ticket, held only by
//! the router that issued it, resumes at most once in the cluster however
//! its offers are timed.
//!
//! The race pushes lose is made deterministic here by taking pushes out of
//! the picture: a node that lists a peer but has no `cache-udp-server`
//! pushes to it and pulls from it, while the peer never learns of it and
//! never pushes back, so whatever the node resumes of the peer's sessions
//! came by pull.

use std::net::SocketAddr;

use cachet_tests::client::Tls;
use cachet_tests::cluster::{
    fifo_config, mesh, peer, resumes, start_node, sync, sync_addr, ticket_race, try_node, without,
    Harness, NAME, SETTLE,
};
use cachet_tests::openssl::{require_openssl, s_client, Session};
use cachet_tests::ports::on_free_udp_ports;
use cachet_tests::{counter, wait_until, Router};
use serde_json::Value;

/// The arguments of a node that pulls from (and pushes to) `peer` but
/// listens for nothing: no peer ever pushes to it. Two worker processes,
/// each pulling through its own sockets.
fn pull_only_args(h: &Harness, peer: SocketAddr, scratch: SocketAddr) -> Vec<String> {
    let mut args = without(h.args(scratch, &[peer], &h.key), "--cache-udp-server");
    args.extend(["--http-processes".to_owned(), "2".to_owned()]);
    args
}

/// A router outside the cluster with the same certificate and context:
/// its sessions are valid anywhere and held by nobody in the cluster, so
/// offering one to a node is a miss every peer answers "none" to.
fn outsider(h: &Harness) -> Router {
    let unused = SocketAddr::from(([127, 0, 0, 1], 9));
    let args = h.args(unused, &[], &h.key);
    let args = without(args, "--cache-udp-server");
    let args = without(args, "--cache-udp-key");
    start_node(&without(args, "--cache-udp-pull-timeout"))
}

/// A miss on `node`: a TLS 1.2 session made on `outsider`, offered to
/// `node`, which does not resume it.
async fn miss(h: &Harness, outsider: &Router, node: &Router) {
    let config = fifo_config(&h.pki, Tls::V12);
    assert!(!resumes(&config, outsider.addr()).await);
    assert!(
        !resumes(&config, node.addr()).await,
        "an outsider's session resumed"
    );
}

fn pulls(router: &Router) -> Value {
    sync(router)["pulls"].clone()
}

/// TLS 1.2 sessions and TLS 1.3 tickets made on A resume on B although A
/// never pushes anything to B: B's workers pull them. rustls and `openssl
/// s_client` clients, both versions. A ticket resumed on B is gone from A
/// as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_pull_delivers_and_sessions_still_resume() {
    require_openssl();
    let h = Harness::new().await;
    let (a, b) = on_free_udp_ports(2, |addrs| {
        let a = h.try_start(addrs[0], &[])?;
        let b = try_node(&pull_only_args(&h, addrs[0], addrs[1]))?;
        Ok((a, b))
    });
    assert!(b.sync.is_none(), "B must not listen for sync");

    for version in [Tls::V12, Tls::V13] {
        for round in 0..5 {
            let config = fifo_config(&h.pki, version);
            assert!(!resumes(&config, a.addr()).await);
            assert!(
                resumes(&config, b.addr()).await,
                "{version:?} round {round}: B did not resume A's session: {:#}",
                pulls(&b)
            );
        }
    }
    // Nothing of it was pushed: A has no peer, B applied no push.
    assert_eq!(counter(&sync(&a), "applied_sets"), 0);
    assert!(sync(&a)["peers"].as_array().unwrap().is_empty());
    let (made, answered) = (pulls(&b), pulls(&a));
    assert_eq!(counter(&made, "found"), 10, "{made:#}");
    assert_eq!(counter(&made, "timed_out"), 0, "{made:#}");
    assert_eq!(counter(&answered, "answered_found"), 10, "{answered:#}");
    assert!(made["wait_p99_us"].as_u64().is_some(), "{made:#}");

    // A used ticket is used everywhere: taken from A by B's pull, it
    // resumes neither on B again nor on A.
    let dir = h.pki.dir();
    let (ticket, scratch) = (dir.join("ticket.pem"), dir.join("scratch.pem"));
    assert_eq!(h.s_client13(a.addr(), None, &ticket), Session::New);
    assert_eq!(
        h.s_client13(b.addr(), Some(&ticket), &scratch),
        Session::Reused
    );
    assert_eq!(
        h.s_client13(b.addr(), Some(&ticket), &scratch),
        Session::New
    );
    assert_eq!(
        h.s_client13(a.addr(), Some(&ticket), &scratch),
        Session::New
    );
    assert!(counter(&pulls(&b), "not_found") >= 1, "{:#}", pulls(&b));

    // A third-party client: sessions saved by `openssl s_client` on A,
    // used on B.
    for tls in ["-tls1_2", "-tls1_3"] {
        let made = dir.join(format!("made{tls}.pem"));
        let used = dir.join(format!("used{tls}.pem"));
        let (kind, out) = s_client(a.addr(), tls, NAME, &h.pki.ca_pem, None, &made);
        assert_eq!(kind, Session::New, "{out}");
        let (kind, out) = s_client(b.addr(), tls, NAME, &h.pki.ca_pem, Some(&made), &used);
        assert_eq!(kind, Session::Reused, "{tls} on B:\n{out}");
        assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    }
}

/// 1000 TLS 1.3 tickets, each offered by two `openssl s_client`s released
/// together (behind a barrier) to two routers at once: the two that did not
/// issue it, or its issuer and another. A ticket never resumes twice; it
/// resumes once in at least 99% of the rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_offered_to_two_routers_at_once_resumes_at_most_once() {
    const ROUNDS: usize = 1000;
    require_openssl();
    let h = Harness::new().await;
    let (nodes, _) = mesh(&h, 3);
    let addrs: Vec<SocketAddr> = nodes.iter().map(Router::addr).collect();

    let tally = ticket_race(&h, &addrs, ROUNDS);
    let figures: Vec<Value> = nodes.iter().map(pulls).collect();
    tally.assert_once_each(&format!("pulls {figures:#?}"));
}

/// A peer stopped with SIGSTOP lets one pull's deadline pass; it is then
/// marked silent and later pulls neither ask nor wait for it, until it is
/// heard from again (its hello, each second) once it continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_skipped_until_it_answers_again() {
    let h = Harness::new().await;
    let (nodes, _) = mesh(&h, 3);
    let (b, c) = (&nodes[1], &nodes[2]);
    let c_addr = sync_addr(c);
    let peer_c = |router: &Router| -> Value {
        peer(router, c_addr).unwrap_or_else(|| panic!("C is not B's peer: {:#}", sync(router)))
    };
    let stranger = outsider(&h);
    c.signal("STOP");
    // A's "none" comes at once; C's never does: the pull waits out its
    // deadline, then C is silent.
    miss(&h, &stranger, b).await;
    let silent = peer_c(b);
    assert_eq!(silent["silent"], true, "{silent:#}");
    assert_eq!(counter(&silent, "pull_timeouts"), 1, "{silent:#}");
    assert_eq!(counter(&pulls(b), "timed_out"), 1, "{:#}", pulls(b));

    // Later misses skip C, so they end with A's answer.
    for _ in 0..3 {
        miss(&h, &stranger, b).await;
    }
    let skipped = peer_c(b);
    assert_eq!(
        counter(&skipped, "pulls_sent"),
        counter(&silent, "pulls_sent")
    );
    assert_eq!(counter(&skipped, "pulls_skipped"), 3, "{skipped:#}");
    assert_eq!(counter(&pulls(b), "timed_out"), 1, "{:#}", pulls(b));
    assert_eq!(counter(&pulls(b), "not_found"), 3, "{:#}", pulls(b));

    c.signal("CONT");
    let back = wait_until(SETTLE, || peer_c(b)["silent"] == false).await;
    assert!(back, "C never heard from again: {:#}", peer_c(b));
    miss(&h, &stranger, b).await;
    let asked = peer_c(b);
    assert_eq!(
        counter(&asked, "pulls_sent"),
        counter(&silent, "pulls_sent") + 1,
        "{asked:#}"
    );
}

/// With every peer stopped, a miss waits for them once; after that, misses
/// are not pulled at all (counted as dropped) and handshakes go on, full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_peer_answering_misses_are_not_pulled() {
    let h = Harness::new().await;
    let (nodes, _) = mesh(&h, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let stranger = outsider(&h);
    a.signal("STOP");
    // B's own session: no pull.
    let config = fifo_config(&h.pki, Tls::V12);
    assert!(!resumes(&config, b.addr()).await);
    assert!(resumes(&config, b.addr()).await);
    for _ in 0..4 {
        miss(&h, &stranger, b).await;
    }
    let made = pulls(b);
    assert_eq!(counter(&made, "timed_out"), 1, "{made:#}");
    assert_eq!(counter(&made, "dropped"), 3, "{made:#}");
    assert_eq!(
        counter(&made, "found") + counter(&made, "not_found"),
        0,
        "{made:#}"
    );
    a.signal("CONT");
}
