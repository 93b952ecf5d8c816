//! Configuration: uWSGI's option names, none of its traps.
//!
//! Options come from the command line and ini files ([`source`]), are checked
//! against one table ([`options`]) and are turned here into one validated
//! [`Config`]. Every error names the option, the offending value and where it
//! was given; nothing is silently ignored and order never matters.

pub mod options;
pub mod source;

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub use source::{Invocation, Origin, RawOptions, Setting};

/// Default `cache-blocksize`: rustls session values are 70-130 bytes, and
/// 4 KiB leaves room for sessions that carry client certificate chains.
pub const DEFAULT_BLOCKSIZE: usize = 4096;
/// Default `ssl-sessions-timeout`, as in uWSGI.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest `https-session-context` accepted (OpenSSL's SSL_MAX_SID_CTX_LENGTH).
pub const MAX_SESSION_CONTEXT: usize = 32;

/// A configuration error; the message names the option, value and origin.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown option `{name}` ({origin}){suggestion}")]
    Unknown {
        name: String,
        origin: Origin,
        suggestion: String,
    },
    #[error("option `{option}` = `{value}` ({origin}): {reason}")]
    Invalid {
        option: &'static str,
        value: String,
        origin: Origin,
        reason: String,
    },
    #[error("option `{option}` takes one value but is given twice ({first}, {second})")]
    Repeated {
        option: &'static str,
        first: Origin,
        second: Origin,
    },
    #[error("{0}")]
    Usage(String),
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub master: bool,
    /// Each worker accepts on sockets of its own (`SO_REUSEPORT`).
    pub reuse_port: bool,
    pub https: Vec<HttpsSocket>,
    pub sni: Vec<SniCertificate>,
    pub backends: Vec<Backend>,
    pub http_processes: usize,
    /// The session cache, if `cache` is given.
    pub cache: Option<CacheConfig>,
    /// Whether rustls keeps its sessions in the cache (`ssl-sessions-use-cache`).
    pub ssl_sessions_use_cache: bool,
    pub ssl_sessions_timeout: Duration,
    pub https_session_context: Option<String>,
    pub stats: Option<SocketAddr>,
    pub stats_http: Option<SocketAddr>,
    pub cluster: ClusterConfig,
}

/// One `https` socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsSocket {
    pub addr: SocketAddr,
    /// `None`: generate a self-signed certificate at startup.
    pub certificate: Option<CertificateFiles>,
    /// Colon-separated rustls cipher suite names; `None` for rustls' defaults.
    pub ciphers: Option<String>,
    /// Require client certificates signed by the CAs in this PEM file.
    pub client_ca: Option<PathBuf>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// One `sni` entry: a server name (or `*.suffix` pattern) and its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniCertificate {
    /// Lower-case name; a leading `*.` matches exactly one more label.
    pub name: String,
    pub certificate: CertificateFiles,
}

/// One `http-to` backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// As written, for logs, errors and stats.
    pub name: String,
    pub addr: SocketAddr,
    pub protocol: BackendProtocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendProtocol {
    /// uWSGI's binary protocol (bare `host:port`).
    Uwsgi,
    /// HTTP/1.1 (`http://host:port`).
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    pub items: usize,
    pub blocksize: usize,
}

/// The cluster options, validated here and served by the sync subsystem.
#[derive(Clone, Debug, Default)]
pub struct ClusterConfig {
    pub udp_server: Option<SocketAddr>,
    pub udp_nodes: Vec<SocketAddr>,
    pub key: Option<ClusterKey>,
}

