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
//! socket (`proxy::client_stream`, through a [`WriteHold`]) accepts no
//! bytes until those writes are done. Each write ends within
//! `cache-redis-timeout`, answered or not, so nothing waits longer than
//! that.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

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

/// What holds a connection's outgoing bytes back: its [`SessionWrites`]
/// while any is pending. Without writes to wait for (no Redis tier), or once
/// they have settled, it holds nothing and costs nothing.
#[derive(Debug, Default)]
pub struct WriteHold(Option<SessionWrites>);

impl WriteHold {
    pub fn new(writes: Option<SessionWrites>) -> Self {
        Self(writes)
    }

    /// Ready once bytes may go out.
    pub fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(writes) = &self.0 else {
            return Poll::Ready(());
        };
        std::task::ready!(writes.poll_done(cx));
        // Once the handshake is over and its writes have ended, the rest
        // of the connection's bytes pass without a look.
        if writes.settled() {
            self.0 = None;
        }
        Poll::Ready(())
    }

    /// Whether it holds nothing any more.
    #[cfg(test)]
    pub fn is_released(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn the_hold_waits_for_the_writes_registered_during_the_scope() {
        let writes = SessionWrites::default();
        let mut hold = WriteHold::new(Some(writes.clone()));
        let (done, waiter) = oneshot::channel();
        assert!(writes.scope(async { register(waiter) }).await);
        assert!(
            !register(oneshot::channel().1),
            "no scope, nowhere to register"
        );
        let pending = poll_fn(|cx| Poll::Ready(hold.poll_release(cx).is_pending())).await;
        assert!(pending, "released before the session write ended");
        done.send(()).unwrap();
        poll_fn(|cx| hold.poll_release(cx)).await;
        assert!(hold.is_released(), "settled: later bytes pass unchecked");
    }

    #[tokio::test]
    async fn without_writes_nothing_is_held() {
        let mut hold = WriteHold::new(None);
        poll_fn(|cx| hold.poll_release(cx)).await;
        assert!(hold.is_released());
    }
}
