//! A backend connection as one request uses it: the head written and the
//! response read in the request's own task, and a request body, if any,
//! sent by a task of its own meanwhile.
//!
//! The body goes out while the response comes in because a backend may
//! answer before it has read everything (an early 413, a redirect); waiting
//! for the body to be sent first would deadlock with a backend that stops
//! reading. The socket is split for that, and a connection whose request
//! and response both went through whole is put back together for
//! keep-alive.
//!
//! Reads go through tokio's `AsyncRead`, which takes a short read as proof
//! that the socket is drained (as nginx does): the next read of a parked
//! connection then waits for epoll instead of costing a system call that
//! finds nothing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::debug;

use super::keepalive::IdleConnections;
use super::BoxError;
use crate::limits;
use crate::uwsgi::{self, ResponseHead};

/// How much the buffer grows by before a read.
const READ_RESERVE: usize = 16 * 1024;

/// A backend connection with a request on it.
#[derive(Debug)]
pub enum BackendStream {
    /// The request is all out (it had no body).
    Whole(TcpStream),
    /// A task is sending the request body; it hands the write half back,
    /// with whether the body went out whole. The write half is kept (not
    /// dropped, which would half-close the socket) until the response has
    /// been read: some backends take a half-close for a client gone away.
    Sending {
        read: OwnedReadHalf,
        sender: JoinHandle<(OwnedWriteHalf, bool)>,
    },
}

/// How the request body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    /// As it comes: its length was given in the head.
    Raw,
    /// In chunked transfer coding (HTTP/1.1, length unknown).
    Chunked,
}

impl BackendStream {
    /// Writes the request `head` on `stream` and starts sending `body`.
    pub async fn send<B>(
        mut stream: TcpStream,
        head: &[u8],
        body: Option<(B, BodyEncoding)>,
    ) -> io::Result<Self>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError> + Send,
    {
        stream.write_all(head).await?;
        let Some((body, encoding)) = body else {
            return Ok(Self::Whole(stream));
        };
        let (read, mut write) = stream.into_split();
        let sender = tokio::spawn(async move {
            let sent = match send_body(&mut write, body, encoding).await {
                Ok(()) => true,
                Err(error) => {
                    debug!(%error, "request body not fully sent to the backend");
                    false
                }
            };
            (write, sent)
        });
        Ok(Self::Sending { read, sender })
    }

    /// Reads what the backend sent into `buf`; 0 at the end of the stream.
    pub async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_some(cx, buf)).await
    }

    /// [`Self::read_some`] for `poll` callers (a response body).
    pub fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        buf.reserve(READ_RESERVE);
        match self {
            Self::Whole(stream) => tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf),
            Self::Sending { read, .. } => tokio_util::io::poll_read_buf(Pin::new(read), cx, buf),
        }
    }

    /// Reads the response head, and whatever came with it of the body.
    /// `form`: whether the head must start with a status line (HTTP) or may
    /// be CGI-style (uwsgi). Interim 1xx responses of an HTTP backend (100
    /// Continue, 103 Early Hints) are read past: the final one follows.
    pub async fn read_head(
        &mut self,
        request_was_head: bool,
        form: HeadForm,
    ) -> Result<Head, HeadError> {
        let mut buf = BytesMut::new();
        let mut received = false;
        loop {
            if let Some(head) = parse_head(&mut buf, request_was_head, form)? {
                if !(form == HeadForm::StatusLine && head.response.status.is_informational()) {
                    return Ok(Head { rest: buf, ..head });
                }
                if head.response.status == http::StatusCode::SWITCHING_PROTOCOLS {
                    return Err(HeadError::Bad(
                        "the backend switched protocols, which the router does not relay".into(),
                    ));
                }
                continue;
            }
            let closed = match self.read_some(&mut buf).await {
                Ok(0) => "the connection closed".to_owned(),
                Ok(_) => {
                    received = true;
                    continue;
                }
                Err(error) => format!("reading the response: {error}"),
            };
            return Err(if received {
                HeadError::Bad(format!("{closed} before a complete response head"))
            } else {
                HeadError::NothingBack(closed)
            });
        }
    }

    /// Parks the connection in `idle` for the backend's next request once
    /// the request body (if any) has gone out whole; called when the
    /// response has been read to its end.
    ///
    /// The sender may not have told yet: a backend can read the last byte
    /// and answer before the sender task's last write has returned (on
    /// another thread, or its turn not come), so the response is over
    /// first. Dropping the connection then, as the check alone would,
    /// loses it for nothing after many uploads on a loaded machine; a task
    /// waits for the sender instead, for [`limits::BACKEND_SENDER_GRACE`]
    /// at most. A sender still busy after that is writing to a backend
    /// that answered early and stopped reading: that connection is not
    /// reused.
    pub fn park_when_sent(self, idle: Arc<IdleConnections>) {
        let (read, mut sender) = match self {
            Self::Whole(stream) => return idle.park(stream),
            Self::Sending { read, sender } => (read, sender),
        };
        let park = move |sent: Result<(OwnedWriteHalf, bool), _>| {
            if let Ok((write, true)) = sent {
                if let Ok(stream) = read.reunite(write) {
                    idle.park(stream);
                }
            }
        };
        // Usually done already: no task then.
        if let Some(sent) = futures_util::FutureExt::now_or_never(&mut sender) {
            return park(sent);
        }
        tokio::spawn(async move {
            if let Ok(sent) = tokio::time::timeout(limits::BACKEND_SENDER_GRACE, sender).await {
                park(sent);
            }
        });
    }
}

