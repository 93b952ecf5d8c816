//! The Redis tier: sessions shared by a whole fleet through Redis (or
//! Valkey, or a Redis Cluster), for fleets the UDP mesh does not suit.
//!
//! The shared-memory cache stays the first tier; Redis is the second, on
//! the path that runs before rustls ([`crate::store::ContextStorage::fetch_offered`]):
//!
//! * **a new session** is written to Redis (`SET … PX lifetime`) while its
//!   handshake runs, and the connection holds back its next bytes until
//!   Redis has answered ([`crate::session_writes`]), so a client
//!   that reconnects through the balancer the instant its handshake ends
//!   finds the session on any router;
//! * **a TLS 1.2 session** the cache lacks is read (`GET`) and copied into
//!   the cache;
//! * **a TLS 1.3 ticket** lives in Redis only, never in a router's cache:
//!   every resumption takes it with `GETDEL`, so of any number of routers
//!   offered the same ticket at the same instant exactly one resumes it,
//!   the issuer included. While Redis is down, tickets stay in the cache
//!   of the router that issued them (and the mesh, when on, pulls them from
//!   there), which keeps one holder per ticket either way.
//!
//! Nothing in Redis tells secrets or ids ([`sealed`]). No handshake waits
//! longer than `cache-redis-timeout` for Redis; while Redis is down,
//! handshakes do not wait at all ([`link`]).

mod link;
pub mod sealed;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::oneshot;

use self::link::Link;
use self::sealed::Sealer;
use crate::config::key_file::ClusterKeys;
use crate::config::redis::RedisConfig;
use crate::metrics::redis::{Event, RedisCounters};
use crate::shutdown::Shutdown;

/// A session found in Redis.
#[derive(Debug)]
pub struct Found {
    pub value: Vec<u8>,
    /// What is left of its lifetime.
    pub remaining: Duration,
}

/// How a lookup in Redis ended, for the connection's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found,
    NotFound,
    /// Down, timed out or failed: counted by kind.
    Unavailable,
}

/// One process's handle on the tier; cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisTier {
    link: Arc<Link>,
    sealer: Arc<RwLock<Arc<Sealer>>>,
    timeout: Duration,
    counters: &'static RedisCounters,
}

impl RedisTier {
    /// Starts the process's link to Redis (in the background: nothing
    /// waits for it) with values sealed under `keys`.
    pub fn start(
        config: &RedisConfig,
        keys: &ClusterKeys,
        counters: &'static RedisCounters,
        shutdown: &Shutdown,
    ) -> RedisTier {
        RedisTier {
            link: Link::start(config.target.clone(), counters, shutdown),
            sealer: Arc::new(RwLock::new(Arc::new(Sealer::new(keys)))),
            timeout: config.timeout,
            counters,
        }
    }

    /// Seals and names with `keys` from now on (a reload).
    pub fn rekey(&self, keys: &ClusterKeys) {
        if let Ok(mut sealer) = self.sealer.write() {
            *sealer = Arc::new(Sealer::new(keys));
        }
    }

    fn sealer(&self) -> Arc<Sealer> {
        match self.sealer.read() {
            Ok(sealer) => Arc::clone(&sealer),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Looks up the session under `cache_key`: reads it, or with `take`
    /// removes it as it reads (a TLS 1.3 ticket). Waits at most the
    /// tier's timeout; counts every outcome.
    pub async fn fetch(&self, cache_key: &[u8], take: bool) -> (Lookup, Option<Found>) {
        let Some(connection) = self.link.connection() else {
            self.counters.count(Event::SkippedDown);
            return (Lookup::Unavailable, None);
        };
        self.counters
            .count(if take { Event::Take } else { Event::Get });
        let sealer = self.sealer();
        // Usually one name; during a key rollover, one per key.
        let lookups = sealer.names(cache_key).into_iter().map(|name| {
            let mut connection = connection.clone();
            let mut pipe = redis::pipe();
            if take {
                pipe.cmd("PTTL").arg(&name).cmd("GETDEL").arg(&name);
            } else {
                pipe.cmd("PTTL").arg(&name).cmd("GET").arg(&name);
            }
            async move {
                let reply = pipe
                    .query_async::<(i64, Option<Vec<u8>>)>(&mut connection)
                    .await;
                (name, reply)
            }
        });
        let started = Instant::now();
        let replies = tokio::time::timeout(self.timeout, join_all(lookups)).await;
        self.counters.took(started.elapsed());
        let Ok(replies) = replies else {
            self.counters.count(Event::Timeout);
            self.link.timed_out();
            return (Lookup::Unavailable, None);
        };
        self.link.answered();
        let mut outcome = Lookup::NotFound;
        let mut found = None;
        for (name, reply) in replies {
            match reply {
                Ok((ttl_ms, Some(sealed))) => match sealer.open(&name, &sealed) {
                    Ok(value) if found.is_none() => {
                        found = Some(Found {
                            value,
                            remaining: Duration::from_millis(ttl_ms.max(1) as u64),
                        });
                        outcome = Lookup::Found;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "a value in Redis does not open");
                        self.counters.count(Event::BadValue);
                    }
                },
                Ok((_, None)) => {}
                Err(error) => {
                    self.counters.count(self.link.failed(&error));
                    if found.is_none() {
                        outcome = Lookup::Unavailable;
                    }
                }
            }
        }
        if found.is_some() {
            self.counters
                .count(if take { Event::TakeHit } else { Event::GetHit });
        }
        (outcome, found)
    }

    /// Writes the session `value` under `cache_key` for `lifetime`, in the
    /// background; the returned receiver completes once Redis has answered
    /// or the timeout has passed. `None` when the tier is down: nothing is
    /// written, and the caller keeps the session in the local cache.
    /// `refused` runs when Redis answered that it did not store the value
    /// (full, or any error reply), so that the caller can keep the session
    /// after all; not after a timeout, when Redis may hold it anyway.
    pub fn store(
        &self,
        cache_key: &[u8],
        value: &[u8],
        lifetime: Duration,
        refused: impl FnOnce() + Send + 'static,
    ) -> Option<oneshot::Receiver<()>> {
        let Some(mut connection) = self.link.connection() else {
            self.counters.count(Event::SkippedDown);
            return None;
        };
        let sealer = self.sealer();
        let name = sealer.name(cache_key);
        let sealed = sealer.seal(&name, value)?;
        let ttl_ms = lifetime.as_millis().max(1) as u64;
        let (done, waiter) = oneshot::channel();
        let tier = self.clone();
        tier.counters.count(Event::Set);
        tokio::spawn(async move {
            let mut set = redis::cmd("SET");
            set.arg(&name).arg(sealed).arg("PX").arg(ttl_ms);
            let started = Instant::now();
            let reply =
                tokio::time::timeout(tier.timeout, set.query_async::<()>(&mut connection)).await;
            tier.counters.took(started.elapsed());
            match reply {
                Ok(Ok(())) => tier.link.answered(),
                Ok(Err(error)) => {
                    let event = tier.link.failed(&error);
                    tier.counters.count(event);
                    if matches!(event, Event::Full | Event::Reply) {
                        refused();
                    }
                }
                Err(_) => {
                    tier.counters.count(Event::Timeout);
                    tier.link.timed_out();
                }
            }
            let _ = done.send(());
        });
        Some(waiter)
    }
}
