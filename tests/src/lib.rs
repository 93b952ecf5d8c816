//! End-to-end test harness: runs the real `cachet` binary on loopback and
//! talks to it with real clients and backends.
//!
//! - [`cachet_bin`] builds the binary once per test process (`cargo build -p
//!   cachet` into the same target directory), so `cargo test --workspace`
//!   works on a clean checkout and never runs a stale binary.
//! - [`Router`] starts it, learns the ports it bound (port 0 everywhere) from
//!   its `cachet: listening KIND ADDR` lines ([`log`] reads them), and kills
//!   it on drop.
//! - [`Pki`] issues certificates from a test CA with rcgen.
//! - [`backends`] holds in-process uwsgi and HTTP backends that answer with
//!   what they received, as JSON; [`client`] the TLS and HTTP clients.
//! - [`uwsgi_app`] runs a real uWSGI application server as a backend;
//!   [`curl`], [`h2load`] and [`openssl`] drive third-party clients, which
//!   [`tools`] requires and runs bounded in time; [`haproxy`] runs HAProxy
//!   as a TCP balancer in front of routers.
//! - [`ports`]: an address that refuses connections, and free UDP ports for
//!   cluster nodes that must know each other before they start.
//!
//! Nothing here waits a fixed time for something to happen: waits are on
//! conditions ([`wait_until`]), bounded by deadlines far above what a
//! loaded two-core machine needs.

pub mod backends;
pub mod client;
pub mod cluster;
pub mod curl;
pub mod faketime;
pub mod h2load;
pub mod haproxy;
pub mod log;
pub mod open_files;
pub mod openssl;
pub mod pki;
pub mod ports;
pub mod redis_server;
pub mod sync_tap;
pub mod tools;
pub mod udp_proxy;
pub mod uwsgi;
pub mod uwsgi_app;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use pki::Pki;

use log::Line;

/// How long a router may take to print `cachet: ready` on a loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a `cachet` run that should exit by itself, and on a router's
/// exit after SIGTERM (its drain deadline is 10 s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on reading the stats document.
const STATS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a router may take to log a line a test waits for (a reload's).
const LOG_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it holds or `timeout` passes; returns whether it
/// held (checked once more at the deadline).
pub async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    check()
}

/// [`wait_until`] for code outside a runtime.
pub fn wait_until_blocking(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    check()
}

/// The simplest router: `leaf` on an HTTPS socket (any port) in front of
/// `to` (an `http-to` value), then the test's own `extra` options.
pub fn router_args(leaf: &pki::Leaf, to: &str, extra: &[&str]) -> Vec<String> {
    let https = leaf.https("127.0.0.1:0");
    ["--https", &https, "--http-to", to]
        .iter()
        .chain(extra)
        .map(|arg| arg.to_string())
        .collect()
}

/// The router most resumption tests start: [`router_args`] with a cache of
/// `items` sessions that TLS sessions go to and a stats socket, then the
/// test's own `extra` options.
pub fn cached_router_args(leaf: &pki::Leaf, to: String, items: u32, extra: &[&str]) -> Vec<String> {
    let items = items.to_string();
    let cache = [
        "--cache",
        &items,
        "--ssl-sessions-use-cache",
        "--stats",
        "127.0.0.1:0",
    ];
    router_args(leaf, &to, &[&cache[..], extra].concat())
}

/// One HTTP/1.1 GET to `addr` (a stats-http socket): the response head and
/// body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STATS_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: stats\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    (head.to_owned(), body.to_owned())
}

/// Waits (bounded by [`EXIT_TIMEOUT`]) for `child` to exit.
fn exit_status(child: &mut Child) -> Option<ExitStatus> {
    let mut status = None;
    wait_until_blocking(EXIT_TIMEOUT, || {
        status = child.try_wait().expect("waiting for cachet");
        status.is_some()
    });
    status
}

/// Asserts that `text` holds every one of `needles`; a failure names the
/// missing one and shows `text`.
#[track_caller]
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

