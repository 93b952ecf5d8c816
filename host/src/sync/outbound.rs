//! Sending this process's local changes to the peers.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::warn;

use super::peers::PeerTable;
use super::{Change, RouterNode};
use crate::clock;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Changes waiting for the sender task; beyond this they are dropped and
/// counted (the handshake must not wait).
const QUEUE: usize = 8192;

/// The store's side of the queue.
#[derive(Debug, Clone)]
pub struct ChangeQueue {
    tx: mpsc::Sender<Change>,
    metrics: Metrics,
}

impl ChangeQueue {
    /// Queues `change` without waiting; counts it if the queue is full.
    pub fn push(&self, change: Change) {
        if self.tx.try_send(change).is_err() {
            self.metrics.sync_skipped();
        }
    }
}

/// Starts the sender task for `node`; returns the queue the store feeds.
/// Changes that cannot be replicated are counted in `metrics`.
pub fn spawn(
    node: RouterNode,
    peers: &'static PeerTable,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<ChangeQueue> {
    let v4 = bind("0.0.0.0:0")?;
    let v6 = bind("[::]:0").ok();
    let (tx, rx) = mpsc::channel(QUEUE);
    let sockets = Sockets { v4, v6 };
    tokio::spawn(run(node, peers, sockets, rx, metrics, shutdown));
    Ok(ChangeQueue { tx, metrics })
}

fn bind(addr: &str) -> Result<UdpSocket> {
    let socket =
        StdUdpSocket::bind(addr).with_context(|| format!("binding a sync socket on {addr}"))?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket)?)
}

struct Sockets {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
}

impl Sockets {
    fn for_peer(&self, addr: SocketAddr) -> Option<&UdpSocket> {
        if addr.is_ipv4() {
            Some(&self.v4)
        } else {
            self.v6.as_ref()
        }
    }
}

async fn run(
    mut node: RouterNode,
    peers: &'static PeerTable,
    sockets: Sockets,
    mut rx: mpsc::Receiver<Change>,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    let mut buf = vec![0u8; node.settings().max_datagram];
    let mut reported_skips = 0;
    // Sends are non-blocking `try_send_to`s, which fail until the reactor
    // has seen the sockets writable once.
    let _ = sockets.v4.writable().await;
    if let Some(v6) = &sockets.v6 {
        let _ = v6.writable().await;
    }
    loop {
        let timeout = node.poll_timeout();
        tokio::select! {
            change = rx.recv() => {
                let Some(change) = change else { return };
                record(&mut node, change, metrics);
                // Take whatever else is already queued into the same batch.
                while let Ok(change) = rx.try_recv() {
                    record(&mut node, change, metrics);
                }
            }
            () = sleep_until(timeout) => {}
            () = shutdown.requested() => {
                flush(&mut node, peers, &sockets, &mut buf);
                return;
            }
        }
        flush(&mut node, peers, &sockets, &mut buf);
        // One line per burst of losses, not one per change.
        let skipped = metrics.snapshot().sync_skipped;
        if skipped > reported_skips {
            warn!(
                skipped,
                "changes not replicated (too large for a datagram, or queue full)"
            );
            reported_skips = skipped;
        }
    }
}

fn record(node: &mut RouterNode, change: Change, metrics: Metrics) {
    let now = clock::now();
    let queued = match change {
        Change::Set {
            key,
            value,
            lifetime,
        } => node.record_set(now, &key, &value, lifetime),
        Change::Delete { key } => node.record_delete(now, &key),
    };
    // Too large for one datagram, or the node's queue is full.
    if queued.is_err() {
        metrics.sync_skipped();
    }
}

/// Sends every datagram the node has ready to every peer.
fn flush(node: &mut RouterNode, peers: &PeerTable, sockets: &Sockets, buf: &mut [u8]) {
    while let Some(len) = node.poll_transmit(clock::now(), buf) {
        for (index, addr) in peers.peers() {
            send_counted(sockets.for_peer(addr), &buf[..len], addr, peers, index);
        }
    }
}

/// A non-blocking send, counted against the peer either way.
pub(crate) fn send_counted(
    socket: Option<&UdpSocket>,
    datagram: &[u8],
    addr: SocketAddr,
    peers: &PeerTable,
    index: usize,
) {
    let slot = peers.slot(index);
    match socket.map(|s| s.try_send_to(datagram, addr)) {
        Some(Ok(_)) => {
            slot.sent_datagrams.fetch_add(1, Ordering::Relaxed);
            slot.sent_bytes
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        }
        _ => {
            slot.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn sleep_until(deadline: Option<cachet_core::Instant>) {
    match deadline {
        Some(at) => {
            let wait = (at - clock::now()).as_millis();
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}
