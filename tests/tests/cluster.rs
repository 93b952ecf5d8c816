//! The cluster (the seed's Setup 2): real router processes on loopback that
//! replicate TLS sessions to each other over sealed UDP datagrams.
//!
//! Every node serves the same certificate with the same
//! `https-session-context`, so a session is valid on every node once it has
//! been replicated. Sessions are made by a client on one node and checked by
//! resuming them on another; the replication is asynchronous, so each check
//! first waits (bounded) until the receiving node's `sync` counters show
//! every change made so far arrived (a [`Ledger`] of what the test made),
//! then proceeds either way and lets the resumption decide.
//!
//! The tests start three or four processes each, so they run one at a time
//! (a process-wide lock) rather than all at once on a small machine.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachet_core::wire::{self, Packet};
use cachet_tests::client::Tls;
use cachet_tests::cluster::{
    key_secret, mesh, peer, pushed_sets, resumes, run_bounded, start_node, sync, sync_addr,
    try_node, write_key, Harness, NAME, SETTLE,
};
use cachet_tests::openssl::{require_openssl, s_client, Session};
use cachet_tests::ports::on_free_udp_ports;
use cachet_tests::sync_tap::SyncTap;
use cachet_tests::udp_proxy::{Capture, Faults, UdpProxy, XorShift};
use cachet_tests::{counter, rejected_but_races, run_to_exit, wait_until, Router};
use rustls::ClientConfig;
use serde_json::Value;

