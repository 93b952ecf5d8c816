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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cachet_core::sync::{PullId, PullOutcome};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::clock;
use crate::latency::{Latency, LatencyCounters};
use crate::metrics::Metrics;
use crate::shared::peers::PeerTable;

/// Connections waiting to hand their pull to the sync task; beyond, a miss
/// gets a full handshake at once (the router-wide bound on pulls in flight
/// is far lower, so this only absorbs bursts).
pub const ASK_QUEUE: usize = 1024;

/// How a connection's pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The session is in the cache now.
    Found,
    /// Every peer asked answered that it has none.
    NotFound,
    /// The deadline passed first.
    TimedOut,
    /// Not asked: too many pulls in flight, or no peer answering.
    Dropped,
}

impl From<PullOutcome> for Pulled {
    fn from(outcome: PullOutcome) -> Pulled {
        match outcome {
            PullOutcome::Found => Pulled::Found,
            PullOutcome::NotFound => Pulled::NotFound,
            PullOutcome::TimedOut => Pulled::TimedOut,
        }
    }
}

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

/// A process's pull counters, in its shared-memory metrics block.
/// `repr(C)`, all atomics, valid when zeroed.
#[repr(C)]
#[derive(Debug, Default)]
pub struct PullCounters {
    asked: AtomicU64,
    found: AtomicU64,
    not_found: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
    wait: LatencyCounters,
}
crate::sys::shm::zeroable!(PullCounters {
    asked,
    found,
    not_found,
    timed_out,
    dropped,
    wait
});

/// Pull figures of one process, or of all added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullFigures {
    /// Pulls asked of the peers.
    pub asked: u64,
    pub found: u64,
    pub not_found: u64,
    pub timed_out: u64,
    /// Misses not pulled: bounds reached, or no peer answering.
    pub dropped: u64,
    /// How long handshakes waited for the pulls asked.
    pub wait: Latency,
}

impl PullCounters {
    pub fn count(&self, pulled: Pulled, waited: Duration) {
        let counter = match pulled {
            Pulled::Found => &self.found,
            Pulled::NotFound => &self.not_found,
            Pulled::TimedOut => &self.timed_out,
            Pulled::Dropped => {
                self.dropped.fetch_add(1, Relaxed);
                return;
            }
        };
        counter.fetch_add(1, Relaxed);
        self.asked.fetch_add(1, Relaxed);
        self.wait.record(waited);
    }

    pub fn snapshot(&self) -> PullFigures {
        PullFigures {
            asked: self.asked.load(Relaxed),
            found: self.found.load(Relaxed),
            not_found: self.not_found.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            wait: self.wait.snapshot(),
        }
    }
}

impl PullFigures {
    /// Both added up.
    pub fn plus(&self, other: &PullFigures) -> PullFigures {
        PullFigures {
            asked: self.asked + other.asked,
            found: self.found + other.found,
            not_found: self.not_found + other.not_found,
            timed_out: self.timed_out + other.timed_out,
            dropped: self.dropped + other.dropped,
            wait: self.wait.plus(&other.wait),
        }
    }

    /// Pulls by how they ended, named as in stats.
    pub fn outcomes(&self) -> [(&'static str, u64); 4] {
        [
            ("found", self.found),
            ("not_found", self.not_found),
            ("timed_out", self.timed_out),
            ("dropped", self.dropped),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_are_counted_by_outcome_and_only_asked_ones_timed() {
        let counters = PullCounters::default();
        for _ in 0..98 {
            counters.count(Pulled::Found, Duration::from_micros(300));
        }
        counters.count(Pulled::NotFound, Duration::from_micros(900));
        counters.count(Pulled::TimedOut, Duration::from_millis(20));
        counters.count(Pulled::Dropped, Duration::ZERO);
        let figures = counters.snapshot();
        assert_eq!(
            (
                figures.asked,
                figures.found,
                figures.not_found,
                figures.timed_out,
                figures.dropped
            ),
            (100, 98, 1, 1, 1)
        );
        assert_eq!(figures.wait.count(), 100);
        assert_eq!(figures.wait.quantile_us(0.99), Some(1_000));
        let doubled = figures.plus(&figures);
        assert_eq!((doubled.asked, doubled.wait.count()), (200, 200));
    }
}
