//! Requests reach both kinds of backend with the right variables and
//! headers, over HTTP/2 and HTTP/1.1, with bodies streamed both ways;
//! failover when a backend is down; 502 when none is up.

use bytes::Bytes;
use cachet_tests::backends;
use cachet_tests::client::{self, Tls};
use cachet_tests::curl::{self, Http};
use cachet_tests::ports::Refusing;
use cachet_tests::{counter, wait_until, Pki, Router};
use http::Request;
use http_body_util::StreamBody;
use hyper::body::Frame;
use std::time::{Duration, Instant};

fn start(pki: &Pki, backends: &[String]) -> Router {
    let leaf = pki.leaf("localhost", &["localhost"]);
    let mut args = vec![
        "--https".to_owned(),
        leaf.https("127.0.0.1:0"),
        "--stats".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    for backend in backends {
        args.push("--http-to".to_owned());
        args.push(backend.clone());
    }
    Router::start(&args)
}

/// A router in front of one uwsgi backend, `u`; the CA of its certificate.
async fn before_uwsgi() -> (Pki, backends::Backend, Router) {
    let pki = Pki::new();
    let backend = backends::uwsgi("u").await;
    let router = start(&pki, &[backend.uwsgi_to()]);
    (pki, backend, router)
}

/// A router in front of one HTTP backend, `h`; the CA of its certificate.
async fn before_http() -> (Pki, backends::Backend, Router) {
    let pki = Pki::new();
    let backend = backends::http("h").await;
    let router = start(&pki, &[backend.http_to()]);
    (pki, backend, router)
}

/// POSTs `body` with `headers` to `path` on `localhost` over TLS 1.3 and
/// `alpn`; the exchange, which must have succeeded.
async fn post(
    pki: &Pki,
    router: &Router,
    alpn: &[u8],
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> client::Exchange {
    let config = client::config(pki, Tls::V13, &[alpn]);
    let request = client::post_request("localhost", path, headers, body);
    let exchange = client::send(&config, router.addr(), "localhost", request).await;
    assert_eq!(exchange.status, 200, "{}", exchange.text());
    exchange
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uwsgi_backend_gets_cgi_variables_over_http2_and_http11() {
    let (pki, _backend, router) = before_uwsgi().await;
    for (alpn, expected_protocol) in [(&b"h2"[..], "HTTP/2.0"), (&b"http/1.1"[..], "HTTP/1.1")] {
        let exchange = post(
            &pki,
            &router,
            alpn,
            "/some%20path/x?a=1&b=two",
            &[
                ("content-type", "text/plain"),
                ("content-length", "5"),
                ("x-custom", "yes"),
                ("cookie", "a=1"),
            ],
            Bytes::from_static(b"hello"),
        )
        .await;
        let expected_http = if alpn == b"h2" {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(exchange.http, expected_http);
        assert_eq!(exchange.headers["x-backend"], "u");
        let document = exchange.json();
        let vars = &document["vars"];
        assert_eq!(vars["REQUEST_METHOD"], "POST");
        assert_eq!(vars["REQUEST_URI"], "/some%20path/x?a=1&b=two");
        assert_eq!(vars["PATH_INFO"], "/some path/x");
        assert_eq!(vars["QUERY_STRING"], "a=1&b=two");
        assert_eq!(vars["SERVER_NAME"], "localhost");
        assert_eq!(vars["SERVER_PORT"], router.addr().port().to_string());
        assert_eq!(vars["SERVER_PROTOCOL"], expected_protocol);
        assert_eq!(vars["REMOTE_ADDR"], "127.0.0.1");
        assert!(vars["REMOTE_PORT"].as_str().unwrap().parse::<u16>().is_ok());
        assert_eq!(vars["HTTPS"], "on");
        assert_eq!(vars["CONTENT_TYPE"], "text/plain");
        assert_eq!(vars["CONTENT_LENGTH"], "5");
        assert_eq!(vars["HTTP_X_CUSTOM"], "yes");
        assert_eq!(vars["HTTP_COOKIE"], "a=1");
        assert_eq!(vars["HTTP_HOST"], "localhost");
        assert_eq!(document["body"], "hello");
    }
}

/// A streamed request body of unknown length (chunked on HTTP/1.1),
/// response bodies framed by chunks and by closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uwsgi_bodies_of_every_framing() {
    let (pki, _backend, router) = before_uwsgi().await;
    let config = client::config(&pki, Tls::V12, &[b"http/1.1"]);
    // 64 frames of 4 KiB, byte value = frame number.
    let pieces = || {
        (0..64u8)
            .map(|i| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![i; 4096]))))
    };
    let expected_sum: u64 = (0..64u64).map(|i| i * 4096).sum();
    for path in ["/plain", "/chunked", "/close"] {
        let body = StreamBody::new(futures_util::stream::iter(pieces()));
        let request = Request::put(path)
            .header("host", "localhost")
            .body(body)
            .unwrap();
        let exchange = client::send(&config, router.addr(), "localhost", request).await;
        assert_eq!(exchange.status, 200, "{path}: {}", exchange.text());
        let document = exchange.json();
        assert_eq!(document["body_len"], 64 * 4096, "{path}");
        assert_eq!(document["body_sum"], expected_sum, "{path}");
        assert_eq!(document["vars"]["CONTENT_LENGTH"], (64 * 4096).to_string());
        // The client's chunked framing is gone by the time the body is
        // sent: the backend must not be told about it.
        assert_eq!(document["vars"].get("HTTP_TRANSFER_ENCODING"), None);
        assert_eq!(document["vars"]["PATH_INFO"], path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_gets_forwarded_headers() {
    let (pki, _backend, router) = before_http().await;
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let exchange = post(
            &pki,
            &router,
            alpn,
            "/api/items?x=1",
            &[
                ("x-forwarded-for", "10.0.0.1"),
                ("x-custom", "yes"),
                ("content-type", "application/octet-stream"),
            ],
            Bytes::from(vec![7u8; 100_000]),
        )
        .await;
        assert_eq!(exchange.headers["x-backend"], "h");
        let document = exchange.json();
        assert_eq!(document["method"], "POST");
        assert_eq!(document["uri"], "/api/items?x=1");
        assert_eq!(document["version"], "HTTP/1.1");
        let headers = &document["headers"];
        assert_eq!(headers["host"][0], "localhost");
        assert_eq!(headers["x-forwarded-for"][0], "10.0.0.1, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"][0], "https");
        assert_eq!(headers["x-custom"][0], "yes");
        assert_eq!(document["body_len"], 100_000);
        assert_eq!(document["body_sum"], 700_000);
    }
    // What the client's Connection header names stays with its connection,
    // except the Host the backend needs.
    let exchange = post(
        &pki,
        &router,
        b"http/1.1",
        "/",
        &[("connection", "host, x-private"), ("x-private", "1")],
        Bytes::from_static(b"x"),
    )
    .await;
    let headers = &exchange.json()["headers"];
    assert_eq!(headers["host"][0], "localhost", "{headers}");
    assert!(headers.get("x-private").is_none(), "{headers}");
    assert!(headers.get("connection").is_none(), "{headers}");
}

/// The router's first back-off of a failed backend (`BACKEND_RETRY_MIN`):
/// for this long after a failure, the backend shows as down.
const FIRST_BACK_OFF: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_skips_a_backend_that_is_down() {
    let pki = Pki::new();
    let uwsgi = backends::uwsgi("u").await;
    let http = backends::http("h").await;
    let dead = Refusing::new();
    let router = start(
        &pki,
        &[uwsgi.uwsgi_to(), dead.addr().to_string(), http.http_to()],
    );
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    // Every request succeeds, on one of the two live backends. A request
    // that met the dead one is seen by its `failures` going up; stats read
    // within the back-off of that failure must show it down. (How long
    // the exchange and the stats take is up to the machine, so a reading
    // that came too late proves nothing and the next failure is awaited,
    // boundedly: the back-off doubles each time.)
    const AT_LEAST: usize = 12;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut requests, mut failures, mut seen_down) = (0, 0, false);
    while requests < AT_LEAST || !seen_down {
        assert!(
            Instant::now() < deadline,
            "no stats read within {FIRST_BACK_OFF:?} of a failure in {requests} requests"
        );
        let started = Instant::now();
        let exchange = client::get(&config, router.addr(), "localhost", "/").await;
        assert_eq!(
            exchange.status,
            200,
            "request {requests}: {}",
            exchange.text()
        );
        requests += 1;
        let stats = router.stats();
        let backend = &stats["backends"][1];
        assert_eq!(backend["name"], dead.addr().to_string());
        if counter(backend, "failures") > failures {
            failures = counter(backend, "failures");
            if started.elapsed() < FIRST_BACK_OFF {
                assert_eq!(backend["down"], true, "{stats:#}");
                seen_down = true;
            }
        }
    }
    assert_eq!(uwsgi.served() + http.served(), requests);
    assert!(uwsgi.served() >= 2 && http.served() >= 2, "round robin");
    assert_eq!(router.stats()["http"]["bad_gateway"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_gateway_when_no_backend_answers() {
    let pki = Pki::new();
    let refusing = [Refusing::new(), Refusing::new()];
    let dead = [
        refusing[0].addr().to_string(),
        format!("http://{}", refusing[1].addr()),
    ];
    let router = start(&pki, &dead);
    let config = client::config(&pki, Tls::V12, &[b"h2"]);
    for _ in 0..3 {
        let exchange = client::get(&config, router.addr(), "localhost", "/").await;
        assert_eq!(exchange.status, 502);
        assert_eq!(
            exchange.headers["content-type"],
            "text/plain; charset=utf-8"
        );
        let text = exchange.text();
        assert!(text.contains("no backend answered"), "{text}");
        for backend in &dead {
            assert!(text.contains(backend.as_str()), "{text}");
        }
    }
    assert_eq!(router.stats()["http"]["bad_gateway"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_connections_are_kept_alive_across_clients() {
    let (pki, backend, router) = before_http().await;
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    let requests = 20;
    for i in 0..requests {
        let exchange = client::get(&config, router.addr(), "localhost", &format!("/{i}")).await;
        assert_eq!(exchange.status, 200, "{}", exchange.text());
        assert_eq!(exchange.json()["uri"], format!("/{i}"));
        // The router parks its backend connection once the response was
        // read to the end, which can be a moment after the client has it:
        // wait for that (the stats say), so that the next request finds it.
        let parked = wait_until(Duration::from_secs(60), || {
            counter(&router.stats()["backends"][0], "idle") == 1
        })
        .await;
        assert!(parked, "never parked: {:#}", router.stats()["backends"]);
    }
    assert_eq!(backend.served(), requests);
    // Each client connection is new, but the router's one connection to
    // the backend served every request.
    assert_eq!(backend.connections(), 1);
}

/// An HTTP/1.1 backend that answers each connection's first request with
/// `response` and then closes it, whatever the response says: every
/// parked connection is dead by the time it is wanted.
async fn raw_http_backend(
    response: &'static [u8],
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = std::sync::Arc::clone(&count);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
                let _ = stream.write_all(response).await;
                // Dropping the stream closes it: no keep-alive after all.
            });
        }
    });
    (addr, served)
}

/// A TLS 1.3 client whose request leaves with its Finished gets the
/// session tickets in the response's segment, with the close_notify and
/// the FIN: two segments with data in all, the server's flight and that
/// one (tokio-rustls alone sends the tickets in a segment of their own,
/// right after the handshake); and the tickets still let it resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_leave_with_the_response() {
    let pki = Pki::new();
    // No body: the response is one write.
    let (backend, _) = raw_http_backend(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let router = start(&pki, &[format!("http://{backend}")]);
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    let addr = router.addr();
    tokio::task::spawn_blocking(move || {
        for expected in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed] {
            let (kind, segments) = request_with_the_finished(&config, addr);
            assert_eq!(
                kind, expected,
                "the tickets of the first let the second resume"
            );
            assert_eq!(
                segments, 2,
                "{kind:?}: the flight, then tickets and response in one"
            );
        }
    })
    .await
    .unwrap();
}

