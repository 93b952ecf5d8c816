//! An in-process UDP relay with a lossy link, for replication tests.
//!
//! [`UdpProxy::start`] listens on `127.0.0.1:0` and relays every datagram
//! it receives to a target address, NAT-style: each client (source address)
//! gets its own upstream socket, and datagrams the target sends back to that
//! socket are relayed to the client, so a peer that answers the address it
//! heard from (a bootstrap reply, a hello) works through the relay too.
//!
//! Both directions go through the same [`Faults`]: a fraction of datagrams
//! is dropped, a fraction duplicated, and each copy is delayed by a random
//! `0..=max_delay`, so datagrams arrive out of order. Decisions come from a
//! seeded xorshift generator, so a run is reproducible datagram by datagram
//! (for one client; with several, the interleaving of arrivals decides).
//!
//! Everything is bounded: at most [`MAX_CLIENTS`] upstream sockets, at most
//! [`MAX_QUEUED`] datagrams waiting for their delay (more are counted as
//! `overflowed` and dropped, as a router's full queue would), at most the
//! asked number of captured datagrams. The relay runs on its own thread and
//! runtime, independent of the test's, and stops when dropped.

use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Upstream sockets (distinct clients) a relay keeps at most.
pub const MAX_CLIENTS: usize = 64;
/// Datagrams waiting for their delay at most.
pub const MAX_QUEUED: usize = 4096;
/// Largest datagram relayed (longer ones arrive truncated to this).
pub const MAX_DATAGRAM: usize = 65_536;

/// What the link does to datagrams, in both directions.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Fraction of datagrams dropped, 0.0..=1.0.
    pub drop: f64,
    /// Fraction of the datagrams not dropped that are sent twice.
    pub duplicate: f64,
    /// Each copy waits a random `0..=max_delay` before it is sent.
    pub max_delay: Duration,
    /// Seed of the generator that decides all of the above.
    pub seed: u64,
}

impl Faults {
    /// A perfect link: everything forwarded at once, once.
    pub fn none() -> Faults {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            max_delay: Duration::ZERO,
            seed: 1,
        }
    }
}

impl Counts {
    /// Copies waiting for their delay: neither sent, nor failed, nor lost.
    pub fn pending(&self) -> u64 {
        (self.received + self.duplicated)
            .saturating_sub(self.dropped + self.overflowed + self.forwarded + self.send_errors)
    }
}

/// What a relay has done so far (both directions together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams that came in (from clients and from the target).
    pub received: u64,
    /// Datagrams dropped by the fault generator.
    pub dropped: u64,
    /// Extra copies made by the fault generator.
    pub duplicated: u64,
    /// Copies dropped because the delay queue or the client table was full.
    pub overflowed: u64,
    /// Copies sent out.
    pub forwarded: u64,
    /// Copies whose send failed.
    pub send_errors: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    overflowed: AtomicU64,
    forwarded: AtomicU64,
    send_errors: AtomicU64,
}

struct Shared {
    counters: Counters,
    capture_limit: usize,
    captured: Mutex<Vec<Vec<u8>>>,
    /// Whether the target's replies are captured too, apart.
    capture_replies: bool,
    replies: Mutex<Vec<Vec<u8>>>,
}

/// What a relay keeps copies of, for a test to look at or replay: first
/// copies only, in the order they were sent, at most `limit` of each
/// direction kept.
#[derive(Clone, Copy, Debug)]
pub struct Capture {
    /// Datagrams kept at most, per direction.
    pub limit: usize,
    /// Whether the target's replies are kept too, apart from what clients
    /// sent (see [`UdpProxy::replies`]).
    pub replies: bool,
}

impl Capture {
    /// Nothing kept.
    pub const NONE: Capture = Capture::sent(0);

    /// The first `limit` datagrams sent to the target.
    pub const fn sent(limit: usize) -> Capture {
        Capture {
            limit,
            replies: false,
        }
    }

    /// The first `limit` datagrams of each direction, apart.
    pub const fn sent_and_replies(limit: usize) -> Capture {
        Capture {
            limit,
            replies: true,
        }
    }
}

/// A running relay; stops (and joins its thread) when dropped.
pub struct UdpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for UdpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpProxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("counts", &self.counts())
            .finish()
    }
}

