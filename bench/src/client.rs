//! One simulated client: connection after connection until the deadline
//! (or until the clients together completed `--handshakes`), each a TCP
//! connect, a TLS handshake (resumed when the client has a session to offer
//! and the server takes it), then the requests.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::http::{self, Conn, HttpError};
use super::options::Options;
use super::progress::Live;
use super::stats::{ErrorKind, Stats};

/// How long a finished connection waits for the server's close, after
/// its own close_notify, before it is dropped.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What all clients of a run share.
pub struct Run {
    pub targets: Vec<SocketAddr>,
    server_name: ServerName<'static>,
    path: String,
    requests_per_connection: u32,
    /// The request, keep-alive and closing forms, written once.
    request_keep_alive: Vec<u8>,
    request_close: Vec<u8>,
    timeout: Duration,
    deadline: Instant,
    /// `--handshakes`: the run ends once this many completed.
    handshake_limit: Option<u64>,
    handshakes: AtomicU64,
    /// Set once `handshake_limit` is reached; every client watches it.
    enough: watch::Sender<bool>,
    pacer: Option<Pacer>,
    live: Arc<Live>,
    /// The round-robin position over `targets`, shared as a TCP balancer's.
    next_target: AtomicUsize,
}

impl Run {
    pub fn new(
        targets: Vec<SocketAddr>,
        options: &Options,
        deadline: Instant,
        live: Arc<Live>,
    ) -> anyhow::Result<Run> {
        let server_name =
            ServerName::try_from(options.settings.server_name.clone()).with_context(|| {
                format!(
                    "`{}` is not a DNS name or IP address",
                    options.settings.server_name
                )
            })?;
        let host = options.settings.server_name.as_str();
        Ok(Run {
            targets,
            server_name,
            path: options.settings.path.clone(),
            requests_per_connection: options.settings.requests_per_connection,
            request_keep_alive: http::get_request(&options.settings.path, host, false),
            request_close: http::get_request(&options.settings.path, host, true),
            timeout: options.timeout,
            deadline,
            handshake_limit: options.settings.handshakes,
            handshakes: AtomicU64::new(0),
            enough: watch::Sender::new(false),
            pacer: options
                .settings
                .rate
                .map(|rate| Pacer::new(rate, Instant::now())),
            live,
            next_target: AtomicUsize::new(0),
        })
    }

    fn next_target(&self) -> usize {
        self.next_target.fetch_add(1, Ordering::Relaxed) % self.targets.len()
    }

    /// Counts a completed handshake; the one that reaches `--handshakes`
    /// ends the run.
    fn handshake_completed(&self) {
        let done = self.handshakes.fetch_add(1, Ordering::Relaxed) + 1;
        if self.handshake_limit.is_some_and(|limit| done >= limit) {
            self.enough.send_replace(true);
        }
    }

    /// Resolves once `--handshakes` were completed (never without it).
    async fn enough(&self) {
        let mut enough = self.enough.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail here.
        let _ = enough.wait_for(|done| *done).await;
    }
}

/// Caps new connections per second across all clients. Each connection
/// reserves the next free slot; a slot in the past is moved to now, so
/// idle time is never saved up into a burst above the cap.
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(per_second: u32, start: Instant) -> Pacer {
        Pacer {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(start),
        }
    }

    /// The instant at which the caller may connect.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (*next).max(now);
        *next = slot + self.interval;
        slot
    }
}

