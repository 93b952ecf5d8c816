//! A client connection's socket as rustls sees it.
//!
//! Three things stand between rustls and the TCP stream for the
//! handshake:
//! - **Replay.** The router reads a client's ClientHello itself, before
//!   rustls, to learn what the client offers ([`crate::client_hello`]).
//!   rustls must then see exactly the bytes the client sent, from the
//!   first: the bytes taken off the socket are replayed, then reads go on
//!   from it. Once replayed, the buffer is freed.
//! - **Hold.** With the Redis tier on, outgoing bytes wait until the
//!   sessions the handshake stored have reached Redis
//!   ([`crate::session_writes`]).
//! - **Tickets with the response.** A TLS 1.3 server sends its session
//!   tickets after the client's Finished, when the handshake is over;
//!   tokio-rustls writes and flushes them right then, alone: a write, and
//!   on loopback a segment through both TCP stacks (in the router's own
//!   time) and its acknowledgement, for 200 bytes no one waits for. The
//!   router's next words are its response, a backend's round trip later.
//!   So the handshake's writes are kept ([`ClientStream::hold_handshake_writes`])
//!   and sent when the client may be waiting for them (the router waits
//!   to read, and what is kept is a handshake flight); the tickets go in
//!   the same write as the response, or, when the router must wait for
//!   the request, into the kernel with `MSG_MORE`, where the response's
//!   write picks them up (or the kernel sends them within some 200 ms).
//!
//! And one for the connection's end:
//! - **The last bytes with the FIN.** Once the router knows that the
//!   connection closes after what it writes next (a closing response,
//!   [`super::close_notify`]), it says so ([`ClientStream::close_follows`]):
//!   those writes tell the kernel that more follows (`MSG_MORE`), so their
//!   last segment waits, and the shutdown that ends the connection sends it
//!   with the FIN. Written at once, the bytes would leave in one segment
//!   and the FIN in another, each through both TCP stacks, and each
//!   acknowledged.
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
/// stream (the HTTP/2 replay over TLS, a test's pipe), for which writes
/// with more to follow are plain writes.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Writes `bufs` as `poll_write_vectored` does, telling the kernel
    /// that more follows (`MSG_MORE`): a last segment shorter than a full
    /// one waits for the next write or the FIN, or at most the kernel's
    /// probe timer (some 200 ms).
    fn poll_write_more(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, bufs)
    }
}

impl Transport for TcpStream {
    fn poll_write_more(
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
    fn poll_write_more(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self).poll_write_more(cx, bufs)
    }
}

/// `inner`, with `prefix` read from it first, writes held by `hold`, the
/// handshake's writes kept until they are due.
#[derive(Debug)]
pub struct ClientStream<S> {
    inner: S,
    prefix: Vec<u8>,
    /// How much of `prefix` has been replayed.
    replayed: usize,
    hold: WriteHold,
    /// While the TLS handshake goes on, its writes are kept until the
    /// client may be waiting for them (the router waits to read), or the
    /// stream shuts down.
    in_handshake: bool,
    /// The handshake's writes not yet sent; after the handshake (tickets),
    /// they go first in the next write, or with `MSG_MORE` when the router
    /// waits to read.
    kept: Vec<u8>,
    /// Whether the connection closes after what is written now: the
    /// writes wait for the FIN, and shutdown sends it.
    close_follows: bool,
}

/// The TLS record content type of application data (RFC 8446, 5.1): the
/// outer type of every encrypted TLS 1.3 record.
const APPLICATION_DATA: u8 = 23;

impl<S> ClientStream<S> {
    /// A stream that yields `prefix`, then what `inner` yields.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            inner,
            prefix,
            replayed: 0,
            hold: WriteHold::default(),
            in_handshake: false,
            kept: Vec::new(),
            close_follows: false,
        }
    }

    /// Writes wait for `hold` from now on.
    pub fn hold_writes(&mut self, hold: WriteHold) {
        self.hold = hold;
    }

    /// The TLS handshake starts: its writes are kept until the client may
    /// be waiting for them, flushes notwithstanding.
    pub fn hold_handshake_writes(&mut self) {
        self.in_handshake = true;
    }

    /// The TLS handshake ended: what it left kept (TLS 1.3 session
    /// tickets) goes with the next write.
    pub fn handshake_done(&mut self) {
        self.in_handshake = false;
    }

    /// The connection closes after the bytes written from now on: they
    /// leave with the FIN, which the next shutdown sends.
    pub fn close_follows(&mut self) {
        self.close_follows = true;
    }

    /// Whether what is kept must go when the router waits to read: a
    /// handshake flight, for which the client waits, but not the tickets
    /// while the handshake is on. (tokio-rustls reads on after the
    /// client's Finished until the socket has nothing more, before the
    /// handshake is known to be over here, so the tickets are told apart
    /// by their first record: every flight a client waits for starts with
    /// a plaintext record (ServerHello, HelloRetryRequest, TLS 1.2's
    /// tickets or ChangeCipherSpec), what a TLS 1.3 server sends after the
    /// handshake with an encrypted one, whose outer type is application
    /// data.)
    fn due_when_reading(&self) -> bool {
        match self.kept.first() {
            None => false,
            Some(&APPLICATION_DATA) => !self.in_handshake,
            Some(_) => true,
        }
    }
}

