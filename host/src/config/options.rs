//! The table of options cachet understands, with uWSGI's names.
//!
//! One table drives the command line, the ini reader, `--help` and the
//! "did you mean" hint, so an option cannot be known to one and not the others.

/// How an option takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true`/`false`; bare on the command line means `true`.
    Switch,
    /// Exactly one value. The command line overrides an ini file.
    Single,
    /// May be given any number of times; every occurrence counts.
    Repeatable,
}

/// Every option cachet understands, in the order of [`OPTIONS`]: code
/// names an option by its variant, so a misspelt name does not compile
/// (a string would silently read as absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionName {
    Ini,
    Https,
    Sni,
    EnableProxyProtocol,
    HttpTo,
    Master,
    ReusePort,
    HttpProcesses,
    Cache,
    CacheBlocksize,
    SslSessionsUseCache,
    SslSessionsTimeout,
    SslSessionTickets,
    SslSessionTicketRotate,
    HttpsSessionContext,
    Stats,
    StatsHttp,
    CacheUdpServer,
    CacheUdpNode,
    CacheUdpPullTimeout,
    AccessLog,
    AccessLogFormat,
    ClusterKey,
    CacheUdpKey,
    CacheRedis,
    CacheRedisTimeout,
}

impl OptionName {
    /// The option's name as written on the command line and in ini files.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The option's line in [`OPTIONS`].
    pub fn spec(self) -> &'static OptionSpec {
        &OPTIONS[self as usize]
    }
}

impl std::fmt::Display for OptionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One option: its name, kind and a line of help.
#[derive(Debug)]
pub struct OptionSpec {
    pub option: OptionName,
    pub name: &'static str,
    pub kind: Kind,
    /// Placeholder shown in `--help`.
    pub value: &'static str,
    pub help: &'static str,
}

const fn spec(
    option: OptionName,
    name: &'static str,
    kind: Kind,
    value: &'static str,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        option,
        name,
        kind,
        value,
        help,
    }
}

/// Every option, in the order `--help` lists them.
pub const OPTIONS: &[OptionSpec] = &[
    spec(
        OptionName::Ini,
        "ini",
        Kind::Repeatable,
        "FILE",
        "read options from the [uwsgi] or [cachet] section of FILE (command line only)",
    ),
    spec(
        OptionName::Https,
        "https",
        Kind::Repeatable,
        "ADDR[,CRT,KEY[,CIPHERS[,CLIENT_CA]]]",
        "serve HTTPS on ADDR; without CRT and KEY a self-signed certificate is generated",
    ),
    spec(
        OptionName::Sni,
        "sni",
        Kind::Repeatable,
        "NAME CRT,KEY",
        "serve the certificate CRT/KEY to clients asking for NAME (`*.example.com` allowed)",
    ),
    spec(
        OptionName::EnableProxyProtocol,
        "enable-proxy-protocol",
        Kind::Switch,
        "[BOOL]",
        "every https connection must start with a PROXY protocol v1 or v2 header (from a TCP balancer such as HAProxy with send-proxy-v2); its client address becomes REMOTE_ADDR and X-Forwarded-For; connections without a valid one are closed",
    ),
    spec(
        OptionName::HttpTo,
        "http-to",
        Kind::Repeatable,
        "HOST:PORT|http://HOST:PORT",
        "backend: bare HOST:PORT speaks the uwsgi protocol, http:// speaks HTTP/1.1",
    ),
    spec(
        OptionName::Master,
        "master",
        Kind::Switch,
        "[BOOL]",
        "run a master process (always on with more than one http process)",
    ),
    spec(
        OptionName::ReusePort,
        "reuse-port",
        Kind::Switch,
        "[BOOL]",
        "give each http process its own listening sockets (SO_REUSEPORT): no wasted wake-ups, but a stuck process keeps its share of new connections waiting",
    ),
    spec(
        OptionName::HttpProcesses,
        "http-processes",
        Kind::Single,
        "N",
        "number of router processes sharing the session cache (default 1)",
    ),
    spec(
        OptionName::Cache,
        "cache",
        Kind::Single,
        "ITEMS",
        "create the session cache with room for ITEMS entries",
    ),
    spec(
        OptionName::CacheBlocksize,
        "cache-blocksize",
        Kind::Single,
        "BYTES",
        "largest value one cache entry holds (default 4096)",
    ),
    spec(
        OptionName::SslSessionsUseCache,
        "ssl-sessions-use-cache",
        Kind::Switch,
        "[BOOL]",
        "keep TLS sessions (1.2 ids, 1.3 tickets) in the cache instead of rustls' per-process store",
    ),
    spec(
        OptionName::SslSessionsTimeout,
        "ssl-sessions-timeout",
        Kind::Single,
        "SECONDS",
        "lifetime of a cached TLS session (default 300)",
    ),
    spec(
        OptionName::SslSessionTickets,
        "ssl-session-tickets",
        Kind::Single,
        "cache|keys",
        "how TLS session tickets resume: `cache` (default) keeps each TLS 1.3 ticket in the session cache, single-use; `keys` seals TLS 1.2 and 1.3 tickets statelessly under ticket keys the cluster creates, shares over the sealed sync channel and rotates (needs `cache-udp-server` and `cache-udp-key`; a ticket then resumes any number of times until its key is erased)",
    ),
    spec(
        OptionName::SslSessionTicketRotate,
        "ssl-session-ticket-rotate",
        Kind::Single,
        "SECONDS",
        "with `ssl-session-tickets = keys`: a new ticket key every SECONDS (default 3600, 15..302400), each erased after two periods, so a ticket resumes for one to two periods; routers agree while their clocks are less than half a period (less 2 s) apart",
    ),
    spec(
        OptionName::HttpsSessionContext,
        "https-session-context",
        Kind::Single,
        "TEXT",
        "session namespace shared by routers with different certificates (default: derived from the certificate)",
    ),
    spec(
        OptionName::Stats,
        "stats",
        Kind::Single,
        "ADDR",
        "serve one JSON document per TCP connection on ADDR",
    ),
    spec(
        OptionName::StatsHttp,
        "stats-http",
        Kind::Single,
        "ADDR",
        "serve stats over HTTP on ADDR: JSON at /, Prometheus text at /metrics",
    ),
    spec(
        OptionName::CacheUdpServer,
        "cache-udp-server",
        Kind::Single,
        "ADDR",
        "receive session replication datagrams on ADDR",
    ),
    spec(
        OptionName::CacheUdpNode,
        "cache-udp-node",
        Kind::Repeatable,
        "ADDR",
        "send session replication datagrams to the peer at ADDR",
    ),
    spec(
        OptionName::CacheUdpPullTimeout,
        "cache-udp-pull-timeout",
        Kind::Single,
        "MS",
        "before a handshake, wait at most MS milliseconds (default 20) for the peers to send a session the client offers that this router lacks; a full handshake follows a timeout",
    ),
    spec(
        OptionName::AccessLog,
        "access-log",
        Kind::Single,
        "stderr|FILE",
        "log one line per request (client, SNI, TLS version, resumed, request, status, bytes, backend, duration) to stderr or append it to FILE; off by default; SIGHUP reopens FILE",
    ),
    spec(
        OptionName::AccessLogFormat,
        "access-log-format",
        Kind::Single,
        "plain|json",
        "the access log's lines: space-separated text (default) or one JSON object per line",
    ),
    spec(
        OptionName::ClusterKey,
        "cluster-key",
        Kind::Single,
        "FILE",
        "file holding the cluster keys, one per line as 64 hex characters (`cachet keygen`), \
         at most 4: the first seals, every one opens; they seal the mesh's datagrams and the \
         values in Redis. SIGHUP re-reads it (a key rollover: add the new key second \
         everywhere, then move it first, then drop the old one)",
    ),
    spec(
        OptionName::CacheUdpKey,
        "cache-udp-key",
        Kind::Single,
        "FILE",
        "the same as `cluster-key` (its older name)",
    ),
    spec(
        OptionName::CacheRedis,
        "cache-redis",
        Kind::Single,
        "URL",
        "share sessions through Redis as a second tier: redis://HOST:PORT[/DB], or \
         redis+cluster://HOST:PORT[,HOST:PORT...] for a Redis Cluster; values sealed under \
         `cluster-key`, names keyed hashes; a TLS 1.3 ticket is taken with GETDEL, so it \
         resumes once in the whole fleet",
    ),
    spec(
        OptionName::CacheRedisTimeout,
        "cache-redis-timeout",
        Kind::Single,
        "MS",
        "wait at most MS milliseconds (default 10) for Redis before a handshake goes on \
         without it; while Redis is down handshakes do not wait at all",
    ),
];

