//! Client connections on an https socket: accept, the PROXY protocol
//! header when the balancer in front sends one, the ClientHello read for
//! what the client offers to resume (pulled from the cluster when the cache
//! lacks it), TLS handshake with the certificate the SNI name asks for,
//! then HTTP/1.x through the router's own request loop, or HTTP/2 through
//! hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::Acceptor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, warn};

use super::activity::{Activity, IdleWatch};
use super::client_body::ClientBody;
use super::client_head::ClientHead;
use super::client_stream::ClientStream;
use super::close_notify;
use super::http1_server::{self, Ended};
use super::proxy_header::{self, Rejection, Source};
use super::wake_gate::WakeGate;
use super::{ConnInfo, Proxy};
use crate::access_log::TlsInfo;
use crate::client_hello::{self, Offer};
use crate::limits;
use crate::metrics::Metrics;
use crate::session_writes::{SessionWrites, WriteHold};
use crate::shutdown::{Shutdown, Tracked};
use crate::tls::{Endpoint, Site};

/// What every connection on one socket shares.
#[derive(Clone, Debug)]
pub struct Socket {
    pub local: SocketAddr,
    pub endpoint: Arc<Endpoint>,
    pub proxy: Arc<Proxy>,
    pub metrics: Arc<Metrics>,
    /// Whether connections start with a PROXY protocol header
    /// (`enable-proxy-protocol`). Shared by the process's sockets and
    /// switched by a reload; read once per connection, at accept.
    pub proxy_protocol: Arc<AtomicBool>,
    /// Bounds connections across all sockets of the process.
    pub slots: Arc<Semaphore>,
}

/// Accepts connections until shutdown; each runs in its own task holding a
/// copy of `tracked`, so the caller can wait for them to drain.
pub async fn accept_loop(
    listener: TcpListener,
    socket: Socket,
    mut shutdown: Shutdown,
    tracked: Tracked,
) {
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&socket.slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // semaphore closed: shutting down
            },
            () = shutdown.requested() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(socket = %socket.local, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.requested() => return,
        };
        let socket = socket.clone();
        let shutdown = shutdown.clone();
        let token = tracked.clone();
        tokio::spawn(async move {
            connection(stream, peer, socket, shutdown).await;
            drop((permit, token));
        });
    }
}

/// One client connection, from TCP accept to close.
async fn connection(stream: TcpStream, peer: SocketAddr, socket: Socket, mut shutdown: Shutdown) {
    let _open = socket.metrics.connection_opened();
    // Each phase is boxed: a future is as large as its largest state, and
    // tokio copies the whole task when spawning it and when it finishes;
    // inline, the handshake's and the HTTP server's states (kilobytes)
    // would be copied at every connection.
    let Some((mut tls, conn, mode)) = Box::pin(establish(stream, peer, &socket)).await else {
        return;
    };
    let proxy = &socket.proxy;
    if mode == HttpMode::Http2 {
        Box::pin(http2(tls, proxy, conn, &mut shutdown)).await;
        return;
    }
    // An HTTP/1.x server speaks only when asked, so its state (kilobytes,
    // and a buffer as large) is made once the client's first bytes arrive,
    // as nginx allocates a request only then: a connection closed right
    // after its handshake, or a browser's speculative connection left
    // idle, costs no more than its TLS.
    let first = match opening(&mut tls, mode, conn.peer, &mut shutdown).await {
        Opening::Sent(first) => first,
        Opening::ClosedByClient => return tickets_to_a_closing_client(&mut tls).await,
        Opening::ClosedByRouter => return close_notify::announce(&mut tls).await,
    };
    if mode == HttpMode::Detect && first.starts_with(H2_PREFACE) {
        let replayed = ClientStream::new(first.to_vec(), tls);
        Box::pin(http2(replayed, proxy, conn, &mut shutdown)).await;
    } else {
        Box::pin(http1(tls, first, proxy, &conn, &mut shutdown)).await;
    }
}

/// Sends what the handshake left for a response (TLS 1.3 tickets,
/// `client_stream`) to a client that closed before asking for one: it may
/// still read (`cachet bench` with no request, a client that closes its
/// writing side and drains), and its next connection resumes with them.
/// Nothing is written when nothing is left; bounded, as a close_notify.
async fn tickets_to_a_closing_client(tls: &mut ClientTls) {
    let _ = tokio::time::timeout(limits::CLOSE_NOTIFY_TIMEOUT, tls.flush()).await;
}

/// How a connection's wait for its first request ended.
enum Opening {
    /// The client's first bytes: at least one for HTTP/1.x; without ALPN,
    /// enough to tell the HTTP/2 preface from an HTTP/1.x request.
    Sent(BytesMut),
    /// The client closed (or broke) the connection first.
    ClosedByClient,
    /// Idle for [`limits::IDLE_TIMEOUT`], or the router is stopping.
    ClosedByRouter,
}