/// Every `rejected_*` counter of a `sync` object.
fn rejections(sync: &Value) -> u64 {
    sync.as_object()
        .expect("sync is an object")
        .iter()
        .filter(|(k, _)| k.starts_with("rejected_"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum()
}

/// A handshake a test made, as far as replication is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    Full(Tls),
    Resumed(Tls),
}

impl Handshake {
    /// `full` for a connection that did not resume.
    fn of(tls: Tls, resumed: bool) -> Handshake {
        if resumed {
            Handshake::Resumed(tls)
        } else {
            Handshake::Full(tls)
        }
    }

    /// Sessions it stored and pushed to every peer: a TLS 1.2 session on a
    /// full handshake (a resumed one keeps its id). TLS 1.3 tickets stay
    /// with the router that issued them; peers pull them from there.
    fn sets(self) -> u64 {
        u64::from(self == Handshake::Full(Tls::V12))
    }
}

/// `openssl s_client`'s `-tls1_2`/`-tls1_3` as a [`Tls`].
fn tls_of(flag: &str) -> Tls {
    match flag {
        "-tls1_2" => Tls::V12,
        "-tls1_3" => Tls::V13,
        other => panic!("not a TLS version flag: {other}"),
    }
}

/// What every node of a full mesh should have applied from its peers'
/// pushes by now, kept by the test as it makes handshakes. Waiting for
/// these totals, rather than for "one more set than a moment ago", cannot
/// be fooled by an earlier push that lands late.
struct Ledger {
    sets: Vec<u64>,
}

impl Ledger {
    /// The counters of `nodes` now, at a moment when nothing is in flight
    /// (just started, or after the nodes were seen to agree).
    fn new(nodes: &[&Router]) -> Ledger {
        Ledger {
            sets: nodes.iter().map(|node| pushed_sets(node)).collect(),
        }
    }

    /// `handshake` was made on node `origin`: every other node will apply
    /// what it stored.
    fn made(&mut self, origin: usize, handshake: Handshake) {
        for node in (0..self.sets.len()).filter(|&node| node != origin) {
            self.sets[node] += handshake.sets();
        }
    }

    /// Whether node `index` applied everything it should have.
    fn reached(&self, index: usize, node: &Router) -> bool {
        pushed_sets(node) >= self.sets[index]
    }

    /// Waits (bounded) until node `index` applied everything; whether it did.
    async fn settle_one(&self, index: usize, node: &Router) -> bool {
        wait_until(SETTLE, || self.reached(index, node)).await
    }

    /// Waits (bounded) until every node applied everything; whether they did.
    async fn settle(&self, nodes: &[&Router]) -> bool {
        wait_until(SETTLE, || {
            nodes
                .iter()
                .enumerate()
                .all(|(index, node)| self.reached(index, node))
        })
        .await
    }
}

/// A fresh `version` client's full handshake on `nodes[0]`, once every node
/// applied what it stored: the client, ready to resume anywhere.
async fn made_on_first(
    h: &Harness,
    ledger: &mut Ledger,
    nodes: &[&Router],
    version: Tls,
) -> Arc<ClientConfig> {
    let config = h.client(version);
    assert!(!resumes(&config, nodes[0].addr()).await);
    ledger.made(0, Handshake::Full(version));
    ledger.settle(nodes).await;
    config
}

/// Waits until `router` has applied `count` more pushed sets than `before`,
/// or gives up once nothing moved for a while with nothing in flight:
/// what a lossy link lost for good never arrives. Quiet means every relay
/// has sent all it holds and the node's count stood still for `QUIET`,
/// which covers the senders' one repeat (20 ms after each batch) many
/// times over.
async fn await_sets_or_quiet(router: &Router, relays: &[UdpProxy], before: u64, count: u64) {
    const QUIET: Duration = Duration::from_secs(3);
    let deadline = Instant::now() + SETTLE;
    let (mut last, mut since) = (u64::MAX, Instant::now());
    while Instant::now() < deadline {
        let now = pushed_sets(router);
        if now >= before + count {
            return;
        }
        let idle = relays.iter().all(|relay| relay.counts().pending() == 0);
        if now != last || !idle {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= QUIET {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A session made by a rustls client on node 0 resumes on nodes 1 and 2,
/// TLS 1.2 and TLS 1.3, and so does one made by `openssl s_client`. Node 0
/// runs two worker processes: a session stored by either is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_on_every_node() {
    require_openssl();
    let h = Harness::new().await;
    let (a, b, c) = on_free_udp_ports(3, |addrs| {
        let mut first = h.args(addrs[0], &[addrs[1], addrs[2]], &h.key);
        first.extend(["--http-processes".to_owned(), "2".to_owned()]);
        let a = try_node(&first)?;
        let b = h.try_start(addrs[1], &[addrs[0], addrs[2]])?;
        let c = h.try_start(addrs[2], &[addrs[0], addrs[1]])?;
        Ok((a, b, c))
    });
    let nodes = [&a, &b, &c];
    let mut ledger = Ledger::new(&nodes);

    // rustls, TLS 1.2: one session id, resumable on every node.
    for _ in 0..4 {
        // Several sessions, so that both of node 0's workers make some.
        let config = made_on_first(&h, &mut ledger, &nodes, Tls::V12).await;
        assert!(resumes(&config, b.addr()).await, "TLS 1.2 on B");
        assert!(resumes(&config, c.addr()).await, "TLS 1.2 on C");
        assert!(resumes(&config, a.addr()).await, "TLS 1.2 back on A");
    }

    // rustls, TLS 1.3: node 0 issues two tickets; the first resumes on B,
    // the second on C.
    for _ in 0..4 {
        let config = made_on_first(&h, &mut ledger, &nodes, Tls::V13).await;
        assert!(resumes(&config, b.addr()).await, "TLS 1.3 ticket 1 on B");
        ledger.made(1, Handshake::Resumed(Tls::V13));
        assert!(resumes(&config, c.addr()).await, "TLS 1.3 ticket 2 on C");
        ledger.made(2, Handshake::Resumed(Tls::V13));
    }

    // openssl s_client, both versions: a session made on A, its file
    // used on B; another made on A, used on C.
    for tls in ["-tls1_2", "-tls1_3"] {
        for (index, node, name) in [(1, &b, "B"), (2, &c, "C")] {
            let made = h.pki.dir().join(format!("made{tls}{name}.pem"));
            let out_file = h.pki.dir().join(format!("out{tls}{name}.pem"));
            let (kind, out) = s_client(a.addr(), tls, NAME, &h.pki.ca_pem, None, &made);
            assert_eq!(kind, Session::New, "{out}");
            assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
            ledger.made(0, Handshake::Full(tls_of(tls)));
            ledger.settle(&nodes).await;
            let (kind, out) = s_client(
                node.addr(),
                tls,
                NAME,
                &h.pki.ca_pem,
                Some(&made),
                &out_file,
            );
            assert_eq!(kind, Session::Reused, "{tls} on {name}:\n{out}");
            assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
            ledger.made(index, Handshake::Resumed(tls_of(tls)));
        }
    }

    // The figures agree: every node pushed to two peers and received; B
    // and C applied A's TLS 1.2 sessions, and took A's tickets from it.
    for (node, name) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        let s = sync(node);
        assert!(counter(&s, "received_datagrams") > 0, "{name}: {s:#}");
        if name == "A" {
            assert!(
                counter(&s["pulls"], "answered_found") >= 10,
                "{name}: {s:#}"
            );
        } else {
            assert!(counter(&s, "applied_sets") > 0, "{name}: {s:#}");
            assert!(counter(&s["pulls"], "found") >= 5, "{name}: {s:#}");
        }
        assert_eq!(rejected_but_races(&s), 0, "{name}: {s:#}");
        let peers = s["peers"].as_array().expect("peers");
        assert!(peers.len() >= 2, "{name}: {s:#}");
        for peer in peers {
            assert!(counter(peer, "sent_datagrams") > 0, "{name}: {s:#}");
        }
        assert!(
            s["sender"]
                .as_str()
                .is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit())),
            "{name}: {s:#}"
        );
    }
    let resumed_b = &b.stats()["tls"]["handshakes"];
    assert!(
        counter(&resumed_b["tls12"], "resumed") >= 5,
        "{resumed_b:#}"
    );
    assert!(
        counter(&resumed_b["tls13"], "resumed") >= 5,
        "{resumed_b:#}"
    );
}

/// A TLS 1.3 ticket is single-use in the whole cluster: used on B (which
/// took it from A, its issuer), it no longer resumes on C nor on A, while
/// the ticket B issued in exchange resumes on C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_used_on_one_node_does_not_resume_on_another() {
    require_openssl();
    let h = Harness::new().await;
    let (nodes, _) = mesh(&h, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let all = [a, b, c];
    let mut ledger = Ledger::new(&all);
    let (full, resumed) = (Handshake::Full(Tls::V13), Handshake::Resumed(Tls::V13));
    let dir = h.pki.dir();
    // One TLS 1.3 s_client offering the ticket in `sess_in`.
    let offer = |node: &Router, sess_in: &Path, sess_out: &Path| {
        s_client(
            node.addr(),
            "-tls1_3",
            NAME,
            &h.pki.ca_pem,
            Some(sess_in),
            sess_out,
        )
    };
    for round in 0..3 {
        let made = dir.join(format!("made{round}.pem"));
        let from_b = dir.join(format!("from_b{round}.pem"));
        let scratch = dir.join(format!("scratch{round}.pem"));
        let (kind, out) = s_client(a.addr(), "-tls1_3", NAME, &h.pki.ca_pem, None, &made);
        assert_eq!(kind, Session::New, "{out}");
        ledger.made(0, full);
        assert!(ledger.settle(&all).await, "{:#}", sync(c));

        let (kind, out) = offer(b, &made, &from_b);
        assert_eq!(kind, Session::Reused, "round {round}, B:\n{out}");
        // B took the ticket from A (and issued one of its own, kept: one
        // ticket after a resumption, as OpenSSL does).
        ledger.made(1, resumed);
        // The used ticket resumes neither on C nor on A, where it was made.
        for (i, node, name) in [(2, c, "C"), (0, a, "A")] {
            let (kind, out) = offer(node, &made, &scratch);
            assert_eq!(
                kind,
                Session::New,
                "round {round}: a used ticket resumed on {name}:\n{out}"
            );
            assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
            ledger.made(i, full);
        }
        // The ticket B issued instead resumes on C.
        ledger.settle(&all).await;
        let (kind, out) = offer(c, &from_b, &scratch);
        assert_eq!(
            kind,
            Session::Reused,
            "round {round}: B's ticket on C:\n{out}"
        );
        ledger.made(2, resumed);
    }

    // The same seen from the caches with rustls: A issues two tickets after
    // the full handshake and holds them, alone; B takes one from A and
    // issues one of its own (one after a resumption).
    let items = |node: &Router| node.cache_items();
    let before = all.map(items);
    let config = h.client(Tls::V13);
    assert!(!resumes(&config, a.addr()).await);
    assert_eq!(all.map(items), [before[0] + 2, before[1], before[2]]);
    assert!(resumes(&config, b.addr()).await);
    assert_eq!(all.map(items), [before[0] + 1, before[1] + 1, before[2]]);
    // The second ticket is still good on C, which takes it from A too.
    assert!(resumes(&config, c.addr()).await, "A's second ticket on C");
    assert_eq!(all.map(items), [before[0], before[1] + 1, before[2] + 1]);
    let pulls = &sync(c)["pulls"];
    assert!(counter(pulls, "found") >= 1, "{pulls:#}");
    assert_eq!(ledger.sets, Ledger::new(&all).sets, "tickets were pushed");
}

/// Three nodes whose datagrams all pass through relays that drop 5%,
/// duplicate 5% and delay each by up to 10 ms (so they reorder): sessions
/// made on each node still resume on the other two at least 99% of the
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_survives_a_lossy_reordering_link() {
    const SESSIONS_PER_VERSION: usize = 250;
    const CONCURRENCY: usize = 6;

    let h = Arc::new(Harness::new().await);
    let (proxies, nodes) = on_free_udp_ports(3, |addrs| {
        // proxies[i] stands in front of node i: everyone else sends there.
        let proxies: Vec<UdpProxy> = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let faults = Faults {
                    drop: 0.05,
                    duplicate: 0.05,
                    max_delay: Duration::from_millis(10),
                    seed: 0x5eed + i as u64,
                };
                UdpProxy::start(addr, faults).expect("starting a relay")
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, &addr) in addrs.iter().enumerate() {
            let peers: Vec<SocketAddr> = (0..3)
                .filter(|&j| j != i)
                .map(|j| proxies[j].addr())
                .collect();
            nodes.push(h.try_start(addr, &peers)?);
        }
        Ok((proxies, nodes))
    });
    let nodes: Arc<Vec<Router>> = Arc::new(nodes);
    let started = Instant::now();

    // Make the sessions: session k on node k % 3.
    let before: Vec<u64> = nodes.iter().map(pushed_sets).collect();
    let plan: Vec<(usize, Tls)> = (0..2 * SESSIONS_PER_VERSION)
        .map(|k| {
            let version = if k % 2 == 0 { Tls::V12 } else { Tls::V13 };
            (k % 3, version)
        })
        .collect();
    let configs = run_bounded(CONCURRENCY, plan.clone(), {
        let h = Arc::clone(&h);
        let nodes = Arc::clone(&nodes);
        move |(origin, version)| {
            let h = Arc::clone(&h);
            let nodes = Arc::clone(&nodes);
            async move {
                let config = h.client(version);
                let resumed = resumes(&config, nodes[origin].addr()).await;
                assert!(!resumed, "a new client resumed");
                config
            }
        }
    })
    .await;

    // Each node should receive the TLS 1.2 sessions of the two others
    // (TLS 1.3 tickets stay with their issuer, pulled when offered).
    for (i, node) in nodes.iter().enumerate() {
        let expected: u64 = plan
            .iter()
            .filter(|(origin, v)| *origin != i && *v == Tls::V12)
            .count() as u64;
        // Bounded; what did not arrive shows as a failed resumption.
        await_sets_or_quiet(node, &proxies, before[i], expected).await;
    }

    // Resume every session on both other nodes (TLS 1.3: the first ticket
    // on the next node, the second on the one after).
    let checks: Vec<(usize, usize, Arc<ClientConfig>)> = plan
        .iter()
        .zip(configs)
        .flat_map(|(&(origin, _), config)| {
            [1, 2].map(|step| ((origin + step) % 3, origin, Arc::clone(&config)))
        })
        .collect();
    let attempts = checks.len();
    let outcomes = run_bounded(CONCURRENCY, checks, {
        let nodes = Arc::clone(&nodes);
        move |(target, _origin, config)| {
            let nodes = Arc::clone(&nodes);
            async move { resumes(&config, nodes[target].addr()).await }
        }
    })
    .await;
    let resumed = outcomes.iter().filter(|r| **r).count();

    let counts: Vec<_> = proxies.iter().map(UdpProxy::counts).collect();
    let figures: Vec<Value> = nodes.iter().map(sync).collect();
    eprintln!(
        "lossy link: {resumed}/{attempts} cross-node resumptions in {:?}; relays {counts:?}",
        started.elapsed()
    );
    // The relays really were lossy and disorderly.
    for c in &counts {
        assert!(c.dropped > 0 && c.duplicated > 0, "{counts:?}");
        assert_eq!(c.overflowed, 0, "{counts:?}");
    }
    assert!(
        resumed * 100 >= attempts * 99,
        "only {resumed} of {attempts} cross-node resumptions; relays {counts:?}; sync {figures:#?}"
    );
    // Duplicates were recognised as such, not applied twice.
    assert!(
        figures
            .iter()
            .map(|f| counter(f, "duplicate_records"))
            .sum::<u64>()
            > 0,
        "{figures:#?}"
    );
}

