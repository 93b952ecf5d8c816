//! Configuration: uWSGI's option names, none of its traps.
//!
//! Options come from the command line and ini files ([`source`]), are checked
//! against one table ([`options`]) and are turned here into one validated
//! [`Config`]. Every error names the option, the offending value and where it
//! was given; nothing is silently ignored and order never matters.

pub mod key_file;
pub mod options;
pub mod redis;
pub mod source;

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub use source::{Invocation, Origin, RawOptions, Setting};

use crate::access_log::{AccessLogConfig, Format as AccessLogFormat, Target as AccessLogTarget};
use crate::limits;
use key_file::ClusterKeys;
use options::OptionName;

/// Default `cache-blocksize`: rustls session values are 70-130 bytes, and
/// 4 KiB leaves room for sessions that carry client certificate chains.
pub const DEFAULT_BLOCKSIZE: usize = 4096;
/// Default `ssl-sessions-timeout`, as in uWSGI.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(300);
/// `cache-udp-pull-timeout`: a peer on the same network answers a pull in
/// well under a millisecond, so this is room for a loaded peer; it bounds
/// what a client waits when peers are slow or gone (and once a peer missed
/// a deadline, later pulls do not wait for it until it answers again).
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_millis(20);
/// Default `ssl-session-ticket-rotate`: an hour, as Cloudflare and Caddy
/// rotate (RFC 8446 §4.6.1 caps a ticket at 7 days; a ticket here lives
/// one to two periods).
pub const DEFAULT_TICKET_ROTATE: Duration = Duration::from_secs(3600);
/// Shortest `ssl-session-ticket-rotate`: routers agree while their clocks
/// are less than half a period apart, less the second or two a proposal
/// takes to reach every peer; 15 s keeps 5 s of skew safe.
pub const MIN_TICKET_ROTATE_SECS: usize = 15;
/// Longest `ssl-session-ticket-rotate`: two periods (a ticket's longest
/// life, the lifetime told to clients) stay within TLS 1.3's 7 days.
pub const MAX_TICKET_ROTATE_SECS: usize = 302_400;
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
        option: OptionName,
        value: String,
        origin: Origin,
        reason: String,
    },
    #[error("option `{option}` takes one value but is given twice ({first}, {second})")]
    Repeated {
        option: OptionName,
        first: Origin,
        second: Origin,
    },
    #[error("{0}")]
    Usage(String),
}

/// What the command line asks for, validated.
#[derive(Debug)]
pub enum Command {
    /// Serve.
    Run(Config),
    /// `--check`: the configuration is valid; check the files it names.
    Check(Config),
    Help,
    Version,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub master: bool,
    /// Each worker accepts on sockets of its own (`SO_REUSEPORT`).
    pub reuse_port: bool,
    pub https: Vec<HttpsSocket>,
    /// Every https connection starts with a PROXY protocol header
    /// (`enable-proxy-protocol`), on every https socket.
    pub enable_proxy_protocol: bool,
    pub sni: Vec<SniCertificate>,
    pub backends: Vec<Backend>,
    pub http_processes: usize,
    /// The session cache, if `cache` is given.
    pub cache: Option<CacheConfig>,
    /// Whether rustls keeps its sessions in the cache (`ssl-sessions-use-cache`).
    pub ssl_sessions_use_cache: bool,
    pub ssl_sessions_timeout: Duration,
    pub https_session_context: Option<String>,
    /// How TLS tickets resume (`ssl-session-tickets`).
    pub tickets: TicketMode,
    pub stats: Option<SocketAddr>,
    pub stats_http: Option<SocketAddr>,
    pub cluster: ClusterConfig,
    /// The Redis tier (`cache-redis`), when on.
    pub redis: Option<redis::RedisConfig>,
    /// `access-log`, when on.
    pub access_log: Option<AccessLogConfig>,
}

/// `ssl-session-tickets`: where what a TLS ticket resumes lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TicketMode {
    /// Stateful, single-use TLS 1.3 tickets in the session cache (and
    /// rustls' default for TLS 1.2: no tickets, session ids).
    #[default]
    Cache,
    /// Stateless TLS 1.2 and 1.3 tickets sealed under cluster ticket keys,
    /// a new one every `rotate` (`ssl-session-ticket-rotate`).
    Keys { rotate: Duration },
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

