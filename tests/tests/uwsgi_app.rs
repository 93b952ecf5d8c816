//! A real uWSGI application server behind the router, for every client:
//! curl speaking HTTP/2, HTTP/1.1 and HTTP/1.0, the rustls/hyper client
//! over each ALPN protocol, `openssl s_client -alpn`, and h2load
//! multiplexing many streams. The application (`tests/apps/echo.py`)
//! reports the WSGI environ it got and a digest of the body it read, and
//! sends large bodies with a digest of what it sent.
//!
//! The same uWSGI also serves over HTTP/1.1 (`--http11-socket`, an
//! `http-to http://...` backend) where a test says so: request bodies of
//! unknown length then reach it chunked, and its keep-alive connections
//! are parked and reused.
//!
//! uWSGI writes its status line with the SERVER_PROTOCOL it is given, so
//! each client protocol gets a differently versioned response head back
//! (`HTTP/2.0 200 OK` for HTTP/2 clients); and it is the only backend here
//! that decides framing and status lines on its own.

use bytes::Bytes;
use cachet_tests::client::{self, Tls};
use cachet_tests::curl::{self, Fetched, Http};
use cachet_tests::h2load::{self, Load};
use cachet_tests::openssl::{require_openssl, s_client_alpn};
use cachet_tests::udp_proxy::XorShift;
use cachet_tests::uwsgi_app::{app_path, Options, Protocol, UwsgiApp};
use cachet_tests::{assert_contains_all, counter, router_args, wait_until_blocking, Pki, Router};
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use std::time::Duration;

/// A uWSGI running `echo.py` and a router in front of it. Fields drop in
/// order: the router goes first.
struct Setup {
    router: Router,
    app: UwsgiApp,
    pki: Pki,
}

impl Setup {
    fn start(uwsgi_options: &[&str]) -> Setup {
        Self::start_speaking(Protocol::Uwsgi, uwsgi_options)
    }

    /// A uWSGI whose socket speaks `protocol`.
    fn start_speaking(protocol: Protocol, uwsgi_options: &[&str]) -> Setup {
        curl::require_curl();
        let pki = Pki::new();
        let app = UwsgiApp::start(&Options {
            extra: uwsgi_options,
            protocol,
            ..Options::new(app_path("echo.py"))
        });
        let leaf = pki.leaf("localhost", &["localhost"]);
        let stats = ["--stats", "127.0.0.1:0"];
        let router = Router::start(&router_args(&leaf, &app.http_to(), &stats));
        Setup { router, app, pki }
    }

    /// curl to `path` on the router, with `args` and `stdin`.
    fn curl(&self, http: Http, path: &str, args: &[&str], stdin: &[u8]) -> Fetched {
        let fetched = curl::fetch(
            self.router.addr(),
            &self.pki.ca_pem,
            http,
            path,
            args,
            stdin,
        );
        assert_eq!(
            fetched.version(),
            http.response_version(),
            "curl {http:?} {path}: {}",
            fetched.head
        );
        fetched
    }

    /// What the router and uWSGI logged, for failure messages.
    fn logs(&self) -> String {
        format!("router:\n{}\nuwsgi:\n{}", self.router.log(), self.app.log())
    }
}

/// `len` bytes that differ from one seed to the next and have no period a
/// lost or repeated piece could hide in.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    XorShift::new(seed).fill(&mut bytes);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The response's status line is `status` ("299 Custom Reason") in the
/// client's HTTP version; HTTP/2 has no reason phrase.
fn assert_status_line(fetched: &Fetched, http: Http, status: &str) {
    let expected = match http {
        Http::V2 => format!("HTTP/2 {}", &status[..3]),
        Http::V11 | Http::V10 => format!("{} {status}", http.response_version()),
    };
    assert_eq!(
        fetched.status_line(),
        expected,
        "{http:?}: {}",
        fetched.head
    );
}

/// The WSGI environ the application reported.
fn environ(document: &Value) -> &Value {
    &document["environ"]
}