/// The 32-byte cluster key. Its `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(pub [u8; 32]);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl Config {
    /// Parses the process arguments (without the program name).
    pub fn from_args<I>(args: I) -> Result<Invocation, ConfigError>
    where
        I: IntoIterator<Item = OsString>,
    {
        source::parse_args(args)
    }

    /// Validates the collected options.
    pub fn from_raw(raw: &RawOptions) -> Result<Config, ConfigError> {
        let switch = |name: &'static str| {
            raw.single(name)
                .map(|setting| parse_switch(name, setting))
                .transpose()
        };
        let config = Config {
            master: switch("master")?.unwrap_or(false),
            reuse_port: switch("reuse-port")?.unwrap_or(false),
            https: raw
                .all("https")
                .iter()
                .map(parse_https)
                .collect::<Result<_, _>>()?,
            sni: raw
                .all("sni")
                .iter()
                .map(parse_sni)
                .collect::<Result<_, _>>()?,
            backends: raw
                .all("http-to")
                .iter()
                .map(parse_backend)
                .collect::<Result<_, _>>()?,
            http_processes: single(raw, "http-processes", |v| parse_count(v, 1, 1024))?
                .unwrap_or(1),
            cache: single(raw, "cache", |v| parse_count(v, 1, 1 << 26))?
                .map(|items| -> Result<_, ConfigError> {
                    Ok(CacheConfig {
                        items,
                        blocksize: single(raw, "cache-blocksize", |v| {
                            parse_count(v, 256, 1 << 20)
                        })?
                        .unwrap_or(DEFAULT_BLOCKSIZE),
                    })
                })
                .transpose()?,
            ssl_sessions_use_cache: switch("ssl-sessions-use-cache")?.unwrap_or(false),
            ssl_sessions_timeout: single(raw, "ssl-sessions-timeout", |v| {
                parse_count(v, 1, 7 * 24 * 3600).map(|secs| Duration::from_secs(secs as u64))
            })?
            .unwrap_or(DEFAULT_SESSION_TIMEOUT),
            https_session_context: single(raw, "https-session-context", parse_context)?,
            stats: single(raw, "stats", parse_addr)?,
            stats_http: single(raw, "stats-http", parse_addr)?,
            cluster: ClusterConfig {
                udp_server: single(raw, "cache-udp-server", parse_addr)?,
                udp_nodes: raw
                    .all("cache-udp-node")
                    .iter()
                    .map(|s| with_origin("cache-udp-node", s, parse_addr(&s.value)))
                    .collect::<Result<_, _>>()?,
                key: raw
                    .single("cache-udp-key")
                    .map(parse_cluster_key)
                    .transpose()?,
            },
        };
        config.check_combinations(raw)?;
        Ok(config)
    }

    /// Rules that involve more than one option.
    fn check_combinations(&self, raw: &RawOptions) -> Result<(), ConfigError> {
        if self.https.is_empty() {
            return Err(ConfigError::Usage(
                "no `https` socket: add e.g. `--https 127.0.0.1:8443,crt.pem,key.pem` \
                 (or just `--https 127.0.0.1:8443` for a self-signed certificate)"
                    .to_owned(),
            ));
        }
        if self.ssl_sessions_use_cache && self.cache.is_none() {
            return Err(ConfigError::Usage(
                "option `ssl-sessions-use-cache` needs a cache to use: add `cache = ITEMS`"
                    .to_owned(),
            ));
        }
        if self.cache.is_none() {
            if let Some(setting) = raw.single("cache-blocksize") {
                return Err(invalid(
                    "cache-blocksize",
                    setting,
                    "there is no cache to size: add `cache = ITEMS`",
                ));
            }
        }
        let syncs = self.cluster.udp_server.is_some() || !self.cluster.udp_nodes.is_empty();
        if syncs && self.cluster.key.is_none() {
            return Err(ConfigError::Usage(
                "`cache-udp-server`/`cache-udp-node` need `cache-udp-key = FILE`: session \
                 values hold master secrets and never travel in clear. Make a key with \
                 `cachet keygen > cluster.key` and give every router the same file"
                    .to_owned(),
            ));
        }
        if syncs && !(self.cache.is_some() && self.ssl_sessions_use_cache) {
            return Err(ConfigError::Usage(
                "`cache-udp-server`/`cache-udp-node` replicate the TLS session cache: \
                 add `cache = ITEMS` and `ssl-sessions-use-cache = true`"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

fn invalid(option: &'static str, setting: &Setting, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        value: setting.value.clone(),
        origin: setting.origin.clone(),
        reason: reason.into(),
    }
}

fn with_origin<T>(
    option: &'static str,
    setting: &Setting,
    result: Result<T, String>,
) -> Result<T, ConfigError> {
    result.map_err(|reason| invalid(option, setting, reason))
}

/// Parses a single-valued option with `parse`, attaching its origin on error.
fn single<T>(
    raw: &RawOptions,
    option: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    raw.single(option)
        .map(|setting| with_origin(option, setting, parse(&setting.value)))
        .transpose()
}

fn parse_switch(option: &'static str, setting: &Setting) -> Result<bool, ConfigError> {
    source::parse_bool(&setting.value)
        .ok_or_else(|| invalid(option, setting, "expected true or false"))
}

fn parse_count(value: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: usize = value
        .parse()
        .map_err(|_| "expected a whole number".to_owned())?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between {min} and {max}"))
    }
}

/// Parses a listening or backend address: `ip:port`, `[v6]:port`,
/// `name:port`, or uWSGI's `:port` for every IPv4 interface.
pub fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| "expected a port number after `:`".to_owned())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    if !value.contains(':') {
        return Err("expected HOST:PORT".to_owned());
    }
    value
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve: {error}"))?
        .next()
        .ok_or_else(|| "the name resolves to no address".to_owned())
}