impl fmt::Display for CertificateFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate `{}`, key `{}`",
            self.chain.display(),
            self.key.display()
        )
    }
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
    /// How long a handshake waits for a pulled session
    /// (`cache-udp-pull-timeout`).
    pub pull_timeout: Duration,
    /// The keys of `cluster-key` (alias `cache-udp-key`): the first seals,
    /// all open. They seal the mesh's datagrams and the Redis tier's values.
    pub key: Option<ClusterKeys>,
}

impl Config {
    /// Parses the process arguments (without the program name).
    pub fn from_args<I>(args: I) -> Result<Invocation, ConfigErrors>
    where
        I: IntoIterator<Item = OsString>,
    {
        source::parse_args(args)
    }

    /// Parses and validates the process arguments (without the program
    /// name): every problem is reported at once, those of the command line
    /// and ini files as well as those of the values.
    pub fn load<I>(args: I) -> Result<Command, ConfigErrors>
    where
        I: IntoIterator<Item = OsString>,
    {
        let (invocation, mut problems) = source::collect(args);
        let (raw, check) = match invocation {
            Invocation::Help => return Ok(Command::Help),
            Invocation::Version => return Ok(Command::Version),
            Invocation::Run(raw) => (raw, false),
            Invocation::Check(raw) => (raw, true),
        };
        match Config::from_raw(&raw) {
            Ok(config) => problems.into_result(if check {
                Command::Check(config)
            } else {
                Command::Run(config)
            }),
            Err(errors) => {
                problems.extend(errors);
                Err(ConfigErrors(problems.0))
            }
        }
    }

    /// Validates the collected options, reporting every problem found, not
    /// only the first: an operator fixing a file should see all of it.
    pub fn from_raw(raw: &RawOptions) -> Result<Config, ConfigErrors> {
        let mut read = Reader {
            raw,
            problems: Problems::default(),
        };
        let cache = read.single(OptionName::Cache, |v| parse_count(v, 1, 1 << 26));
        let access_log_format = read.single(OptionName::AccessLogFormat, parse_access_log_format);
        let access_log = read
            .raw
            .single(OptionName::AccessLog)
            .map(|setting| AccessLogConfig {
                target: access_log_target(setting),
                format: access_log_format.unwrap_or(AccessLogFormat::Plain),
            });
        let blocksize = read.single(OptionName::CacheBlocksize, |v| parse_count(v, 256, 1 << 20));
        let redis_timeout = read.single(OptionName::CacheRedisTimeout, |v| {
            // Like the pull's: a full handshake must still fit after it.
            let max = limits::HANDSHAKE_TIMEOUT.as_millis() as usize / 2;
            parse_count(v, 1, max).map(|ms| Duration::from_millis(ms as u64))
        });
        let config = Config {
            master: read.switch(OptionName::Master),
            reuse_port: read.switch(OptionName::ReusePort),
            https: read.all(OptionName::Https, parse_https),
            enable_proxy_protocol: read.switch(OptionName::EnableProxyProtocol),
            sni: read.all(OptionName::Sni, parse_sni),
            backends: read.all(OptionName::HttpTo, parse_backend),
            http_processes: read
                .single(OptionName::HttpProcesses, |v| parse_count(v, 1, 1024))
                .unwrap_or(1),
            cache: cache.map(|items| CacheConfig {
                items,
                blocksize: blocksize.unwrap_or(DEFAULT_BLOCKSIZE),
            }),
            ssl_sessions_use_cache: read.switch(OptionName::SslSessionsUseCache),
            ssl_sessions_timeout: read
                .single(OptionName::SslSessionsTimeout, |v| {
                    parse_count(v, 1, 7 * 24 * 3600).map(|secs| Duration::from_secs(secs as u64))
                })
                .unwrap_or(DEFAULT_SESSION_TIMEOUT),
            https_session_context: read.single(OptionName::HttpsSessionContext, parse_context),
            tickets: match read.single(OptionName::SslSessionTickets, parse_ticket_mode) {
                Some(TicketMode::Keys { .. }) => TicketMode::Keys {
                    rotate: read
                        .single(OptionName::SslSessionTicketRotate, |v| {
                            parse_count(v, MIN_TICKET_ROTATE_SECS, MAX_TICKET_ROTATE_SECS)
                                .map(|secs| Duration::from_secs(secs as u64))
                        })
                        .unwrap_or(DEFAULT_TICKET_ROTATE),
                },
                _ => TicketMode::Cache,
            },
            stats: read.single(OptionName::Stats, parse_addr),
            stats_http: read.single(OptionName::StatsHttp, parse_addr),
            cluster: ClusterConfig {
                udp_server: read.single(OptionName::CacheUdpServer, parse_addr),
                udp_nodes: read.all(OptionName::CacheUdpNode, |s| {
                    with_origin(OptionName::CacheUdpNode, s, parse_addr(&s.value))
                }),
                pull_timeout: read
                    .single(OptionName::CacheUdpPullTimeout, |v| {
                        // At most half the handshake's budget, so that a
                        // full handshake still fits after a pull that ran
                        // out its time.
                        let max = limits::HANDSHAKE_TIMEOUT.as_millis() as usize / 2;
                        parse_count(v, 1, max).map(|ms| Duration::from_millis(ms as u64))
                    })
                    .unwrap_or(DEFAULT_PULL_TIMEOUT),
                key: cluster_key_setting(read.raw)
                    .and_then(|(name, s)| read.problems.check(parse_cluster_key(name, s))),
            },
            redis: read
                .single(OptionName::CacheRedis, redis::Target::parse)
                .map(|target| redis::RedisConfig {
                    target,
                    timeout: redis_timeout.unwrap_or(redis::DEFAULT_TIMEOUT),
                }),
            access_log,
        };
        let Reader { mut problems, .. } = read;
        config.check_combinations(raw, &mut problems);
        problems.into_result(config)
    }

