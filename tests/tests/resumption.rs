//! TLS sessions resume across many reconnections, TLS 1.2 and 1.3, with a
//! rustls client; the stats counters agree with what the client saw; a
//! session never resumes under a certificate it was not made with.

use cachet_tests::backends;
use cachet_tests::client::{self, Tls};
use cachet_tests::pki::Leaf;
use cachet_tests::{cached_router_args, Pki, Router};

const RECONNECTIONS: usize = 25;

/// A router with a session cache in front of a uwsgi backend, serving
/// `leaf` on its first https socket, with the test's `extra` options.
async fn cached_router(leaf: &Leaf, extra: &[&str]) -> (backends::Backend, Router) {
    let backend = backends::uwsgi("app").await;
    // Room for every session and ticket of a test: none is evicted.
    let router = Router::start(&cached_router_args(leaf, backend.uwsgi_to(), 1000, extra));
    (backend, router)
}

async fn resumes_across_reconnections(version: Tls) {
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let (backend, router) = cached_router(&leaf, &[]).await;
    let config = client::config(&pki, version, &[b"http/1.1"]);

    let mut resumed = 0;
    for i in 0..RECONNECTIONS {
        let exchange = client::get(&config, router.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 200, "{}", exchange.text());
        let expected = match version {
            Tls::V12 => rustls::ProtocolVersion::TLSv1_2,
            Tls::V13 => rustls::ProtocolVersion::TLSv1_3,
        };
        assert_eq!(exchange.version, expected);
        assert_eq!(exchange.resumed, i > 0, "connection {i}");
        resumed += usize::from(exchange.resumed);
    }
    assert_eq!(resumed, RECONNECTIONS - 1);
    assert_eq!(backend.served(), RECONNECTIONS);

    let stats = router.stats();
    let key = match version {
        Tls::V12 => "tls12",
        Tls::V13 => "tls13",
    };
    let handshakes = &stats["tls"]["handshakes"][key];
    assert_eq!(handshakes["full"], 1, "{stats:#}");
    assert_eq!(handshakes["resumed"], RECONNECTIONS as u64 - 1, "{stats:#}");
    // Every resumption was a cache hit; each TLS 1.2 full handshake stores
    // one session, each TLS 1.3 handshake stores fresh tickets.
    assert!(stats["caches"][0]["hits"].as_u64().unwrap() >= RECONNECTIONS as u64 - 1);
    assert_eq!(stats["cache"]["hits"], stats["caches"][0]["hits"]);
    assert!(stats["sessions"]["sets"].as_u64().unwrap() >= 1);
    assert_eq!(stats["sessions"]["storage"], "cache");
    assert_eq!(stats["workers"][0]["requests"], RECONNECTIONS as u64);
    assert_eq!(stats["workers"][0]["handshakes"], RECONNECTIONS as u64);
    if version == Tls::V13 {
        // Tickets are single-use: each resumption takes one.
        assert_eq!(
            stats["sessions"]["deletes"],
            RECONNECTIONS as u64 - 1,
            "{stats:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_sessions_resume() {
    resumes_across_reconnections(Tls::V12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_sessions_resume() {
    resumes_across_reconnections(Tls::V13).await;
}

/// A TLS 1.3 client that closes right after its handshake and reads on
/// until the router closes (as `cachet bench` does with no request) still
/// gets its tickets, which the router keeps to send with a response
/// (`host/src/proxy/client_stream.rs`): each next connection resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_reach_a_client_that_closes_after_its_handshake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let (_backend, router) = cached_router(&leaf, &[]).await;
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    for i in 0..RECONNECTIONS {
        let mut tls = client::connect(&config, router.addr(), "localhost")
            .await
            .expect("TLS to the router");
        let kind = tls.get_ref().1.handshake_kind();
        let expected = if i == 0 {
            rustls::HandshakeKind::Full
        } else {
            rustls::HandshakeKind::Resumed
        };
        assert_eq!(kind, Some(expected), "connection {i}");
        tls.shutdown().await.unwrap();
        // The router closes without a close_notify (the client closed
        // first): an unexpected EOF, after the tickets.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tls.read_to_end(&mut rest),
        )
        .await;
        assert!(read.is_ok(), "connection {i}: the router closes");
    }
}

/// Two https sockets with different certificates (both valid for the
/// client's name): a client offers the first socket's session to the
/// second, which must refuse it and do a full handshake. Nothing but the
/// per-certificate session context separates them, since the client sends
/// no SNI name (it connects by IP address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_do_not_cross_certificates() {
    let pki = Pki::new();
    let one = pki.leaf("one", &["127.0.0.1"]);
    let two = pki.leaf("two", &["127.0.0.1"]);
    let (_backend, router) = cached_router(&one, &["--https", &two.https("127.0.0.1:0")]).await;
    for version in [Tls::V12, Tls::V13] {
        let config = client::config(&pki, version, &[b"http/1.1"]);
        let first = client::get(&config, router.https[0], "127.0.0.1", "/").await;
        assert!(!first.resumed);
        let again = client::get(&config, router.https[0], "127.0.0.1", "/").await;
        assert!(again.resumed, "{version:?}: the same certificate resumes");
        // The client's session store is keyed by server name, not port, so
        // it offers socket one's session to socket two.
        let other = client::get(&config, router.https[1], "127.0.0.1", "/").await;
        assert_eq!(other.status, 200);
        assert!(
            !other.resumed,
            "{version:?}: a session made under one certificate resumed under another"
        );
    }
}

/// With an `sni` certificate, each name gets its own certificate and its
/// own sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_certificates_and_keeps_sessions_apart() {
    let pki = Pki::new();
    let default = pki.leaf("default", &["localhost"]);
    let alpha = pki.leaf("alpha", &["alpha.test"]);
    let beta = pki.leaf("beta", &["*.beta.test"]);
    let sni = [
        "--sni",
        &alpha.sni("alpha.test"),
        "--sni",
        &beta.sni("*.beta.test"),
    ];
    let (_backend, router) = cached_router(&default, &sni).await;
    for version in [Tls::V12, Tls::V13] {
        // The client verifies the certificate against the name it asked
        // for, so each successful exchange proves SNI chose the right one.
        for name in ["localhost", "alpha.test", "www.beta.test"] {
            let config = client::config(&pki, version, &[b"h2"]);
            let first = client::get(&config, router.addr(), name, "/").await;
            assert_eq!(first.status, 200, "{name}");
            assert!(!first.resumed);
            let second = client::get(&config, router.addr(), name, "/").await;
            assert!(second.resumed, "{version:?} {name}");
            let vars = second.json()["vars"].clone();
            assert_eq!(vars["SERVER_NAME"], name);
        }
    }
}