/// One request on a new connection, written before the handshake so that
/// rustls sends it in the same write as its Finished: the handshake's kind
/// and how many segments with data the client received.
fn request_with_the_finished(
    config: &std::sync::Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> (rustls::HandshakeKind, u32) {
    use std::io::{Read, Write};

    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::clone(config), name).unwrap();
    conn.writer()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut received = Vec::new();
    tls.read_to_end(&mut received)
        .expect("a response ended by a close_notify");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
    let kind = tls.conn.handshake_kind().expect("handshake done");
    (kind, client::data_segments_received(&tls.sock))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_the_backend_closed_is_not_an_error() {
    let pki = Pki::new();
    let (addr, served) = raw_http_backend(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let router = start(&pki, &[format!("http://{addr}")]);
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    for i in 0..10 {
        let exchange = client::get(&config, router.addr(), "localhost", &format!("/{i}")).await;
        assert_eq!(exchange.status, 200, "request {i}: {}", exchange.text());
        assert_eq!(exchange.text(), "ok");
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::Relaxed), 10);
}

/// HTTP backends' status lines are read as nginx reads an HTTP/1.1
/// upstream's: HTTP/1.0, no reason phrase, an own reason phrase (passed on
/// to HTTP/1.x clients), interim 1xx responses before the final one. The
/// client always gets the router's HTTP version. A head without a status
/// line (fine from a uwsgi backend) is a bad gateway from an HTTP one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_status_lines_are_read_leniently() {
    curl::require_curl();
    let pki = Pki::new();
    for (response, status, line) in [
        (
            &b"HTTP/1.0 200\r\ncontent-length: 2\r\n\r\nok"[..],
            200,
            "HTTP/1.1 200 OK",
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nok", 200, "HTTP/1.1 200 OK"),
        (
            b"HTTP/1.1 299 Custom Reason\r\ncontent-length: 2\r\n\r\nok",
            299,
            "HTTP/1.1 299 Custom Reason",
        ),
        // No canonical phrase and none given: none sent either.
        (
            b"HTTP/1.1 299\r\ncontent-length: 2\r\n\r\nok",
            299,
            "HTTP/1.1 299",
        ),
        (
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            200,
            "HTTP/1.1 200 OK",
        ),
    ] {
        let (addr, _) = raw_http_backend(response).await;
        let router = start(&pki, &[format!("http://{addr}")]);
        let what = String::from_utf8_lossy(response);
        let fetched = tokio::task::block_in_place(|| {
            curl::fetch(router.addr(), &pki.ca_pem, Http::V11, "/", &[], b"")
        });
        assert_eq!(fetched.status, status, "{what}: {}", fetched.head);
        assert_eq!(fetched.status_line(), line, "{what}");
        assert_eq!(fetched.body, b"ok", "{what}");
    }
    let (addr, _) = raw_http_backend(b"Status: 200\r\ncontent-length: 2\r\n\r\nok").await;
    let router = start(&pki, &[format!("http://{addr}")]);
    let fetched = tokio::task::block_in_place(|| {
        curl::fetch(router.addr(), &pki.ca_pem, Http::V11, "/", &[], b"")
    });
    assert_eq!(fetched.status, 502, "{}", fetched.head);
    assert!(
        fetched
            .text()
            .contains("does not start with an HTTP status line"),
        "{}",
        fetched.text()
    );
}

/// An HTTP backend's header fields reach an HTTP/1.1 client as the backend
/// wrote them (names in its case, its own Date, no second one), less what
/// described the backend's connection; an HTTP/2 client gets the same
/// fields with names in lower case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_fields_go_on_as_written() {
    curl::require_curl();
    let pki = Pki::new();
    let (addr, _) = raw_http_backend(
        b"HTTP/1.1 200 OK\r\nX-Mixed-Case: One\r\nConnection: keep-alive, X-Private\r\n\
          Keep-Alive: timeout=5\r\nX-Private: 1\r\nDate: Sun, 29 Nov 2026 13:00:00 GMT\r\n\
          Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let router = start(&pki, &[format!("http://{addr}")]);
    for http in [Http::V11, Http::V2] {
        let fetched = tokio::task::block_in_place(|| {
            curl::fetch(router.addr(), &pki.ca_pem, http, "/", &[], b"")
        });
        let head = &fetched.head;
        assert_eq!(fetched.status, 200, "{head}");
        assert_eq!(fetched.body, b"ok", "{head}");
        let expected = if http == Http::V11 {
            ["X-Mixed-Case: One", "Set-Cookie: a=1", "Set-Cookie: b=2"]
        } else {
            ["x-mixed-case: One", "set-cookie: a=1", "set-cookie: b=2"]
        };
        for line in expected {
            assert!(head.contains(&format!("{line}\r\n")), "{line} in {head}");
        }
        let lower = head.to_ascii_lowercase();
        assert_eq!(lower.matches("\r\ndate: ").count(), 1, "{head}");
        assert!(
            lower.contains("date: sun, 29 nov 2026 13:00:00 gmt"),
            "{head}"
        );
        assert_eq!(lower.matches("content-length: 2").count(), 1, "{head}");
        for gone in ["x-private", "keep-alive: timeout"] {
            assert!(!lower.contains(gone), "{gone} in {head}");
        }
    }
}

/// A connection the router ends after a response tells the client it has
/// the whole of it with a TLS close_notify (sent with the response's last
/// bytes); one whose body broke off is closed without, so that an HTTP/1.0
/// client, whose body ends with the connection, sees the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_response_ends_with_close_notify_and_a_cut_one_without() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::new();
    let (whole, _) = raw_http_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let (cut, _) = raw_http_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n9\r\nhal",
    )
    .await;
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    for (backend, request, whole_body) in [
        (
            whole,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            true,
        ),
        (whole, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n", true),
        (cut, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n", false),
    ] {
        let router = start(&pki, &[format!("http://{backend}")]);
        let mut tls = client::connect(&config, router.addr(), "localhost")
            .await
            .expect("TLS to the router");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        // Ok: the stream ended with a close_notify; a bare TCP close is an
        // UnexpectedEof. Bounded: the router closes after the response.
        let read = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut received))
            .await
            .expect("the router closes the connection");
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(text.contains("\r\n\r\n"), "a response head: {text}");
        if whole_body {
            assert!(read.is_ok(), "no close_notify after {text}: {read:?}");
            assert!(text.contains("hello"), "{text}");
        } else {
            let error = read.expect_err("a close_notify after a cut body");
            assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{text}");
            assert!(text.contains("hello"), "{text}");
        }
    }
}