/// Runs one client until the deadline (or `--handshakes`) and returns
/// what it measured.
pub async fn client(run: Arc<Run>, config: Arc<ClientConfig>) -> Stats {
    let connector = TlsConnector::from(config);
    let mut stats = Stats::new(run.targets.len());
    let mut handshaken = false;
    loop {
        let now = Instant::now();
        if now >= run.deadline || *run.enough.borrow() {
            break;
        }
        if let Some(pacer) = &run.pacer {
            let at = pacer.reserve(now);
            if at >= run.deadline {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        let target = run.next_target();
        // Work still in flight at the deadline is dropped, neither counted
        // nor an error, so that one slow request cannot stretch the run
        // (and shrink every rate) by up to `--timeout`. The same at
        // `--handshakes`.
        tokio::select! {
            completed = connection(&run, &connector, target, handshaken, &mut stats) => {
                handshaken |= completed;
            }
            () = tokio::time::sleep_until(run.deadline.into()) => break,
            () = run.enough() => break,
        }
    }
    stats
}

/// One connection; returns whether its handshake completed.
async fn connection(
    run: &Run,
    connector: &TlsConnector,
    target: usize,
    after_first: bool,
    stats: &mut Stats,
) -> bool {
    let addr = run.targets[target];
    let started = Instant::now();
    let tls = match timeout(run.timeout, handshake(run, connector, addr)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((kind, error))) => {
            fail(run, stats, target, kind, || format!("{addr}: {error}"));
            return false;
        }
        Err(_) => {
            fail(run, stats, target, ErrorKind::Timeout, || {
                format!("{addr}: connect + handshake took over {:?}", run.timeout)
            });
            return false;
        }
    };
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    stats.handshake(target, resumed, after_first, started.elapsed());
    Live::add(if resumed {
        &run.live.resumed
    } else {
        &run.live.full
    });
    run.handshake_completed();

    let mut conn = Conn::new(tls);
    let requests = run.requests_per_connection;
    for i in 0..requests {
        // A long keep-alive connection stops with the run.
        if i > 0 && Instant::now() >= run.deadline {
            break;
        }
        let request = if i + 1 == requests {
            &run.request_close
        } else {
            &run.request_keep_alive
        };
        let sent = Instant::now();
        match timeout(run.timeout, conn.exchange(request)).await {
            Ok(Ok(response)) => {
                stats.request(sent.elapsed());
                Live::add(&run.live.requests);
                if !(200..400).contains(&response.status) {
                    fail(run, stats, target, ErrorKind::Http, || {
                        format!("{addr}: status {} for GET {}", response.status, run.path)
                    });
                }
                if !response.keep_alive {
                    break;
                }
            }
            Ok(Err(error)) => {
                let kind = http_error_kind(&error);
                fail(run, stats, target, kind, || {
                    format!("{addr}: GET {}: {error}", run.path)
                });
                return true;
            }
            Err(_) => {
                fail(run, stats, target, ErrorKind::Timeout, || {
                    format!("{addr}: GET {} took over {:?}", run.path, run.timeout)
                });
                return true;
            }
        }
    }
    close(conn.into_inner(), requests == 0).await;
    true
}

/// TCP connect and TLS handshake.
async fn handshake(
    run: &Run,
    connector: &TlsConnector,
    addr: SocketAddr,
) -> Result<TlsStream<TcpStream>, (ErrorKind, io::Error)> {
    let tcp = connect(addr).await?;
    connector
        .connect(run.server_name.clone(), tcp)
        .await
        .map_err(|e| (ErrorKind::Tls, e))
}

/// TCP connect, with TCP_NODELAY.
pub(super) async fn connect(addr: SocketAddr) -> Result<TcpStream, (ErrorKind, io::Error)> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| (ErrorKind::Connect, e))?;
    // Without it Nagle holds the request written right after a TLS 1.2
    // abbreviated handshake until the server's delayed ACK: ~40 ms, which
    // would cap each client at ~25 resumptions a second.
    tcp.set_nodelay(true).map_err(|e| (ErrorKind::Other, e))?;
    Ok(tcp)
}

/// Ends a connection politely: close_notify, then wait briefly for the
/// server's close. With no request sent this is also what reads the TLS 1.3
/// tickets the server sent after the handshake, so the next connection has
/// one to offer.
pub(super) async fn close(mut tls: TlsStream<TcpStream>, drain: bool) {
    let _ = timeout(CLOSE_WAIT, async {
        let _ = tls.shutdown().await;
        if drain {
            let mut sink = [0u8; 4096];
            while let Ok(n) = tls.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
    })
    .await;
}

fn fail(
    run: &Run,
    stats: &mut Stats,
    target: usize,
    kind: ErrorKind,
    message: impl FnOnce() -> String,
) {
    stats.error(target, kind, message);
    Live::add(&run.live.errors);
}

fn http_error_kind(error: &HttpError) -> ErrorKind {
    match error {
        HttpError::Io(io) if is_tls_error(io) => ErrorKind::Tls,
        _ => ErrorKind::Other,
    }
}

/// tokio-rustls reports TLS failures (alerts, bad records) as io errors
/// wrapping a `rustls::Error`.
fn is_tls_error(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spaces_connections_and_saves_up_no_burst() {
        let start = Instant::now();
        let pacer = Pacer::new(10, start);
        let slots: Vec<Instant> = (0..3).map(|_| pacer.reserve(start)).collect();
        assert_eq!(slots[0], start);
        assert_eq!(slots[1] - slots[0], Duration::from_millis(100));
        assert_eq!(slots[2] - slots[1], Duration::from_millis(100));
        // After a pause, the next slot is now, not a backlog of past slots.
        let later = start + Duration::from_secs(5);
        assert_eq!(pacer.reserve(later), later);
        assert_eq!(pacer.reserve(later), later + Duration::from_millis(100));
    }

    #[test]
    fn round_robin_over_targets() {
        let run = Run::new(
            vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            &Options::default(),
            Instant::now(),
            Arc::default(),
        )
        .unwrap();
        let order: Vec<usize> = (0..5).map(|_| run.next_target()).collect();
        assert_eq!(order, [0, 1, 0, 1, 0]);
    }

    #[tokio::test]
    async fn the_run_ends_at_the_handshake_limit() {
        let mut options = Options::default();
        options.settings.handshakes = Some(3);
        let run = Run::new(
            vec!["127.0.0.1:1".parse().unwrap()],
            &options,
            Instant::now() + Duration::from_secs(3600),
            Arc::default(),
        )
        .unwrap();
        run.handshake_completed();
        run.handshake_completed();
        assert!(!*run.enough.borrow());
        run.handshake_completed();
        // Resolves at once, also for a client that starts watching late.
        timeout(Duration::from_secs(60), run.enough())
            .await
            .expect("the limit ends the run");
    }

    #[test]
    fn tls_errors_are_told_from_others() {
        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(http_error_kind(&HttpError::Io(tls)), ErrorKind::Tls);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(http_error_kind(&HttpError::Io(reset)), ErrorKind::Other);
        assert_eq!(http_error_kind(&HttpError::Truncated), ErrorKind::Other);
    }
}