/// A node killed and restarted (same addresses) asks its peers for their
/// live sessions and holds at least 95% of them again, including those
/// made while it was down; they resume on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_gets_its_peers_sessions_back() {
    let h = Harness::new().await;
    let (mut nodes, addrs) = mesh(&h, 3);

    // Sessions on every node, replicated everywhere.
    let mut ledger = Ledger::new(&[&nodes[0], &nodes[1], &nodes[2]]);
    let mut before_restart = Vec::new();
    for k in 0..60 {
        let version = if k % 4 == 3 { Tls::V13 } else { Tls::V12 };
        let config = h.client(version);
        assert!(!resumes(&config, nodes[k % 3].addr()).await);
        ledger.made(k % 3, Handshake::Full(version));
        before_restart.push((version, config));
    }
    let settled = ledger.settle(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    assert!(settled, "the nodes never applied each other's sessions");

    // C goes away; A and B carry on making sessions.
    let c_args = h.args(addrs[2], &[addrs[0], addrs[1]], &h.key);
    drop(nodes.pop());
    let mut ledger = Ledger::new(&[&nodes[0], &nodes[1]]);
    let mut while_down = Vec::new();
    for k in 0..30 {
        let config = h.client(Tls::V12);
        assert!(!resumes(&config, nodes[k % 2].addr()).await);
        ledger.made(k % 2, Handshake::Full(Tls::V12));
        while_down.push((Tls::V12, config));
    }
    let settled = ledger.settle(&[&nodes[0], &nodes[1]]).await;
    assert!(settled, "A and B never applied each other's sessions");
    // What a bootstrap hands over: the TLS 1.2 sessions. (Tickets stay with
    // their issuers, each of which holds its own besides.)
    let peers_items = before_restart
        .iter()
        .chain(&while_down)
        .filter(|(version, _)| *version == Tls::V12)
        .count() as u64;

    // The same address as before: a restarted node keeps its
    // configuration, and its peers know it by it. (Released a moment ago
    // by C's process; should anything else have taken it meanwhile, C
    // fails to start, saying so.)
    let restart = Instant::now();
    let c = start_node(&c_args);
    let ready = restart.elapsed();
    let back = wait_until(SETTLE, || c.cache_items() * 100 >= peers_items * 95).await;
    let took = restart.elapsed();
    let figures = sync(&c);
    eprintln!(
        "restart: ready in {ready:?}, {} of {peers_items} items after {took:?}",
        c.cache_items()
    );
    assert!(
        back,
        "restarted C holds {} items of its peers' {peers_items}: {figures:#}",
        c.cache_items()
    );
    assert!(
        counter(&figures, "bootstrap_entries_received") > 0,
        "{figures:#}"
    );
    // The answering side counts once its whole answer is out, which may
    // be a little after the entries arrived.
    let sent = || -> u64 {
        nodes
            .iter()
            .map(|node| counter(&sync(node), "bootstrap_entries_sent"))
            .sum()
    };
    let counted = wait_until(SETTLE, || sent() >= peers_items * 95 / 100).await;
    assert!(counted, "{} bootstrap entries sent", sent());

    // Let the rest of the answers land (bounded) before checking sessions
    // one by one: 95% was the bar for a fresh start, not for these.
    wait_until(SETTLE, || c.cache_items() >= peers_items).await;

    // The sessions resume on C: those made before and while it was down.
    // Nothing is in flight now: what C makes from here on is counted.
    let all = [&nodes[0], &nodes[1], &c];
    let mut ledger = Ledger::new(&all);
    let mut resumed = 0;
    let mut tried = 0;
    for (version, config) in before_restart.iter().step_by(3).chain(&while_down) {
        tried += 1;
        let this = resumes(config, c.addr()).await;
        ledger.made(2, Handshake::of(*version, this));
        resumed += usize::from(this);
    }
    assert!(
        resumed * 100 >= tried * 95,
        "{resumed} of {tried} sessions resumed on the restarted node"
    );

    // And C pushes again: a session made on it resumes on A and B.
    let config = h.client(Tls::V12);
    assert!(!resumes(&config, c.addr()).await);
    ledger.made(2, Handshake::Full(Tls::V12));
    ledger.settle(&all).await;
    assert!(resumes(&config, nodes[0].addr()).await);
    assert!(resumes(&config, nodes[1].addr()).await);
}

