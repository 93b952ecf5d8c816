//! Futures polled only once something they wait for has happened.
//!
//! `tokio::select!` polls every branch each time its task wakes. A client
//! connection's task wakes a few times per request, for its sockets; beside
//! the connection wait its idle check's timer and the shutdown signal,
//! which almost never fire. Polling those each time (a timer's state, a
//! watch channel's version and waker) cost more per proxied request than
//! parsing the request head's fields. A [`WakeGate`] gives such futures a
//! waker of their own: a [`Gated`] future is polled again only when that
//! waker has fired since its last poll, and otherwise costs a load and a
//! waker check.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The waker that the futures behind a gate are polled with: one per
/// connection, for every watch of it.
#[derive(Debug)]
pub struct WakeGate {
    gate: Arc<Gate>,
    waker: Waker,
}

#[derive(Debug, Default)]
struct Gate {
    /// How many times the gated futures' waker fired.
    wakes: AtomicU64,
    /// The task that polls them.
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Release);
        self.task.wake();
    }
}

impl Default for WakeGate {
    fn default() -> Self {
        let gate = Arc::new(Gate::default());
        Self {
            waker: Waker::from(Arc::clone(&gate)),
            gate,
        }
    }
}

impl WakeGate {
    /// `future`, polled the first time and then only after a wake of the
    /// gate (by this future or another behind it).
    pub fn watch<F: Future>(&self, future: F) -> Gated<'_, F> {
        Gated {
            gate: self,
            seen: None,
            inner: future,
        }
    }
}

pin_project_lite::pin_project! {
    /// A future behind a [`WakeGate`]; `seen` is the gate's wake count
    /// when `inner` was last polled.
    #[derive(Debug)]
    pub struct Gated<'g, F> {
        gate: &'g WakeGate,
        seen: Option<u64>,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Gated<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.gate.gate.task.register(cx.waker());
        // Read after registering: a wake from now on reaches the task, so
        // none is missed between this check and the inner poll.
        let wakes = this.gate.gate.wakes.load(Ordering::Acquire);
        if *this.seen == Some(wakes) {
            return Poll::Pending;
        }
        *this.seen = Some(wakes);
        this.inner.poll(&mut Context::from_waker(&this.gate.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A future that counts its polls and is ready once `ready` says so,
    /// keeping the waker it was last given.
    struct Probe<'a> {
        polls: &'a AtomicUsize,
        ready: &'a std::sync::Mutex<(bool, Option<Waker>)>,
    }

    impl Future for Probe<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            let mut state = self.ready.lock().unwrap();
            if state.0 {
                return Poll::Ready(());
            }
            state.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn a_gated_future_is_polled_again_only_after_its_wake() {
        let gate = WakeGate::default();
        let polls = AtomicUsize::new(0);
        let ready = std::sync::Mutex::new((false, None::<Waker>));
        let mut gated = std::pin::pin!(gate.watch(Probe {
            polls: &polls,
            ready: &ready,
        }));
        let task = Arc::new(Counter::default());
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);

        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "the first poll goes through"
        );
        // The task woke for something else: the probe is not polled.
        for _ in 0..3 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);

        // The probe's own event: its waker wakes the task, and the next
        // poll reaches it.
        let waker = {
            let mut state = ready.lock().unwrap();
            state.0 = true;
            state.1.take().expect("the probe kept a waker")
        };
        waker.wake();
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "the task was woken");
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn every_future_behind_a_gate_sees_its_wakes() {
        let gate = WakeGate::default();
        let (first_polls, second_polls) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let first_ready = std::sync::Mutex::new((false, None::<Waker>));
        let second_ready = std::sync::Mutex::new((false, None::<Waker>));
        let mut first = std::pin::pin!(gate.watch(Probe {
            polls: &first_polls,
            ready: &first_ready,
        }));
        let mut second = std::pin::pin!(gate.watch(Probe {
            polls: &second_polls,
            ready: &second_ready,
        }));
        let task_waker = Waker::from(Arc::new(Counter::default()));
        let mut cx = Context::from_waker(&task_waker);
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        // The second's event: the first, polled first after the wake, must
        // not use it up.
        second_ready.lock().unwrap().0 = true;
        let waker = second_ready.lock().unwrap().1.take().unwrap();
        waker.wake();
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_ready());
        assert_eq!(second_polls.load(Ordering::Relaxed), 2);
    }

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}