    /// Rules that involve more than one option. They look at what was
    /// given rather than at what parsed, so that an option with a bad value
    /// is reported once, for its value, and not again as missing.
    fn check_combinations(&self, raw: &RawOptions, problems: &mut Problems) {
        let given = |option: OptionName| !raw.all(option).is_empty();
        if !given(OptionName::Https) {
            problems.push(ConfigError::Usage(
                "no `https` socket: add e.g. `--https 127.0.0.1:8443,crt.pem,key.pem` \
                 (or just `--https 127.0.0.1:8443` for a self-signed certificate)"
                    .to_owned(),
            ));
        }
        if self.ssl_sessions_use_cache && !given(OptionName::Cache) {
            problems.push(ConfigError::Usage(
                "option `ssl-sessions-use-cache` needs a cache to use: add `cache = ITEMS`"
                    .to_owned(),
            ));
        }
        if !given(OptionName::Cache) {
            if let Some(setting) = raw.single(OptionName::CacheBlocksize) {
                problems.push(invalid(
                    OptionName::CacheBlocksize,
                    setting,
                    "there is no cache to size: add `cache = ITEMS`",
                ));
            }
        }
        if !given(OptionName::AccessLog) {
            if let Some(setting) = raw.single(OptionName::AccessLogFormat) {
                problems.push(invalid(
                    OptionName::AccessLogFormat,
                    setting,
                    "there is no access log to format: add `access-log = stderr` or `access-log = FILE`",
                ));
            }
        }
        let syncs = given(OptionName::CacheUdpServer) || given(OptionName::CacheUdpNode);
        let keyed = given(OptionName::ClusterKey) || given(OptionName::CacheUdpKey);
        if given(OptionName::ClusterKey) && given(OptionName::CacheUdpKey) {
            problems.push(ConfigError::Usage(
                "`cluster-key` and `cache-udp-key` name the same file (one is an alias of \
                 the other): give one"
                    .to_owned(),
            ));
        }
        if syncs && !keyed {
            problems.push(ConfigError::Usage(
                "`cache-udp-server`/`cache-udp-node` need `cluster-key = FILE` (or its alias \
                 `cache-udp-key`): session \
                 values hold master secrets and never travel in clear. Make a key with \
                 `cachet keygen > cluster.key` and give every router the same file"
                    .to_owned(),
            ));
        }
        let redis = given(OptionName::CacheRedis);
        if redis && !keyed {
            problems.push(ConfigError::Usage(
                "`cache-redis` needs `cluster-key = FILE`: session values are sealed before \
                 they reach Redis. Make a key with `cachet keygen > cluster.key` and give \
                 every router the same file"
                    .to_owned(),
            ));
        }
        if redis && !(given(OptionName::Cache) && self.ssl_sessions_use_cache) {
            problems.push(ConfigError::Usage(
                "`cache-redis` is the second tier of the TLS session cache: add \
                 `cache = ITEMS` and `ssl-sessions-use-cache = true`"
                    .to_owned(),
            ));
        }
        if !redis {
            if let Some(setting) = raw.single(OptionName::CacheRedisTimeout) {
                problems.push(invalid(
                    OptionName::CacheRedisTimeout,
                    setting,
                    "there is no Redis tier: add `cache-redis = redis://HOST:PORT`",
                ));
            }
        }
        if syncs && !(given(OptionName::Cache) && self.ssl_sessions_use_cache) {
            problems.push(ConfigError::Usage(
                "`cache-udp-server`/`cache-udp-node` replicate the TLS session cache: \
                 add `cache = ITEMS` and `ssl-sessions-use-cache = true`"
                    .to_owned(),
            ));
        }
        let keys_mode = raw
            .single(OptionName::SslSessionTickets)
            .is_some_and(|s| s.value == "keys");
        if keys_mode && !(given(OptionName::CacheUdpServer) && keyed) {
            problems.push(ConfigError::Usage(
                "`ssl-session-tickets = keys` needs `cache-udp-server` and `cluster-key`: \
                 the ticket keys are created by the cluster, arrive from peers on the sync \
                 socket and travel only sealed under the cluster key (a router alone is a \
                 cluster of one: `cache-udp-server = 127.0.0.1:0` and no `cache-udp-node`)"
                    .to_owned(),
            ));
        }
        if !keys_mode {
            if let Some(setting) = raw.single(OptionName::SslSessionTicketRotate) {
                problems.push(invalid(
                    OptionName::SslSessionTicketRotate,
                    setting,
                    "there are no ticket keys to rotate: add `ssl-session-tickets = keys`",
                ));
            }
        }
        if !syncs {
            if let Some(setting) = raw.single(OptionName::CacheUdpPullTimeout) {
                problems.push(invalid(
                    OptionName::CacheUdpPullTimeout,
                    setting,
                    "there is no cluster to pull from: add `cache-udp-node = ADDR`",
                ));
            }
        }
    }
}

