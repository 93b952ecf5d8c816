//! The pieces a router process runs, and how one process alone combines
//! them: the HTTPS endpoints with their backends ([`serve_https`]), the
//! stats endpoints ([`spawn_stats`]) and the sweeper ([`spawn_sweeper`]).
//! With worker processes, each worker runs `serve_https` and the master the
//! other two (see [`crate::master`] and [`crate::worker`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::limits;
use crate::listen::{self, Listeners};
use crate::metrics::Metrics;
use crate::proxy::pool::BackendPool;
use crate::proxy::serve::{accept_loop, Socket};
use crate::proxy::Proxy;
use crate::shared::{CacheGeometry, SharedRegion};
use crate::shutdown::{Shutdown, Tracker};
use crate::stats::{self, Snapshot, SnapshotSource, WorkerFigures};
use crate::store::SessionStore;
use crate::tickets::Ticketer;
use crate::tls::{Endpoint, Sessions};

/// The shared region for `config`, created once per router (by the lone
/// process, or by the master before its workers) and kept for the
/// process's life.
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
    Ok(Box::leak(Box::new(region)))
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

/// Serves `listeners` alone: HTTPS, stats and the sweeper in this process.
pub async fn run(config: &Config, listeners: Listeners, shutdown: Shutdown) -> Result<()> {
    let started_at = unix_now();
    let region = create_region(config)?;
    crate::sync::register_peers(config, region);
    let metrics = region.metrics(0);
    // One process, one set of keys: its sender and its receiver follow it.
    let keys = crate::sync::keys(config, region, 0);
    let cluster = crate::sync::start_outbound(config, region, metrics, keys.as_ref(), &shutdown)?;
    let sync =
        crate::sync::start_inbound(config, listeners.sync, region, keys.as_ref(), &shutdown)?;
    if let Some(sync) = &sync {
        sync.ticket_keys_ready().await?;
    }
    let store = session_store(config, region, metrics, cluster, &shutdown);
    if let Some(store) = &store {
        spawn_sweeper(Arc::clone(store), shutdown.clone());
    }
    let proxy = proxy(config, metrics)?;
    let source: SnapshotSource = {
        let store = store.clone();
        let proxy = Arc::clone(&proxy);
        let sessions_in_cache = config.ssl_sessions_use_cache && store.is_some();
        let redis = redis_target(config);
        Arc::new(move || Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            started_at,
            cache: store.as_ref().map(|store| store.figures()),
            sessions_in_cache,
            workers: vec![WorkerFigures {
                id: 1,
                pid: std::process::id(),
                restarts: 0,
                metrics: metrics.snapshot(),
            }],
            backends: proxy.pool.figures(),
            sync: sync_figures(sync.as_ref().map(|s| &s.figures), region),
            redis: redis.clone(),
        })
    };
    spawn_stats(listeners.stats, listeners.stats_http, source, &shutdown)?;
    serve_https(
        config,
        listeners.https,
        store,
        proxy,
        shutdown,
        Listening::Announce,
        || {
            listen::announce_ready();
            crate::systemd::ready();
        },
    )
    .await
}

/// The Redis tier's target as stats show it, when on.
pub fn redis_target(config: &Config) -> Option<String> {
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

/// Whether a process serving HTTPS says where it listens
/// (`cachet: listening https ADDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// The lone process: it is the router, it says so.
    Announce,
    /// A worker: its master announced the sockets it handed down.
    Quiet,
}

/// Serves the HTTPS sockets until `shutdown`, then waits up to the drain
/// deadline for open connections to finish. With [`Listening::Announce`]
/// it prints the listening lines (a worker leaves that to its master);
/// `ready` runs once every socket accepts.
pub async fn serve_https(
    config: &Config,
    https: Vec<std::net::TcpListener>,
    store: Option<Arc<SessionStore>>,
    proxy: Arc<Proxy>,
    mut shutdown: Shutdown,
    listening: Listening,
    ready: impl FnOnce(),
) -> Result<()> {
    let sessions = match (&store, config.ssl_sessions_use_cache) {
        (Some(store), true) => Sessions::Cache(store),
        _ => Sessions::RustlsDefault,
    };
    let metrics = Arc::clone(&proxy.metrics);
    let proxy_log = proxy.access_log.clone();

    let mut sockets = Vec::new();
    let slots = Arc::new(Semaphore::new(limits::MAX_CONNECTIONS));
    let proxy_protocol = Arc::new(AtomicBool::new(config.enable_proxy_protocol));
    for (https, listener) in config.https.iter().zip(https) {
        let endpoint = Endpoint::build(
            https,
            &config.sni,
            config.https_session_context.as_deref(),
            sessions,
        )?;
        let listener = TcpListener::from_std(listener).context("registering an https socket")?;
        let local = listener.local_addr()?;
        let socket = Socket {
            local,
            endpoint: Arc::new(endpoint),
            proxy: Arc::clone(&proxy),
            metrics: Arc::clone(&metrics),
            proxy_protocol: Arc::clone(&proxy_protocol),
            slots: Arc::clone(&slots),
        };
        sockets.push((listener, socket));
    }
    crate::reload::spawn_watcher(
        config,
        sockets.iter().map(|(_, socket)| socket),
        store.clone(),
        shutdown.clone(),
    );

    let tracker = Tracker::default();
    for (listener, socket) in sockets {
        if listening == Listening::Announce {
            listen::announce("https", socket.local);
        }
        tokio::spawn(accept_loop(
            listener,
            socket,
            shutdown.clone(),
            tracker.track(),
        ));
    }
    ready();
    info!(
        backends = config.backends.len(),
        proxy_protocol = config.enable_proxy_protocol,
        session_storage = if matches!(sessions, Sessions::Cache(_)) {
            "cache"
        } else {
            "rustls"
        },
        "router started"
    );

    shutdown.requested().await;
    let open = metrics
        .snapshot()
        .get(crate::metrics::Metric::OpenConnections);
    info!(
        open_connections = open,
        "shutting down: no new connections, draining"
    );
    let drained = tracker.drained(limits::DRAIN_DEADLINE).await;
    if let Some(log) = &proxy_log {
        log.flush();
    }
    if drained {
        info!("drained");
    } else {
        warn!(
            open_connections = metrics
                .snapshot()
                .get(crate::metrics::Metric::OpenConnections),
            deadline_secs = limits::DRAIN_DEADLINE.as_secs(),
            "drain deadline passed; closing the remaining connections"
        );
    }
    Ok(())
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
        listen::announce("stats", listener.local_addr()?);
        tokio::spawn(stats::serve_tcp(listener, source.clone(), shutdown.clone()));
    }
    if let Some(listener) = stats_http {
        let listener = TcpListener::from_std(listener)?;
        listen::announce("stats-http", listener.local_addr()?);
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

/// The cluster figures for stats, when the router replicates.
pub fn sync_figures(
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
