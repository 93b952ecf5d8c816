//! HTTP/1.x on a client connection: the router's own request loop.
//!
//! One task per connection reads a request head ([`request_head`]), hands
//! the request to the [`Proxy`], reads the body (if any) off the connection
//! meanwhile ([`client_body`]), and writes the response ([`response_writer`]),
//! then starts over on the same buffer, so that pipelined requests are
//! answered in order. A GET costs one read and one write on the client
//! socket, with no channel, timer or task of its own.
//!
//! Idle connections and shutdown are the caller's: [`Activity`] tells it
//! whether the loop is between requests (the connection can close at once)
//! or in one (it closes after the response).
//!
//! [`request_head`]: super::request_head
//! [`client_body`]: super::client_body
//! [`response_writer`]: super::response_writer

use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::activity::Activity;
use super::answer::Answer;
use super::client_body::{self, ClientBody, Http1Body, PumpError};
use super::close_notify::SealsClose;
use super::request_head::{self, BodyFraming, Refused, RequestHead};
use super::response_writer::{self, Answering, Continuation};
use super::{ConnInfo, Proxy};
use crate::limits;

/// How much is read at a time while waiting for a request head.
pub(super) const READ_SIZE: usize = 8 * 1024;

/// The buffer a connection waits for its first bytes with, as nginx's
/// `client_header_buffer_size`: most request heads fit, and a connection
/// that idles before its first request (a browser's speculative one) or
/// closes right after its handshake holds no more. A larger head grows
/// it to [`READ_SIZE`] as it comes.
pub(super) const FIRST_READ_SIZE: usize = 1024;

/// Who ended a connection's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client closed the connection between requests: there is no one
    /// left to tell that the router closes too.
    ByClient,
    /// The router ends it (the client asked for `close`, a body that ends
    /// with the connection, a refused request, shutdown): the client is
    /// to be told with a TLS close_notify (after a response, it has been:
    /// with the response's last bytes).
    ByRouter,
    /// A response's body broke off: the connection closes without a
    /// close_notify, which would vouch for the body.
    Aborted,
}

/// Serves requests on `stream`, whose first bytes, if already read, are in
/// `received`, until the client or the router ends the connection; the
/// caller then closes it.
pub async fn serve<S>(
    stream: &mut S,
    received: BytesMut,
    proxy: &Proxy,
    conn: &Arc<ConnInfo>,
    activity: &Arc<Activity>,
) -> io::Result<Ended>
where
    S: AsyncRead + SealsClose,
{
    let mut buf = received;
    let mut out = BytesMut::new();
    loop {
        if activity.is_closing() {
            return Ok(Ended::ByRouter);
        }
        let head = match read_head(stream, &mut buf, activity).await? {
            None => return Ok(Ended::ByClient),
            Some(Ok(head)) => head,
            Some(Err(refused)) => {
                tracing::debug!(peer = %conn.peer, %refused, "request refused");
                let response = Answer::plain(refused.status, refused.reason);
                let request = Answering {
                    method: &http::Method::GET,
                    version: http::Version::HTTP_11,
                    keep_alive: false,
                };
                let next = response_writer::write(stream, &mut out, response, request).await?;
                return Ok(ended(next).unwrap_or(Ended::ByRouter));
            }
        };
        let busy = activity.begin();
        let RequestHead {
            head,
            body: framing,
            keep_alive,
            expects_continue,
        } = head;
        let method = head.method.clone();
        let version = head.version;
        let (response, body_read) = if framing == BodyFraming::None {
            (proxy.handle(head, ClientBody::Empty, conn).await, true)
        } else {
            let (body, sender) = Http1Body::channel(framing);
            let handled = proxy.handle(head, ClientBody::Http1(body), conn);
            let pumped = client_body::pump(stream, &mut buf, framing, expects_continue, sender);
            let (mut handled, mut pumped) = (std::pin::pin!(handled), std::pin::pin!(pumped));
            let mut body_read = false;
            let mut pumping = true;
            let response = loop {
                tokio::select! {
                    // The body first: when both are ready, a body read to
                    // its end lets the connection stay open.
                    biased;
                    pumped = &mut pumped, if pumping => {
                        pumping = false;
                        match pumped {
                            Ok(()) => body_read = true,
                            // The proxy no longer reads it: its answer is
                            // coming.
                            Err(PumpError::Unwanted) => {}
                            // The request cannot be completed: waiting for
                            // the backend would only wait for its timeout.
                            Err(error @ PumpError::BadChunk(_)) => {
                                tracing::debug!(peer = %conn.peer, %error, "request body refused");
                                break Answer::plain(StatusCode::BAD_REQUEST, &error.to_string());
                            }
                            Err(error) => {
                                tracing::debug!(peer = %conn.peer, %error, "request body");
                                return Ok(Ended::ByClient);
                            }
                        }
                    }
                    response = &mut handled => break response,
                }
            };
            (response, body_read)
        };
        // A body not read to its end (the response came first, or it was
        // malformed) leaves the connection with no known next request.
        let answering = Answering {
            method: &method,
            version,
            keep_alive: keep_alive && body_read && !activity.is_closing(),
        };
        let next = response_writer::write(stream, &mut out, response, answering).await?;
        drop(busy);
        if let Some(ended) = ended(next) {
            return Ok(ended);
        }
    }
}

/// How the connection ends after a response, if it does.
fn ended(next: Continuation) -> Option<Ended> {
    match next {
        Continuation::KeepAlive => None,
        Continuation::Close => Some(Ended::ByRouter),
        Continuation::Abort => Some(Ended::Aborted),
    }
}

/// Reads until a whole request head is in `buf`: `None` when the client
/// closed the connection between requests, `Some(Err)` for a head the
/// router refuses. Waiting for the first byte is bounded by the caller's
/// idle check; a head begun must be complete within
/// [`limits::HEADER_READ_TIMEOUT`], a timer armed only for heads that do
/// not arrive in one read.
async fn read_head<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    activity: &Activity,
) -> io::Result<Option<Result<RequestHead, Refused>>>
where
    S: AsyncRead + Unpin,
{
    let mut deadline = None;
    loop {
        request_head::skip_empty_lines(buf);
        if !buf.is_empty() {
            match request_head::parse(buf) {
                Ok(Some(head)) => return Ok(Some(Ok(head))),
                Err(refused) => return Ok(Some(Err(refused))),
                Ok(None) => {}
            }
        }
        buf.reserve(READ_SIZE);
        let read = if buf.is_empty() {
            activity.set_between_requests(true);
            let read = stream.read_buf(buf).await;
            activity.set_between_requests(false);
            read
        } else {
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now() + limits::HEADER_READ_TIMEOUT);
            match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
                Ok(read) => read,
                Err(_) => {
                    return Ok(Some(Err(Refused {
                        status: StatusCode::REQUEST_TIMEOUT,
                        reason: "the request head did not arrive in time",
                    })))
                }
            }
        };
        match read {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            // A client that resets between requests is not an error worth
            // more than closing.
            Err(error) if buf.is_empty() => {
                tracing::debug!(%error, "client connection ended between requests");
                return Ok(None);
            }
            Err(error) => return Err(error),
        }
    }
}