/// Checks that a file named in an option exists, so a typo fails at startup.
fn existing_file(
    setting: &Setting,
    option: &'static str,
    name: &str,
) -> Result<PathBuf, ConfigError> {
    let path = setting.path(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(invalid(
            option,
            setting,
            format!("file `{}` does not exist or is not a file", path.display()),
        ))
    }
}

fn parse_https(setting: &Setting) -> Result<HttpsSocket, ConfigError> {
    let fields: Vec<&str> = setting.value.split(',').map(str::trim).collect();
    if fields.len() > 5 {
        return Err(invalid(
            "https",
            setting,
            "expected ADDR[,CRT,KEY[,CIPHERS[,CLIENT_CA]]]",
        ));
    }
    let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
    let addr = with_origin("https", setting, parse_addr(fields[0]))?;
    let certificate = match (field(1), field(2)) {
        (None, None) => None,
        (Some(chain), Some(key)) => Some(CertificateFiles {
            chain: existing_file(setting, "https", chain)?,
            key: existing_file(setting, "https", key)?,
        }),
        _ => {
            return Err(invalid(
                "https",
                setting,
                "a certificate needs both CRT and KEY",
            ))
        }
    };
    let client_ca = field(4)
        .map(|ca| existing_file(setting, "https", ca))
        .transpose()?;
    if certificate.is_none() && (field(3).is_some() || client_ca.is_some()) {
        return Err(invalid(
            "https",
            setting,
            "ciphers and a client CA need a certificate: ADDR,CRT,KEY,CIPHERS,CLIENT_CA",
        ));
    }
    Ok(HttpsSocket {
        addr,
        certificate,
        ciphers: field(3).map(str::to_owned),
        client_ca,
    })
}

fn parse_sni(setting: &Setting) -> Result<SniCertificate, ConfigError> {
    let Some((name, files)) = setting.value.split_once(char::is_whitespace) else {
        return Err(invalid("sni", setting, "expected `NAME CRT,KEY`"));
    };
    let name = name.to_ascii_lowercase();
    let bare = name.strip_prefix("*.").unwrap_or(&name);
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !bare.split('.').all(valid_label) {
        return Err(invalid(
            "sni",
            setting,
            format!("`{name}` is not a DNS name or `*.` pattern"),
        ));
    }
    let Some((chain, key)) = files.trim().split_once(',') else {
        return Err(invalid("sni", setting, "expected `NAME CRT,KEY`"));
    };
    Ok(SniCertificate {
        name,
        certificate: CertificateFiles {
            chain: existing_file(setting, "sni", chain.trim())?,
            key: existing_file(setting, "sni", key.trim())?,
        },
    })
}

fn parse_backend(setting: &Setting) -> Result<Backend, ConfigError> {
    let value = setting.value.as_str();
    let (protocol, authority) = match value.split_once("://") {
        None => (BackendProtocol::Uwsgi, value),
        Some(("http", rest)) => (BackendProtocol::Http, rest.trim_end_matches('/')),
        Some((scheme, _)) => {
            return Err(invalid(
                "http-to",
                setting,
                format!("unsupported scheme `{scheme}`: use HOST:PORT (uwsgi) or http://HOST:PORT"),
            ))
        }
    };
    if authority.contains('/') {
        return Err(invalid(
            "http-to",
            setting,
            "a backend is an address without a path",
        ));
    }
    let addr = with_origin("http-to", setting, parse_addr(authority))?;
    Ok(Backend {
        name: value.to_owned(),
        addr,
        protocol,
    })
}

fn parse_context(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > MAX_SESSION_CONTEXT {
        return Err(format!("must be 1 to {MAX_SESSION_CONTEXT} bytes long"));
    }
    Ok(value.to_owned())
}

