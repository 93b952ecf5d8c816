//! The router reads each ClientHello itself before rustls does, for what
//! the client offers to resume. Real clients (rustls, `openssl s_client`)
//! still handshake and resume, TLS 1.2 and 1.3, and what they offer is
//! counted and logged exactly; a ClientHello cut into records of a few
//! bytes, written a few bytes at a time, still handshakes and resumes. Junk,
//! a ClientHello cut short by the client closing, and an oversized one get
//! the connection closed (with an alert where the client listens), counted
//! by reason, and the router serves on.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cachet_core::hello::CONTENT_TYPE_HANDSHAKE;
use cachet_tests::backends::{self, Backend};
use cachet_tests::client::{self, Tls, EXCHANGE_TIMEOUT};
use cachet_tests::openssl::{require_openssl, s_client, saved_session, Session};
use cachet_tests::{cached_router_args, counter, Pki, Router};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RECONNECTIONS: u64 = 5;
/// Bound on waiting for a line the router has already written to reach
/// the test's copy of its log.
const LOG_WAIT: Duration = Duration::from_secs(30);

/// A router in front of a uwsgi backend, with a session cache, both stats
/// sockets, and its ClientHello debug lines in the log; the CA that
/// issued its certificate.
async fn start() -> (Pki, Backend, Router) {
    let pki = Pki::new();
    let backend = backends::uwsgi("app").await;
    let leaf = pki.leaf("localhost", &["localhost"]);
    let stats_http = ["--stats-http", "127.0.0.1:0"];
    let router = Router::start_with_env(
        &cached_router_args(&leaf, backend.uwsgi_to(), 100, &stats_http),
        &[("RUST_LOG", "info,cachet::proxy::serve=debug")],
    );
    (pki, backend, router)
}

/// The stats' `tls` figures this file is about.
fn offers(router: &Router) -> serde_json::Value {
    let tls = router.stats()["tls"].clone();
    json!({
        "offered": tls["offered"],
        "client_hello_rejected": tls["client_hello_rejected"],
        "failures": tls["failures"],
    })
}

fn counted(
    session_ids: u64,
    psks: u64,
    malformed: u64,
    oversized: u64,
    failures: u64,
) -> serde_json::Value {
    json!({
        "offered": { "tls12_session_id": session_ids, "tls13_psk": psks },
        "client_hello_rejected": { "malformed": malformed, "oversized": oversized },
        "failures": failures,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// rustls clients resume as before; every resumption was offered, and
/// counted as a session id (TLS 1.2) or a PSK (TLS 1.3). A TLS 1.3
/// client's random session id is not an offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustls_clients_resume_and_their_offers_are_counted() {
    let (pki, _backend, router) = start().await;
    for (version, expected) in [
        (Tls::V12, counted(RECONNECTIONS - 1, 0, 0, 0, 0)),
        (
            Tls::V13,
            counted(RECONNECTIONS - 1, RECONNECTIONS - 1, 0, 0, 0),
        ),
    ] {
        let config = client::config(&pki, version, &[b"h2"]);
        for i in 0..RECONNECTIONS {
            let exchange = client::get(&config, router.addr(), "localhost", "/").await;
            assert_eq!(exchange.status, 200, "{}", exchange.text());
            assert_eq!(exchange.resumed, i > 0, "{version:?} connection {i}");
        }
        assert_eq!(offers(&router), expected, "{version:?}");
    }
    let stats = router.stats();
    for key in ["tls12", "tls13"] {
        assert_eq!(stats["tls"]["handshakes"][key]["full"], 1, "{stats:#}");
        assert_eq!(
            stats["tls"]["handshakes"][key]["resumed"],
            RECONNECTIONS - 1,
            "{stats:#}"
        );
    }
    let metrics = router.metrics();
    for sample in [
        "cachet_tls_resumption_offered_total{kind=\"tls12_session_id\"} 4",
        "cachet_tls_resumption_offered_total{kind=\"tls13_psk\"} 4",
        "cachet_tls_client_hello_rejected_total{reason=\"malformed\"} 0",
        "cachet_tls_client_hello_rejected_total{reason=\"oversized\"} 0",
    ] {
        assert!(
            metrics.lines().any(|line| line == sample),
            "{sample} in\n{metrics}"
        );
    }
}

/// `openssl s_client` resumes as before, and the router read exactly the
/// session id (TLS 1.2) and ticket (TLS 1.3) that its session file holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_offers_are_read_exactly() {
    require_openssl();
    let (pki, _backend, router) = start().await;
    for (tls, expected) in [
        ("-tls1_2", counted(1, 0, 0, 0, 0)),
        ("-tls1_3", counted(1, 1, 0, 0, 0)),
    ] {
        let first = pki.dir().join(format!("first{tls}.pem"));
        let second = pki.dir().join(format!("second{tls}.pem"));
        let (kind, output) = s_client(router.addr(), tls, "localhost", &pki.ca_pem, None, &first);
        assert_eq!(kind, Session::New, "{output}");
        let saved = saved_session(&first);
        let (kind, output) = s_client(
            router.addr(),
            tls,
            "localhost",
            &pki.ca_pem,
            Some(&first),
            &second,
        );
        assert_eq!(kind, Session::Reused, "{tls}:\n{output}\n{}", router.log());
        let offered = match tls {
            "-tls1_2" => format!(
                "sni=localhost session_id={} tls13=false psk=\n",
                hex(&saved.session_id)
            ),
            _ => format!("tls13=true psk={}\n", hex(&saved.ticket)),
        };
        assert!(
            !saved.session_id.is_empty() && (tls == "-tls1_2" || saved.ticket.len() == 32),
            "{tls}: {saved:?}"
        );
        // The line was written before the handshake went on; the harness
        // may still be reading it from the router's stderr.
        assert!(
            router.wait_for_log(&offered, LOG_WAIT),
            "{tls}: no ClientHello line ending `{}` in\n{}",
            offered.trim_end(),
            router.log()
        );
        assert_eq!(offers(&router), expected, "{tls}");
    }
}

/// A client's ClientHello, written by rustls without a network.
fn first_flight(config: &Arc<ClientConfig>) -> (ClientConnection, Vec<u8>) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut flight = Vec::new();
    while connection.wants_write() {
        connection.write_tls(&mut flight).unwrap();
    }
    (connection, flight)
}