impl UdpProxy {
    /// Starts a relay to `target` on `127.0.0.1:0`.
    pub fn start(target: SocketAddr, faults: Faults) -> io::Result<UdpProxy> {
        UdpProxy::start_capturing(target, faults, Capture::NONE)
    }

    /// Like [`UdpProxy::start`], and keeps copies of the datagrams actually
    /// sent to the target (and of its replies if asked) as `capture` says.
    pub fn start_capturing(
        target: SocketAddr,
        faults: Faults,
        capture: Capture,
    ) -> io::Result<UdpProxy> {
        let bind: SocketAddr = if target.is_ipv6() {
            "[::1]:0".parse().unwrap()
        } else {
            "127.0.0.1:0".parse().unwrap()
        };
        let listen = StdUdpSocket::bind(bind)?;
        listen.set_nonblocking(true)?;
        let addr = listen.local_addr()?;
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            capture_limit: capture.limit,
            captured: Mutex::new(Vec::new()),
            capture_replies: capture.replies,
            replies: Mutex::new(Vec::new()),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("udp-proxy-{addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listen = match UdpSocket::from_std(listen) {
                        Ok(listen) => Arc::new(listen),
                        Err(_) => return,
                    };
                    tokio::select! {
                        _ = shutdown_rx => {}
                        _ = relay(listen, target, faults, thread_shared) => {}
                    }
                });
                // Dropping the runtime aborts every task it still runs.
            })?;
        Ok(UdpProxy {
            addr,
            target,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// Where clients send: the relay's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the relay forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        Counts {
            received: c.received.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            duplicated: c.duplicated.load(Relaxed),
            overflowed: c.overflowed.load(Relaxed),
            forwarded: c.forwarded.load(Relaxed),
            send_errors: c.send_errors.load(Relaxed),
        }
    }

    /// Datagrams captured so far (see [`UdpProxy::start_capturing`]).
    pub fn captured(&self) -> Vec<Vec<u8>> {
        self.shared.captured.lock().unwrap().clone()
    }

    /// The target's replies captured so far (see [`Capture::replies`]).
    pub fn replies(&self) -> Vec<Vec<u8>> {
        self.shared.replies.lock().unwrap().clone()
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// xorshift64*: small, seedable, good enough to decide faults.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // splitmix64 step, so that small or zero seeds still give a
        // non-zero, well-mixed state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        XorShift(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// One copy waiting for its time.
struct Delayed {
    due: Instant,
    order: u64,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Arc<[u8]>,
    capture: Option<Direction>,
}

/// Which way a captured datagram went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ToTarget,
    Reply,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    // Reversed: BinaryHeap is a max-heap and the earliest must come first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// Decides what happens to one datagram and queues its copies.
struct Link {
    faults: Faults,
    rng: XorShift,
    order: u64,
    queue: mpsc::Sender<Delayed>,
    shared: Arc<Shared>,
}

impl Link {
    fn pass(
        &mut self,
        socket: &Arc<UdpSocket>,
        to: SocketAddr,
        bytes: &[u8],
        capture: Option<Direction>,
    ) {
        let c = &self.shared.counters;
        c.received.fetch_add(1, Relaxed);
        if self.rng.chance(self.faults.drop) {
            c.dropped.fetch_add(1, Relaxed);
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            c.duplicated.fetch_add(1, Relaxed);
            2
        } else {
            1
        };
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let max_ms = self.faults.max_delay.as_millis() as u64;
        for copy in 0..copies {
            let delay = Duration::from_millis(self.rng.below(max_ms + 1));
            self.order += 1;
            let delayed = Delayed {
                due: Instant::now() + delay,
                order: self.order,
                socket: Arc::clone(socket),
                to,
                bytes: Arc::clone(&bytes),
                capture: capture.filter(|_| copy == 0),
            };
            if self.queue.try_send(delayed).is_err() {
                c.overflowed.fetch_add(1, Relaxed);
            }
        }
    }
}

/// The relay: the client side's loop, a reader per upstream socket, and the
/// scheduler that sends copies when they are due.
async fn relay(listen: Arc<UdpSocket>, target: SocketAddr, faults: Faults, shared: Arc<Shared>) {
    let (queue, due) = mpsc::channel(MAX_QUEUED);
    let mut tasks = JoinSet::new();
    tasks.spawn(schedule(due, Arc::clone(&shared)));
    let mut link = Link {
        faults,
        rng: XorShift::new(faults.seed),
        order: 0,
        queue: queue.clone(),
        shared: Arc::clone(&shared),
    };
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, client)) = listen.recv_from(&mut buf).await else {
            // ICMP errors surface here on some systems: keep going.
            continue;
        };
        let upstream = match upstreams.get(&client) {
            Some(upstream) => Arc::clone(upstream),
            None => {
                let local: SocketAddr = if target.is_ipv6() {
                    "[::1]:0".parse().unwrap()
                } else {
                    "127.0.0.1:0".parse().unwrap()
                };
                let bound = if upstreams.len() < MAX_CLIENTS {
                    UdpSocket::bind(local).await.ok()
                } else {
                    None
                };
                let Some(upstream) = bound.map(Arc::new) else {
                    shared.counters.received.fetch_add(1, Relaxed);
                    shared.counters.overflowed.fetch_add(1, Relaxed);
                    continue;
                };
                upstreams.insert(client, Arc::clone(&upstream));
                let back = Link {
                    faults,
                    rng: XorShift::new(faults.seed ^ (upstreams.len() as u64).rotate_left(32)),
                    order: 0,
                    queue: queue.clone(),
                    shared: Arc::clone(&shared),
                };
                tasks.spawn(replies(
                    Arc::clone(&upstream),
                    Arc::clone(&listen),
                    target,
                    client,
                    back,
                ));
                upstream
            }
        };
        link.pass(&upstream, target, &buf[..len], Some(Direction::ToTarget));
    }
}

