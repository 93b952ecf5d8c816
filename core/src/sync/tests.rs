//! Sync nodes driven in memory: two nodes for the rules, three over a
//! hostile link for the whole protocol.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::cache::{Config, Layout};
use crate::time::shorthand::at;
use crate::wire::{self, ClusterKey, DEFAULT_DATAGRAM_LEN as MTU};

const SECRET: [u8; 32] = [0x42; 32];

type TestNode = Node;

/// A node that applies changes from any authentic sender: these tests are
/// about the other rules; `verifying_node` and the tests at the end are
/// about verifying senders.
fn node(sender: u64) -> TestNode {
    Node::new(ClusterKey::new(&SECRET), sender, trusting())
}

fn trusting() -> Settings {
    Settings {
        verify_senders: false,
        ..Settings::default()
    }
}

/// Another cluster's key that the header cannot tell from ours: the tag
/// must.
fn same_id_other_key() -> ClusterKey {
    ClusterKey::colliding(ClusterKey::new(&SECRET).id(), &SECRET)
}

fn cache(capacity: u32) -> Cache<Vec<u8>> {
    let layout = Layout::new(capacity, 512).unwrap();
    let config = Config {
        capacity,
        block_size: 512,
        hash_key: [3; 16],
    };
    Cache::format(vec![0u8; layout.total_bytes()], &config).unwrap()
}

fn has(cache: &mut Cache<Vec<u8>>, now: Instant, key: &[u8]) -> bool {
    let mut out = [0u8; 512];
    cache.get(now, key, &mut out).unwrap().is_some()
}

/// The datagram `node` sends at `now` with one set of `key` (to `b"v"`),
/// alive for `lifetime`.
fn set_datagram(node: &mut TestNode, now: Instant, key: &[u8], lifetime: Duration) -> Vec<u8> {
    node.record_set(now, key, b"v", lifetime).unwrap();
    drain(node, now).remove(0)
}

/// Everything `node` wants to send now.
fn drain(node: &mut TestNode, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; MTU];
    while let Some(len) = node.poll_transmit(now, &mut buf) {
        out.push(buf[..len].to_vec());
    }
    out
}

#[test]
fn sets_and_deletes_replicate_with_relative_lifetimes() {
    let (mut a, mut b) = (node(1), node(2));
    let mut cache_b = cache(16);
    // B's clock has a different origin: lifetimes travel as time remaining.
    let (a_now, b_now) = (at(5_000), at(9_000_000));
    a.record_set(a_now, b"s1", b"secret", Duration::from_secs(300))
        .unwrap();
    let datagrams = drain(&mut a, a_now);
    assert_eq!(datagrams.len(), 1, "one batch now, its repeat later");
    let handled = b.handle(b_now, &datagrams[0], &mut cache_b).unwrap();
    assert_eq!((handled.sender, handled.sets), (1, 1));
    assert!(has(&mut cache_b, b_now + Duration::from_secs(299), b"s1"));
    assert!(!has(&mut cache_b, b_now + Duration::from_secs(300), b"s1"));

    // The repeat goes out after `repeat_after` and changes nothing.
    assert_eq!(a.poll_timeout(), Some(a_now + Duration::from_millis(20)));
    assert!(drain(&mut a, a_now + Duration::from_millis(19)).is_empty());
    let repeat = drain(&mut a, a_now + Duration::from_millis(20));
    assert_eq!(repeat.len(), 1);
    b.handle(b_now, &repeat[0], &mut cache_b).unwrap();
    assert_eq!(b.counters().duplicate_records, 1);
    assert_eq!(b.counters().applied_sets, 1);

    cache_b
        .put(b_now, b"s2", b"x", Duration::from_secs(9))
        .unwrap();
    a.record_delete(a_now, b"s2").unwrap();
    for d in drain(&mut a, a_now + Duration::from_secs(1)) {
        b.handle(b_now, &d, &mut cache_b).unwrap();
    }
    assert!(!has(&mut cache_b, b_now, b"s2"));
    assert_eq!(b.counters().applied_deletes, 1);
    assert_eq!(a.counters().sent_repeats, 1);
}

