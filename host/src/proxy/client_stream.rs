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
//! And one for the connection's end:
//! - **The last bytes with the FIN.** Once the router knows that the
//!   connection closes after what it writes next (a closing response,
//!   [`super::close_notify`]), it says so ([`ClientStream::close_follows`]):
//!   those writes tell the kernel that more follows (`MSG_MORE`), so their
//!   last segment waits, and the shutdown that ends the connection sends it
//!   with the FIN. Written at once, the bytes would leave in one segment
//!   and the FIN in another, each through both TCP stacks (on loopback, in
//!   the router's own time), and each acknowledged.
//!
//! One adapter for all, not stacked: every read and write of the
//! connection's life goes through it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::session_writes::WriteHold;

/// What a [`ClientStream`] runs over: the client's TCP socket, or another
/// stream (the HTTP/2 replay over TLS, a test's pipe), for which the last
/// writes are plain writes.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Writes `bufs` as `poll_write_vectored` does, telling the kernel
    /// that the connection's FIN follows soon, so that a last segment
    /// shorter than a full one may wait for it. The caller must then shut
    /// the stream down promptly (`poll_shutdown`), which sends it.
    fn poll_write_before_fin(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, bufs)
    }
}

impl Transport for TcpStream {
    fn poll_write_before_fin(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = self.get_mut();
        loop {
            ready!(socket.poll_write_ready(cx))?;
            let sent = socket.try_io(Interest::WRITABLE, || {
                socket2::SockRef::from(&*socket).send_vectored_with_flags(bufs, libc::MSG_MORE)
            });
            match sent {
                // Readiness was stale: it is cleared, wait again.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                sent => return Poll::Ready(sent),
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Transport for tokio_rustls::server::TlsStream<IO> {}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn poll_write_before_fin(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self).poll_write_before_fin(cx, bufs)
    }
}

/// `inner`, with `prefix` read from it first and writes held by `hold`.
#[derive(Debug)]
pub struct ClientStream<S> {
    inner: S,
    prefix: Vec<u8>,
    /// How much of `prefix` has been replayed.
    replayed: usize,
    hold: WriteHold,
    /// Whether the connection closes after what is written now: the
    /// writes wait for the FIN, and shutdown sends it.
    close_follows: bool,
}

impl<S> ClientStream<S> {
    /// A stream that yields `prefix`, then what `inner` yields.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            inner,
            prefix,
            replayed: 0,
            hold: WriteHold::default(),
            close_follows: false,
        }
    }

    /// Writes wait for `hold` from now on.
    pub fn hold_writes(&mut self, hold: WriteHold) {
        self.hold = hold;
    }

    /// The connection closes after the bytes written from now on: they
    /// leave with the FIN, which the next shutdown sends.
    pub fn close_follows(&mut self) {
        self.close_follows = true;
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

impl<S: Transport> AsyncWrite for ClientStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.hold.poll_release(cx));
        let this = &mut *self;
        let inner = Pin::new(&mut this.inner);
        if this.close_follows {
            inner.poll_write_before_fin(cx, &[io::IoSlice::new(buf)])
        } else {
            inner.poll_write(cx, buf)
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.hold.poll_release(cx));
        let this = &mut *self;
        let inner = Pin::new(&mut this.inner);
        if this.close_follows {
            inner.poll_write_before_fin(cx, bufs)
        } else {
            inner.poll_write_vectored(cx, bufs)
        }
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
    /// more system call per connection. After [`Self::close_follows`] the
    /// shutdown is real: it sends the held bytes with the FIN. (`close`
    /// would too, but not when client bytes lie unread in the socket: then
    /// it resets the connection, and held bytes would never leave.)
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.hold.poll_release(cx));
        if self.close_follows {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        } else {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
    }
}

#[cfg(test)]
impl Transport for tokio::io::DuplexStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session_writes::{register, SessionWrites};
    use crate::sys::socket::tcp_info;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    async fn loopback_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let server = accepted.unwrap().0;
        server.set_nodelay(true).unwrap();
        (server, client.unwrap())
    }

    #[tokio::test]
    async fn after_close_follows_the_last_bytes_leave_with_the_fin_in_one_segment() {
        const LAST: &[u8] = b"the response, then the close_notify";
        // The kernel holds a last short segment at most until its probe
        // timer (some 200 ms): a test stalled that long between the write
        // and the shutdown sees it sent alone, so a few tries are allowed.
        for attempt in 1.. {
            let (server, mut client) = loopback_pair().await;
            let mut stream = ClientStream::new(Vec::new(), server);
            let sent_before = tcp_info(&stream.inner).unwrap().tcpi_segs_out;
            stream.close_follows();
            stream.write_all(LAST).await.unwrap();
            let held = tcp_info(&stream.inner).unwrap().tcpi_notsent_bytes;
            stream.shutdown().await.unwrap();
            let sent = tcp_info(&stream.inner).unwrap().tcpi_segs_out - sent_before;
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.unwrap();
            assert_eq!(received, LAST, "the bytes, then the end");
            if held as usize == LAST.len() {
                assert_eq!(sent, 1, "the held bytes and the FIN in one segment");
                return;
            }
            assert!(
                attempt < 3,
                "the last bytes did not wait for the FIN ({held} held, {sent} segments)"
            );
        }
    }

    #[tokio::test]
    async fn without_close_follows_bytes_leave_at_once_and_shutdown_only_flushes() {
        let (server, mut client) = loopback_pair().await;
        let mut stream = ClientStream::new(Vec::new(), server);
        stream.write_all(b"reply").await.unwrap();
        assert_eq!(tcp_info(&stream.inner).unwrap().tcpi_notsent_bytes, 0);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"reply");
        // No FIN until the socket closes: the connection is still open.
        stream.shutdown().await.unwrap();
        stream.write_all(b" more").await.unwrap();
        drop(stream);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" more");
    }

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
