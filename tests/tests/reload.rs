//! SIGHUP reloads certificates and the backend list: a new certificate is
//! served to new connections while an open connection goes on; a broken
//! certificate changes nothing; a new backend list takes effect, sessions
//! made before the reload still resume, and changes that need a restart are
//! refused with a warning. With worker processes, the master passes SIGHUP
//! on and every worker reloads.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachet_tests::backends;
use cachet_tests::client::{self, Tls, EXCHANGE_TIMEOUT};
use cachet_tests::pki::Leaf;
use cachet_tests::{Pki, Router};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;

/// Bound on waiting for a worker's replacement.
const SETTLE: Duration = Duration::from_secs(60);

/// A router configured by an ini file in a directory of its own, serving
/// `server.crt`/`server.key` from that directory.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(leaf: &Leaf) -> Self {
        let setup = Setup {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        setup.install(leaf);
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Copies `leaf`'s files over the served ones.
    fn install(&self, leaf: &Leaf) {
        copy(&leaf.crt, &self.path("server.crt"));
        copy(&leaf.key, &self.path("server.key"));
    }

    /// Writes the ini file: the https socket, then `rest`.
    fn write_ini(&self, rest: &str) -> PathBuf {
        let ini = self.path("router.ini");
        std::fs::write(
            &ini,
            format!("[uwsgi]\nhttps = 127.0.0.1:0,server.crt,server.key\n{rest}"),
        )
        .expect("writing the ini file");
        ini
    }

    fn start(&self, rest: &str) -> Router {
        let ini = self.write_ini(rest);
        Router::start(&[OsStr::new("--ini"), ini.as_os_str()])
    }
}

/// Where most reload tests start: two certificates for `localhost`, A
/// served and B to install, and a router on A in front of the uwsgi backend
/// "app", with the ini lines `rest` after its `http-to`.
struct OnA {
    pki: Pki,
    a: Leaf,
    b: Leaf,
    backend: backends::Backend,
    setup: Setup,
    router: Router,
}

impl OnA {
    async fn start(rest: &str) -> OnA {
        let pki = Pki::new();
        let a = pki.leaf("a", &["localhost"]);
        let b = pki.leaf("b", &["localhost"]);
        let backend = backends::uwsgi("app").await;
        let setup = Setup::new(&a);
        let router = setup.start(&format!("http-to = {}\n{rest}", backend.uwsgi_to()));
        OnA {
            pki,
            a,
            b,
            backend,
            setup,
            router,
        }
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}

/// The leaf certificate a new connection is served.
async fn served_leaf(config: &Arc<ClientConfig>, router: &Router) -> CertificateDer<'static> {
    let tls = tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        client::connect(config, router.addr(), "localhost"),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
}

/// An HTTP/1.1 keep-alive connection kept open across reloads.
struct Kept {
    sender: SendRequest<Full<Bytes>>,
    leaf: CertificateDer<'static>,
}

impl Kept {
    async fn open(config: &Arc<ClientConfig>, router: &Router) -> Kept {
        let tls = client::connect(config, router.addr(), "localhost")
            .await
            .expect("handshake");
        let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        Kept { sender, leaf }
    }

