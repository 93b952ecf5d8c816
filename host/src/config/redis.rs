//! The `cache-redis*` options: where the Redis tier lives
//! (`cache-redis = URL`) and how long a handshake waits for it.
//!
//! * `redis://HOST:PORT[/DB]`: one Redis (or Valkey) server, or a proxy in
//!   front of several;
//! * `redis+cluster://HOST:PORT[,HOST:PORT…]`: a Redis Cluster, found from
//!   any of the listed nodes (list several, so that one node down at start
//!   does not matter); sessions spread over its masters by name.
//!
//! Passwords go in the URL as Redis expects them
//! (`redis://:PASSWORD@HOST:PORT`); `rediss://` is not offered: values are
//! sealed already, and names reveal nothing.

use std::fmt;
use std::time::Duration;

/// Default `cache-redis-timeout`: several round trips on a LAN, short
/// enough that a slow Redis costs a handshake little.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10);

/// The `cache-redis*` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub target: Target,
    /// The longest a handshake waits for Redis (`cache-redis-timeout`).
    pub timeout: Duration,
}

/// A parsed `cache-redis` value.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, as a `redis://` URL.
    Single(String),
    /// A cluster's seed nodes, each as a `redis://` URL.
    Cluster(Vec<String>),
}

impl fmt::Debug for Target {
    /// The addresses, never a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Single(url) => f.write_str(&without_password(url)),
            Target::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|n| without_password(n)).collect();
                write!(f, "cluster {}", nodes.join(","))
            }
        }
    }
}

fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Target {
    /// Parses a `cache-redis` value; the error says what is wrong.
    pub fn parse(value: &str) -> Result<Target, String> {
        if let Some(nodes) = value.strip_prefix("redis+cluster://") {
            let (credentials, nodes) = match nodes.rsplit_once('@') {
                Some((credentials, nodes)) => (format!("{credentials}@"), nodes),
                None => (String::new(), nodes),
            };
            let nodes: Vec<String> = nodes
                .split(',')
                .map(|node| {
                    host_port(node)?;
                    Ok(format!("redis://{credentials}{node}"))
                })
                .collect::<Result<_, String>>()?;
            return Ok(Target::Cluster(nodes));
        }
        let Some(rest) = value.strip_prefix("redis://") else {
            return Err(
                "expected redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT[,HOST:PORT...]"
                    .to_owned(),
            );
        };
        let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
        let (address, db) = rest.split_once('/').unwrap_or((rest, ""));
        host_port(address)?;
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("database `{db}` is not a number"));
        }
        Ok(Target::Single(value.to_owned()))
    }
}

/// Checks `HOST:PORT` (a `[v6]:PORT` too): a port must be given, since
/// guessing 6379 for a cluster node would hide a typo.
fn host_port(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}`: expected HOST:PORT"));
    };
    if host.is_empty() {
        return Err(format!("`{address}`: no host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("`{address}`: `{port}` is not a port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_cluster_forms() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2"),
            Ok(Target::Single("redis://127.0.0.1:6379/2".to_owned()))
        );
        assert_eq!(
            Target::parse("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001"),
            Ok(Target::Cluster(vec![
                "redis://:pw@10.0.0.1:7000".to_owned(),
                "redis://:pw@10.0.0.2:7001".to_owned()
            ]))
        );
        let shown = Target::parse("redis+cluster://:pw@10.0.0.1:7000").unwrap();
        assert_eq!(shown.to_string(), "cluster redis://***@10.0.0.1:7000");
    }

    #[test]
    fn mistakes_are_named() {
        for (value, says) in [
            ("127.0.0.1:6379", "expected redis://"),
            ("redis://localhost", "expected HOST:PORT"),
            ("redis://localhost:http", "is not a port"),
            ("redis://localhost:6379/x", "database `x`"),
            ("redis+cluster://a:1,,b:2", "expected HOST:PORT"),
            ("redis+cluster://:1", "no host"),
        ] {
            let error = Target::parse(value).unwrap_err();
            assert!(error.contains(says), "{value}: {error}");
        }
    }
}
