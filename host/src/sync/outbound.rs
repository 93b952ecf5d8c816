//! This process's side of the cluster: pushing its local changes to the
//! peers, and pulling the sessions its clients offer that it lacks.
//!
//! One task owns the process's sync node and its two sockets (IPv4, IPv6).
//! The session store hands it changes through a bounded queue, connections
//! hand it pulls through another (see [`super::pull`]); neither ever waits
//! on the task. Datagrams arriving on the sockets are the peers' answers to
//! this process's pulls, sealed like everything else, and their challenges.
//!
//! Peers apply this node's changes only once they verified it fresh
//! (`cachet_core::sync::challenge`). So the task challenges each peer once
//! the router has heard from it (at once for the peers up when it starts),
//! which makes the peer challenge it back (it is new there) and admit it on
//! its vouch, before its first push; and around every datagram it seals it
//! publishes its next sequence number ([`crate::shared::senders`]), for the master
//! to vouch for it to a peer that starts after it.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use cachet_core::sync::{ControlKind, Destination};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::warn;

use super::keys::{KeyFollower, Keys};
use super::pull::{Ask, PullBook, Puller, ASK_QUEUE};
use super::region_store::RegionStore;
use super::{Change, RouterNode};
use crate::clock;
use crate::metrics::pulls::Pulled;
use crate::metrics::Metrics;
use crate::shared::peers::PeerTable;
use crate::shared::SharedRegion;
use crate::shutdown::Shutdown;

/// Changes waiting for the sender task; beyond this they are dropped and
/// counted (the handshake must not wait).
const QUEUE: usize = 8192;
/// How often the task looks for peers to challenge: peers the router just
/// heard from for the first time.
const CHALLENGE_LOOK: std::time::Duration = std::time::Duration::from_millis(100);

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

    /// Whether changes wait for the sender task.
    pub fn is_waiting(&self) -> bool {
        self.tx.capacity() < self.tx.max_capacity()
    }
}

/// What the session store and the connections of this process hold of the
/// cluster.
#[derive(Debug, Clone)]
pub struct ClusterLink {
    pub changes: ChangeQueue,
    pub puller: Puller,
    /// The process's keys, which a reload replaces.
    pub keys: Arc<Keys>,
}

