//! TLS and HTTP clients: rustls through tokio-rustls, hyper on top, HTTP/2
//! when the router agrees to it over ALPN.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::Pki;

/// Bound on any single client exchange.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body hyper's client can send from a spawned connection task.
pub trait RequestBody: Body<Data: Send, Error: Into<BoxError>> + Send + Unpin + 'static {}

impl<B> RequestBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Send + Unpin + 'static {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    V12,
    V13,
}

/// A client trusting the test CA, pinned to one TLS version, offering the
/// given ALPN protocols, with its own session store (so resumption is per
/// config, as with one browser).
pub fn config(pki: &Pki, version: Tls, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    config_with_clock(pki, version, alpn, Arc::new(DefaultTimeProvider))
}

/// [`config`] with the clock `time`: a client whose clock stands still
/// offers its tickets however old they are (as a client replaying a
/// captured ticket would), so a test sees the server refuse them.
pub fn config_with_clock(
    pki: &Pki,
    version: Tls,
    alpn: &[&[u8]],
    time: Arc<dyn TimeProvider>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        Tls::V12 => &[&rustls::version::TLS12],
        Tls::V13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_details(provider, time)
        .with_protocol_versions(versions)
        .expect("the default provider speaks TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::in_memory_sessions(64);
    Arc::new(config)
}

/// What one exchange saw.
#[derive(Debug)]
pub struct Exchange {
    /// The client's end of the TCP connection.
    pub local: SocketAddr,
    pub resumed: bool,
    pub version: ProtocolVersion,
    pub http: http::Version,
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Exchange {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

/// Connects and completes a TLS handshake.
pub async fn connect(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    handshake(config, TcpStream::connect(addr).await?, server_name).await
}

/// A TCP connection to `addr` from the local address `source` (another
/// loopback address, for a client the router must tell apart).
pub async fn tcp_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Completes a TLS handshake over `tcp`, a connection already made (and
/// maybe already written to, as a balancer writes a PROXY header).
pub async fn handshake(
    config: &Arc<ClientConfig>,
    tcp: TcpStream,
    server_name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    // As browsers do: without it, Nagle holds a request written right after
    // a TLS 1.2 abbreviated handshake until the server's delayed ACK (40 ms).
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
}

/// A GET on a fresh connection.
pub async fn get(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    path: &str,
) -> Exchange {
    send(config, addr, server_name, get_request(server_name, path)).await
}

/// A GET over `tcp`, a connection already made.
pub async fn get_over(
    config: &Arc<ClientConfig>,
    tcp: TcpStream,
    server_name: &str,
    path: &str,
) -> Exchange {
    let request = get_request(server_name, path);
    send_over(config, tcp, server_name, request).await
}

/// A GET of `path` on `server_name`, as [`get`] sends it.
pub fn get_request(server_name: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", server_name)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A POST of `body` to `path` on `server_name`, with `headers` besides
/// `host`.
pub fn post_request(
    server_name: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut request = Request::post(path).header("host", server_name);
    for &(name, value) in headers {
        request = request.header(name, value);
    }
    request.body(Full::new(body)).unwrap()
}

/// Sends one request on a fresh connection, HTTP/2 if ALPN chose it, and
/// reads the whole response (which also lets TLS 1.3 tickets arrive).
pub async fn send<B>(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    request: Request<B>,
) -> Exchange
where
    B: RequestBody,
{
    bounded(addr, async {
        let tcp = TcpStream::connect(addr).await?;
        exchange(config, tcp, server_name, request).await
    })
    .await
}

/// Like [`send`], over `tcp`, a connection already made.
pub async fn send_over<B>(
    config: &Arc<ClientConfig>,
    tcp: TcpStream,
    server_name: &str,
    request: Request<B>,
) -> Exchange
where
    B: RequestBody,
{
    let peer = tcp.peer_addr().expect("a connected socket");
    bounded(peer, exchange(config, tcp, server_name, request)).await
}

/// Runs an exchange with `peer` to completion within [`EXCHANGE_TIMEOUT`],
/// panicking on failure.
async fn bounded(
    peer: SocketAddr,
    exchange: impl std::future::Future<Output = Result<Exchange, BoxError>>,
) -> Exchange {
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("exchange with {peer} took more than {EXCHANGE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("exchange with {peer} failed: {e}"))
}

async fn exchange<B>(
    config: &Arc<ClientConfig>,
    tcp: TcpStream,
    server_name: &str,
    mut request: Request<B>,
) -> Result<Exchange, BoxError>
where
    B: RequestBody,
{
    let local = tcp.local_addr()?;
    let tls = handshake(config, tcp, server_name).await?;
    let session = tls.get_ref().1;
    let resumed = session.handshake_kind() == Some(HandshakeKind::Resumed);
    let version = session.protocol_version().expect("handshake done");
    let h2 = session.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let response: Response<hyper::body::Incoming> = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        if request.uri().authority().is_none() {
            let uri = format!("https://{server_name}{}", request.uri());
            *request.uri_mut() = uri.parse()?;
            request.headers_mut().remove("host");
        }
        sender.send_request(request).await?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        sender.send_request(request).await?
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Exchange {
        local,
        resumed,
        version,
        http: parts.version,
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// How many segments carrying data `socket` has received (`TCP_INFO`):
/// how the server split what it sent, whatever the reads made of it.
pub fn data_segments_received(socket: &impl std::os::fd::AsRawFd) -> u32 {
    cachet::sys::socket::tcp_info(socket)
        .expect("TCP_INFO of a connected socket")
        .tcpi_data_segs_in
}
