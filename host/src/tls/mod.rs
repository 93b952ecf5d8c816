//! rustls server configurations: one per (https socket, certificate), chosen
//! per connection from the ClientHello's SNI name.
//!
//! Choosing a whole `ServerConfig` (rather than only a certificate inside one
//! config) is what lets each certificate have its own session storage
//! namespace: rustls hands session storage the bare session id, with no hint
//! of which certificate was served.

pub mod certs;
pub mod cipher_order;
pub mod context;
pub mod hkdf;
pub mod variants;

use std::sync::{Arc, RwLock};

use anyhow::{anyhow, bail, Context, Result};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use tracing::info;

pub use certs::Identity;
pub use context::SessionContext;
pub use variants::Variants;

use crate::config::{HttpsSocket, SniCertificate};
use crate::store::{ContextStorage, SessionStore};

/// ALPN protocols offered, preferred first (rustls picks the first of ours
/// the client offers). `http/1.0` is there because a client offering only
/// that (`curl --http1.0`) would otherwise get a `no_application_protocol`
/// alert; nginx accepts it too. hyper serves both HTTP/1 versions.
pub const ALPN: [&[u8]; 3] = [b"h2", b"http/1.1", b"http/1.0"];

/// Where rustls keeps sessions.
#[derive(Clone, Copy, Debug)]
pub enum Sessions<'a> {
    /// rustls' defaults: a per-configuration in-memory store.
    RustlsDefault,
    /// The session cache, namespaced by context.
    Cache(&'a SessionStore),
}

impl<'a> Sessions<'a> {
    /// The cache when the router has one (`store`) and is told to keep
    /// sessions there (`ssl-sessions-use-cache`); rustls' defaults
    /// otherwise.
    pub fn chosen(store: Option<&'a SessionStore>, use_cache: bool) -> Self {
        match store {
            Some(store) if use_cache => Sessions::Cache(store),
            _ => Sessions::RustlsDefault,
        }
    }
}

/// A certificate ready to serve, with its session namespace. (Cheap to
/// clone: a connection keeps the one it started with.)
#[derive(Clone, Debug)]
pub struct Site {
    /// The rustls configurations, by what the ClientHello offers.
    pub configs: Variants,
    pub context: SessionContext,
    /// The session cache's view for this context, when sessions live there
    /// (the same storage as `config.session_storage`): what a connection
    /// asks before rustls, to pull an offered session from the cluster.
    pub sessions: Option<Arc<ContextStorage>>,
    /// Whether the configuration serves TLS 1.3 (its cipher suites may
    /// name TLS 1.2 ones only): what a client will resume with.
    pub tls13: bool,
}

/// Everything one https socket serves at a given moment: the socket's own
/// certificate and one per `sni` entry. Immutable; a reload builds new
/// [`Sites`] and swaps them into the [`Endpoint`].
#[derive(Debug)]
pub struct Sites {
    default: Site,
    /// Lower-case names or `*.suffix` patterns, in configuration order.
    sni: Vec<(String, Site)>,
    /// The default site's certificate and key, kept so that a reload of a
    /// socket that names no certificate serves the same one (and its
    /// sessions): a self-signed certificate is generated only once.
    identity: Identity,
}

/// One https socket's TLS side. The [`Sites`] it serves can be replaced
/// while connections are open ([`Endpoint::replace`]): each new connection
/// reads the current ones once, at its ClientHello, and keeps them for its
/// whole life, so a reload never disturbs an open connection.
#[derive(Debug)]
pub struct Endpoint {
    /// The socket as configured (`addr` as written, so port 0 stays 0): a
    /// reload matches the new configuration's sockets against it.
    socket: HttpsSocket,
    sites: RwLock<Arc<Sites>>,
}

/// Settings shared by every configuration of a socket.
struct SiteBuilder<'a> {
    socket: &'a HttpsSocket,
    /// The suites in the router's order, and with ChaCha20 first.
    provider: Arc<CryptoProvider>,
    chacha_first: Arc<CryptoProvider>,
    /// `client_ca`'s certificates, read once for every configuration of
    /// the socket.
    client_roots: Option<Arc<RootCertStore>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    explicit_context: Option<&'a str>,
    sessions: Sessions<'a>,
    /// The sites being replaced: a site whose session context is unchanged
    /// keeps their session storage, so its sessions still resume.
    previous: Option<&'a Sites>,
}

