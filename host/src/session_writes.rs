//! Holding a connection's bytes back until the sessions its handshake
//! stored have reached Redis.
//!
//! rustls stores a session from inside its handshake (a synchronous
//! `put`), and the very next bytes it writes (the server's Finished in
//! TLS 1.2, the NewSessionTicket in TLS 1.3) are what lets the client
//! resume. If those bytes left first, a client reconnecting at once
//! through the balancer could reach another router before Redis holds the
//! session, and miss. So while a connection's handshake runs, the session
//! store registers each write it started in the connection's
//! [`SessionWrites`] (found through a task-local), and the connection's
//! socket, wrapped in [`Held`], accepts no bytes until those writes are
//! done. Each write ends within `cache-redis-timeout`, answered or not, so
//! nothing waits longer than that.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

tokio::task_local! {
    static CURRENT: SessionWrites;
}

/// The writes to Redis a connection's handshake started and has not seen
/// end. Cheap to clone; one per connection, only with the Redis tier on.
#[derive(Debug, Clone, Default)]
pub struct SessionWrites(Arc<Pending>);

#[derive(Debug, Default)]
struct Pending {
    writes: Mutex<Vec<oneshot::Receiver<()>>>,
    /// The handshake is over: nothing registers any more.
    closed: AtomicBool,
}

impl SessionWrites {
    /// Runs `future` (a handshake) with this set as the one
    /// [`register`] adds to.
    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        let output = CURRENT.scope(self.clone(), future).await;
        self.0.closed.store(true, Ordering::Release);
        output
    }

    /// Whether no write can be registered any more and none is pending.
    fn settled(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
            && self
                .0
                .writes
                .lock()
                .map_or(true, |pending| pending.is_empty())
    }

    /// Ready once every registered write has ended.
    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Ok(mut pending) = self.0.writes.lock() else {
            return Poll::Ready(());
        };
        // A dropped sender (the write's task ended without a word) ends
        // the write too.
        pending.retain_mut(|write| Pin::new(write).poll(cx).is_pending());
        if pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Registers `write` with the connection whose handshake is running, if
/// any holds a [`SessionWrites`]; returns whether one did.
pub fn register(write: oneshot::Receiver<()>) -> bool {
    CURRENT
        .try_with(|writes| {
            if let Ok(mut pending) = writes.0.writes.lock() {
                pending.push(write);
            }
        })
        .is_ok()
}

/// A connection's socket that holds outgoing bytes while its
/// [`SessionWrites`] are pending; reads pass through. Without writes to
/// wait for (no Redis tier) it is a plain pass-through.
#[derive(Debug)]
pub struct Held<S> {
    inner: S,
    writes: Option<SessionWrites>,
}

impl<S> Held<S> {
    pub fn new(inner: S, writes: Option<SessionWrites>) -> Held<S> {
        Held { inner, writes }
    }

    fn poll_writes_done(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(writes) = &self.writes else {
            return Poll::Ready(());
        };
        std::task::ready!(writes.poll_done(cx));
        // Once the handshake is over and its writes have ended, the rest
        // of the connection's bytes pass without a look.
        if writes.settled() {
            self.writes = None;
        }
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_writes_done(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_writes_done(cx));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_writes_done(cx));
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_writes_done(cx));
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_wait_for_the_writes_registered_during_the_scope() {
        let (near, mut far) = tokio::io::duplex(64);
        let writes = SessionWrites::default();
        let mut held = Held::new(near, Some(writes.clone()));
        let (done, waiter) = oneshot::channel();
        assert!(writes.scope(async { register(waiter) }).await);
        assert!(
            !register(oneshot::channel().1),
            "no scope, nowhere to register"
        );
        let writer = tokio::spawn(async move {
            held.write_all(b"finished").await.unwrap();
            held
        });
        tokio::task::yield_now().await;
        let mut buf = [0u8; 8];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut buf)).await;
        assert!(early.is_err(), "bytes left before the session write ended");
        done.send(()).unwrap();
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"finished");
        let held = writer.await.unwrap();
        assert!(held.writes.is_none(), "settled: later bytes pass unchecked");
    }

    #[tokio::test]
    async fn without_writes_bytes_pass() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut held = Held::new(near, None);
        held.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 1];
        far.read_exact(&mut buf).await.unwrap();
    }
}
