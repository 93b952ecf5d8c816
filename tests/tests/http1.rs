//! The router's own HTTP/1.x server, spoken to byte by byte over TLS with
//! ALPN `http/1.1`: pipelining, keep-alive after bodies of every framing,
//! `Expect: 100-continue`, HTTP/1.0, and the request framings that could
//! smuggle a request past a proxy, which must be refused before any byte
//! reaches a backend. A client that negotiates no protocol gets the same
//! server, or HTTP/2 when it starts with the HTTP/2 preface.

use std::sync::Arc;
use std::time::Duration;

use cachet_tests::backends::{self, Backend};
use cachet_tests::client::{self, Tls};
use cachet_tests::{Pki, Router};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

struct Setup {
    pki: Pki,
    backend: Backend,
    router: Router,
    config: Arc<ClientConfig>,
}

async fn setup() -> Setup {
    let pki = Pki::new();
    let backend = backends::http("h").await;
    let leaf = pki.leaf("localhost", &["localhost"]);
    let router = Router::start(&[
        "--https".to_owned(),
        leaf.https("127.0.0.1:0"),
        "--http-to".to_owned(),
        backend.http_to(),
    ]);
    let config = client::config(&pki, Tls::V13, &[b"http/1.1"]);
    Setup {
        pki,
        backend,
        router,
        config,
    }
}

impl Setup {
    async fn connect(&self) -> Connection {
        self.connect_with(&self.config).await
    }

    async fn connect_with(&self, config: &Arc<ClientConfig>) -> Connection {
        let tls = client::connect(config, self.router.addr(), "localhost")
            .await
            .expect("TLS to the router");
        Connection {
            tls,
            buf: Vec::new(),
        }
    }
}

/// A client connection and what has been read from it but not used yet.
struct Connection {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

/// A response as read off the connection.
#[derive(Debug)]
struct Response {
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The HTTP backend's JSON description of the request it got.
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("{self:?}"))
    }
}