#[test]
fn every_rejection_is_counted_by_reason() {
    let (mut a, mut b) = (node(1), node(2));
    let mut c = cache(16);
    let good = set_datagram(&mut a, at(0), b"k", Duration::from_secs(1));
    b.handle(at(0), &good, &mut c).unwrap();

    assert_eq!(b.handle(at(0), &good, &mut c), Err(Reject::Replayed));
    assert_eq!(
        b.handle(at(0), &good[..10], &mut c),
        Err(Reject::Wire(wire::Error::Truncated))
    );
    assert_eq!(
        b.handle(at(0), &[0u8; MTU + 1], &mut c),
        Err(Reject::Wire(wire::Error::Oversized))
    );
    assert_eq!(
        b.handle(at(0), &[0u8; 64], &mut c),
        Err(Reject::Wire(wire::Error::BadMagic))
    );
    let mut future = good.clone();
    future[4] = 2;
    assert_eq!(
        b.handle(at(0), &future, &mut c),
        Err(Reject::Wire(wire::Error::UnsupportedVersion))
    );
    let mut forged = good.clone();
    forged[14] ^= 0x80; // a new sequence number the tag does not cover
    assert_eq!(
        b.handle(at(0), &forged, &mut c),
        Err(Reject::Wire(wire::Error::Authentication))
    );
    // The replay check comes first, so the key id test needs a fresh datagram.
    let mut rekeyed = drain(&mut a, at(1000)).remove(0);
    rekeyed[5] = rekeyed[5].wrapping_add(1);
    assert_eq!(
        b.handle(at(0), &rekeyed, &mut c),
        Err(Reject::Wire(wire::Error::UnknownKey))
    );
    assert_eq!(a.handle(at(0), &good, &mut c), Err(Reject::Own));

    // Push the window past the first datagram: it becomes stale.
    for i in 0..WINDOW {
        a.record_set(at(i), b"k", b"v", Duration::from_secs(1))
            .unwrap();
        for d in drain(&mut a, at(i + 100)) {
            b.handle(at(0), &d, &mut c).unwrap();
        }
    }
    let mut stale = good.clone();
    stale[0] = b'C'; // unchanged byte: still the same old datagram
    assert_eq!(b.handle(at(0), &stale, &mut c), Err(Reject::Stale));

    let n = b.counters();
    assert_eq!(
        (
            n.rejected.get(Reject::Replayed),
            n.rejected.get(Reject::Wire(wire::Error::Truncated)),
            n.rejected.get(Reject::Wire(wire::Error::Oversized)),
            n.rejected.get(Reject::Wire(wire::Error::BadMagic)),
            n.rejected
                .get(Reject::Wire(wire::Error::UnsupportedVersion)),
            n.rejected.get(Reject::Wire(wire::Error::Authentication)),
            n.rejected.get(Reject::Wire(wire::Error::UnknownKey)),
            n.rejected.get(Reject::Stale)
        ),
        (1, 1, 1, 1, 1, 1, 1, 1)
    );
    assert_eq!(a.counters().rejected.get(Reject::Own), 1);
    assert_eq!(n.rejected.total(), 8);
}

#[test]
fn another_cluster_can_neither_inject_nor_read() {
    let mut outsider = Node::<MTU>::new(same_id_other_key(), 7, trusting());
    let mut b = node(2);
    let mut c = cache(4);
    outsider
        .record_set(at(0), b"evil", b"payload", Duration::from_secs(60))
        .unwrap();
    for d in drain(&mut outsider, at(0)) {
        assert!(!d.windows(7).any(|w| w == b"payload"));
        assert_eq!(
            b.handle(at(0), &d, &mut c),
            Err(Reject::Wire(wire::Error::Authentication))
        );
    }
    assert_eq!(c.items(), 0);
}

#[test]
fn oversized_entries_are_skipped_and_counted() {
    let mut a = node(1);
    let big = vec![0u8; a.max_entry_len()];
    assert_eq!(
        a.record_set(at(0), b"k", &big, Duration::from_secs(1)),
        Err(QueueError::TooLarge)
    );
    assert_eq!(
        a.record_set(at(0), b"k", &big[1..], Duration::from_secs(1)),
        Ok(())
    );
    let sent = drain(&mut a, at(0));
    assert_eq!(sent.len(), 1);
    assert!(sent[0].len() <= MTU);
    assert_eq!(a.counters().skipped_oversize, 1);
}

#[test]
fn batches_split_across_datagrams_within_the_size_limit() {
    let (mut a, mut b) = (node(1), node(2));
    let mut c = cache(128);
    for i in 0..50u32 {
        a.record_set(
            at(0),
            &i.to_le_bytes(),
            &[i as u8; 120],
            Duration::from_secs(60),
        )
        .unwrap();
    }
    let mut sent = 0;
    let mut now = at(0);
    while a.poll_timeout().is_some() || sent == 0 {
        for d in drain(&mut a, now) {
            assert!(d.len() <= MTU);
            b.handle(now, &d, &mut c).unwrap();
            sent += 1;
        }
        now = now + Duration::from_millis(5);
    }
    assert_eq!(c.items(), 50);
    assert!(
        sent >= 10,
        "{sent} datagrams (first copies and repeats) for 50 entries of 124 bytes"
    );
}

#[test]
fn control_messages_reach_the_caller() {
    let (mut a, mut b) = (node(1), node(2));
    let mut c = cache(4);
    let mut buf = [0u8; MTU];
    for (kind, expect) in [
        (
            ControlKind::Hello,
            Control {
                hello: true,
                ..Control::default()
            },
        ),
        (
            ControlKind::BootstrapRequest,
            Control {
                bootstrap_request: true,
                ..Control::default()
            },
        ),
        (
            ControlKind::BootstrapEnd,
            Control {
                bootstrap_end: true,
                ..Control::default()
            },
        ),
    ] {
        let len = a.transmit_control(at(0), kind, &mut buf).unwrap();
        assert_eq!(
            b.handle(at(0), &buf[..len], &mut c).unwrap().control,
            expect
        );
    }
    // The bootstrap request carried a challenge besides.
    assert_eq!(b.counters().control_records, 4);
}

// ---- three nodes over a hostile link -----------------------------------

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct InFlight {
    deliver_at: u64,
    to: usize,
    bytes: Vec<u8>,
}

struct Outcome {
    created: usize,
    replicated: usize,
    resurrected: usize,
    taken: usize,
    counters: Vec<SyncCounters>,
}

