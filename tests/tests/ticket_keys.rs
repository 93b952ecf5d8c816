//! Cluster ticket keys (`ssl-session-tickets = keys`) with real routers:
//! three routers (a master and two workers each), one of them with its
//! wall clock 4 s ahead (libfaketime), and a listening peer that opens
//! what the first router shares with the cluster key.
//!
//! - a TLS 1.3 and a TLS 1.2 ticket, from rustls and from `openssl
//!   s_client -sess_out/-sess_in`, made on any router resumes on every
//!   other one, by the ticket (the resuming router counts it opened), and
//!   the session caches hold no TLS 1.3 ticket;
//! - tickets made before a rotation resume after it everywhere, each
//!   router's stats showing the new epoch;
//! - a router killed (SIGKILL) and restarted gets the keys with its
//!   bootstrap before it serves: tickets made before, by it or by others,
//!   resume on it at once;
//! - a ticket older than two periods is refused (a full handshake, counted
//!   as expired), offered by a client whose clock stopped so that it does
//!   offer it;
//! - the keys the router shares are the ones it seals under, and no key's
//!   bytes are in any file a router holds open (the shared region's memfd
//!   included), in its log, its stats or its metrics.
//!
//! Every wait is on a condition in stats (the epoch moving on), bounded by
//! deadlines far above what the periods need.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cachet_core::tickets::TicketKey;
use cachet_tests::client::Tls;
use cachet_tests::cluster::{
    key_secret, mesh_with_env, resumes, start_node, stopped_clock_config, Harness, NAME,
};
use cachet_tests::faketime;
use cachet_tests::open_files::{assert_secrets_absent, assert_secrets_not_shown};
use cachet_tests::openssl::{require_openssl, s_client, Session};
use cachet_tests::sync_tap::SyncTap;
use cachet_tests::{counter, wait_until, Router};
use rustls::ClientConfig;
use serde_json::Value;
use std::sync::Arc;

/// `ssl-session-ticket-rotate` of every router: short, so that a test sees
/// rotations and expiry, long enough for a restart within one period.
const ROTATE_S: u64 = 20;
/// Bound on waiting for an epoch: a few periods.
const EPOCH_WAIT: Duration = Duration::from_secs(6 * ROTATE_S);
/// The router whose clock runs ahead, and by how much.
const SKEWED: usize = 2;
const SKEW: &str = "+4s";

fn args(
    h: &Harness,
    i: usize,
    addr: SocketAddr,
    peers: &[SocketAddr],
    tap: SocketAddr,
) -> Vec<String> {
    let mut args = h.args(addr, peers, &h.key);
    args.extend(
        [
            "--master",
            "--http-processes",
            "2",
            "--stats-http",
            "127.0.0.1:0",
            "--ssl-session-tickets",
            "keys",
            "--ssl-session-ticket-rotate",
            &ROTATE_S.to_string(),
        ]
        .map(String::from),
    );
    if i == 0 {
        args.extend(["--cache-udp-node".to_owned(), tap.to_string()]);
    }
    args
}

/// A router's `sync.ticket_keys`.
fn epoch(node: &Router) -> Value {
    let stats = node.stats();
    let keys = stats["sync"]["ticket_keys"].clone();
    assert!(keys.is_object(), "no ticket keys in stats: {stats:#}");
    keys
}

fn period(node: &Router) -> u64 {
    counter(&epoch(node), "period")
}

/// A router's `tls.tickets` counter `field` (`refused.expired` for a
/// refusal reason).
fn tickets(node: &Router, field: &str) -> u64 {
    let stats = node.stats();
    let tickets = &stats["tls"]["tickets"];
    match field.split_once('.') {
        Some((outer, inner)) => counter(&tickets[outer], inner),
        None => counter(tickets, field),
    }
}

/// Waits until every router is at `period` or later and seals under a key
/// for it.
async fn wait_for_period(nodes: &[&Router], period: u64) {
    let reached = wait_until(EPOCH_WAIT, || {
        nodes.iter().all(|node| {
            let epoch = epoch(node);
            counter(&epoch, "period") >= period && epoch["sealing"].is_string()
        })
    })
    .await;
    assert!(
        reached,
        "not every router reached period {period}: {:?}",
        nodes.iter().map(|n| epoch(n)).collect::<Vec<_>>()
    );
}

/// One GET on `node` with `client`; whether it resumed, and whether the
/// router opened a ticket for it.
async fn resumes_by_ticket(client: &Arc<ClientConfig>, node: &Router) -> (bool, bool) {
    let opened = tickets(node, "opened");
    let resumed = resumes(client, node.addr()).await;
    (resumed, tickets(node, "opened") > opened)
}

/// A session made with `openssl s_client` on `node`, saved in `file`.
fn openssl_session(h: &Harness, node: &Router, tls: &str, file: &Path) {
    let (kind, out) = s_client(node.addr(), tls, NAME, &h.pki.ca_pem, None, file);
    assert_eq!(kind, Session::New, "{out}");
}

