//! Pulling an offered session from the peers before the handshake.
//!
//! A connection whose client offers a session this router lacks asks its
//! process's sync task through a [`Puller`] and waits, asynchronously and
//! for at most `cache-udp-pull-timeout`, while other connections go on.
//! The task (see [`super::outbound`]) owns the process's sync node and
//! sockets: it sends the request (`cachet_core::sync::pull`) to every peer
//! that is answering, within the bounds of [`crate::shared::peers`], receives the
//! answers on the same sockets, and tells the connection how the pull
//! ended; a session found is in the shared cache by then, where rustls
//! finds it.
//!
//! Peers that let a deadline pass are marked silent in the shared peer
//! table, so that later pulls neither ask nor wait for them until a
//! datagram from them shows they are back (the master greets every peer
//! each second, so a peer that recovers is heard from within a second).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use cachet_core::sync::{PullId, PullOutcome};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::clock;
use crate::metrics::pulls::Pulled;
use crate::metrics::Metrics;
use crate::shared::peers::PeerTable;

/// Connections waiting to hand their pull to the sync task; beyond, a miss
/// gets a full handshake at once (the router-wide bound on pulls in flight
/// is far lower, so this only absorbs bursts).
pub const ASK_QUEUE: usize = 1024;

/// A connection's request to the sync task.
#[derive(Debug)]
pub struct Ask {
    pub key: Vec<u8>,
    pub take: bool,
    pub reply: oneshot::Sender<Pulled>,
}

/// A connection's handle on its process's puller.
#[derive(Debug, Clone)]
pub struct Puller {
    asks: mpsc::Sender<Ask>,
    timeout: Duration,
    metrics: Metrics,
}

impl Puller {
    pub fn new(asks: mpsc::Sender<Ask>, timeout: Duration, metrics: Metrics) -> Puller {
        Puller {
            asks,
            timeout,
            metrics,
        }
    }

    /// Asks the peers for `key` (taking it from the one that holds it when
    /// `take`) and waits until the pull ends. Counted and timed.
    pub async fn pull(&self, key: Vec<u8>, take: bool) -> Pulled {
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        let pulled = if self.asks.try_send(Ask { key, take, reply }).is_err() {
            Pulled::Dropped
        } else {
            // The task ends every pull by its deadline; this bound only
            // guards against a task that stopped (shutdown).
            match tokio::time::timeout(self.timeout + Duration::from_secs(1), answer).await {
                Ok(Ok(pulled)) => pulled,
                Ok(Err(_)) | Err(_) => Pulled::TimedOut,
            }
        };
        self.metrics.pulled(pulled, started.elapsed());
        pulled
    }
}

/// A pull in flight, as the sync task keeps it.
#[derive(Debug)]
struct Waiting {
    id: PullId,
    reply: oneshot::Sender<Pulled>,
    started_ms: u64,
    /// Peers asked (their slots in the peer table).
    asked: Vec<usize>,
}

/// The sync task's side: the peers to ask, the pulls in flight, what each
/// peer was last heard from.
#[derive(Debug)]
pub struct PullBook {
    peers: &'static PeerTable,
    timeout: Duration,
    waiting: Vec<Waiting>,
    /// When each peer entry was last heard from (clock milliseconds).
    heard: Vec<u64>,
}

/// Where and to whom a new pull's request goes.
#[derive(Debug)]
pub struct Plan {
    pub asked: Vec<(usize, SocketAddr)>,
    pub deadline: cachet_core::Instant,
}

impl PullBook {
    pub fn new(peers: &'static PeerTable, timeout: Duration) -> PullBook {
        PullBook {
            peers,
            timeout,
            waiting: Vec::new(),
            heard: vec![0; crate::shared::peers::MAX_PEERS],
        }
    }

    /// Picks the peers to ask and reserves the pull in flight for them, or
    /// `None` (the pull is dropped) when the router is at its bound or no
    /// peer is answering.
    pub fn plan(&mut self) -> Option<Plan> {
        if !self.peers.reserve_pull() {
            return None;
        }
        let mut asked = Vec::new();
        for (index, addr) in self.peers.peers() {
            let peer = self.peers.entry(index);
            if self.peers.is_answering(index) && self.peers.reserve_peer_pull(index) {
                peer.pulls_sent.fetch_add(1, Relaxed);
                asked.push((index, addr));
            } else {
                peer.pulls_skipped.fetch_add(1, Relaxed);
            }
        }
        if asked.is_empty() {
            self.peers.release_pull();
            return None;
        }
        let wait = cachet_core::Duration::from_millis(self.timeout.as_millis() as u64);
        Some(Plan {
            asked,
            deadline: clock::now() + wait,
        })
    }

    /// Undoes [`PullBook::plan`] for a pull the node refused to start.
    pub fn abandon(&mut self, plan: &Plan) {
        self.release(plan.asked.iter().map(|(index, _)| *index));
    }

    /// Keeps the pull started under `plan` until its event.
    pub fn started(&mut self, id: PullId, plan: Plan, reply: oneshot::Sender<Pulled>) {
        self.waiting.push(Waiting {
            id,
            reply,
            started_ms: clock::now().as_millis(),
            asked: plan.asked.into_iter().map(|(index, _)| index).collect(),
        });
    }

    /// A datagram the node accepted came from `from`: a peer heard from is
    /// answering again. `answers` is how many pull answers it carried.
    pub fn heard_from(&mut self, from: SocketAddr, answers: u32) {
        let Some(index) = self.peers.find(from) else {
            return;
        };
        self.heard[index] = clock::now().as_millis();
        self.peers.mark_answering(index);
        if answers > 0 {
            self.peers
                .entry(index)
                .pull_answers
                .fetch_add(u64::from(answers), Relaxed);
        }
    }

    /// Pull `id` ended: tells its connection, releases its reservations,
    /// and on a timeout marks silent every peer asked that sent nothing
    /// since the pull began.
    pub fn ended(&mut self, id: PullId, outcome: PullOutcome) {
        let Some(index) = self.waiting.iter().position(|w| w.id == id) else {
            return;
        };
        let waiting = self.waiting.swap_remove(index);
        if outcome == PullOutcome::TimedOut {
            let now_ms = clock::now().as_millis();
            for &peer in &waiting.asked {
                if self.heard[peer] < waiting.started_ms {
                    self.peers.entry(peer).pull_timeouts.fetch_add(1, Relaxed);
                    self.peers.mark_silent(peer, now_ms);
                    debug!(
                        slot = peer,
                        "sync peer let a pull's deadline pass; pulls skip it until it is heard from"
                    );
                }
            }
        }
        self.release(waiting.asked.iter().copied());
        // The connection may be gone; then nobody waits for the answer.
        let _ = waiting.reply.send(outcome.into());
    }

    fn release(&self, asked: impl Iterator<Item = usize>) {
        for peer in asked {
            self.peers.release_peer_pull(peer);
        }
        self.peers.release_pull();
    }
}