/// Three nodes with skewed clocks. Each millisecond a node may create a
/// session (stored locally, queued for the peers) or resume one created
/// earlier elsewhere, taking it as a TLS 1.3 ticket. The link drops
/// `loss` percent of datagrams, duplicates 3% and delays each by 0 to 30 ms,
/// which reorders them.
fn run_cluster(seed: u64, loss: u64, steps: u64) -> Outcome {
    let mut rng = Rng(seed);
    let skew = [0u64, 7_777_777, 123];
    let mut nodes: Vec<TestNode> = (0..3).map(|i| node(100 + i)).collect();
    let mut caches: Vec<_> = (0..3).map(|_| cache(8192)).collect();
    let mut link: Vec<InFlight> = Vec::new();
    let mut created: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut taken: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; MTU];
    let life = Duration::from_secs(3600);

    for t in 0..steps + 200 {
        let local = |i: usize| at(t + skew[i]);
        for i in 0..3 {
            if t < steps && rng.chance(40) {
                let key = std::format!("{i}-{t}").into_bytes();
                let value = vec![rng.next() as u8; 60 + rng.below(80) as usize];
                caches[i].put(local(i), &key, &value, life).unwrap();
                nodes[i].record_set(local(i), &key, &value, life).unwrap();
                created.push((i, key));
            }
            if t < steps && rng.chance(5) && !created.is_empty() {
                let (origin, key) = created[rng.below(created.len() as u64) as usize].clone();
                let mut out = [0u8; 512];
                if origin != i && caches[i].take(local(i), &key, &mut out).unwrap().is_some() {
                    nodes[i].record_delete(local(i), &key).unwrap();
                    taken.push(key);
                }
            }
            while let Some(len) = nodes[i].poll_transmit(local(i), &mut buf) {
                for to in (0..3).filter(|&to| to != i) {
                    if rng.chance(loss) {
                        continue;
                    }
                    let copies = if rng.chance(3) { 2 } else { 1 };
                    for _ in 0..copies {
                        link.push(InFlight {
                            deliver_at: t + rng.below(31),
                            to,
                            bytes: buf[..len].to_vec(),
                        });
                    }
                }
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = link.drain(..).partition(|d| d.deliver_at <= t);
        link = later;
        for d in due {
            let _ = nodes[d.to].handle(local(d.to), &d.bytes, &mut caches[d.to]);
        }
    }

    let end = |i: usize| at(steps + 200 + skew[i]);
    let taken_set: std::collections::BTreeSet<_> = taken.iter().cloned().collect();
    let mut replicated = 0;
    let mut considered = 0;
    for (origin, key) in &created {
        if taken_set.contains(key) {
            continue;
        }
        for i in (0..3).filter(|i| i != origin) {
            considered += 1;
            if has(&mut caches[i], end(i), key) {
                replicated += 1;
            }
        }
    }
    let mut resurrected = 0;
    for key in &taken {
        for (i, cache) in caches.iter_mut().enumerate() {
            if has(cache, end(i), key) {
                resurrected += 1;
            }
        }
    }
    for c in &caches {
        c.verify().unwrap();
    }
    Outcome {
        created: considered,
        replicated,
        resurrected,
        taken: taken.len(),
        counters: nodes.iter().map(|n| *n.counters()).collect(),
    }
}

#[test]
fn three_nodes_over_a_lossy_reordering_duplicating_link() {
    for seed in [1, 2, 3] {
        let o = run_cluster(0x9E37_79B9_7F4A_7C15 ^ seed, 5, 3000);
        let ratio = o.replicated as f64 / o.created as f64;
        assert!(
            o.created > 5000,
            "seed {seed}: {} replications checked",
            o.created
        );
        assert!(ratio >= 0.99, "seed {seed}: only {:.4} replicated", ratio);
        assert!(o.taken > 100, "seed {seed}: {} takes", o.taken);
        std::eprintln!(
            "seed {seed}: replicated {}/{} ({ratio:.4}), {} takes, {} resurrected",
            o.replicated,
            o.created,
            o.taken,
            o.resurrected
        );
        // A delete is lost only if both its copies are (0.25% per receiver
        // at 5% loss); allow for that, with margin for chance.
        assert!(
            o.resurrected <= o.taken / 50 + 2,
            "seed {seed}: {} of {} taken tickets still alive",
            o.resurrected,
            o.taken
        );
        let replays: u64 = o
            .counters
            .iter()
            .map(|c| c.rejected.get(Reject::Replayed))
            .sum();
        let duplicates: u64 = o.counters.iter().map(|c| c.duplicate_records).sum();
        let rejected: u64 = o
            .counters
            .iter()
            .map(|c| c.rejected.total() - c.rejected.get(Reject::Replayed))
            .sum();
        assert!(replays > 0, "duplicated datagrams are rejected as replays");
        assert!(duplicates > 0, "repeats are recognised record by record");
        assert_eq!(
            rejected, 0,
            "nothing but replays is rejected on an honest link"
        );
    }
}

#[test]
fn without_loss_everything_replicates() {
    let o = run_cluster(77, 0, 1000);
    assert_eq!(o.replicated, o.created);
    assert_eq!(o.resurrected, 0);
}

/// Every copy of the message `node` has waiting, with its destination.
fn messages(node: &mut TestNode) -> Vec<(Destination, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; MTU];
    while let Some(message) = node.poll_message(&mut buf) {
        out.push((message.destination, buf[..message.len].to_vec()));
    }
    out
}