/// Kinds of junk fired at a node, and the counter each must land in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Junk {
    /// Not a cachet datagram at all.
    Magic,
    /// Shorter than header and tag.
    Truncated,
    /// Another wire version.
    Version,
    /// Longer than 1400 bytes.
    Oversize,
    /// A key id the node does not hold.
    UnknownKey,
    /// Right header, made-up body and tag: forged without the key.
    Forged,
    /// A real datagram with its sequence number changed: the tag no longer
    /// matches.
    Tampered,
    /// A real datagram sent again, verbatim.
    Replayed,
}

const JUNK_KINDS: [Junk; 8] = [
    Junk::Magic,
    Junk::Truncated,
    Junk::Version,
    Junk::Oversize,
    Junk::UnknownKey,
    Junk::Forged,
    Junk::Tampered,
    Junk::Replayed,
];

/// The header of a datagram: magic, version, key id, sender, sequence.
fn header(version: u8, key_id: u8, sender: u64, sequence: u64) -> Vec<u8> {
    let mut packet = Packet::new_unchecked(vec![0; wire::HEADER_LEN]);
    packet.fill_header(key_id, sender, sequence);
    packet.set_version(version);
    packet.into_inner()
}

/// Pads `datagram` with random bytes up to `len`.
fn padded(mut datagram: Vec<u8>, len: usize, rng: &mut XorShift) -> Vec<u8> {
    let start = datagram.len();
    datagram.resize(len.max(start), 0);
    rng.fill(&mut datagram[start..]);
    datagram
}

