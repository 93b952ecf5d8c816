//! A backend's response body, read off its connection as the client takes
//! it, framed as the head said (RFC 9112 section 6.3): a length, chunked
//! coding, or the end of the connection.
//!
//! Once the body has been read to its end the connection is done with this
//! request: an HTTP backend's goes back to its idle list right then, before
//! the last bytes reach the client, so a client that sends its next request
//! the moment it has the response finds the connection parked already.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::answer::{Answer, AnswerHeaders};
use super::backend_stream::BackendStream;
use super::keepalive::IdleConnections;
use super::{BoxError, PolledFrame};
use crate::uwsgi::{ChunkedDecoder, Decoded, Framing, ResponseHead};

/// The response to relay: the backend's status and the fields that go
/// on, and its body streamed from `stream` (`buf` holds what was read past
/// the head).
pub fn relay(head: ResponseHead, stream: BackendStream, buf: BytesMut, after: AfterBody) -> Answer {
    let body = ResponseBody::new(stream, buf, head.framing, after);
    Answer {
        status: head.status,
        reason: head.reason,
        headers: AnswerHeaders::Relayed(head.fields),
        body: body.boxed_unsync(),
    }
}

/// Where the connection goes once the body has been read to its end.
#[derive(Debug)]
pub enum AfterBody {
    /// Closed: the uwsgi protocol carries one request per connection, and
    /// an HTTP response that said `close` or ends with the connection
    /// leaves nothing to reuse.
    Close,
    /// Parked for the backend's next request.
    Park(Arc<IdleConnections>),
}

/// The rest of a response, streamed from the backend.
#[derive(Debug)]
pub struct ResponseBody {
    /// `None` once the body is done (the connection parked or closed).
    stream: Option<BackendStream>,
    /// Bytes read but not yet handed out.
    buf: BytesMut,
    state: State,
    after: AfterBody,
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl ResponseBody {
    /// The body that follows a head framed as `framing`, whose first bytes
    /// (read with the head) are in `buf`.
    pub fn new(stream: BackendStream, buf: BytesMut, framing: Framing, after: AfterBody) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = Self {
            stream: Some(stream),
            buf,
            state,
            after,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// The body was read to its end: the connection goes where `after`
    /// says, if it is clean (nothing read past the body, the request body
    /// out whole).
    fn finish(&mut self) {
        self.state = State::Done;
        let Some(stream) = self.stream.take() else {
            return;
        };
        if let AfterBody::Park(idle) = &self.after {
            if self.buf.is_empty() {
                stream.park_when_sent(Arc::clone(idle));
            }
        }
    }

    /// The body cannot go on: the connection is closed, never reused.
    fn fail(&mut self, error: io::Error) -> PolledFrame {
        self.state = State::Done;
        self.stream = None;
        Poll::Ready(Some(Err(error.into())))
    }

    fn data(data: Bytes) -> PolledFrame {
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame {
        let this = self.get_mut();
        loop {
            // What the buffer holds first; read only when it is not enough.
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(remaining) if !this.buf.is_empty() => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(this.buf.len());
                    let data = this.buf.split_to(take).freeze();
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        this.finish();
                    }
                    return Self::data(data);
                }
                State::UntilClose if !this.buf.is_empty() => {
                    return Self::data(this.buf.split().freeze());
                }
                State::Chunked(decoder) => match decoder.decode(&mut this.buf) {
                    Ok(Decoded::Data(data)) => return Self::data(data),
                    Ok(Decoded::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(error) => {
                        return this.fail(io::Error::new(io::ErrorKind::InvalidData, error))
                    }
                },
                State::Length(_) | State::UntilClose => {}
            }
            let Some(stream) = &mut this.stream else {
                return Poll::Ready(None);
            };
            match ready!(stream.poll_read_some(cx, &mut this.buf)) {
                Ok(0) if matches!(this.state, State::UntilClose) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(truncated()),
                Ok(_) => {}
                Err(error) => return this.fail(error),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(remaining) => SizeHint::with_exact(remaining),
            State::Chunked(_) | State::UntilClose => SizeHint::default(),
        }
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the backend closed the connection in the middle of the response body",
    )
}
