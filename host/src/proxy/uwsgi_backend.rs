//! Forwarding a request to a uwsgi-protocol backend (bare `http-to host:port`).

use bytes::Bytes;
use http::{header, Method, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Body;
use tokio::net::TcpStream;

use super::answer::Answer;
use super::backend_stream::{BackendStream, BodyEncoding, HeadForm};
use super::client_body::ClientBody;
use super::client_head::{ClientHead, RequestFields};
use super::response_body::{self, AfterBody};
use super::{request_host, within_response_timeout, ConnInfo, ForwardError};
use crate::limits;
use crate::uwsgi::{UwsgiError, Vars};

/// Sends the request (`client`, and `body`) over `stream` and returns the
/// backend's response, whose body is streamed from the socket as the
/// client reads it.
pub async fn forward(
    stream: TcpStream,
    client: ClientHead,
    body: ClientBody,
    conn: &ConnInfo,
) -> Result<Answer, ForwardError> {
    let request_was_head = client.method == Method::HEAD;
    let (length, body) = request_body(&client.fields, body).await?;
    let vars = request_vars(&client, conn, length).map_err(|error| {
        ForwardError::Client(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            error.to_string(),
        )
    })?;

    // The body goes out while the response comes in: a backend may answer
    // before it has read everything.
    let body = match body {
        RequestBody::Empty => None,
        RequestBody::Buffered(bytes) => Some(Either::Left(Full::new(bytes))),
        RequestBody::Streamed(body) => Some(Either::Right(body)),
    };
    let mut stream = BackendStream::send(
        stream,
        &vars.into_packet(),
        body.map(|body| (body, BodyEncoding::Raw)),
    )
    .await
    .map_err(|error| ForwardError::Backend(format!("sending the request failed: {error}")))?;

    let head = within_response_timeout(async {
        Ok(stream
            .read_head(request_was_head, HeadForm::CgiAllowed)
            .await?)
    })
    .await??;
    // One request per connection: the uwsgi protocol has no keep-alive.
    Ok(response_body::relay(
        head.response,
        stream,
        head.rest,
        AfterBody::Close,
    ))
}

/// The request body to send, and its length for CONTENT_LENGTH.
enum RequestBody {
    Empty,
    Buffered(Bytes),
    /// Streamed as it arrives; its length was declared by the client.
    Streamed(ClientBody),
}

/// uwsgi backends read exactly CONTENT_LENGTH bytes, so the length must be
/// known before the variables are sent. A body of unknown length (chunked,
/// or HTTP/2 without content-length) is buffered, up to a limit.
async fn request_body(
    fields: &RequestFields,
    body: ClientBody,
) -> Result<(u64, RequestBody), ForwardError> {
    if let Some(length) = fields.content_length() {
        // Malformed or conflicting lengths were refused with the head.
        let length = std::str::from_utf8(length)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| {
                ForwardError::Client(StatusCode::BAD_REQUEST, "bad Content-Length".to_owned())
            })?;
        return Ok((length, RequestBody::Streamed(body)));
    }
    if body.is_end_stream() {
        return Ok((0, RequestBody::Empty));
    }
    let collected = Limited::new(body, limits::MAX_BUFFERED_BODY)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                ForwardError::Client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "a request body without Content-Length is limited to {} bytes \
                         for uwsgi backends",
                        limits::MAX_BUFFERED_BODY
                    ),
                )
            } else {
                ForwardError::Client(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {error}"),
                )
            }
        })?
        .to_bytes();
    Ok((collected.len() as u64, RequestBody::Buffered(collected)))
}

/// The CGI-style variables uWSGI's router sends for a request.
///
/// Repeated fields are joined into one variable, so the fields are taken
/// as a map here.
pub fn request_vars(
    client: &ClientHead,
    conn: &ConnInfo,
    content_length: u64,
) -> Result<Vars, UwsgiError> {
    let mut vars = Vars::new();
    let uri = &client.uri;
    let path = uri.path();
    let request_uri = uri.path_and_query().map_or(path, |pq| pq.as_str());
    let host = request_host(client, conn);
    let server_name = strip_port(&host);
    let protocol = server_protocol(client.version);
    let headers = client.fields.to_map();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map_or(&b""[..], |value| value.as_bytes());
    for (key, value) in [
        ("REQUEST_METHOD", client.method.as_str().as_bytes()),
        ("REQUEST_URI", request_uri.as_bytes()),
        ("PATH_INFO", &percent_decode(path)),
        ("QUERY_STRING", uri.query().unwrap_or_default().as_bytes()),
        ("SERVER_NAME", server_name.as_bytes()),
        ("SERVER_PORT", conn.local.port().to_string().as_bytes()),
        ("SERVER_PROTOCOL", protocol.as_bytes()),
        ("REMOTE_ADDR", conn.peer.ip().to_string().as_bytes()),
        ("REMOTE_PORT", conn.peer.port().to_string().as_bytes()),
        ("HTTPS", b"on"),
        ("REQUEST_SCHEME", b"https"),
        ("CONTENT_TYPE", content_type),
        ("CONTENT_LENGTH", content_length.to_string().as_bytes()),
    ] {
        vars.push(key.as_bytes(), value)?;
    }
    if !headers.contains_key(header::HOST) {
        // HTTP/2 carries the host in :authority; applications expect HTTP_HOST.
        vars.push(b"HTTP_HOST", host.as_bytes())?;
    }
    for name in headers.keys() {
        // CGI passes these two as CONTENT_*; and a name with `_` would alias
        // a dash-named header once mangled (X_Forwarded_For vs
        // X-Forwarded-For), so such headers are dropped, as nginx does.
        if name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || name.as_str().contains('_')
        {
            continue;
        }
        let separator: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
        let value = headers
            .get_all(name)
            .iter()
            .map(|value| value.as_bytes())
            .collect::<Vec<_>>()
            .join(separator);
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        vars.push(key.as_bytes(), &value)?;
    }
    Ok(vars)
}

