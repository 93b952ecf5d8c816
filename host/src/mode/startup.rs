//! What every mode starts the same way: the shared region and its peers,
//! a serving process's session store and backends, and the master's (or
//! lone process's) upkeep: stats endpoints over one snapshot, and the
//! sweeper.
//!
//! Who runs what (see [`super`]): a lone process all of it; a master the
//! region and the upkeep; a worker the store and backends, serving HTTPS
//! with [`super::https`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tracing::warn;

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::limits;
use crate::metrics::Metrics;
use crate::proxy::pool::BackendPool;
use crate::proxy::Proxy;
use crate::shared::{CacheGeometry, SharedRegion};
use crate::shutdown::Shutdown;
use crate::stats::{self, BackendFigures, Snapshot, SnapshotSource, WorkerFigures};
use crate::store::SessionStore;
use crate::tickets::Ticketer;

/// The shared region for `config`, created once per router (by the lone
/// process, or by the master before its workers) and kept for the
/// process's life, with the configured peers in its peer table (before
/// any process sends).
pub fn create_region(config: &Config) -> Result<&'static SharedRegion> {
    let geometry = config
        .cache
        .map(|cache| -> Result<CacheGeometry> {
            Ok(CacheGeometry {
                capacity: u32::try_from(cache.items).context("cache: too many items")?,
                block_size: u32::try_from(cache.blocksize).context("cache-blocksize: too large")?,
            })
        })
        .transpose()?;
    let region = SharedRegion::create(geometry).context("creating the session cache")?;
    let region: &'static SharedRegion = Box::leak(Box::new(region));
    crate::sync::register_peers(config, region);
    Ok(region)
}

/// The session store over `region`, if the region has a cache, feeding
/// sessions to the cluster and pulling from it when given, and to Redis
/// when `cache-redis` is on (this process's link to it starts here; call
/// inside the runtime). With `ssl-session-tickets = keys` and a cluster,
/// its tickets are sealed under the ticket keys the receiver publishes,
/// counted in `metrics`.
pub fn session_store(
    config: &Config,
    region: &'static SharedRegion,
    metrics: Metrics,
    cluster: Option<crate::sync::outbound::ClusterLink>,
    shutdown: &Shutdown,
) -> Option<Arc<SessionStore>> {
    let redis = match (&config.redis, &config.cluster.key) {
        (Some(redis), Some(keys)) => Some(crate::redis::RedisTier::start(
            redis,
            keys,
            metrics.redis(),
            shutdown,
        )),
        _ => None,
    };
    let ticketer = match (crate::sync::ticket_rotation(config), &cluster) {
        (Some(rotation), Some(cluster)) => Some(Ticketer::new(
            region.peers().tickets(),
            Arc::clone(&cluster.keys),
            rotation,
            metrics,
        )),
        _ => None,
    };
    SessionStore::new(
        region,
        config.ssl_sessions_timeout,
        cluster,
        redis,
        ticketer,
    )
    .map(Arc::new)
}

/// The Redis tier's target as stats show it, when on.
fn redis_target(config: &Config) -> Option<String> {
    config.redis.as_ref().map(|redis| redis.target.to_string())
}

/// The backends of `config`, counting into `metrics`, and its access log.
/// Call inside the runtime (the access log's flusher runs on it).
pub fn proxy(config: &Config, metrics: Metrics) -> Result<Arc<Proxy>> {
    if config.backends.is_empty() {
        warn!("no `http-to` backend: every request will get 502");
    }
    let access_log = config
        .access_log
        .as_ref()
        .map(|log| AccessLog::open(log).context("option `access-log`"))
        .transpose()?
        .map(Arc::new);
    if let Some(log) = &access_log {
        log.spawn_flusher();
    }
    Ok(Arc::new(Proxy {
        pool: BackendPool::new(&config.backends),
        metrics: Arc::new(metrics),
        access_log,
    }))
}

