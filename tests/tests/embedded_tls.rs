//! Constrained TLS clients are served: embedded-tls (drogue-iot's no_std,
//! allocation-free TLS 1.3 client, as an appliance would run it) completes a
//! handshake with the router, verifies the test CA's certificate chain and
//! gets the backend's answer, with the buffers such a device can afford.
//!
//! What embedded-tls speaks: TLS 1.3 only, key exchange on secp256r1 only,
//! TLS_AES_128_GCM_SHA256 or TLS_AES_256_GCM_SHA384, server signatures
//! ecdsa_secp256r1_sha256 (the `Pki` issues P-256 ECDSA certificates, rcgen's
//! default). The router's rustls (aws-lc-rs) offers all of these by default.
//!
//! The negotiated parameters are read off the wire: a tap on the socket keeps
//! every byte the router sent, and the plaintext ServerHello names the
//! version, the cipher suite and the key-exchange group; a wrapper around
//! embedded-tls' certificate verifier records the leaf certificate and the
//! CertificateVerify signature scheme.
//!
//! A limitation, documented rather than hidden (see
//! `max_fragment_length_is_not_negotiated`): rustls does not implement the
//! max_fragment_length extension (RFC 6066) nor record_size_limit (RFC 8449),
//! so the router ignores a client's request for small records and sends up to
//! 16 KiB of plaintext per record. A client must therefore keep a read buffer
//! of a full record (16 KiB + overhead); its write buffer can be small.
//!
//! The client is blocking embedded-tls over a std `TcpStream`, run on a
//! blocking thread, bounded by socket timeouts and an overall timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cachet_tests::backends::{self, Backend};
use cachet_tests::pki::Leaf;
use cachet_tests::{Pki, Router};
use embedded_io_adapters::std::FromStd;
use embedded_tls::alert::AlertDescription;
use embedded_tls::blocking::{
    Aes128GcmSha256, Aes256GcmSha384, Certificate, CertificateEntryRef, CertificateRef,
    CertificateVerifyRef, CryptoProvider, MaxFragmentLength, TlsCipherSuite, TlsConfig,
    TlsConnection, TlsContext, TlsError, TlsVerifier,
};
use embedded_tls::pki::CertVerifier;
use embedded_tls::{CryptoRngCore, SignatureScheme};
use rand_core::{OsRng, RngCore};

/// A full TLS record: 16 KiB of plaintext plus the most a TLS 1.3 record may
/// add (RFC 8446 §5.2: 256 bytes) and its 5-byte header. rustls adds only 22
/// bytes, but an appliance cannot know which server it meets. Smaller read
/// buffers fail as soon as the router sends a record larger than they are:
/// see `max_fragment_length_is_not_negotiated`.
const READ_BUFFER: usize = 16 * 1024 + 256 + 5;
/// The write side can be small: embedded-tls splits writes into records of
/// this size (less its overhead), and the ClientHello fits easily.
const WRITE_BUFFER: usize = 4 * 1024;
/// The largest certificate message the verifier keeps (leaf + CA, P-256).
const CERT_SIZE: usize = 4096;
/// Bounds every socket read and write of the client.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds one whole client run (handshake and all its requests).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

// IANA code points, as they appear in the ServerHello.
const TLS13: u16 = 0x0304;
const TLS_AES_128_GCM_SHA256: u16 = 0x1301;
const TLS_AES_256_GCM_SHA384: u16 = 0x1302;
const SECP256R1: u16 = 0x0017;

/// A router with one https socket (optionally pinned to `ciphers`) in front
/// of an HTTP backend, with a stats socket; its certificate, and a client
/// setup that trusts its CA.
struct Running {
    /// Kept for its files, which the router reads (on a reload too).
    _pki: Pki,
    backend: Backend,
    router: Router,
    leaf: Leaf,
    setup: Setup,
}

async fn running(ciphers: Option<&str>) -> Running {
    let pki = Pki::new();
    let backend = backends::http("app").await;
    let leaf = pki.leaf("localhost", &["localhost"]);
    let mut https = leaf.https("127.0.0.1:0");
    if let Some(ciphers) = ciphers {
        https = format!("{https},{ciphers}");
    }
    let router = Router::start(&[
        "--https".to_owned(),
        https,
        "--http-to".to_owned(),
        backend.http_to(),
        "--stats".to_owned(),
        "127.0.0.1:0".to_owned(),
    ]);
    let setup = Setup::new(router.addr(), &pki);
    Running {
        _pki: pki,
        backend,
        router,
        leaf,
        setup,
    }
}

