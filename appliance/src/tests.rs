//! Appliances driven in memory on a fake clock: each host is a whole
//! smoltcp stack over a device whose "wire" is a queue of IP packets, and
//! the router is a bare `cachet_core` node with a cache on such a stack.

use std::boxed::Box;
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use cachet_core::cache::{Config as CacheConfig, Layout};
use cachet_core::sync::bootstrap::Step;
use cachet_core::sync::{
    BootstrapAnswer, ControlKind, Destination, Node, PullOutcome, Reject, Settings,
};
use cachet_core::wire::ClusterKey;
use cachet_core::{Cache, Duration, Instant};
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollResult, SocketHandle, SocketSet, SocketStorage,
};
use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::socket::udp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use super::*;

const SECRET: [u8; 32] = [0x5a; 32];
const PORT: u16 = 7000;
const BLOCK: u32 = 256;

/// IP packets in flight: what a device sent, and what it will receive.
#[derive(Default)]
struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

#[path = "../tests/support/tokens.rs"]
mod tokens;
use tokens::{Link, RxToken, TxToken};

/// A packet sent joins the queue of what the wire carries away.
impl Link for &mut VecDeque<Vec<u8>> {
    fn send(self, packet: Vec<u8>) {
        self.push_back(packet);
    }
}

impl phy::Device for Wire {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<&'a mut VecDeque<Vec<u8>>>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxToken, Self::TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ip_device_capabilities()
    }
}

/// One host: interface, device and a set holding one UDP socket whose
/// transmit buffer holds `tx_packets` datagrams.
struct Stack {
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    endpoint: IpEndpoint,
}

impl Stack {
    fn new(last_octet: u8, tx_packets: usize) -> Stack {
        // A documentation prefix: these packets never leave the test.
        let addr = IpAddress::v4(192, 0, 2, last_octet);
        let mut wire = Wire::default();
        let config = IfaceConfig::new(HardwareAddress::Ip);
        let mut iface = Interface::new(config, &mut wire, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|addrs| addrs.push(IpCidr::new(addr, 24)).unwrap());
        let buffer = |packets: usize| {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; packets].leak(),
                vec![0u8; packets * 1500].leak(),
            )
        };
        let socket = udp::Socket::new(buffer(64), buffer(tx_packets));
        let storage: &'static mut [SocketStorage<'static>] =
            Box::leak(Box::new([SocketStorage::EMPTY; 1]));
        let mut sockets = SocketSet::new(storage);
        let udp = sockets.add(socket);
        Stack {
            iface,
            wire,
            sockets,
            udp,
            endpoint: IpEndpoint::new(addr, PORT),
        }
    }

    /// Polls the interface until it has nothing left to do: smoltcp sends
    /// one datagram per socket per poll.
    fn poll(&mut self, now: Instant) {
        let now = smoltcp_instant(now);
        while self.iface.poll(now, &mut self.wire, &mut self.sockets) != PollResult::None {}
    }

    fn socket(&mut self) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(self.udp)
    }
}

/// Delivers everything `from` sent to `to` (a two-host network).
fn carry(from: &mut Stack, to: &mut Stack) -> usize {
    let count = from.wire.tx.len();
    to.wire.rx.extend(from.wire.tx.drain(..));
    count
}

fn cache_config() -> CacheConfig {
    CacheConfig {
        capacity: 256,
        block_size: BLOCK,
        hash_key: [1; 16],
    }
}

fn storage() -> Vec<u8> {
    vec![0; Layout::new(256, BLOCK).unwrap().total_bytes()]
}

/// An appliance on its own stack.
struct Host {
    stack: Stack,
    app: Appliance<Vec<u8>>,
}

fn appliance(last_octet: u8, sender: u64, peers: &[IpEndpoint], tx_packets: usize) -> Host {
    let mut stack = Stack::new(last_octet, tx_packets);
    let mut config = Config::new(ClusterKey::new(&SECRET), sender, cache_config(), PORT);
    config.peers = peers;
    // These routers are a bare node each, which no master vouches for:
    // verifying senders is cachet-core's to test, and `tests/router.rs`
    // runs it against a real router.
    config.sync.verify_senders = false;
    let app = Appliance::new(&config, storage(), &mut stack.sockets, stack.udp).unwrap();
    Host { stack, app }
}

/// An appliance with no peers of its own, its socket room for `tx_packets`
/// datagrams, and a router of its cluster to push sessions to it.
fn appliance_and_router(tx_packets: usize) -> (Host, Router) {
    (
        appliance(9, 1, &[], tx_packets),
        Router::new(&SECRET, 0xabc),
    )
}

