//! From a decrypted client request to a backend and back.
//!
//! [`serve`] runs client connections (the PROXY protocol header of
//! [`proxy_header`] when enabled, the ClientHello read by [`client_hello`]
//! and replayed to rustls through [`client_stream`], TLS, then HTTP/1.1 or HTTP/2
//! through hyper); [`Proxy::handle`] picks a backend from the [`pool`] and speaks
//! either the uwsgi protocol ([`uwsgi_backend`]) or HTTP/1.1
//! ([`http_backend`]) to it.

pub mod activity;
pub mod answer;
pub mod backend_stream;
pub mod client_body;
pub mod client_head;
pub mod client_stream;
pub mod close_notify;
pub mod http1_server;
pub mod http_backend;
pub mod keepalive;
pub mod pool;
pub mod proxy_header;
pub mod request_head;
pub mod response_body;
pub mod response_writer;
pub mod serve;
pub mod uwsgi_backend;
pub mod wake_gate;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tracing::warn;

use crate::access_log::{self, AccessLog, TlsInfo};
use crate::config::BackendProtocol;
use crate::limits;
use crate::metrics::Metrics;
use answer::Answer;
use client_body::ClientBody;
use client_head::ClientHead;
use pool::{BackendPool, BackendState, Link};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response bodies: streamed from a backend or generated here.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// What polling one of the router's bodies for its next frame gives.
pub type PolledFrame = std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>>;

/// What a request handler knows about the client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client: the address a PROXY protocol header gave
    /// (`enable-proxy-protocol`), else the TCP peer.
    pub peer: SocketAddr,
    /// `peer`'s address as text, what X-Forwarded-For gets on each of the
    /// connection's requests: written at the first, not at the handshake,
    /// since many connections never make one.
    client_ip: OnceLock<String>,
    /// The https socket's own address.
    pub local: SocketAddr,
    /// The SNI name the client asked for.
    pub server_name: Option<String>,
    pub tls: TlsInfo,
}

impl ConnInfo {
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        server_name: Option<String>,
        tls: TlsInfo,
    ) -> Self {
        Self {
            peer,
            client_ip: OnceLock::new(),
            local,
            server_name,
            tls,
        }
    }

    /// The client's address as text, for X-Forwarded-For.
    pub fn client_ip(&self) -> &str {
        self.client_ip.get_or_init(|| self.peer.ip().to_string())
    }
}

/// A failure after a backend was chosen, answered by the router itself.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the backend did not answer within {0}s")]
    Timeout(u64),
    #[error("{0}")]
    Backend(String),
    #[error("{0}")]
    Client(StatusCode, String),
}

/// Shared by every connection of the router.
#[derive(Debug)]
pub struct Proxy {
    pub pool: BackendPool,
    pub metrics: Arc<Metrics>,
    /// `access-log`, when on.
    pub access_log: Option<Arc<AccessLog>>,
}

impl Proxy {
    /// Answers one client request, from a backend or with an error page,
    /// and logs it when the access log is on.
    /// One `respond` call whether or not the log is on.
    pub async fn handle(&self, head: ClientHead, body: ClientBody, conn: &Arc<ConnInfo>) -> Answer {
        self.metrics.request();
        let logged = self.access_log.as_ref().map(|log| {
            let request = access_log::Request {
                started: std::time::Instant::now(),
                method: head.method.clone(),
                target: head
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                version: head.version,
            };
            (log, request)
        });
        let (answer, backend) = self.respond(head, body, conn).await;
        let Some((log, logged)) = logged else {
            return answer;
        };
        let body = LoggedBody {
            body: answer.body,
            bytes: 0,
            log: Arc::clone(log),
            request: logged,
            conn: Arc::clone(conn),
            status: answer.status.as_u16(),
            backend,
        };
        Answer {
            body: body.boxed_unsync(),
            ..answer
        }
    }

