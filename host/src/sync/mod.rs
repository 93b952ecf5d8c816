//! Cluster replication: UDP sockets around `cachet_core::sync`.
//!
//! Two halves, so that no process ever blocks on the network:
//!
//! * [`outbound`]: in every process that serves HTTPS. The session store
//!   hands each TLS 1.2 session it stores to a bounded queue without
//!   blocking; a task feeds them to this process's own sync node and sends
//!   the sealed datagrams to every peer with non-blocking sends, counting
//!   failures per peer instead of logging each one. The same task pulls
//!   ([`pull`]) what a connection's client offers and the cache lacks,
//!   while that connection, and only it, waits (bounded).
//! * [`inbound`]: in the master (or the lone process). It owns the
//!   `cache-udp-server` socket: peers' datagrams go through the node's
//!   checks and into the shared cache; hellos add their sender to the peer
//!   table; pull requests are answered from the cache; bootstrap requests
//!   are answered with this router's live sessions. At start it says hello
//!   to its configured peers and asks them for their sessions; it says
//!   hello to every peer each second after.
//!
//! Replay protection survives a restart: a router applies a peer's changes
//! only from senders it verified since it started, by their vouch under a
//! fresh challenge of its own (`cachet_core::sync::challenge`); each
//! process publishes its sender and sequence number
//! ([`crate::shared::senders`]) for the
//! master to vouch for the whole router at once.
//!
//! TLS 1.3 tickets are never replicated: the router that issued one is its
//! only holder, and its cache the one place a resumption takes it from (see
//! [`crate::session_key`]).
//!
//! Lifetimes travel as time remaining; expiry and sweeping stay local.

pub mod inbound;
pub mod keys;
pub mod outbound;
pub mod pull;
mod region_store;
pub mod ticket_keys;

use std::sync::Arc;

use cachet_core::sync::{Node, Settings};
use cachet_core::wire::Keyring;
use cachet_core::Duration;

/// The sync node a router process runs: 1400-byte datagrams, up to 64
/// senders tracked (nodes times workers), 1024 remembered deletions, and
/// as many pulls in flight as the router allows in all (see
/// [`crate::shared::peers::MAX_PULLS_IN_FLIGHT`]).
pub type RouterNode =
    Node<1400, 64, 1024, 65536, { crate::shared::peers::MAX_PULLS_IN_FLIGHT as usize }>;

/// A local change to push to the peers: a TLS 1.2 session stored under
/// `key` for `lifetime`. (Nothing is ever deleted cluster-wide: TLS 1.2
/// sessions expire, and TLS 1.3 tickets are never replicated.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lifetime: Duration,
}

/// A node sealing under the first of `keys`, with a fresh random sender id
/// (the AEAD nonce prefix: it must never repeat under a key, so every
/// start picks a new one).
pub fn new_node(keys: Keyring) -> anyhow::Result<RouterNode> {
    let mut sender = [0u8; 8];
    aws_lc_rs::rand::fill(&mut sender)
        .map_err(|_| anyhow::anyhow!("no randomness for the sync sender id"))?;
    Ok(Node::new(
        keys,
        u64::from_le_bytes(sender),
        Settings::default(),
    ))
}

/// A fresh cluster key as 64 hex characters (`cachet keygen`).
pub fn generate_key_hex() -> anyhow::Result<String> {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness for a key"))?;
    Ok(crate::hex::Hex(&key).to_string())
}

use crate::config::Config;
use crate::shared::SharedRegion;
use crate::shutdown::Shutdown;

/// Whether `config` replicates sessions at all.
pub fn enabled(config: &Config) -> bool {
    config.cluster.key.is_some()
        && (config.cluster.udp_server.is_some() || !config.cluster.udp_nodes.is_empty())
}

/// Puts the configured peers in the shared table, before any process sends.
pub fn register_peers(config: &Config, region: &'static SharedRegion) {
    for addr in &config.cluster.udp_nodes {
        if region.peers().add(*addr).is_none() {
            tracing::warn!(peer = %addr, "sync peer table full; peer ignored");
        }
    }
}

