//! A client connection's socket as rustls sees it.
//!
//! Two things stand between rustls and the TCP stream, both for the
//! handshake:
//! - **Replay.** The router reads a client's ClientHello itself, before
//!   rustls, to learn what the client offers ([`crate::client_hello`]).
//!   rustls must then see exactly the bytes the client sent, from the
//!   first: the bytes taken off the socket are replayed, then reads go on
//!   from it. Once replayed, the buffer is freed.
//! - **Hold.** With the Redis tier on, outgoing bytes wait until the
//!   sessions the handshake stored have reached Redis
//!   ([`crate::session_writes`]).
//!
//! One adapter for both, not two stacked: every read and write of the
//! connection's life goes through it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::session_writes::WriteHold;

/// `inner`, with `prefix` read from it first and writes held by `hold`.
#[derive(Debug)]
pub struct ClientStream<S> {
    inner: S,
    prefix: Vec<u8>,
    /// How much of `prefix` has been replayed.
    replayed: usize,
    hold: WriteHold,
}

impl<S> ClientStream<S> {
    /// A stream that yields `prefix`, then what `inner` yields.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            inner,
            prefix,
            replayed: 0,
            hold: WriteHold::default(),
        }
    }

    /// Writes wait for `hold` from now on.
    pub fn hold_writes(&mut self, hold: WriteHold) {
        self.hold = hold;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.prefix.len() {
            let rest = &this.prefix[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.prefix.len() {
                // Replayed whole: the connection lives on without it.
                this.prefix = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.hold.poll_release(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.hold.poll_release(cx));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.hold.poll_release(cx));
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Flushes, without `shutdown(2)`: the connection is closed the moment
    /// hyper returns, and `close` sends the FIN just the same (nginx closes
    /// without a shutdown too), so a shutdown first would only be one
    /// more system call per connection.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.hold.poll_release(cx));
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session_writes::{register, SessionWrites};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn replays_the_prefix_then_reads_on_in_any_read_size() {
        for read_size in [1, 3, 5, 64] {
            let (mut client, server) = tokio::io::duplex(64);
            client.write_all(b" world").await.unwrap();
            client.shutdown().await.unwrap();
            let mut stream = ClientStream::new(b"hello".to_vec(), server);
            let mut got = Vec::new();
            let mut chunk = vec![0; read_size];
            loop {
                let n = stream.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                assert!(n <= read_size);
                got.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(got, b"hello world", "reads of {read_size}");
            assert!(stream.prefix.is_empty(), "the prefix is freed");
        }
    }

    #[tokio::test]
    async fn an_empty_prefix_reads_straight_through_and_writes_pass() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut stream = ClientStream::new(Vec::new(), server);
        client.write_all(b"abc").await.unwrap();
        let mut got = [0u8; 3];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abc");
        stream.write_all(b"reply").await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
    }

    #[tokio::test]
    async fn held_bytes_leave_once_the_session_writes_end() {
        let (server, mut client) = tokio::io::duplex(64);
        let writes = SessionWrites::default();
        let mut stream = ClientStream::new(Vec::new(), server);
        stream.hold_writes(WriteHold::new(Some(writes.clone())));
        let (done, waiter) = oneshot::channel();
        assert!(writes.scope(async { register(waiter) }).await);
        let writer = tokio::spawn(async move {
            stream.write_all(b"finished").await.unwrap();
            stream
        });
        // The writer cannot finish while the session write is pending.
        tokio::task::yield_now().await;
        assert!(
            !writer.is_finished(),
            "bytes left before the session write ended"
        );
        done.send(()).unwrap();
        let mut buf = [0u8; 8];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"finished");
        let stream = writer.await.unwrap();
        assert!(
            stream.hold.is_released(),
            "settled: later bytes pass unchecked"
        );
    }
}