impl Endpoint {
    /// Builds the socket's default site and one site per `sni` entry.
    pub fn build(
        socket: &HttpsSocket,
        sni: &[SniCertificate],
        explicit_context: Option<&str>,
        sessions: Sessions<'_>,
    ) -> Result<Self> {
        let sites = Sites::build(socket, sni, explicit_context, sessions, None)?;
        Ok(Self {
            socket: socket.clone(),
            sites: RwLock::new(Arc::new(sites)),
        })
    }

    /// The socket this endpoint was built for, as configured.
    pub fn socket(&self) -> &HttpsSocket {
        &self.socket
    }

    /// What the endpoint serves now.
    pub fn current(&self) -> Arc<Sites> {
        let sites = self
            .sites
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Arc::clone(&sites)
    }

    /// The configuration and the session cache's view for a ClientHello's
    /// server name, read together (a reload between two reads could
    /// otherwise pair one site's sessions with another's configuration).
    pub fn site_for(&self, server_name: Option<&str>) -> Site {
        self.current().select(server_name).clone()
    }

    /// Builds what this endpoint would serve under `socket`, `sni` and
    /// `explicit_context`, without serving it yet. Sites whose session
    /// context does not change keep their session storage. When `socket`
    /// names no certificate, the one served now is kept (a self-signed
    /// certificate is not generated anew).
    pub fn rebuild(
        &self,
        socket: &HttpsSocket,
        sni: &[SniCertificate],
        explicit_context: Option<&str>,
        sessions: Sessions<'_>,
    ) -> Result<Sites> {
        let current = self.current();
        Sites::build(socket, sni, explicit_context, sessions, Some(&current))
    }

    /// Serves `sites` to every connection from now on; connections already
    /// open keep what they started with. Returns what was served before.
    pub fn replace(&self, sites: Sites) -> Arc<Sites> {
        let mut current = self
            .sites
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        std::mem::replace(&mut *current, Arc::new(sites))
    }
}

