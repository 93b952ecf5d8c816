//! What a master hands a worker: the worker's number, the shared region's
//! descriptor, its https sockets' descriptors and where the self-signed
//! certificates it made are, in the worker's environment. Both sides of
//! that contract live here, so neither mode borrows from the other.
//!
//! | variable | value |
//! |---|---|
//! | `CACHET_WORKER` | the worker number, from 1 |
//! | `CACHET_SHARED_FD` | descriptor of the shared region |
//! | `CACHET_HTTPS_FDS` | descriptors of the https sockets, in configuration order |
//! | `CACHET_GENERATED_CERTS` | directory of the self-signed certificates the master made |
//!
//! Everything else, the worker reads from the same arguments as the master.

use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::config::{CertificateFiles, Config};

pub const WORKER_ENV: &str = "CACHET_WORKER";
pub const SHARED_FD_ENV: &str = "CACHET_SHARED_FD";
pub const HTTPS_FDS_ENV: &str = "CACHET_HTTPS_FDS";
pub const GENERATED_CERTS_ENV: &str = "CACHET_GENERATED_CERTS";

/// This process's worker number, when it was started as a worker.
pub fn worker_number() -> Option<usize> {
    std::env::var(WORKER_ENV).ok()?.parse().ok()
}

/// Where the master writes the self-signed certificate of https socket
/// `index` (one without a certificate of its own).
pub fn generated_certificate(dir: &Path, index: usize) -> CertificateFiles {
    CertificateFiles {
        chain: dir.join(format!("https-{index}.crt")),
        key: dir.join(format!("https-{index}.key")),
    }
}

/// Points every https socket without a certificate at the one the master
/// generated for it in `dir`.
pub fn use_generated_certificates(config: &mut Config, dir: &Path) {
    for (index, socket) in config.https.iter_mut().enumerate() {
        if socket.certificate.is_none() {
            socket.certificate = Some(generated_certificate(dir, index));
        }
    }
}

/// Takes the descriptor named in `variable`.
pub fn take_fd(variable: &str) -> Result<OwnedFd> {
    let value = std::env::var(variable).with_context(|| format!("{variable} not set"))?;
    adopt(&value).with_context(|| format!("{variable} = {value}"))
}

/// Takes ownership of an inherited descriptor named by its number.
pub fn adopt(number: &str) -> Result<OwnedFd> {
    let fd: RawFd = number
        .trim()
        .parse()
        .map_err(|_| anyhow!("`{number}` is not a file descriptor number"))?;
    Ok(crate::sys::fd::adopt_inherited(fd)?)
}
