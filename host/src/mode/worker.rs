//! A worker process: started by the master (the same binary, re-executed,
//! see [`super::handoff`] for what it inherits), it maps the shared region,
//! adopts the listening sockets it inherited and serves HTTPS until told
//! to stop.

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::handoff::{self, GENERATED_CERTS_ENV, HTTPS_FDS_ENV, SHARED_FD_ENV};
use super::{https, startup};
use crate::config::Config;
use crate::shared::SharedRegion;
use crate::shutdown;

/// This process's worker number, when it was started as a worker.
pub fn number() -> Option<usize> {
    handoff::worker_number()
}

/// Serves as worker `id` until SIGTERM or SIGINT (or the master's death).
pub fn run(mut config: Config, id: usize) -> Result<()> {
    die_with_master()?;
    let shared = handoff::take_fd(SHARED_FD_ENV)?;
    let region: &'static SharedRegion = Box::leak(Box::new(SharedRegion::open(shared, id)?));
    let fds = std::env::var(HTTPS_FDS_ENV).with_context(|| format!("{HTTPS_FDS_ENV} not set"))?;
    let https: Vec<TcpListener> = fds
        .split(',')
        .map(|fd| handoff::adopt(fd).map(TcpListener::from))
        .collect::<Result<_>>()?;
    if https.len() != config.https.len() {
        bail!(
            "{HTTPS_FDS_ENV} names {} sockets, the configuration {}",
            https.len(),
            config.https.len()
        );
    }
    if let Ok(dir) = std::env::var(GENERATED_CERTS_ENV) {
        handoff::use_generated_certificates(&mut config, &PathBuf::from(dir));
    }

    shutdown::worker_runtime()?.block_on(async {
        let stop = shutdown::on_termination_signal();
        let metrics = region.metrics(id);
        let keys = crate::sync::keys(&config, region, id);
        let cluster = crate::sync::start_outbound(&config, region, metrics, keys.as_ref(), &stop)?;
        let store = startup::session_store(&config, region, metrics, cluster, &stop);
        let proxy = startup::proxy(&config, metrics)?;
        // Telling the master this worker accepts connections.
        let ready = || metrics.set_ready(std::process::id());
        https::serve(&config, https, store, proxy, stop, ready).await
    })
}

/// Asks the kernel to send SIGTERM when the master dies, so that workers
/// never outlive it (and keep its sockets) after a `kill -9`.
fn die_with_master() -> Result<()> {
    crate::sys::process::terminate_with_parent().context("prctl(PR_SET_PDEATHSIG)")?;
    // The master may have died before the call above took effect.
    if std::os::unix::process::parent_id() == 1 {
        bail!("the master is gone");
    }
    Ok(())
}