/// Hands `datagrams` to `node` over `cache`, then collects what it
/// answers.
fn deliver(
    node: &mut TestNode,
    now: Instant,
    datagrams: &[(Destination, Vec<u8>)],
    cache: &mut impl Store,
) -> Vec<(Destination, Vec<u8>)> {
    let mut answers = Vec::new();
    for (_, datagram) in datagrams {
        node.handle(now, datagram, cache).unwrap();
        answers.extend(messages(node));
    }
    answers
}

/// `node` pulls `key` (taking it or not) from `awaiting` peers until
/// `deadline`: the pull's id and every copy of its request.
fn pull(
    node: &mut TestNode,
    key: &[u8],
    take: bool,
    awaiting: u16,
    deadline: Instant,
) -> (PullId, Vec<(Destination, Vec<u8>)>) {
    let id = node.pull(key, take, awaiting, deadline).unwrap();
    (id, messages(node))
}

/// How each of `node`'s pulls that ended by `now` ended.
fn outcomes(node: &mut TestNode, now: Instant) -> Vec<(PullId, PullOutcome)> {
    core::iter::from_fn(|| node.poll_event(now))
        .map(|event| (event.id, event.outcome))
        .collect()
}

#[test]
fn a_pull_fetches_the_entry_from_the_peer_that_holds_it() {
    let (mut asker, mut holder, mut empty) = (node(1), node(2), node(3));
    let (mut mine, mut held, mut nothing) = (cache(16), cache(16), cache(16));
    let now = at(1_000);
    held.put(now, b"id", b"session", Duration::from_secs(60))
        .unwrap();

    let (id, request) = pull(&mut asker, b"id", false, 2, now + Duration::from_millis(50));
    assert_eq!(request.len(), 2, "two copies against loss");
    assert!(request.iter().all(|(d, _)| *d == Destination::Peers));
    assert_eq!(asker.poll_timeout(), Some(now + Duration::from_millis(50)));

    // The peer without it says so, once for both copies; so does the one
    // with it, which answers with the entry and keeps it (no take).
    let none = deliver(&mut empty, now, &request, &mut nothing);
    assert_eq!(none.len(), 2);
    assert!(none.iter().all(|(d, _)| *d == Destination::Sender(1)));
    assert_eq!(empty.counters().duplicate_records, 1);
    let found = deliver(&mut holder, now, &request, &mut held);
    assert_eq!(holder.counters().pull_requests_found, 1);
    assert!(has(&mut held, now, b"id"));

    deliver(&mut asker, now, &none, &mut mine);
    assert!(
        outcomes(&mut asker, now).is_empty(),
        "one peer still to answer"
    );
    deliver(&mut asker, now, &found, &mut mine);
    assert_eq!(outcomes(&mut asker, now), [(id, PullOutcome::Found)]);
    assert!(has(&mut mine, now, b"id"));
    // The lifetime came along: the copy expires when the original does.
    assert!(!has(&mut mine, now + Duration::from_secs(60), b"id"));
    // Each answer's second copy is recognised as such.
    assert_eq!(asker.counters().duplicate_records, 2);
    assert_eq!(asker.counters().late_pull_answers, 0);
    assert_eq!(asker.pulls_in_flight(), 0);
    assert_eq!(asker.poll_timeout(), None);
}

/// A cache whose store lends its entries to copying pulls only, as a
/// router's does its TLS 1.2 sessions.
struct CopiesOnly<'c>(&'c mut Cache<Vec<u8>>);

impl Store for CopiesOnly<'_> {
    fn with_cache<R>(&mut self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R> {
        self.0.with_cache(f)
    }

    fn lends(&mut self, _key: &[u8], take: bool) -> bool {
        !take
    }
}

#[test]
fn a_pull_for_what_the_store_does_not_lend_finds_nothing() {
    let (mut asker, mut holder) = (node(1), node(2));
    let (mut mine, mut held) = (cache(16), cache(16));
    let now = at(0);
    held.put(now, b"id", b"session", Duration::from_secs(60))
        .unwrap();
    let (id, request) = pull(&mut asker, b"id", true, 1, now + Duration::from_secs(1));
    let answers = deliver(&mut holder, now, &request, &mut CopiesOnly(&mut held));
    deliver(&mut asker, now, &answers, &mut mine);
    assert_eq!(outcomes(&mut asker, now), [(id, PullOutcome::NotFound)]);
    assert!(has(&mut held, now, b"id"), "not taken");
    assert!(!has(&mut mine, now, b"id"));
    assert_eq!(holder.counters().pull_requests_none, 1);
}

#[test]
fn a_take_resumes_once_however_many_nodes_ask_at_once() {
    let (mut issuer, mut b, mut c) = (node(1), node(2), node(3));
    let (mut tickets, mut cache_b, mut cache_c) = (cache(16), cache(16), cache(16));
    let now = at(0);
    tickets
        .put(now, b"ticket", b"psk", Duration::from_secs(60))
        .unwrap();
    let deadline = now + Duration::from_secs(1);
    let (b_pull, from_b) = pull(&mut b, b"ticket", true, 1, deadline);
    let (c_pull, from_c) = pull(&mut c, b"ticket", true, 1, deadline);
    // The requests cross: C's first copy, then B's, then C's second.
    let mut to_c = deliver(&mut issuer, now, &from_c[..1], &mut tickets);
    let to_b = deliver(&mut issuer, now, &from_b, &mut tickets);
    to_c.extend(deliver(&mut issuer, now, &from_c[1..], &mut tickets));
    assert!(!has(&mut tickets, now, b"ticket"), "taken");
    deliver(&mut b, now, &to_b, &mut cache_b);
    deliver(&mut c, now, &to_c, &mut cache_c);
    assert_eq!(outcomes(&mut b, now), [(b_pull, PullOutcome::NotFound)]);
    assert_eq!(outcomes(&mut c, now), [(c_pull, PullOutcome::Found)]);
    assert!(has(&mut cache_c, now, b"ticket") && !has(&mut cache_b, now, b"ticket"));
    assert_eq!(issuer.counters().pull_requests_found, 1);
    assert_eq!(issuer.counters().pull_requests_none, 1);
}