#[test]
fn every_curl_protocol_reaches_the_app_with_its_cgi_variables() {
    let setup = Setup::start(&[]);
    let port = setup.router.addr().port().to_string();
    for http in Http::ALL {
        let fetched = setup.curl(http, "/echo/some%20path?x=1&y=two", &[], b"");
        assert_eq!(fetched.status, 200, "{http:?}: {}", fetched.text());
        assert_status_line(&fetched, http, "200 OK");
        let document = fetched.json();
        let environ = environ(&document);
        assert_eq!(environ["REQUEST_METHOD"], "GET", "{http:?}");
        assert_eq!(environ["REQUEST_URI"], "/echo/some%20path?x=1&y=two");
        assert_eq!(environ["PATH_INFO"], "/echo/some path");
        assert_eq!(environ["QUERY_STRING"], "x=1&y=two");
        assert_eq!(environ["SERVER_PROTOCOL"], http.server_protocol());
        assert_eq!(environ["SERVER_NAME"], "localhost");
        assert_eq!(environ["SERVER_PORT"], port.as_str());
        assert_eq!(environ["HTTP_HOST"], format!("localhost:{port}"));
        assert_eq!(environ["HTTPS"], "on");
        assert_eq!(environ["wsgi.url_scheme"], "https");
        assert_eq!(environ["REMOTE_ADDR"], "127.0.0.1");
        assert_eq!(environ["CONTENT_LENGTH"], "0");
        assert_eq!(document["body_len"], 0);
    }
    let stats = setup.router.stats();
    assert_eq!(counter(&stats["http"], "bad_gateway"), 0, "{stats:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rustls_client_over_every_alpn_protocol() {
    let setup = Setup::start(&[]);
    let body = pseudo_random(10_000, 1);
    for (alpn, version, server_protocol) in [
        (&b"h2"[..], http::Version::HTTP_2, "HTTP/2.0"),
        (b"http/1.1", http::Version::HTTP_11, "HTTP/1.1"),
        (b"http/1.0", http::Version::HTTP_10, "HTTP/1.0"),
    ] {
        let config = client::config(&setup.pki, Tls::V13, &[alpn]);
        // HTTP/2 is the connection's business; an HTTP/1 request says
        // which HTTP/1 it is in its request line.
        let request_version = if alpn == b"http/1.0" {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        };
        let request = Request::post("/echo?client=rustls")
            .version(request_version)
            .header("host", "localhost")
            .header("content-type", "application/octet-stream")
            .header("content-length", body.len().to_string())
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let exchange = client::send(&config, setup.router.addr(), "localhost", request).await;
        assert_eq!(
            exchange.status,
            200,
            "{}\n{}",
            exchange.text(),
            setup.logs()
        );
        assert_eq!(exchange.http, version);
        let document = exchange.json();
        let environ = environ(&document);
        assert_eq!(environ["SERVER_PROTOCOL"], server_protocol);
        assert_eq!(environ["REQUEST_METHOD"], "POST");
        assert_eq!(environ["QUERY_STRING"], "client=rustls");
        assert_eq!(environ["HTTP_HOST"], "localhost");
        assert_eq!(environ["CONTENT_TYPE"], "application/octet-stream");
        assert_eq!(environ["CONTENT_LENGTH"], body.len().to_string());
        assert_eq!(document["body_len"], body.len());
        assert_eq!(document["body_sha256"], sha256_hex(&body));
    }
}

#[test]
fn request_bodies_of_every_framing_reach_the_app_and_come_back() {
    for protocol in [Protocol::Uwsgi, Protocol::Http11] {
        let setup = Setup::start_speaking(protocol, &[]);
        uploads_come_back(&setup, protocol);
        if protocol == Protocol::Http11 {
            // Every response was read to its end: the connections the
            // requests went over are parked for the next ones (after an
            // upload, once the body's sender is done, which may be just
            // after the client has its response).
            let parked = wait_until_blocking(Duration::from_secs(30), || {
                counter(&setup.router.stats()["backends"][0], "idle") >= 1
            });
            assert!(parked, "nothing parked: {}", setup.logs());
        }
    }
}

/// Uploads of every framing to `/echo` and `/mirror`, each checked by the
/// digest of what the application read.
fn uploads_come_back(setup: &Setup, protocol: Protocol) {
    let body = pseudo_random(300_000, 2);
    let digest = sha256_hex(&body);
    let length = body.len().to_string();
    let sized: &[&str] = &[
        "--data-binary",
        "@-",
        "-H",
        "Content-Type: application/octet-stream",
    ];
    // `-T -` streams stdin: chunked over HTTP/1.1, DATA frames without a
    // content-length over HTTP/2. And an explicit chunked POST.
    let streamed: &[&str] = &["-T", "-"];
    let chunked: &[&str] = &["--data-binary", "@-", "-H", "Transfer-Encoding: chunked"];
    let uploads = [
        (Http::V2, sized, "POST"),
        (Http::V11, sized, "POST"),
        (Http::V10, sized, "POST"),
        (Http::V2, streamed, "PUT"),
        (Http::V11, streamed, "PUT"),
        (Http::V11, chunked, "POST"),
    ];
    for (http, args, method) in uploads {
        let what = format!("{protocol:?} {http:?} {args:?}");
        let fetched = setup.curl(http, "/echo", args, &body);
        assert_eq!(fetched.status, 200, "{what}: {}", fetched.text());
        let document = fetched.json();
        let environ = environ(&document);
        assert_eq!(environ["REQUEST_METHOD"], method, "{what}");
        if protocol == Protocol::Http11 && args != sized {
            // HTTP/1.1 carries a body of unknown length chunked.
            assert_eq!(environ["HTTP_TRANSFER_ENCODING"], "chunked", "{what}");
            assert_eq!(environ.get("CONTENT_LENGTH"), None, "{what}");
        } else {
            assert_eq!(environ["CONTENT_LENGTH"], length.as_str(), "{what}");
            // The body reaches a uwsgi application de-chunked, so it must
            // not be told otherwise: Werkzeug ignores CONTENT_LENGTH when
            // it is.
            assert_eq!(environ.get("HTTP_TRANSFER_ENCODING"), None, "{what}");
        }
        assert_eq!(document["body_len"], body.len(), "{what}");
        assert_eq!(document["body_sha256"], digest.as_str(), "{what}");
    }
    for http in Http::ALL {
        let fetched = setup.curl(http, "/mirror", sized, &body);
        assert_eq!(
            fetched.status,
            200,
            "{protocol:?} {http:?}: {}",
            fetched.text()
        );
        assert_eq!(fetched.header("x-body-sha256"), Some(digest.as_str()));
        assert!(
            fetched.body == body,
            "{protocol:?} {http:?}: the body came back altered"
        );
    }
}

#[test]
fn a_large_response_arrives_intact_with_and_without_a_length() {
    for protocol in [Protocol::Uwsgi, Protocol::Http11] {
        large_responses_arrive_intact(&Setup::start_speaking(protocol, &[]), protocol);
    }
}

fn large_responses_arrive_intact(setup: &Setup, protocol: Protocol) {
    const SIZE: usize = 6 * 1024 * 1024;
    for (seed, with_length) in [(7, true), (8, false)] {
        let query = if with_length { "" } else { "&length=no" };
        let path = format!("/large?size={SIZE}&seed={seed}{query}");
        for http in Http::ALL {
            let what = format!("{protocol:?} {http:?} {path}");
            let fetched = setup.curl(http, &path, &[], b"");
            assert_eq!(fetched.status, 200, "{what}: {}", fetched.head);
            assert_eq!(fetched.body.len(), SIZE, "{what}");
            let sent = fetched.header("x-body-sha256").expect("X-Body-Sha256");
            assert_eq!(sha256_hex(&fetched.body), sent, "{what}");
            let content_length = fetched.header("content-length");
            let chunked = fetched
                .header("transfer-encoding")
                .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
            if with_length {
                assert_eq!(content_length, Some(SIZE.to_string().as_str()), "{what}");
            } else {
                // HTTP/1.1 gets it chunked; an HTTP/1.0 client cannot be,
                // so its body ends with the connection; HTTP/2 frames it.
                assert_eq!(content_length, None, "{what}");
                assert_eq!(chunked, http == Http::V11, "{what}: {}", fetched.head);
            }
        }
    }
}

#[test]
fn the_app_s_status_line_reaches_the_client() {
    for protocol in [Protocol::Uwsgi, Protocol::Http11] {
        let setup = Setup::start_speaking(protocol, &[]);
        status_lines_reach_the_client(&setup);
    }
}

fn status_lines_reach_the_client(setup: &Setup) {
    for http in Http::ALL {
        let fetched = setup.curl(http, "/status?299%20Custom%20Reason", &[], b"");
        assert_eq!(fetched.status, 299, "{http:?}");
        assert_status_line(&fetched, http, "299 Custom Reason");
        let fetched = setup.curl(http, "/status?204%20No%20Content", &[], b"");
        assert_eq!(fetched.status, 204, "{http:?}");
        assert!(fetched.body.is_empty());
    }
}

/// uWSGI's `cgi-mode` answers with a `Status:` header instead of a status
/// line, as a CGI script does; nginx accepts that from uwsgi backends.
#[test]
fn cgi_mode_heads_from_uwsgi() {
    let setup = Setup::start(&["--cgi-mode"]);
    for http in Http::ALL {
        let fetched = setup.curl(http, "/status?404%20Gone%20Fishing", &[], b"");
        assert_eq!(fetched.status, 404, "{http:?}\n{}", setup.logs());
        assert_eq!(fetched.header("status"), None, "{}", fetched.head);
        assert_status_line(&fetched, http, "404 Gone Fishing");
        let fetched = setup.curl(http, "/echo", &["--data-binary", "@-"], b"hello");
        assert_eq!(fetched.status, 200, "{http:?}: {}", fetched.text());
        assert_eq!(fetched.json()["body_len"], 5);
    }
}

/// `curl --http1.0` offers only `http/1.0`; openssl shows what was
/// negotiated: `http/1.0` alone is accepted, and HTTP/2 is still chosen
/// whenever the client offers it, whatever the client's order.
#[test]
fn alpn_accepts_http10_and_prefers_h2() {
    require_openssl();
    let setup = Setup::start(&[]);
    let request = "GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n";
    for (offered, chosen) in [
        ("http/1.0", "http/1.0"),
        ("http/1.0,http/1.1", "http/1.1"),
        ("http/1.0,http/1.1,h2", "h2"),
    ] {
        let output = s_client_alpn(
            setup.router.addr(),
            "localhost",
            &setup.pki.ca_pem,
            offered,
            request,
        );
        assert!(
            output.contains(&format!("ALPN protocol: {chosen}\n")),
            "offered {offered}:\n{output}"
        );
        if chosen != "h2" {
            // The request is HTTP/1.0 whatever the HTTP/1 ALPN protocol.
            assert_contains_all(
                &output,
                &["HTTP/1.0 200 OK", "\"SERVER_PROTOCOL\": \"HTTP/1.0\""],
            );
        }
    }
}

#[test]
fn h2load_multiplexes_and_pipelines_without_a_failure() {
    h2load::require_h2load();
    let setup = Setup::start(&[]);
    let data = setup.pki.dir().join("h2load-body");
    std::fs::write(&data, pseudo_random(4096, 3)).unwrap();
    const REQUESTS: u64 = 2000;
    // HTTP/2 streams multiplexed, then HTTP/1.1 requests pipelined (sent
    // back to back before the first answer) on the router's own server.
    for (round, (h1, streams)) in [(false, 32), (true, 8)].into_iter().enumerate() {
        let load = Load {
            requests: REQUESTS as u32,
            clients: 4,
            streams,
            h1,
            path: "/echo",
            data: Some(&data),
            timeout: Duration::from_secs(600),
        };
        let (summary, output) = h2load::run(setup.router.addr(), &load);
        let what = format!("h2load -n {REQUESTS} -c 4 -m {streams} h1={h1} (POST 4 KiB)");
        eprintln!("{what}: {}", summary.finished);
        assert_eq!(summary.total, REQUESTS, "{what}: {output}");
        assert_eq!(
            (
                summary.succeeded,
                summary.failed,
                summary.errored,
                summary.timeout
            ),
            (REQUESTS, 0, 0, 0),
            "{what}: {output}\n{}",
            setup.logs()
        );
        assert_eq!(summary.status, [REQUESTS, 0, 0, 0], "{what}: {output}");
        let stats = setup.router.stats();
        let served = REQUESTS * (round as u64 + 1);
        assert_eq!(counter(&stats["http"], "requests"), served, "{stats:#}");
        assert_eq!(counter(&stats["http"], "bad_gateway"), 0, "{stats:#}");
        assert_eq!(counter(&stats["http"], "gateway_timeout"), 0, "{stats:#}");
    }
}