    /// The response, and the backend it came from (if one was reached).
    /// `head` has no field that describes the client's connection: none
    /// reaches a backend (RFC 9110 7.6.1). For a uwsgi backend above all
    /// Transfer-Encoding: the body goes out de-chunked with a
    /// CONTENT_LENGTH, and an HTTP_TRANSFER_ENCODING of `chunked` makes
    /// Werkzeug ignore CONTENT_LENGTH (an empty body) and uWSGI's
    /// chunked-input readers look for chunk sizes that are not there.
    async fn respond(
        &self,
        head: ClientHead,
        body: ClientBody,
        conn: &ConnInfo,
    ) -> (Answer, Option<Arc<BackendState>>) {
        let (backend, link) = match self.pool.connect().await {
            Ok(connected) => connected,
            Err(none) => {
                self.metrics.bad_gateway();
                let detail = if none.attempts.is_empty() {
                    "no backend is configured (add `http-to`)".to_owned()
                } else {
                    format!("no backend answered:\n  {}", none.attempts.join("\n  "))
                };
                return (Answer::plain(StatusCode::BAD_GATEWAY, &detail), None);
            }
        };
        let name = &backend.backend.name;
        let forwarded = match (backend.backend.protocol, link) {
            (BackendProtocol::Uwsgi, Link::Fresh(stream)) => {
                uwsgi_backend::forward(stream, head, body, conn).await
            }
            // Only HTTP backends park connections, so a reused link is HTTP.
            (_, link) => http_backend::forward(&backend, link, head, body, conn).await,
        };
        let response = match forwarded {
            Ok(response) => response,
            Err(ForwardError::Client(status, detail)) => Answer::plain(status, &detail),
            Err(error @ ForwardError::Timeout(_)) => {
                self.metrics.gateway_timeout();
                warn!(backend = %name, %error, "backend timed out");
                Answer::plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("backend {name}: {error}"),
                )
            }
            Err(error @ ForwardError::Backend(_)) => {
                self.metrics.bad_gateway();
                warn!(backend = %name, %error, "backend failed");
                Answer::plain(StatusCode::BAD_GATEWAY, &format!("backend {name}: {error}"))
            }
        };
        (response, Some(backend))
    }
}

/// A response body that writes the request's access log line once it is
/// finished or abandoned, counting the bytes that went out.
struct LoggedBody {
    body: ProxyBody,
    bytes: u64,
    log: Arc<AccessLog>,
    request: access_log::Request,
    conn: Arc<ConnInfo>,
    status: u16,
    backend: Option<Arc<BackendState>>,
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> PolledFrame {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.log.record(&access_log::Entry {
            client: access_log::Client {
                addr: self.conn.peer,
                server_name: self.conn.server_name.as_deref(),
                tls: self.conn.tls,
            },
            request: &self.request,
            status: self.status,
            bytes: self.bytes,
            backend: self
                .backend
                .as_ref()
                .map(|state| state.backend.name.as_str()),
        });
    }
}

/// `exchange` (a request's trip to its backend, up to the response head),
/// bounded by the backend response timeout; its elapsing converts into
/// [`ForwardError::Timeout`]. The timeout itself, not an `async fn` around
/// it, which would hold `exchange` twice (as its argument and inside the
/// timeout): every future that awaits this one is copied whole when it
/// starts.
fn within_response_timeout<T, F>(exchange: F) -> tokio::time::Timeout<F>
where
    F: std::future::Future<Output = Result<T, ForwardError>>,
{
    tokio::time::timeout(limits::BACKEND_RESPONSE_TIMEOUT, exchange)
}

impl From<tokio::time::error::Elapsed> for ForwardError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Self::Timeout(limits::BACKEND_RESPONSE_TIMEOUT.as_secs())
    }
}

/// The client's view of the host: Host header, else the HTTP/2 authority,
/// else the SNI name, else the socket address.
pub fn request_host(head: &ClientHead, conn: &ConnInfo) -> String {
    head.fields
        .host()
        .filter(|host| host.is_ascii())
        .and_then(|host| std::str::from_utf8(host).ok())
        .map(str::to_owned)
        .or_else(|| head.uri.authority().map(|a| a.as_str().to_owned()))
        .or_else(|| conn.server_name.clone())
        .unwrap_or_else(|| conn.local.ip().to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client at 192.0.2.7:5555 that asked for `sni.test` over TLS 1.3.
    pub fn conn() -> ConnInfo {
        ConnInfo::new(
            "192.0.2.7:5555".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
            Some("sni.test".into()),
            TlsInfo {
                version: "TLSv1.3",
                resumed: false,
            },
        )
    }
}