impl Host {
    /// Turns of the firmware's main loop until every packet in flight to
    /// it is taken in.
    fn turn(&mut self, now: Instant) {
        let stack = &mut self.stack;
        loop {
            self.app
                .poll_stack(now, &mut stack.iface, &mut stack.wire, &mut stack.sockets);
            if stack.wire.rx.is_empty() {
                break;
            }
        }
    }
}

/// A router reduced to its replication: a node and a cache on a stack.
struct Router {
    stack: Stack,
    node: Node,
    cache: Cache<Vec<u8>>,
    /// Control messages received: hellos, requests, ends.
    control: [u32; 3],
}

impl Router {
    /// A router process: a fresh `sender` at every start.
    fn new(key: &[u8; 32], sender: u64) -> Router {
        let mut stack = Stack::new(1, 64);
        stack.socket().bind(PORT).unwrap();
        Router {
            stack,
            node: Node::new(
                ClusterKey::new(key),
                sender,
                Settings {
                    verify_senders: false,
                    ..Settings::default()
                },
            ),
            cache: Cache::format(storage(), &cache_config()).unwrap(),
            control: [0; 3],
        }
    }

    /// Stores `key` locally and pushes it, as a worker does.
    fn store(&mut self, now: Instant, key: &[u8], lifetime: Duration, to: IpEndpoint) {
        self.keep(now, key, lifetime);
        self.node
            .record_set(now, key, &[key[0]; 120], lifetime)
            .unwrap();
        self.flush(now, to);
    }

    /// Stores `key` locally only.
    fn keep(&mut self, now: Instant, key: &[u8], lifetime: Duration) {
        self.cache.put(now, key, &[key[0]; 120], lifetime).unwrap();
    }

    fn flush(&mut self, now: Instant, to: IpEndpoint) {
        let mut buf = [0u8; MTU];
        while let Some(len) = self.node.poll_transmit(now, &mut buf) {
            self.stack.socket().send_slice(&buf[..len], to).unwrap();
        }
        self.stack.poll(now);
    }

    fn control(&mut self, kind: ControlKind, to: IpEndpoint) {
        let mut buf = [0u8; MTU];
        let len = self
            .node
            .transmit_control(Instant::ZERO, kind, &mut buf)
            .unwrap();
        self.stack.socket().send_slice(&buf[..len], to).unwrap();
    }

    /// Takes in what arrived; returns the datagrams.
    fn receive(&mut self, now: Instant) -> usize {
        self.stack.poll(now);
        let mut count = 0;
        let socket = self.stack.sockets.get_mut::<udp::Socket>(self.stack.udp);
        while let Ok((datagram, _)) = socket.recv() {
            count += 1;
            if let Ok(handled) = self.node.handle(now, datagram, &mut self.cache) {
                let c = handled.control;
                for (i, seen) in [c.hello, c.bootstrap_request, c.bootstrap_end]
                    .into_iter()
                    .enumerate()
                {
                    self.control[i] += u32::from(seen);
                }
            }
        }
        count
    }

    /// Answers a bootstrap request to `to` in full, as the router's
    /// master does (its pacing left out).
    fn answer(&mut self, now: Instant, to: IpEndpoint) {
        let mut answer = BootstrapAnswer::new();
        let mut buf = [0u8; MTU];
        let mut now = now;
        loop {
            match answer
                .poll_transmit(now, &mut self.cache, &mut self.node, &mut buf)
                .unwrap()
            {
                Step::Transmit(len) => self.stack.socket().send_slice(&buf[..len], to).unwrap(),
                Step::Wait(due) => now = due,
                Step::Done => break,
            }
            self.stack.poll(now);
        }
    }
}

fn key(i: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&i.to_be_bytes());
    key[31] = 1;
    key
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

#[test]
fn applies_pushes_rejects_junk_and_expires_by_its_own_clock() {
    let (mut a, mut router) = appliance_and_router(8);
    let to = a.stack.endpoint;
    for i in 0..20 {
        let lifetime = Duration::from_secs(if i % 2 == 0 { 2 } else { 60 });
        router.store(at(0), &key(i), lifetime, to);
    }
    router.node.record_delete(at(0), &key(1)).unwrap();
    router.flush(at(0), to);
    carry(&mut router.stack, &mut a.stack);
    a.turn(at(1));
    assert_eq!(a.app.cache().items(), 19);
    let counters = a.app.counters();
    assert_eq!(counters.sync.applied_sets, 20);
    assert_eq!(counters.sync.applied_deletes, 1);

    // The same datagrams again, and a node with another key.
    let mut stranger = Router::new(&[0x11; 32], 0x111);
    stranger.store(at(0), b"forged", Duration::from_secs(60), to);
    carry(&mut stranger.stack, &mut a.stack);
    a.turn(at(2));
    // Under its key's id (one byte of a digest of the key) or another:
    // rejected either way, before anything changes.
    let sync = a.app.counters().sync;
    assert_eq!(
        sync.rejected
            .get(Reject::Wire(cachet_core::wire::Error::Authentication))
            + sync
                .rejected
                .get(Reject::Wire(cachet_core::wire::Error::UnknownKey)),
        1
    );
    assert_eq!(a.app.cache().items(), 19);

    // Lifetimes run on the appliance's clock: no lookup needed to free the
    // short-lived half, only time and polls (256 slots at 64 a sweep).
    for ms in (100..=3_000).step_by(100) {
        a.turn(at(ms));
    }
    assert_eq!(a.app.cache().items(), 9);
    assert_eq!(a.app.counters().swept, 10);
    assert!(a.app.poll_at() <= at(3_100));
}

