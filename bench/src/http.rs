//! A minimal HTTP/1.1 client for keep-alive connections: write a GET, read
//! the response head, skip the body by its framing (content-length,
//! chunked, or until close). Hand-written rather than hyper so that a
//! request's latency is exactly write-to-last-byte and nothing is spawned
//! per connection.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest response head or chunk-size line accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
const READ_SIZE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("the connection closed before the response ended")]
    Truncated,
}

/// What the bench needs of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    pub body_bytes: u64,
}

/// How the body's end is found (RFC 9112, section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// `GET path` with the headers a browser would need; `close` on the last
/// request of a connection, so the server closes rather than waits.
pub fn get_request(path: &str, host: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: cachet-bench\r\n\
         accept: */*\r\nconnection: {connection}\r\n\r\n"
    )
    .into_bytes()
}

/// One connection's HTTP side. Bytes read past a response stay in the
/// buffer for the next one.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_SIZE),
        }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Sends `request` and reads the whole response.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        self.stream.write_all(request).await?;
        self.stream.flush().await?;
        loop {
            let head = self.head().await?;
            // 1xx interim responses (100 Continue, 103 Early Hints) precede
            // the real one.
            if (100..200).contains(&head.status) {
                continue;
            }
            let body_bytes = match head.framing {
                Framing::Empty => 0,
                Framing::Length(n) => {
                    self.skip(n).await?;
                    n
                }
                Framing::Chunked => self.skip_chunked().await?,
                Framing::UntilClose => self.skip_to_close().await?,
            };
            return Ok(Response {
                status: head.status,
                keep_alive: head.keep_alive && head.framing != Framing::UntilClose,
                body_bytes,
            });
        }
    }

    /// Reads more into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let start = self.buf.len();
        self.buf.resize(start + READ_SIZE, 0);
        let read = self.stream.read(&mut self.buf[start..]).await;
        self.buf.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }

    async fn fill_or_truncated(&mut self) -> Result<(), HttpError> {
        match self.fill().await? {
            0 => Err(HttpError::Truncated),
            _ => Ok(()),
        }
    }

    async fn head(&mut self) -> Result<Head, HttpError> {
        loop {
            if let Some((consumed, head)) = parse_head(&self.buf)? {
                self.buf.drain(..consumed);
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::Malformed(format!(
                    "response head longer than {MAX_HEAD} bytes"
                )));
            }
            self.fill_or_truncated().await?;
        }
    }

    async fn skip(&mut self, mut n: u64) -> Result<(), HttpError> {
        loop {
            let buffered = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.buf.drain(..buffered);
            n -= buffered as u64;
            if n == 0 {
                return Ok(());
            }
            self.fill_or_truncated().await?;
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn line(&mut self) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::Malformed("chunk line too long".into()));
            }
            self.fill_or_truncated().await?;
        }
    }

    async fn skip_chunked(&mut self) -> Result<u64, HttpError> {
        let mut total = 0u64;
        loop {
            let line = self.line().await?;
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailer fields, up to an empty line.
                while !self.line().await?.is_empty() {}
                return Ok(total);
            }
            self.skip(size).await?;
            if !self.line().await?.is_empty() {
                return Err(HttpError::Malformed(
                    "chunk data not followed by CRLF".into(),
                ));
            }
            total += size;
        }
    }

    async fn skip_to_close(&mut self) -> Result<u64, HttpError> {
        let mut total = self.buf.len() as u64;
        self.buf.clear();
        loop {
            match self.fill().await {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    total += n as u64;
                    self.buf.clear();
                }
                // A server that closes without close_notify has still ended
                // the body, as far as a load generator cares.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(total),
                Err(error) => return Err(error.into()),
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    keep_alive: bool,
    framing: Framing,
}

/// Parses a complete head at the start of `buf`: its length and meaning,
/// or `None` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(HttpError::Malformed(error.to_string())),
    };
    let status = response
        .code
        .ok_or_else(|| HttpError::Malformed("no status code".into()))?;
    // HTTP/1.1 keeps alive unless told to close; HTTP/1.0 the other way.
    let mut keep_alive = response.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("");
        if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is only the framing when it is the final coding.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.trim().parse().map_err(|_| {
                HttpError::Malformed(format!("content-length `{value}` is not a number"))
            })?;
            if length.is_some_and(|previous| previous != n) {
                return Err(HttpError::Malformed("conflicting content-length".into()));
            }
            length = Some(n);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some((
        consumed,
        Head {
            status,
            keep_alive,
            framing,
        },
    )))
}

fn chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let text = std::str::from_utf8(line).unwrap_or("");
    // Chunk extensions (`;name=value`) are allowed and meaningless here.
    let hex = text.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16)
        .map_err(|_| HttpError::Malformed(format!("chunk size `{text}` is not hexadecimal")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one exchange against a canned server reply (the bytes after it
    /// stay buffered for the next exchange).
    async fn exchange_with(reply: &[u8], exchanges: usize) -> Vec<Result<Response, HttpError>> {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        server.write_all(reply).await.unwrap();
        drop(server.shutdown().await);
        let mut conn = Conn::new(client);
        let request = get_request("/", "localhost", false);
        let mut results = Vec::new();
        for _ in 0..exchanges {
            results.push(conn.exchange(&request).await);
        }
        results
    }

    fn ok(result: &Result<Response, HttpError>) -> Response {
        match result {
            Ok(response) => *response,
            Err(error) => panic!("{error}"),
        }
    }

    #[tokio::test]
    async fn keep_alive_responses_by_length_and_chunks() {
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\ntrailer: 1\r\n\r\n\
HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\n\r\n\
HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let results = exchange_with(reply, 4).await;
        let statuses: Vec<(u16, bool, u64)> = results
            .iter()
            .map(ok)
            .map(|r| (r.status, r.keep_alive, r.body_bytes))
            .collect();
        assert_eq!(
            statuses,
            [
                (200, true, 5),
                (404, true, 19),
                (304, true, 0),
                (200, false, 0)
            ]
        );
    }

    #[tokio::test]
    async fn a_body_until_close_ends_the_connection() {
        let results = exchange_with(b"HTTP/1.0 200 OK\r\n\r\nsome body", 1).await;
        assert_eq!(
            ok(&results[0]),
            Response {
                status: 200,
                keep_alive: false,
                body_bytes: 9
            }
        );
    }

    #[tokio::test]
    async fn truncated_and_malformed_responses_are_errors() {
        let results = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", 1).await;
        assert!(
            matches!(results[0], Err(HttpError::Truncated)),
            "{results:?}"
        );
        let results = exchange_with(b"HTTP/1.1 200 OK\r\ncontent", 1).await;
        assert!(
            matches!(results[0], Err(HttpError::Truncated)),
            "{results:?}"
        );
        let results = exchange_with(b"SMTP ready\r\n\r\n", 1).await;
        assert!(
            matches!(results[0], Err(HttpError::Malformed(_))),
            "{results:?}"
        );
        let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        let results = exchange_with(reply, 1).await;
        assert!(
            matches!(results[0], Err(HttpError::Malformed(_))),
            "{results:?}"
        );
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n";
        let results = exchange_with(reply, 1).await;
        assert!(
            matches!(results[0], Err(HttpError::Malformed(_))),
            "{results:?}"
        );
    }

    #[test]
    fn requests_ask_to_close_only_when_last() {
        let keep = String::from_utf8(get_request("/a", "example.com", false)).unwrap();
        assert!(keep.starts_with("GET /a HTTP/1.1\r\nhost: example.com\r\n"));
        assert!(keep.contains("connection: keep-alive\r\n"));
        assert!(keep.ends_with("\r\n\r\n"));
        let close = String::from_utf8(get_request("/a", "example.com", true)).unwrap();
        assert!(close.contains("connection: close\r\n"));
    }
}