    /// One request on this connection: status and the answering backend.
    async fn get(&mut self) -> (http::StatusCode, String) {
        let exchange = async {
            self.sender.ready().await?;
            let request = Request::get("/")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let backend = response
                .headers()
                .get("x-backend")
                .map(|name| name.to_str().unwrap().to_owned())
                .unwrap_or_default();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, backend))
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .expect("a response in time")
            .expect("a response on the kept connection")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_certificate_without_breaking_an_open_connection() {
    let OnA {
        pki,
        a,
        b,
        setup,
        router,
        // Bound, so that it lives as long as the test.
        backend: _backend,
    } = OnA::start("cache = 100\nssl-sessions-use-cache = true\n").await;

    for version in [Tls::V12, Tls::V13] {
        let config = client::config(&pki, version, &[b"http/1.1"]);
        assert_eq!(served_leaf(&config, &router).await, a.der);
    }
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    let mut kept = Kept::open(&config, &router).await;
    assert_eq!(kept.leaf, a.der);
    assert_eq!(kept.get().await.0, 200);

    setup.install(&b);
    router.reload(1).await;

    for version in [Tls::V12, Tls::V13] {
        let config = client::config(&pki, version, &[b"http/1.1"]);
        assert_eq!(
            served_leaf(&config, &router).await,
            b.der,
            "a new connection after the reload gets the new certificate"
        );
        let exchange = client::get(&config, router.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 200, "{}", exchange.text());
    }
    // The connection opened under A goes on serving requests.
    for _ in 0..3 {
        assert_eq!(kept.get().await, (http::StatusCode::OK, "app".to_owned()));
    }
    let log = router.log();
    assert!(!log.contains("cachet: reload failed"), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_changes_nothing() {
    let OnA {
        pki,
        a,
        b,
        backend: _backend,
        setup,
        router,
    } = OnA::start("").await;
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    let mut kept = Kept::open(&config, &router).await;

    // A key that is not a key.
    std::fs::write(setup.path("server.key"), "not a key\n").unwrap();
    router.hangup();
    router.wait_for_lines("cachet: reload failed", 1).await;
    let log = router.log();
    let key = setup.path("server.key").display().to_string();
    assert!(
        log.lines()
            .any(|line| line.contains("reload failed") && line.contains(&key)),
        "the error names {key}:\n{log}"
    );
    assert_eq!(served_leaf(&config, &router).await, a.der);

    // A certificate file that is gone.
    std::fs::remove_file(setup.path("server.crt")).unwrap();
    router.hangup();
    router.wait_for_lines("cachet: reload failed", 2).await;
    let log = router.log();
    assert!(
        log.lines()
            .filter(|line| line.contains("reload failed"))
            .any(|line| line.contains("server.crt")),
        "the error names server.crt:\n{log}"
    );
    assert_eq!(served_leaf(&config, &router).await, a.der);
    assert_eq!(kept.get().await.0, 200);

    // Repaired: the next SIGHUP applies it.
    setup.install(&b);
    router.reload(1).await;
    assert_eq!(served_leaf(&config, &router).await, b.der);
    assert_eq!(kept.get().await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_backend_list_takes_effect_and_sessions_survive() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["localhost"]);
    let one = backends::uwsgi("one").await;
    let two = backends::http("two").await;
    let setup = Setup::new(&a);
    let router = setup.start(&format!(
        "http-to = {}\ncache = 100\nssl-sessions-use-cache = true\nstats = 127.0.0.1:0\n",
        one.uwsgi_to()
    ));
    let mut kept = Kept::open(&client::config(&pki, Tls::V13, &[b"http/1.1"]), &router).await;
    assert_eq!(kept.get().await, (http::StatusCode::OK, "one".to_owned()));

    // A session per TLS version, made before the reload.
    let configs = [Tls::V12, Tls::V13].map(|version| client::config(&pki, version, &[b"h2"]));
    for config in &configs {
        let exchange = client::get(config, router.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 200, "{}", exchange.text());
        assert_eq!(exchange.headers["x-backend"], "one");
    }

    // Another backend, and a cache size that cannot change live.
    setup.write_ini(&format!(
        "http-to = {}\ncache = 200\nssl-sessions-use-cache = true\nstats = 127.0.0.1:0\n",
        two.http_to()
    ));
    router.reload(1).await;
    let log = router.log();
    assert!(
        log.lines()
            .any(|line| line.contains("`cache`") && line.contains("keeping the running value 100")),
        "a refused change names its option:\n{log}"
    );

    // The open connection's next request goes to the new list.
    assert_eq!(kept.get().await, (http::StatusCode::OK, "two".to_owned()));
    // Sessions made before the reload resume after it: the certificate,
    // hence the session context, is unchanged and the cache was kept.
    for config in &configs {
        let exchange = client::get(config, router.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 200, "{}", exchange.text());
        assert_eq!(exchange.headers["x-backend"], "two");
        assert!(exchange.resumed, "{:?} did not resume", exchange.version);
    }
    assert_eq!(one.served(), 3);

    let stats = router.stats();
    let names: Vec<&str> = stats["backends"]
        .as_array()
        .expect("a backends list")
        .iter()
        .map(|backend| backend["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [two.http_to()]);
    assert_eq!(stats["cache"]["max_items"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_reloads() {
    const WORKERS: usize = 2;
    let OnA {
        pki,
        a,
        b,
        setup,
        router,
        // Bound, so that it lives as long as the test.
        backend: _backend,
    } = OnA::start(&format!(
        "cache = 100\nssl-sessions-use-cache = true\nhttp-processes = {WORKERS}\n"
    ))
    .await;
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    let mut kept = Kept::open(&config, &router).await;
    assert_eq!(kept.leaf, a.der);

    setup.install(&b);
    // One `cachet: reloaded` per worker.
    router.reload(WORKERS).await;
    // Whichever worker accepts a new connection serves B.
    for _ in 0..10 {
        assert_eq!(served_leaf(&config, &router).await, b.der);
    }
    assert_eq!(kept.get().await, (http::StatusCode::OK, "app".to_owned()));
}

/// A SIGHUP that reaches the master while a worker is starting (here the
/// replacement of one just killed, round after round) kills no worker,
/// and both workers reload: the master passes SIGHUP on to a worker once
/// it listens for it (until then the signal would kill it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_while_a_worker_starts_kills_nothing() {
    const WORKERS: usize = 2;
    const ROUNDS: usize = 10;
    let pki = Pki::new();
    let a = pki.leaf("a", &["localhost"]);
    let backend = backends::uwsgi("app").await;
    let setup = Setup::new(&a);
    let router = setup.start(&format!(
        "http-to = {}\nhttp-processes = {WORKERS}\nstats = 127.0.0.1:0\n",
        backend.uwsgi_to()
    ));
    for round in 0..ROUNDS {
        let id = round % WORKERS + 1;
        // SIGHUP right behind the SIGKILL: the master takes it while it
        // starts the replacement, or just after.
        let victim = router.kill_worker(id);
        router.hangup();
        router.wait_for_new_worker(id, victim, SETTLE).await;
    }
    // One more: both workers reload for it (at least two lines more than
    // there are now, whatever earlier ones are still under way).
    let reloaded = router
        .log()
        .lines()
        .filter(|line| *line == "cachet: reloaded")
        .count();
    router.reload(reloaded + WORKERS).await;
    let restarts: u64 = router.stats()["workers"]
        .as_array()
        .expect("a workers list")
        .iter()
        .map(|worker| worker["restarts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        restarts,
        ROUNDS as u64,
        "only the killed workers restarted:\n{}",
        router.log()
    );
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    assert_eq!(served_leaf(&config, &router).await, a.der);
}