impl Connection {
    async fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0; 16 * 1024];
        let n = self.tls.read(&mut chunk).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Takes `n` bytes, reading as needed.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "the connection closed early");
        }
        self.buf.drain(..n).collect()
    }

    /// Takes one CRLF-terminated line.
    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|pair| pair == b"\r\n") {
                let line = self.take(end + 2).await;
                return String::from_utf8(line[..end].to_vec()).unwrap();
            }
            assert!(self.fill().await, "the connection closed early");
        }
    }

    /// Reads one response, its body framed as its head says.
    async fn response(&mut self, to_head: bool) -> Response {
        let mut head = String::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            head.push_str(&line);
            head.push('\n');
        }
        let mut response = Response {
            head,
            body: Vec::new(),
        };
        if to_head || [100, 204, 304].contains(&response.status()) {
            return response;
        }
        if let Some(length) = response.header("content-length") {
            response.body = self.take(length.parse().unwrap()).await;
        } else if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).unwrap();
                let data = self.take(size + 2).await;
                response.body.extend_from_slice(&data[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill().await {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    /// Whether the router closed the connection (nothing more to read).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_with_bodies_of_every_framing() {
    let setup = setup().await;
    let mut conn = setup.connect().await;
    // Four requests in one write: a GET, a body with a length, a chunked
    // body (with an extension and a trailer), and a GET after them.
    conn.send(
        b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
          POST /three HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n\
          GET /four HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = conn.response(false).await;
        assert_eq!(response.status(), 200, "{response:?}");
        let json = response.json();
        seen.push((
            json["uri"].as_str().unwrap().to_owned(),
            json["body"].as_str().unwrap().to_owned(),
        ));
    }
    let expected = [
        ("/one", ""),
        ("/two", "hello"),
        ("/three", "abcde"),
        ("/four", ""),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(uri, body)| (uri.to_string(), body.to_string()))
        .collect();
    assert_eq!(seen, expected);
    // And the connection is still good for one more, sent on its own.
    conn.send(b"GET /five HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert_eq!(conn.response(false).await.json()["uri"], "/five");
    assert_eq!(setup.backend.served(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framings_that_could_smuggle_a_request_are_refused() {
    let setup = setup().await;
    for (request, status) in [
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        ("Content-Length: +5\r\n", 400),
        ("Content-Length: 5, 5\r\n", 400),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
        ("Transfer-Encoding: chunked, identity\r\n", 501),
        ("Expect: something\r\n", 417),
    ] {
        let mut conn = setup.connect().await;
        // What follows the head would be a second request to a server
        // that read the framing another way.
        let wire = format!(
            "POST /smuggle HTTP/1.1\r\nHost: localhost\r\n{request}\r\n\
             hello\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: localhost\r\n\r\n"
        );
        conn.send(wire.as_bytes()).await;
        let response = conn.response(false).await;
        assert_eq!(response.status(), status, "{request:?}: {response:?}");
        assert_eq!(response.header("connection"), Some("close"), "{request:?}");
        assert!(
            conn.closed().await,
            "{request:?}: the connection stays open"
        );
    }
    assert_eq!(
        setup.backend.served(),
        0,
        "no refused request reached the backend"
    );
    // A chunk size a lenient parser would read as 5: refused once the
    // body gets there, without waiting for the backend.
    let mut conn = setup.connect().await;
    conn.send(
        b"POST /chunks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          +5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let response = conn.response(false).await;
    assert_eq!(response.status(), 400, "{response:?}");
    assert!(response.text().contains("chunk size"), "{response:?}");
    assert!(conn.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_expects_100_continue_gets_it_before_sending() {
    let setup = setup().await;
    let mut conn = setup.connect().await;
    conn.send(
        b"PUT /up HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n",
    )
    .await;
    let interim = conn.response(true).await;
    assert_eq!(interim.head, "HTTP/1.1 100 Continue\n");
    conn.send(b"payload").await;
    let response = conn.response(false).await;
    assert_eq!(response.json()["body"], "payload", "{response:?}");
    assert_eq!(response.json()["method"], "PUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients_get_http10_answers_and_keep_alive_only_when_asked() {
    let setup = setup().await;
    let mut conn = setup.connect().await;
    conn.send(b"GET /kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let response = conn.response(false).await;
    assert!(
        response.head.starts_with("HTTP/1.0 200 OK\n"),
        "{response:?}"
    );
    assert_eq!(response.header("connection"), Some("keep-alive"));
    assert_eq!(
        response.json()["version"],
        "HTTP/1.1",
        "backends get HTTP/1.1"
    );
    conn.send(b"GET /last HTTP/1.0\r\n\r\n").await;
    let response = conn.response(false).await;
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.json()["uri"], "/last");
    assert!(conn.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_in_pieces_and_heads_too_large() {
    let setup = setup().await;
    let mut conn = setup.connect().await;
    // Empty lines before a request are allowed; the head comes in three
    // writes (three TLS records).
    for piece in [
        &b"\r\nGET /pie"[..],
        b"ces HTTP/1.1\r\nHo",
        b"st: localhost\r\n\r\n",
    ] {
        conn.send(piece).await;
    }
    assert_eq!(conn.response(false).await.json()["uri"], "/pieces");

    // A first head larger than the buffer a connection waits with (1 KiB),
    // in one record: it grows, and the whole head is relayed.
    let mut conn = setup.connect().await;
    let long = "b".repeat(6 * 1024);
    conn.send(
        format!("GET /long HTTP/1.1\r\nHost: localhost\r\nX-Long: {long}\r\n\r\n").as_bytes(),
    )
    .await;
    let echoed = conn.response(false).await.json();
    assert_eq!(echoed["uri"], "/long");
    assert_eq!(echoed["headers"]["x-long"][0], long.as_str());

    let mut conn = setup.connect().await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    conn.send(huge.as_bytes()).await;
    let response = conn.response(false).await;
    assert_eq!(response.status(), 431, "{response:?}");
    assert!(conn.closed().await);

    // A HEAD response has the length a GET would have, and no body: the
    // next response on the connection starts right after its head.
    let mut conn = setup.connect().await;
    conn.send(
        b"HEAD /h HTTP/1.1\r\nHost: localhost\r\n\r\nGET /g HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let head = conn.response(true).await;
    assert_eq!(head.status(), 200);
    assert!(head.header("content-length").is_some(), "{head:?}");
    assert_eq!(conn.response(false).await.json()["uri"], "/g");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_alpn_the_first_bytes_choose_the_server() {
    let setup = setup().await;
    let no_alpn = client::config(&setup.pki, Tls::V13, &[]);

    // HTTP/1.1: the same server, pipelining and strict framing included.
    let mut conn = setup.connect_with(&no_alpn).await;
    assert_eq!(conn.tls.get_ref().1.alpn_protocol(), None);
    conn.send(
        b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(conn.response(false).await.json()["uri"], "/a");
    assert_eq!(conn.response(false).await.json()["uri"], "/b");
    conn.send(
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    assert_eq!(conn.response(false).await.status(), 400);
    assert!(conn.closed().await);

    // HTTP/2 with prior knowledge: the preface is replayed to hyper.
    let conn = setup.connect_with(&no_alpn).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(conn.tls),
    )
    .await
    .expect("an HTTP/2 connection without ALPN");
    tokio::spawn(connection);
    let response = sender
        .send_request(client::get_request("localhost", "/h2"))
        .await
        .expect("an HTTP/2 response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["uri"], "/h2");
    assert_eq!(setup.backend.served(), 3);
}

/// A connection that completes its handshake and sends nothing (a health
/// check, a browser's speculative connection) holds no request state; when
/// the router stops it is closed at once, and told so with a TLS
/// close_notify, whether it negotiated HTTP/1.1 or no protocol at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_with_close_notify_when_the_router_stops() {
    let setup = setup().await;
    let no_alpn = client::config(&setup.pki, Tls::V13, &[]);
    let mut silent = vec![setup.connect().await, setup.connect_with(&no_alpn).await];
    // The router is serving: a request on a third connection is answered.
    // (A silent connection still in its handshake at SIGTERM would end the
    // same way: the wait for its first bytes sees the shutdown at once.)
    let mut busy = setup.connect().await;
    busy.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert_eq!(busy.response(false).await.status(), 200);

    setup.router.signal("TERM");
    for conn in &mut silent {
        let mut byte = [0; 1];
        // Ok(0) is a close_notify; a bare TCP close is an UnexpectedEof.
        // Bounded well below the idle timeout (60 s), which would close
        // the connection anyway.
        let read = tokio::time::timeout(Duration::from_secs(30), conn.tls.read(&mut byte))
            .await
            .expect("the router closes an idle connection when it stops");
        assert!(matches!(read, Ok(0)), "no close_notify: {read:?}");
    }
    let Setup { router, .. } = setup;
    let status = tokio::task::spawn_blocking(move || router.wait_for_exit())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
