//! Forwarding a request to an HTTP/1.1 backend (`http-to http://host:port`).
//!
//! The request's own task writes the head, reads the response head and
//! then streams the body to the client ([`super::response_body`]); there is
//! no connection task between them, and no channel: a proxied request
//! costs the router one write and one read on the backend socket, and the
//! connection is parked for the next request the moment its response has
//! been read ([`super::keepalive`]).

use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use hyper::body::Body;
use tokio::net::TcpStream;
use tracing::debug;

use super::backend_stream::{BackendStream, BodyEncoding, Head, HeadError, HeadForm};
use super::client_body::ClientBody;
use super::pool::{BackendState, Link};
use super::response_body::{self, AfterBody};
use super::{request_host, within_response_timeout, ConnInfo, ForwardError, ProxyBody};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Sends the request (`parts`, hop-by-hop headers removed, and `body`) to
/// `backend` as HTTP/1.1 over `link`; bodies stream both ways.
pub async fn forward(
    backend: &BackendState,
    link: Link,
    mut parts: Parts,
    body: ClientBody,
    conn: &ConnInfo,
) -> Result<Response<ProxyBody>, ForwardError> {
    // An HTTP/1.1 client's Host header goes on as it is; only a request
    // without one (HTTP/2's authority, the SNI name; or a Host the
    // client's Connection header named, gone with the hop-by-hop headers)
    // gets one made.
    if !parts.headers.contains_key(header::HOST) {
        let host = request_host(&parts.uri, &parts.headers, conn);
        let host = HeaderValue::from_str(&host)
            .map_err(|_| ForwardError::Client(StatusCode::BAD_REQUEST, "bad Host".into()))?;
        parts.headers.insert(header::HOST, host);
    }
    append_forwarded_for(&mut parts.headers, conn);
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    let encoding = body_encoding(&parts, &body);
    let head = request_head(&parts, encoding);
    let body = encoding.map(|encoding| (body, encoding));
    let request = Exchange {
        head: &head,
        request_was_head: parts.method == Method::HEAD,
    };

    let (stream, reused) = match link {
        Link::Fresh(stream) => (stream, false),
        Link::Reused(stream) => (stream, true),
    };
    let retriable = reused && body.is_none() && parts.method.is_idempotent();
    let exchanged = within_response_timeout(async {
        match request.run(stream, body).await {
            // An idle connection the backend closed just as it was taken:
            // an idempotent request without a body may go again, on a new
            // connection (RFC 9110 section 9.2.2).
            Err(HeadError::NothingBack(what)) if retriable => {
                debug!(backend = %backend.backend.name, %what, "idle connection gone; retrying on a new one");
                let stream = backend.connect().await.map_err(ForwardError::Backend)?;
                Ok(request.run(stream, None).await?)
            }
            done => Ok(done?),
        }
    })
    .await?;
    let (stream, head) = exchanged;
    let after = if head.persistent {
        AfterBody::Park(Arc::clone(&backend.idle))
    } else {
        AfterBody::Close
    };
    Ok(response_body::relay(
        head.response,
        stream,
        head.rest,
        after,
    ))
}

/// One request's trip to the backend, up to the response head.
struct Exchange<'a> {
    head: &'a [u8],
    request_was_head: bool,
}

impl Exchange<'_> {
    async fn run(
        &self,
        stream: TcpStream,
        body: Option<(ClientBody, BodyEncoding)>,
    ) -> Result<(BackendStream, Head), HeadError> {
        let mut stream = BackendStream::send(stream, self.head, body)
            .await
            .map_err(|error| {
                HeadError::NothingBack(format!("sending the request failed: {error}"))
            })?;
        let head = stream
            .read_head(self.request_was_head, HeadForm::StatusLine)
            .await?;
        Ok((stream, head))
    }
}

/// How the request body goes out, or `None` when there is none.
fn body_encoding(parts: &Parts, body: &ClientBody) -> Option<BodyEncoding> {
    if parts.headers.contains_key(header::CONTENT_LENGTH) {
        // The length has been checked, and exactly that much is delivered.
        return (!body.is_end_stream()).then_some(BodyEncoding::Raw);
    }
    if body.is_end_stream() {
        return None;
    }
    // HTTP/2 or a chunked HTTP/1.1 request: the length is not known yet.
    Some(BodyEncoding::Chunked)
}

/// The request head in HTTP/1.1: origin-form target (an HTTP/2 request's
/// authority is in Host by now), the headers as they are, and the framing
/// of the body.
fn request_head(parts: &Parts, encoding: Option<BodyEncoding>) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let headers_size: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let mut head =
        Vec::with_capacity(parts.method.as_str().len() + target.len() + headers_size + 64);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match encoding {
        Some(BodyEncoding::Chunked) => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // Some servers answer a POST without a length with 411 even when
        // it has no body; an explicit zero costs nothing.
        None if expects_body(&parts.method)
            && !parts.headers.contains_key(header::CONTENT_LENGTH) =>
        {
            head.extend_from_slice(b"content-length: 0\r\n")
        }
        _ => {}
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Methods whose requests normally carry a body.
fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn heads_in_origin_form_with_their_framing() {
        let get = parts(
            Request::get("https://example.test/a?b=1")
                .header("host", "example.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(
            request_head(&get, None),
            b"GET /a?b=1 HTTP/1.1\r\nhost: example.test\r\n\r\n"
        );
        let post = parts(Request::post("/up").body(()).unwrap());
        assert_eq!(
            request_head(&post, Some(BodyEncoding::Chunked)),
            b"POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            request_head(&post, None),
            b"POST /up HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
