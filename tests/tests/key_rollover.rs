//! Rolling the cluster key over without downtime: three real routers (a
//! master and two workers each), each with a key file of its own, go
//! through the three steps of docs/CLUSTER.md one router at a time with
//! SIGHUP, and at every intermediate state (some routers after a step,
//! some before) sessions cross between every pair of routers:
//!
//! - a TLS 1.2 session made on one router is pushed to the two others
//!   (their `sync` counters show it arrived, and no pull was needed) and
//!   resumes there;
//! - a TLS 1.3 ticket made on one router is pulled by another (the pull
//!   request sealed by the asker, the answer by the issuer) and resumes
//!   there;
//! - no router ever rejects a datagram: hellos go every second, so a
//!   router sealing under a key another does not hold would show.
//!
//! Each reload is waited for by its effect in stats (the key ring every
//! process of the router holds), never by sleeping. Then a malformed key
//! file on SIGHUP keeps the running keys and says why, naming the file and
//! the line; a router sealing under a key nobody else holds has its
//! datagrams rejected and counted; and no key's bytes appear in any stats
//! output.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;

use cachet_core::wire::ClusterKey;
use cachet_tests::client::Tls;
use cachet_tests::cluster::{
    key_hex, key_secret, mesh_of, pushed_sets, resumes, sync, write_keys, Harness, SETTLE,
};
use cachet_tests::open_files::{assert_secrets_absent, assert_secrets_not_shown};
use cachet_tests::{counter, rejected_but_races, wait_until, Router};
use serde_json::{json, Value};

/// Processes with a sync node in each router: the master and the workers.
const WORKERS: u64 = 2;
const PROCESSES: u64 = WORKERS + 1;
/// Cross-router resumptions tried at least while a router takes a step.
const MIN_LOAD: u64 = 20;

fn fingerprint(secret: &[u8; 32]) -> String {
    ClusterKey::new(secret).fingerprint().to_string()
}

/// The routers under test, each with its own key file.
struct Cluster {
    // Before `h`: the routers are gone before the harness lets the next
    // cluster test start.
    nodes: Vec<Router>,
    files: Vec<PathBuf>,
    h: Harness,
}

impl Cluster {
    fn start(h: Harness, keys: &[[u8; 32]]) -> Cluster {
        let files: Vec<PathBuf> = (0..3)
            .map(|i| write_keys(h.pki.dir(), &format!("node{i}.key"), keys))
            .collect();
        let (nodes, _) = mesh_of(3, |i, addr: SocketAddr, peers: &[SocketAddr]| {
            let mut args = h.args(addr, peers, &files[i]);
            args.extend(
                [
                    "--master",
                    "--http-processes",
                    &WORKERS.to_string(),
                    "--stats-http",
                    "127.0.0.1:0",
                ]
                .map(String::from),
            );
            args
        });
        Cluster { h, nodes, files }
    }

    /// Writes `keys` into router `i`'s file, sends it SIGHUP, and waits
    /// until every process of it holds them.
    async fn roll(&self, i: usize, keys: &[[u8; 32]]) {
        write_keys(self.h.pki.dir(), &format!("node{i}.key"), keys);
        self.nodes[i].signal("HUP");
        let expected: Vec<String> = keys.iter().map(fingerprint).collect();
        let node = &self.nodes[i];
        let held = wait_until(SETTLE, || holds(node, &expected)).await;
        assert!(
            held,
            "router {i} did not take keys {expected:?}: {:#}\n{}",
            sync(node)["keyrings"],
            node.log()
        );
    }

    /// Runs `work` while clients keep making a session on one router and
    /// resuming it at once on the next (TLS 1.2 and 1.3 in turn: by push or
    /// pull, whichever is first), at least [`MIN_LOAD`] times and until
    /// `work` is done; returns how many of how many resumed.
    async fn under_load(&self, work: impl std::future::Future<Output = ()>) -> (u64, u64) {
        let done = Cell::new(false);
        let work = async {
            work.await;
            done.set(true);
        };
        let load = async {
            let (mut tried, mut resumed) = (0u64, 0u64);
            while !done.get() || tried < MIN_LOAD {
                let from = (tried % 3) as usize;
                let tls = if tried % 2 == 0 { Tls::V12 } else { Tls::V13 };
                let client = self.h.client(tls);
                assert!(!resumes(&client, self.nodes[from].addr()).await);
                tried += 1;
                resumed += u64::from(resumes(&client, self.nodes[(from + 1) % 3].addr()).await);
            }
            (tried, resumed)
        };
        let ((), figures) = tokio::join!(work, load);
        figures
    }

