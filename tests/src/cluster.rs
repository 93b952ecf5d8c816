//! Cluster tests' common ground: routers on loopback that replicate TLS
//! sessions over sealed UDP, clients that choose which session they offer.
//!
//! Every node of a [`Harness`] serves the same certificate with the same
//! `https-session-context`, so a session is valid on every node once it has
//! been replicated (or pulled).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, NamedGroup};
use serde_json::Value;

use crate::backends::{self, Backend};
use crate::client::{self, Tls};
use crate::openssl::{s_client, Session};
use crate::pki::Leaf;
use crate::ports::on_free_udp_ports;
use crate::udp_proxy::XorShift;
use crate::{NotReady, Pki, Router};

/// The session context every node shares.
pub const CONTEXT: &str = "cachet-cluster-test";
/// Bound on waiting for replication to show in a node's stats.
pub const SETTLE: Duration = Duration::from_secs(60);
/// The server name every client asks for (the certificate's).
pub const NAME: &str = "localhost";
/// `cache-udp-pull-timeout` of every node.
pub const PULL_TIMEOUT_MS: &str = "5000";

/// One cluster test at a time: each starts several routers. (A tokio
/// mutex: held across awaits, and not poisoned by a failed test.)
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// What every node of a test shares: CA, certificate, backend, key files.
/// While a harness lives no other cluster test runs (it holds [`serial`]'s
/// lock): a test declares its routers after its harness, so that they are
/// gone before the next test starts its own.
pub struct Harness {
    pub pki: Pki,
    pub leaf: Leaf,
    pub backend: Backend,
    pub key: PathBuf,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Harness {
    /// Waits for the cluster tests before it, then sets up this one's.
    pub async fn new() -> Harness {
        let _serial = serial().await;
        let pki = Pki::new();
        let leaf = pki.leaf("node", &[NAME]);
        let backend = backends::uwsgi("app").await;
        let key = write_key(pki.dir(), "cluster-sync.key", &key_secret(1));
        Harness {
            pki,
            leaf,
            backend,
            key,
            _serial,
        }
    }

    /// The arguments of a node listening for sync on `server` and pushing
    /// to `peers`, with the cluster key `key`.
    pub fn args(&self, server: SocketAddr, peers: &[SocketAddr], key: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "--https",
            &self.leaf.https("127.0.0.1:0"),
            "--http-to",
            &self.backend.uwsgi_to(),
            "--cache",
            "20000",
            "--ssl-sessions-use-cache",
            "--ssl-sessions-timeout",
            "300",
            "--https-session-context",
            CONTEXT,
            "--stats",
            "127.0.0.1:0",
            "--cache-udp-server",
            &server.to_string(),
            "--cache-udp-key",
            &key.display().to_string(),
            // Pulls end at the first answer; this only bounds a wait on a
            // peer that is gone, and must not cut short a slow answer on a
            // loaded test machine.
            "--cache-udp-pull-timeout",
            PULL_TIMEOUT_MS,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for peer in peers {
            args.push("--cache-udp-node".to_owned());
            args.push(peer.to_string());
        }
        args
    }

    pub fn start(&self, server: SocketAddr, peers: &[SocketAddr]) -> Router {
        start_node(&self.args(server, peers, &self.key))
    }

    /// Like [`Harness::start`], for nodes started on [`on_free_udp_ports`].
    pub fn try_start(&self, server: SocketAddr, peers: &[SocketAddr]) -> Result<Router, NotReady> {
        try_node(&self.args(server, peers, &self.key))
    }

    /// A rustls client that hands out TLS 1.3 tickets oldest first.
    pub fn client(&self, version: Tls) -> Arc<ClientConfig> {
        fifo_config(&self.pki, version)
    }
}

/// `args` without `option` and its value.
pub fn without(mut args: Vec<String>, option: &str) -> Vec<String> {
    let at = args
        .iter()
        .position(|a| a == option)
        .unwrap_or_else(|| panic!("no {option} in {args:?}"));
    args.drain(at..at + 2);
    args
}

impl Harness {
    /// `openssl s_client` with TLS 1.3 on `addr`, offering the session
    /// saved in `sess_in` (if any) and saving the one it ends with in
    /// `sess_out`.
    pub fn s_client13(&self, addr: SocketAddr, sess_in: Option<&Path>, sess_out: &Path) -> Session {
        let (kind, out) = s_client(addr, "-tls1_3", NAME, &self.pki.ca_pem, sess_in, sess_out);
        assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
        kind
    }
}

/// The ticket race, `rounds` times: each round, a TLS 1.3 ticket made on
/// one router (`openssl s_client`) is offered by two more s_clients,
/// released together behind a barrier, to two routers: every other round
/// the issuer and another, else two others. Rounds run two at a time.
/// Returns how the rounds ended.
pub fn ticket_race(h: &Harness, addrs: &[SocketAddr], rounds: usize) -> RaceTally {
    const PARALLEL: usize = 2;
    assert!(addrs.len() >= 3, "the race needs three routers");
    let dir = h.pki.dir();
    std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..PARALLEL)
            .map(|lane| {
                scope.spawn(move || {
                    (lane..rounds)
                        .step_by(PARALLEL)
                        .map(|round| race_round(h, addrs, dir, round))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let resumed: Vec<usize> = lanes
            .into_iter()
            .flat_map(|lane| lane.join().expect("a race thread panicked"))
            .collect();
        RaceTally {
            rounds,
            once: resumed.iter().filter(|&&r| r == 1).count(),
            twice: resumed.iter().filter(|&&r| r > 1).count(),
        }
    })
}

/// How the rounds of a [`ticket_race`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceTally {
    pub rounds: usize,
    /// Tickets that resumed on exactly one router...
    pub once: usize,
    /// ...and on both: what must never happen.
    pub twice: usize,
}

impl RaceTally {
    /// Fails the test if a ticket resumed twice, or fewer than 99% of
    /// them once; `context` goes with the failure.
    pub fn assert_once_each(&self, context: &str) {
        let RaceTally {
            rounds,
            once,
            twice,
        } = *self;
        eprintln!("ticket race: {once} of {rounds} resumed once, {twice} twice");
        assert_eq!(
            twice, 0,
            "tickets resumed twice: {twice} of {rounds}; {context}"
        );
        assert!(
            once * 100 >= rounds * 99,
            "only {once} of {rounds} tickets resumed once; {context}"
        );
    }
}

/// One round of [`ticket_race`]; returns how many resumed.
fn race_round(h: &Harness, addrs: &[SocketAddr], dir: &Path, round: usize) -> usize {
    let n = addrs.len();
    let issuer = round % n;
    let (next, after) = ((issuer + 1) % n, (issuer + 2) % n);
    let targets = if round % 2 == 0 {
        [next, after]
    } else {
        [issuer, next]
    };
    let ticket = dir.join(format!("race{round}.pem"));
    assert_eq!(h.s_client13(addrs[issuer], None, &ticket), Session::New);
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let offers: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, &target)| {
                let (barrier, ticket) = (&barrier, &ticket);
                let out = dir.join(format!("race{round}-{i}.pem"));
                scope.spawn(move || {
                    barrier.wait();
                    h.s_client13(addrs[target], Some(ticket), &out) == Session::Reused
                })
            })
            .collect();
        offers
            .into_iter()
            .map(|offer| usize::from(offer.join().expect("an offer panicked")))
            .sum()
    })
}

