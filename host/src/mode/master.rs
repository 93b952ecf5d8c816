//! The master process: owns the sockets and the shared region, starts the
//! workers, replaces any that dies, sweeps the cache and serves stats.
//!
//! Workers are started by re-executing this binary with the same arguments
//! (never by forking a process that already runs threads), inheriting the
//! listening sockets and the shared region's descriptor; see
//! [`super::worker`] and [`super::handoff`]. The master prints `cachet: worker N pid P` for each
//! worker it starts (an interface for tests and scripts, like the listening
//! lines) and `cachet: ready` once every worker accepts connections.
//!
//! Signals: SIGTERM or SIGINT stop the workers (each drains its open
//! requests up to the drain deadline), then the master exits 0. SIGHUP is
//! passed on to every worker, which reloads certificates and backends.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;
use tracing::{error, info, warn};

use super::handoff::{self, GENERATED_CERTS_ENV, HTTPS_FDS_ENV, SHARED_FD_ENV, WORKER_ENV};
use super::startup;
use crate::config::Config;
use crate::limits;
use crate::listen::Listeners;
use crate::shared::{self, SharedRegion};
use crate::shutdown::{self, Shutdown};
use crate::stats::WorkerFigures;

/// How long workers may take to start accepting connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// After the drain deadline, how long to wait before killing a worker.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the master knows of one worker.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    pid: Option<u32>,
    restarts: u64,
}

/// The workers, by number (index 0 is unused: workers count from 1).
type Slots = Arc<Mutex<Vec<Slot>>>;

/// Runs the master with `processes` workers until SIGTERM or SIGINT.
pub fn run(config: &Config, listeners: Listeners, args: &[OsString]) -> Result<()> {
    let started_at = startup::unix_now();
    let addresses = listeners.addresses()?;
    let processes = config.http_processes.max(1);
    if processes > shared::MAX_WORKERS {
        bail!(
            "http-processes = {processes}: at most {}",
            shared::MAX_WORKERS
        );
    }
    let region = startup::create_region(config)?;
    crate::sys::fd::inheritable(region.fd()).context("sharing the region with workers")?;
    // With `reuse-port`, each worker's own https sockets, kept open here
    // for the master's life so that connections queued on a dead worker's
    // socket wait for its replacement; else one set shared by all.
    let worker_sockets: Vec<Vec<std::net::TcpListener>> = (1..=processes)
        .map(|id| match config.reuse_port {
            true => listeners.https_for_worker(id),
            false => listeners.https_for_worker(1),
        })
        .collect::<Result<_>>()?;
    let mut https_fds = Vec::new();
    for sockets in &worker_sockets {
        let mut fds = Vec::new();
        for listener in sockets {
            crate::sys::fd::inheritable(std::os::fd::AsFd::as_fd(listener))
                .context("sharing a socket")?;
            fds.push(listener.as_raw_fd().to_string());
        }
        https_fds.push(fds.join(","));
    }
    let generated = GeneratedCertificates::for_config(config)?;
    check_certificates(config, generated.as_ref())?;
    let launch = Arc::new(Launch {
        args: args.to_vec(),
        shared_fd: region.fd().as_raw_fd().to_string(),
        https_fds,
        generated_certs: generated.as_ref().map(|g| g.dir.clone()),
    });

    let result = shutdown::runtime("cachet-master")?.block_on(async {
        let (trigger, stop) = shutdown::channel();
        let slots: Slots = Arc::new(Mutex::new(vec![Slot::default(); processes + 1]));
        // Backend health and counts live in each worker; the master lists
        // the configured backends (its own pool never sends), re-read on
        // SIGHUP like the workers' lists.
        let backends = Arc::new(crate::proxy::pool::BackendPool::new(&config.backends));
        // The master's receiver seals and opens with keys of its own,
        // re-read on SIGHUP like each worker's.
        let keys = crate::sync::keys(config, region, 0);
        tokio::spawn(forward_signals(
            region,
            Arc::clone(&slots),
            trigger,
            Arc::clone(&backends),
            keys.clone(),
            args.to_vec(),
        ));

        // The receiver first: with ticket keys, workers serve only once the
        // router holds them (from a peer, or made here).
        let inbound =
            startup::start_receiver(config, listeners.sync, region, keys.as_ref(), &stop).await?;
        let mut keepers = Vec::new();
        for id in 1..=processes {
            keepers.push(tokio::spawn(keep_alive(
                id,
                Arc::clone(&launch),
                region,
                Arc::clone(&slots),
                stop.clone(),
            )));
        }
        wait_until_ready(region, &slots, processes, &stop).await?;

        // The master sweeps the cache and reads its figures; it serves no
        // handshake, so it needs neither the mesh's sender, nor Redis, nor
        // a ticketer.
        let store =
            crate::store::SessionStore::new(region, config.ssl_sessions_timeout, None, None, None)
                .map(Arc::new);
        if let Some(store) = &store {
            startup::spawn_sweeper(Arc::clone(store), stop.clone());
        }
        let stats = startup::StatsSource {
            started_at,
            config: config.clone(),
            region,
            store,
            inbound,
        };
        let source = stats.snapshots(
            move || {
                let slots = slots.lock().expect("slots lock").clone();
                (1..slots.len())
                    .map(|id| WorkerFigures {
                        id: id as u32,
                        pid: slots[id].pid.unwrap_or(0),
                        restarts: slots[id].restarts,
                        metrics: region.metrics(id).snapshot(),
                    })
                    .collect()
            },
            move || backends.figures(),
        );
        startup::spawn_stats(listeners.stats, listeners.stats_http, source, &stop)?;
        addresses.announce_ready();
        crate::systemd::ready();
        info!(workers = processes, "master started");

        for keeper in keepers {
            let _ = keeper.await;
        }
        info!("all workers stopped");
        Ok(())
    });
    drop(generated);
    result
}

