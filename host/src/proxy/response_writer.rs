//! A response written to an HTTP/1.x client: the head serialized by hand,
//! the body framed as RFC 9112 section 6 asks, and everything that is ready
//! at once gathered into one write, so that a small response leaves as one
//! TLS record in one system call.

use std::cell::RefCell;
use std::io;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use hyper::body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::answer::{Answer, AnswerHeaders};
use super::close_notify::{self, SealsClose};
use super::ProxyBody;
use crate::field_lines::{put_line, Known};

/// Output gathered past this size goes out before more is read.
const WRITE_BATCH: usize = 64 * 1024;

/// What the response depends on of the request it answers.
#[derive(Clone, Copy, Debug)]
pub struct Answering<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// Whether the connection may stay open after this response, as far as
    /// the request and the router are concerned.
    pub keep_alive: bool,
}

/// How the body is delimited for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body may follow (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// An HTTP/1.0 client and a length not known: the body ends with the
    /// connection.
    UntilClose,
}

/// How a connection goes on after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Continuation {
    /// Another request may follow.
    KeepAlive,
    /// The response was whole and the connection closes; the close_notify
    /// that says so left with its last bytes ([`close_notify`]).
    Close,
    /// The body broke off: the connection closes unannounced, so that the
    /// client cannot take what it got for the whole.
    Abort,
}

/// Writes `response` to `stream` through `out` (a buffer kept across a
/// connection's responses) and says how the connection goes on: closed
/// when the request or the router wants it, when the body had to end with
/// the connection, or when it broke off.
pub async fn write<S>(
    stream: &mut S,
    out: &mut BytesMut,
    answer: Answer,
    request: Answering<'_>,
) -> io::Result<Continuation>
where
    S: SealsClose,
{
    let framing = framing(answer.status, &answer.body, request);
    let keep_alive = request.keep_alive && framing != Framing::UntilClose;
    head(out, &answer, framing, request.version, keep_alive);
    let mut body = answer.body;
    if framing == Framing::None {
        return finish(stream, out, keep_alive).await;
    }
    loop {
        // Whatever the body has ready joins the head in the same write;
        // when it has nothing ready, what is gathered goes out first.
        let frame = std::future::poll_fn(|cx| match std::pin::Pin::new(&mut body).poll_frame(cx) {
            Poll::Pending if !out.is_empty() => Poll::Ready(Gathered::Flush),
            Poll::Pending => Poll::Pending,
            Poll::Ready(frame) => Poll::Ready(Gathered::Frame(frame)),
        })
        .await;
        match frame {
            Gathered::Flush => flush(stream, out).await?,
            Gathered::Frame(Some(Ok(frame))) => {
                // Trailers are not relayed.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                if framing == Framing::Chunked {
                    out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    out.put_slice(&data);
                    out.put_slice(b"\r\n");
                } else {
                    out.put_slice(&data);
                }
                if out.len() >= WRITE_BATCH {
                    flush(stream, out).await?;
                }
            }
            Gathered::Frame(Some(Err(error))) => {
                // The client must see the body break off: what was
                // gathered goes out, no chunked terminator, and the
                // connection closes with no close_notify.
                tracing::debug!(%error, "response body broke off");
                flush(stream, out).await?;
                return Ok(Continuation::Abort);
            }
            Gathered::Frame(None) => {
                if framing == Framing::Chunked {
                    out.put_slice(b"0\r\n\r\n");
                }
                return finish(stream, out, keep_alive).await;
            }
        }
    }
}

enum Gathered {
    Frame(Option<Result<hyper::body::Frame<bytes::Bytes>, super::BoxError>>),
    Flush,
}

async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) -> io::Result<()> {
    stream.write_all(out).await?;
    out.clear();
    stream.flush().await
}

/// Sends the end of a whole response; on a connection that closes after
/// it, with the close_notify in the same write.
async fn finish<S: SealsClose>(
    stream: &mut S,
    out: &mut BytesMut,
    keep_alive: bool,
) -> io::Result<Continuation> {
    if keep_alive {
        flush(stream, out).await?;
        return Ok(Continuation::KeepAlive);
    }
    close_notify::send_last(stream, out).await?;
    out.clear();
    Ok(Continuation::Close)
}

fn framing(status: StatusCode, body: &ProxyBody, request: Answering<'_>) -> Framing {
    if request.method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else if let Some(length) = body.size_hint().exact() {
        Framing::Length(length)
    } else if request.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::UntilClose
    }
}