/// Waits for the client's first bytes, as long as an idle connection may
/// stay, and no longer than the router runs.
async fn opening(
    tls: &mut ClientTls,
    mode: HttpMode,
    peer: SocketAddr,
    shutdown: &mut Shutdown,
) -> Opening {
    let read = async {
        let mut first = BytesMut::with_capacity(http1_server::FIRST_READ_SIZE);
        while tls.read_buf(&mut first).await? > 0 {
            let undecided = mode == HttpMode::Detect
                && first.len() < H2_PREFACE.len()
                && H2_PREFACE.starts_with(&first);
            if !undecided {
                break;
            }
        }
        std::io::Result::Ok(first)
    };
    tokio::select! {
        // The client first: its bytes, once here, are served even when
        // shutdown is requested at the same time, as a request already in
        // the HTTP/1.x server would be.
        biased;
        read = tokio::time::timeout(limits::IDLE_TIMEOUT, read) => match read {
            Ok(Ok(first)) if first.is_empty() => Opening::ClosedByClient,
            Ok(Ok(first)) => Opening::Sent(first),
            Ok(Err(error)) => {
                debug!(%peer, %error, "connection ended before its first request");
                Opening::ClosedByClient
            }
            Err(_) => Opening::ClosedByRouter,
        },
        () = shutdown.requested() => Opening::ClosedByRouter,
    }
}

