//! Forwarding a request to an HTTP/1.1 backend (`http-to http://host:port`).
//!
//! The request's own task writes the head, reads the response head and
//! then streams the body to the client ([`super::response_body`]); there is
//! no connection task between them, and no channel: a proxied request
//! costs the router one write and one read on the backend socket, and the
//! connection is parked for the next request the moment its response has
//! been read ([`super::keepalive`]).

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Method, StatusCode};
use hyper::body::Body;
use tokio::net::TcpStream;
use tracing::debug;

use super::answer::Answer;
use super::backend_stream::{BackendStream, BodyEncoding, Head, HeadError, HeadForm};
use super::client_body::ClientBody;
use super::client_head::{ClientHead, RequestFields};
use super::pool::{BackendState, Link};
use super::response_body::{self, AfterBody};
use super::{request_host, within_response_timeout, ConnInfo, ForwardError};
use crate::field_lines::{self, put_line, Known};

/// Sends the request (`client`, and `body`) to `backend` as HTTP/1.1 over
/// `link`; bodies stream both ways.
///
/// The head is written before the returned future starts, so that the
/// client's head (its fields and URI) is not carried across the wait for
/// the backend: the future holds what it sends, not what it was made from,
/// and is copied whole when the caller starts it.
pub fn forward<'a>(
    backend: &'a BackendState,
    link: Link,
    client: ClientHead,
    body: ClientBody,
    conn: &ConnInfo,
) -> impl std::future::Future<Output = Result<Answer, ForwardError>> + 'a {
    let encoding = body_encoding(&client, &body);
    let head = request_head(&client, encoding, conn);
    let body = encoding.map(|encoding| (body, encoding));
    let request_was_head = client.method == Method::HEAD;
    let idempotent = client.method.is_idempotent();
    drop(client);
    async move {
        let head = head?;
        let request = Exchange {
            head: &head,
            request_was_head,
        };
        let (stream, reused) = match link {
            Link::Fresh(stream) => (stream, false),
            Link::Reused(stream) => (stream, true),
        };
        let retriable = reused && body.is_none() && idempotent;
        let exchanged = within_response_timeout(async {
            match request.run(stream, body).await {
                // An idle connection the backend closed just as it was
                // taken: an idempotent request without a body may go
                // again, on a new connection (RFC 9110 section 9.2.2).
                Err(HeadError::NothingBack(what)) if retriable => {
                    debug!(backend = %backend.backend.name, %what, "idle connection gone; retrying on a new one");
                    let stream = backend.connect().await.map_err(ForwardError::Backend)?;
                    Ok(request.run(stream, None).await?)
                }
                done => Ok(done?),
            }
        })
        .await??;
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
fn body_encoding(client: &ClientHead, body: &ClientBody) -> Option<BodyEncoding> {
    if client.fields.content_length().is_some() {
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
/// authority goes in Host), the client's fields as they are but for the
/// X-Forwarded ones, which are the router's to write, and the framing of
/// the body. Written straight from the client's fields: nothing is added
/// to them first.
fn request_head(
    client: &ClientHead,
    encoding: Option<BodyEncoding>,
    conn: &ConnInfo,
) -> Result<Vec<u8>, ForwardError> {
    let target = client.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let method = client.method.as_str();
    let mut head = Vec::with_capacity(method.len() + target.len() + client.fields.size() + 128);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let (host, forwarded_for) = match &client.fields {
        // Most HTTP/1.x requests: the client's lines go on whole.
        RequestFields::Lines(lines)
            if !lines.has(Known::XForwardedFor) && !lines.has(Known::XForwardedProto) =>
        {
            head.extend_from_slice(lines.lines());
            (lines.has(Known::Host), false)
        }
        fields => {
            let (mut host, mut forwarded_for) = (false, false);
            for (name, value) in fields.iter() {
                match field_lines::known(name) {
                    Known::XForwardedFor => {
                        forwarded_for = true;
                        continue;
                    }
                    Known::XForwardedProto => continue,
                    Known::Host => host = true,
                    _ => {}
                }
                put_line(&mut head, name, value);
            }
            (host, forwarded_for)
        }
    };
    // An HTTP/1.1 client's Host goes on as it is; only a request without
    // one (HTTP/2's authority, the SNI name; or a Host the client's
    // Connection header named, gone with the hop-by-hop fields) gets one.
    if !host {
        let host = request_host(client, conn);
        let host = HeaderValue::from_str(&host)
            .map_err(|_| ForwardError::Client(StatusCode::BAD_REQUEST, "bad Host".into()))?;
        put_line(&mut head, b"host", host.as_bytes());
    }
    // The client's address, after any a proxy before the router gave.
    head.extend_from_slice(b"x-forwarded-for: ");
    if forwarded_for {
        for (name, value) in client.fields.iter() {
            if field_lines::known(name) == Known::XForwardedFor {
                head.extend_from_slice(value);
                head.extend_from_slice(b", ");
            }
        }
    }
    head.extend_from_slice(conn.client_ip().as_bytes());
    head.extend_from_slice(b"\r\n");
    put_line(&mut head, b"x-forwarded-proto", b"https");
    match encoding {
        Some(BodyEncoding::Chunked) => put_line(&mut head, b"transfer-encoding", b"chunked"),
        // Some servers answer a POST without a length with 411 even when
        // it has no body; an explicit zero costs nothing.
        None if expects_body(&client.method) && client.fields.content_length().is_none() => {
            put_line(&mut head, b"content-length", b"0")
        }
        _ => {}
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// Methods whose requests normally carry a body.
fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(request: Request<()>) -> ClientHead {
        ClientHead::from_hyper(request.into_parts().0)
    }

    use crate::proxy::tests::conn;

    fn head(parts: &ClientHead, encoding: Option<BodyEncoding>) -> String {
        String::from_utf8(request_head(parts, encoding, &conn()).unwrap()).unwrap()
    }

    const FORWARDED: &str = "x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\n";

    #[test]
    fn heads_in_origin_form_with_their_framing() {
        let get = parts(
            Request::get("https://example.test/a?b=1")
                .header("host", "example.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(
            head(&get, None),
            format!("GET /a?b=1 HTTP/1.1\r\nhost: example.test\r\n{FORWARDED}\r\n")
        );
        let post = parts(Request::post("/up").body(()).unwrap());
        assert_eq!(
            head(&post, Some(BodyEncoding::Chunked)),
            format!("POST /up HTTP/1.1\r\nhost: sni.test\r\n{FORWARDED}transfer-encoding: chunked\r\n\r\n")
        );
        assert_eq!(
            head(&post, None),
            format!("POST /up HTTP/1.1\r\nhost: sni.test\r\n{FORWARDED}content-length: 0\r\n\r\n")
        );
    }

    #[test]
    fn forwarded_headers_are_the_routers() {
        let get = parts(
            Request::get("/")
                .header("host", "h.test")
                .header("x-forwarded-for", "10.0.0.1")
                .header("x-forwarded-proto", "http")
                .header("x-forwarded-for", "10.0.0.2, 10.0.0.3")
                .body(())
                .unwrap(),
        );
        assert_eq!(
            head(&get, None),
            "GET / HTTP/1.1\r\nhost: h.test\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7\r\n\
             x-forwarded-proto: https\r\n\r\n"
        );
    }

    #[test]
    fn an_http1_clients_fields_go_on_as_it_wrote_them() {
        let mut buf = bytes::BytesMut::from(
            "GET /p HTTP/1.1\r\nHost: h.test\r\nX-Forwarded-For: 10.0.0.1\r\n\
             Accept: */*\r\nConnection: close\r\nX-Forwarded-Proto: http\r\n\r\n",
        );
        let client = crate::proxy::request_head::parse(&mut buf)
            .unwrap()
            .expect("a whole head")
            .head;
        assert_eq!(
            head(&client, None),
            "GET /p HTTP/1.1\r\nHost: h.test\r\nAccept: */*\r\n\
             x-forwarded-for: 10.0.0.1, 192.0.2.7\r\nx-forwarded-proto: https\r\n\r\n"
        );
    }
}