    /// Sessions cross between every pair of routers, by push and by pull,
    /// and nobody rejected anything.
    async fn check_every_pair(&self, state: &str) {
        for from in 0..3 {
            self.push_crosses(from, state).await;
            for to in (0..3).filter(|&to| to != from) {
                let tls13 = self.h.client(Tls::V13);
                assert!(
                    !resumes(&tls13, self.nodes[from].addr()).await,
                    "{state}: a fresh TLS 1.3 client resumed"
                );
                let found = pulls_found(&self.nodes[to]);
                assert!(
                    resumes(&tls13, self.nodes[to].addr()).await,
                    "{state}: a TLS 1.3 ticket of router {from} did not resume on {to}: {:#}",
                    sync(&self.nodes[to])
                );
                assert_eq!(
                    pulls_found(&self.nodes[to]),
                    found + 1,
                    "{state}: the ticket did not come by pull"
                );
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let s = sync(node);
            assert_eq!(
                rejected_but_races(&s),
                0,
                "{state}: router {i} rejected: {s:#}"
            );
        }
    }

    /// A TLS 1.2 session made on `from` reaches both others by push and
    /// resumes there without a pull.
    async fn push_crosses(&self, from: usize, state: &str) {
        let others: Vec<usize> = (0..3).filter(|&i| i != from).collect();
        let before: Vec<u64> = others
            .iter()
            .map(|&i| pushed_sets(&self.nodes[i]))
            .collect();
        let tls12 = self.h.client(Tls::V12);
        assert!(!resumes(&tls12, self.nodes[from].addr()).await);
        for (&to, before) in others.iter().zip(before) {
            let node = &self.nodes[to];
            let pushed = wait_until(SETTLE, || pushed_sets(node) > before).await;
            assert!(
                pushed,
                "{state}: the push from router {from} never reached {to}: {:#}",
                sync(node)
            );
            let asked = counter(&sync(node)["pulls"], "asked");
            assert!(
                resumes(&tls12, node.addr()).await,
                "{state}: a TLS 1.2 session of router {from} did not resume on {to}"
            );
            assert_eq!(
                counter(&sync(node)["pulls"], "asked"),
                asked,
                "{state}: router {to} pulled a session that was pushed"
            );
        }
    }
}

/// Whether every process of `node` holds exactly `keys`, in order.
fn holds(node: &Router, keys: &[String]) -> bool {
    sync(node)["keyrings"] == json!([{ "keys": keys, "processes": PROCESSES }])
}

fn pulls_found(node: &Router) -> u64 {
    counter(&sync(node)["pulls"], "found")
}

/// What `node` counted for the key `fp`.
fn key_use(node: &Router, fp: &str) -> Value {
    sync(node)["keys"]
        .as_array()
        .expect("keys is a list")
        .iter()
        .find(|key| key["fingerprint"] == fp)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routers_roll_the_key_over_one_at_a_time_without_losing_a_session() {
    let (old, new) = (key_secret(11), key_secret(12));
    let (old_fp, new_fp) = (fingerprint(&old), fingerprint(&new));
    let cluster = Cluster::start(Harness::new().await, &[old]);
    for (i, node) in cluster.nodes.iter().enumerate() {
        let old_only = [old_fp.clone()];
        assert!(
            wait_until(SETTLE, || holds(node, &old_only)).await,
            "router {i} at start: {:#}",
            sync(node)
        );
        assert_eq!(sync(node)["sealing_key"], old_fp);
    }
    cluster.check_every_pair("before the rollover").await;

    let steps: [(&str, &[[u8; 32]]); 3] = [
        ("step 1 (new key second)", &[old, new]),
        ("step 2 (new key first)", &[new, old]),
        ("step 3 (old key dropped)", &[new]),
    ];
    let (mut tried, mut resumed) = (0, 0);
    for (name, keys) in steps {
        for i in 0..3 {
            // Clients keep crossing routers while router i takes the step.
            let (t, r) = cluster.under_load(cluster.roll(i, keys)).await;
            let state = format!("{name}, routers 0..={i} after it");
            assert_eq!(r, t, "{state}: {r} of {t} resumed under load");
            (tried, resumed) = (tried + t, resumed + r);
            cluster.check_every_pair(&state).await;
        }
    }
    eprintln!("under load during the rollover: {resumed} of {tried} cross-router resumptions");

    // Every router now seals under the new key only, and counted what each
    // key sealed and opened along the way.
    for (i, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(sync(node)["sealing_key"], new_fp, "router {i}");
        for fp in [&old_fp, &new_fp] {
            let used = key_use(node, fp);
            assert!(
                counter(&used, "sealed") > 0 && counter(&used, "opened") > 0,
                "router {i}, key {fp}: {used:#}"
            );
        }
        let metrics = node.metrics();
        for op in ["sealed", "opened"] {
            let sample = format!("cachet_sync_key_datagrams_total{{key=\"{new_fp}\",op=\"{op}\"}}");
            assert!(
                metrics.contains(&sample),
                "router {i}: no {sample}:\n{metrics}"
            );
        }
        let sealing =
            format!("cachet_sync_key_processes{{key=\"{new_fp}\",role=\"sealing\"}} {PROCESSES}");
        assert!(
            metrics.contains(&sealing),
            "router {i}: no {sealing}:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_file_keeps_the_running_keys_and_a_stranger_key_is_rejected() {
    let (key, stranger) = (key_secret(21), key_secret(22));
    let held = [fingerprint(&key)];
    let cluster = Cluster::start(Harness::new().await, &[key]);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    cluster.check_every_pair("at start").await;

    // Line 3 is one character short: SIGHUP reloads nothing and says why,
    // in the master and in each worker, naming the file and the line.
    let text = format!("{}\n\n{}\n", key_hex(&key), &key_hex(&stranger)[1..]);
    std::fs::write(&cluster.files[0], text).unwrap();
    a.signal("HUP");
    let file = cluster.files[0].display().to_string();
    let named = |log: &str| {
        log.lines()
            .filter(|l| l.contains(&file) && l.contains("line 3: 63 characters"))
            .count()
    };
    let told = wait_until(SETTLE, || named(&a.log()) as u64 >= PROCESSES).await;
    assert!(
        told,
        "the bad line was not named by every process:\n{}",
        a.log()
    );
    a.wait_for_lines("cachet: reload failed", WORKERS as usize)
        .await;
    assert!(holds(a, &held), "{:#}", sync(a)["keyrings"]);
    cluster.check_every_pair("after a bad key file").await;

    // An unreadable file: the same.
    std::fs::remove_file(&cluster.files[0]).unwrap();
    a.signal("HUP");
    a.wait_for_lines("cachet: reload failed", 2 * WORKERS as usize)
        .await;
    assert!(holds(a, &held), "{:#}", sync(a)["keyrings"]);
    cluster.check_every_pair("after a missing key file").await;

    // Router 0 seals under a key nobody else holds (a rollover done
    // wrong: step 1 skipped): its datagrams are rejected, counted, and its
    // sessions no longer reach the others by push.
    cluster.roll(0, &[stranger]).await;
    let rejected = |node: &Router| {
        let s = sync(node);
        counter(&s, "rejected_unknown_key") + counter(&s, "rejected_authentication")
    };
    let before = pushed_sets(b);
    let tls12 = cluster.h.client(Tls::V12);
    assert!(!resumes(&tls12, a.addr()).await);
    assert!(
        wait_until(SETTLE, || rejected(b) > 0).await,
        "router 1 did not count router 0's datagrams as rejected: {:#}",
        sync(b)
    );
    assert_eq!(pushed_sets(b), before, "{:#}", sync(b));
    assert_eq!(rejected_but_races(&sync(b)), rejected(b), "{:#}", sync(b));

    // No key's bytes, raw or hex, in any file a router's process holds
    // open (the shared region's memfd included: keys live only in each
    // process's own memory), nor in what it logged.
    for node in &cluster.nodes {
        assert_secrets_absent(node.pid(), &node.log(), &[&key, &stranger]);
    }

    // Stats name keys by fingerprint only: no key's hex in either form.
    for node in &cluster.nodes {
        let outputs = [
            sync(node).to_string(),
            node.stats().to_string(),
            node.metrics(),
        ];
        assert_secrets_not_shown(&outputs, &[&key, &stranger]);
    }
}