/// A cluster key derived from `seed`.
pub fn key_secret(seed: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    XorShift::new(seed).fill(&mut key);
    key
}

/// Writes a key file: the key's 64 hex characters, with surrounding
/// whitespace (which must be ignored).
pub fn write_key(dir: &Path, name: &str, secret: &[u8; 32]) -> PathBuf {
    write_keys(dir, name, &[*secret])
}

/// Writes a key file of several keys, one per line in order (the first
/// seals), with blank lines and surrounding whitespace (which must be
/// ignored). Written whole to a temporary name and renamed into place, so
/// a router reading it on SIGHUP never sees half a file.
pub fn write_keys(dir: &Path, name: &str, secrets: &[[u8; 32]]) -> PathBuf {
    let text: String = secrets
        .iter()
        .map(|secret| format!("  {}\n\n", key_hex(secret)))
        .collect();
    let path = dir.join(name);
    let partial = dir.join(format!("{name}.partial"));
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

/// A key as `cachet keygen` prints it: 64 lower-case hex characters.
pub fn key_hex(secret: &[u8; 32]) -> String {
    secret.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn start_node(args: &[String]) -> Router {
    try_node(args).unwrap_or_else(|error| panic!("{error}"))
}

pub fn try_node(args: &[String]) -> Result<Router, NotReady> {
    try_node_with_env(args, &[])
}

/// [`try_node`] with extra environment variables.
pub fn try_node_with_env(args: &[String], env: &[(&str, String)]) -> Result<Router, NotReady> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let router = Router::try_start_with_env(args, &env)?;
    assert!(
        router.sync.is_some() || !args.iter().any(|a| a == "--cache-udp-server"),
        "no `cachet: listening sync` line:\n{}",
        router.log()
    );
    Ok(router)
}

/// The node's bound sync address, from its `cachet: listening sync` line.
pub fn sync_addr(router: &Router) -> SocketAddr {
    router
        .sync
        .unwrap_or_else(|| panic!("no sync listener:\n{}", router.log()))
}

/// The node's `sync` stats object.
pub fn sync(router: &Router) -> Value {
    let stats = router.stats();
    assert_eq!(stats["sync"]["enabled"], true, "{stats:#}");
    stats["sync"].clone()
}

/// `router`'s entry for the peer at sync address `addr`, if it lists one.
pub fn peer(router: &Router, addr: SocketAddr) -> Option<Value> {
    let addr = addr.to_string();
    sync(router)["peers"]
        .as_array()
        .expect("sync.peers is a list")
        .iter()
        .find(|peer| peer["addr"] == addr.as_str())
        .cloned()
}

/// Sets `router` applied from peers' pushes, leaving out the sessions
/// that came as answers to its bootstrap requests (a node that started
/// before its peers keeps asking until they answer, at times of their
/// choosing, which must not pass for the push a test waits for).
pub fn pushed_sets(router: &Router) -> u64 {
    let s = sync(router);
    crate::counter(&s, "applied_sets") - crate::counter(&s, "bootstrap_entries_received")
}

/// A full mesh of `count` nodes: every node lists every other.
pub fn mesh(h: &Harness, count: usize) -> (Vec<Router>, Vec<SocketAddr>) {
    mesh_of(count, |_, addr, peers| h.args(addr, peers, &h.key))
}

/// A full mesh of `count` nodes, node `i` started with `args(i, its sync
/// address, its peers)`.
pub fn mesh_of(
    count: usize,
    args: impl Fn(usize, SocketAddr, &[SocketAddr]) -> Vec<String>,
) -> (Vec<Router>, Vec<SocketAddr>) {
    mesh_with_env(count, args, |_| Vec::new())
}

/// [`mesh_of`], node `i` started with the extra environment `env(i)`.
pub fn mesh_with_env(
    count: usize,
    args: impl Fn(usize, SocketAddr, &[SocketAddr]) -> Vec<String>,
    env: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> (Vec<Router>, Vec<SocketAddr>) {
    on_free_udp_ports(count, |addrs| {
        let mut nodes = Vec::new();
        for (i, &addr) in addrs.iter().enumerate() {
            let peers: Vec<SocketAddr> = addrs.iter().copied().filter(|&a| a != addr).collect();
            let node = try_node_with_env(&args(i, addr, &peers), &env(i))?;
            assert_eq!(sync_addr(&node), addrs[i]);
            nodes.push(node);
        }
        Ok((nodes, addrs.to_vec()))
    })
}

/// A client session store that keeps every TLS 1.3 ticket and hands them
/// out oldest first, so a test decides which node's ticket a connection
/// offers (rustls' own store offers the newest).
#[derive(Default)]
pub struct FifoSessions {
    inner: Mutex<FifoInner>,
}

#[derive(Default)]
pub struct FifoInner {
    kx: Vec<(ServerName<'static>, NamedGroup)>,
    tls12: Vec<(ServerName<'static>, Tls12ClientSessionValue)>,
    tls13: Vec<(ServerName<'static>, VecDeque<Tls13ClientSessionValue>)>,
}

impl std::fmt::Debug for FifoSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FifoSessions")
    }
}

pub fn upsert<T>(list: &mut Vec<(ServerName<'static>, T)>, name: ServerName<'static>, value: T) {
    match list.iter_mut().find(|(n, _)| *n == name) {
        Some(entry) => entry.1 = value,
        None => list.push((name, value)),
    }
}

impl ClientSessionStore for FifoSessions {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        upsert(&mut self.inner.lock().unwrap().kx, name, group);
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        let inner = self.inner.lock().unwrap();
        inner.kx.iter().find(|(n, _)| n == name).map(|(_, g)| *g)
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        upsert(&mut self.inner.lock().unwrap().tls12, name, value);
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        let inner = self.inner.lock().unwrap();
        inner
            .tls12
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.lock().unwrap().tls12.retain(|(n, _)| n != name);
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut inner = self.inner.lock().unwrap();
        match inner.tls13.iter_mut().find(|(n, _)| *n == name) {
            Some((_, tickets)) => tickets.push_back(value),
            None => inner.tls13.push((name, VecDeque::from([value]))),
        }
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let mut inner = self.inner.lock().unwrap();
        inner
            .tls13
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, tickets)| tickets.pop_front())
    }
}

/// A client trusting the test CA, pinned to `version`, HTTP/1.1, with its
/// own [`FifoSessions`].
pub fn fifo_config(pki: &Pki, version: Tls) -> Arc<ClientConfig> {
    with_fifo_sessions(&client::config(pki, version, &[b"http/1.1"]))
}

/// [`fifo_config`] for a client whose clock stopped when it was made: it
/// offers every ticket it holds however old (what a client replaying a
/// captured ticket does), so only the server can refuse it.
pub fn stopped_clock_config(pki: &Pki, version: Tls) -> Arc<ClientConfig> {
    let clock = Arc::new(StoppedClock(UnixTime::now()));
    with_fifo_sessions(&client::config_with_clock(
        pki,
        version,
        &[b"http/1.1"],
        clock,
    ))
}

fn with_fifo_sessions(config: &ClientConfig) -> Arc<ClientConfig> {
    let mut config = config.clone();
    config.resumption = Resumption::store(Arc::new(FifoSessions::default()));
    Arc::new(config)
}

/// A clock that always says the same time.
#[derive(Debug)]
pub struct StoppedClock(pub UnixTime);

impl TimeProvider for StoppedClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// One GET through `addr`; returns whether the handshake resumed.
pub async fn resumes(config: &Arc<ClientConfig>, addr: SocketAddr) -> bool {
    let exchange = client::get(config, addr, NAME, "/").await;
    assert_eq!(exchange.status, 200, "{}", exchange.text());
    exchange.resumed
}

/// Runs `work` on each item with at most `limit` at a time; returns the
/// results in the items' order.
pub async fn run_bounded<T, R, F, Fut>(limit: usize, items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let semaphore = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut handles = Vec::with_capacity(items.len());
    for item in items {
        let permit = Arc::clone(&semaphore).acquire_owned().await.unwrap();
        let job = work(item);
        handles.push(tokio::spawn(async move {
            let result = job.await;
            drop(permit);
            result
        }));
    }
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("a client task panicked"));
    }
    results
}
