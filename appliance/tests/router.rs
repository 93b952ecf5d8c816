//! The appliance against a real `cachet` router process, on loopback.
//!
//! The appliance runs in-process on a thread, on a real monotonic clock,
//! behind smoltcp. Its "device" carries IPv4/UDP packets to and from a
//! `std::net::UdpSocket` bound on 127.0.0.1: smoltcp's interface has the
//! address 127.0.0.1 and its UDP socket the std socket's port, so the
//! router addresses the appliance as `127.0.0.1:PORT` like any peer.
//!
//! Scenario: router A replicates to the appliance only; clients make
//! sessions on A; its TLS 1.2 sessions show up in the replica (its TLS 1.3
//! tickets stay with A, their one authority). A stops and starts again (a
//! fresh process, same certificate, the appliance its only peer): it gets
//! the sessions back from the appliance by bootstrap and the TLS 1.2
//! clients resume on it, while the TLS 1.3 clients, whose tickets died with
//! the old process, get full handshakes. Then the appliance restarts empty
//! and refills from A.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cachet_appliance::cachet_core::cache::MAX_KEY_LEN;
use cachet_appliance::cachet_core::wire::ClusterKey;
use cachet_appliance::cachet_core::{self, Config as CacheConfig};
use cachet_appliance::smoltcp::iface::{
    Config as IfaceConfig, Interface, SocketSet, SocketStorage,
};
use cachet_appliance::smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities};
use cachet_appliance::smoltcp::socket::udp;
use cachet_appliance::smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket,
    UdpRepr,
};
use cachet_appliance::{smoltcp_instant, Appliance, ApplianceCounters, Config};
use cachet_tests::backends::{self, Backend};
use cachet_tests::client::{self, Tls};
use cachet_tests::pki::Leaf;
use cachet_tests::ports::on_free_udp_ports;
use cachet_tests::{counter, Pki, Router};

/// Sessions the clients make: TLS 1.2 session ids and TLS 1.3 tickets.
const TLS12_SESSIONS: usize = 16;
const TLS13_SESSIONS: usize = 8;
/// Bound on every wait for replication to show.
const SETTLE: Duration = Duration::from_secs(60);
/// The replica: as the example firmware's, in a `Vec`.
const CAPACITY: u32 = 1000;
const BLOCK_SIZE: u32 = 288;

// ---- the device: IPv4/UDP packets <-> a std UDP socket ---------------

/// A smoltcp IP-medium device whose link is a UDP socket on loopback: a
/// packet smoltcp sends is unwrapped and its payload sent from the socket
/// to the packet's destination; a datagram the socket receives is wrapped
/// into the packet smoltcp would have received.
struct Bridge {
    socket: UdpSocket,
    local: SocketAddrV4,
}

#[path = "support/tokens.rs"]
mod tokens;
use tokens::{Link, RxToken, TxToken};

/// A packet smoltcp sends leaves as its UDP payload, from the socket.
impl Link for &UdpSocket {
    fn send(self, packet: Vec<u8>) {
        let ip = Ipv4Packet::new_checked(&packet[..]).expect("smoltcp emits IPv4");
        assert_eq!(ip.next_header(), IpProtocol::Udp);
        let udp = UdpPacket::new_checked(ip.payload()).expect("smoltcp emits UDP");
        let to = SocketAddrV4::new(ip.dst_addr(), udp.dst_port());
        // Loopback: a send fails only when the kernel buffer is full,
        // which is a lost datagram, as on any link.
        let _ = self.send_to(udp.payload(), to);
    }
}

impl phy::Device for Bridge {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<&'a UdpSocket>;

    fn receive(
        &mut self,
        _: cachet_appliance::smoltcp::time::Instant,
    ) -> Option<(RxToken, Self::TxToken<'_>)> {
        let mut payload = [0u8; 2048];
        let (len, from) = self.socket.recv_from(&mut payload).ok()?;
        let SocketAddr::V4(from) = from else {
            return None;
        };
        let packet = wrap(from, self.local, &payload[..len]);
        Some((RxToken(packet), TxToken(&self.socket)))
    }

