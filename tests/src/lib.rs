//! End-to-end test harness: runs the real `cachet` binary on loopback and
//! talks to it with real clients and backends.
//!
//! - [`cachet_bin`] builds the binary once per test process (`cargo build -p
//!   cachet` into the same target directory), so `cargo test --workspace`
//!   works on a clean checkout and never runs a stale binary.
//! - [`Router`] starts it, learns the ports it bound (port 0 everywhere) from
//!   its `cachet: listening KIND ADDR` lines, and kills it on drop.
//! - [`Pki`] issues certificates from a test CA with rcgen.
//! - [`backends`] holds in-process uwsgi and HTTP backends that answer with
//!   what they received, as JSON; [`client`] the TLS and HTTP clients.
//! - [`uwsgi_app`] runs a real uWSGI application server as a backend;
//!   [`curl`], [`h2load`] and [`openssl`] drive third-party clients, which
//!   [`tools`] requires and runs bounded in time; [`haproxy`] runs HAProxy
//!   as a TCP balancer in front of routers.

pub mod backends;
pub mod client;
pub mod curl;
pub mod h2load;
pub mod haproxy;
pub mod openssl;
pub mod pki;
pub mod tools;
pub mod udp_proxy;
pub mod uwsgi_app;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

pub use pki::Pki;

/// How long a router may take to print `cachet: ready` on a loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a router may take to log a line a test waits for (a reload's).
const LOG_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 GET to `addr` (a stats-http socket): the response head and
/// body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
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

/// A counter of a stats object, which must be there.
pub fn counter(object: &serde_json::Value, field: &str) -> u64 {
    object[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {field:?} in {object:#}"))
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

/// Runs `cachet ARGS` to completion, for option errors, --help and --version.
pub fn run_to_exit(args: &[&str]) -> Output {
    let mut child = Command::new(cachet_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cachet");
    // Bounded: a cachet that unexpectedly starts serving is killed.
    for _ in 0..200 {
        if child.try_wait().expect("waiting for cachet").is_some() {
            return child.wait_with_output().expect("cachet's output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("cachet's output");
    panic!(
        "cachet {args:?} did not exit within 20s; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

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
            let status = router.child.try_wait().ok().flatten();
            panic!(
                "cachet {:?} did not become ready (exit: {status:?}); stderr:\n{}",
                args.iter()
                    .map(|a| a.as_ref().to_owned())
                    .collect::<Vec<_>>(),
                router.log()
            );
        }
        for line in router.log().lines() {
            let Some(rest) = line.strip_prefix("cachet: listening ") else {
                continue;
            };
            let (kind, addr) = rest.split_once(' ').expect("KIND ADDR");
            let addr: SocketAddr = addr.parse().expect("a socket address");
            match kind {
                "https" => router.https.push(addr),
                "stats" => router.stats = Some(addr),
                "stats-http" => router.stats_http = Some(addr),
                "sync" => router.sync = Some(addr),
                other => panic!("unknown listener kind {other}"),
            }
        }
        router
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
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
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
    /// `needle`; returns whether it came.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Waits (bounded) until the log has `count` lines equal to `line`.
    pub async fn wait_for_lines(&self, line: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + LOG_TIMEOUT;
        loop {
            let log = self.log();
            if log.lines().filter(|l| *l == line).count() >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {count} `{line}` lines within {LOG_TIMEOUT:?}; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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
        self.log()
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cachet: worker ")?;
                let (id, pid) = rest.split_once(" pid ")?;
                Some((id.parse().ok()?, pid.trim().parse().ok()?))
            })
            .collect()
    }

    /// Sends `signal` (a name `kill` knows: `HUP`, `TERM`, ...) to the
    /// router's first process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait_for_exit()
    }

    /// Waits (bounded) for the router to exit by itself.
    pub fn wait_for_exit(mut self) -> std::process::ExitStatus {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("waiting for cachet") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cachet did not exit within 30s:\n{}", self.log());
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address on which nothing listens: a port that was just released.
pub fn refused_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding a throwaway port")
}