/// This process's cluster keys, if `config` replicates: every sync task of
/// the process follows them, and a reload replaces them. `process` is the
/// process's slot (0 for a master or a lone process, else the worker's
/// number), under which stats show the keys it holds.
pub fn keys(
    config: &Config,
    region: &'static SharedRegion,
    process: usize,
) -> Option<Arc<keys::Keys>> {
    let (true, Some(file)) = (enabled(config), &config.cluster.key) else {
        return None;
    };
    Some(keys::Keys::new(file, region.peers().keys(), process))
}

/// Starts this process's side of the cluster, if it replicates (`keys`):
/// the store pushes through the returned link, connections pull through
/// it.
pub fn start_outbound(
    config: &Config,
    region: &'static SharedRegion,
    metrics: crate::metrics::Metrics,
    keys: Option<&Arc<keys::Keys>>,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<outbound::ClusterLink>> {
    let Some(keys) = keys else {
        return Ok(None);
    };
    let timeout = config.cluster.pull_timeout;
    let receives = config.cluster.udp_server.is_some();
    outbound::spawn(keys, region, timeout, receives, metrics, shutdown.clone()).map(Some)
}

/// The receiver, once started: its figures for stats, and whether the
/// router holds ticket keys yet (when it runs them).
#[derive(Debug)]
pub struct Inbound {
    pub figures: inbound::Figures,
    pub ticket_keys: Option<tokio::sync::watch::Receiver<bool>>,
}

/// How long a router may wait for ticket keys before it gives up starting:
/// the holder makes its own after [`ticket_keys::STARTUP_WAIT`], so only a
/// receiver that cannot run at all reaches this.
const TICKET_KEYS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

impl Inbound {
    /// Waits until the router holds ticket keys, when it runs them: a
    /// router serves no handshake before (its tickets would be sealed
    /// under keys the cluster does not know, or not at all).
    pub async fn ticket_keys_ready(&self) -> anyhow::Result<()> {
        let Some(ready) = &self.ticket_keys else {
            return Ok(());
        };
        let mut ready = ready.clone();
        let held = tokio::time::timeout(TICKET_KEYS_DEADLINE, ready.wait_for(|held| *held))
            .await
            .map(|waited| waited.map(|_| ()));
        match held {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("the sync receiver stopped before it held ticket keys"),
            Err(_) => anyhow::bail!(
                "no ticket keys after {} s: neither received from a peer nor made",
                TICKET_KEYS_DEADLINE.as_secs()
            ),
        }
    }
}

/// Starts the receiver on `cache-udp-server`, if configured, holding the ticket keys when
/// `ssl-session-tickets = keys`.
pub fn start_inbound(
    config: &Config,
    socket: Option<std::net::UdpSocket>,
    region: &'static SharedRegion,
    keys: Option<&Arc<keys::Keys>>,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Inbound>> {
    let (Some(socket), Some(keys)) = (socket, keys) else {
        return Ok(None);
    };
    let figures = inbound::Figures::default();
    let (holder, ticket_keys) = match ticket_rotation(config) {
        Some(rotation) => {
            let peers = !config.cluster.udp_nodes.is_empty();
            let (holder, ready) =
                ticket_keys::TicketHolder::new(rotation, region.peers().tickets(), peers);
            (Some(holder), Some(ready))
        }
        None => (None, None),
    };
    let run = inbound::run(
        socket,
        Arc::clone(keys),
        region,
        config.cluster.udp_nodes.clone(),
        figures.clone(),
        holder,
        shutdown.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = run.await {
            tracing::error!("sync receiver stopped: {e:#}");
        }
    });
    Ok(Some(Inbound {
        figures,
        ticket_keys,
    }))
}

/// The ticket key periods, when `ssl-session-tickets = keys`.
pub fn ticket_rotation(config: &Config) -> Option<cachet_core::tickets::Rotation> {
    match config.tickets {
        crate::config::TicketMode::Keys { rotate } => {
            cachet_core::tickets::Rotation::new(rotate.as_millis() as u64)
        }
        crate::config::TicketMode::Cache => None,
    }
}
