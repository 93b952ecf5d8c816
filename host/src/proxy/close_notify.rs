//! The TLS close_notify with which the router ends an HTTP/1.x connection.
//!
//! A connection the router closes after a response (the client asked for
//! `close`, an HTTP/1.0 body delimited by the close, a refused request) is
//! announced with a close_notify, so that the client knows it has the
//! whole response. Written after the response, the alert costs a second
//! write, and on loopback a second segment through both TCP stacks: a
//! connection that carries one request (a client that does not keep
//! connections alive, a health check) paid a third of its writes for it.
//! [`SealsClose`] lets the response writer seal its last bytes and the
//! alert together, so that one write carries both.
//!
//! A response whose body broke off gets no close_notify: the alert would
//! vouch for a body cut short (an HTTP/1.0 body ends with the
//! connection), so the connection just closes.

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;

use super::client_stream::{ClientStream, Transport};
use crate::limits;

/// A client stream that can seal the last bytes of a connection together
/// with the announcement that the router closes it.
pub trait SealsClose: AsyncWrite + Unpin {
    /// Seals as much of `bytes` as the stream's TLS session takes without
    /// writing to the socket, then, once all of them are taken, the
    /// close_notify; the next flush sends them in one write. Returns how
    /// many bytes were taken.
    fn seal_last(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

impl<S: Transport> SealsClose for TlsStream<ClientStream<S>> {
    fn seal_last(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let (stream, session) = self.get_mut();
        // The FIN follows the alert: the two leave together
        // (`client_stream`).
        stream.close_follows();
        let taken = if bytes.is_empty() {
            0
        } else {
            io::Write::write(&mut session.writer(), bytes)?
        };
        if taken == bytes.len() {
            // Idempotent: the shutdown that follows sends no second one.
            session.send_close_notify();
        }
        Ok(taken)
    }
}

impl<S: SealsClose + ?Sized> SealsClose for Box<S> {
    fn seal_last(&mut self, bytes: &[u8]) -> io::Result<usize> {
        (**self).seal_last(bytes)
    }
}

/// Sends `bytes` and after them the close_notify, in as few writes as the
/// TLS session's buffer allows (one for a response of up to 64 KiB).
pub async fn send_last<S: SealsClose>(stream: &mut S, mut bytes: &[u8]) -> io::Result<()> {
    let mut flushed = false;
    loop {
        let taken = stream.seal_last(bytes)?;
        if taken == 0 && !bytes.is_empty() && flushed {
            // Its buffer was emptied by the flush before: the session
            // takes nothing, ever.
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the TLS session takes no more data",
            ));
        }
        bytes = &bytes[taken..];
        stream.flush().await?;
        if bytes.is_empty() {
            return Ok(());
        }
        flushed = true;
    }
}

/// Tells the client that the router closes the connection when no
/// response carries the close_notify (idle, shutdown; or after
/// [`send_last`], when it is already out), bounded: a client that does
/// not read must not hold the connection.
pub async fn announce<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(limits::CLOSE_NOTIFY_TIMEOUT, stream.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncRead, AsyncReadExt, DuplexStream, ReadBuf};

    use super::*;

    /// A stream that counts the writes that carried bytes, and of them
    /// those told that the FIN follows.
    struct CountedWrites {
        inner: DuplexStream,
        writes: Arc<AtomicUsize>,
        before_fin: Arc<AtomicUsize>,
    }

    impl Transport for CountedWrites {
        fn poll_write_more(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let written = self.as_mut().poll_write_vectored(cx, bufs);
            if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                self.before_fin.fetch_add(1, Relaxed);
            }
            written
        }
    }

    impl AsyncRead for CountedWrites {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountedWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write(cx, buf);
            if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                self.writes.fetch_add(1, Relaxed);
            }
            written
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                self.writes.fetch_add(1, Relaxed);
            }
            written
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

    /// A TLS connection over an in-memory pipe whose server side counts
    /// its writes: (server, writes so far, of them before the FIN, client).
    async fn connected() -> (
        TlsStream<ClientStream<CountedWrites>>,
        Arc<AtomicUsize>,
        Arc<AtomicUsize>,
        tokio_rustls::client::TlsStream<DuplexStream>,
    ) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = CertificateDer::from(generated.cert.der().to_vec());
        let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let writes = Arc::new(AtomicUsize::new(0));
        let before_fin = Arc::new(AtomicUsize::new(0));
        let counted = CountedWrites {
            inner: server_end,
            writes: Arc::clone(&writes),
            before_fin: Arc::clone(&before_fin),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            acceptor.accept(ClientStream::new(Vec::new(), counted)),
            connector.connect(name, client_end)
        );
        (server.unwrap(), writes, before_fin, client.unwrap())
    }

    #[tokio::test]
    async fn the_last_bytes_and_the_close_notify_leave_in_one_write() {
        let (mut server, writes, before_fin, mut client) = connected().await;
        let before = writes.load(Relaxed);
        assert_eq!(
            before_fin.load(Relaxed),
            0,
            "the handshake's writes go at once"
        );
        send_last(
            &mut server,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )
        .await
        .unwrap();
        assert_eq!(writes.load(Relaxed) - before, 1, "one write for both");
        assert_eq!(before_fin.load(Relaxed), 1, "and it waits for the FIN");
        // The shutdown after it writes nothing more.
        announce(&mut server).await;
        assert_eq!(writes.load(Relaxed) - before, 1, "no second close_notify");
        // The client reads the response, then a clean end: the
        // close_notify (without it, rustls reports an unexpected EOF).
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert!(received.ends_with(b"\r\n\r\nok"));
    }

    #[tokio::test]
    async fn more_than_the_session_buffers_still_ends_with_the_close_notify() {
        let (mut server, _, _, mut client) = connected().await;
        let big = vec![b'x'; 200 * 1024];
        let reading = tokio::spawn(async move {
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.map(|_| received)
        });
        send_last(&mut server, &big).await.unwrap();
        drop(server);
        let received = reading.await.unwrap().expect("a clean end");
        assert_eq!(received.len(), big.len());
    }
}
