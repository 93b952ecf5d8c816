//! PROXY protocol on the https sockets (`enable-proxy-protocol`): a real
//! HAProxy in `mode tcp` sends v1 and v2 headers for a client on 127.0.0.2,
//! whose address reaches uwsgi backends as REMOTE_ADDR/REMOTE_PORT and HTTP
//! backends in X-Forwarded-For. Connections without a valid header are
//! closed and counted by reason, and never trusted; a header must arrive
//! within the handshake deadline; the switch follows a SIGHUP reload in
//! every worker.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use cachet_tests::backends;
use cachet_tests::client::{self, Exchange, Tls, EXCHANGE_TIMEOUT};
use cachet_tests::haproxy::{Frontend, Haproxy, SendProxy};
use cachet_tests::{router_args, Pki, Router};
use rustls::ClientConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client's own address, distinct from the balancer's 127.0.0.1.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// v2's signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A router requiring PROXY headers, in front of `backend` (an `http-to`
/// value), with both stats sockets.
fn start(pki: &Pki, backend: &str, extra: &[&str]) -> Router {
    let leaf = pki.leaf("localhost", &["localhost"]);
    let common = [
        "--enable-proxy-protocol",
        "--stats",
        "127.0.0.1:0",
        "--stats-http",
        "127.0.0.1:0",
    ];
    Router::start(&router_args(&leaf, backend, &[&common[..], extra].concat()))
}

/// [`start`] in front of a uwsgi backend; the CA of its certificate, the
/// backend and the router.
async fn start_before_uwsgi(extra: &[&str]) -> (Pki, backends::Backend, Router) {
    let pki = Pki::new();
    let backend = backends::uwsgi("u").await;
    let router = start(&pki, &backend.uwsgi_to(), extra);
    (pki, backend, router)
}

/// HAProxy with a `send-proxy-v2` frontend and a `send-proxy` one, both in
/// front of `router`.
fn balancer(router: &Router) -> Haproxy {
    Haproxy::tcp(&[
        Frontend {
            servers: &[router.addr()],
            send_proxy: SendProxy::V2,
            check: false,
        },
        Frontend {
            servers: &[router.addr()],
            send_proxy: SendProxy::V1,
            check: false,
        },
    ])
}

/// `GET /` from 127.0.0.2 to `addr`: the exchange, which must have
/// succeeded.
async fn get_from_client(config: &Arc<ClientConfig>, addr: SocketAddr) -> Exchange {
    let tcp = client::tcp_from(CLIENT, addr)
        .await
        .unwrap_or_else(|e| panic!("connecting from {CLIENT} to {addr}: {e}"));
    let exchange = client::get_over(config, tcp, "localhost", "/").await;
    assert_eq!(exchange.status, 200, "{}", exchange.text());
    exchange
}

/// `GET /` over a connection that starts with `header`, written by the test.
async fn get_after(config: &Arc<ClientConfig>, addr: SocketAddr, header: &[u8]) -> Exchange {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    client::get_over(config, tcp, "localhost", "/").await
}

/// The stats' `proxy_protocol` object as it should read.
fn counted(
    headers: u64,
    local: u64,
    missing: u64,
    malformed: u64,
    timeout: u64,
) -> serde_json::Value {
    json!({
        "headers": headers,
        "local": local,
        "rejected": { "missing": missing, "malformed": malformed, "timeout": timeout },
    })
}

/// Checks that a TLS handshake fails, promptly: the router closed the
/// connection rather than trusting it.
async fn refused_handshake<T>(handshake: impl Future<Output = std::io::Result<T>>) {
    let result = tokio::time::timeout(EXCHANGE_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| panic!("no answer to a handshake within {EXCHANGE_TIMEOUT:?}"));
    assert!(
        result.is_err(),
        "a handshake the router should have refused"
    );
}