/// Panics unless the handshake failed the way `expected` accepts; `what`
/// says what the client offered or was offered.
fn assert_refused<T>(
    outcome: &Result<T, TlsError>,
    expected: impl FnOnce(&TlsError) -> bool,
    what: &str,
) {
    match outcome {
        Err(error) if expected(error) => {}
        Err(other) => panic!("{what}: refused, but with {other:?}"),
        Ok(_) => panic!("{what} was accepted"),
    }
}

/// Runs the blocking client `f` on a blocking thread, bounded in time.
async fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::time::timeout(RUN_TIMEOUT, tokio::task::spawn_blocking(f))
        .await
        .expect("the embedded-tls client did not finish in time")
        .expect("the embedded-tls client panicked")
}

fn random_hex() -> String {
    format!("{:016x}", OsRng.next_u64())
}

/// A std socket that keeps a copy of every byte received, so the test can
/// read the plaintext ServerHello and the record sizes the router chose.
struct Tap {
    stream: TcpStream,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.received.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// embedded-tls' own chain verifier (`rustpki`: P-256 signatures, validity
/// against the system clock, host name against the SANs), recording what
/// the server presented.
struct Recording<CS: TlsCipherSuite> {
    inner: CertVerifier<'static, CS, SystemTime, CERT_SIZE>,
    leaf: Option<Vec<u8>>,
    chain_len: usize,
    scheme: Option<SignatureScheme>,
}

impl<CS: TlsCipherSuite> TlsVerifier<CS> for Recording<CS> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        self.inner.set_hostname_verification(hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &CS::Hash,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        self.chain_len = cert.entries.len();
        if let Some(CertificateEntryRef::X509(der)) = cert.entries.first() {
            self.leaf = Some(der.to_vec());
        }
        self.inner.verify_certificate(transcript, cert)
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        self.scheme = Some(verify.signature_scheme);
        self.inner.verify_signature(verify)
    }
}

struct Provider<CS: TlsCipherSuite> {
    verifier: Recording<CS>,
}

impl<CS: TlsCipherSuite> CryptoProvider for Provider<CS> {
    type CipherSuite = CS;
    // No client certificate, so nothing is ever signed.
    type Signature = Vec<u8>;

    fn rng(&mut self) -> impl CryptoRngCore {
        OsRng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<CS>, TlsError> {
        Ok(&mut self.verifier)
    }
}

/// How a client run is set up.
#[derive(Clone)]
struct Setup {
    addr: SocketAddr,
    /// The trust anchor (DER), leaked: embedded-tls borrows it for the
    /// connection's life, as firmware would from flash.
    ca: &'static [u8],
    read_buffer: usize,
    max_fragment_length: Option<MaxFragmentLength>,
}

impl Setup {
    fn new(addr: SocketAddr, pki: &Pki) -> Self {
        Self {
            addr,
            ca: Vec::leak(pki.ca_der.to_vec()),
            read_buffer: READ_BUFFER,
            max_fragment_length: None,
        }
    }
}

/// What the ServerHello said.
#[derive(Debug, PartialEq)]
struct ServerHello {
    version: u16,
    cipher_suite: u16,
    group: u16,
}

/// What one client run saw.
struct Run<T> {
    /// What the body of the run returned (responses), or the first error.
    outcome: Result<T, TlsError>,
    /// Every byte the router sent, encrypted.
    received: Vec<u8>,
    leaf: Option<Vec<u8>>,
    chain_len: usize,
    scheme: Option<SignatureScheme>,
}

impl<T> Run<T> {
    fn server_hello(&self) -> ServerHello {
        parse_server_hello(&self.received)
    }

    /// (content type, length) of each record the router sent.
    fn records(&self) -> Vec<(u8, usize)> {
        let mut records = Vec::new();
        let mut rest = &self.received[..];
        while rest.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            records.push((rest[0], len));
            rest = &rest[(5 + len).min(rest.len())..];
        }
        records
    }
}