#[test]
fn a_pull_nobody_answers_times_out_and_a_late_answer_is_not_stored() {
    let (mut asker, mut holder) = (node(1), node(2));
    let (mut mine, mut held) = (cache(16), cache(16));
    let now = at(10);
    held.put(now, b"id", b"v", Duration::from_secs(60)).unwrap();
    let deadline = now + Duration::from_millis(20);
    let (id, request) = pull(&mut asker, b"id", false, 1, deadline);
    assert!(outcomes(&mut asker, now + Duration::from_millis(19)).is_empty());
    assert_eq!(
        outcomes(&mut asker, deadline),
        [(id, PullOutcome::TimedOut)]
    );
    let late = deliver(&mut holder, deadline, &request, &mut held);
    deliver(&mut asker, deadline, &late, &mut mine);
    assert!(!has(&mut mine, deadline, b"id"));
    assert_eq!(asker.counters().late_pull_answers, 1);
    assert_eq!(asker.counters().duplicate_records, 1);
    assert_eq!(asker.counters().pulls_timed_out, 1);
}

#[test]
fn pulls_are_bounded_and_refused_with_a_reason() {
    let mut asker: Node<MTU, 4, 4, 1024, 2> = Node::new(ClusterKey::new(&SECRET), 1, trusting());
    let deadline = at(100);
    assert_eq!(asker.pull(b"", false, 1, deadline), Err(PullError::BadKey));
    assert_eq!(
        asker.pull(&[1; MAX_KEY_LEN + 1], false, 1, deadline),
        Err(PullError::BadKey)
    );
    assert_eq!(
        asker.pull(b"a", false, 0, deadline),
        Err(PullError::NoPeers)
    );
    asker.pull(b"a", false, 1, deadline).unwrap();
    assert_eq!(asker.pull(b"b", false, 1, deadline), Err(PullError::Busy));
    let mut buf = [0u8; MTU];
    while asker.poll_message(&mut buf).is_some() {}
    asker.pull(b"b", false, 1, deadline).unwrap();
    while asker.poll_message(&mut buf).is_some() {}
    assert_eq!(
        asker.pull(b"c", false, 1, deadline),
        Err(PullError::TooMany)
    );
    assert_eq!(asker.counters().pulls_refused, 5);
    // Ended pulls make room once reported.
    assert_eq!(
        asker.poll_event(deadline).map(|e| e.outcome),
        Some(PullOutcome::TimedOut)
    );
    assert_eq!(
        asker.poll_event(deadline).map(|e| e.outcome),
        Some(PullOutcome::TimedOut)
    );
    asker
        .pull(b"c", false, 1, deadline + Duration::from_secs(1))
        .unwrap();
}

#[test]
fn pull_answers_from_another_cluster_are_rejected() {
    let mut asker = node(1);
    let mut stranger = Node::<MTU>::new(same_id_other_key(), 2, trusting());
    let (mut mine, mut theirs) = (cache(16), cache(16));
    let now = at(0);
    theirs
        .put(now, b"id", b"forged", Duration::from_secs(60))
        .unwrap();
    let (_, request) = pull(&mut asker, b"id", false, 1, now + Duration::from_secs(1));
    // The stranger cannot even read the request.
    assert_eq!(
        stranger.handle(now, &request[0].1, &mut theirs),
        Err(Reject::Wire(wire::Error::Authentication))
    );
    assert!(!has(&mut mine, now, b"id"));
}

#[test]
fn an_answer_captured_before_a_restart_does_not_serve_a_new_pull() {
    let (mut holder, mut held) = (node(2), cache(16));
    let now = at(0);
    held.put(now, b"ticket", b"psk", Duration::from_secs(60))
        .unwrap();
    // The asker's first run pulls the ticket; an attacker keeps the answer.
    let mut before = node(1);
    let (_, request) = pull(
        &mut before,
        b"ticket",
        true,
        1,
        now + Duration::from_secs(1),
    );
    let captured = deliver(&mut holder, now, &request, &mut held);
    assert_eq!(captured.len(), 2);
    // Restarted (a fresh sender id), it pulls the same ticket as its first
    // pull again: the captured answer is not the answer to it.
    let mut after = node(0x5eed);
    let mut mine = cache(16);
    let id = after
        .pull(b"ticket", true, 1, now + Duration::from_secs(1))
        .unwrap();
    deliver(&mut after, now, &captured, &mut mine);
    assert!(!has(&mut mine, now, b"ticket"), "a used ticket resurrected");
    assert_eq!(after.counters().late_pull_answers, 1);
    assert_eq!(after.pulls_in_flight(), 1, "pull {id:?} still waits");
}