/// The status line and headers, with the framing and connection headers
/// the router chose (any such from the backend are gone by now).
fn head(out: &mut BytesMut, answer: &Answer, framing: Framing, version: Version, keep_alive: bool) {
    out.put_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.put_slice(answer.status.as_str().as_bytes());
    out.put_u8(b' ');
    match &answer.reason {
        Some(reason) => out.put_slice(reason.as_bytes()),
        None => out.put_slice(
            answer
                .status
                .canonical_reason()
                .unwrap_or_default()
                .as_bytes(),
        ),
    }
    out.put_slice(b"\r\n");
    let dated = match &answer.headers {
        // A backend's Content-Length went with its framing (a HEAD or 304
        // response keeps it: the size the body would have).
        AnswerHeaders::Relayed(fields) => {
            out.put_slice(fields.lines());
            fields.has(Known::Date)
        }
        AnswerHeaders::Map(headers) => {
            for (name, value) in headers {
                // Content-Length is the router's to write, but for a
                // response without a body.
                if name == header::CONTENT_LENGTH && !matches!(framing, Framing::None) {
                    continue;
                }
                put_line(out, name.as_str().as_bytes(), value.as_bytes());
            }
            headers.contains_key(header::DATE)
        }
    };
    match framing {
        Framing::Length(length) => {
            put_line(
                out,
                b"content-length",
                itoa::Buffer::new().format(length).as_bytes(),
            );
        }
        Framing::Chunked => put_line(out, b"transfer-encoding", b"chunked"),
        Framing::None | Framing::UntilClose => {}
    }
    if !dated {
        DATE.with(|date| put_line(out, b"date", date.borrow_mut().now().as_bytes()));
    }
    if !keep_alive {
        put_line(out, b"connection", b"close");
    } else if version == Version::HTTP_10 {
        put_line(out, b"connection", b"keep-alive");
    }
    out.put_slice(b"\r\n");
}

thread_local! {
    /// Each worker's runtime is one thread: the Date value is made once a
    /// second there, not per response.
    static DATE: RefCell<CachedDate> = RefCell::new(CachedDate::default());
}

#[derive(Debug)]
struct CachedDate {
    second: u64,
    value: HeaderValue,
}

impl Default for CachedDate {
    fn default() -> Self {
        Self {
            second: u64::MAX,
            value: HeaderValue::from_static(""),
        }
    }
}