/// Starts the task with a node following `keys`; returns the handles the
/// store and the connections use. Changes that cannot be replicated and
/// pulls that cannot be made are counted in `metrics`.
pub fn spawn(
    keys: &Arc<Keys>,
    region: &'static SharedRegion,
    pull_timeout: std::time::Duration,
    receives: bool,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<ClusterLink> {
    let v4 = bind("0.0.0.0:0")?;
    let v6 = bind("[::]:0").ok();
    let (tx, changes) = mpsc::channel(QUEUE);
    let (asks_tx, asks) = mpsc::channel(ASK_QUEUE);
    let mut follower = keys.follow();
    let task = Task {
        node: super::new_node(follower.initial())?,
        process: keys.process(),
        challenged: HashSet::new(),
        receives,
        keys: follower,
        region,
        peers: region.peers(),
        sockets: Sockets { v4, v6 },
        book: PullBook::new(region.peers(), pull_timeout),
        metrics,
    };
    tokio::spawn(task.run(changes, asks, shutdown));
    Ok(ClusterLink {
        changes: ChangeQueue { tx, metrics },
        puller: Puller::new(asks_tx, pull_timeout, metrics),
        keys: Arc::clone(keys),
    })
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

struct Task {
    node: RouterNode,
    /// This process's slot, under which it publishes its sender.
    process: usize,
    /// Peers challenged since the task started.
    challenged: HashSet<SocketAddr>,
    /// Whether the router receives (`cache-udp-server`): if not, it never
    /// hears from a peer, and challenges every one at once.
    receives: bool,
    keys: KeyFollower,
    region: &'static SharedRegion,
    peers: &'static PeerTable,
    sockets: Sockets,
    book: PullBook,
    metrics: Metrics,
}

impl Task {
    async fn run(
        mut self,
        mut changes: mpsc::Receiver<Change>,
        mut asks: mpsc::Receiver<Ask>,
        mut shutdown: Shutdown,
    ) {
        let mut out = vec![0u8; self.node.settings().max_datagram];
        let mut buf_v4 = vec![0u8; 65_536];
        let mut buf_v6 = vec![0u8; 65_536];
        let mut reported_skips = 0;
        // Sends are non-blocking `try_send_to`s, which fail until the
        // reactor has seen the sockets writable once.
        let _ = self.sockets.v4.writable().await;
        if let Some(v6) = &self.sockets.v6 {
            let _ = v6.writable().await;
        }
        // How often peers the router newly heard from are looked for.
        let mut look = tokio::time::interval(CHALLENGE_LOOK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.challenge_new_peers(&mut out);
            let timeout = self.node.poll_timeout();
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    self.record(change);
                    // Take whatever else is already queued into the same batch.
                    while let Ok(change) = changes.try_recv() {
                        self.record(change);
                    }
                }
                Some(ask) = asks.recv() => {
                    self.pull(ask, &mut out);
                    while let Ok(ask) = asks.try_recv() {
                        self.pull(ask, &mut out);
                    }
                }
                got = self.sockets.v4.recv_from(&mut buf_v4) => {
                    if let Ok((len, from)) = got {
                        self.receive(&buf_v4[..len], from, &mut out);
                    }
                }
                got = recv_v6(self.sockets.v6.as_ref(), &mut buf_v6) => {
                    if let Ok((len, from)) = got {
                        self.receive(&buf_v6[..len], from, &mut out);
                    }
                }
                () = sleep_until(timeout) => {}
                _ = look.tick() => {}
                () = self.keys.changed() => {}
                () = shutdown.requested() => {
                    self.flush(&mut out);
                    self.keys.publish(&self.node);
                    return;
                }
            }
            self.flush(&mut out);
            self.end_pulls();
            // A new ring (SIGHUP) takes effect for what is sent from here.
            self.keys.apply(&mut self.node);
            self.keys.publish(&self.node);
            // One line per burst of losses, not one per change.
            let skipped = self
                .metrics
                .snapshot()
                .get(crate::metrics::Metric::SyncSkipped);
            if skipped > reported_skips {
                warn!(
                    skipped,
                    "changes not replicated (too large for a datagram, or queue full)"
                );
                reported_skips = skipped;
            }
        }
    }

    fn record(&mut self, change: Change) {
        let now = clock::now();
        let queued = self
            .node
            .record_set(now, &change.key, &change.value, change.lifetime);
        // Too large for one datagram, or the node's queue is full.
        if queued.is_err() {
            self.metrics.sync_skipped();
        }
    }

    /// Starts a connection's pull: the request to every peer answering, or
    /// at once a [`Pulled::Dropped`] when none may be asked.
    fn pull(&mut self, ask: Ask, out: &mut [u8]) {
        let Some(plan) = self.book.plan() else {
            let _ = ask.reply.send(Pulled::Dropped);
            return;
        };
        let awaiting = plan.asked.len() as u16;
        let id = match self.node.pull(&ask.key, ask.take, awaiting, plan.deadline) {
            Ok(id) => id,
            Err(error) => {
                warn!(%error, "pull not started");
                self.book.abandon(&plan);
                let _ = ask.reply.send(Pulled::Dropped);
                return;
            }
        };
        while let Some(message) = self.sealing(|node| node.poll_message(out)) {
            for &(index, addr) in &plan.asked {
                let socket = self.sockets.for_peer(addr);
                send_counted(socket, &out[..message.len], addr, self.peers, index);
            }
        }
        self.book.started(id, plan, ask.reply);
    }

    /// A datagram on this process's sockets: peers' answers to its pulls,
    /// and their challenges.
    fn receive(&mut self, datagram: &[u8], from: SocketAddr, out: &mut [u8]) {
        let now = clock::now();
        let outcome = self
            .node
            .handle(now, datagram, &mut RegionStore(self.region));
        if let Ok(handled) = outcome {
            self.book.heard_from(from, handled.pulls.answers);
        }
        // Vouches and challenges go back to where the challenge came from
        // (a peer's master). Peers send pull requests to masters; should
        // one come here, it is answered like there.
        while let Some(message) = self.sealing(|node| node.poll_message(out)) {
            if let Destination::Sender(_) = message.destination {
                let _ = self
                    .sockets
                    .for_peer(from)
                    .map(|socket| socket.try_send_to(&out[..message.len], from));
            }
        }
    }

    /// Tells the connections whose pulls ended.
    fn end_pulls(&mut self) {
        while let Some(event) = self.node.poll_event(clock::now()) {
            self.book.ended(event.id, event.outcome);
        }
    }

    /// Runs `seal` on the node, publishing its next sequence number as
    /// being sealed meanwhile and as idle after (see [`crate::shared::senders`]).
    fn sealing<T>(&mut self, seal: impl FnOnce(&mut RouterNode) -> T) -> T {
        let senders = self.peers.senders();
        let sender = self.node.sender();
        senders.publish(self.process, sender, self.node.next_sequence(), true);
        let sealed = seal(&mut self.node);
        senders.publish(self.process, sender, self.node.next_sequence(), false);
        sealed
    }

    /// Challenges each peer not challenged yet that the router has heard
    /// from (a peer that is not up would lose the challenge; once it is,
    /// it greets the master, which vouches for this node): each challenges
    /// this node back and admits it before its first push.
    fn challenge_new_peers(&mut self, out: &mut [u8]) {
        let now = clock::now();
        for (index, addr) in self.peers.peers() {
            let heard = !self.receives
                || self
                    .peers
                    .entry(index)
                    .received_datagrams
                    .load(Ordering::Relaxed)
                    > 0;
            if !heard || self.challenged.contains(&addr) {
                continue;
            }
            let challenge = |node: &mut RouterNode| {
                node.transmit_control(now, ControlKind::Challenge, &mut *out)
            };
            if let Some(len) = self.sealing(challenge) {
                let socket = self.sockets.for_peer(addr);
                send_counted(socket, &out[..len], addr, self.peers, index);
                self.challenged.insert(addr);
            }
        }
    }

    /// Sends every datagram the node has ready to every peer.
    fn flush(&mut self, buf: &mut [u8]) {
        while let Some(len) = self.sealing(|node| node.poll_transmit(clock::now(), buf)) {
            for (index, addr) in self.peers.peers() {
                send_counted(
                    self.sockets.for_peer(addr),
                    &buf[..len],
                    addr,
                    self.peers,
                    index,
                );
            }
        }
    }
}

async fn recv_v6(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
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
    let peer = peers.entry(index);
    match socket.map(|s| s.try_send_to(datagram, addr)) {
        Some(Ok(_)) => {
            peer.sent_datagrams.fetch_add(1, Ordering::Relaxed);
            peer.sent_bytes
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        }
        _ => {
            peer.send_errors.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_waits_while_the_sender_has_changes_to_take() {
        let (tx, mut rx) = mpsc::channel(4);
        let queue = ChangeQueue {
            tx,
            metrics: Metrics::default(),
        };
        assert!(!queue.is_waiting(), "nothing pushed");
        let change = || Change {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lifetime: cachet_core::Duration::from_millis(1000),
        };
        queue.push(change());
        queue.push(change());
        assert!(queue.is_waiting());
        rx.recv().await.unwrap();
        assert!(queue.is_waiting(), "one change still queued");
        rx.recv().await.unwrap();
        assert!(!queue.is_waiting(), "the sender took everything");
    }
}
