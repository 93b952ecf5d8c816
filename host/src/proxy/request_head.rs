//! An HTTP/1.x client's request head: parsed off the connection's read
//! buffer, checked, and framed (RFC 9112 sections 2 to 7).
//!
//! The framing rules are where proxies disagree with the servers behind
//! them and requests get smuggled, so they are strict here: one way to
//! learn a body's length, or the request is refused. A Content-Length must
//! be digits (repeated only with the same value); Transfer-Encoding must be
//! exactly `chunked`, in HTTP/1.1 only, and never beside a Content-Length.
//! Whatever reaches a backend is re-framed by the router itself.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::{Method, StatusCode, Uri, Version};

use super::client_head::{ClientHead, RequestFields};
use crate::field_lines::{self, ConnectionOptions, Field, FieldLines, Known};
use crate::limits;

/// A request head, and how its body is framed.
#[derive(Debug)]
pub struct RequestHead {
    pub head: ClientHead,
    pub body: BodyFraming,
    /// Whether the connection may carry another request after this one
    /// (RFC 9112 section 9.3): HTTP/1.1 unless the client said `close`,
    /// HTTP/1.0 only if it said `keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before
    /// sending its body.
    pub expects_continue: bool,
}

/// How the request body is delimited on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A head the router refuses, with the status that says why; the
/// connection closes after the answer, since where the next request would
/// start is unknown.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refused {
    pub status: StatusCode,
    pub reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Refused {
    Refused { status, reason }
}

fn bad(reason: &'static str) -> Refused {
    refuse(StatusCode::BAD_REQUEST, reason)
}

/// Parses the head at the front of `buf` and removes it from there;
/// `Ok(None)` while it is incomplete.
pub fn parse(buf: &mut BytesMut) -> Result<Option<RequestHead>, Refused> {
    // httparse's fields are read, and those that go on copied as lines,
    // while they still borrow `buf`; only the target is taken from the head
    // after it, shared rather than copied.
    let (length, method, version, target, fields) = {
        // Left uninitialized: what each request sets up for a hundred
        // fields it does not have is only what each one is to the router.
        let mut raw = [const { MaybeUninit::uninit() }; limits::MAX_HEADERS];
        let mut kinds = [Known::Other; limits::MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let length = match request.parse_with_uninit_headers(buf, &mut raw) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buf.len() >= limits::MAX_HEADER_BYTES => {
                return Err(head_too_large())
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many header fields",
                ))
            }
            Err(_) => return Err(bad("malformed request head")),
        };
        if length > limits::MAX_HEADER_BYTES {
            return Err(head_too_large());
        }
        let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
            .map_err(|_| bad("malformed method"))?;
        let version = match request.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        // A complete head has one; its place in `buf` makes the target.
        let path = request
            .path
            .ok_or_else(|| bad("malformed request head"))?
            .as_bytes();
        // Within the head, which is at most `MAX_HEADER_BYTES` long.
        let target_start = path.as_ptr() as usize - buf.as_ptr() as usize;
        let target = target_start..target_start + path.len();
        let fields = read_fields(field_lines::classify(request.headers, &mut kinds), version);
        (length, method, version, target, fields)
    };
    let head = buf.split_to(length).freeze();

    if method == Method::CONNECT {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT tunnels are not offered",
        ));
    }
    let asterisk = &head[target.clone()] == b"*";
    let uri =
        Uri::from_maybe_shared(head.slice(target)).map_err(|_| bad("malformed request target"))?;
    // Origin form, or absolute form (RFC 9112 section 3.2); `*` only for
    // OPTIONS.
    if uri.path_and_query().is_none() && uri.authority().is_some() && uri.scheme().is_none() {
        return Err(bad("authority-form target without CONNECT"));
    }
    if asterisk && method != Method::OPTIONS {
        return Err(bad("asterisk-form target without OPTIONS"));
    }
    let ReadFields {
        body,
        connection,
        expects_continue,
        lines,
    } = fields;
    Ok(Some(RequestHead {
        head: ClientHead {
            method,
            uri,
            version,
            fields: RequestFields::Lines(lines),
        },
        body: body?,
        keep_alive: connection.persists(version == Version::HTTP_10),
        expects_continue: expects_continue?,
    }))
}

