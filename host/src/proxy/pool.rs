//! The `http-to` backends: round-robin, with failed backends backing off.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::{info, warn};

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
    backends: Vec<BackendState>,
    next: AtomicUsize,
}

impl BackendPool {
    pub fn new(backends: &[Backend]) -> Self {
        Self {
            backends: backends
                .iter()
                .map(|backend| BackendState {
                    backend: backend.clone(),
                    requests: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    health: Mutex::new(Health::default()),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to the next backend in turn. Backends in back-off are skipped
    /// while any other is available; when every backend is backing off they
    /// are all tried anyway, so recovery is noticed without waiting.
    pub async fn connect(&self) -> Result<(&BackendState, TcpStream), NoBackend> {
        let count = self.backends.len();
        let start = self.next.fetch_add(1, Relaxed);
        let now = Instant::now();
        let (available, backing_off): (Vec<&BackendState>, Vec<&BackendState>) = (0..count)
            .map(|offset| &self.backends[(start + offset) % count])
            .partition(|state| state.available(now));
        let mut attempts = Vec::new();
        for state in available.into_iter().chain(backing_off) {
            match state.connect().await {
                Ok(stream) => return Ok((state, stream)),
                Err(error) => attempts.push(format!("{}: {error}", state.backend.name)),
            }
        }
        Err(NoBackend { attempts })
    }

    pub fn figures(&self) -> Vec<BackendFigures> {
        let now = Instant::now();
        self.backends
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
            })
            .collect()
    }
}

impl BackendState {
    fn available(&self, now: Instant) -> bool {
        let health = self
            .health
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        health.retry_at.is_none_or(|at| at <= now)
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let addr = self.backend.addr;
        let connected =
            tokio::time::timeout(limits::BACKEND_CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let error = match connected {
            Ok(Ok(stream)) => {
                // Requests are small writes followed by waiting for an answer.
                let _ = stream.set_nodelay(true);
                self.succeeded();
                self.requests.fetch_add(1, Relaxed);
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
}
