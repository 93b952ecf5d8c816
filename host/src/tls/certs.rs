//! Loading PEM certificate chains and keys, and the self-signed fallback.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;
use tracing::warn;

use crate::config::CertificateFiles;

/// A certificate chain (leaf first) and its private key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Reads a PEM chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load(files: &CertificateFiles) -> Result<Identity> {
    Ok(Identity {
        chain: load_chain(&files.chain)?,
        key: PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
            format!(
                "cannot read a private key from `{}` (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                files.key.display()
            )
        })?,
    })
}

/// Reads every certificate of a PEM file, in order.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("cannot read certificates from `{}`", path.display()))?;
    if chain.is_empty() {
        bail!("`{}` holds no PEM CERTIFICATE", path.display());
    }
    Ok(chain)
}

/// Reads the CAs that client certificates must chain to.
pub fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in load_chain(path)? {
        roots
            .add(certificate)
            .with_context(|| format!("unusable CA certificate in `{}`", path.display()))?;
    }
    Ok(roots)
}

/// A fresh self-signed certificate for `localhost` and the socket's address,
/// so that a first run needs no files. Clients must be told to accept it
/// (`curl -k`), and every start makes a new one.
pub fn self_signed(addr: SocketAddr) -> Result<Identity> {
    let generated = generate_self_signed(addr)?;
    warn!(
        socket = %addr,
        "https {addr} has no certificate: serving a self-signed one generated in memory \
         (give ADDR,CRT,KEY for a real one)"
    );
    Ok(Identity {
        chain: vec![generated.cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der()).into(),
    })
}

/// The same, as PEM certificate and key, for a master to share with its
/// workers through files.
pub fn self_signed_pem(addr: SocketAddr) -> Result<(String, String)> {
    let generated = generate_self_signed(addr)?;
    warn!(
        socket = %addr,
        "https {addr} has no certificate: serving a self-signed one generated at startup \
         (give ADDR,CRT,KEY for a real one)"
    );
    Ok((generated.cert.pem(), generated.signing_key.serialize_pem()))
}

fn generate_self_signed(addr: SocketAddr) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>> {
    let mut names = vec!["localhost".to_owned()];
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    rcgen::generate_simple_self_signed(names).context("cannot generate a self-signed certificate")
}