fn parse_cluster_key(setting: &Setting) -> Result<ClusterKey, ConfigError> {
    let path = existing_file(setting, "cache-udp-key", &setting.value)?;
    let text = std::fs::read_to_string(&path).map_err(|error| {
        invalid(
            "cache-udp-key",
            setting,
            format!("cannot read `{}`: {error}", path.display()),
        )
    })?;
    let hex = text.trim();
    let malformed = || {
        invalid(
            "cache-udp-key",
            setting,
            format!(
                "`{}` must hold exactly 64 hex characters (a 32-byte key)",
                path.display()
            ),
        )
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(malformed());
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| malformed())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
    }
    Ok(ClusterKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        match Config::from_args(args.iter().map(OsString::from))? {
            Invocation::Run(raw) => Config::from_raw(&raw),
            other => panic!("expected options, got {other:?}"),
        }
    }

    #[test]
    fn minimal_command_line() {
        let config = config(&["--https", "127.0.0.1:0", "--http-to", "127.0.0.1:3031"]).unwrap();
        assert_eq!(config.https[0].addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.https[0].certificate, None);
        assert_eq!(config.backends[0].protocol, BackendProtocol::Uwsgi);
        assert_eq!(config.ssl_sessions_timeout, DEFAULT_SESSION_TIMEOUT);
        assert_eq!(config.http_processes, 1);
    }

    #[test]
    fn backend_kinds() {
        let config = config(&[
            "--https",
            ":8443",
            "--http-to",
            "http://127.0.0.1:8080/",
            "--http-to",
            "[::1]:3031",
        ])
        .unwrap();
        assert_eq!(config.https[0].addr, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(config.backends[0].protocol, BackendProtocol::Http);
        assert_eq!(config.backends[0].addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.backends[1].addr, "[::1]:3031".parse().unwrap());
    }

    #[test]
    fn errors_name_option_and_value() {
        let error = config(&["--https", "127.0.0.1:0", "--http-to", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`http-to` = `nowhere`"), "{error}");
        let error = config(&["--https", "127.0.0.1:0,/no/such.crt,/no/such.key"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`https`") && error.contains("/no/such.crt"),
            "{error}"
        );
        let error = config(&["--https", "127.0.0.1:0", "--cache", "lots"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`cache` = `lots`"), "{error}");
    }

    #[test]
    fn cache_rules() {
        let error = config(&["--https", "127.0.0.1:0", "--ssl-sessions-use-cache"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("ssl-sessions-use-cache"), "{error}");
        let config = config(&[
            "--ssl-sessions-use-cache",
            "--cache",
            "100",
            "--https",
            "127.0.0.1:0",
            "--ssl-sessions-timeout",
            "60",
        ])
        .unwrap();
        assert_eq!(
            config.cache,
            Some(CacheConfig {
                items: 100,
                blocksize: DEFAULT_BLOCKSIZE
            })
        );
        assert_eq!(config.ssl_sessions_timeout, Duration::from_secs(60));
    }

    #[test]
    fn sync_requires_a_key() {
        let error = config(&[
            "--https",
            "127.0.0.1:0",
            "--cache-udp-node",
            "127.0.0.1:4000",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("cache-udp-key"), "{error}");
    }

    #[test]
    fn sync_requires_the_session_cache() {
        let dir = std::env::temp_dir().join(format!("cachet-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        std::fs::write(&key, "cd".repeat(32)).unwrap();
        let error = config(&[
            "--https",
            "127.0.0.1:0",
            "--cache-udp-server",
            "127.0.0.1:0",
            "--cache-udp-key",
            key.to_str().unwrap(),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("ssl-sessions-use-cache"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cluster_key_file() {
        let dir = std::env::temp_dir().join(format!("cachet-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        std::fs::write(&good, format!("  {}\n", "ab".repeat(32))).unwrap();
        let bad = dir.join("bad.key");
        std::fs::write(&bad, "abcd").unwrap();
        let args = |key: &std::path::Path| {
            config(&[
                "--https",
                "127.0.0.1:0",
                "--cache-udp-key",
                key.to_str().unwrap(),
            ])
        };
        assert_eq!(
            args(&good).unwrap().cluster.key,
            Some(ClusterKey([0xab; 32]))
        );
        let error = args(&bad).unwrap_err().to_string();
        assert!(error.contains("64 hex characters"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