impl CachedDate {
    fn now(&mut self) -> &HeaderValue {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if second != self.second {
            self.second = second;
            self.value = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .expect("an HTTP date is a valid header value");
        }
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn full(text: &'static str) -> ProxyBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    /// A body of unknown length, in pieces.
    fn streamed(pieces: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<_, super::super::BoxError>> = pieces
            .iter()
            .map(|piece| {
                Ok(hyper::body::Frame::data(Bytes::from_static(
                    piece.as_bytes(),
                )))
            })
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    /// An answer of the router's own, with `headers`.
    fn answer(body: ProxyBody, headers: &[(&'static str, &'static str)]) -> Answer {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        Answer {
            status: StatusCode::OK,
            reason: None,
            headers: AnswerHeaders::Map(map),
            body,
        }
    }

    /// A backend's answer: `head` as it sent it, and `body`.
    fn relayed(head: &str, body: ProxyBody) -> Answer {
        let (head, _) = crate::uwsgi::parse_response_head(head.as_bytes(), false)
            .unwrap()
            .expect("a whole head");
        Answer {
            status: head.status,
            reason: head.reason,
            headers: AnswerHeaders::Relayed(head.fields),
            body,
        }
    }

    /// A plain byte stream has no close_notify: its last bytes are just
    /// written.
    impl SealsClose for Vec<u8> {
        fn seal_last(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.extend_from_slice(bytes);
            Ok(bytes.len())
        }
    }

    async fn written(answer: Answer, method: Method, version: Version) -> (String, Continuation) {
        let mut wire = Vec::new();
        let mut out = BytesMut::new();
        let request = Answering {
            method: &method,
            version,
            keep_alive: true,
        };
        let keep = write(&mut wire, &mut out, answer, request).await.unwrap();
        let text = String::from_utf8(wire).unwrap();
        // The date changes; everything else is checked to the byte.
        let text = text
            .lines()
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n");
        (text, keep)
    }

    #[tokio::test]
    async fn a_known_length_is_sent_with_the_body() {
        let answer = answer(full("hello"), &[("x-a", "1"), ("content-length", "99")]);
        let (text, keep) = written(answer, Method::GET, Version::HTTP_11).await;
        assert_eq!(text, "HTTP/1.1 200 OK\nx-a: 1\ncontent-length: 5\n\nhello");
        assert_eq!(keep, Continuation::KeepAlive);
    }

    #[tokio::test]
    async fn an_unknown_length_is_chunked_or_ends_with_the_connection() {
        let streamed_answer = |pieces| answer(streamed(pieces), &[]);
        let (text, keep) = written(
            streamed_answer(&["hel", "", "lo"]),
            Method::GET,
            Version::HTTP_11,
        )
        .await;
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\ntransfer-encoding: chunked\n\n3\nhel\n2\nlo\n0\n"
        );
        assert_eq!(keep, Continuation::KeepAlive);
        let (text, keep) =
            written(streamed_answer(&["hello"]), Method::GET, Version::HTTP_10).await;
        assert_eq!(text, "HTTP/1.0 200 OK\nconnection: close\n\nhello");
        assert_eq!(keep, Continuation::Close);
    }

    #[tokio::test]
    async fn bodiless_responses_keep_the_backends_length() {
        let head = answer(full(""), &[("content-length", "42")]);
        let (text, _) = written(head, Method::HEAD, Version::HTTP_11).await;
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 42\n");
        let mut no_content = answer(full(""), &[]);
        no_content.status = StatusCode::NO_CONTENT;
        let (text, keep) = written(no_content, Method::GET, Version::HTTP_10).await;
        assert_eq!(text, "HTTP/1.0 204 No Content\nconnection: keep-alive\n");
        assert_eq!(keep, Continuation::KeepAlive);
    }

    #[tokio::test]
    async fn a_backends_fields_go_out_as_it_wrote_them() {
        let head = "HTTP/1.1 200 Fine\r\nX-Case: 1\r\nConnection: keep-alive\r\n\
                    Content-Length: 5\r\nDate: Sun, 29 Nov 2026 13:00:00 GMT\r\n\r\n";
        let (text, keep) =
            written(relayed(head, full("hello")), Method::GET, Version::HTTP_11).await;
        // Its own date, and no second one (which `written` would hide);
        // the length the router writes.
        let mut wire = Vec::new();
        let request = Answering {
            method: &Method::GET,
            version: Version::HTTP_11,
            keep_alive: true,
        };
        write(
            &mut wire,
            &mut BytesMut::new(),
            relayed(head, full("hello")),
            request,
        )
        .await
        .unwrap();
        let wire = String::from_utf8(wire).unwrap();
        assert_eq!(
            wire.to_ascii_lowercase().matches("date: ").count(),
            1,
            "{wire}"
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 Fine\nX-Case: 1\nDate: Sun, 29 Nov 2026 13:00:00 GMT\n\
             content-length: 5\n\nhello"
        );
        assert_eq!(keep, Continuation::KeepAlive);
        let (text, _) = written(
            relayed("HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n", full("")),
            Method::GET,
            Version::HTTP_11,
        )
        .await;
        assert_eq!(text, "HTTP/1.1 200 OK\nX-A: 1\ncontent-length: 0\n");
    }

    #[tokio::test]
    async fn reason_phrases_and_dates() {
        let mut custom = answer(full(""), &[]);
        custom.status = StatusCode::from_u16(299).unwrap();
        custom.reason = Some(hyper::ext::ReasonPhrase::from_static(b"Custom"));
        let (text, _) = written(custom, Method::GET, Version::HTTP_11).await;
        assert!(text.starts_with("HTTP/1.1 299 Custom\n"), "{text}");
        let mut wire = Vec::new();
        let request = Answering {
            method: &Method::GET,
            version: Version::HTTP_11,
            keep_alive: false,
        };
        let keep = write(
            &mut wire,
            &mut BytesMut::new(),
            answer(full(""), &[]),
            request,
        )
        .await
        .unwrap();
        assert_eq!(keep, Continuation::Close);
        let text = String::from_utf8(wire).unwrap();
        assert!(
            text.contains("\r\ndate: ") && text.contains(" GMT\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_ends_the_connection_unannounced() {
        let broken = || {
            let frames: Vec<Result<_, super::super::BoxError>> = vec![
                Ok(hyper::body::Frame::data(Bytes::from_static(b"hel"))),
                Err("the backend went away".into()),
            ];
            StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
        };
        for version in [Version::HTTP_11, Version::HTTP_10] {
            let (text, next) = written(answer(broken(), &[]), Method::GET, version).await;
            assert_eq!(next, Continuation::Abort, "{version:?}");
            assert!(text.ends_with("\nhel"), "{text}");
        }
    }
}