/// How an HTTP/2 client starts (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection up to the end of its TLS handshake: the PROXY protocol
/// header when enabled, the ClientHello, the session it offers fetched when
/// this router lacks it, the handshake. `None` when the connection must
/// close (counted).
async fn establish(
    mut stream: TcpStream,
    peer: SocketAddr,
    socket: &Socket,
) -> Option<(ClientTls, Arc<ConnInfo>, HttpMode)> {
    let metrics = &socket.metrics;
    // TCP_NODELAY comes from the listening socket (`listen`).

    // One budget for the whole handshake, PROXY header and ClientHello
    // included, so a client cannot hold a slot by trickling bytes.
    let deadline = Instant::now() + limits::HANDSHAKE_TIMEOUT;
    // From here on `peer` is the client, whoever's socket this is.
    let peer = if socket.proxy_protocol.load(Relaxed) {
        proxied_peer(&mut stream, peer, deadline, metrics).await?
    } else {
        peer
    };
    // The ClientHello is read here first, for what the client offers to
    // resume; rustls then reads the same bytes again from the buffer.
    let (offer, mut stream) = client_hello(stream, peer, deadline, metrics).await?;
    metrics.client_hello_read(&offer);
    debug!(%peer, %offer, "ClientHello");
    // Read once: a reload swapping the endpoint's certificates later
    // leaves this connection with the configuration it started with.
    let site = socket.endpoint.site_for(offer.server_name.as_deref());
    // With the Redis tier on, the sessions this handshake stores must
    // reach Redis before the bytes that let the client resume leave.
    let writes = site
        .sessions
        .as_ref()
        .filter(|sessions| sessions.writes_to_redis())
        .map(|_| SessionWrites::default());
    stream.hold_writes(WriteHold::new(writes.clone()));
    // Boxed once, so that the wrappers below hold a pointer rather than
    // each a copy of the handshake's state (kilobytes: rustls' connection).
    let handshake = Box::pin(handshake(stream, peer, &site, &offer));
    let outcome = match &writes {
        Some(writes) => tokio::time::timeout_at(deadline, writes.scope(handshake)).await,
        None => tokio::time::timeout_at(deadline, handshake).await,
    };
    let tls = match outcome {
        Ok(Ok(done)) => Box::new(done),
        Ok(Err(error)) => {
            metrics.handshake_failed();
            debug!(%peer, %error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            metrics.handshake_timed_out();
            debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    // A TLS 1.2 session stored during the handshake is queued for the
    // cluster's other routers; let the sync sender put it on the wire
    // before this connection does anything a client can act on (a
    // response, or closing), so that a client reconnecting at once through
    // the balancer usually finds it already there, and the pull on a miss
    // stays the exception. In a worker's single-threaded runtime the
    // sender runs only when this task yields; a yield costs a turn of the
    // runtime (a poll of the sockets), so only when there is one to send.
    if site
        .sessions
        .as_ref()
        .is_some_and(|sessions| sessions.changes_waiting())
    {
        tokio::task::yield_now().await;
    }
    let session = tls.get_ref().1;
    metrics.handshake_completed(session);
    let mode = http_mode(session.alpn_protocol());
    let conn = Arc::new(ConnInfo::new(
        peer,
        socket.local,
        offer.server_name,
        TlsInfo::of(session),
    ));
    Some((tls, conn, mode))
}

/// A client's TLS connection, boxed: rustls' state is over a kilobyte, and
/// each phase of the connection would otherwise carry (and copy) it whole.
type ClientTls = Box<TlsStream<ClientStream<TcpStream>>>;

/// The TLS handshake proper, once the ClientHello is read: the session the
/// client offers fetched when this router lacks it (only this connection
/// waits), then rustls with the configuration the ClientHello calls for.
async fn handshake(
    stream: ClientStream<TcpStream>,
    peer: SocketAddr,
    site: &Site,
    offer: &Offer,
) -> std::io::Result<TlsStream<ClientStream<TcpStream>>> {
    if let Some(sessions) = &site.sessions {
        if let Some(fetched) = sessions.fetch_offered(offer, site.tls13).await {
            debug!(%peer, ?fetched, "looked for the offered session");
        }
    }
    let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
    let choice = site.configs.choice(
        start.client_hello().cipher_suites(),
        !offer.psk_identities.is_empty(),
    );
    let config = Arc::clone(site.configs.get(choice));
    let mut accepting = start.into_stream(config);
    if let Some(stream) = accepting.get_mut() {
        stream.hold_handshake_writes();
    }
    match accepting.into_fallible().await {
        Ok(mut tls) => {
            tls.get_mut().0.handshake_done();
            Ok(tls)
        }
        Err((error, mut stream)) => {
            // The alert that says why is among the kept writes; the
            // caller's deadline bounds sending it.
            stream.handshake_done();
            let _ = stream.shutdown().await;
            Err(error)
        }
    }
}

/// An HTTP/1.x connection whose first bytes are `received`, served by the
/// router's own request loop ([`http1_server`]). Idle or at shutdown, a
/// connection between requests closes at once; one in a request closes
/// after its response.
async fn http1(
    mut tls: ClientTls,
    received: BytesMut,
    proxy: &Proxy,
    conn: &Arc<ConnInfo>,
    shutdown: &mut Shutdown,
) {
    let activity = Arc::new(Activity::default());
    let ended = {
        // Pinned in place: the caller boxes this whole future.
        let mut served = std::pin::pin!(http1_server::serve(
            &mut tls, received, proxy, conn, &activity,
        ));
        let mut idle = IdleCheck::new();
        let mut closing = false;
        // The watches are polled only when they have something to say, not
        // at every wake of the connection (`wake_gate`).
        let watches = WakeGate::default();
        loop {
            tokio::select! {
                // The connection first: when it ends at once (a client
                // that closes after its handshake), the idle check's timer
                // is never armed, nor the shutdown signal watched.
                biased;
                result = served.as_mut() => break result.unwrap_or_else(|error| {
                    debug!(peer = %conn.peer, %error, "client connection ended with an error");
                    Ended::ByClient
                }),
                () = watches.watch(shutdown.requested()), if !closing => {
                    closing = true;
                    activity.close_after_response();
                    if activity.is_between_requests() {
                        break Ended::ByRouter;
                    }
                }
                now = watches.watch(idle.check.tick()) => {
                    if activity.is_between_requests()
                        && (closing || idle.watch.quiet_for(&activity, now) >= limits::IDLE_TIMEOUT)
                    {
                        break Ended::ByRouter;
                    }
                }
            }
        }
    };
    // A close the client did not start is announced (TLS close_notify; a
    // response that ended the connection carried it already); to a client
    // that closed first, or broke the connection, it would be a write to a
    // socket no one reads, answered by a reset (nginx skips it too). A
    // response cut short gets none (`Ended::Aborted`).
    if ended == Ended::ByRouter {
        close_notify::announce(&mut tls).await;
    }
}

/// HTTP/2, served by hyper.
async fn http2<S>(io: S, proxy: &Arc<Proxy>, conn: Arc<ConnInfo>, shutdown: &mut Shutdown)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = Arc::clone(&activity);
        let proxy = Arc::clone(proxy);
        service_fn(move |request: Request<Incoming>| {
            let busy = activity.begin();
            let proxy = Arc::clone(&proxy);
            let conn = Arc::clone(&conn);
            async move {
                let (parts, body) = request.into_parts();
                let head = ClientHead::from_hyper(parts);
                let answer = proxy.handle(head, ClientBody::Hyper(body), &conn).await;
                drop(busy);
                Ok::<_, Infallible>(answer.into_response())
            }
        })
    };

    let builder = h2_builder();
    // Pinned in place: the caller boxes this whole future.
    let mut served = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service));
    let mut closing = false;
    let mut idle = IdleCheck::new();
    let watches = WakeGate::default();
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    debug!(%peer, %error, "client connection ended with an error");
                }
                return;
            }
            () = watches.watch(shutdown.requested()), if !closing => {
                // Finish in-flight requests, accept no new ones.
                served.as_mut().graceful_shutdown();
                closing = true;
            }
            now = watches.watch(idle.check.tick()), if !closing => {
                if idle.watch.quiet_for(&activity, now) >= limits::IDLE_TIMEOUT {
                    served.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// A connection's idle timeout: a check every quarter of it.
struct IdleCheck {
    check: tokio::time::Interval,
    watch: IdleWatch,
}

impl IdleCheck {
    fn new() -> Self {
        // First check one period from now: an interval's immediate first
        // tick would arm a timer due at once, which wakes the runtime's
        // driver (`mode::timer_anchor`), for a check that cannot find the
        // connection idle anyway.
        let period = limits::IDLE_TIMEOUT / 4;
        let now = Instant::now();
        Self {
            check: tokio::time::interval_at(now + period, period),
            watch: IdleWatch::new(now),
        }
    }
}

/// Reads the ClientHello by `deadline`: what it offers, and the stream to
/// hand rustls, which replays what was read; or `None` when the connection
/// must close (counted, with an alert to a client that sent something
/// other than a usable ClientHello).
async fn client_hello(
    mut stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    metrics: &Metrics,
) -> Option<(Offer, ClientStream<TcpStream>)> {
    let error = match tokio::time::timeout_at(deadline, client_hello::read(&mut stream)).await {
        Ok(Ok((offer, first_flight))) => {
            return Some((offer, ClientStream::new(first_flight, stream)))
        }
        Ok(Err(error)) => error,
        Err(_) => {
            metrics.handshake_timed_out();
            debug!(%peer, "no complete ClientHello in time");
            return None;
        }
    };
    debug!(%peer, %error, "no usable ClientHello; closing");
    match error.rejection() {
        Some(reason) => metrics.client_hello_rejected(reason),
        None => metrics.handshake_failed(),
    }
    if let Some(alert) = error.alert() {
        // Best effort: the client may be gone, and must not hold the
        // connection past the deadline by not reading.
        let _ = tokio::time::timeout_at(deadline, stream.write_all(&alert)).await;
    }
    None
}

/// Reads the PROXY protocol header by `deadline`: the client's address
/// (`peer`, the balancer's, when the header names none), or `None` when the
/// connection must close, counted by reason. A header that is not valid to
/// its last byte is never trusted.
async fn proxied_peer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    metrics: &Metrics,
) -> Option<SocketAddr> {
    let rejection = match tokio::time::timeout_at(deadline, proxy_header::read(stream)).await {
        Ok(Ok(source)) => {
            metrics.proxy_header_accepted(source);
            let client = match source {
                Source::Client(client) => client,
                Source::Local => peer,
            };
            debug!(balancer = %peer, %client, "PROXY protocol header");
            return Some(client);
        }
        Ok(Err(error)) => {
            debug!(%peer, %error, "PROXY protocol header refused; closing");
            error.rejection()
        }
        Err(_) => {
            debug!(%peer, "no complete PROXY protocol header in time; closing");
            Rejection::Timeout
        }
    };
    metrics.proxy_header_rejected(rejection);
    None
}

/// What a connection speaks, by its ALPN protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HttpMode {
    Http2,
    /// HTTP/1.1, or HTTP/1.0 for a client that speaks only that (no
    /// chunked encoding for it: a body of unknown length ends with the
    /// connection). Served by the router's own loop.
    Http1,
    /// No ALPN: told apart by the first bytes (the HTTP/2 preface or
    /// not), so that HTTP/1.x gets the same server whatever the client
    /// negotiated.
    Detect,
}