/// Every problem found in a configuration, in the order found.
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => one.fmt(f),
            all => {
                write!(f, "{} problems in the configuration:", all.len())?;
                for error in all {
                    write!(f, "\n  - {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

/// Gathers problems while parsing goes on.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(crate) fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// The value, or `None` with the error noted.
    pub(crate) fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    pub(crate) fn extend(&mut self, errors: ConfigErrors) {
        self.0.extend(errors.0);
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.0))
        }
    }
}

/// Reads options out of [`RawOptions`], noting each bad value and going on.
struct Reader<'a> {
    raw: &'a RawOptions,
    problems: Problems,
}

impl Reader<'_> {
    fn switch(&mut self, option: OptionName) -> bool {
        self.raw
            .single(option)
            .and_then(|setting| self.problems.check(parse_switch(option, setting)))
            .unwrap_or(false)
    }

    fn single<T>(
        &mut self,
        option: OptionName,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let setting = self.raw.single(option)?;
        self.problems
            .check(with_origin(option, setting, parse(&setting.value)))
    }

    fn all<T>(
        &mut self,
        option: OptionName,
        parse: impl Fn(&Setting) -> Result<T, ConfigError>,
    ) -> Vec<T> {
        self.raw
            .all(option)
            .iter()
            .filter_map(|setting| self.problems.check(parse(setting)))
            .collect()
    }
}

fn invalid(option: OptionName, setting: &Setting, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        value: setting.value.clone(),
        origin: setting.origin.clone(),
        reason: reason.into(),
    }
}

fn with_origin<T>(
    option: OptionName,
    setting: &Setting,
    result: Result<T, String>,
) -> Result<T, ConfigError> {
    result.map_err(|reason| invalid(option, setting, reason))
}