impl<S: Transport> ClientStream<S> {
    /// Writes `bufs` to the socket, once the session writes allow; with
    /// `MSG_MORE` when `more` or the FIN follows.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        more: bool,
    ) -> Poll<io::Result<usize>> {
        ready!(self.hold.poll_release(cx));
        let inner = Pin::new(&mut self.inner);
        if more || self.close_follows {
            inner.poll_write_more(cx, bufs)
        } else {
            inner.poll_write_vectored(cx, bufs)
        }
    }

    /// Writes what is kept, then `bufs`, in one write when the socket
    /// takes it all; returns how many of `bufs`' bytes were sent (0 for
    /// none given).
    fn poll_send_after_kept(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        more: bool,
    ) -> Poll<io::Result<usize>> {
        while !self.kept.is_empty() {
            let kept = std::mem::take(&mut self.kept);
            let mut both = Vec::with_capacity(bufs.len() + 1);
            both.push(io::IoSlice::new(&kept));
            both.extend_from_slice(bufs);
            let sent = self.poll_send(cx, &both, more);
            drop(both);
            self.kept = kept;
            let n = ready!(sent)?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < self.kept.len() {
                drop(self.kept.drain(..n));
                continue;
            }
            let of_bufs = n - self.kept.len();
            // All sent: the buffer goes with them.
            self.kept = Vec::new();
            if of_bufs > 0 {
                return Poll::Ready(Ok(of_bufs));
            }
        }
        if bufs.iter().all(|buf| buf.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        self.poll_send(cx, bufs, more)
    }

    /// Sends what is kept, if anything; with `MSG_MORE` when `more`.
    fn poll_send_kept(&mut self, cx: &mut Context<'_>, more: bool) -> Poll<io::Result<()>> {
        if !self.kept.is_empty() {
            ready!(self.poll_send_after_kept(cx, &[], more))?;
        }
        Poll::Ready(Ok(()))
    }

    fn write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.in_handshake {
            // Kept, not sent: the session writes' hold applies when they
            // leave (`poll_send`).
            let mut taken = 0;
            for buf in bufs {
                self.kept.extend_from_slice(buf);
                taken += buf.len();
            }
            return Poll::Ready(Ok(taken));
        }
        self.poll_send_after_kept(cx, bufs, false)
    }
}

impl<S: Transport> AsyncRead for ClientStream<S> {
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
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if read.is_pending() && this.due_when_reading() {
            // The router waits for the client. A flight goes now: the
            // client waits for it. Tickets go to the kernel, which holds
            // them for the response's write; the request may be a moment
            // behind the client's Finished.
            let tickets = this.kept.first() == Some(&APPLICATION_DATA);
            ready!(this.poll_send_kept(cx, tickets))?;
        }
        read
    }
}

impl<S: Transport> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.in_handshake && this.kept.is_empty() && !this.close_follows {
            ready!(this.hold.poll_release(cx));
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Sends nothing kept while the handshake goes on: tokio-rustls
    /// flushes at its end, and the tickets are to wait for the response.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.in_handshake {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_send_kept(cx, false))?;
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
        ready!(self.poll_send_kept(cx, false))?;
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

    /// A transport that records its writes, each with whether it was
    /// told more follows; reads come from a pipe the test holds.
    struct Recorder {
        reads: tokio::io::DuplexStream,
        writes: Vec<(Vec<u8>, bool)>,
    }

    impl Recorder {
        fn new() -> (Self, tokio::io::DuplexStream) {
            let (reads, client) = tokio::io::duplex(1024);
            let writes = Vec::new();
            (Self { reads, writes }, client)
        }