/// Loads every certificate the workers will load, so that a bad file is
/// reported at once, naming it, instead of as workers that keep failing.
fn check_certificates(config: &Config, generated: Option<&GeneratedCertificates>) -> Result<()> {
    let mut config = config.clone();
    if let Some(generated) = generated {
        handoff::use_generated_certificates(&mut config, &generated.dir);
    }
    let problems = crate::check::certificate_problems(&config);
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", crate::check::report(&problems))
    }
}

/// How to start a worker.
#[derive(Debug)]
struct Launch {
    args: Vec<OsString>,
    shared_fd: String,
    /// Per worker (index `id - 1`): its https sockets' descriptors.
    https_fds: Vec<String>,
    generated_certs: Option<PathBuf>,
}

impl Launch {
    /// The command for worker `id`; `restart` for a replacement.
    fn command(&self, id: usize, restart: bool) -> Result<Command> {
        let exe = std::env::current_exe().context("locating the cachet binary")?;
        let mut command = Command::new(exe);
        command
            .args(&self.args)
            .env(WORKER_ENV, id.to_string())
            // Only the master speaks to systemd (see `crate::systemd`).
            .env_remove(crate::systemd::NOTIFY_SOCKET_ENV)
            .env(SHARED_FD_ENV, &self.shared_fd)
            .env(HTTPS_FDS_ENV, &self.https_fds[id - 1])
            .stdin(Stdio::null());
        if let Some(dir) = &self.generated_certs {
            command.env(GENERATED_CERTS_ENV, dir);
        }
        if restart {
            // The test hook stops the first incarnation only, so that its
            // replacement shows the cache serving again.
            command.env_remove(shared::TEST_HOLD_LOCK_ENV);
        }
        Ok(command)
    }
}

/// Starts worker `id` and starts it again whenever it exits, until `stop`;
/// then asks it to stop and waits for it.
async fn keep_alive(
    id: usize,
    launch: Arc<Launch>,
    region: &'static SharedRegion,
    slots: Slots,
    mut stop: Shutdown,
) {
    let metrics = region.metrics(id);
    let mut failures_in_a_row = 0u32;
    let mut restart = false;
    loop {
        metrics.set_ready(0);
        metrics.reset_open_connections();
        if restart {
            // The dead worker's pulls will never end; what the others hold
            // then ends against zero (a bound briefly looser, never stuck).
            region.peers().reset_pulls_in_flight();
        }
        let mut child = match launch
            .command(id, restart)
            .and_then(|mut c| c.spawn().context("spawning"))
        {
            Ok(child) => child,
            Err(e) => {
                error!(worker = id, "cannot start worker: {e:#}");
                failures_in_a_row += 1;
                tokio::time::sleep(backoff(failures_in_a_row)).await;
                continue;
            }
        };
        restart = true;
        let pid = child.id().unwrap_or(0);
        slots.lock().expect("slots lock")[id].pid = Some(pid);
        crate::say!("cachet: worker {id} pid {pid}");

        let status = tokio::select! {
            status = child.wait() => status,
            () = stop.requested() => {
                signal(pid, libc::SIGTERM);
                let deadline = limits::DRAIN_DEADLINE + STOP_GRACE;
                match tokio::time::timeout(deadline, child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        warn!(worker = id, pid, "worker did not stop in time; killing it");
                        let _ = child.kill().await;
                    }
                }
                slots.lock().expect("slots lock")[id].pid = None;
                return;
            }
        };
        if stop.is_requested() {
            return;
        }
        let served = metrics.ready_pid() == pid;
        failures_in_a_row = if served { 0 } else { failures_in_a_row + 1 };
        slots.lock().expect("slots lock")[id].restarts += 1;
        warn!(worker = id, pid, status = ?status.ok(), "worker exited; starting a new one");
        if failures_in_a_row > 0 {
            // A worker that dies before serving would only die again at once.
            tokio::time::sleep(backoff(failures_in_a_row)).await;
        }
    }
}

/// Pause before restarting a worker that keeps failing to start.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(200 * u64::from(failures.min(25)))
}