/// A counter of a stats object, which must be there.
pub fn counter(object: &serde_json::Value, field: &str) -> u64 {
    object[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {field:?} in {object:#}"))
}

/// A `sync` object's rejections, those of two races a node runs by design
/// left out, so that a test can ask for nothing else rejected:
/// - replays: a process's datagram sealed just before its master vouched
///   for it to a peer, and sent just after, is refused by that peer as a
///   replay: the vouch may not cover a number sealed before it
///   (`host/src/shared/senders.rs`), and the datagram's records go again
///   under new numbers;
/// - unverified senders: a node applies no change from a sender it has not
///   verified since it started (`cachet_core::sync`, replay safety across
///   restarts), so a session pushed by a newly started peer before that
///   peer answered the node's challenge is refused, and the sender
///   challenged.
///
/// Races of microseconds that a loaded machine stretches.
pub fn rejected_but_races(sync: &serde_json::Value) -> u64 {
    counter(sync, "rejected")
        - counter(sync, "rejected_replay")
        - counter(sync, "rejected_unverified")
}

/// The `cachet` binary, built on first use.
pub fn cachet_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CACHET_BIN") {
            return PathBuf::from(bin);
        }
        // current_exe is <target>/<profile>/deps/<test>-<hash>.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binaries live in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build
            .args(["build", "--quiet", "-p", "cachet", "--bin", "cachet"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            // cargo sets these for the test process; build scripts that watch
            // them would otherwise see a change between this build and a
            // plain `cargo build`, and rebuild every time.
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("CARGO_PKG_NAME")
            .env_remove("CARGO_CRATE_NAME")
            .env_remove("CARGO_PRIMARY_PACKAGE")
            .env_remove("CARGO_TARGET_TMPDIR");
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("running `cargo build -p cachet` for the end-to-end tests");
        assert!(status.success(), "`cargo build -p cachet` failed");
        let bin = profile_dir.join("cachet");
        assert!(bin.is_file(), "no cachet binary at {}", bin.display());
        bin
    })
}

/// The repository root (for `examples/`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
}

/// A file `name` holding `text`, alone in a fresh temporary directory,
/// which lasts as long as the returned handle.
pub fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    (dir, path)
}

/// Runs `cachet ARGS` to completion, for option errors, --help and --version.
/// Bounded: a cachet that unexpectedly starts serving is killed and the
/// test fails.
pub fn run_to_exit(args: &[&str]) -> Output {
    tools::run_bounded(Command::new(cachet_bin()).args(args), b"", EXIT_TIMEOUT)
}