        fn record(&mut self, bufs: &[io::IoSlice<'_>], more: bool) -> usize {
            let bytes: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
            let n = bytes.len();
            self.writes.push((bytes, more));
            n
        }
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.reads).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(self.record(&[io::IoSlice::new(buf)], false)))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(self.record(bufs, false)))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Transport for Recorder {
        fn poll_write_more(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(self.record(bufs, true)))
        }
    }

    /// A stream in a handshake, over a recorder (and the pipe's client
    /// end, which must stay open for reads to wait).
    fn in_handshake() -> (ClientStream<Recorder>, tokio::io::DuplexStream) {
        let (recorder, client) = Recorder::new();
        let mut stream = ClientStream::new(Vec::new(), recorder);
        stream.hold_handshake_writes();
        (stream, client)
    }

    /// Polls a read once, with nothing to read: the router waits.
    fn read_waits(stream: &mut ClientStream<Recorder>) {
        let mut space = [0u8; 16];
        let mut buf = ReadBuf::new(&mut space);
        let waker = std::task::Waker::noop();
        let polled = Pin::new(stream).poll_read(&mut Context::from_waker(waker), &mut buf);
        assert!(polled.is_pending(), "nothing to read");
    }

    fn writes(stream: &ClientStream<Recorder>) -> &[(Vec<u8>, bool)] {
        &stream.inner.writes
    }

    /// A ServerHello's record, and two TLS 1.3 tickets' (encrypted).
    const FLIGHT: &[u8] = &[22, 3, 3, 0, 2, 2, 0];
    const TICKETS: &[u8] = &[23, 3, 3, 0, 1, 0xaa, 23, 3, 3, 0, 1, 0xbb];

    #[tokio::test]
    async fn a_handshake_flight_leaves_when_the_router_waits_for_the_client() {
        let (mut stream, _client) = in_handshake();
        stream.write_all(FLIGHT).await.unwrap();
        stream.flush().await.unwrap();
        assert!(writes(&stream).is_empty(), "kept, flush notwithstanding");
        read_waits(&mut stream);
        assert_eq!(writes(&stream), [(FLIGHT.to_vec(), false)]);
    }

    #[tokio::test]
    async fn tickets_wait_for_the_response_and_leave_in_its_write() {
        let (mut stream, _client) = in_handshake();
        stream.write_all(TICKETS).await.unwrap();
        stream.flush().await.unwrap();
        // tokio-rustls reads on after the client's Finished: the tickets
        // stay.
        read_waits(&mut stream);
        assert!(writes(&stream).is_empty(), "tickets are not a flight");
        stream.handshake_done();
        stream.write_all(b"HTTP/1.1 200 OK").await.unwrap();
        assert_eq!(
            writes(&stream),
            [([TICKETS, b"HTTP/1.1 200 OK"].concat(), false)]
        );
        // Then writes pass straight.
        stream.write_all(b"more").await.unwrap();
        assert_eq!(writes(&stream)[1], (b"more".to_vec(), false));
        assert!(stream.kept.is_empty() && !stream.in_handshake);
    }

    #[tokio::test]
    async fn tickets_go_to_the_kernel_with_more_to_follow_when_the_request_is_late() {
        let (mut stream, _client) = in_handshake();
        stream.write_all(TICKETS).await.unwrap();
        stream.handshake_done();
        read_waits(&mut stream);
        assert_eq!(writes(&stream), [(TICKETS.to_vec(), true)]);
        stream.write_all(b"HTTP/1.1 200 OK").await.unwrap();
        assert_eq!(writes(&stream)[1], (b"HTTP/1.1 200 OK".to_vec(), false));
    }

    #[tokio::test]
    async fn a_flight_left_at_the_handshakes_end_is_not_held_in_the_kernel() {
        // TLS 1.2's last flight (ChangeCipherSpec, Finished), still kept
        // when the handshake ends because the client's request came with
        // its Finished (False Start): the client may wait for it.
        let (mut stream, _client) = in_handshake();
        let last = [20, 3, 3, 0, 1, 1];
        stream.write_all(&last).await.unwrap();
        stream.handshake_done();
        read_waits(&mut stream);
        assert_eq!(writes(&stream), [(last.to_vec(), false)]);
    }

    #[tokio::test]
    async fn a_shutdown_sends_what_is_kept() {
        // A refused handshake: its alert is kept like any handshake write.
        let (mut stream, _client) = in_handshake();
        let alert = [21, 3, 3, 0, 2, 2, 40];
        stream.write_all(&alert).await.unwrap();
        stream.handshake_done();
        stream.shutdown().await.unwrap();
        assert_eq!(writes(&stream), [(alert.to_vec(), false)]);
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