#[test]
fn a_rollover_step_by_step_loses_nothing_and_strays_are_counted() {
    const NEW: [u8; 32] = [0x43; 32];
    let (old, new) = (ClusterKey::new(&SECRET), ClusterKey::new(&NEW));
    let ring = |keys: &[&ClusterKey]| Keyring::new(keys.iter().map(|&k| k.clone())).unwrap();
    let (mut a, mut b) = (node(1), node(2));
    let mut cache_b = cache(64);
    let mut n = 0u32;
    // A set from `from` to `to`: whether it was applied.
    let mut send = |from: &mut TestNode, to: &mut TestNode, cache: &mut Cache<Vec<u8>>| {
        n += 1;
        let key = std::format!("s{n}");
        from.record_set(at(0), key.as_bytes(), b"v", Duration::from_secs(60))
            .unwrap();
        let sent = drain(from, at(0));
        let applied = sent.iter().all(|d| to.handle(at(0), d, cache).is_ok());
        applied && has(cache, at(0), key.as_bytes())
    };

    // Each step is applied on A first: at every moment, whatever A and B
    // hold, what one seals the other opens.
    let steps = [
        ring(&[&old, &new]), // 1: the new key second
        ring(&[&new, &old]), // 2: the new key first
        ring(&[&new]),       // 3: the old key dropped
    ];
    for step in &steps {
        a.set_keyring(step.clone());
        assert!(send(&mut a, &mut b, &mut cache_b), "A after, B before");
        b.set_keyring(step.clone());
        assert!(send(&mut a, &mut b, &mut cache_b), "both after");
    }
    assert_eq!(b.counters().rejected.total(), 0);
    // A's figures for the new key went on across the changes: one
    // datagram per send under it since step 2.
    let uses: Vec<_> = a.keyring().uses().collect();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].fingerprint, new.fingerprint());
    assert!(uses[0].sealed >= 4, "{uses:?}");
    assert_eq!(a.sender(), 1, "a key change keeps the sender id");

    // Skipping step 1 breaks the cluster: a node sealing under a key the
    // other does not hold is rejected, and counted.
    let mut stale = node(3);
    let datagram = set_datagram(&mut stale, at(0), b"late", Duration::from_secs(60));
    let reason = if old.id() == new.id() {
        Reject::Wire(wire::Error::Authentication)
    } else {
        Reject::Wire(wire::Error::UnknownKey)
    };
    assert_eq!(b.handle(at(0), &datagram, &mut cache_b), Err(reason));
    assert_eq!(b.counters().rejected.total(), 1);
    assert!(!has(&mut cache_b, at(0), b"late"));
}

// ---- verifying senders (see `challenge`) -------------------------------

fn verifying_node(sender: u64) -> TestNode {
    Node::new(ClusterKey::new(&SECRET), sender, Settings::default())
}

/// The one datagram `node` sends with the control message `kind`.
fn control(node: &mut TestNode, now: Instant, kind: ControlKind) -> Vec<(Destination, Vec<u8>)> {
    let mut buf = [0u8; MTU];
    let len = node.transmit_control(now, kind, &mut buf).unwrap();
    vec![(Destination::Peers, buf[..len].to_vec())]
}

/// `from` challenges `to`; their answers go back and forth until both
/// have verified each other, as a starting worker and a peer's master do.
fn introduce(
    from: &mut TestNode,
    from_cache: &mut Cache<Vec<u8>>,
    to: &mut TestNode,
    to_cache: &mut Cache<Vec<u8>>,
    now: Instant,
) {
    let challenge = control(from, now, ControlKind::Challenge);
    // The vouch for `to`, and a challenge back: `from` is new to it.
    let answer = deliver(to, now, &challenge, to_cache);
    let vouch = deliver(from, now, &answer, from_cache);
    assert!(
        deliver(to, now, &vouch, to_cache).is_empty(),
        "no third round"
    );
}

/// A store whose node vouches for other senders too, as a router's
/// master does for its workers.
struct Roster<'c> {
    cache: &'c mut Cache<Vec<u8>>,
    members: Vec<Member>,
}

impl<'c> Delegate for Roster<'c> {
    type Entries = Cache<Vec<u8>>;

    fn entries(&mut self) -> &mut Cache<Vec<u8>> {
        self.cache
    }

    fn members(&mut self, out: &mut [Member]) -> usize {
        let count = self.members.len().min(out.len());
        out[..count].copy_from_slice(&self.members[..count]);
        count
    }
}

