//! The stats endpoints: uWSGI's JSON over TCP and HTTP, Prometheus text.

use std::net::TcpStream;

use cachet_tests::backends;
use cachet_tests::client::{self, Tls};
use cachet_tests::{cached_router_args, http_get, router_args, Pki, Router};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_prometheus_agree_with_the_client() {
    let pki = Pki::new();
    let backend = backends::uwsgi("u").await;
    let leaf = pki.leaf("localhost", &["localhost"]);
    let extra = ["--cache-blocksize", "2048", "--stats-http", "127.0.0.1:0"];
    let router = Router::start(&cached_router_args(&leaf, backend.uwsgi_to(), 500, &extra));
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);
    for _ in 0..5 {
        client::get(&config, router.addr(), "localhost", "/").await;
    }

    let tcp = router.stats();
    let cache = &tcp["caches"][0];
    for key in [
        "name",
        "hash",
        "hashsize",
        "keysize",
        "max_items",
        "blocks",
        "blocksize",
        "items",
        "hits",
        "miss",
        "full",
        "last_modified_at",
    ] {
        assert!(cache.get(key).is_some(), "caches[0].{key} missing: {tcp:#}");
    }
    for key in ["max_items", "blocksize", "items", "hits", "miss", "full"] {
        assert!(tcp["cache"].get(key).is_some(), "cache.{key} missing");
    }
    assert_eq!(cache["max_items"], 500);
    assert_eq!(cache["blocksize"], 2048);
    assert_eq!(tcp["tls"]["handshakes"]["tls12"]["full"], 1);
    assert_eq!(tcp["tls"]["handshakes"]["tls12"]["resumed"], 4);
    assert_eq!(tcp["workers"][0]["pid"], router.pid());
    assert_eq!(tcp["workers"][0]["restarts"], 0);
    assert!(tcp["sync"].is_object());
    assert!(tcp["sessions"]["refused"].is_object());

    let addr = router.stats_http.unwrap();
    let (head, body) = http_get(addr, "/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["tls"], tcp["tls"]);

    let (head, metrics) = http_get(addr, "/metrics");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        metrics.contains("cachet_tls_handshakes_total{version=\"1.2\",kind=\"resumed\"} 4\n"),
        "{metrics}"
    );
    assert!(metrics.contains("cachet_tls_handshakes_total{version=\"1.2\",kind=\"full\"} 1\n"));
    assert!(
        metrics.contains("cachet_http_requests_total 5\n"),
        "{metrics}"
    );
    assert!(metrics.contains("cachet_cache_hits_total "));

    let (head, _) = http_get(addr, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let pki = Pki::new();
    let backend = backends::http("h").await;
    let leaf = pki.leaf("localhost", &["localhost"]);
    let router = Router::start(&router_args(&leaf, &backend.http_to(), &[]));
    let config = client::config(&pki, Tls::V13, &[b"h2"]);
    let exchange = client::get(&config, router.addr(), "localhost", "/").await;
    assert_eq!(exchange.status, 200);
    let addr = router.addr();
    let status = tokio::task::spawn_blocking(move || router.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after exit"
    );
}