/// What a request's fields say, and those that go on.
struct ReadFields {
    body: Result<BodyFraming, Refused>,
    connection: ConnectionOptions,
    expects_continue: Result<bool, Refused>,
    lines: FieldLines,
}

fn read_fields<'h>(
    fields: impl Iterator<Item = Field<'h>> + Clone,
    version: Version,
) -> ReadFields {
    let mut connection = ConnectionOptions::default();
    let mut expect = None;
    for (kind, _, value) in fields.clone() {
        match kind {
            Known::Connection => connection.add(value),
            Known::Expect => expect = expect.or(Some(value)),
            _ => {}
        }
    }
    ReadFields {
        body: framing(fields.clone(), version),
        connection,
        expects_continue: expects_continue(expect, version),
        lines: field_lines::keep(fields, connection, |_| false),
    }
}

fn head_too_large() -> Refused {
    refuse(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request head too large",
    )
}

/// RFC 9112 section 6: a body is delimited by chunked coding or by
/// Content-Length, never by both; without either there is none.
fn framing<'h>(
    fields: impl Iterator<Item = Field<'h>> + Clone,
    version: Version,
) -> Result<BodyFraming, Refused> {
    let values = |wanted| {
        fields
            .clone()
            .filter(move |&(kind, _, _)| kind == wanted)
            .map(|(_, _, value)| value)
    };
    let mut codings = values(Known::TransferEncoding).peekable();
    if codings.peek().is_some() {
        if version == Version::HTTP_10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if values(Known::ContentLength).next().is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        let mut codings = codings.flat_map(field_lines::tokens);
        return match (codings.next(), codings.next()) {
            (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => {
                Ok(BodyFraming::Chunked)
            }
            _ => Err(refuse(
                StatusCode::NOT_IMPLEMENTED,
                "a transfer coding other than chunked",
            )),
        };
    }
    let mut length = None;
    for value in values(Known::ContentLength) {
        let parsed =
            (!value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit))
                .then(|| {
                    value
                        .iter()
                        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'))
                })
                .ok_or_else(|| bad("malformed Content-Length"))?;
        if length.is_some_and(|previous| previous != parsed) {
            return Err(bad("conflicting Content-Length values"));
        }
        length = Some(parsed);
    }
    Ok(match length {
        None | Some(0) => BodyFraming::None,
        Some(length) => BodyFraming::Length(length),
    })
}

/// RFC 9110 section 10.1.1: `100-continue` is the one expectation; any
/// other is answered 417. HTTP/1.0 clients do not wait for a 100.
fn expects_continue(expect: Option<&[u8]>, version: Version) -> Result<bool, Refused> {
    let Some(expect) = expect else {
        return Ok(false);
    };
    if !expect.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
        return Err(refuse(
            StatusCode::EXPECTATION_FAILED,
            "an expectation other than 100-continue",
        ));
    }
    Ok(version == Version::HTTP_11)
}

