//! A stream that gives back bytes already read from it.
//!
//! The router reads a client's ClientHello itself, before rustls, to learn
//! what the client offers ([`super::client_hello`]). rustls must then see
//! exactly the bytes the client sent, from the first: [`Rewind`] replays
//! the bytes taken off the socket, then reads on from it. Writes go
//! straight through. Once replayed, the buffer is freed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with `prefix` read from it first.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    /// How much of `prefix` has been replayed.
    replayed: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// A stream that yields `prefix`, then what `inner` yields.
    pub fn new(prefix: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind {
            prefix,
            replayed: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replays_the_prefix_then_reads_on_in_any_read_size() {
        for read_size in [1, 3, 5, 64] {
            let (mut client, server) = tokio::io::duplex(64);
            client.write_all(b" world").await.unwrap();
            client.shutdown().await.unwrap();
            let mut stream = Rewind::new(b"hello".to_vec(), server);
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
        let mut stream = Rewind::new(Vec::new(), server);
        client.write_all(b"abc").await.unwrap();
        let mut got = [0u8; 3];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abc");
        stream.write_all(b"reply").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
    }
}