fn make_junk(kind: Junk, i: u64, captured: &[Vec<u8>], rng: &mut XorShift) -> Vec<u8> {
    let key_id = Packet::new_unchecked(&captured[0]).key_id();
    let any_len = |rng: &mut XorShift, max: u64| {
        wire::MIN_LEN + rng.below(max - wire::MIN_LEN as u64) as usize
    };
    // A header as a sender writes it (a random sender, a fresh sequence)
    // but for `version` and `key`, then random bytes up to `len`.
    let with_header = |rng: &mut XorShift, version: u8, key: u8, len: usize| {
        let header = header(version, key, rng.next_u64(), 1 + i);
        padded(header, len, rng)
    };
    match kind {
        Junk::Magic => {
            let len = any_len(rng, 200);
            let mut d = padded(Vec::new(), len, rng);
            if d.starts_with(&wire::MAGIC) {
                d[0] = b'X';
            }
            d
        }
        Junk::Truncated => {
            let len = 1 + rng.below(wire::MIN_LEN as u64 - 1) as usize;
            let mut d = header(wire::VERSION, key_id, rng.next_u64(), 1 + i);
            d.truncate(len);
            padded(d, len, rng)
        }
        Junk::Version => {
            let version = [0u8, wire::VERSION + 1, wire::VERSION + 2, 0xff][rng.below(4) as usize];
            let len = any_len(rng, 200);
            with_header(rng, version, key_id, len)
        }
        Junk::Oversize => {
            let len = wire::DEFAULT_DATAGRAM_LEN + 1 + rng.below(600) as usize;
            with_header(rng, wire::VERSION, key_id, len)
        }
        Junk::UnknownKey => {
            let other = key_id.wrapping_add(1 + rng.below(255) as u8);
            let len = any_len(rng, 300);
            with_header(rng, wire::VERSION, other, len)
        }
        Junk::Forged => {
            let len = any_len(rng, 300);
            with_header(rng, wire::VERSION, key_id, len)
        }
        Junk::Tampered => {
            let mut packet = Packet::new_unchecked(captured[i as usize % captured.len()].clone());
            packet.set_sequence(packet.sequence() + 1_000_000 + i);
            packet.into_inner()
        }
        Junk::Replayed => captured[i as usize % captured.len()].clone(),
    }
}

