//! One process alone (`http-processes = 1`, no `master`): the region, the
//! cluster receiver, stats and the sweeper, and HTTPS, all here.

use std::sync::Arc;

use anyhow::Result;

use super::{https, startup};
use crate::config::Config;
use crate::listen::Listeners;
use crate::shutdown::Shutdown;
use crate::stats::WorkerFigures;

/// Serves `listeners` alone until `shutdown`.
pub async fn run(config: &Config, listeners: Listeners, shutdown: Shutdown) -> Result<()> {
    let started_at = startup::unix_now();
    let addresses = listeners.addresses()?;
    let region = startup::create_region(config)?;
    // Process block 0: the lone process counts there.
    let metrics = region.metrics(0);
    // One process, one set of keys: its sender and its receiver follow it.
    let keys = crate::sync::keys(config, region, 0);
    let cluster = crate::sync::start_outbound(config, region, metrics, keys.as_ref(), &shutdown)?;
    let inbound =
        startup::start_receiver(config, listeners.sync, region, keys.as_ref(), &shutdown).await?;
    let store = startup::session_store(config, region, metrics, cluster, &shutdown);
    if let Some(store) = &store {
        startup::spawn_sweeper(Arc::clone(store), shutdown.clone());
    }
    let proxy = startup::proxy(config, metrics)?;
    let stats = startup::StatsSource {
        started_at,
        config: config.clone(),
        region,
        store: store.clone(),
        inbound,
    };
    let backends = Arc::clone(&proxy);
    let source = stats.snapshots(
        move || {
            vec![WorkerFigures {
                id: 1,
                pid: std::process::id(),
                restarts: 0,
                metrics: metrics.snapshot(),
            }]
        },
        move || backends.pool.figures(),
    );
    startup::spawn_stats(listeners.stats, listeners.stats_http, source, &shutdown)?;
    https::serve(config, listeners.https, store, proxy, shutdown, || {
        addresses.announce_ready();
        crate::systemd::ready();
    })
    .await
}