/// Connects, handshakes with embedded-tls (cipher suite `CS`, the only one
/// offered) and runs `body` on the open connection. Blocking.
fn session<CS, T>(
    setup: Setup,
    body: impl FnOnce(&mut TlsConnection<'_, FromStd<Tap>, CS>) -> Result<T, TlsError>,
) -> Run<T>
where
    CS: TlsCipherSuite + 'static,
{
    let stream = TcpStream::connect(setup.addr).expect("connecting to the router");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        stream,
        received: Arc::clone(&received),
    };
    let mut read_buffer = vec![0; setup.read_buffer];
    let mut write_buffer = vec![0; WRITE_BUFFER];
    let mut config = TlsConfig::new().with_server_name("localhost");
    if let Some(length) = setup.max_fragment_length {
        config = config.with_max_fragment_length(length);
    }
    let mut provider = Provider::<CS> {
        verifier: Recording {
            inner: CertVerifier::new(Certificate::X509(setup.ca)),
            leaf: None,
            chain_len: 0,
            scheme: None,
        },
    };
    let mut tls: TlsConnection<'_, FromStd<Tap>, CS> =
        TlsConnection::new(FromStd::new(tap), &mut read_buffer, &mut write_buffer);
    let outcome = tls
        .open(TlsContext::new(&config, &mut provider))
        .and_then(|()| body(&mut tls));
    drop(tls);
    let received = received.lock().unwrap().clone();
    Run {
        outcome,
        received,
        leaf: provider.verifier.leaf,
        chain_len: provider.verifier.chain_len,
        scheme: provider.verifier.scheme,
    }
}

/// The ServerHello at the start of what the router sent: version (from
/// supported_versions), cipher suite and key_share group.
fn parse_server_hello(received: &[u8]) -> ServerHello {
    assert!(received.len() > 5, "the router sent no record");
    assert_eq!(received[0], 22, "the first record is not a handshake");
    let len = usize::from(u16::from_be_bytes([received[3], received[4]]));
    let hello = &received[5..5 + len];
    assert_eq!(
        hello[0], 2,
        "the first handshake message is not a ServerHello"
    );
    // A HelloRetryRequest is a ServerHello with this random (RFC 8446 §4.1.3);
    // a client offering only secp256r1, with a share for it, never needs one.
    const HRR: [u8; 8] = [0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11];
    assert_ne!(
        hello[6..14],
        HRR,
        "the router asked for a HelloRetryRequest"
    );
    let mut at = 4 + 2 + 32; // header, legacy_version, random
    at += 1 + usize::from(hello[at]); // legacy_session_id_echo
    let cipher_suite = u16::from_be_bytes([hello[at], hello[at + 1]]);
    at += 2 + 1; // cipher_suite, legacy_compression_method
    let end = at + 2 + usize::from(u16::from_be_bytes([hello[at], hello[at + 1]]));
    at += 2;
    let (mut version, mut group) = (None, None);
    while at < end {
        let kind = u16::from_be_bytes([hello[at], hello[at + 1]]);
        let len = usize::from(u16::from_be_bytes([hello[at + 2], hello[at + 3]]));
        let data = &hello[at + 4..at + 4 + len];
        match kind {
            0x002b => version = Some(u16::from_be_bytes([data[0], data[1]])),
            0x0033 => group = Some(u16::from_be_bytes([data[0], data[1]])),
            _ => {}
        }
        at += 4 + len;
    }
    ServerHello {
        version: version.expect("no supported_versions in the ServerHello"),
        cipher_suite,
        group: group.expect("no key_share in the ServerHello"),
    }
}

/// Writes all of `data`: embedded-tls buffers at most one record (the write
/// buffer less its overhead) per call.
fn write_all<CS: TlsCipherSuite + 'static>(
    tls: &mut TlsConnection<'_, FromStd<Tap>, CS>,
    mut data: &[u8],
) -> Result<(), TlsError> {
    while !data.is_empty() {
        let n = tls.write(data)?;
        assert!(n > 0, "embedded-tls accepted no bytes");
        data = &data[n..];
    }
    tls.flush()
}

fn request(path: &str, probe: &str, extra: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Probe: {probe}\r\n{extra}\
         Connection: {connection}\r\n\r\n"
    )
    .into_bytes()
}