    fn transmit(
        &mut self,
        _: cachet_appliance::smoltcp::time::Instant,
    ) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&self.socket))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        cachet_appliance::ip_device_capabilities()
    }
}

impl Bridge {
    /// Blocks until a datagram is waiting or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        if timeout.is_zero() {
            return;
        }
        self.socket.set_nonblocking(false).unwrap();
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let _ = self.socket.peek_from(&mut [0u8; 1]);
        self.socket.set_nonblocking(true).unwrap();
    }
}

/// The IPv4/UDP packet carrying `payload` from `from` to `to`, checksums
/// included.
fn wrap(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: from.port(),
        dst_port: to.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *from.ip(),
        dst_addr: *to.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let checksums = ChecksumCapabilities::default();
    let mut packet = vec![0u8; ip.buffer_len() + ip.payload_len];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]), &checksums);
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut packet[ip.buffer_len()..]),
        &IpAddress::Ipv4(*from.ip()),
        &IpAddress::Ipv4(*to.ip()),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &checksums,
    );
    packet
}

// ---- the appliance on its thread ---------------------------------------

/// What the test reads while the appliance runs.
#[derive(Debug, Default, Clone, Copy)]
struct Snapshot {
    counters: ApplianceCounters,
    items: u32,
}

struct Running {
    stop: Arc<AtomicBool>,
    snapshot: Arc<Mutex<Snapshot>>,
    thread: JoinHandle<(UdpSocket, Appliance<Vec<u8>>)>,
}

impl Running {
    fn snapshot(&self) -> Snapshot {
        *self.snapshot.lock().unwrap()
    }

    /// Stops the thread; gives back the socket and the appliance.
    fn stop(self) -> (UdpSocket, Appliance<Vec<u8>>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the appliance thread panicked")
    }
}

/// Fresh-enough bytes for a test's sender id and hash key.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// Starts an appliance on `socket`, asking `peers` for their sessions.
fn start_appliance(socket: UdpSocket, secret: [u8; 32], peers: Vec<SocketAddrV4>) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let (stop_flag, published) = (Arc::clone(&stop), Arc::clone(&snapshot));
    let thread = std::thread::spawn(move || {
        let SocketAddr::V4(local) = socket.local_addr().unwrap() else {
            panic!("an IPv4 socket");
        };
        socket.set_nonblocking(true).unwrap();
        let mut device = Bridge { socket, local };
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut device,
            smoltcp_instant(cachet_core::Instant::ZERO),
        );
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(*local.ip()), 8))
                .unwrap()
        });
        // As the example firmware: 16 datagrams each way.
        let (mut rx_meta, mut rx_payload) =
            (vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1500]);
        let (mut tx_meta, mut tx_payload) =
            (vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1500]);
        let socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut rx_meta[..], &mut rx_payload[..]),
            udp::PacketBuffer::new(&mut tx_meta[..], &mut tx_payload[..]),
        );
        let mut storage = [SocketStorage::EMPTY; 1];
        let mut sockets = SocketSet::new(&mut storage[..]);
        let handle = sockets.add(socket);

        let peers: Vec<IpEndpoint> = peers
            .iter()
            .map(|p| IpEndpoint::new(IpAddress::Ipv4(*p.ip()), p.port()))
            .collect();
        let cache = CacheConfig {
            capacity: CAPACITY,
            block_size: BLOCK_SIZE,
            hash_key: random_u64().to_le_bytes().repeat(2).try_into().unwrap(),
        };
        let mut config = Config::new(ClusterKey::new(&secret), random_u64(), cache, local.port());
        config.peers = &peers;
        let region = cachet_core::cache::Layout::new(CAPACITY, BLOCK_SIZE)
            .unwrap()
            .total_bytes();
        let mut appliance = Appliance::new(&config, vec![0u8; region], &mut sockets, handle)
            .expect("starting the appliance");

        let start = Instant::now();
        while !stop_flag.load(Ordering::Relaxed) {
            let now = cachet_core::Instant::from_millis(start.elapsed().as_millis() as u64);
            appliance.poll_stack(now, &mut iface, &mut device, &mut sockets);
            *published.lock().unwrap() = Snapshot {
                counters: appliance.counters(),
                items: appliance.cache().items(),
            };
            let smoltcp_delay = iface
                .poll_delay(smoltcp_instant(now), &sockets)
                .map_or(Duration::MAX, |d| Duration::from_micros(d.total_micros()));
            let delay = Duration::from_millis(appliance.poll_delay(now).as_millis())
                .min(smoltcp_delay)
                // Wakes up now and then to see the stop flag.
                .min(Duration::from_millis(50));
            device.wait(delay);
        }
        (device.socket, appliance)
    });
    Running {
        stop,
        snapshot,
        thread,
    }
}