/// Checks that the router's Prometheus text has each of `samples` as a line.
fn exposes(router: &Router, samples: &[&str]) {
    let metrics = router.metrics();
    for sample in samples {
        assert!(
            metrics.lines().any(|line| line == *sample),
            "{sample} in\n{metrics}"
        );
    }
}

/// Writes `bytes` on a new connection, half-closing it after them when
/// `then_close`; the router must close the connection without answering a
/// byte (a close with unread bytes is a reset, which is as good).
async fn refused(addr: SocketAddr, bytes: &[u8], then_close: bool) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    if then_close {
        let _ = tcp.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{bytes:?}: the router kept the connection open"));
    if let Err(error) = read {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset,
            "{bytes:?}: {error}"
        );
    }
    assert!(answer.is_empty(), "{bytes:?}: answered {answer:?}");
}

/// A v2 PROXY header for a TCP client at `source` (to 127.0.0.1:443).
fn v2_proxy(source: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    let mut addresses = Vec::new();
    match source.ip() {
        IpAddr::V4(ip) => {
            header.extend_from_slice(&[0x21, 0x11]);
            addresses.extend_from_slice(&ip.octets());
            addresses.extend_from_slice(&[127, 0, 0, 1]);
        }
        IpAddr::V6(ip) => {
            header.extend_from_slice(&[0x21, 0x21]);
            addresses.extend_from_slice(&ip.octets());
            addresses.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        }
    }
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&443u16.to_be_bytes());
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(&addresses);
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_v1_and_v2_give_uwsgi_the_client_address() {
    // Two worker processes: the header is read in each, counted in shared
    // memory and added up by the master.
    let (pki, backend, router) = start_before_uwsgi(&["--http-processes", "2"]).await;
    let haproxy = balancer(&router);
    let mut connections = 0;
    for frontend in &haproxy.frontends {
        for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
            let config = client::config(&pki, Tls::V13, &[alpn]);
            let exchange = get_from_client(&config, *frontend).await;
            let vars = &exchange.json()["vars"];
            assert_eq!(vars["REMOTE_ADDR"], CLIENT.to_string(), "{vars:#}");
            assert_eq!(
                vars["REMOTE_PORT"],
                exchange.local.port().to_string(),
                "{vars:#}"
            );
            connections += 1;
        }
    }
    let stats = router.stats();
    assert_eq!(stats["proxy_protocol"], counted(connections, 0, 0, 0, 0));
    assert_eq!(stats["tls"]["failures"], 0);
    assert_eq!(backend.served(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_v1_and_v2_give_http_backends_the_client_in_x_forwarded_for() {
    let pki = Pki::new();
    let backend = backends::http("h").await;
    let router = start(&pki, &backend.http_to(), &["--access-log", "stderr"]);
    let haproxy = balancer(&router);
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);
    for frontend in &haproxy.frontends {
        let exchange = get_from_client(&config, *frontend).await;
        assert_eq!(
            exchange.json()["headers"]["x-forwarded-for"],
            json!([CLIENT.to_string()])
        );
        // The access log names the client too (its lines are written in
        // batches: wait for this one).
        let client = format!(" {CLIENT}:{} ", exchange.local.port());
        let logged =
            tokio::task::block_in_place(|| router.wait_for_log(&client, 2 * EXCHANGE_TIMEOUT));
        assert!(logged, "no access log line for{client}:\n{}", router.log());
        // A client's own X-Forwarded-For is kept, the real client appended.
        let tcp = client::tcp_from(CLIENT, *frontend).await.unwrap();
        let mut request = client::get_request("localhost", "/");
        request
            .headers_mut()
            .insert("x-forwarded-for", "10.9.8.7".parse().unwrap());
        let exchange = client::send_over(&config, tcp, "localhost", request).await;
        assert_eq!(
            exchange.json()["headers"]["x-forwarded-for"],
            json!([format!("10.9.8.7, {CLIENT}")])
        );
    }
    assert_eq!(router.stats()["proxy_protocol"], counted(4, 0, 0, 0, 0));
    exposes(
        &router,
        &[
            "cachet_proxy_protocol_headers_total{source=\"client\"} 4",
            "cachet_proxy_protocol_headers_total{source=\"local\"} 0",
            "cachet_proxy_protocol_rejected_total{reason=\"missing\"} 0",
        ],
    );
}

/// HAProxy's health checks of a `send-proxy-v2` server carry a v2 `LOCAL`
/// header: accepted, keeping the balancer's own address, never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_health_checks_are_local_connections() {
    let (_pki, _backend, router) = start_before_uwsgi(&[]).await;
    let _haproxy = Haproxy::tcp(&[Frontend {
        servers: &[router.addr()],
        send_proxy: SendProxy::V2,
        check: true,
    }]);
    // Checks come every 2 s; wait for the first, however late.
    let deadline = tokio::time::Instant::now() + 2 * EXCHANGE_TIMEOUT;
    let counts = loop {
        let counts = router.stats()["proxy_protocol"].clone();
        if counts["local"].as_u64() > Some(0) {
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no health check within {:?}: {counts}",
            2 * EXCHANGE_TIMEOUT
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(counts["headers"], counts["local"], "{counts}");
    assert_eq!(counts["rejected"], counted(0, 0, 0, 0, 0)["rejected"]);
}

/// Headers written by the test: IPv6 clients, and the forms that keep the
/// real peer (v2 LOCAL, a balancer's health check; v1 UNKNOWN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_and_headers_that_keep_the_real_peer() {
    let (pki, _backend, router) = start_before_uwsgi(&[]).await;
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);

    let v6: SocketAddr = "[2001:db8::7]:4242".parse().unwrap();
    let vars = get_after(&config, router.addr(), &v2_proxy(v6))
        .await
        .json()["vars"]
        .clone();
    assert_eq!(
        (&vars["REMOTE_ADDR"], &vars["REMOTE_PORT"]),
        (&json!("2001:db8::7"), &json!("4242"))
    );

    let v1 = b"PROXY TCP6 2001:db8::8 ::1 4343 443\r\n";
    let vars = get_after(&config, router.addr(), v1).await.json()["vars"].clone();
    assert_eq!(
        (&vars["REMOTE_ADDR"], &vars["REMOTE_PORT"]),
        (&json!("2001:db8::8"), &json!("4343"))
    );

    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    for header in [&local[..], b"PROXY UNKNOWN\r\n"] {
        let exchange = get_after(&config, router.addr(), header).await;
        let vars = &exchange.json()["vars"];
        assert_eq!(vars["REMOTE_ADDR"], "127.0.0.1", "{header:?}");
        assert_eq!(vars["REMOTE_PORT"], exchange.local.port().to_string());
    }
    assert_eq!(router.stats()["proxy_protocol"], counted(4, 2, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_valid_header_are_closed_counted_and_never_trusted() {
    let (pki, backend, router) = start_before_uwsgi(&[]).await;
    let config = client::config(&pki, Tls::V13, &[b"h2"]);
    let addr = router.addr();

    // A client that skips the balancer: its ClientHello is not a header.
    refused_handshake(client::connect(&config, addr, "localhost")).await;
    // Junk and plain HTTP: missing too.
    refused(addr, b"\x00\x01garbage", false).await;
    refused(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", false).await;

    // Malformed: a bad address, a v2 header cut short, a v1 line too long.
    refused(addr, b"PROXY TCP4 127.0.0.999 127.0.0.1 5555 443\r\n", true).await;
    let mut truncated = V2_SIGNATURE.to_vec();
    truncated.extend_from_slice(&[0x21, 0x11, 0, 12, 127, 0, 0, 2, 127]);
    refused(addr, &truncated, true).await;
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(300, b'x');
    refused(addr, &long, false).await;
    // A header with a bad address followed by a ClientHello: the handshake
    // never starts, whatever the rest of the connection looks like.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 127.0.0.2 127.0.0.1 99999 443\r\n")
        .await
        .unwrap();
    refused_handshake(client::handshake(&config, tcp, "localhost")).await;

    let stats = router.stats();
    assert_eq!(stats["proxy_protocol"], counted(0, 0, 3, 4, 0));
    assert_eq!(stats["tls"]["failures"], 0, "refused before TLS");
    assert_eq!(stats["http"]["requests"], 0);
    assert_eq!(backend.served(), 0);
    exposes(
        &router,
        &[
            "cachet_proxy_protocol_rejected_total{reason=\"missing\"} 3",
            "cachet_proxy_protocol_rejected_total{reason=\"malformed\"} 4",
            "cachet_proxy_protocol_rejected_total{reason=\"timeout\"} 0",
        ],
    );

    // The router still serves a well-formed header.
    let exchange = get_after(
        &config,
        addr,
        b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 443\r\n",
    )
    .await;
    assert_eq!(exchange.json()["vars"]["REMOTE_ADDR"], "192.0.2.1");
}

/// The header shares the handshake's deadline (limits::HANDSHAKE_TIMEOUT,
/// 10 s): one that never completes is cut there and counted as a timeout,
/// not as a TLS one. The test waits for the router to close, however long
/// that takes on a loaded machine, not for a clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_that_never_completes_is_cut_at_the_handshake_deadline() {
    let (_pki, _backend, router) = start_before_uwsgi(&[]).await;
    let mut tcp = TcpStream::connect(router.addr()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 127.0.0.2 ").await.unwrap();
    let mut answer = Vec::new();
    // Well past the deadline: only a router that never cuts fails here.
    let read = tokio::time::timeout(4 * EXCHANGE_TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("the router kept a header-less connection past its deadline");
    assert!(read.is_ok() && answer.is_empty(), "{read:?} {answer:?}");
    let stats = router.stats();
    assert_eq!(stats["proxy_protocol"], counted(0, 0, 0, 0, 1));
    assert_eq!(stats["tls"]["timeouts"], 0);
}

/// `enable-proxy-protocol` follows a reload in every worker: a balancer
/// switched to send headers is followed without a restart (which would
/// lose the session cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_every_worker() {
    const WORKERS: usize = 2;
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let backend = backends::uwsgi("u").await;
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("router.ini");
    let write_ini = |proxy_protocol: bool| {
        let text = format!(
            "[uwsgi]\nhttps = {}\nhttp-to = {}\nstats = 127.0.0.1:0\nhttp-processes = {WORKERS}\n\
             enable-proxy-protocol = {proxy_protocol}\n",
            leaf.https("127.0.0.1:0"),
            backend.uwsgi_to(),
        );
        std::fs::write(&ini, text).unwrap();
    };
    write_ini(false);
    let router = Router::start(&[std::ffi::OsStr::new("--ini"), ini.as_os_str()]);
    let config = client::config(&pki, Tls::V13, &[b"h2"]);
    let exchange = client::get(&config, router.addr(), "localhost", "/").await;
    assert_eq!(exchange.json()["vars"]["REMOTE_ADDR"], "127.0.0.1");

    write_ini(true);
    router.reload(WORKERS).await;
    let haproxy = balancer(&router);
    // Enough connections that both workers are likely to take some; each
    // has reloaded, so every one is refused.
    for _ in 0..4 {
        refused_handshake(client::connect(&config, router.addr(), "localhost")).await;
        let exchange = get_from_client(&config, haproxy.frontends[0]).await;
        assert_eq!(exchange.json()["vars"]["REMOTE_ADDR"], CLIENT.to_string());
    }
    assert_eq!(router.stats()["proxy_protocol"], counted(4, 0, 4, 0, 0));

    write_ini(false);
    router.reload(2 * WORKERS).await;
    let exchange = client::get(&config, router.addr(), "localhost", "/").await;
    assert_eq!(exchange.json()["vars"]["REMOTE_ADDR"], "127.0.0.1");
}