#[test]
fn a_replayed_datagram_is_rejected() {
    let (mut a, mut router) = appliance_and_router(8);
    router.store(at(0), &key(1), Duration::from_secs(60), a.stack.endpoint);
    let captured = router.stack.wire.tx.clone();
    carry(&mut router.stack, &mut a.stack);
    a.turn(at(1));
    a.stack.wire.rx.extend(captured);
    a.turn(at(2));
    let counters = a.app.counters();
    assert_eq!(counters.received_datagrams, 2);
    assert_eq!(counters.sync.rejected.get(Reject::Replayed), 1);
    assert_eq!(counters.sync.rejected.total(), 1);
}

#[test]
fn answers_a_bootstrap_request_in_paced_bursts_through_a_small_socket() {
    // Room for three datagrams in the socket: most of the answer waits in
    // the appliance for the interface to drain it.
    let (mut a, mut router) = appliance_and_router(3);
    let to = a.stack.endpoint;
    for i in 0..200 {
        router.store(at(0), &key(i), Duration::from_secs(300), to);
        carry(&mut router.stack, &mut a.stack);
        a.turn(at(0));
    }
    assert_eq!(a.app.cache().items(), 200);

    // The router restarts with an empty cache and asks, twice (its retry).
    let mut router = Router::new(&SECRET, 0xdef);
    router.control(ControlKind::Hello, to);
    router.control(ControlKind::BootstrapRequest, to);
    router.control(ControlKind::BootstrapRequest, to);
    router.stack.poll(at(10));
    carry(&mut router.stack, &mut a.stack);

    let mut now = at(10);
    let mut turns = 0;
    while router.control[2] == 0 {
        a.turn(now);
        let sent = carry(&mut a.stack, &mut router.stack);
        assert!(sent <= 8, "{sent} datagrams in one turn");
        router.receive(now);
        turns += 1;
        assert!(turns < 1_000, "the answer never ended");
        assert!(a.app.poll_at() >= now);
        now = a.app.poll_at().max(now + Duration::from_millis(1));
    }
    assert_eq!(router.cache.items(), 200);
    let counters = a.app.counters();
    assert_eq!(counters.bootstrap_requests_answered, 1, "{counters:#?}");
    assert_eq!(counters.bootstrap_entries_sent, 200);
    assert_eq!(counters.send_errors, 0);
    // 200 entries of 152 bytes, 8 to a datagram, every batch twice, then
    // the end marker; and the vouch answering each request's challenge,
    // in two copies.
    assert_eq!(counters.sent_datagrams, 2 * 25 + 1 + 2 * 2, "{counters:#?}");
    let mut value = [0u8; BLOCK as usize];
    let got = router.cache.get(now, &key(199), &mut value).unwrap();
    assert_eq!(got, Some(&[0u8; 120][..]));
}

#[test]
fn greets_its_peers_every_second_until_they_answer_then_refills() {
    let mut router = Router::new(&SECRET, 0xabc);
    let silent = IpEndpoint::new(IpAddress::v4(192, 0, 2, 77), PORT);
    let mut a = appliance(9, 1, &[router.stack.endpoint, silent], 8);
    let to = a.stack.endpoint;
    for i in 0..30 {
        router.keep(at(0), &key(i), Duration::from_secs(300));
    }

    // Hello and request to both peers at once, nothing more until a second
    // has passed.
    a.turn(at(0));
    assert_eq!(carry(&mut a.stack, &mut router.stack), 4);
    router.receive(at(0));
    assert_eq!(router.control, [1, 1, 0]);
    a.turn(at(500));
    assert_eq!(a.stack.wire.tx.len(), 0);
    a.turn(at(1_000));
    carry(&mut a.stack, &mut router.stack);
    router.receive(at(1_000));
    assert_eq!(router.control, [2, 2, 0]);

    // The router answers with its 30 sessions and the end marker.
    router.answer(at(1_000), to);
    carry(&mut router.stack, &mut a.stack);
    a.turn(at(1_100));
    let counters = a.app.counters();
    assert_eq!(a.app.cache().items(), 30);
    assert_eq!(counters.bootstrap_entries_received, 30);
    assert_eq!(counters.peers_bootstrapped, 1);

    // Only the silent peer is asked again, until the appliance gives up.
    for second in 2..=70 {
        a.turn(at(second * 1_000));
    }
    let counters = a.app.counters();
    assert_eq!(counters.greetings_sent, 2 + 60);
    assert_eq!(counters.peers_given_up, 1);
    assert_eq!(a.app.poll_at(), at(70_100), "only the sweeper is left");
}