/// 10000 junk, forged, truncated, oversized, tampered and replayed
/// datagrams fired at node B: every one is rejected and counted under its
/// reason, nothing of them lands in the cache, and handshakes on B go on
/// succeeding (and resuming) meanwhile, as does replication from A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_datagrams_are_rejected_and_counted_by_reason() {
    const TOTAL: usize = 10_000;
    const BATCH: usize = 40;

    let h = Harness::new().await;
    // B first, so that everything A sends through the capturing relay
    // reaches a listening B. B lists no peer: what it hears from A comes
    // through the relay only, once. (Were A listed, B's hello would teach
    // A B's own address, A would push there directly too, and the second
    // copy of each datagram would be a replay B rejects, beside the junk.)
    let b = h.start("127.0.0.1:0".parse().unwrap(), &[]);
    let b_addr = sync_addr(&b);
    let relay = UdpProxy::start_capturing(b_addr, Faults::none(), Capture::sent(256)).unwrap();
    let a = h.start("127.0.0.1:0".parse().unwrap(), &[relay.addr()]);

    // Real traffic from A to B, captured on the way, all of it applied
    // before the junk starts (a set arriving later would count as one B
    // applied from the junk).
    let mut ledger = Ledger::new(&[&a, &b]);
    for k in 0..20 {
        let version = if k % 2 == 0 { Tls::V12 } else { Tls::V13 };
        let config = h.client(version);
        assert!(!resumes(&config, a.addr()).await);
        ledger.made(0, Handshake::Full(version));
        assert!(ledger.settle_one(1, &b).await, "{:#}", sync(&b));
    }
    // A batch's repeat may still come: B counts it as duplicate records,
    // which nothing below looks at.
    let captured = relay.captured();
    assert!(captured.len() >= 20, "captured {}", captured.len());
    assert!(captured.iter().all(|d| d.starts_with(&wire::MAGIC)));

    let base = sync(&b);

    // Handshakes on B while the junk flies.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handshakes = tokio::spawn({
        let done = Arc::clone(&done);
        let b_addr = b.addr();
        let config12 = h.client(Tls::V12);
        let config13 = h.client(Tls::V13);
        async move {
            let (mut count, mut resumed) = (0u32, 0u32);
            while !done.load(std::sync::atomic::Ordering::Relaxed) || count < 10 {
                for config in [&config12, &config13] {
                    resumed += u32::from(resumes(config, b_addr).await);
                    count += 1;
                }
            }
            (count, resumed)
        }
    });

    let fire = tokio::task::spawn_blocking({
        let captured = captured.clone();
        let target = b_addr;
        let stats_b = b.stats.expect("stats");
        move || fire_junk(TOTAL, BATCH, &captured, target, stats_b)
    });
    let sent = fire.await.expect("firing junk");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (count, resumed) = handshakes.await.expect("handshakes during junk");

    let expected = |kinds: &[Junk]| -> u64 {
        sent.iter()
            .filter(|(k, _)| kinds.contains(k))
            .map(|(_, c)| *c)
            .sum()
    };
    let reasons: [(&str, &[Junk]); 6] = [
        ("rejected_magic", &[Junk::Magic]),
        ("rejected_truncated", &[Junk::Truncated]),
        ("rejected_version", &[Junk::Version]),
        ("rejected_oversize", &[Junk::Oversize]),
        ("rejected_unknown_key", &[Junk::UnknownKey]),
        ("rejected_authentication", &[Junk::Forged, Junk::Tampered]),
    ];
    let all_counted = wait_until(SETTLE, || {
        rejections(&sync(&b)) >= rejections(&base) + TOTAL as u64
    })
    .await;
    let after = sync(&b);
    let delta = |field: &str| counter(&after, field) - counter(&base, field);
    assert!(
        all_counted,
        "only {} of {TOTAL} rejections counted: {after:#}",
        rejections(&after) - rejections(&base)
    );
    for (field, kinds) in reasons {
        assert_eq!(delta(field), expected(kinds), "{field}: {after:#}");
    }
    assert_eq!(
        delta("rejected_replay") + delta("rejected_stale"),
        expected(&[Junk::Replayed]),
        "{after:#}"
    );
    assert_eq!(delta("rejected_malformed"), 0, "{after:#}");
    assert_eq!(delta("rejected_own"), 0, "{after:#}");
    assert_eq!(
        rejections(&after) - rejections(&base),
        TOTAL as u64,
        "{after:#}"
    );
    // Nothing was accepted from the junk: no set, no delete. A made no
    // sessions meanwhile, and B asks no one for a bootstrap; sets from a
    // bootstrap answer would be counted apart anyway.
    assert_eq!(delta("applied_deletes"), 0, "{after:#}");
    assert_eq!(
        delta("applied_sets"),
        delta("bootstrap_entries_received"),
        "{after:#}"
    );

    assert!(count >= 10, "{count} handshakes during the junk");
    // Every connection but the first of each client resumed.
    assert_eq!(resumed + 2, count, "{resumed} of {count} resumed");

    // Replication from A still works.
    let config = h.client(Tls::V12);
    assert!(!resumes(&config, a.addr()).await);
    ledger.made(0, Handshake::Full(Tls::V12));
    ledger.settle_one(1, &b).await;
    assert!(
        resumes(&config, b.addr()).await,
        "A's session on B after the junk"
    );
}