// ---- the router ---------------------------------------------------------

/// A router whose one peer is the appliance at `appliance`.
fn node_args(leaf: &Leaf, backend: &Backend, key_file: &str, appliance: SocketAddr) -> Vec<String> {
    [
        "--https",
        &leaf.https("127.0.0.1:0"),
        "--http-to",
        &backend.uwsgi_to(),
        "--cache",
        "1000",
        "--ssl-sessions-use-cache",
        "--ssl-sessions-timeout",
        "300",
        "--stats",
        "127.0.0.1:0",
        "--cache-udp-key",
        key_file,
        "--cache-udp-node",
        &appliance.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn write_key(dir: &Path, secret: &[u8; 32]) -> String {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("cluster.key");
    std::fs::write(&path, hex).unwrap();
    path.display().to_string()
}

/// Polls `check` until it holds or `SETTLE` passes.
async fn wait_until(check: impl FnMut() -> bool) -> bool {
    cachet_tests::wait_until(SETTLE, check).await
}

/// The largest value in the replica, for sizing firmware block sizes.
fn largest_value(appliance: &Appliance<Vec<u8>>) -> usize {
    let now = cachet_core::Instant::ZERO;
    let (mut key, mut value) = ([0u8; MAX_KEY_LEN], vec![0u8; BLOCK_SIZE as usize]);
    let (mut cursor, mut largest) = (0, 0);
    while let Ok(Some(entry)) = appliance
        .cache()
        .export_next(now, cursor, &mut key, &mut value)
    {
        largest = largest.max(entry.value.len());
        cursor = entry.next;
    }
    largest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_router_gets_its_sessions_back_from_the_appliance() {
    let pki = Pki::new();
    let leaf = pki.leaf("router", &["localhost"]);
    let backend = backends::uwsgi("app").await;
    let secret: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5c);
    let key_file = write_key(pki.dir(), &secret);

    // The appliance's port, bound now and kept; the router's sync port,
    // free a moment ago (the appliance must know it, and the router is
    // started on it again below), drawn again should it have been taken.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let appliance_addr = socket.local_addr().unwrap();
    let (a, args, router_sync) = on_free_udp_ports(1, |addrs| {
        let SocketAddr::V4(router_sync) = addrs[0] else {
            unreachable!("bound on 127.0.0.1");
        };
        let mut args = node_args(&leaf, &backend, &key_file, appliance_addr);
        args.extend(["--cache-udp-server".to_owned(), router_sync.to_string()]);
        Ok((Router::try_start(&args)?, args, router_sync))
    });
    // A's greeting waits in the appliance's socket until it runs.
    let appliance = start_appliance(socket, secret, vec![router_sync]);

    // The appliance greeted A and A answered (with nothing yet); A greeted
    // the appliance and it answered likewise.
    let greeted = wait_until(|| appliance.snapshot().counters.peers_bootstrapped == 1).await;
    assert!(greeted, "A never answered: {:#?}", appliance.snapshot());

    // Sessions on A, replicated to the appliance.
    let mut clients = Vec::new();
    for k in 0..TLS12_SESSIONS + TLS13_SESSIONS {
        let version = if k < TLS12_SESSIONS {
            Tls::V12
        } else {
            Tls::V13
        };
        let config = client::config(&pki, version, &[b"http/1.1"]);
        let exchange = client::get(&config, a.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 200);
        assert!(!exchange.resumed);
        clients.push(config);
    }
    let held = a.cache_items();
    let made = TLS12_SESSIONS as u64;
    assert!(held >= made + TLS13_SESSIONS as u64, "A holds {held} items");
    let replicated = wait_until(|| u64::from(appliance.snapshot().items) == made).await;
    let snapshot = appliance.snapshot();
    assert!(
        replicated,
        "the replica holds {} of A's {made} TLS 1.2 sessions: {snapshot:#?}",
        snapshot.items
    );
    assert!(snapshot.counters.sync.applied_sets >= made);
    assert_eq!(snapshot.counters.sync.rejected.total(), 0, "{snapshot:#?}");

    // A stops; a fresh A, on the same addresses (the appliance knows it by
    // them), asks the appliance for the sessions.
    let answered_before = snapshot.counters.bootstrap_requests_answered;
    a.terminate();
    let restart = Instant::now();
    let a = Router::start(&args);
    let back = wait_until(|| a.cache_items() >= made).await;
    let sync = a.stats()["sync"].clone();
    eprintln!(
        "made {made} sessions on A, {} in the replica; restarted A holds {} after {:?}: {} bootstrap entries received",
        snapshot.items,
        a.cache_items(),
        restart.elapsed(),
        counter(&sync, "bootstrap_entries_received"),
    );
    assert!(
        back,
        "restarted A holds {} of {made}: {sync:#}",
        a.cache_items()
    );
    assert!(
        counter(&sync, "bootstrap_entries_received") >= made,
        "{sync:#}"
    );
    let answered =
        wait_until(|| appliance.snapshot().counters.bootstrap_requests_answered > answered_before)
            .await;
    let snapshot = appliance.snapshot();
    assert!(answered, "{snapshot:#?}");
    assert!(
        snapshot.counters.bootstrap_entries_sent >= made,
        "{snapshot:#?}"
    );

    // The TLS 1.2 clients' sessions resume on the new process; the TLS 1.3
    // tickets died with the old one (a full handshake, the safe answer).
    let mut resumed = 0;
    for (k, config) in clients.iter().enumerate() {
        let exchange = client::get(config, a.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 200);
        assert_eq!(exchange.resumed, k < TLS12_SESSIONS, "client {k}");
        resumed += usize::from(exchange.resumed);
    }
    eprintln!(
        "{resumed} of {} sessions resumed on restarted A",
        clients.len()
    );

    // Router B, whose only peer is the appliance and which listens for no
    // pushes, pulls A's sessions from the replica as clients offer them.
    let mut b_args = node_args(&leaf, &backend, &key_file, appliance_addr);
    b_args.extend(["--cache-udp-pull-timeout".to_owned(), "5000".to_owned()]);
    let b = Router::start(&b_args);
    for config in &clients[..TLS12_SESSIONS] {
        let exchange = client::get(config, b.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 200);
        assert!(exchange.resumed, "{:#}", b.stats()["sync"]);
    }
    let pulls = b.stats()["sync"]["pulls"].clone();
    assert_eq!(counter(&pulls, "found"), TLS12_SESSIONS as u64, "{pulls:#}");
    let snapshot = appliance.snapshot();
    assert_eq!(
        snapshot.counters.sync.pull_requests_found, TLS12_SESSIONS as u64,
        "{snapshot:#?}"
    );
    drop(b);

    // The appliance restarts empty and refills from A, its configured peer.
    let (socket, old) = appliance.stop();
    eprintln!(
        "largest session value in the replica: {} bytes (block size {BLOCK_SIZE})",
        largest_value(&old)
    );
    drop(old);
    let appliance = start_appliance(socket, secret, vec![router_sync]);
    let refilled = wait_until(|| {
        let s = appliance.snapshot();
        s.counters.peers_bootstrapped == 1 && u64::from(s.items) >= made
    })
    .await;
    let snapshot = appliance.snapshot();
    eprintln!(
        "restarted appliance holds {} of A's {made} TLS 1.2 sessions, {} received by bootstrap",
        snapshot.items, snapshot.counters.bootstrap_entries_received
    );
    assert!(refilled, "{snapshot:#?}");
    assert!(snapshot.counters.bootstrap_entries_received >= u64::from(snapshot.items));
    appliance.stop();
}
