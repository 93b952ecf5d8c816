//! Serving HTTPS: every configured socket's TLS endpoint and accept loop
//! over one session store and one set of backends, until told to stop,
//! then the drain. The lone process and each worker run this; where it
//! listens, the process that bound the sockets says (see
//! [`crate::listen::Addresses`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::config::Config;
use crate::limits;
use crate::metrics::Metric;
use crate::proxy::serve::{accept_loop, Socket};
use crate::proxy::Proxy;
use crate::shutdown::{Shutdown, Tracker};
use crate::store::SessionStore;
use crate::tls::{Endpoint, Sessions};

/// Serves the HTTPS sockets until `shutdown`, then waits up to the drain
/// deadline for open connections to finish; `ready` runs once every
/// socket accepts.
pub async fn serve(
    config: &Config,
    https: Vec<std::net::TcpListener>,
    store: Option<Arc<SessionStore>>,
    proxy: Arc<Proxy>,
    mut shutdown: Shutdown,
    ready: impl FnOnce(),
) -> Result<()> {
    let sessions = Sessions::chosen(store.as_deref(), config.ssl_sessions_use_cache);
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

    super::timer_anchor::spawn(shutdown.clone());
    let tracker = Tracker::default();
    for (listener, socket) in sockets {
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
    let open = metrics.snapshot().get(Metric::OpenConnections);
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
            open_connections = metrics.snapshot().get(Metric::OpenConnections),
            deadline_secs = limits::DRAIN_DEADLINE.as_secs(),
            "drain deadline passed; closing the remaining connections"
        );
    }
    Ok(())
}
