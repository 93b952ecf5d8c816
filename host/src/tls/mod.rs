//! rustls server configurations: one per (https socket, certificate), chosen
//! per connection from the ClientHello's SNI name.
//!
//! Choosing a whole `ServerConfig` (rather than only a certificate inside one
//! config) is what lets each certificate have its own session storage
//! namespace: rustls hands session storage the bare session id, with no hint
//! of which certificate was served.

pub mod certs;
pub mod context;

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedProtocolVersion};
use tracing::info;

pub use certs::Identity;
pub use context::SessionContext;

use crate::config::{HttpsSocket, SniCertificate};
use crate::store::SessionStore;

/// ALPN protocols offered, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where rustls keeps sessions.
#[derive(Clone, Copy, Debug)]
pub enum Sessions<'a> {
    /// rustls' defaults: a per-configuration in-memory store.
    RustlsDefault,
    /// The session cache, namespaced by context.
    Cache(&'a SessionStore),
}

/// A certificate ready to serve, with its session namespace.
#[derive(Debug)]
pub struct Site {
    pub config: Arc<ServerConfig>,
    pub context: SessionContext,
}

/// Everything one https socket can serve.
#[derive(Debug)]
pub struct Endpoint {
    default: Site,
    /// Lower-case names or `*.suffix` patterns, in configuration order.
    sni: Vec<(String, Site)>,
}

/// Settings shared by every configuration of a socket.
struct SiteBuilder<'a> {
    socket: &'a HttpsSocket,
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
    explicit_context: Option<&'a str>,
    sessions: Sessions<'a>,
}

impl Endpoint {
    /// Builds the socket's default site and one site per `sni` entry.
    pub fn build(
        socket: &HttpsSocket,
        sni: &[SniCertificate],
        explicit_context: Option<&str>,
        sessions: Sessions<'_>,
    ) -> Result<Self> {
        let provider = Arc::new(provider_for(socket.ciphers.as_deref())?);
        let versions = versions_of(&provider);
        let builder = SiteBuilder {
            socket,
            provider,
            versions,
            explicit_context,
            sessions,
        };
        let identity = match &socket.certificate {
            Some(files) => certs::load(files).with_context(|| format!("https {}", socket.addr))?,
            None => certs::self_signed(socket.addr)?,
        };
        let default = builder
            .site(identity, None)
            .with_context(|| format!("https {}", socket.addr))?;
        let sni = sni
            .iter()
            .map(|entry| {
                let identity = certs::load(&entry.certificate)?;
                Ok((
                    entry.name.clone(),
                    builder.site(identity, Some(&entry.name))?,
                ))
            })
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("sni for https {}", socket.addr))?;
        Ok(Self { default, sni })
    }

    /// The site for a ClientHello's server name: an exact `sni` name first,
    /// then the first matching `*.` pattern, else the socket's certificate.
    pub fn select(&self, server_name: Option<&str>) -> &Site {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return &self.default;
        };
        let exact = self.sni.iter().find(|(pattern, _)| *pattern == name);
        let wildcard = || {
            self.sni.iter().find(|(pattern, _)| {
                pattern.strip_prefix("*.").is_some_and(|suffix| {
                    name.strip_suffix(suffix)
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
                })
            })
        };
        exact
            .or_else(wildcard)
            .map_or(&self.default, |(_, site)| site)
    }
}

impl SiteBuilder<'_> {
    fn site(&self, identity: Identity, sni_name: Option<&str>) -> Result<Site> {
        let context = SessionContext::derive(self.explicit_context, sni_name, &identity.chain);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&self.versions)
            .context("no usable protocol version for these cipher suites")?;
        let builder = match &self.socket.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = certs::load_roots(path)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&self.provider),
                )
                .build()
                .with_context(|| format!("client CA `{}`", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(identity.chain, identity.key)
            .context("the private key does not suit the certificate")?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        // rustls' default ticketer never produces stateless tickets, so with
        // the cache on, TLS 1.3 tickets are stateful and land in the cache
        // like TLS 1.2 session ids do.
        if let Sessions::Cache(store) = self.sessions {
            config.session_storage = store.for_context(&context.0);
        }
        info!(
            socket = %self.socket.addr,
            sni = sni_name.unwrap_or("-"),
            context = %context.hex(),
            "tls certificate loaded"
        );
        Ok(Site {
            config: Arc::new(config),
            context,
        })
    }
}

/// aws-lc-rs with the cipher suites named in `ciphers` (colon-separated
/// IANA names as rustls spells them, e.g. `TLS13_AES_128_GCM_SHA256:
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`), or its defaults.
fn provider_for(ciphers: Option<&str>) -> Result<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    let Some(ciphers) = ciphers else {
        return Ok(provider);
    };
    let available = aws_lc_rs::ALL_CIPHER_SUITES;
    let name_of = |suite: &rustls::SupportedCipherSuite| format!("{:?}", suite.suite());
    provider.cipher_suites = ciphers
        .split(':')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            available
                .iter()
                .find(|suite| name_of(suite).eq_ignore_ascii_case(name))
                .copied()
                .ok_or_else(|| {
                    let known: Vec<String> = available.iter().map(name_of).collect();
                    anyhow!(
                        "unknown cipher suite `{name}` (OpenSSL cipher strings are not \
                         understood); known: {}",
                        known.join(":")
                    )
                })
        })
        .collect::<Result<_>>()?;
    if provider.cipher_suites.is_empty() {
        bail!("the cipher list `{ciphers}` names no cipher suite");
    }
    Ok(provider)
}

/// TLS 1.2 and 1.3, as far as the provider has suites for them.
fn versions_of(provider: &CryptoProvider) -> Vec<&'static SupportedProtocolVersion> {
    [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .filter(|version| {
            provider
                .cipher_suites
                .iter()
                .any(|suite| suite.version() == *version)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_are_checked() {
        let provider = provider_for(Some("TLS13_AES_128_GCM_SHA256")).unwrap();
        assert_eq!(provider.cipher_suites.len(), 1);
        assert_eq!(versions_of(&provider), [&rustls::version::TLS13]);
        let error = provider_for(Some("HIGH:!aNULL")).unwrap_err().to_string();
        assert!(error.contains("`HIGH`"), "{error}");
    }

    #[test]
    fn sni_selection() {
        let socket = HttpsSocket {
            addr: "127.0.0.1:0".parse().unwrap(),
            certificate: None,
            ciphers: None,
            client_ca: None,
        };
        let endpoint = Endpoint::build(&socket, &[], None, Sessions::RustlsDefault).unwrap();
        let site = |context: u8| Site {
            config: Arc::clone(&endpoint.default.config),
            context: SessionContext([context; 16]),
        };
        let endpoint = Endpoint {
            default: site(0),
            sni: vec![
                ("*.example.com".to_owned(), site(1)),
                ("a.example.com".to_owned(), site(2)),
            ],
        };
        let pick = |name| endpoint.select(name).context.0[0];
        assert_eq!(pick(None), 0);
        assert_eq!(pick(Some("A.Example.com")), 2);
        assert_eq!(pick(Some("b.example.com")), 1);
        assert_eq!(pick(Some("x.b.example.com")), 0);
        assert_eq!(pick(Some("example.com")), 0);
    }
}