/// The mode for the protocol ALPN chose; every protocol in [`crate::tls::ALPN`]
/// has one of its own.
fn http_mode(alpn: Option<&[u8]>) -> HttpMode {
    match alpn {
        Some(b"h2") => HttpMode::Http2,
        Some(b"http/1.1" | b"http/1.0") => HttpMode::Http1,
        _ => HttpMode::Detect,
    }
}

/// hyper's HTTP/2 server.
fn h2_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits::H2_MAX_STREAMS)
        .max_header_list_size(limits::MAX_HEADER_BYTES as u32)
        .keep_alive_interval(limits::H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(limits::H2_KEEPALIVE_TIMEOUT);
    builder.http2_only()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;

    #[test]
    fn every_offered_protocol_is_served() {
        // A protocol offered but left to detection would be served as
        // whatever the first bytes look like, not as negotiated.
        for protocol in tls::ALPN {
            assert_ne!(
                http_mode(Some(protocol)),
                HttpMode::Detect,
                "{}",
                String::from_utf8_lossy(protocol)
            );
        }
        assert_eq!(tls::ALPN[0], b"h2", "HTTP/2 is preferred");
        assert_eq!(http_mode(Some(b"http/1.0")), HttpMode::Http1);
        assert_eq!(http_mode(None), HttpMode::Detect);
    }
}