/// One HTTP/1.1 response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Parses one response at the start of `buf`: `Some((response, consumed))`
/// once it is complete. Bodies are framed by Content-Length (the backend
/// always sends one) or, with `at_eof`, by the end of the stream.
fn parse_response(buf: &[u8], at_eof: bool) -> Option<(Response, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(buf).expect("a valid HTTP/1.1 response head") {
        httparse::Status::Complete(head) => head,
        httparse::Status::Partial => return None,
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let status = parsed.code.expect("a status code");
    let length = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse::<usize>().expect("a numeric Content-Length"));
    let end = match length {
        Some(length) if buf.len() >= head + length => head + length,
        Some(_) => return None,
        None if at_eof => buf.len(),
        None => return None,
    };
    let response = Response {
        status,
        headers,
        body: buf[head..end].to_vec(),
    };
    Some((response, end))
}

/// Reads one response (keep-alive), leaving what follows in `pending`.
fn read_response<CS: TlsCipherSuite + 'static>(
    tls: &mut TlsConnection<'_, FromStd<Tap>, CS>,
    pending: &mut Vec<u8>,
) -> Result<Response, TlsError> {
    let mut chunk = [0; 2048];
    loop {
        if let Some((response, used)) = parse_response(pending, false) {
            pending.drain(..used);
            return Ok(response);
        }
        let n = tls.read(&mut chunk)?;
        assert!(n > 0, "embedded-tls returned no data");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// How the router ended a `Connection: close` exchange.
#[derive(Debug, PartialEq)]
enum Closed {
    /// With a close_notify alert, as TLS requires.
    CloseNotify,
    /// Some other way: the error embedded-tls reported.
    Other(String),
}

/// One GET with `Connection: close` (and the header lines `extra`) over a
/// fresh embedded-tls connection offering only `CS`: the run, whose
/// outcome is all the router sent until it closed, and how it closed.
async fn get_to_close<CS: TlsCipherSuite + 'static>(
    setup: Setup,
    path: &str,
    probe: &str,
    extra: &str,
) -> Run<(Vec<u8>, Closed)> {
    let request = request(path, probe, extra, true);
    bounded(move || {
        session::<CS, _>(setup, |tls| {
            write_all(tls, &request)?;
            Ok(read_to_close(tls))
        })
    })
    .await
}

/// Reads everything until the router closes the connection.
fn read_to_close<CS: TlsCipherSuite + 'static>(
    tls: &mut TlsConnection<'_, FromStd<Tap>, CS>,
) -> (Vec<u8>, Closed) {
    let mut data = Vec::new();
    let mut chunk = [0; 2048];
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => return (data, Closed::Other("a read of 0 bytes".into())),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(TlsError::ConnectionClosed) => return (data, Closed::CloseNotify),
            Err(e) => return (data, Closed::Other(format!("{e:?}"))),
        }
    }
}

/// Checks that `response` is the backend's echo of a GET for `path` that
/// carried `X-Probe: probe`.
fn assert_echo(response: &Response, path: &str, probe: &str) {
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("x-backend"), Some("app"));
    let document = response.json();
    assert_eq!(document["backend"], "app");
    assert_eq!(document["method"], "GET");
    assert_eq!(document["uri"], path, "{document:#}");
    assert_eq!(document["headers"]["x-probe"][0], probe, "{document:#}");
    assert_eq!(document["headers"]["host"][0], "localhost", "{document:#}");
}