/// Relays what the target sends to one upstream socket back to its client.
async fn replies(
    upstream: Arc<UdpSocket>,
    listen: Arc<UdpSocket>,
    target: SocketAddr,
    client: SocketAddr,
    mut link: Link,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, from)) = upstream.recv_from(&mut buf).await else {
            continue;
        };
        if from != target {
            continue;
        }
        let capture = link.shared.capture_replies.then_some(Direction::Reply);
        link.pass(&listen, client, &buf[..len], capture);
    }
}

/// Sends every queued copy when it is due. Holds at most [`MAX_QUEUED`]
/// copies: while the heap is full it stops taking from the channel, whose
/// own bound then makes `Link::pass` count overflows.
async fn schedule(mut queue: mpsc::Receiver<Delayed>, shared: Arc<Shared>) {
    let mut heap: BinaryHeap<Delayed> = BinaryHeap::new();
    loop {
        let next = heap.peek().map(|d| d.due);
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|d| d.due <= now) {
                    let d = heap.pop().expect("peeked");
                    let c = &shared.counters;
                    match d.socket.send_to(&d.bytes, d.to).await {
                        Ok(_) => {
                            c.forwarded.fetch_add(1, Relaxed);
                            let kept = match d.capture {
                                Some(Direction::ToTarget) => Some(&shared.captured),
                                Some(Direction::Reply) => Some(&shared.replies),
                                None => None,
                            };
                            if let Some(kept) = kept {
                                let mut kept = kept.lock().unwrap();
                                if kept.len() < shared.capture_limit {
                                    kept.push(d.bytes.to_vec());
                                }
                            }
                        }
                        Err(_) => {
                            c.send_errors.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
            item = queue.recv(), if heap.len() < MAX_QUEUED => match item {
                Some(d) => heap.push(d),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::wait_until_blocking;

    /// Bound on every wait below: far above what a loaded machine needs.
    const SETTLE: Duration = Duration::from_secs(60);
    /// Datagrams sent before waiting for the relay to take them in: well
    /// under what a socket's default receive buffer holds.
    const BATCH: u32 = 50;

    /// A target socket; its read timeout only paces the checks of a
    /// receiving thread's stop flag.
    fn target() -> StdUdpSocket {
        let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        socket
    }

    fn numbered(buf: &[u8], from: SocketAddr) -> (u32, SocketAddr) {
        let bytes: [u8; 4] = buf.try_into().expect("4-byte datagrams only");
        (u32::from_le_bytes(bytes), from)
    }

    /// Sends `n` datagrams numbered 0..n through `proxy` in batches, each
    /// once the relay has taken in the one before, while a thread collects
    /// what `server` receives, so that no socket buffer overflows however
    /// slowly anything runs. Returns the client socket and what arrived,
    /// once the relay has sent all it holds and all of it arrived.
    fn send_numbered(
        proxy: &UdpProxy,
        server: StdUdpSocket,
        n: u32,
    ) -> (StdUdpSocket, Vec<(u32, SocketAddr)>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = std::thread::spawn({
            let (got, stop) = (Arc::clone(&got), Arc::clone(&stop));
            move || {
                let mut buf = [0u8; 64];
                while !stop.load(Relaxed) {
                    if let Ok((len, from)) = server.recv_from(&mut buf) {
                        got.lock().unwrap().push(numbered(&buf[..len], from));
                    }
                }
            }
        });
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..n {
            client.send_to(&i.to_le_bytes(), proxy.addr()).unwrap();
            let sent = u64::from(i) + 1;
            if sent % u64::from(BATCH) == 0 || sent == u64::from(n) {
                let taken = wait_until_blocking(SETTLE, || proxy.counts().received >= sent);
                assert!(taken, "the relay took in {:?} of {sent}", proxy.counts());
            }
        }
        let sent_all = wait_until_blocking(SETTLE, || proxy.counts().pending() == 0);
        assert!(
            sent_all,
            "the relay still holds copies: {:?}",
            proxy.counts()
        );
        let forwarded = proxy.counts().forwarded as usize;
        let arrived = wait_until_blocking(SETTLE, || got.lock().unwrap().len() >= forwarded);
        stop.store(true, Relaxed);
        receiver.join().unwrap();
        let got = std::mem::take(&mut *got.lock().unwrap());
        assert!(arrived, "{} of {forwarded} forwarded arrived", got.len());
        (client, got)
    }

    /// Receives `count` datagrams (bounded).
    fn receive(socket: &StdUdpSocket, count: usize) -> Vec<(u32, SocketAddr)> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let arrived = wait_until_blocking(SETTLE, || {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                got.push(numbered(&buf[..len], from));
            }
            got.len() >= count
        });
        assert!(arrived, "{} of {count} datagrams arrived", got.len());
        got
    }

    #[test]
    fn relays_both_ways_without_faults() {
        let server = target();
        let capture = Capture::sent(10);
        let proxy =
            UdpProxy::start_capturing(server.local_addr().unwrap(), Faults::none(), capture)
                .unwrap();
        let replier = server.try_clone().unwrap();
        let (client, got) = send_numbered(&proxy, server, 200);
        let server = replier;
        let numbers: HashSet<u32> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(got.len(), 200);
        assert_eq!(numbers.len(), 200);
        // One client, one upstream socket: the target sees one source, and
        // that is not the client itself.
        let sources: HashSet<SocketAddr> = got.iter().map(|(_, from)| *from).collect();
        assert_eq!(sources.len(), 1);
        let upstream = *sources.iter().next().unwrap();
        assert_ne!(upstream, client.local_addr().unwrap());

        // Replies to the upstream socket reach the client, from the relay.
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        for i in 1000..1010u32 {
            server.send_to(&i.to_le_bytes(), upstream).unwrap();
        }
        let back = receive(&client, 10);
        assert_eq!(
            back.iter().map(|(n, _)| *n).collect::<HashSet<_>>(),
            (1000..1010).collect::<HashSet<_>>()
        );
        assert!(back.iter().all(|(_, from)| *from == proxy.addr()));

        // A copy is counted once its send returned, which may be a moment
        // after it arrived.
        assert!(wait_until_blocking(SETTLE, || proxy.counts().forwarded == 210));
        let counts = proxy.counts();
        assert_eq!(counts.received, 210, "{counts:?}");
        assert_eq!(counts.forwarded, 210, "{counts:?}");
        assert_eq!(
            (counts.dropped, counts.duplicated, counts.overflowed),
            (0, 0, 0)
        );
        // Only the client-to-target direction is captured, up to the limit.
        let captured = proxy.captured();
        assert_eq!(captured.len(), 10);
        assert!(captured
            .iter()
            .all(|d| u32::from_le_bytes(d[..4].try_into().unwrap()) < 200));
        assert!(proxy.replies().is_empty(), "replies are not asked for");
    }

    #[test]
    fn replies_are_captured_apart_when_asked() {
        let server = target();
        let proxy = UdpProxy::start_capturing(
            server.local_addr().unwrap(),
            Faults::none(),
            Capture::sent_and_replies(8),
        )
        .unwrap();
        let replier = server.try_clone().unwrap();
        let (client, got) = send_numbered(&proxy, server, 5);
        let upstream = got[0].1;
        for i in 1000..1012u32 {
            replier.send_to(&i.to_le_bytes(), upstream).unwrap();
        }
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        receive(&client, 12);
        let number = |d: &Vec<u8>| u32::from_le_bytes(d[..4].try_into().unwrap());
        assert_eq!(
            proxy.captured().iter().map(number).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        // Up to the limit, in the order sent.
        let replies: Vec<u32> = proxy.replies().iter().map(number).collect();
        assert_eq!(replies, (1000..1008).collect::<Vec<_>>());
    }

    /// `n` numbered datagrams through a new relay with `faults` to a new
    /// target: the relay, and what the target got.
    fn numbered_through(faults: Faults, n: u32) -> (UdpProxy, Vec<(u32, SocketAddr)>) {
        let server = target();
        let proxy = UdpProxy::start(server.local_addr().unwrap(), faults).unwrap();
        let (_client, got) = send_numbered(&proxy, server, n);
        (proxy, got)
    }

    #[test]
    fn drops_and_duplicates_about_the_asked_fractions() {
        let faults = Faults {
            drop: 0.1,
            duplicate: 0.1,
            max_delay: Duration::from_millis(2),
            seed: 42,
        };
        let (proxy, got) = numbered_through(faults, 2000);
        let counts = proxy.counts();
        assert_eq!(counts.received, 2000, "{counts:?}");
        // Expected 200 each; the bounds are about seven standard deviations.
        assert!((100..=300).contains(&counts.dropped), "{counts:?}");
        assert!((90..=280).contains(&counts.duplicated), "{counts:?}");
        assert_eq!(counts.overflowed, 0, "{counts:?}");
        assert_eq!(
            counts.forwarded,
            2000 - counts.dropped + counts.duplicated,
            "{counts:?}"
        );
        assert_eq!(got.len() as u64, counts.forwarded);
        let unique: HashSet<u32> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(unique.len() as u64, 2000 - counts.dropped);
    }

    #[test]
    fn delays_reorder() {
        let faults = Faults {
            max_delay: Duration::from_millis(20),
            seed: 7,
            ..Faults::none()
        };
        let (_proxy, got) = numbered_through(faults, 200);
        let got: Vec<u32> = got.into_iter().map(|(n, _)| n).collect();
        assert_eq!(got.len(), 200);
        let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(inversions > 0, "nothing was reordered: {got:?}");
    }

    #[test]
    fn the_seed_decides_which_datagrams_drop() {
        let dropped = |seed: u64| {
            let faults = Faults {
                drop: 0.2,
                seed,
                ..Faults::none()
            };
            let (_proxy, got) = numbered_through(faults, 300);
            let got: HashSet<u32> = got.into_iter().map(|(n, _)| n).collect();
            (0..300).filter(|n| !got.contains(n)).collect::<Vec<u32>>()
        };
        let first = dropped(3);
        assert!(!first.is_empty());
        assert_eq!(first, dropped(3));
        assert_ne!(first, dropped(4));
    }

    #[test]
    fn stops_when_dropped() {
        let server = target();
        let proxy = UdpProxy::start(server.local_addr().unwrap(), Faults::none()).unwrap();
        let addr = proxy.addr();
        drop(proxy);
        // The listening socket is closed: the port can be bound again.
        StdUdpSocket::bind(addr).expect("the relay released its port");
    }

    #[test]
    fn xorshift_is_uniform_enough() {
        let mut rng = XorShift::new(0);
        let n = 100_000;
        let hits = (0..n).filter(|_| rng.chance(0.05)).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| rng.below(10) < 10));
        assert_eq!(rng.below(0), 0);
    }
}