#[test]
fn a_push_replayed_after_the_receiver_restarts_is_rejected() {
    let (mut a, mut b) = (verifying_node(1), verifying_node(2));
    let (mut cache_a, mut cache_b) = (cache(16), cache(16));
    introduce(&mut a, &mut cache_a, &mut b, &mut cache_b, at(0));
    assert_eq!(
        (b.counters().senders_verified, a.counters().senders_verified),
        (1, 1)
    );
    // A session with a second to live crosses, and is captured on the way.
    a.record_set(at(0), b"s", b"secret", Duration::from_secs(1))
        .unwrap();
    let captured = drain(&mut a, at(0));
    for datagram in &captured {
        assert_eq!(b.handle(at(0), datagram, &mut cache_b).unwrap().sets, 1);
    }
    assert!(has(&mut cache_b, at(0), b"s"));

    // B restarts (a fresh sender id, nothing in memory) long after the
    // session expired everywhere; the capture is replayed to it.
    let mut b = verifying_node(0x5eed);
    let mut cache_b = cache(16);
    let later = at(60_000);
    assert_eq!(
        b.handle(later, &captured[0], &mut cache_b),
        Err(Reject::Unverified)
    );
    assert!(
        !has(&mut cache_b, later, b"s"),
        "an expired session resurrected"
    );
    // B challenged A, once however often the replay comes.
    let challenge = messages(&mut b);
    assert_eq!(challenge.len(), 2, "two copies of one challenge");
    assert_eq!(challenge[0].0, Destination::Sender(1));
    assert_eq!(
        b.handle(later, &captured[0], &mut cache_b),
        Err(Reject::Unverified)
    );
    assert!(messages(&mut b).is_empty(), "challenged again at once");

    // A, alive, vouches: from then on the capture is a replay.
    let vouch = deliver(&mut a, later, &challenge[..1], &mut cache_a);
    deliver(&mut b, later, &vouch, &mut cache_b);
    assert_eq!(
        b.handle(later, &captured[0], &mut cache_b),
        Err(Reject::Replayed)
    );
    assert!(!has(&mut cache_b, later, b"s"));
    // And what A sends from now on applies.
    a.record_set(later, b"t", b"fresh", Duration::from_secs(1))
        .unwrap();
    for datagram in drain(&mut a, later) {
        b.handle(later, &datagram, &mut cache_b).unwrap();
    }
    assert!(has(&mut cache_b, later, b"t"));

    let n = b.counters();
    assert_eq!(
        (
            n.rejected.get(Reject::Unverified),
            n.rejected.get(Reject::Replayed),
            n.challenges_sent,
            n.senders_verified,
            n.applied_sets,
            n.rejected.total()
        ),
        (2, 1, 1, 1, 1, 3)
    );
    assert_eq!(a.counters().challenges_answered, 2, "at the start, and now");
}

#[test]
fn a_hello_from_a_sender_not_verified_is_no_membership_until_it_vouches() {
    let (mut a, mut b) = (verifying_node(1), verifying_node(2));
    let (mut cache_a, mut cache_b) = (cache(4), cache(4));
    let hello = control(&mut a, at(0), ControlKind::Hello);
    let handled = b.handle(at(0), &hello[0].1, &mut cache_b).unwrap();
    assert!(!handled.control.hello, "a hello from a sender not verified");
    let challenge = messages(&mut b);
    let vouch = deliver(&mut a, at(0), &challenge[..1], &mut cache_a);
    deliver(&mut b, at(0), &vouch, &mut cache_b);
    let hello = control(&mut a, at(1_000), ControlKind::Hello);
    let handled = b.handle(at(1_000), &hello[0].1, &mut cache_b).unwrap();
    assert!(handled.control.hello);
    assert!(
        messages(&mut b).is_empty(),
        "a verified sender is not challenged"
    );
}

#[test]
fn a_master_vouches_for_its_workers_in_one_round_trip() {
    let mut master = verifying_node(10);
    let mut worker = verifying_node(11);
    let mut held = cache(16);
    // The worker pushed to B before B restarted; the capture is replayed.
    worker
        .record_set(at(0), b"old", b"v", Duration::from_secs(600))
        .unwrap();
    let captured = drain(&mut worker, at(0));

    // B starts and asks the master for a bootstrap: the request carries a
    // challenge, which the master answers for itself and for the worker,
    // with the sequence number the worker publishes.
    let mut b = verifying_node(2);
    let mut cache_b = cache(16);
    let request = control(&mut b, at(5), ControlKind::BootstrapRequest);
    let mut roster = Roster {
        cache: &mut held,
        members: vec![Member {
            sender: worker.sender(),
            since: worker.next_sequence(),
        }],
    };
    let handled = master.handle(at(5), &request[0].1, &mut roster).unwrap();
    assert!(handled.control.bootstrap_request);
    assert!(handled.challenge.is_some());
    let answer = messages(&mut master);
    deliver(&mut b, at(5), &answer, &mut cache_b);
    assert_eq!(
        b.counters().senders_verified,
        2,
        "the master and the worker"
    );

    for datagram in &captured {
        assert_eq!(
            b.handle(at(6), datagram, &mut cache_b),
            Err(Reject::Replayed)
        );
    }
    assert!(!has(&mut cache_b, at(6), b"old"));
    worker
        .record_set(at(7), b"new", b"v", Duration::from_secs(600))
        .unwrap();
    for datagram in drain(&mut worker, at(7)) {
        b.handle(at(7), &datagram, &mut cache_b).unwrap();
    }
    assert!(has(&mut cache_b, at(7), b"new"));
    assert_eq!(b.counters().rejected.get(Reject::Unverified), 0);
}