/// Polls the router's stats until `check` accepts them (bounded); the
/// last stats read.
fn stats_until(router: &Router, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut stats = serde_json::Value::Null;
    cachet_tests::wait_until_blocking(Duration::from_secs(60), || {
        stats = router.stats();
        check(&stats)
    });
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_get_with_connection_close() {
    let running = running(None).await;
    let (path, probe) = (
        format!("/embedded-tls/{}?q={}", random_hex(), random_hex()),
        random_hex(),
    );

    let run = get_to_close::<Aes128GcmSha256>(running.setup, &path, &probe, "").await;
    let (data, closed) = run.outcome.as_ref().expect("the TLS exchange failed");
    let (response, used) = parse_response(data, true).expect("a complete response");
    assert_eq!(used, data.len(), "bytes after the response");
    assert_echo(&response, &path, &probe);
    assert_eq!(*closed, Closed::CloseNotify);
    assert_eq!(running.backend.served(), 1);

    // The parameters a constrained client can afford, with no retry.
    assert_eq!(
        run.server_hello(),
        ServerHello {
            version: TLS13,
            cipher_suite: TLS_AES_128_GCM_SHA256,
            group: SECP256R1,
        }
    );
    assert_eq!(run.scheme, Some(SignatureScheme::EcdsaSecp256r1Sha256));
    eprintln!(
        "negotiated {:?}, CertificateVerify {:?}; records from the router: {:?}",
        run.server_hello(),
        run.scheme,
        run.records()
    );
    // The router's own leaf, sent with its CA: the chain from `Pki`.
    let served_leaf = run.leaf.as_deref().expect("no certificate was verified");
    assert_eq!(served_leaf, &running.leaf.der[..]);
    assert_eq!(run.chain_len, 2);

    let stats = stats_until(&running.router, |s| {
        s["tls"]["handshakes"]["tls13"]["full"] == 1
    });
    assert_eq!(stats["tls"]["handshakes"]["tls13"]["full"], 1, "{stats:#}");
}

/// The verification is real: the same router, trusted through another CA,
/// is refused during the handshake, and no request reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let running = running(None).await;
    let setup = Setup::new(running.router.addr(), &Pki::new());
    let run = get_to_close::<Aes128GcmSha256>(setup, "/never", "x", "").await;
    assert_refused(
        &run.outcome,
        |error| matches!(error, TlsError::InvalidCertificate),
        "a certificate from another CA",
    );
    assert_eq!(run.chain_len, 2, "the router sent its chain");
    assert_eq!(running.backend.served(), 0);
}

/// Several requests over one embedded-tls connection (keep-alive), one of
/// them with a request head larger than the 4 KiB write buffer (sent as
/// several records) and a response larger than 4 KiB; one TLS handshake for
/// all of them, then the client closes with close_notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_share_one_handshake() {
    const REQUESTS: usize = 5;
    let running = running(None).await;
    let padding = "p".repeat(6000);
    let exchanges: Vec<(String, String)> = (0..REQUESTS)
        .map(|i| (format!("/keep-alive/{i}/{}", random_hex()), random_hex()))
        .collect();

    let run = {
        let (exchanges, padding) = (exchanges.clone(), padding.clone());
        bounded(move || {
            session::<Aes128GcmSha256, _>(running.setup, |tls| {
                let mut pending = Vec::new();
                let mut responses = Vec::new();
                for (i, (path, probe)) in exchanges.iter().enumerate() {
                    let extra = if i == 2 {
                        format!("X-Padding: {padding}\r\n")
                    } else {
                        String::new()
                    };
                    write_all(tls, &request(path, probe, &extra, false))?;
                    responses.push(read_response(tls, &mut pending)?);
                }
                assert!(pending.is_empty(), "bytes after the last response");
                Ok(responses)
            })
        })
        .await
    };
    let responses = run.outcome.as_ref().expect("the TLS exchange failed");
    assert_eq!(responses.len(), REQUESTS);
    for (response, (path, probe)) in responses.iter().zip(&exchanges) {
        assert_echo(response, path, probe);
        assert_ne!(response.header("connection"), Some("close"));
    }
    assert_eq!(
        responses[2].json()["headers"]["x-padding"][0],
        padding.as_str()
    );
    assert!(responses[2].body.len() > 6000);
    assert_eq!(running.backend.served(), REQUESTS);
    assert_eq!(run.server_hello().cipher_suite, TLS_AES_128_GCM_SHA256);

    let stats = stats_until(&running.router, |s| {
        s["workers"][0]["requests"] == REQUESTS as u64
            && s["tls"]["handshakes"]["tls13"]["full"] == 1
    });
    assert_eq!(stats["tls"]["handshakes"]["tls13"]["full"], 1, "{stats:#}");
    assert_eq!(
        stats["tls"]["handshakes"]["tls13"]["resumed"], 0,
        "{stats:#}"
    );
    assert_eq!(stats["workers"][0]["handshakes"], 1, "{stats:#}");
    assert_eq!(
        stats["workers"][0]["requests"], REQUESTS as u64,
        "{stats:#}"
    );
}