fn parse_switch(option: OptionName, setting: &Setting) -> Result<bool, ConfigError> {
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
    option: OptionName,
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
            OptionName::Https,
            setting,
            "expected ADDR[,CRT,KEY[,CIPHERS[,CLIENT_CA]]]",
        ));
    }
    let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
    let addr = with_origin(OptionName::Https, setting, parse_addr(fields[0]))?;
    let certificate = match (field(1), field(2)) {
        (None, None) => None,
        (Some(chain), Some(key)) => Some(CertificateFiles {
            chain: existing_file(setting, OptionName::Https, chain)?,
            key: existing_file(setting, OptionName::Https, key)?,
        }),
        _ => {
            return Err(invalid(
                OptionName::Https,
                setting,
                "a certificate needs both CRT and KEY",
            ))
        }
    };
    let client_ca = field(4)
        .map(|ca| existing_file(setting, OptionName::Https, ca))
        .transpose()?;
    if certificate.is_none() && (field(3).is_some() || client_ca.is_some()) {
        return Err(invalid(
            OptionName::Https,
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
        return Err(invalid(OptionName::Sni, setting, "expected `NAME CRT,KEY`"));
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
            OptionName::Sni,
            setting,
            format!("`{name}` is not a DNS name or `*.` pattern"),
        ));
    }
    let Some((chain, key)) = files.trim().split_once(',') else {
        return Err(invalid(OptionName::Sni, setting, "expected `NAME CRT,KEY`"));
    };
    Ok(SniCertificate {
        name,
        certificate: CertificateFiles {
            chain: existing_file(setting, OptionName::Sni, chain.trim())?,
            key: existing_file(setting, OptionName::Sni, key.trim())?,
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
                OptionName::HttpTo,
                setting,
                format!("unsupported scheme `{scheme}`: use HOST:PORT (uwsgi) or http://HOST:PORT"),
            ))
        }
    };
    if authority.contains('/') {
        return Err(invalid(
            OptionName::HttpTo,
            setting,
            "a backend is an address without a path",
        ));
    }
    let addr = with_origin(OptionName::HttpTo, setting, parse_addr(authority))?;
    Ok(Backend {
        name: value.to_owned(),
        addr,
        protocol,
    })
}

fn parse_access_log_format(value: &str) -> Result<AccessLogFormat, String> {
    match value {
        "plain" => Ok(AccessLogFormat::Plain),
        "json" => Ok(AccessLogFormat::Json),
        _ => Err("expected `plain` or `json`".to_owned()),
    }
}

/// `stderr`, or a file (relative to the ini file that names it). The file
/// is opened when the router starts, so a directory that does not exist
/// fails then, naming the file (and `--check` says so).
fn access_log_target(setting: &Setting) -> AccessLogTarget {
    match setting.value.as_str() {
        "stderr" | "-" => AccessLogTarget::Stderr,
        name => AccessLogTarget::File(setting.path(name)),
    }
}

fn parse_ticket_mode(value: &str) -> Result<TicketMode, String> {
    match value {
        "cache" => Ok(TicketMode::Cache),
        "keys" => Ok(TicketMode::Keys {
            rotate: DEFAULT_TICKET_ROTATE,
        }),
        _ => Err("expected `cache` or `keys`".to_owned()),
    }
}

fn parse_context(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > MAX_SESSION_CONTEXT {
        return Err(format!("must be 1 to {MAX_SESSION_CONTEXT} bytes long"));
    }
    Ok(value.to_owned())
}

/// The cluster key file's setting and the name it was given under:
/// `cluster-key`, or its older alias `cache-udp-key`.
fn cluster_key_setting(raw: &RawOptions) -> Option<(OptionName, &Setting)> {
    [OptionName::ClusterKey, OptionName::CacheUdpKey]
        .into_iter()
        .find_map(|name| raw.single(name).map(|setting| (name, setting)))
}

