//! A worker process: started by the master (the same binary, re-executed),
//! it maps the shared region, adopts the listening sockets it inherited and
//! serves HTTPS until told to stop.
//!
//! The master passes what a worker needs in its environment:
//!
//! | variable | value |
//! |---|---|
//! | `CACHET_WORKER` | the worker number, from 1 |
//! | `CACHET_SHARED_FD` | descriptor of the shared region |
//! | `CACHET_HTTPS_FDS` | descriptors of the https sockets, in configuration order |
//! | `CACHET_GENERATED_CERTS` | directory of the self-signed certificates the master made |
//!
//! Everything else, the worker reads from the same arguments as the master.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::config::{CertificateFiles, Config};
use crate::shared::SharedRegion;
use crate::{router, shutdown};

pub const WORKER_ENV: &str = "CACHET_WORKER";
pub const SHARED_FD_ENV: &str = "CACHET_SHARED_FD";
pub const HTTPS_FDS_ENV: &str = "CACHET_HTTPS_FDS";
pub const GENERATED_CERTS_ENV: &str = "CACHET_GENERATED_CERTS";

/// Where the master writes the self-signed certificate of https socket
/// `index` (one without a certificate of its own).
pub fn generated_certificate(dir: &std::path::Path, index: usize) -> CertificateFiles {
    CertificateFiles {
        chain: dir.join(format!("https-{index}.crt")),
        key: dir.join(format!("https-{index}.key")),
    }
}

/// Points every https socket without a certificate at the one the master
/// generated for it in `dir`.
pub fn use_generated_certificates(config: &mut Config, dir: &std::path::Path) {
    for (index, socket) in config.https.iter_mut().enumerate() {
        if socket.certificate.is_none() {
            socket.certificate = Some(generated_certificate(dir, index));
        }
    }
}

/// This process's worker number, when it was started as a worker.
pub fn number() -> Option<usize> {
    std::env::var(WORKER_ENV).ok()?.parse().ok()
}

/// Serves as worker `id` until SIGTERM or SIGINT (or the master's death).
pub fn run(mut config: Config, id: usize) -> Result<()> {
    die_with_master()?;
    let shared = take_fd(SHARED_FD_ENV)?;
    let region: &'static SharedRegion = Box::leak(Box::new(SharedRegion::open(shared, id)?));
    let fds = std::env::var(HTTPS_FDS_ENV).with_context(|| format!("{HTTPS_FDS_ENV} not set"))?;
    let https: Vec<TcpListener> = fds
        .split(',')
        .map(|fd| adopt(fd).map(TcpListener::from))
        .collect::<Result<_>>()?;
    if https.len() != config.https.len() {
        bail!(
            "{HTTPS_FDS_ENV} names {} sockets, the configuration {}",
            https.len(),
            config.https.len()
        );
    }
    if let Ok(dir) = std::env::var(GENERATED_CERTS_ENV) {
        use_generated_certificates(&mut config, &PathBuf::from(dir));
    }

    shutdown::worker_runtime()?.block_on(async {
        let stop = shutdown::on_termination_signal();
        let metrics = region.metrics(id);
        let keys = crate::sync::keys(&config, region, id);
        let cluster = crate::sync::start_outbound(&config, region, metrics, keys.as_ref(), &stop)?;
        let store = router::session_store(&config, region, metrics, cluster, &stop);
        let proxy = router::proxy(&config, metrics)?;
        // Telling the master this worker accepts connections.
        let ready = || metrics.set_ready(std::process::id());
        router::serve_https(
            &config,
            https,
            store,
            proxy,
            stop,
            router::Listening::Quiet,
            ready,
        )
        .await
    })
}

/// Asks the kernel to send SIGTERM when the master dies, so that workers
/// never outlive it (and keep its sockets) after a `kill -9`.
fn die_with_master() -> Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes
    // nothing but this process's own death signal.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_PDEATHSIG)");
    }
    // The master may have died before the call above took effect.
    if std::os::unix::process::parent_id() == 1 {
        bail!("the master is gone");
    }
    Ok(())
}

fn take_fd(variable: &str) -> Result<OwnedFd> {
    let value = std::env::var(variable).with_context(|| format!("{variable} not set"))?;
    adopt(&value).with_context(|| format!("{variable} = {value}"))
}

/// Takes ownership of an inherited descriptor named by its number.
fn adopt(number: &str) -> Result<OwnedFd> {
    let fd: RawFd = number
        .trim()
        .parse()
        .map_err(|_| anyhow!("`{number}` is not a file descriptor number"))?;
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("descriptor {fd} was not inherited");
    }
    // SAFETY: the master passed this descriptor to this process for it
    // alone, and it is adopted exactly once (each is named once).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
