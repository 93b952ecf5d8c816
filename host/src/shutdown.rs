//! Graceful shutdown: a signal fans out to every accept loop and connection,
//! and the router waits, up to a deadline, for connections to finish.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Tells every holder of a [`Shutdown`] to stop.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// Cloned into each task that must stop on shutdown.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown has been triggered (or the trigger is gone).
    pub async fn requested(&mut self) {
        // An error means the trigger was dropped: treat that as shutdown too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }
}

/// A [`Shutdown`] that SIGTERM or SIGINT triggers. Call inside a runtime.
pub fn on_termination_signal() -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        match termination_signal().await {
            Ok(signal) => tracing::info!(signal, "termination requested"),
            Err(error) => tracing::warn!(%error, "cannot watch for signals; stopping"),
        }
        crate::systemd::stopping();
        trigger.trigger();
    });
    shutdown
}

/// The multi-threaded runtime a master or lone router process runs on.
pub fn runtime(thread_name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(thread_name)
        .build()
        .context("cannot start the async runtime")
}

/// The single-threaded runtime a worker process runs on. Workers are the
/// unit of parallelism (`http-processes`, one per core as with uWSGI's and
/// nginx's workers): a second thread per worker would only add work
/// stealing and cross-thread wake-ups between threads that compete for the
/// same cores.
pub fn worker_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on SIGTERM or SIGINT and says which.
pub async fn termination_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// SIGHUP, as a stream of reload requests. Registering replaces the default
/// action (terminate), so call it before announcing readiness: a SIGHUP that
/// arrives earlier would otherwise kill the process.
pub fn hangups() -> std::io::Result<Hangups> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok(Hangups(signal(SignalKind::hangup())?))
}

/// Receives SIGHUPs; several arriving close together may be merged into one.
#[derive(Debug)]
pub struct Hangups(tokio::signal::unix::Signal);

impl Hangups {
    /// Resolves at the next SIGHUP (`None` if signals can no longer arrive).
    pub async fn next(&mut self) -> Option<()> {
        self.0.recv().await
    }
}

/// Counts live connection tasks: each holds a [`Tracked`] token, and
/// [`Tracker::drained`] resolves once every token is dropped.
#[derive(Debug)]
pub struct Tracker {
    tx: mpsc::Sender<()>,
    rx: mpsc::Receiver<()>,
}

/// Held by one connection task for as long as it runs.
#[derive(Clone, Debug)]
pub struct Tracked {
    _tx: mpsc::Sender<()>,
}

impl Default for Tracker {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(1);
        Self { tx, rx }
    }
}

impl Tracker {
    pub fn track(&self) -> Tracked {
        Tracked {
            _tx: self.tx.clone(),
        }
    }

    /// Waits until every token is gone or `deadline` passes; true if drained.
    pub async fn drained(self, deadline: Duration) -> bool {
        let Tracker { tx, mut rx } = self;
        drop(tx);
        // Nothing is ever sent: recv returns None once all senders are dropped.
        tokio::time::timeout(deadline, rx.recv()).await.is_ok()
    }
}

/// Ignores SIGHUP until [`hangups`] (or tokio) installs a handler. A
/// process that reloads on SIGHUP must not die of one that arrives while it
/// is still starting. An ignored disposition is inherited across `exec`,
/// but a master that watches SIGHUP has a handler, which `exec` resets to
/// the default: its workers start unprotected, and the master passes
/// SIGHUP on only to workers that are ready (see `master`).
pub fn ignore_hangups_for_now() {
    crate::sys::process::ignore_hangups();
}