/// embedded-tls' other suite, TLS_AES_256_GCM_SHA384, against a router
/// pinned to it; the same router refuses a client that offers only
/// TLS_AES_128_GCM_SHA256 with a handshake_failure alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_256_gcm_sha384_when_the_router_is_pinned_to_it() {
    let running = running(Some("TLS13_AES_256_GCM_SHA384")).await;
    let (path, probe) = (format!("/aes256/{}", random_hex()), random_hex());

    let run = get_to_close::<Aes256GcmSha384>(running.setup.clone(), &path, &probe, "").await;
    let (data, closed) = run.outcome.as_ref().expect("the TLS exchange failed");
    let (response, _) = parse_response(data, true).expect("a complete response");
    assert_echo(&response, &path, &probe);
    assert_eq!(*closed, Closed::CloseNotify);
    assert_eq!(
        run.server_hello(),
        ServerHello {
            version: TLS13,
            cipher_suite: TLS_AES_256_GCM_SHA384,
            group: SECP256R1,
        }
    );
    assert_eq!(run.scheme, Some(SignatureScheme::EcdsaSecp256r1Sha256));

    let refused = bounded(move || session::<Aes128GcmSha256, _>(running.setup, |_| Ok(()))).await;
    assert_refused(
        &refused.outcome,
        |error| {
            matches!(
                error,
                TlsError::HandshakeAborted(_, AlertDescription::HandshakeFailure)
            )
        },
        "a suite the router was not given",
    );
    assert_eq!(running.backend.served(), 1);
}

/// The router does not honour max_fragment_length (RFC 6066): rustls does
/// not implement it (nor record_size_limit, RFC 8449), and ignores the
/// extension. A client asking for 4 KiB records is still served, but a
/// response larger than 4 KiB arrives in one larger record, so only a client
/// with a full-record read buffer can read it. This test pins that down; if
/// the router ever negotiates small records, it fails and should be turned
/// into a test that small buffers work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_fragment_length_is_not_negotiated() {
    const FRAGMENT: usize = 4096;
    let mut running = running(None).await;
    running.setup.max_fragment_length = Some(MaxFragmentLength::Bits12);
    // Large enough that however the router splits the body into writes, one
    // of them is well over the fragment asked for.
    let padding = format!("X-Padding: {}\r\n", "p".repeat(12_000));
    let (path, probe) = (format!("/mfl/{}", random_hex()), random_hex());

    // A full-record read buffer: served, whatever was asked.
    let run = get_to_close::<Aes128GcmSha256>(running.setup.clone(), &path, &probe, &padding).await;
    let (data, closed) = run.outcome.as_ref().expect("the TLS exchange failed");
    let (response, _) = parse_response(data, true).expect("a complete response");
    assert_echo(&response, &path, &probe);
    assert_eq!(*closed, Closed::CloseNotify);
    let application_data: Vec<usize> = run
        .records()
        .into_iter()
        .filter(|&(kind, _)| kind == 23)
        .map(|(_, len)| len)
        .collect();
    let largest = application_data.iter().copied().max().unwrap_or(0);
    // TLS 1.3: at most the fragment, its content type, padding and the AEAD
    // tag (RFC 8446 §5.2, RFC 6066 §4).
    assert!(
        largest > FRAGMENT + 256,
        "the router kept records within the max_fragment_length asked for \
         (largest {largest} bytes): it honours it now, test small buffers instead"
    );

    // A client that trusted the extension and sized its read buffer to the
    // fragment it asked for cannot read that record.
    running.setup.read_buffer = FRAGMENT + 256 + 5;
    let (path, probe) = (format!("/mfl/{}", random_hex()), random_hex());
    let small = get_to_close::<Aes128GcmSha256>(running.setup, &path, &probe, &padding).await;
    eprintln!(
        "max_fragment_length 2^12 asked for; application-data records {application_data:?}; \
         a {}-byte read buffer ended with {:?}",
        FRAGMENT + 256 + 5,
        small
            .outcome
            .as_ref()
            .map(|(data, closed)| (data.len(), closed))
    );
    let complete = matches!(
        &small.outcome,
        Ok((data, _)) if parse_response(data, false).is_some()
    );
    assert!(
        !complete,
        "a {}-byte read buffer read a {largest}-byte record",
        FRAGMENT + 256 + 5
    );
}