impl Sites {
    fn build(
        socket: &HttpsSocket,
        sni: &[SniCertificate],
        explicit_context: Option<&str>,
        sessions: Sessions<'_>,
        previous: Option<&Sites>,
    ) -> Result<Self> {
        let provider = provider_for(socket.ciphers.as_deref())?;
        let chacha_first = Arc::new(cipher_order::chacha_first(&provider));
        let provider = Arc::new(provider);
        let versions = versions_of(&provider);
        let client_roots = socket
            .client_ca
            .as_deref()
            .map(|path| certs::load_roots(path).map(Arc::new))
            .transpose()?;
        let builder = SiteBuilder {
            socket,
            provider,
            chacha_first,
            client_roots,
            versions,
            explicit_context,
            sessions,
            previous,
        };
        let identity = match (&socket.certificate, previous) {
            (Some(files), _) => {
                certs::load(files).with_context(|| format!("https {}", socket.addr))?
            }
            (None, Some(previous)) => previous.identity.clone(),
            (None, None) => certs::self_signed(socket.addr)?,
        };
        let default =
            builder
                .site(identity.clone(), None)
                .with_context(|| match &socket.certificate {
                    Some(files) => format!("https {} ({})", socket.addr, files),
                    None => format!("https {}", socket.addr),
                })?;
        let sni = sni
            .iter()
            .map(|entry| {
                let identity = certs::load(&entry.certificate)?;
                let site = builder
                    .site(identity, Some(&entry.name))
                    .with_context(|| format!("sni {} ({})", entry.name, entry.certificate))?;
                Ok((entry.name.clone(), site))
            })
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("sni for https {}", socket.addr))?;
        Ok(Self {
            default,
            sni,
            identity,
        })
    }

    /// The site for a ClientHello's server name: an exact `sni` name first,
    /// then the first matching `*.` pattern, else the socket's certificate.
    pub fn select(&self, server_name: Option<&str>) -> &Site {
        // Without `sni` entries, no name to lower-case (one allocation per
        // connection saved).
        let Some(name) = server_name
            .filter(|_| !self.sni.is_empty())
            .map(str::to_ascii_lowercase)
        else {
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

    /// Every site: the default first, then the `sni` ones in order.
    pub fn all(&self) -> impl Iterator<Item = &Site> {
        std::iter::once(&self.default).chain(self.sni.iter().map(|(_, site)| site))
    }
}

impl SiteBuilder<'_> {
    fn site(&self, identity: Identity, sni_name: Option<&str>) -> Result<Site> {
        let context = SessionContext::derive(self.explicit_context, sni_name, &identity.chain);
        let mut config = self.config(&self.provider, identity.clone())?;
        let chacha_first = self.config(&self.chacha_first, identity)?;
        // rustls' default ticketer never produces stateless tickets, so with
        // the cache on (and `ssl-session-tickets = cache`), TLS 1.3 tickets
        // are stateful and land in the cache like TLS 1.2 session ids do.
        // On a reload, a site whose context is unchanged keeps the storage it had (with rustls' in-memory default
        // too), so its sessions keep resuming; a new certificate means a new
        // context, under which older sessions are never found.
        let kept = self.previous.and_then(|previous| {
            previous
                .all()
                .find(|site| site.context == context)
                .map(|site| {
                    (
                        Arc::clone(&site.configs.config().session_storage),
                        site.sessions.clone(),
                    )
                })
        });
        let mut sessions = None;
        if let Some((storage, kept_sessions)) = kept {
            config.session_storage = storage;
            sessions = kept_sessions;
        } else if let Sessions::Cache(store) = self.sessions {
            let storage = store.for_context(&context.0);
            config.session_storage = storage.clone();
            sessions = Some(storage);
        }
        // With cluster ticket keys (`ssl-session-tickets = keys`), TLS 1.2
        // and 1.3 tickets are stateless: sealed by the ticketer, stored
        // nowhere, opened on any router of the cluster. (rustls then keeps
        // 0-RTT off: stateless tickets cannot be made single-use.)
        if let Sessions::Cache(store) = self.sessions {
            if let Some(ticketer) = store.ticketer() {
                config.ticketer = ticketer;
            }
        }
        info!(
            socket = %self.socket.addr,
            sni = sni_name.unwrap_or("-"),
            context = %context.hex(),
            "tls certificate loaded"
        );
        Ok(Site {
            configs: Variants::new(config, chacha_first),
            context,
            sessions,
            tls13: self.versions.contains(&&rustls::version::TLS13),
        })
    }

    /// The socket's settings over `provider`'s suites, serving `identity`
    /// (session storage and ticketer are the site's to set).
    fn config(&self, provider: &Arc<CryptoProvider>, identity: Identity) -> Result<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
            .with_protocol_versions(&self.versions)
            .context("no usable protocol version for these cipher suites")?;
        let builder = match (&self.socket.client_ca, &self.client_roots) {
            (Some(path), Some(roots)) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::clone(roots),
                    Arc::clone(provider),
                )
                .build()
                .with_context(|| format!("client CA `{}`", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(identity.chain, identity.key)
            .context("the private key does not suit the certificate")?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// aws-lc-rs with the cipher suites named in `ciphers` (colon-separated
/// IANA names as rustls spells them, e.g. `TLS13_AES_128_GCM_SHA256:
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`) in that order, or its
/// defaults in the router's order ([`cipher_order`]); TLS 1.3 suites run
/// their key schedule as [`hkdf`] does.
fn provider_for(ciphers: Option<&str>) -> Result<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    let Some(ciphers) = ciphers else {
        cipher_order::default_order(&mut provider.cipher_suites);
        hkdf::with_precomputed_hmac_keys(&mut provider.cipher_suites);
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
    hkdf::with_precomputed_hmac_keys(&mut provider.cipher_suites);
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
    use crate::config::CertificateFiles;

    #[test]
    fn cipher_names_are_checked() {
        let provider = provider_for(Some("TLS13_AES_128_GCM_SHA256")).unwrap();
        assert_eq!(provider.cipher_suites.len(), 1);
        assert_eq!(versions_of(&provider), [&rustls::version::TLS13]);
        let error = provider_for(Some("HIGH:!aNULL")).unwrap_err().to_string();
        assert!(error.contains("`HIGH`"), "{error}");
    }

    fn no_certificate() -> HttpsSocket {
        HttpsSocket {
            addr: "127.0.0.1:0".parse().unwrap(),
            certificate: None,
            ciphers: None,
            client_ca: None,
        }
    }

    #[test]
    fn sni_selection() {
        let endpoint =
            Endpoint::build(&no_certificate(), &[], None, Sessions::RustlsDefault).unwrap();
        let current = endpoint.current();
        let site = |context: u8| Site {
            configs: current.default.configs.clone(),
            context: SessionContext([context; 16]),
            sessions: None,
            tls13: true,
        };
        let sites = Sites {
            default: site(0),
            sni: vec![
                ("*.example.com".to_owned(), site(1)),
                ("a.example.com".to_owned(), site(2)),
            ],
            identity: current.identity.clone(),
        };
        let pick = |name| sites.select(name).context.0[0];
        assert_eq!(pick(None), 0);
        assert_eq!(pick(Some("A.Example.com")), 2);
        assert_eq!(pick(Some("b.example.com")), 1);
        assert_eq!(pick(Some("x.b.example.com")), 0);
        assert_eq!(pick(Some("example.com")), 0);
    }

    /// A certificate and key for `localhost` in fresh files.
    fn certificate_files(tag: &str) -> CertificateFiles {
        let dir = std::env::temp_dir().join(format!(
            "cachet-tls-test-{}-{tag}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let files = CertificateFiles {
            chain: dir.join("crt.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.chain, generated.cert.pem()).unwrap();
        std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
        files
    }

    /// The sites `endpoint` would serve for `socket` now, without SNI
    /// certificates or Redis.
    fn rebuild(endpoint: &Endpoint, socket: &HttpsSocket) -> Sites {
        endpoint
            .rebuild(socket, &[], None, Sessions::RustlsDefault)
            .unwrap()
    }

    /// `a` resumes what `b` issued: one session context, one store.
    fn assert_same_sessions(a: &Site, b: &Site) {
        assert_eq!(a.context, b.context);
        assert!(Arc::ptr_eq(
            &a.configs.config().session_storage,
            &b.configs.config().session_storage
        ));
    }

    #[test]
    fn a_rebuild_keeps_the_generated_certificate_and_its_sessions() {
        let socket = no_certificate();
        let endpoint = Endpoint::build(&socket, &[], None, Sessions::RustlsDefault).unwrap();
        let before = endpoint.current();
        let rebuilt = rebuild(&endpoint, &socket);
        assert_same_sessions(&rebuilt.default, &before.default);
        endpoint.replace(rebuilt);
        // What a connection already holds is untouched by the swap.
        assert_eq!(before.default.context, endpoint.current().default.context);
        assert!(!Arc::ptr_eq(&before, &endpoint.current()));
    }

    #[test]
    fn a_new_certificate_is_a_new_context_with_new_storage() {
        let files = certificate_files("swap");
        let socket = HttpsSocket {
            certificate: Some(files.clone()),
            ..no_certificate()
        };
        let endpoint = Endpoint::build(&socket, &[], None, Sessions::RustlsDefault).unwrap();
        let before = endpoint.current();

        // Same files: same context, same storage.
        let same = rebuild(&endpoint, &socket);
        assert_same_sessions(&same.default, &before.default);

        // New certificate in the same files.
        let other = certificate_files("swap-other");
        std::fs::copy(&other.chain, &files.chain).unwrap();
        std::fs::copy(&other.key, &files.key).unwrap();
        let swapped = rebuild(&endpoint, &socket);
        assert_ne!(swapped.default.context, before.default.context);
        assert!(!Arc::ptr_eq(
            &swapped.default.configs.config().session_storage,
            &before.default.configs.config().session_storage
        ));

        // A key that is not a key: the rebuild fails naming the file, and
        // the endpoint still serves what it served.
        std::fs::write(&files.key, "not a key").unwrap();
        let error = endpoint
            .rebuild(&socket, &[], None, Sessions::RustlsDefault)
            .unwrap_err();
        assert!(
            format!("{error:#}").contains(&files.key.display().to_string()),
            "{error:#}"
        );
        assert_eq!(endpoint.current().default.context, before.default.context);
        let _ = std::fs::remove_dir_all(files.chain.parent().unwrap());
        let _ = std::fs::remove_dir_all(other.chain.parent().unwrap());
    }
}