// `OptionName` indexes `OPTIONS`: a line out of its enum order does not
// compile.
assert_indexed_in_order!(OPTIONS, option);

/// The option called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|spec| spec.name == name)
}

/// The known option closest to a misspelled `name`, if one is close enough to
/// be a plausible typo.
pub fn closest(name: &str) -> Option<&'static str> {
    OPTIONS
        .iter()
        .map(|spec| (edit_distance(name, spec.name), spec.name))
        .filter(|&(distance, candidate)| distance <= 2.max(candidate.len() / 4))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance; option names are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The text of `cachet --help`.
pub fn help_text() -> String {
    let mut text = String::from(concat!(
        "cachet ",
        env!("CARGO_PKG_VERSION"),
        ": HTTPS router with a shared TLS session cache\n\n",
        "usage: cachet [--OPTION [VALUE]]... [--ini FILE]...\n",
        "       cachet --check [--OPTION [VALUE]]... [--ini FILE]...\n",
        "       cachet keygen | bench [BENCH OPTIONS] | --help | --version\n\n",
        "--check validates every option and every file they name (certificates,\n",
        "keys, the cluster key, the access log) and exits 0 if all is well, 1 with\n",
        "every problem listed if not, without serving.\n\n",
        "Options may also be written `--option=value`. Every option can appear in an\n",
        "ini file under [uwsgi] or [cachet]; the command line overrides single-valued\n",
        "options from ini files, repeatable options add up. Order never matters.\n\n",
    ));
    for spec in OPTIONS {
        let repeat = if spec.kind == Kind::Repeatable {
            " (repeatable)"
        } else {
            ""
        };
        text.push_str(&format!(
            "  --{} {}{}\n      {}\n",
            spec.name, spec.value, repeat, spec.help
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_named_as_its_line() {
        for spec in OPTIONS {
            assert_eq!(spec.option.as_str(), spec.name);
        }
    }

    #[test]
    fn names_are_unique() {
        for (i, spec) in OPTIONS.iter().enumerate() {
            assert!(
                OPTIONS[i + 1..].iter().all(|other| other.name != spec.name),
                "{} listed twice",
                spec.name
            );
        }
    }

    #[test]
    fn typos_find_their_option() {
        assert_eq!(closest("http-too"), Some("http-to"));
        assert_eq!(
            closest("ssl-session-use-cache"),
            Some("ssl-sessions-use-cache")
        );
        assert_eq!(closest("htps"), Some("https"));
        assert_eq!(closest("completely-different"), None);
    }
}