#[test]
fn stale_and_foreign_vouches_admit_nobody() {
    let (mut a, mut b) = (verifying_node(1), verifying_node(2));
    let mut cache_a = cache(16);
    let push = set_datagram(&mut a, at(0), b"s", Duration::from_secs(600));

    // B's first run challenges A, and an attacker keeps A's vouch.
    let challenge = control(&mut b, at(0), ControlKind::Challenge);
    let old_vouch = deliver(&mut a, at(0), &challenge, &mut cache_a);
    // A vouch for another node's challenge.
    let mut c = verifying_node(3);
    let foreign = control(&mut c, at(0), ControlKind::Challenge);
    let foreign_vouch = deliver(&mut a, at(0), &foreign, &mut cache_a);

    // B restarted: neither the old vouch nor the foreign one admits A.
    let mut b = verifying_node(0x5eed);
    let mut cache_b = cache(16);
    for (_, vouch) in old_vouch.iter().chain(&foreign_vouch).take(3) {
        // Each still carries a challenge back, which B answers.
        b.handle(at(1), vouch, &mut cache_b).unwrap();
        messages(&mut b);
    }
    assert_eq!(
        b.handle(at(1), &push, &mut cache_b),
        Err(Reject::Unverified)
    );
    assert_eq!(b.counters().senders_verified, 0);
    // Counted for every datagram that carried one (two copies of the old).
    assert_eq!(b.counters().stale_vouches, 3, "{:?}", b.counters());

    // A vouch under B's own nonce, arriving after the nonce's lifetime.
    let challenge = control(&mut b, at(2), ControlKind::Challenge);
    let late = deliver(&mut a, at(2), &challenge, &mut cache_a);
    let expired = at(2) + challenge::LIFETIME;
    b.handle(expired, &late[0].1, &mut cache_b).unwrap();
    assert_eq!(b.counters().senders_verified, 0);
    assert_eq!(b.counters().stale_vouches, 4);
    assert_eq!(
        b.handle(expired, &push, &mut cache_b),
        Err(Reject::Unverified)
    );
    assert!(!has(&mut cache_b, expired, b"s"));
}

#[test]
fn a_bootstrap_answer_proves_itself_in_every_datagram_whatever_the_order() {
    let (mut master, mut held) = (verifying_node(10), cache(64));
    for i in 0..40u8 {
        held.put(at(0), &[b'k', i], &[i; 100], Duration::from_secs(600))
            .unwrap();
    }
    let mut b = verifying_node(2);
    let mut cache_b = cache(64);
    let request = control(&mut b, at(0), ControlKind::BootstrapRequest);
    let handled = master.handle(at(0), &request[0].1, &mut held).unwrap();
    messages(&mut master);

    // The answer, by a node of its own, comes in reverse order.
    let mut answerer = verifying_node(12);
    answerer.prove(handled.challenge.unwrap());
    let mut answer = BootstrapAnswer::new();
    let mut datagrams = Vec::new();
    let mut buf = [0u8; MTU];
    let mut now = at(0);
    loop {
        match answer.poll_transmit(now, &mut held, &mut answerer, &mut buf) {
            Ok(bootstrap::Step::Transmit(len)) => datagrams.push(buf[..len].to_vec()),
            Ok(bootstrap::Step::Wait(due)) => now = due,
            Ok(bootstrap::Step::Done) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(datagrams.len() >= 4, "{} datagrams", datagrams.len());
    let mut ended = false;
    for datagram in datagrams.iter().rev() {
        ended |= b
            .handle(now, datagram, &mut cache_b)
            .unwrap()
            .control
            .bootstrap_end;
    }
    assert!(ended);
    assert_eq!(cache_b.items(), 40);
    assert_eq!(b.counters().rejected.total(), 0);
    assert_eq!(b.counters().senders_verified, 1);

    // Replayed to B restarted, the answer applies nothing.
    let mut b = verifying_node(0x5eed);
    let mut cache_b = cache(64);
    for datagram in &datagrams {
        assert_eq!(
            b.handle(now, datagram, &mut cache_b),
            Err(Reject::Unverified)
        );
    }
    assert_eq!(cache_b.items(), 0);
    assert_eq!(b.counters().stale_vouches, datagrams.len() as u64);
}

/// Ticket keys kept as a router's holder would, at period `now`.
struct Held {
    keys: crate::tickets::TicketKeys,
    now: u64,
}

impl TicketKeySink for Held {
    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]) {
        self.keys
            .offer(self.now, crate::tickets::TicketKey::new(period, secret));
    }
}

#[test]
fn ticket_keys_travel_sealed_and_reach_stores_that_keep_them() {
    use crate::tickets::{TicketKey, TicketKeys};
    let (mut a, mut b) = (node(1), node(2));
    let mut held = TicketKeys::new();
    held.offer(7, TicketKey::new(7, &[0x5c; 32]));
    held.offer(7, TicketKey::new(8, &[0x6d; 32]));
    let mut buf = [0u8; MTU];
    let len = a
        .transmit_ticket_keys(held.iter().map(|k| (k.period(), k.secret())), &mut buf)
        .unwrap();
    assert!(
        !buf[..len].windows(32).any(|w| w == [0x5c; 32]),
        "a ticket key in clear"
    );
    let mut store = WithTicketKeys {
        store: cache(4),
        keys: Held {
            keys: TicketKeys::new(),
            now: 7,
        },
    };
    let handled = b.handle(at(1), &buf[..len], &mut store).unwrap();
    assert_eq!(handled.ticket_keys, 2);
    assert_eq!(store.keys.keys.len(), 2);
    assert_eq!(
        store.keys.keys.sealing(7).unwrap().id(),
        held.sealing(7).unwrap().id()
    );
    // A store without ticket keys (the cache) counts and ignores them.
    let len = a
        .transmit_ticket_keys(held.iter().map(|k| (k.period(), k.secret())), &mut buf)
        .unwrap();
    let mut plain = cache(4);
    assert_eq!(
        b.handle(at(2), &buf[..len], &mut plain)
            .unwrap()
            .ticket_keys,
        2
    );
    assert_eq!(b.counters().ticket_keys_received, 4);
    assert_eq!(plain.items(), 0);
    assert!(a
        .transmit_ticket_keys(core::iter::empty(), &mut buf)
        .is_none());
}
