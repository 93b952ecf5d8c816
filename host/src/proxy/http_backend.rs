//! Forwarding a request to an HTTP/1.1 backend (`http-to http://host:port`).

use std::future::Future;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::ext::ReasonPhrase;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use super::headers::{own_reason, strip_hop_by_hop};
use super::pool::{BackendState, Link};
use super::{request_host, BoxError, ConnInfo, ForwardError, ProxyBody};
use crate::limits;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Sends `request` to `backend` as HTTP/1.1 over `link`; bodies stream both
/// ways. The connection is parked for reuse once the response has been
/// read to its end.
pub async fn forward(
    backend: &BackendState,
    link: Link,
    request: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<ProxyBody>, ForwardError> {
    let (mut parts, body) = request.into_parts();
    // An HTTP/1.1 client's Host header goes on as it is; only a request
    // without one (HTTP/2's authority, or the SNI name) gets one made.
    let host = match parts.headers.get(header::HOST) {
        Some(_) => None,
        None => Some(request_host(&parts.uri, &parts.headers, conn)),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    // Origin form: the backend gets the path, the authority goes in Host.
    // An HTTP/1.1 request target is in origin form already.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse()
            .map_err(|_| {
                ForwardError::Client(StatusCode::BAD_REQUEST, "bad request target".into())
            })?;
    }
    if let Some(host) = host {
        let host = HeaderValue::from_str(&host)
            .map_err(|_| ForwardError::Client(StatusCode::BAD_REQUEST, "bad Host".into()))?;
        parts.headers.insert(header::HOST, host);
    }
    append_forwarded_for(&mut parts.headers, conn);
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));

    let request = Request::from_parts(parts, body);
    let (sender, response) = match link {
        Link::Reused(mut sender) => match within_timeout(sender.try_send_request(request)).await? {
            Ok(response) => (sender, response),
            // The backend closed the idle connection before the request
            // went out: nothing was sent, so it is safe to send it anew.
            Err(mut error) => match error.take_message() {
                Some(request) => {
                    let stream = backend.connect().await.map_err(ForwardError::Backend)?;
                    send_on_new_connection(stream, request).await?
                }
                None => return Err(no_response(error.into_error())),
            },
        },
        Link::Fresh(stream) => send_on_new_connection(stream, request).await?,
    };
    backend.idle.park_when_ready(sender);

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The client gets the router's HTTP version, not the backend's (an
    // HTTP/1.0 backend must not make an HTTP/1.1 client's response 1.0);
    // hyper answers an HTTP/1.0 client in HTTP/1.0 by itself.
    parts.version = Version::HTTP_11;
    // hyper reports any reason phrase but the canonical one, an absent one
    // included (as empty): the same rule as for uwsgi backends decides.
    let reason = parts.extensions.remove::<ReasonPhrase>();
    if let Some(reason) = own_reason(parts.status, reason.as_ref().map(ReasonPhrase::as_bytes)) {
        parts.extensions.insert(reason);
    }
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed_unsync(),
    ))
}

/// Starts HTTP/1.1 on `stream` and sends `request` on it.
async fn send_on_new_connection(
    stream: TcpStream,
    request: Request<Incoming>,
) -> Result<(SendRequest<Incoming>, Response<Incoming>), ForwardError> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ForwardError::Backend(format!("HTTP handshake failed: {error}")))?;
    // Drives the backend connection for as long as it lives, parked or not.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(%error, "HTTP backend connection ended with an error");
        }
    });
    let response = within_timeout(sender.send_request(request))
        .await?
        .map_err(no_response)?;
    Ok((sender, response))
}

/// `sending`, bounded by the backend response timeout.
async fn within_timeout<T>(sending: impl Future<Output = T>) -> Result<T, ForwardError> {
    tokio::time::timeout(limits::BACKEND_RESPONSE_TIMEOUT, sending)
        .await
        .map_err(|_| ForwardError::Timeout(limits::BACKEND_RESPONSE_TIMEOUT.as_secs()))
}

fn no_response(error: hyper::Error) -> ForwardError {
    ForwardError::Backend(format!("no valid response: {error}"))
}

/// Appends the client's address to any X-Forwarded-For it sent.
fn append_forwarded_for(headers: &mut http::HeaderMap, conn: &ConnInfo) {
    let value = match headers
        .get(&X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
    {
        Some(previous) => HeaderValue::from_str(&format!("{previous}, {}", conn.peer.ip())).ok(),
        None => Some(conn.client_ip.clone()),
    };
    if let Some(value) = value {
        headers.insert(X_FORWARDED_FOR, value);
    }
}