/// Sends `total` junk datagrams at `target` in batches, waiting after each
/// batch until the node's rejection counters caught up (so that no socket
/// buffer overflows and every datagram is really processed). Returns how
/// many of each kind went out.
fn fire_junk(
    total: usize,
    batch: usize,
    captured: &[Vec<u8>],
    target: SocketAddr,
    stats: SocketAddr,
) -> Vec<(Junk, u64)> {
    let read_rejections = || -> u64 {
        let mut stream = std::net::TcpStream::connect(stats).expect("stats");
        stream.set_read_timeout(Some(SETTLE)).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stream, &mut text).expect("stats");
        let doc: Value = serde_json::from_str(&text).expect("stats JSON");
        rejections(&doc["sync"])
    };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = XorShift::new(0x00ba_d0da);
    let mut sent: Vec<(Junk, u64)> = JUNK_KINDS.iter().map(|&k| (k, 0)).collect();
    let base = read_rejections();
    let mut fired = 0usize;
    while fired < total {
        let this = batch.min(total - fired);
        for _ in 0..this {
            let kind_index = fired % JUNK_KINDS.len();
            let kind = JUNK_KINDS[kind_index];
            let datagram = make_junk(kind, fired as u64, captured, &mut rng);
            socket.send_to(&datagram, target).expect("sending junk");
            sent[kind_index].1 += 1;
            fired += 1;
        }
        let caught_up =
            cachet_tests::wait_until_blocking(SETTLE, || read_rejections() >= base + fired as u64);
        assert!(caught_up, "the node did not count {fired} junk datagrams");
    }
    sent
}

/// A node holding another key hears the cluster and is heard by it, and
/// gains nothing: neither side applies the other's datagrams (they fail
/// authentication and are counted), and sessions do not cross.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_can_neither_inject_nor_read() {
    let h = Harness::new().await;
    let other_key = write_key(h.pki.dir(), "other-sync.key", &key_secret(2));
    let (a, d) = on_free_udp_ports(2, |addrs| {
        let a = h.try_start(addrs[0], &[addrs[1]])?;
        let d = try_node(&h.args(addrs[1], &[addrs[0]], &other_key))?;
        Ok((a, d))
    });

    let mut on_a = Vec::new();
    let mut on_d = Vec::new();
    for k in 0..6 {
        let version = if k % 2 == 0 { Tls::V12 } else { Tls::V13 };
        let config = h.client(version);
        assert!(!resumes(&config, a.addr()).await);
        on_a.push(config);
        let config = h.client(version);
        assert!(!resumes(&config, d.addr()).await);
        on_d.push(config);
    }
    let refused = |node: &Router| {
        let s = sync(node);
        counter(&s, "rejected_authentication") + counter(&s, "rejected_unknown_key")
    };
    // Datagrams `from` sent `to` so far (sessions, repeats, hellos).
    let sent = |from: &Router, to: &Router| -> u64 {
        peer(from, sync_addr(to)).map_or(0, |peer| counter(&peer, "sent_datagrams"))
    };
    // Both sides received the other's datagrams (hello, bootstrap request,
    // sessions, their repeats) and refused them. Loopback UDP may still
    // drop a datagram when a busy machine leaves a socket's buffer full, so
    // "every one" is checked as: refused in numbers, and not one accepted
    // (a node counts only the datagrams it accepts as received).
    let refusing = wait_until(SETTLE, || {
        sent(&d, &a) >= 6 && sent(&a, &d) >= 6 && refused(&a) >= 6 && refused(&d) >= 6
    })
    .await;
    assert!(refusing, "A: {:#}\nD: {:#}", sync(&a), sync(&d));
    for (node, name) in [(&a, "A"), (&d, "D")] {
        let s = sync(node);
        assert_eq!(counter(&s, "received_datagrams"), 0, "{name}: {s:#}");
        assert_eq!(counter(&s, "applied_sets"), 0, "{name}: {s:#}");
        assert_eq!(counter(&s, "applied_deletes"), 0, "{name}: {s:#}");
        assert_eq!(
            counter(&s, "bootstrap_entries_received"),
            0,
            "{name}: {s:#}"
        );
    }
    for config in &on_a {
        assert!(!resumes(config, d.addr()).await, "A's session resumed on D");
    }
    for config in &on_d {
        assert!(!resumes(config, a.addr()).await, "D's session resumed on A");
    }
}