/// Waits until every worker accepts connections. Fails if that takes too
/// long, or if the master is told to stop meanwhile.
async fn wait_until_ready(
    region: &'static SharedRegion,
    slots: &Slots,
    processes: usize,
    stop: &Shutdown,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        let ready = {
            let slots = slots.lock().expect("slots lock");
            (1..=processes)
                .filter(|&id| {
                    slots[id]
                        .pid
                        .is_some_and(|pid| region.metrics(id).ready_pid() == pid)
                })
                .count()
        };
        if ready == processes {
            return Ok(());
        }
        if stop.is_requested() {
            bail!("stopped while starting workers");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("only {ready} of {processes} workers started within {STARTUP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM/SIGINT stop everything; SIGHUP goes on to the workers (and
/// refreshes the backend list the master's stats show, and the cluster
/// keys of the master's receiver).
async fn forward_signals(
    region: &'static SharedRegion,
    slots: Slots,
    trigger: shutdown::Trigger,
    backends: Arc<crate::proxy::pool::BackendPool>,
    keys: Option<Arc<crate::sync::keys::Keys>>,
    args: Vec<OsString>,
) {
    use tokio::signal::unix::{signal as watch, SignalKind};
    let mut hangup = match watch(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(e) => {
            warn!("cannot watch SIGHUP: {e}");
            let _ = shutdown::termination_signal().await;
            trigger.trigger();
            return;
        }
    };
    let termination = shutdown::termination_signal();
    tokio::pin!(termination);
    loop {
        tokio::select! {
            signal = &mut termination => {
                match signal {
                    Ok(name) => info!(signal = name, "termination requested; stopping workers"),
                    Err(error) => warn!(%error, "cannot watch for signals; stopping"),
                }
                crate::systemd::stopping();
                trigger.trigger();
                return;
            }
            _ = hangup.recv() => {
                let workers: Vec<(usize, u32)> = slots
                    .lock()
                    .expect("slots lock")
                    .iter()
                    .enumerate()
                    .filter_map(|(id, slot)| Some((id, slot.pid?)))
                    .collect();
                info!(workers = workers.len(), "SIGHUP: asking workers to reload");
                crate::systemd::reloading();
                for (id, pid) in workers {
                    tokio::spawn(hang_up_when_ready(region, Arc::clone(&slots), id, pid));
                }
                // Each worker applies the reload itself and says so on
                // stderr; the master's part is its own backend list.
                match crate::reload::read_config(&args) {
                    Ok(config) => {
                        backends.replace(&config.backends);
                        if let Some(keys) = &keys {
                            keys.reload_and_log(config.cluster.key.as_ref());
                        }
                        crate::systemd::reloaded(true);
                    }
                    Err(e) => {
                        warn!("SIGHUP: configuration not re-read: {e:#}");
                        crate::systemd::reloaded(false);
                    }
                }
            }
        }
    }
}

/// Passes SIGHUP on to worker `id` (pid `pid`) once it is ready. A worker
/// reloads on SIGHUP from the moment it watches for it, which it does
/// before it reports ready; a SIGHUP before that would kill it (the
/// master's own handler, unlike an ignored signal, does not survive
/// `exec`). A worker that started after the change has read it already,
/// and reloading it once more changes nothing.
async fn hang_up_when_ready(region: &'static SharedRegion, slots: Slots, id: usize, pid: u32) {
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    while region.metrics(id).ready_pid() != pid {
        let replaced = slots.lock().expect("slots lock")[id].pid != Some(pid);
        if replaced {
            // Its replacement reads the configuration as it starts.
            return;
        }
        if tokio::time::Instant::now() > deadline {
            warn!(
                worker = id,
                pid, "SIGHUP not passed on: the worker never became ready"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(pid, libc::SIGHUP);
}

/// Signals one of this master's workers.
fn signal(pid: u32, signal: libc::c_int) {
    crate::sys::process::signal(pid, signal);
}

/// Self-signed certificates made once by the master, so that every worker
/// serves the same one (and sessions resume across workers), in a private
/// directory removed when the master exits.
struct GeneratedCertificates {
    dir: PathBuf,
}

impl GeneratedCertificates {
    fn for_config(config: &Config) -> Result<Option<GeneratedCertificates>> {
        if config.https.iter().all(|s| s.certificate.is_some()) {
            return Ok(None);
        }
        let dir = std::env::temp_dir().join(format!("cachet-{}", std::process::id()));
        create_private_dir(&dir)?;
        let generated = GeneratedCertificates { dir };
        for (index, socket) in config.https.iter().enumerate() {
            if socket.certificate.is_some() {
                continue;
            }
            let (chain, key) = crate::tls::certs::self_signed_pem(socket.addr)?;
            let files = handoff::generated_certificate(&generated.dir, index);
            write_private(&files.chain, chain.as_bytes())?;
            write_private(&files.key, key.as_bytes())?;
        }
        Ok(Some(generated))
    }
}

impl Drop for GeneratedCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