/// What a response head may look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadForm {
    /// An HTTP/1.x server's response: it starts with a status line.
    StatusLine,
    /// A uwsgi backend may also answer CGI-style, its status in a header.
    CgiAllowed,
}

/// A response head as read off the connection.
#[derive(Debug)]
pub struct Head {
    pub response: ResponseHead,
    /// Whether the backend keeps the connection open after this response
    /// (HTTP/1.1 unless it says `close`; HTTP/1.0 only if it says
    /// `keep-alive`).
    pub persistent: bool,
    /// What was read past the head: the body's first bytes.
    pub rest: BytesMut,
}

#[derive(Debug)]
pub enum HeadError {
    /// The connection ended before any byte of a response came back: the
    /// backend may never have read the request.
    NothingBack(String),
    /// What came back is not a usable response head.
    Bad(String),
}

impl From<HeadError> for super::ForwardError {
    fn from(error: HeadError) -> Self {
        match error {
            HeadError::NothingBack(what) => Self::Backend(format!("{what} before any response")),
            HeadError::Bad(what) => Self::Backend(what),
        }
    }
}

/// The head at the start of `buf`, taken off it, or `None` when more bytes
/// are needed.
fn parse_head(
    buf: &mut BytesMut,
    request_was_head: bool,
    form: HeadForm,
) -> Result<Option<Head>, HeadError> {
    const PREFIX: &[u8] = b"HTTP/";
    if form == HeadForm::StatusLine && !buf.starts_with(&PREFIX[..buf.len().min(PREFIX.len())]) {
        return Err(HeadError::Bad(
            "the response does not start with an HTTP status line".into(),
        ));
    }
    match uwsgi::parse_response_head(buf, request_was_head) {
        Ok(Some((response, length))) => {
            let persistent = persistent(&buf[..length], &response);
            buf.advance(length);
            Ok(Some(Head {
                response,
                persistent,
                rest: BytesMut::new(),
            }))
        }
        Ok(None) if buf.len() >= limits::MAX_BACKEND_HEAD => Err(HeadError::Bad(format!(
            "response head larger than {} bytes",
            limits::MAX_BACKEND_HEAD
        ))),
        Ok(None) => Ok(None),
        Err(error) => Err(HeadError::Bad(error.to_string())),
    }
}

/// Whether the backend keeps the connection; `head` is the raw head, for
/// its version.
fn persistent(head: &[u8], response: &ResponseHead) -> bool {
    let http10 = head.starts_with(b"HTTP/1.0") || head.starts_with(b"HTTP/0.");
    response.connection.persists(http10)
}