/// Whether the saved session resumes on `node` (saving what it gets back
/// elsewhere, so the saved one is offered every time).
fn openssl_resumes(h: &Harness, node: &Router, tls: &str, file: &Path) -> bool {
    let scratch = file.with_extension("after");
    let (kind, _) = s_client(node.addr(), tls, NAME, &h.pki.ca_pem, Some(file), &scratch);
    kind == Session::Reused
}

/// Tickets of version `tls` made on each router, by rustls and by
/// `openssl s_client` (its files in `dir`), resume on both others, each
/// time by the ticket. (The s_client session is offered twice: a
/// stateless ticket resumes more than once.)
async fn tickets_cross(h: &Harness, nodes: &[Router], tls: Tls, dir: &Path) {
    let flag = match tls {
        Tls::V12 => "-tls1_2",
        Tls::V13 => "-tls1_3",
    };
    for from in 0..3 {
        let others = [(from + 1) % 3, (from + 2) % 3];
        let client = h.client(tls);
        assert!(!resumes(&client, nodes[from].addr()).await);
        for to in others {
            let (resumed, by_ticket) = resumes_by_ticket(&client, &nodes[to]).await;
            assert!(resumed && by_ticket, "{tls:?} ticket of {from} on {to}");
        }
        let file = dir.join(format!("{flag}-{from}.pem"));
        openssl_session(h, &nodes[from], flag, &file);
        for to in others {
            assert!(
                openssl_resumes(h, &nodes[to], flag, &file),
                "s_client {flag} ticket of {from} on {to}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_resume_everywhere_across_rotations_restarts_and_skew() {
    require_openssl();
    let skew = faketime::skewed(SKEW);
    let h = Harness::new().await;
    let mut tap = SyncTap::new(&key_secret(1));
    let tap_addr = tap.addr();
    let (mut nodes, addrs) = mesh_with_env(
        3,
        |i, addr, peers| args(&h, i, addr, peers, tap_addr),
        |i| {
            if i == SKEWED {
                skew.clone()
            } else {
                Vec::new()
            }
        },
    );

    // The first router made the keys (nobody answered it); the others got
    // them with their bootstrap.
    for (i, node) in nodes.iter().enumerate() {
        let epoch = epoch(node);
        assert_eq!(epoch["ready"], true, "router {i}: {epoch:#}");
        if i > 0 {
            assert!(counter(&epoch, "received") > 0, "router {i}: {epoch:#}");
        }
    }
    // Routers in the same period seal under the same key (the smallest
    // proposal), whatever their clocks.
    let agree = wait_until(EPOCH_WAIT, || {
        let epochs: Vec<Value> = nodes.iter().map(epoch).collect();
        epochs.iter().all(|a| {
            epochs
                .iter()
                .all(|b| a["period"] != b["period"] || a["sealing"] == b["sealing"])
        })
    })
    .await;
    assert!(agree, "{:?}", nodes.iter().map(epoch).collect::<Vec<_>>());

    // TLS 1.3 first, so the caches must stay empty: a ticket from any
    // router resumes on both others, by the ticket.
    let dir = tempfile::tempdir().unwrap();
    tickets_cross(&h, &nodes, Tls::V13, dir.path()).await;
    for (i, node) in nodes.iter().enumerate() {
        let stats = node.stats();
        assert_eq!(stats["caches"][0]["items"], 0, "router {i}: {stats:#}");
        // Nothing to pull for a stateless ticket.
        assert_eq!(stats["sync"]["pulls"]["asked"], 0, "router {i}: {stats:#}");
        assert_eq!(stats["sessions"]["sets"], 0, "router {i}: {stats:#}");
        assert!(
            counter(&stats["tls"]["tickets"], "issued") >= 4,
            "{stats:#}"
        );
    }

    // TLS 1.2 tickets likewise.
    tickets_cross(&h, &nodes, Tls::V12, dir.path()).await;

    // A TLS 1.2 ClientHello offering a ticket is not pulled for either
    // (the session id beside it is never looked up).
    for (i, node) in nodes.iter().enumerate() {
        let sync = node.stats()["sync"].clone();
        assert_eq!(sync["pulls"]["asked"], 0, "router {i}: {sync:#}");
    }

    // Across a rotation: tickets made in one period (by router 0's clock;
    // made again should a boundary pass meanwhile) resume in the next, on
    // every router, once every router shows the new epoch.
    let (made_in, v13, v12, file13) = loop {
        let before = period(&nodes[0]);
        let v13 = h.client(Tls::V13);
        let v12 = h.client(Tls::V12);
        // Two TLS 1.3 handshakes: the client holds three tickets of this
        // period (the second consumed one and brought two), one per router.
        assert!(!resumes(&v13, nodes[0].addr()).await);
        assert!(resumes(&v13, nodes[0].addr()).await);
        assert!(!resumes(&v12, nodes[1].addr()).await);
        let file13 = dir.path().join("rotation-13.pem");
        openssl_session(&h, &nodes[SKEWED], "-tls1_3", &file13);
        if period(&nodes[0]) == before {
            break (before, v13, v12, file13);
        }
    };
    let old_sealing = epoch(&nodes[0])["sealing"].clone();
    wait_for_period(&[&nodes[0], &nodes[1], &nodes[2]], made_in + 1).await;
    assert_ne!(epoch(&nodes[0])["sealing"], old_sealing, "no new key");
    for (to, node) in nodes.iter().enumerate() {
        let (resumed, by_ticket) = resumes_by_ticket(&v13, node).await;
        assert!(
            resumed && by_ticket,
            "TLS 1.3 ticket after the rotation on {to}"
        );
        let (resumed, by_ticket) = resumes_by_ticket(&v12, node).await;
        assert!(
            resumed && by_ticket,
            "TLS 1.2 ticket after the rotation on {to}"
        );
        assert!(openssl_resumes(&h, node, "-tls1_3", &file13));
    }

    // A router killed and restarted holds the keys before it serves:
    // tickets made before, by it and by the others, resume on it at once.
    let start = period(&nodes[1]);
    wait_for_period(&[&nodes[1]], start + 1).await;
    let by_others = h.client(Tls::V13);
    assert!(!resumes(&by_others, nodes[0].addr()).await);
    let by_itself = dir.path().join("restart-12.pem");
    openssl_session(&h, &nodes[1], "-tls1_2", &by_itself);
    let restart_args = args(&h, 1, addrs[1], &[addrs[0], addrs[2]], tap_addr);
    // SIGKILL (the harness's drop), then the same configuration again.
    drop(nodes.remove(1));
    nodes.insert(1, start_node(&restart_args));
    let restarted = epoch(&nodes[1]);
    assert!(
        counter(&restarted, "received") > 0 && counter(&restarted, "proposed") == 0,
        "the restarted router made keys instead of getting the cluster's: {restarted:#}"
    );
    let (resumed, by_ticket) = resumes_by_ticket(&by_others, &nodes[1]).await;
    assert!(
        resumed && by_ticket,
        "a ticket of router 0 on the restarted router"
    );
    assert!(
        openssl_resumes(&h, &nodes[1], "-tls1_2", &by_itself),
        "its own ticket from before the restart"
    );
    assert!(
        period(&nodes[1]) < start + 3,
        "the restart took more than a period: the tickets above were in time only by luck"
    );

    // A ticket older than two periods is refused: a full handshake, and
    // the router counts it expired. (The client's clock stopped when it
    // made its tickets, so it offers them whatever their lifetime says.)
    let (made_in, stopped) = loop {
        let before = period(&nodes[0]);
        let mut stopped = Vec::new();
        for _ in 0..3 {
            let (v13, v12) = (
                stopped_clock_config(&h.pki, Tls::V13),
                stopped_clock_config(&h.pki, Tls::V12),
            );
            assert!(!resumes(&v13, nodes[0].addr()).await);
            assert!(!resumes(&v12, nodes[0].addr()).await);
            stopped.push((v13, v12));
        }
        if period(&nodes[0]) == before {
            break (before, stopped);
        }
    };
    wait_for_period(&[&nodes[0], &nodes[1], &nodes[2]], made_in + 2).await;
    for (to, (v13, v12)) in stopped.iter().enumerate() {
        let node = &nodes[to];
        let expired = tickets(node, "refused.expired");
        assert!(
            !resumes(v13, node.addr()).await,
            "an expired TLS 1.3 ticket on {to}"
        );
        assert!(
            !resumes(v12, node.addr()).await,
            "an expired TLS 1.2 ticket on {to}"
        );
        assert_eq!(
            tickets(node, "refused.expired"),
            expired + 2,
            "router {to} did not count both tickets expired"
        );
    }

    // The keys router 0 shares (opened here with the cluster key) are the
    // keys the cluster seals under, and none of them is anywhere readable.
    let shared: Vec<(u64, [u8; 32])> = tap.ticket_keys().to_vec();
    assert!(shared.len() >= 3, "{} ticket keys shared", shared.len());
    let sealing = epoch(&nodes[0])["sealing"].as_str().unwrap().to_owned();
    assert!(
        shared
            .iter()
            .any(|(period, secret)| TicketKey::new(*period, secret)
                .id()
                .fingerprint()
                .to_string()
                == sealing),
        "router 0 seals under {sealing}, a key it never shared"
    );
    // The epoch in Prometheus text too: the period, and the sealing key by
    // fingerprint.
    for node in &nodes {
        let metrics = node.metrics();
        let epoch = period(node);
        let shown = metrics
            .lines()
            .find_map(|line| line.strip_prefix("cachet_ticket_key_period "))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no ticket key period in:\n{metrics}"));
        assert!(shown.abs_diff(epoch) <= 1, "{shown} against {epoch}");
        assert!(
            metrics.contains("cachet_ticket_key_sealing{key=\""),
            "{metrics}"
        );
    }
    let secrets: Vec<&[u8]> = shared.iter().map(|(_, secret)| &secret[..]).collect();
    for node in &nodes {
        assert_secrets_absent(node.pid(), &node.log(), &secrets);
        let shown = [node.stats().to_string(), node.metrics()];
        assert_secrets_not_shown(&shown, &secrets);
    }
}