#[test]
fn a_restarted_appliance_refills_from_another() {
    let (mut a, mut router) = appliance_and_router(8);
    for i in 0..50 {
        router.store(at(0), &key(i), Duration::from_secs(300), a.stack.endpoint);
    }
    carry(&mut router.stack, &mut a.stack);
    a.turn(at(0));
    assert_eq!(a.app.cache().items(), 50);

    // B has A as its peer: it asks, A answers, B holds what A holds.
    let mut b = appliance(10, 2, &[a.stack.endpoint], 8);
    let mut now = at(5);
    for _ in 0..100 {
        b.turn(now);
        carry(&mut b.stack, &mut a.stack);
        a.turn(now);
        carry(&mut a.stack, &mut b.stack);
        if b.app.counters().peers_bootstrapped == 1 {
            break;
        }
        now = now + Duration::from_millis(5);
    }
    b.turn(now);
    assert_eq!(b.app.counters().peers_bootstrapped, 1);
    assert_eq!(b.app.cache().items(), 50);
    assert_eq!(b.app.counters().bootstrap_entries_received, 50);
    assert_eq!(a.app.counters().bootstrap_entries_sent, 50);
}

/// A router that lacks a session asks its peers; the appliance answers
/// from its replica, to the router alone, and the router stores it. What
/// the appliance does not hold it answers "none" to.
#[test]
fn answers_a_pull_from_its_replica() {
    let (mut a, mut pusher) = appliance_and_router(8);
    let to = a.stack.endpoint;
    pusher.store(at(0), &key(7), Duration::from_secs(300), to);
    carry(&mut pusher.stack, &mut a.stack);
    a.turn(at(0));
    assert_eq!(a.app.cache().items(), 1);

    let mut asker = Router::new(&SECRET, 0xdef);
    let deadline = at(1_000);
    let mut buf = [0u8; MTU];
    for wanted in [key(7), key(8)] {
        asker.node.pull(&wanted, false, 1, deadline).unwrap();
        while let Some(message) = asker.node.poll_message(&mut buf) {
            assert_eq!(message.destination, Destination::Peers);
            let socket = asker.stack.socket();
            socket.send_slice(&buf[..message.len], to).unwrap();
        }
        asker.stack.poll(at(10));
        carry(&mut asker.stack, &mut a.stack);
        a.turn(at(10));
        carry(&mut a.stack, &mut asker.stack);
        assert_eq!(asker.receive(at(11)), 2, "two copies of the answer");
    }
    let outcomes: Vec<PullOutcome> =
        core::iter::from_fn(|| asker.node.poll_event(at(11)).map(|e| e.outcome)).collect();
    assert_eq!(outcomes, [PullOutcome::Found, PullOutcome::NotFound]);
    let mut out = [0u8; BLOCK as usize];
    assert!(asker
        .cache
        .get(at(11), &key(7), &mut out)
        .unwrap()
        .is_some());
    // The replica keeps what it handed out (a TLS 1.2 session resumes any
    // number of times), and says what it did.
    assert_eq!(a.app.cache().items(), 1);
    let counters = a.app.counters();
    assert_eq!(counters.sync.pull_requests_found, 1);
    assert_eq!(counters.sync.pull_requests_none, 1);
    assert_eq!(counters.pull_answers_sent, 4);
}

#[test]
fn too_many_peers_or_too_little_storage_is_refused() {
    let mut stack = Stack::new(9, 8);
    let peers = [IpEndpoint::new(IpAddress::v4(192, 0, 2, 1), PORT); MAX_PEERS + 1];
    let mut config = Config::new(ClusterKey::new(&SECRET), 1, cache_config(), PORT);
    config.peers = &peers;
    let refused = Appliance::new(&config, storage(), &mut stack.sockets, stack.udp);
    assert_eq!(refused.err(), Some(Error::TooManyPeers));
    config.peers = &[];
    let refused = Appliance::new(&config, vec![0u8; 1024], &mut stack.sockets, stack.udp);
    assert!(matches!(refused.err(), Some(Error::Cache(_))));
}
