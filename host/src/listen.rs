//! Binding the listening sockets.
//!
//! Sockets are bound before any runtime or worker exists, as plain std
//! listeners, so that a master process can bind once and hand them to its
//! workers. Port 0 is allowed; the bound address is announced on stderr in a
//! fixed form (see [`announce`]) for scripts and tests.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context, Result};

use crate::config::Config;

/// Every socket the router listens on, in configuration order.
#[derive(Debug)]
pub struct Listeners {
    pub https: Vec<TcpListener>,
    pub stats: Option<TcpListener>,
    pub stats_http: Option<TcpListener>,
    /// `cache-udp-server`, when the router replicates sessions.
    pub sync: Option<std::net::UdpSocket>,
}

impl Listeners {
    pub fn bind(config: &Config) -> Result<Self> {
        Ok(Self {
            https: config
                .https
                .iter()
                .map(|socket| bind("https", socket.addr))
                .collect::<Result<_>>()?,
            stats: config.stats.map(|addr| bind("stats", addr)).transpose()?,
            stats_http: config
                .stats_http
                .map(|addr| bind("stats-http", addr))
                .transpose()?,
            sync: match config.cluster.udp_server {
                Some(addr) if crate::sync::enabled(config) => {
                    Some(crate::sync::inbound::bind(addr)?)
                }
                _ => None,
            },
        })
    }
}

fn bind(option: &str, addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("option `{option}` = `{addr}`: cannot listen"))?;
    // tokio requires non-blocking sockets.
    listener
        .set_nonblocking(true)
        .with_context(|| format!("option `{option}` = `{addr}`"))?;
    Ok(listener)
}

/// Prints `cachet: listening KIND ADDR` on stderr. The format is an interface:
/// tests and scripts parse it to learn ports chosen with port 0.
pub fn announce(kind: &str, addr: SocketAddr) {
    eprintln!("cachet: listening {kind} {addr}");
}

/// Printed once every listener serves.
pub fn announce_ready() {
    eprintln!("cachet: ready");
}