/// Starts the stats endpoints that are configured.
pub fn spawn_stats(
    stats: Option<std::net::TcpListener>,
    stats_http: Option<std::net::TcpListener>,
    source: SnapshotSource,
    shutdown: &Shutdown,
) -> Result<()> {
    if let Some(listener) = stats {
        let listener = TcpListener::from_std(listener)?;
        tokio::spawn(stats::serve_tcp(listener, source.clone(), shutdown.clone()));
    }
    if let Some(listener) = stats_http {
        let listener = TcpListener::from_std(listener)?;
        tokio::spawn(stats::serve_http(listener, source, shutdown.clone()));
    }
    Ok(())
}

/// Frees expired sessions a little at a time, so no sweep holds the cache
/// lock for long; lookups never return an expired session in between.
pub fn spawn_sweeper(store: Arc<SessionStore>, mut shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(limits::SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // The lock may be held by a worker that is about to be
                    // killed: never block the runtime waiting for it.
                    let store = Arc::clone(&store);
                    let freed = tokio::task::spawn_blocking(move || {
                        store.sweep(limits::SWEEP_BUDGET)
                    })
                    .await
                    .unwrap_or(0);
                    if freed > 0 {
                        tracing::debug!(freed, "expired sessions freed");
                    }
                }
                () = shutdown.requested() => return,
            }
        }
    });
}

/// What a router's stats show, whichever process serves them: the
/// snapshot both the lone process and the master hand to the endpoints.
/// The two differ only in where the workers' and backends' figures come
/// from.
pub struct StatsSource {
    /// Unix seconds when the router started ([`unix_now`] first thing).
    pub started_at: u64,
    pub config: Config,
    pub region: &'static SharedRegion,
    /// The store the process sweeps, if the region has a cache.
    pub store: Option<Arc<SessionStore>>,
    /// The receiver, when this process runs it.
    pub inbound: Option<crate::sync::Inbound>,
}

impl StatsSource {
    /// The snapshot function for [`spawn_stats`].
    pub fn snapshots(
        self,
        workers: impl Fn() -> Vec<WorkerFigures> + Send + Sync + 'static,
        backends: impl Fn() -> Vec<BackendFigures> + Send + Sync + 'static,
    ) -> SnapshotSource {
        let sessions_in_cache = self.config.ssl_sessions_use_cache && self.store.is_some();
        let redis = redis_target(&self.config);
        let StatsSource {
            started_at,
            region,
            store,
            inbound,
            ..
        } = self;
        Arc::new(move || Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            started_at,
            cache: store.as_ref().map(|store| store.figures()),
            sessions_in_cache,
            workers: workers(),
            backends: backends(),
            sync: sync_figures(inbound.as_ref().map(|inbound| &inbound.figures), region),
            redis: redis.clone(),
        })
    }
}

/// The cluster figures for stats, when the router replicates.
fn sync_figures(
    inbound: Option<&crate::sync::inbound::Figures>,
    region: &'static SharedRegion,
) -> Option<stats::SyncFigures> {
    let peers = region.peers().figures();
    if inbound.is_none() && peers.is_empty() {
        return None;
    }
    let inbound = inbound
        .map(|f| f.lock().expect("figures lock").clone())
        .unwrap_or_default();
    let keys = region.peers().keys();
    Some(stats::SyncFigures {
        inbound,
        peers,
        keys: keys.figures(),
        keyrings: keys.rings(),
    })
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Starts the cluster receiver when `cache-udp-server` is bound (the
/// master's, or the lone process's, one per router) and, with cluster
/// ticket keys, waits until the router holds them: no process serves a
/// handshake before.
pub async fn start_receiver(
    config: &Config,
    socket: Option<std::net::UdpSocket>,
    region: &'static SharedRegion,
    keys: Option<&Arc<crate::sync::keys::Keys>>,
    shutdown: &Shutdown,
) -> Result<Option<crate::sync::Inbound>> {
    let inbound = crate::sync::start_inbound(config, socket, region, keys, shutdown)?;
    if let Some(inbound) = &inbound {
        inbound.ticket_keys_ready().await?;
    }
    Ok(inbound)
}