fn parse_cluster_key(option: OptionName, setting: &Setting) -> Result<ClusterKeys, ConfigError> {
    let path = existing_file(setting, option, &setting.value)?;
    let text = std::fs::read_to_string(&path).map_err(|error| {
        invalid(
            option,
            setting,
            format!("cannot read `{}`: {error}", path.display()),
        )
    })?;
    ClusterKeys::parse(&text)
        .map_err(|error| invalid(option, setting, format!("`{}` {error}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, ConfigErrors> {
        match Config::from_args(args.iter().map(OsString::from))? {
            Invocation::Run(raw) => Config::from_raw(&raw),
            other => panic!("expected options, got {other:?}"),
        }
    }

    /// What is wrong with `args`, which must not make a configuration.
    fn config_error(args: &[&str]) -> String {
        config(args).unwrap_err().to_string()
    }

    #[test]
    fn minimal_command_line() {
        let config = config(&["--https", "127.0.0.1:0", "--http-to", "127.0.0.1:3031"]).unwrap();
        assert_eq!(config.https[0].addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.https[0].certificate, None);
        assert_eq!(config.backends[0].protocol, BackendProtocol::Uwsgi);
        assert_eq!(config.ssl_sessions_timeout, DEFAULT_SESSION_TIMEOUT);
        assert_eq!(config.http_processes, 1);
        assert!(!config.enable_proxy_protocol);
    }

    #[test]
    fn proxy_protocol_switch() {
        let on = config(&["--https", ":8443", "--enable-proxy-protocol"]).unwrap();
        assert!(on.enable_proxy_protocol);
        let error = config_error(&["--https", ":8443", "--enable-proxy-protocol=maybe"]);
        assert!(
            error.contains("`enable-proxy-protocol` = `maybe`"),
            "{error}"
        );
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
        let error = config_error(&["--https", "127.0.0.1:0", "--http-to", "nowhere"]);
        assert!(error.contains("`http-to` = `nowhere`"), "{error}");
        let error = config_error(&["--https", "127.0.0.1:0,/no/such.crt,/no/such.key"]);
        assert!(
            error.contains("`https`") && error.contains("/no/such.crt"),
            "{error}"
        );
        let error = config_error(&["--https", "127.0.0.1:0", "--cache", "lots"]);
        assert!(error.contains("`cache` = `lots`"), "{error}");
    }

    #[test]
    fn cache_rules() {
        let error = config_error(&["--https", "127.0.0.1:0", "--ssl-sessions-use-cache"]);
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
        let error = config_error(&[
            "--https",
            "127.0.0.1:0",
            "--cache-udp-node",
            "127.0.0.1:4000",
        ]);
        assert!(error.contains("cluster-key"), "{error}");
    }

    #[test]
    fn the_redis_tier_needs_a_key_and_the_cache_and_says_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("cachet-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        std::fs::write(&key, "cd".repeat(32)).unwrap();
        let key = key.to_str().unwrap();
        let cache = ["--cache", "100", "--ssl-sessions-use-cache"];
        let error = config_error(&[
            "--https",
            ":8443",
            "--cache-redis",
            "redis://127.0.0.1:6379",
        ]);
        assert!(
            error.contains("`cache-redis` needs `cluster-key") && error.contains("cache = ITEMS"),
            "{error}"
        );
        let error = config_error(&["--https", ":8443", "--cache-redis", "localhost:6379"]);
        assert!(
            error.contains("`cache-redis` = `localhost:6379`"),
            "{error}"
        );
        let error = config_error(&["--https", ":8443", "--cache-redis-timeout", "5"]);
        assert!(error.contains("no Redis tier"), "{error}");
        let both = [
            &[
                "--https",
                ":8443",
                "--cluster-key",
                key,
                "--cache-udp-key",
                key,
            ][..],
            &cache,
        ]
        .concat();
        let error = config(&both).unwrap_err().to_string();
        assert!(error.contains("give one"), "{error}");

        let good = [
            &["--https", ":8443", "--cluster-key", key][..],
            &[
                "--cache-redis",
                "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
            ],
            &["--cache-redis-timeout", "25"],
            &cache,
        ]
        .concat();
        let config = config(&good).unwrap();
        let redis = config.redis.unwrap();
        assert_eq!(redis.timeout, Duration::from_millis(25));
        assert!(matches!(redis.target, redis::Target::Cluster(ref n) if n.len() == 2));
        assert!(config.cluster.key.is_some(), "`cluster-key` read");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pull_timeout_needs_a_cluster_and_a_sane_value() {
        let error = config_error(&["--https", ":8443", "--cache-udp-pull-timeout", "50"]);
        assert!(
            error.contains("`cache-udp-pull-timeout` = `50`") && error.contains("no cluster"),
            "{error}"
        );
        let cluster = ["--https", ":8443", "--cache-udp-node", "127.0.0.1:4000"];
        for bad in ["0", "soon", "5001"] {
            let args = [&cluster[..], &["--cache-udp-pull-timeout", bad]].concat();
            let error = config(&args).unwrap_err().to_string();
            assert!(
                error.contains(&format!("`cache-udp-pull-timeout` = `{bad}`")),
                "{error}"
            );
        }
        // Other problems of that line aside, a good value parses.
        let args = [&cluster[..], &["--cache-udp-pull-timeout", "35"]].concat();
        let error = config(&args).unwrap_err().to_string();
        assert!(!error.contains("cache-udp-pull-timeout"), "{error}");
    }

    #[test]
    fn ticket_keys_need_a_cluster_and_a_sane_period() {
        let dir = std::env::temp_dir().join(format!("cachet-tickets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        std::fs::write(&key, "cd".repeat(32)).unwrap();
        let cluster = [
            "--https",
            "127.0.0.1:0",
            "--cache",
            "100",
            "--ssl-sessions-use-cache",
            "--cache-udp-server",
            "127.0.0.1:0",
            "--cache-udp-key",
            key.to_str().unwrap(),
            "--ssl-session-tickets",
            "keys",
        ];
        let default = config(&cluster).unwrap();
        assert_eq!(
            default.tickets,
            TicketMode::Keys {
                rotate: DEFAULT_TICKET_ROTATE
            }
        );
        // The key file under its new name does as well as under its alias.
        let renamed: Vec<&str> = cluster
            .iter()
            .map(|&arg| match arg {
                "--cache-udp-key" => "--cluster-key",
                other => other,
            })
            .collect();
        assert_eq!(config(&renamed).unwrap().tickets, default.tickets);
        let args = [&cluster[..], &["--ssl-session-ticket-rotate", "60"]].concat();
        assert_eq!(
            config(&args).unwrap().tickets,
            TicketMode::Keys {
                rotate: Duration::from_secs(60)
            }
        );
        for bad in ["14", "302401", "hourly"] {
            let args = [&cluster[..], &["--ssl-session-ticket-rotate", bad]].concat();
            let error = config(&args).unwrap_err().to_string();
            assert!(
                error.contains(&format!("`ssl-session-ticket-rotate` = `{bad}`")),
                "{error}"
            );
        }
        let error = config_error(&["--https", ":8443", "--ssl-session-tickets", "keys"]);
        assert!(error.contains("needs `cache-udp-server`"), "{error}");
        let error = config_error(&["--https", ":8443", "--ssl-session-ticket-rotate", "60"]);
        assert!(error.contains("no ticket keys to rotate"), "{error}");
        let error = config_error(&["--https", ":8443", "--ssl-session-tickets", "stateless"]);
        assert!(error.contains("expected `cache` or `keys`"), "{error}");
        assert_eq!(
            config(&["--https", ":8443"]).unwrap().tickets,
            TicketMode::Cache
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sync_requires_the_session_cache() {
        let dir = std::env::temp_dir().join(format!("cachet-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        std::fs::write(&key, "cd".repeat(32)).unwrap();
        let error = config_error(&[
            "--https",
            "127.0.0.1:0",
            "--cache-udp-server",
            "127.0.0.1:0",
            "--cache-udp-key",
            key.to_str().unwrap(),
        ]);
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
        std::fs::write(&bad, format!("{}\nabcd\n", "ab".repeat(32))).unwrap();
        let two = dir.join("two.key");
        std::fs::write(
            &two,
            format!("{}\n\n  {}\n", "cd".repeat(32), "ab".repeat(32)),
        )
        .unwrap();
        let args = |key: &std::path::Path| {
            config(&[
                "--https",
                "127.0.0.1:0",
                "--cache-udp-key",
                key.to_str().unwrap(),
            ])
        };
        let one = args(&good).unwrap().cluster.key.unwrap();
        assert_eq!(one, ClusterKeys::parse(&"ab".repeat(32)).unwrap());
        let two = args(&two).unwrap().cluster.key.unwrap();
        assert_eq!(two.fingerprints().len(), 2);
        assert_eq!(two.fingerprints()[1], one.fingerprints()[0]);
        let error = args(&bad).unwrap_err().to_string();
        assert!(
            error.contains(&format!("`{}` line 2: 4 characters", bad.display()))
                && error.contains("64 hex characters"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
