//! The `http-to` backends: round-robin, with failed backends backing off.
//!
//! The list can be replaced while requests are in flight
//! ([`BackendPool::replace`], on SIGHUP): each request reads the current list
//! once, and a backend that stays in the list keeps its health and counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::{info, warn};

use super::keepalive::IdleConnections;

use crate::config::{Backend, BackendProtocol};
use crate::limits;
use crate::stats::BackendFigures;

/// One backend and what the router has seen of it.
#[derive(Debug)]
pub struct BackendState {
    pub backend: Backend,
    requests: AtomicU64,
    failures: AtomicU64,
    health: Mutex<Health>,
    /// Keep-alive connections of an HTTP backend, ready for reuse.
    pub idle: Arc<IdleConnections>,
}

/// How a request reaches its backend.
#[derive(Debug)]
pub enum Link {
    /// A new TCP connection.
    Fresh(TcpStream),
    /// An idle keep-alive HTTP/1.1 connection.
    Reused(TcpStream),
}

#[derive(Debug, Default)]
struct Health {
    /// Failures in a row; 0 when the backend is in rotation.
    failures_in_a_row: u32,
    /// While set and in the future, the backend is skipped.
    retry_at: Option<Instant>,
}

/// Why no backend could take a request, one line per backend tried.
#[derive(Debug)]
pub struct NoBackend {
    pub attempts: Vec<String>,
}

#[derive(Debug)]
pub struct BackendPool {
    current: RwLock<Arc<Backends>>,
    /// Round-robin position, kept across replacements.
    next: AtomicUsize,
}

/// One version of the backend list.
#[derive(Debug)]
struct Backends {
    states: Vec<Arc<BackendState>>,
}

/// What [`BackendPool::replace`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Backends in both lists, whose health and counters carried over.
    pub kept: usize,
}

impl BackendPool {
    pub fn new(backends: &[Backend]) -> Self {
        Self {
            current: RwLock::new(Arc::new(Backends {
                states: backends
                    .iter()
                    .map(|backend| Arc::new(BackendState::new(backend.clone())))
                    .collect(),
            })),
            next: AtomicUsize::new(0),
        }
    }

    fn current(&self) -> Arc<Backends> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Arc::clone(&current)
    }

    /// Serves `backends` from the next request on. A backend present before
    /// (same name, address and protocol) keeps its state: a backend in
    /// back-off stays out of rotation, and its counters go on. Requests in
    /// flight finish with the backend they already have.
    pub fn replace(&self, backends: &[Backend]) -> PoolChange {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut old: Vec<Option<&Arc<BackendState>>> = current.states.iter().map(Some).collect();
        let mut change = PoolChange::default();
        let states = backends
            .iter()
            .map(|backend| {
                let found = old
                    .iter_mut()
                    .find(|state| state.is_some_and(|state| state.backend == *backend))
                    .and_then(Option::take);
                match found {
                    Some(state) => {
                        change.kept += 1;
                        Arc::clone(state)
                    }
                    None => {
                        change.added.push(backend.name.clone());
                        Arc::new(BackendState::new(backend.clone()))
                    }
                }
            })
            .collect();
        change.removed = old
            .into_iter()
            .flatten()
            .map(|state| state.backend.name.clone())
            .collect();
        *current = Arc::new(Backends { states });
        change
    }

    /// Reaches the next backend in turn, over one of its idle keep-alive
    /// connections when it has one, else over a new connection. Backends in
    /// back-off are skipped while any other is available; when every
    /// backend is backing off they are all tried anyway, so recovery is
    /// noticed without waiting.
    pub async fn connect(&self) -> Result<(Arc<BackendState>, Link), NoBackend> {
        let backends = self.current();
        let states = &backends.states;
        let count = states.len();
        let start = self.next.fetch_add(1, Relaxed);
        let now = Instant::now();
        // The usual case, without sorting the list: the backend whose turn
        // it is is up and has a connection parked.
        if let Some(state) = states.get(start % count.max(1)) {
            if let Some(reused) = state.available(now).then(|| state.reuse()).flatten() {
                return Ok(reused);
            }
        }
        let (available, backing_off): (Vec<&Arc<BackendState>>, Vec<&Arc<BackendState>>) = (0
            ..count)
            .map(|offset| &states[(start + offset) % count])
            .partition(|state| state.available(now));
        let mut attempts = Vec::new();
        for state in available.into_iter().chain(backing_off) {
            if let Some(reused) = state.reuse() {
                return Ok(reused);
            }
            match state.connect().await {
                Ok(stream) => {
                    state.requests.fetch_add(1, Relaxed);
                    return Ok((Arc::clone(state), Link::Fresh(stream)));
                }
                Err(error) => attempts.push(format!("{}: {error}", state.backend.name)),
            }
        }
        Err(NoBackend { attempts })
    }

    /// The current backends, in configuration order.
    pub fn backends(&self) -> Vec<Backend> {
        self.current()
            .states
            .iter()
            .map(|state| state.backend.clone())
            .collect()
    }

    pub fn figures(&self) -> Vec<BackendFigures> {
        let now = Instant::now();
        self.current()
            .states
            .iter()
            .map(|state| BackendFigures {
                name: state.backend.name.clone(),
                protocol: match state.backend.protocol {
                    BackendProtocol::Uwsgi => "uwsgi",
                    BackendProtocol::Http => "http",
                },
                requests: state.requests.load(Relaxed),
                failures: state.failures.load(Relaxed),
                down: !state.available(now),
                idle: state.idle.len() as u64,
            })
            .collect()
    }
}

