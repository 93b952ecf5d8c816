//! How a `cachet` process runs: one of three modes over one start-up.
//!
//! ```text
//!              main ── run ──┬── single (http-processes = 1, no master)
//!                            ├── master (binds, re-executes itself as …)
//!   (CACHET_WORKER set) ─────┴── worker (inherits sockets and region)
//! ```
//!
//! What two modes do alike lives in [`startup`] (region, store, backends,
//! receiver, stats, sweeper) and [`https`] (serving); what a master hands
//! its workers, in [`handoff`]. No mode calls into another.

mod handoff;
mod https;
mod master;
mod single;
mod startup;
mod timer_anchor;
pub mod worker;

use crate::config::Config;
use crate::listen::Listeners;
use crate::shutdown;

/// The rustls configuration a worker serves `config`'s first https socket
/// with: its default certificate, the router's cipher order and key
/// schedule, and (with `ssl-sessions-use-cache`) sessions in a session
/// cache of its own, created here as a master creates its workers' (no
/// cluster, no Redis). It lets a measurement time the TLS work apart from
/// sockets and the runtime (`benches/handshake.rs`).
pub fn tls_config(config: &Config) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    let https = config
        .https
        .first()
        .context("the configuration has no https socket")?;
    let region = startup::create_region(config)?;
    let store =
        crate::store::SessionStore::new(region, config.ssl_sessions_timeout, None, None, None);
    let sessions = crate::tls::Sessions::chosen(store.as_ref(), config.ssl_sessions_use_cache);
    let endpoint = crate::tls::Endpoint::build(
        https,
        &config.sni,
        config.https_session_context.as_deref(),
        sessions,
    )?;
    let sites = endpoint.current();
    Ok(std::sync::Arc::clone(sites.select(None).configs.config()))
}

/// Runs the router `config` describes (as a lone process or as a master
/// with its workers) until SIGTERM or SIGINT. `args` are the command line,
/// which a master passes on to its workers.
pub fn run(config: &Config, args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    // SIGHUP reloads, once the router watches for it; until then its default
    // action would kill the process. Workers inherit the setting.
    shutdown::ignore_hangups_for_now();
    // Bound before any runtime or worker exists, so that a master hands the
    // same sockets to all its workers.
    let under_master = config.master || config.http_processes > 1;
    let listeners = Listeners::bind(config, under_master && config.reuse_port)?;
    if under_master {
        return master::run(config, listeners, args);
    }
    shutdown::runtime("cachet")?.block_on(async {
        let shutdown = shutdown::on_termination_signal();
        single::run(config, listeners, shutdown).await
    })
}
