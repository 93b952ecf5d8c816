//! The body of a client's request, whichever protocol brought it.
//!
//! HTTP/2 bodies are hyper's. An HTTP/1.x body is read off the client's
//! connection by the connection's own task ([`pump`]) while the request is
//! being answered, and handed over through a small channel to whoever sends
//! it on (a backend's body sender, or a uwsgi forwarder buffering it). A
//! request without a body, the common case, costs none of that.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::request_head::BodyFraming;
use super::{BoxError, PolledFrame};
use crate::uwsgi::{ChunkedDecoder, Decoded, UwsgiError};

/// How much is read from the client at a time for a body.
const READ_SIZE: usize = 16 * 1024;

/// A client request's body.
#[derive(Debug)]
pub enum ClientBody {
    /// None was sent.
    Empty,
    /// An HTTP/2 request's, read by hyper.
    Hyper(Incoming),
    Http1(Http1Body),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Http1(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Hyper(body) => body.is_end_stream(),
            Self::Http1(body) => body.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Hyper(body) => body.size_hint(),
            Self::Http1(body) => body
                .remaining
                .map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}

/// What the connection's task hands the body's reader.
#[derive(Debug)]
enum Piece {
    Data(Bytes),
    /// The body ended where its framing said; without this, a closed
    /// channel means it was cut short.
    End,
}

/// An HTTP/1.x request body, as the connection's task reads it.
#[derive(Debug)]
pub struct Http1Body {
    pieces: mpsc::Receiver<Piece>,
    /// What is left of a body of declared length.
    remaining: Option<u64>,
    ended: bool,
}

/// The connection task's end of an [`Http1Body`].
#[derive(Debug)]
pub struct BodySender {
    pieces: mpsc::Sender<Piece>,
}

impl Http1Body {
    /// A body framed as `framing` (not [`BodyFraming::None`]), and the end
    /// that feeds it.
    pub fn channel(framing: BodyFraming) -> (Self, BodySender) {
        // Two pieces in flight: the reader is never starved by a hand-off,
        // and a client cannot make the router buffer more than that.
        let (sender, pieces) = mpsc::channel(2);
        let remaining = match framing {
            BodyFraming::Length(length) => Some(length),
            BodyFraming::None => Some(0),
            BodyFraming::Chunked => None,
        };
        let body = Self {
            pieces,
            remaining,
            ended: false,
        };
        (body, BodySender { pieces: sender })
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> PolledFrame {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.pieces.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(data))) => {
                if let Some(remaining) = &mut self.remaining {
                    *remaining = remaining.saturating_sub(data.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Piece::End)) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err("the client's request body was cut short".into())))
            }
        }
    }
}

/// Why a body could not be read whole off the client's connection.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("reading the request body: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client closed the connection in the middle of the request body")]
    Truncated,
    #[error("the request body's chunked coding is malformed: {0}")]
    BadChunk(String),
    /// Nobody reads the body any more (the response came first).
    #[error("the request body is no longer wanted")]
    Unwanted,
}

/// Reads a body framed as `framing` off `stream` (`buf` holds what was
/// read past the head, and keeps what follows the body) into `sender`,
/// after telling a client that `expects_continue` to go ahead.
pub async fn pump<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    framing: BodyFraming,
    expects_continue: bool,
    sender: BodySender,
) -> Result<(), PumpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if expects_continue && buf.is_empty() {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        stream.flush().await?;
    }
    let send = |piece| async {
        let permit = sender
            .pieces
            .reserve()
            .await
            .map_err(|_| PumpError::Unwanted)?;
        permit.send(piece);
        Ok::<_, PumpError>(())
    };
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(mut remaining) => {
            while remaining > 0 {
                if buf.is_empty() {
                    fill(stream, buf).await?;
                }
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                remaining -= take as u64;
                send(Piece::Data(buf.split_to(take).freeze())).await?;
            }
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            loop {
                match decoder.decode(buf).map_err(|error| match error {
                    UwsgiError::BadChunk(reason) => PumpError::BadChunk(reason.to_owned()),
                    other => PumpError::BadChunk(other.to_string()),
                })? {
                    Decoded::Data(data) => send(Piece::Data(data)).await?,
                    Decoded::Done => break,
                    Decoded::NeedMore => fill(stream, buf).await?,
                }
            }
        }
    }
    send(Piece::End).await
}

/// Reads more of the body into `buf`.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), PumpError> {
    buf.reserve(READ_SIZE);
    match stream.read_buf(buf).await? {
        0 => Err(PumpError::Truncated),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn pump_wire(
        framing: BodyFraming,
        wire: &[u8],
    ) -> (Result<Bytes, BoxError>, Result<(), PumpError>, BytesMut) {
        let (body, sender) = Http1Body::channel(framing);
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(wire).await.unwrap();
        drop(client);
        let mut buf = BytesMut::new();
        let (collected, pumped) = tokio::join!(
            async {
                ClientBody::Http1(body)
                    .collect()
                    .await
                    .map(|all| all.to_bytes())
            },
            pump(&mut server, &mut buf, framing, false, sender),
        );
        (collected, pumped, buf)
    }

    #[tokio::test]
    async fn a_body_of_declared_length_stops_at_its_end() {
        let (body, pumped, rest) = pump_wire(BodyFraming::Length(5), b"helloGET /").await;
        assert_eq!(body.unwrap(), "hello");
        pumped.unwrap();
        assert_eq!(&rest[..], b"GET /", "what follows is the next request's");
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (body, pumped, rest) = pump_wire(BodyFraming::Chunked, wire).await;
        assert_eq!(body.unwrap(), "hello!");
        pumped.unwrap();
        assert_eq!(&rest[..], b"NEXT");
    }

    #[tokio::test]
    async fn a_cut_body_is_an_error_on_both_ends() {
        let (body, pumped, _) = pump_wire(BodyFraming::Length(10), b"hello").await;
        assert!(body.is_err());
        assert!(matches!(pumped, Err(PumpError::Truncated)));
        let (body, pumped, _) = pump_wire(BodyFraming::Chunked, b"5\r\nhello\r\nzz\r\n").await;
        assert!(body.is_err());
        assert!(matches!(pumped, Err(PumpError::BadChunk(_))));
    }
}