impl BackendState {
    fn new(backend: Backend) -> Self {
        Self {
            backend,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
            idle: Arc::default(),
        }
    }

    /// A parked connection to this backend, counted as a request to it.
    fn reuse(self: &Arc<Self>) -> Option<(Arc<Self>, Link)> {
        let stream = self.idle.take()?;
        self.requests.fetch_add(1, Relaxed);
        Some((Arc::clone(self), Link::Reused(stream)))
    }

    fn available(&self, now: Instant) -> bool {
        let health = self
            .health
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        health.retry_at.is_none_or(|at| at <= now)
    }

    /// A new TCP connection to the backend; a failure takes the backend out
    /// of rotation for a while.
    pub async fn connect(&self) -> Result<TcpStream, String> {
        let addr = self.backend.addr;
        let connected =
            tokio::time::timeout(limits::BACKEND_CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let error = match connected {
            Ok(Ok(stream)) => {
                // Requests are small writes followed by waiting for an answer.
                let _ = stream.set_nodelay(true);
                self.succeeded();
                return Ok(stream);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!(
                "no connection within {}s",
                limits::BACKEND_CONNECT_TIMEOUT.as_secs()
            ),
        };
        self.failed(&error);
        Err(error)
    }

    fn succeeded(&self) {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if health.failures_in_a_row > 0 {
            info!(backend = %self.backend.name, "backend is back in rotation");
        }
        *health = Health::default();
    }

    /// Takes the backend out of rotation for a back-off that doubles with
    /// every failure in a row, from BACKEND_RETRY_MIN to BACKEND_RETRY_MAX.
    fn failed(&self, error: &str) {
        self.failures.fetch_add(1, Relaxed);
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let exponent = health.failures_in_a_row.min(16);
        let backoff = limits::BACKEND_RETRY_MIN
            .saturating_mul(1 << exponent)
            .min(limits::BACKEND_RETRY_MAX);
        health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
        health.retry_at = Some(Instant::now() + backoff);
        warn!(
            backend = %self.backend.name,
            %error,
            retry_in_ms = backoff.as_millis() as u64,
            "backend unreachable; taken out of rotation"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn backend(addr: SocketAddr) -> Backend {
        Backend {
            name: addr.to_string(),
            addr,
            protocol: BackendProtocol::Uwsgi,
        }
    }

    /// An address that refuses connections: a port that was just released.
    fn refusing() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn round_robin_and_failover() {
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = refusing();
        let pool = BackendPool::new(&[
            backend(a.local_addr().unwrap()),
            backend(dead),
            backend(b.local_addr().unwrap()),
        ]);
        let mut chosen = Vec::new();
        for _ in 0..6 {
            let (state, _stream) = pool.connect().await.unwrap();
            chosen.push(state.backend.addr);
        }
        assert!(!chosen.contains(&dead));
        assert!(chosen.contains(&a.local_addr().unwrap()));
        assert!(chosen.contains(&b.local_addr().unwrap()));
        let figures = pool.figures();
        assert!(figures[1].down);
        assert_eq!(
            figures[1].failures, 1,
            "a backend in back-off is not retried"
        );
    }

    #[tokio::test]
    async fn none_up_names_every_attempt() {
        let pool = BackendPool::new(&[backend(refusing()), backend(refusing())]);
        let error = pool.connect().await.unwrap_err();
        assert_eq!(error.attempts.len(), 2);
    }

    #[tokio::test]
    async fn a_replaced_list_keeps_the_state_of_backends_that_stay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = backend(listener.local_addr().unwrap());
        let dead = backend(refusing());
        let pool = BackendPool::new(std::slice::from_ref(&dead));
        assert!(pool.connect().await.is_err());
        assert!(pool.figures()[0].down);

        let change = pool.replace(&[up.clone(), dead.clone()]);
        assert_eq!(change.added, [up.name.as_str()]);
        assert!(change.removed.is_empty());
        assert_eq!(change.kept, 1);
        assert_eq!(pool.backends(), [up.clone(), dead.clone()]);
        let figures = pool.figures();
        assert!(!figures[0].down);
        assert!(figures[1].down, "the dead backend is still backing off");
        assert_eq!(figures[1].failures, 1);
        for _ in 0..3 {
            let (state, _stream) = pool.connect().await.unwrap();
            assert_eq!(state.backend, up);
        }

        let change = pool.replace(std::slice::from_ref(&up));
        assert_eq!(change.removed, [dead.name.as_str()]);
        assert_eq!(pool.figures()[0].requests, 3);
        assert_eq!(pool.replace(&[]).removed, [up.name.as_str()]);
        assert!(pool.connect().await.unwrap_err().attempts.is_empty());
    }
}
