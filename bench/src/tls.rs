//! The clients' rustls configuration.
//!
//! Every client gets its own copy of one base [`ClientConfig`] with its own
//! session store, as every browser has its own: a client offers only what
//! it was given. The store is keyed by server name, so with one SNI name
//! over several targets a client offers a session from whichever target
//! issued it, which is what cross-node resumption needs.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::options::{Options, TlsVersion, Trust};

/// Sessions (TLS 1.2) or tickets (TLS 1.3) each client keeps, per server
/// name: rustls offers the newest.
const SESSIONS_PER_CLIENT: usize = 8;

/// The configuration every client starts from.
pub fn base_config(options: &Options) -> Result<ClientConfig> {
    config_with_provider(options, Arc::new(aws_lc_rs::default_provider()))
}

/// The same, over another crypto provider (the ticket race's replayable
/// one), without resumption.
pub fn config_with_provider(
    options: &Options,
    provider: Arc<CryptoProvider>,
) -> Result<ClientConfig> {
    let version: &'static rustls::SupportedProtocolVersion = match options.settings.tls {
        TlsVersion::V12 => &rustls::version::TLS12,
        TlsVersion::V13 => &rustls::version::TLS13,
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[version])
        .context("building the TLS client configuration")?;
    let mut config = match &options.trust {
        Trust::Roots(path) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        Trust::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    // The requests are hand-written HTTP/1.1; saying so keeps a router that
    // prefers h2 from choosing it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// One client's configuration: the base with a session store of its own
/// when resuming.
pub fn client_config(base: &ClientConfig, resume: bool) -> Arc<ClientConfig> {
    let mut config = base.clone();
    config.resumption = if resume {
        Resumption::in_memory_sessions(SESSIONS_PER_CLIENT)
    } else {
        Resumption::disabled()
    };
    Arc::new(config)
}

fn roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading CA certificates from {}", path.display()))?;
    for cert in certs {
        let cert =
            cert.with_context(|| format!("parsing CA certificates in {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("a CA certificate in {} is unusable", path.display()))?;
    }
    if roots.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(roots)
}

/// `--insecure`: any certificate chain is accepted, but handshake
/// signatures are still checked, so a handshake costs the client what a
/// verified one costs, minus the chain walk.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("missing.pem", None),
            ("empty.pem", Some("not a certificate\n")),
        ] {
            let file = dir.path().join(name);
            if let Some(text) = text {
                std::fs::write(&file, text).unwrap();
            }
            let error = format!("{:#}", roots(&file).unwrap_err());
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn insecure_config_builds_for_both_versions() {
        for tls in [TlsVersion::V12, TlsVersion::V13] {
            let mut options = Options::default();
            options.settings.tls = tls;
            let base = base_config(&options).unwrap();
            assert_eq!(base.alpn_protocols, [b"http/1.1".to_vec()]);
            client_config(&base, true);
        }
    }
}