/// Two nodes that list each other; a third that lists them, started
/// later, is listed by neither: it receives their existing sessions
/// (bootstrap), and after its hello they push to it, without restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_later_sends_and_receives_without_restarts() {
    let h = Harness::new().await;
    let (nodes, addrs) = mesh(&h, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut existing = Vec::new();
    for k in 0..20 {
        let config = h.client(Tls::V12);
        assert!(!resumes(&config, nodes[k % 2].addr()).await);
        existing.push(config);
    }
    let agreed = wait_until(SETTLE, || a.cache_items() == 20 && b.cache_items() == 20).await;
    assert!(
        agreed,
        "A {} and B {} items",
        a.cache_items(),
        b.cache_items()
    );

    // D joins on an ephemeral port nobody was told about.
    let d = h.start("127.0.0.1:0".parse().unwrap(), &addrs);
    let d_addr = sync_addr(&d);
    assert!(
        wait_until(SETTLE, || d.cache_items() >= 20).await,
        "D holds {} of 20 existing sessions: {:#}",
        d.cache_items(),
        sync(&d)
    );
    for config in &existing {
        assert!(resumes(config, d.addr()).await, "an existing session on D");
    }
    // A and B now know D.
    for (node, name) in [(a, "A"), (b, "B")] {
        let knows = wait_until(SETTLE, || peer(node, d_addr).is_some()).await;
        assert!(knows, "{name} never listed D ({d_addr}): {:#}", sync(node));
    }

    // New sessions flow both ways: made on A or B, they resume on D...
    let all = [a, b, &d];
    let mut ledger = Ledger::new(&all);
    for (index, origin) in [a, b].into_iter().enumerate() {
        for version in [Tls::V12, Tls::V13] {
            let config = h.client(version);
            assert!(!resumes(&config, origin.addr()).await);
            ledger.made(index, Handshake::Full(version));
            ledger.settle(&all).await;
            assert!(
                resumes(&config, d.addr()).await,
                "{version:?} from a peer on D"
            );
            ledger.made(2, Handshake::Resumed(version));
        }
    }
    // ...and made on D, they resume on A and B.
    for version in [Tls::V12, Tls::V13] {
        let config = h.client(version);
        assert!(!resumes(&config, d.addr()).await);
        ledger.made(2, Handshake::Full(version));
        ledger.settle(&all).await;
        assert!(resumes(&config, a.addr()).await, "{version:?} from D on A");
        ledger.made(0, Handshake::Resumed(version));
        assert!(resumes(&config, b.addr()).await, "{version:?} from D on B");
        ledger.made(1, Handshake::Resumed(version));
    }
}

/// `cachet keygen` prints a fresh key in the format `cache-udp-key` reads.
#[test]
fn keygen_prints_a_fresh_key() {
    let one = run_to_exit(&["keygen"]);
    let two = run_to_exit(&["keygen"]);
    for output in [&one, &two] {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout.clone()).unwrap();
        let key = text.strip_suffix('\n').expect("a newline at the end");
        assert_eq!(key.len(), 64, "{text:?}");
        assert!(
            key.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{text:?}"
        );
    }
    assert_ne!(one.stdout, two.stdout);
}

/// Sync without a key refuses to start and says how to make one.
#[test]
fn sync_without_a_key_refuses_to_start() {
    let output = run_to_exit(&[
        "--https",
        "127.0.0.1:0",
        "--cache",
        "10",
        "--ssl-sessions-use-cache",
        "--cache-udp-server",
        "127.0.0.1:0",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cache-udp-key"), "{stderr}");
    assert!(stderr.contains("keygen"), "{stderr}");
}

/// What lets a client that reconnects at once, through a balancer, to
/// another node resume there: the worker that made the session or the
/// tickets puts them on the wire to every peer before it answers the
/// client (it lets its sync sender run first). A listening peer holding
/// the cluster key finds them already waiting the moment the client has
/// its response, connection after connection, TLS 1.2 and 1.3, whichever
/// of the two workers served it. (Whether the other node's master then
/// applies them before the client's next handshake there is a race for a
/// CPU between two processes; `cargo xtask bench` measures how often it
/// is won, see docs/BENCHMARKS.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_on_the_wire_before_the_client_has_its_response() {
    let h = Harness::new().await;
    let mut tap = SyncTap::new(&key_secret(1));
    let mut args = h.args("127.0.0.1:0".parse().unwrap(), &[tap.addr()], &h.key);
    // Workers, whose single-threaded runtimes are where the handshake and
    // the sync sender take turns.
    args.extend(["--master", "--http-processes", "2"].map(String::from));
    let node = start_node(&args);
    let mut made = 0;
    for k in 0..20 {
        let version = if k % 2 == 0 { Tls::V12 } else { Tls::V13 };
        let config = h.client(version);
        assert!(!resumes(&config, node.addr()).await);
        made += Handshake::Full(version).sets();
        // Read at once, without waiting: it is there or the test fails.
        let arrived = tap.sets_arrived();
        assert!(
            arrived as u64 >= made,
            "connection {k} ({version:?}): {arrived} of {made} sets were on the wire \
             when the client had its response"
        );
    }
}