/// [`run_to_exit`]'s exit code (it must have exited, not been killed) and
/// standard error.
pub fn exit_code_and_stderr(args: &[&str]) -> (i32, String) {
    let output = run_to_exit(args);
    (
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A router that did not become ready: it exited, or it did not print
/// `cachet: ready` within the startup timeout.
#[derive(Debug)]
pub struct NotReady {
    pub args: Vec<std::ffi::OsString>,
    pub status: Option<ExitStatus>,
    pub log: String,
}

impl NotReady {
    /// Whether it failed because an address it was given is taken: a port
    /// chosen free a moment before (see [`ports::free_udp`]) that something
    /// else bound meanwhile.
    pub fn address_in_use(&self) -> bool {
        self.log.contains("Address already in use") || self.log.contains("os error 98")
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cachet {:?} did not become ready within {STARTUP_TIMEOUT:?} (exit: {:?}); stderr:\n{}",
            self.args, self.status, self.log
        )
    }
}

impl std::error::Error for NotReady {}

/// A running router, killed when dropped.
pub struct Router {
    child: Child,
    pub https: Vec<SocketAddr>,
    pub stats: Option<SocketAddr>,
    pub stats_http: Option<SocketAddr>,
    /// `cache-udp-server`'s bound address.
    pub sync: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

impl Router {
    /// Starts `cachet ARGS` and waits until it is ready.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Router {
        Router::start_with_env(args, &[])
    }

    /// Like [`Router::start`], with extra environment variables.
    pub fn start_with_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Router {
        Router::try_start_with_env(args, env).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like [`Router::start`], returning what went wrong instead of
    /// panicking, for callers that can try again (see
    /// [`ports::on_free_udp_ports`]).
    pub fn try_start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<Router, NotReady> {
        Router::try_start_with_env(args, &[])
    }

    pub fn try_start_with_env<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        env: &[(&str, &str)],
    ) -> Result<Router, NotReady> {
        let mut child = Command::new(cachet_bin())
            .args(args)
            // `env` may name its own RUST_LOG (debug lines a test reads).
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting cachet");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            // Keeps reading for the router's whole life so its stderr never fills.
            std::thread::spawn(move || {
                let mut ready_tx = Some(ready_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    if line == "cachet: ready" {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            });
        }
        let mut router = Router {
            child,
            https: Vec::new(),
            stats: None,
            stats_http: None,
            sync: None,
            log,
        };
        if ready_rx.recv_timeout(STARTUP_TIMEOUT).is_err() {
            // Killed (on drop) first, so that the log is complete.
            let status = router.child.try_wait().ok().flatten();
            let log = router.log();
            return Err(NotReady {
                args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
                status,
                log,
            });
        }
        let log = router.log();
        for line in log.lines().filter(|l| l.starts_with("cachet: listening ")) {
            let Line::Listening { kind, addr } =
                Line::parse(line).unwrap_or_else(|bad| panic!("{bad}; stderr:\n{log}"))
            else {
                unreachable!("a listening line");
            };
            match kind {
                "https" => router.https.push(addr),
                "stats" => router.stats = Some(addr),
                "stats-http" => router.stats_http = Some(addr),
                "sync" => router.sync = Some(addr),
                other => panic!("unknown listener kind {other}"),
            }
        }
        Ok(router)
    }

    /// The first https address.
    pub fn addr(&self) -> SocketAddr {
        self.https[0]
    }

    /// Everything the router wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stats document from the `stats` socket.
    pub fn stats(&self) -> serde_json::Value {
        let addr = self.stats.expect("router started without --stats");
        let mut stream = std::net::TcpStream::connect(addr).expect("connecting to stats");
        stream.set_read_timeout(Some(STATS_TIMEOUT)).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("reading stats");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats is not JSON ({e}):\n{text}"))
    }

    /// The Prometheus text from the `stats-http` socket.
    pub fn metrics(&self) -> String {
        let addr = self
            .stats_http
            .expect("router started without --stats-http");
        let (head, body) = http_get(addr, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body
    }

    /// Sessions in the first cache, from stats.
    pub fn cache_items(&self) -> u64 {
        counter(&self.stats()["caches"][0], "items")
    }

    /// Waits (bounded by `timeout`) until the log has a line containing
    /// `needle`; returns whether it came. (Blocking: in async code, use
    /// [`wait_until`] with [`Router::log`].)
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until_blocking(timeout, || self.log().contains(needle))
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Waits (bounded) until the log has `count` lines equal to `line`.
    pub async fn wait_for_lines(&self, line: &str, count: usize) {
        let arrived = wait_until(LOG_TIMEOUT, || {
            self.log().lines().filter(|l| *l == line).count() >= count
        })
        .await;
        assert!(
            arrived,
            "no {count} `{line}` lines within {LOG_TIMEOUT:?}; log:\n{}",
            self.log()
        );
    }

    /// SIGHUP, then waits for the `count`-th `cachet: reloaded` (one per
    /// worker and reload).
    pub async fn reload(&self, count: usize) {
        self.hangup();
        self.wait_for_lines("cachet: reloaded", count).await;
    }

    /// The current pid of each worker, from the master's
    /// `cachet: worker N pid P` lines (the latest line per worker wins).
    pub fn worker_pids(&self) -> std::collections::BTreeMap<usize, u32> {
        let log = self.log();
        log.lines()
            .filter(|line| line.starts_with("cachet: worker "))
            .filter_map(|line| match Line::parse(line) {
                Ok(Line::Worker { id, pid }) => Some((id, pid)),
                Ok(_) => None,
                Err(bad) => panic!("{bad}; stderr:\n{log}"),
            })
            .collect()
    }

    /// Kills worker `id` (SIGKILL), which must be alive; its pid.
    pub fn kill_worker(&self, id: usize) -> u32 {
        let pid = self.worker_pids()[&id];
        assert!(
            try_signal(pid, "KILL"),
            "worker {id} (pid {pid}) died before it was killed:\n{}",
            self.log()
        );
        pid
    }

    /// Waits (bounded by `timeout`) until the master has started a worker
    /// `id` other than `old`; its pid.
    pub async fn wait_for_new_worker(&self, id: usize, old: u32, timeout: Duration) -> u32 {
        let mut new = None;
        wait_until(timeout, || {
            new = self
                .worker_pids()
                .get(&id)
                .copied()
                .filter(|&pid| pid != old);
            new.is_some()
        })
        .await;
        new.unwrap_or_else(|| {
            panic!(
                "worker {id} (pid {old}) not replaced within {timeout:?}:\n{}",
                self.log()
            )
        })
    }

    /// Sends `signal` (a name `kill` knows: `HUP`, `TERM`, ...) to the
    /// router's first process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(self) -> ExitStatus {
        self.signal("TERM");
        self.wait_for_exit()
    }

    /// Waits (bounded) for the router to exit by itself, or once told to.
    pub fn wait_for_exit(mut self) -> ExitStatus {
        exit_status(&mut self.child).unwrap_or_else(|| {
            panic!(
                "cachet did not exit within {EXIT_TIMEOUT:?}:\n{}",
                self.log()
            )
        })
    }
}

/// `kill -SIGNAL PID` (`signal` as `kill` names it: `KILL`, `STOP`, ...),
/// which must succeed.
pub fn send_signal(pid: u32, signal: &str) {
    assert!(try_signal(pid, signal), "kill -{signal} {pid} failed");
}

/// `kill -SIGNAL PID`; whether the process was there to signal.
pub fn try_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("running kill")
        .success()
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Only the first process makes them (workers inherit its objects).
        faketime::remove_leftovers(self.child.id());
    }
}