/// `message` (handshake messages) in records of at most `size` bytes.
fn in_records(message: &[u8], size: usize) -> Vec<u8> {
    message
        .chunks(size)
        .flat_map(|chunk| {
            let len = u16::try_from(chunk.len()).expect("a record's length fits 16 bits");
            // TLS 1.0 as the record version, as clients write it.
            [
                &[CONTENT_TYPE_HANDSHAKE, 3, 1][..],
                &len.to_be_bytes(),
                chunk,
            ]
            .concat()
        })
        .collect()
}

/// The handshake records of `flight` cut into records of at most `size`
/// bytes.
fn in_records_of(flight: &[u8], size: usize) -> Vec<u8> {
    let mut messages = Vec::new();
    let mut rest = flight;
    while !rest.is_empty() {
        assert_eq!(rest[0], CONTENT_TYPE_HANDSHAKE, "a handshake record");
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        messages.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    in_records(&messages, size)
}

/// A TLS connection whose ClientHello goes out in records of 7 bytes,
/// 3 bytes per write, then a GET; whether it resumed, and the response.
fn handshake_in_tiny_pieces(config: &Arc<ClientConfig>, addr: SocketAddr) -> (bool, String) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(EXCHANGE_TIMEOUT)).unwrap();
    let (mut connection, flight) = first_flight(config);
    for piece in in_records_of(&flight, 7).chunks(3) {
        tcp.write_all(piece).unwrap();
    }
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).unwrap();
    }
    let resumed = connection.handshake_kind() == Some(HandshakeKind::Resumed);
    let mut tls = rustls::Stream::new(&mut connection, &mut tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    // The router closes after its response, without close_notify: the
    // read then ends in an error, after the whole response.
    let _ = tls.read_to_end(&mut response);
    (resumed, String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_in_tiny_records_and_writes_handshakes_and_resumes() {
    let (pki, _backend, router) = start().await;
    let addr = router.addr();
    for (version, expected) in [
        (Tls::V12, counted(1, 0, 0, 0, 0)),
        (Tls::V13, counted(1, 1, 0, 0, 0)),
    ] {
        let config = client::config(&pki, version, &[b"http/1.1"]);
        for resumes in [false, true] {
            let config = Arc::clone(&config);
            let (resumed, response) =
                tokio::task::spawn_blocking(move || handshake_in_tiny_pieces(&config, addr))
                    .await
                    .unwrap();
            assert_eq!(resumed, resumes, "{version:?}\n{}", router.log());
            assert!(
                response.starts_with("HTTP/1.1 200"),
                "{version:?}: {response}"
            );
        }
        assert_eq!(offers(&router), expected, "{version:?}");
    }
}

/// Writes `bytes` on a new connection (half-closing after them when
/// `then_close`) and reads until the router closes: what it answered. A
/// close with bytes unread is a reset, which may come before the answer.
async fn answer(addr: SocketAddr, bytes: &[u8], then_close: bool) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = tcp.split();
    let write = async {
        // The router may close before taking everything.
        let _ = writer.write_all(bytes).await;
        if then_close {
            let _ = writer.shutdown().await;
        }
    };
    let mut answer = Vec::new();
    let read = async {
        tokio::time::timeout(EXCHANGE_TIMEOUT, reader.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("the router kept the connection open"))
    };
    let ((), read) = tokio::join!(write, read);
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    answer
}

/// A fatal alert record with this description.
fn alert(description: u8) -> Vec<u8> {
    vec![21, 3, 3, 0, 2, 2, description]
}

/// A ClientHello of `extensions` bytes of padding extensions (type 21), in
/// records of 16 KiB.
fn client_hello_with(extensions: usize) -> Vec<u8> {
    let mut block = Vec::new();
    while block.len() < extensions {
        let len = (extensions - block.len()).min(0xffff - 4) - 4;
        block.extend_from_slice(&[0, 21]);
        block.extend_from_slice(&(len as u16).to_be_bytes());
        block.resize(block.len() + len, 0);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(block.len().min(0xffff) as u16).to_be_bytes());
    body.extend_from_slice(&block);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    in_records(&message, 16 * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_truncated_and_oversized_client_hellos_are_refused_and_counted() {
    let (pki, _backend, router) = start().await;
    let addr = router.addr();
    let config = client::config(&pki, Tls::V13, &[b"h2"]);
    let (_, hello) = first_flight(&config);

    // Not TLS: plain HTTP, an SSL 2.0 ClientHello.
    let answered = answer(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", false).await;
    assert_eq!(answered, alert(10), "unexpected_message");
    let answered = answer(addr, &[0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15], false).await;
    assert_eq!(answered, alert(10));
    // A real ClientHello whose session id claims 255 bytes.
    let mut bad_length = hello.clone();
    bad_length[5 + 4 + 34] = 0xff;
    assert_eq!(
        answer(addr, &bad_length, false).await,
        alert(50),
        "decode_error"
    );
    assert_eq!(offers(&router), counted(0, 0, 3, 0, 3));

    // Cut short by the client closing: nobody to answer.
    for cut in [1, 5, 9, hello.len() / 2, hello.len() - 1] {
        assert_eq!(answer(addr, &hello[..cut], true).await, b"", "cut at {cut}");
    }
    assert_eq!(offers(&router), counted(0, 0, 8, 0, 8));
    // Closed before a byte (a TCP health check): a failed handshake only.
    assert_eq!(answer(addr, b"", true).await, b"");
    assert_eq!(offers(&router), counted(0, 0, 8, 0, 9));

    // 64 KiB of extensions: refused on the length the header gives.
    let oversized = client_hello_with(64 * 1024 - 1);
    let answered = answer(addr, &oversized, false).await;
    assert!(answered.is_empty() || answered == alert(50), "{answered:?}");
    // Under the limit, but cut into 1-byte records: too many bytes.
    let long = client_hello_with(8 * 1024);
    let tiny = in_records_of(&long, 1);
    let answered = answer(addr, &tiny, false).await;
    assert!(answered.is_empty() || answered == alert(50), "{answered:?}");
    assert_eq!(offers(&router), counted(0, 0, 8, 2, 11));

    // The router serves on, and nothing above counted as a handshake.
    let exchange = client::get(&config, addr, "localhost", "/").await;
    assert_eq!(exchange.status, 200);
    let stats = router.stats();
    assert_eq!(counter(&stats["workers"][0], "handshakes"), 1, "{stats:#}");
    assert!(
        router.wait_for_log("refused ClientHello: a ClientHello of ", LOG_WAIT),
        "{}",
        router.log()
    );
    // Not one of them waited for the handshake deadline.
    assert_eq!(stats["tls"]["timeouts"], 0);
}
