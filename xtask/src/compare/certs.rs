//! The certificates every server under test presents: one self-signed
//! `localhost` certificate per key type, made with the `openssl` command so
//! that nginx, HAProxy, hitch and cachet load byte-identical files.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// The key types a comparison runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyType {
    EcdsaP256,
    Rsa2048,
}

impl KeyType {
    pub(crate) fn label(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::Rsa2048 => "RSA 2048",
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa",
            KeyType::Rsa2048 => "rsa",
        }
    }

    fn newkey_args(self) -> &'static [&'static str] {
        match self {
            KeyType::EcdsaP256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            KeyType::Rsa2048 => &["-newkey", "rsa:2048"],
        }
    }
}

/// A certificate and its key as separate PEM files, and both in one file
/// (HAProxy and hitch take them that way).
#[derive(Clone, Debug)]
pub(crate) struct Certificate {
    pub key_type: KeyType,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub combined: PathBuf,
}

/// Makes the certificate for `key_type` in `dir`.
pub(crate) fn make(dir: &Path, key_type: KeyType) -> Result<Certificate> {
    let stem = key_type.file_stem();
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let combined = dir.join(format!("{stem}.pem"));
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(key_type.newkey_args())
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("cannot run openssl")?;
    if !output.status.success() {
        return Err(anyhow!(
            "openssl req for {} failed: {}",
            key_type.label(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let read =
        |path: &Path| std::fs::read_to_string(path).with_context(|| format!("{}", path.display()));
    let both = format!("{}{}", read(&cert)?, read(&key)?);
    std::fs::write(&combined, both).with_context(|| format!("{}", combined.display()))?;
    Ok(Certificate {
        key_type,
        cert,
        key,
        combined,
    })
}
