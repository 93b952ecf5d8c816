//! One router process: TLS endpoints, the backend pool and stats, served
//! until shutdown. A future worker process calls [`run`] with listeners it
//! inherited from its master.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::config::Config;
use crate::limits;
use crate::listen::{self, Listeners};
use crate::metrics::Metrics;
use crate::proxy::pool::BackendPool;
use crate::proxy::serve::{accept_loop, Socket};
use crate::proxy::Proxy;
use crate::shutdown::{Shutdown, Tracker};
use crate::stats::{self, Snapshot, SnapshotSource, WorkerFigures};
use crate::store::{SessionStore, StoreSettings};
use crate::tls::{Endpoint, Sessions};

/// Frees expired sessions a little at a time, so no sweep holds the cache
/// lock for long; lookups never return an expired session in between.
/// (With worker processes this moves to the master.)
async fn sweep(store: Arc<SessionStore>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(limits::SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let freed = store.sweep(limits::SWEEP_BUDGET);
                if freed > 0 {
                    tracing::debug!(freed, "expired sessions freed");
                }
            }
            () = shutdown.requested() => return,
        }
    }
}

/// Serves `listeners` as `config` says until `shutdown`, then waits up to
/// the drain deadline for open connections to finish.
pub async fn run(config: &Config, listeners: Listeners, mut shutdown: Shutdown) -> Result<()> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    // One store per process; with worker processes it will live in shared
    // memory created by the master.
    let store = config
        .cache
        .map(|cache| {
            SessionStore::new(StoreSettings {
                items: cache.items,
                blocksize: cache.blocksize,
                timeout: config.ssl_sessions_timeout,
            })
            .map(Arc::new)
        })
        .transpose()
        .context("creating the session cache")?;
    if let Some(store) = &store {
        tokio::spawn(sweep(Arc::clone(store), shutdown.clone()));
    }
    let sessions = match (&store, config.ssl_sessions_use_cache) {
        (Some(store), true) => Sessions::Cache(store),
        _ => Sessions::RustlsDefault,
    };

    let metrics = Arc::new(Metrics::default());
    let proxy = Arc::new(Proxy {
        pool: BackendPool::new(&config.backends),
        metrics: Arc::clone(&metrics),
    });
    if config.backends.is_empty() {
        warn!("no `http-to` backend: every request will get 502");
    }

    let mut sockets = Vec::new();
    let slots = Arc::new(Semaphore::new(limits::MAX_CONNECTIONS));
    for (https, listener) in config.https.iter().zip(listeners.https) {
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
            slots: Arc::clone(&slots),
        };
        sockets.push((listener, socket));
    }

    let source: SnapshotSource = {
        let metrics = Arc::clone(&metrics);
        let proxy = Arc::clone(&proxy);
        let store = store.clone();
        let sessions_in_cache = matches!(sessions, Sessions::Cache(_));
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
        })
    };
    if let Some(listener) = listeners.stats {
        let listener = TcpListener::from_std(listener)?;
        listen::announce("stats", listener.local_addr()?);
        tokio::spawn(stats::serve_tcp(listener, source.clone(), shutdown.clone()));
    }
    if let Some(listener) = listeners.stats_http {
        let listener = TcpListener::from_std(listener)?;
        listen::announce("stats-http", listener.local_addr()?);
        tokio::spawn(stats::serve_http(
            listener,
            source.clone(),
            shutdown.clone(),
        ));
    }

    let tracker = Tracker::default();
    for (listener, socket) in sockets {
        listen::announce("https", socket.local);
        tokio::spawn(accept_loop(
            listener,
            socket,
            shutdown.clone(),
            tracker.track(),
        ));
    }
    listen::announce_ready();
    info!(
        backends = config.backends.len(),
        session_storage = if matches!(sessions, Sessions::Cache(_)) {
            "cache"
        } else {
            "rustls"
        },
        "router started"
    );

    shutdown.requested().await;
    let open = metrics.snapshot().open_connections;
    info!(
        open_connections = open,
        "shutting down: no new connections, draining"
    );
    if tracker.drained(limits::DRAIN_DEADLINE).await {
        info!("drained");
    } else {
        warn!(
            open_connections = metrics.snapshot().open_connections,
            deadline_secs = limits::DRAIN_DEADLINE.as_secs(),
            "drain deadline passed; closing the remaining connections"
        );
    }
    Ok(())
}