async fn send_body<B>(
    write: &mut OwnedWriteHalf,
    mut body: B,
    encoding: BodyEncoding,
) -> Result<(), BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    while let Some(frame) = body.frame().await {
        // Trailers are not forwarded; only data frames go out.
        let Ok(data) = frame.map_err(Into::into)?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match encoding {
            BodyEncoding::Raw => write.write_all(&data).await?,
            BodyEncoding::Chunked => write.write_all(&chunk(&data)).await?,
        }
    }
    if encoding == BodyEncoding::Chunked {
        write.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// `data` as one chunk, in one buffer: one write instead of three.
fn chunk(data: &[u8]) -> Vec<u8> {
    let head = format!("{:x}\r\n", data.len());
    let mut chunk = Vec::with_capacity(head.len() + data.len() + 2);
    chunk.extend_from_slice(head.as_bytes());
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn head(text: &str, form: HeadForm) -> Result<Option<Head>, HeadError> {
        parse_head(&mut BytesMut::from(text), false, form)
    }

    #[test]
    fn persistence_follows_version_and_connection() {
        let persistent = |text: &str| {
            head(text, HeadForm::StatusLine)
                .unwrap()
                .expect("a whole head")
                .persistent
        };
        assert!(persistent("HTTP/1.1 200 OK\r\n\r\n"));
        assert!(!persistent(
            "HTTP/1.1 200 OK\r\nConnection: x, Close\r\n\r\n"
        ));
        assert!(!persistent("HTTP/1.0 200 OK\r\n\r\n"));
        assert!(persistent(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"
        ));
    }

    #[test]
    fn an_http_backend_must_send_a_status_line() {
        assert!(matches!(
            head("Status: 200\r\n\r\n", HeadForm::StatusLine),
            Err(HeadError::Bad(_))
        ));
        assert!(matches!(head("HTT", HeadForm::StatusLine), Ok(None)));
        assert!(head("Status: 200\r\n\r\n", HeadForm::CgiAllowed)
            .unwrap()
            .is_some());
    }

    /// A request body whose one frame comes when `release` fires.
    fn held_body(
        release: tokio::sync::oneshot::Receiver<()>,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Send + Unpin + 'static {
        let frame = async move {
            let _ = release.await;
            Ok(hyper::body::Frame::data(Bytes::from_static(b"body")))
        };
        http_body_util::StreamBody::new(Box::pin(futures_util::stream::once(frame)))
    }

    #[tokio::test]
    async fn a_connection_is_parked_once_its_body_sender_is_done() {
        use tokio::io::AsyncReadExt;
        let (client, mut backend) = super::super::keepalive::connected_pair().await;
        let (release, held) = tokio::sync::oneshot::channel();
        let head = b"POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\n";
        let stream = BackendStream::send(client, head, Some((held_body(held), BodyEncoding::Raw)))
            .await
            .unwrap();
        // The response is over while the sender still has the body: the
        // connection waits for it rather than being dropped.
        let idle = Arc::new(IdleConnections::default());
        stream.park_when_sent(Arc::clone(&idle));
        assert_eq!(idle.len(), 0, "parked before the body went out");
        release.send(()).unwrap();
        let mut request = vec![0; head.len() + 4];
        backend.read_exact(&mut request).await.unwrap();
        assert!(request.ends_with(b"\r\n\r\nbody"));
        tokio::time::timeout(Duration::from_secs(30), async {
            while idle.len() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("parked once the sender is done");

        // A connection whose request had no body is parked at once.
        let (client, _backend) = super::super::keepalive::connected_pair().await;
        let stream = BackendStream::send::<http_body_util::Empty<Bytes>>(client, head, None)
            .await
            .unwrap();
        stream.park_when_sent(Arc::clone(&idle));
        assert_eq!(idle.len(), 2);
    }

    #[test]
    fn chunks_carry_their_size_in_hexadecimal() {
        assert_eq!(chunk(&[7; 255])[..4], *b"ff\r\n");
        assert_eq!(chunk(b"x"), b"1\r\nx\r\n");
    }
}