/// Skips the empty lines a client may send before a request (RFC 9112
/// section 2.2), so an idle connection's buffer holds nothing but them.
pub fn skip_empty_lines(buf: &mut BytesMut) {
    let blank = buf
        .iter()
        .take_while(|&&byte| byte == b'\r' || byte == b'\n')
        .count();
    buf.advance(blank);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Option<RequestHead>, Refused> {
        parse(&mut BytesMut::from(text))
    }

    fn head(text: &str) -> RequestHead {
        parse_text(text).unwrap().expect("a whole head")
    }

    fn refused(text: &str) -> StatusCode {
        parse_text(text).unwrap_err().status
    }

    #[test]
    fn a_plain_get() {
        let mut buf =
            BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\nNEXT");
        let head = parse(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"NEXT", "only the head is consumed");
        assert_eq!(head.head.method, Method::GET);
        assert_eq!(head.head.uri, "/a?b=1");
        assert_eq!(head.head.version, Version::HTTP_11);
        let fields: Vec<_> = head.head.fields.iter().collect();
        assert_eq!(
            fields,
            [(&b"Host"[..], &b"x"[..]), (b"X-A", b"1"), (b"X-A", b"2")]
        );
        assert_eq!(head.body, BodyFraming::None);
        assert!(head.keep_alive);
        assert!(!head.expects_continue);
    }

    #[test]
    fn incomplete_heads_wait_and_huge_ones_are_refused() {
        assert!(parse_text("GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        let huge = format!(
            "GET / HTTP/1.1\r\nX: {}",
            "a".repeat(limits::MAX_HEADER_BYTES)
        );
        assert_eq!(
            parse(&mut BytesMut::from(huge.as_str()))
                .unwrap_err()
                .status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let many: String = (0..=limits::MAX_HEADERS)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn bodies_have_exactly_one_framing() {
        let framing = |headers: &str| head(&format!("POST / HTTP/1.1\r\n{headers}\r\n")).body;
        assert_eq!(framing("Content-Length: 5\r\n"), BodyFraming::Length(5));
        assert_eq!(framing("Content-Length: 0\r\n"), BodyFraming::None);
        assert_eq!(
            framing("Content-Length: 5\r\nContent-Length: 5\r\n"),
            BodyFraming::Length(5)
        );
        assert_eq!(
            framing("Transfer-Encoding: Chunked\r\n"),
            BodyFraming::Chunked
        );
        assert_eq!(framing(""), BodyFraming::None);
        for smuggling in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: 0x5\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ] {
            assert_eq!(
                refused(&format!("POST / HTTP/1.1\r\n{smuggling}\r\n")),
                StatusCode::BAD_REQUEST,
                "{smuggling}"
            );
        }
        for coding in ["gzip", "gzip, chunked", "chunked, chunked", "chunked-false"] {
            assert_eq!(
                refused(&format!(
                    "POST / HTTP/1.1\r\nTransfer-Encoding: {coding}\r\n\r\n"
                )),
                StatusCode::NOT_IMPLEMENTED,
                "{coding}"
            );
        }
        assert_eq!(
            refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn persistence_follows_version_and_connection() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert_eq!(
            head("GET / HTTP/1.0\r\n\r\n").head.version,
            Version::HTTP_10
        );
    }

    #[test]
    fn what_describes_the_connection_reaches_no_backend() {
        let head = head(
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Private\r\n\
             X-Private: 1\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\
             Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nX-Kept: 1\r\n\r\n",
        );
        assert_eq!(head.body, BodyFraming::Chunked);
        assert!(head.keep_alive);
        let RequestFields::Lines(lines) = &head.head.fields else {
            panic!("an HTTP/1.1 request's fields are lines");
        };
        assert_eq!(lines.lines(), b"Host: h\r\nX-Kept: 1\r\n");
    }

    #[test]
    fn expectations() {
        assert!(
            head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expects_continue
        );
        assert!(
            !head("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expects_continue
        );
        assert_eq!(
            refused("PUT / HTTP/1.1\r\nExpect: teapot\r\n\r\n"),
            StatusCode::EXPECTATION_FAILED
        );
    }

    #[test]
    fn targets() {
        assert_eq!(
            head("GET http://a.test/p HTTP/1.1\r\n\r\n").head.uri.path(),
            "/p"
        );
        assert_eq!(head("OPTIONS * HTTP/1.1\r\n\r\n").head.uri, "*");
        assert_eq!(refused("GET * HTTP/1.1\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(
            refused("CONNECT a.test:443 HTTP/1.1\r\n\r\n"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn no_head_makes_the_parser_panic() {
        // Every byte value at every position of a head, and every
        // truncation: a refusal or a partial result, never a panic; what
        // parses keeps its fields well formed and consumes only its head.
        let head = b"POST /a?b HTTP/1.1\r\nHost: h\r\nConnection: x-a, keep-alive\r\n\
                     X-A: 1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\
                     X-Forwarded-For: 10.0.0.1\r\n\r\nbody";
        let check = |text: &[u8]| {
            let mut buf = BytesMut::from(text);
            if let Ok(Some(parsed)) = parse(&mut buf) {
                assert!(buf.len() < text.len());
                let RequestFields::Lines(lines) = &parsed.head.fields else {
                    panic!("an HTTP/1.x request's fields are lines");
                };
                lines.assert_well_formed();
            }
        };
        field_lines::each_mutation(head, check);
    }

    #[test]
    fn empty_lines_before_a_request_are_skipped() {
        let mut buf = BytesMut::from("\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        skip_empty_lines(&mut buf);
        assert!(parse(&mut buf).unwrap().is_some());
    }
}
