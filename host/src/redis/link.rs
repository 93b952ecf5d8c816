//! The process's one connection to Redis, and whether it is up.
//!
//! One multiplexed connection per process (a cluster connection keeps one
//! per master), pipelining every connection's commands: a thousand
//! handshakes at once are a thousand commands on one socket, and a Redis
//! coming back after an outage sees one reconnection per process, not a
//! storm. A prober task says whether the link is up: while it is down,
//! handshakes do not even try Redis (they would only wait out the
//! timeout); the prober reconnects with back-off and brings the tier back
//! as soon as a PING is answered.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use std::time::Duration;
use tokio::sync::Notify;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tracing::{info, warn};

use crate::config::redis::Target;
use crate::metrics::redis::{Event, RedisCounters};
use crate::shutdown::Shutdown;

/// How long a connection attempt or a probe may take: longer than a
/// handshake's command, since nobody waits on it.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Probes while down: often, so that the tier is back well within 2 s of
/// Redis.
const PROBE_DOWN_EVERY: Duration = Duration::from_millis(200);
/// Probes while up: a silent server is noticed even without traffic.
const PROBE_UP_EVERY: Duration = Duration::from_secs(1);
/// Commands in a row without an answer in time that take the link down:
/// one slow answer (a busy machine, a Redis fork for a snapshot) costs
/// that handshake its resumption, not every handshake until the next
/// probe.
const TIMEOUTS_FOR_DOWN: u32 = 3;

/// Either kind of connection, behind one interface.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The link and its state, shared by the process's connections.
pub struct Link {
    target: Target,
    connection: RwLock<Option<Connection>>,
    up: AtomicBool,
    timeouts_in_a_row: AtomicU32,
    /// Wakes the prober when a command takes the link down, so that a
    /// passing slowness costs one PING, not a probe period.
    went_down: Notify,
    counters: &'static RedisCounters,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("target", &self.target)
            .field("up", &self.up.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to `target`, down until the prober, started here on the
    /// current runtime, has reached it.
    pub fn start(
        target: Target,
        counters: &'static RedisCounters,
        shutdown: &Shutdown,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            target,
            connection: RwLock::new(None),
            up: AtomicBool::new(false),
            timeouts_in_a_row: AtomicU32::new(0),
            went_down: Notify::new(),
            counters,
        });
        tokio::spawn(Arc::clone(&link).probe(shutdown.clone()));
        link
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// The connection, when up.
    pub fn connection(&self) -> Option<Connection> {
        if !self.is_up() {
            return None;
        }
        self.connection.read().ok()?.clone()
    }

    /// A command failed with `error`: if it says the link is gone, the
    /// tier stops trying until the prober has it back.
    pub fn failed(&self, error: &RedisError) -> Event {
        let event = classify(error);
        if matches!(event, Event::Timeout | Event::Connection) {
            self.set_up(false, Some(error));
        }
        event
    }

    /// A command got no answer in time.
    pub fn timed_out(&self) {
        if self.timeouts_in_a_row.fetch_add(1, Relaxed) + 1 >= TIMEOUTS_FOR_DOWN {
            self.set_up(false, None);
        }
    }

    /// A command was answered.
    pub fn answered(&self) {
        self.timeouts_in_a_row.store(0, Relaxed);
    }

    fn set_up(&self, up: bool, cause: Option<&RedisError>) {
        if up {
            self.timeouts_in_a_row.store(0, Relaxed);
        }
        if self.up.swap(up, Relaxed) == up {
            return;
        }
        self.counters.set_up(up);
        if !up {
            self.went_down.notify_one();
        }
        if up {
            self.counters.count(Event::Connected);
            info!(redis = %self.target, "Redis tier up");
        } else {
            match cause {
                Some(error) => warn!(redis = %self.target, %error,
                    "Redis tier down; serving from the local cache, reconnecting"),
                None => warn!(redis = %self.target,
                    "Redis tier down: no answer in time; serving from the local cache, reconnecting"),
            }
        }
    }

    async fn probe(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            let up = self.probe_once().await;
            let pause = if up { PROBE_UP_EVERY } else { PROBE_DOWN_EVERY };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // Down since the last probe said up: probe again at once.
                () = self.went_down.notified(), if up => {}
                () = shutdown.requested() => return,
            }
        }
    }

    /// Connects if needed, then PINGs; says whether the link is up.
    async fn probe_once(&self) -> bool {
        let connection = self.connection.read().ok().and_then(|c| c.clone());
        let mut connection = match connection {
            Some(connection) => connection,
            None => match tokio::time::timeout(PROBE_TIMEOUT, connect(&self.target)).await {
                Ok(Ok(connection)) => {
                    if let Ok(mut slot) = self.connection.write() {
                        *slot = Some(connection.clone());
                    }
                    connection
                }
                Ok(Err(error)) => {
                    self.set_up(false, Some(&error));
                    return false;
                }
                Err(_) => {
                    self.set_up(false, None);
                    return false;
                }
            },
        };
        let ping = redis::cmd("PING");
        match tokio::time::timeout(PROBE_TIMEOUT, ping.query_async::<String>(&mut connection)).await
        {
            Ok(Ok(_)) => {
                self.set_up(true, None);
                true
            }
            Ok(Err(error)) => {
                self.set_up(false, Some(&error));
                false
            }
            Err(_) => {
                self.set_up(false, None);
                false
            }
        }
    }
}

/// A new connection to `target`. The single-server connection manager
/// reconnects by itself on the next command after a failure; a cluster
/// connection follows its masters and slots.
async fn connect(target: &Target) -> Result<Connection, RedisError> {
    match target {
        Target::Single(url) => {
            let client = redis::Client::open(url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(PROBE_TIMEOUT))
                // The prober drives reconnection; one quick retry covers a
                // dropped idle connection.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(PROBE_DOWN_EVERY);
            Ok(Connection::Single(ConnectionManager::new_lazy_with_config(
                client, config,
            )?))
        }
        Target::Cluster(nodes) => {
            let client = redis::cluster::ClusterClient::builder(nodes.clone())
                .connection_timeout(PROBE_TIMEOUT)
                .retries(1)
                .build()?;
            Ok(Connection::Cluster(client.get_async_connection().await?))
        }
    }
}

/// What kind of failure `error` is, as counted.
fn classify(error: &RedisError) -> Event {
    if error.is_timeout() {
        Event::Timeout
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        Event::Connection
    } else if error.code() == Some("OOM") {
        Event::Full
    } else {
        Event::Reply
    }
}
