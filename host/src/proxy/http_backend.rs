//! Forwarding a request to an HTTP/1.1 backend (`http-to http://host:port`).

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use super::headers::strip_hop_by_hop;
use super::{request_host, BoxError, ConnInfo, ForwardError, ProxyBody};
use crate::limits;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Sends `request` over `stream` as HTTP/1.1; bodies stream both ways.
pub async fn forward(
    stream: TcpStream,
    request: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<ProxyBody>, ForwardError> {
    let (mut parts, body) = request.into_parts();
    let host = request_host(&parts.uri, &parts.headers, conn);
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    // Origin form: the backend gets the path, the authority goes in Host.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .map_err(|_| ForwardError::Client(StatusCode::BAD_REQUEST, "bad request target".into()))?;
    let host = HeaderValue::from_str(&host)
        .map_err(|_| ForwardError::Client(StatusCode::BAD_REQUEST, "bad Host".into()))?;
    parts.headers.insert(header::HOST, host);
    append_forwarded_for(&mut parts.headers, conn);
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ForwardError::Backend(format!("HTTP handshake failed: {error}")))?;
    // Drives the backend connection until the response body is done.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(%error, "HTTP backend connection ended with an error");
        }
    });
    let response = tokio::time::timeout(
        limits::BACKEND_RESPONSE_TIMEOUT,
        sender.send_request(Request::from_parts(parts, body)),
    )
    .await
    .map_err(|_| ForwardError::Timeout(limits::BACKEND_RESPONSE_TIMEOUT.as_secs()))?
    .map_err(|error| ForwardError::Backend(format!("no valid response: {error}")))?;

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed_unsync(),
    ))
}

/// Appends the client's address to any X-Forwarded-For it sent.
fn append_forwarded_for(headers: &mut http::HeaderMap, conn: &ConnInfo) {
    let client = conn.peer.ip().to_string();
    let value = match headers
        .get(&X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
    {
        Some(previous) => format!("{previous}, {client}"),
        None => client,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}
