//! Stats: uWSGI 2.0's JSON document extended with cachet's counters, and the
//! same figures as Prometheus text.
//!
//! Rendering works on a plain [`Snapshot`], so whoever gathers the figures (a
//! lone process, or a master adding up its workers' blocks in shared
//! memory) is free to assemble it however it likes.

pub(crate) mod exposition;
mod json;
mod prometheus;
mod server;

pub use json::render_json;
pub use prometheus::render_prometheus;
pub use server::{serve_http, serve_tcp};

use std::sync::Arc;

use crate::metrics::MetricsSnapshot;

/// The session cache's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheFigures {
    /// Capacity in entries (`cache`).
    pub max_items: u64,
    /// Bytes per value block (`cache-blocksize`).
    pub blocksize: u64,
    /// Value blocks available.
    pub blocks: u64,
    /// Longest key, in bytes (0 when not fixed).
    pub keysize: u64,
    /// Entries held now.
    pub items: u64,
    /// Lookups that found a live session.
    pub hits: u64,
    /// Lookups that found nothing (or only an expired session).
    pub miss: u64,
    /// Stores refused because the cache was full (uWSGI's `full`).
    pub full: u64,
    /// Sessions stored.
    pub sets: u64,
    /// Sessions removed on request (TLS 1.3 tickets are single-use).
    pub deletes: u64,
    /// Sessions pushed out to make room.
    pub evictions: u64,
    /// Sessions that reached `ssl-sessions-timeout`.
    pub expired: u64,
    /// Stores refused because the value exceeded `cache-blocksize`.
    pub refused_too_large: u64,
    /// Stores refused because no slot could be found or freed.
    pub refused_full: u64,
    /// Unix seconds of the last change.
    pub last_modified_at: u64,
}

/// One router process's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerFigures {
    /// 1-based worker number.
    pub id: u32,
    pub pid: u32,
    pub restarts: u64,
    pub metrics: MetricsSnapshot,
}

/// One backend's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendFigures {
    pub name: String,
    pub protocol: &'static str,
    pub requests: u64,
    pub failures: u64,
    /// In back-off after a failure.
    pub down: bool,
    /// Keep-alive connections parked, ready for the next request.
    pub idle: u64,
}

/// Everything the stats endpoints show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub version: &'static str,
    pub pid: u32,
    /// Unix seconds when the router started.
    pub started_at: u64,
    /// The session cache, if one is configured.
    pub cache: Option<CacheFigures>,
    /// Whether TLS sessions live in that cache or in rustls' per-process store.
    pub sessions_in_cache: bool,
    pub workers: Vec<WorkerFigures>,
    pub backends: Vec<BackendFigures>,
    /// Cluster replication, when configured.
    pub sync: Option<SyncFigures>,
    /// The Redis tier's target (no password), when `cache-redis` is on;
    /// its figures are the workers' [`MetricsSnapshot::redis`].
    pub redis: Option<String>,
}

/// Cluster replication figures: the receiver's node and every peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncFigures {
    pub inbound: crate::sync::inbound::InboundFigures,
    pub peers: Vec<crate::shared::peers::PeerFigures>,
    /// What each cluster key sealed and opened, by fingerprint.
    pub keys: Vec<crate::shared::key_table::KeyFigures>,
    /// The key rings the router's processes hold.
    pub keyrings: Vec<crate::shared::key_table::RingFigures>,
}

impl Snapshot {
    /// The workers' counters added up.
    pub fn totals(&self) -> MetricsSnapshot {
        self.workers
            .iter()
            .fold(MetricsSnapshot::default(), |sum, worker| {
                sum.plus(&worker.metrics)
            })
    }
}

#[cfg(test)]
impl Snapshot {
    /// One router process (pid 7, worker 1) with a cache and these
    /// counters; no backends, no cluster, no Redis: what the renderers'
    /// tests start from.
    pub(crate) fn of_one_process(cache: CacheFigures, metrics: MetricsSnapshot) -> Snapshot {
        Snapshot {
            version: "0",
            pid: 7,
            started_at: 1,
            cache: Some(cache),
            sessions_in_cache: true,
            workers: vec![WorkerFigures {
                id: 1,
                pid: 7,
                restarts: 0,
                metrics,
            }],
            backends: vec![],
            sync: None,
            redis: None,
        }
    }
}

/// Produces a fresh snapshot each time a stats client asks.
pub type SnapshotSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;