/// SERVER_PROTOCOL for a request's HTTP version: nginx's `$server_protocol`,
/// which is what applications behind nginx's uwsgi_params see. It must be
/// an HTTP version string: uWSGI writes it back as its status line's
/// version (`HTTP/2.0 200 OK`), which the response parser accepts.
fn server_protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `host:port` or `[v6]:port` to the bare host.
fn strip_port(host: &str) -> &str {
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
fn percent_decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uwsgi::decode_vars;
    use http::Request;

    use crate::proxy::tests::conn;

    #[test]
    fn cgi_variables() {
        let request = Request::builder()
            .method("POST")
            .uri("/a%20b/c?x=1&y=%20")
            .header("host", "example.test:8443")
            .header("content-type", "text/plain")
            .header("content-length", "3")
            .header("x-thing", "one")
            .header("x-thing", "two")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x_sneaky", "dropped")
            .body(())
            .unwrap();
        let client = ClientHead::from_hyper(request.into_parts().0);
        let packet = request_vars(&client, &conn(), 3).unwrap().into_packet();
        let vars = decode_vars(&packet[4..]).unwrap();
        let get = |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get("REQUEST_METHOD").unwrap(), "POST");
        assert_eq!(get("REQUEST_URI").unwrap(), "/a%20b/c?x=1&y=%20");
        assert_eq!(get("PATH_INFO").unwrap(), "/a b/c");
        assert_eq!(get("QUERY_STRING").unwrap(), "x=1&y=%20");
        assert_eq!(get("SERVER_NAME").unwrap(), "example.test");
        assert_eq!(get("SERVER_PORT").unwrap(), "8443");
        assert_eq!(get("SERVER_PROTOCOL").unwrap(), "HTTP/1.1");
        assert_eq!(get("REMOTE_ADDR").unwrap(), "192.0.2.7");
        assert_eq!(get("REMOTE_PORT").unwrap(), "5555");
        assert_eq!(get("HTTPS").unwrap(), "on");
        assert_eq!(get("CONTENT_TYPE").unwrap(), "text/plain");
        assert_eq!(get("CONTENT_LENGTH").unwrap(), "3");
        assert_eq!(get("HTTP_HOST").unwrap(), "example.test:8443");
        assert_eq!(get("HTTP_X_THING").unwrap(), "one, two");
        assert_eq!(get("HTTP_COOKIE").unwrap(), "a=1; b=2");
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(get("HTTP_X_SNEAKY"), None);
    }

    #[test]
    fn an_http1_clients_fields_are_grouped_in_any_case() {
        let mut buf = bytes::BytesMut::from(
            "POST /x HTTP/1.1\r\nHost: a.test\r\nX-Thing: one\r\nx-thing: two\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\n",
        );
        let client = crate::proxy::request_head::parse(&mut buf)
            .unwrap()
            .expect("a whole head")
            .head;
        let packet = request_vars(&client, &conn(), 3).unwrap().into_packet();
        let vars = decode_vars(&packet[4..]).unwrap();
        for var in [
            (&b"HTTP_HOST"[..], &b"a.test"[..]),
            (b"HTTP_X_THING", b"one, two"),
            (b"CONTENT_LENGTH", b"3"),
            (b"SERVER_NAME", b"a.test"),
        ] {
            assert!(vars.contains(&var), "{var:?}");
        }
        assert!(!vars.iter().any(|(key, _)| *key == b"HTTP_CONNECTION"));
    }

    #[test]
    fn http2_requests_get_a_host() {
        let request = Request::builder()
            .uri("https://h2.test/p")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let client = ClientHead::from_hyper(request.into_parts().0);
        let packet = request_vars(&client, &conn(), 0).unwrap().into_packet();
        let vars = decode_vars(&packet[4..]).unwrap();
        assert!(vars.contains(&(&b"HTTP_HOST"[..], &b"h2.test"[..])));
        assert!(vars.contains(&(&b"SERVER_PROTOCOL"[..], &b"HTTP/2.0"[..])));
        assert!(vars.contains(&(&b"REQUEST_URI"[..], &b"/p"[..])));
    }

    #[test]
    fn ports_and_escapes() {
        assert_eq!(strip_port("a.test:80"), "a.test");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(percent_decode("/%41%zz%4"), b"/A%zz%4");
    }
}
