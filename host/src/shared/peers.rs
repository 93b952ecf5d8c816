//! The peers a router pushes sessions to, shared by its processes.
//!
//! The master writes the table (peers from `cache-udp-node`, and peers that
//! announce themselves with an authenticated hello); every worker reads it
//! before sending and counts what it sent to each peer. Everything is an
//! atomic, so the table can live in shared memory and be read without a
//! lock; a entry is published by storing its address first and its state
//! last (release), and read in the opposite order (acquire).
//!
//! Pulls keep their books here too, since every process pulls and all of
//! them must agree on two things: which peers are answering (a peer that
//! let a pull's deadline pass is *silent*, and later pulls do not wait for
//! it until any datagram from its address shows it is back), and how many
//! pulls are in flight, per peer and for the whole router, so that a flood
//! of ClientHellos offering random ids cannot turn the router into a queue
//! or its peers into amplifiers.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use super::key_table::KeyTable;
use super::senders::SenderTable;
use super::ticket_board::TicketBoard;

/// Most peers a router tracks.
pub const MAX_PEERS: usize = 64;

/// One peer's address and counters.
#[repr(C)]
#[derive(Debug, Default)]
pub struct PeerEntry {
    state: AtomicU64,
    ip_hi: AtomicU64,
    ip_lo: AtomicU64,
    /// Port in the low 16 bits; bit 16 set for IPv4.
    port_family: AtomicU64,
    pub sent_datagrams: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub send_errors: AtomicU64,
    pub received_datagrams: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Pulls sent to this peer, and how they went for it.
    pub pulls_sent: AtomicU64,
    pub pull_answers: AtomicU64,
    pub pull_timeouts: AtomicU64,
    /// Pulls not sent to it: it was silent, or had too many in flight.
    pub pulls_skipped: AtomicU64,
    /// Pulls sent to it and not ended yet.
    pulls_in_flight: AtomicU64,
    /// Milliseconds (of [`crate::clock`]) since when the peer is silent;
    /// 0 while it answers.
    silent_since: AtomicU64,
}
crate::sys::shm::zeroable!(PeerEntry {
    state,
    ip_hi,
    ip_lo,
    port_family,
    sent_datagrams,
    sent_bytes,
    send_errors,
    received_datagrams,
    received_bytes,
    pulls_sent,
    pull_answers,
    pull_timeouts,
    pulls_skipped,
    pulls_in_flight,
    silent_since
});

/// The table. `repr(C)`, all atomics, valid when zeroed.
#[repr(C)]
#[derive(Debug)]
pub struct PeerTable {
    /// Bumped whenever a peer is added, so readers refresh their copy.
    generation: AtomicU64,
    /// Pulls in flight from all processes of this router.
    pulls_in_flight: AtomicU64,
    entries: [PeerEntry; MAX_PEERS],
    /// The cluster keys' figures, shared by the processes the same way.
    keys: KeyTable,
    /// Each process's sync sender, which the master vouches for.
    senders: SenderTable,
    /// The ticket keys, sealed, for every serving process
    /// (`ssl-session-tickets = keys`).
    tickets: TicketBoard,
}
crate::sys::shm::zeroable!(PeerTable {
    generation,
    pulls_in_flight,
    entries,
    keys,
    senders,
    tickets
});

/// A snapshot of one peer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFigures {
    pub addr: SocketAddr,
    pub sent_datagrams: u64,
    pub sent_bytes: u64,
    pub send_errors: u64,
    pub received_datagrams: u64,
    pub received_bytes: u64,
    pub pulls_sent: u64,
    pub pull_answers: u64,
    pub pull_timeouts: u64,
    pub pulls_skipped: u64,
    /// Whether pulls currently skip it (it let a deadline pass).
    pub silent: bool,
}

/// Pulls in flight a router allows: beyond, a miss gets a full handshake
/// at once (counted as dropped). A pull lasts a round trip, well under a
/// millisecond between live peers, so this is thousands of misses per
/// second; a flood of random ids hits the bound instead of the peers.
pub const MAX_PULLS_IN_FLIGHT: u64 = 256;
/// Pulls in flight to one peer: a peer slow to answer holds no more.
pub const MAX_PULLS_PER_PEER: u64 = 64;

const USED: u64 = 1;
const IPV4: u64 = 1 << 16;

impl PeerTable {
    /// Adds `addr` unless present; returns its entry, or `None` when full.
    /// Only one task (the master's sync receiver) may add.
    pub fn add(&self, addr: SocketAddr) -> Option<usize> {
        if let Some(index) = self.find(addr) {
            return Some(index);
        }
        let index = self
            .entries
            .iter()
            .position(|s| s.state.load(Ordering::Acquire) != USED)?;
        let entry = &self.entries[index];
        let (hi, lo, port_family) = encode(addr);
        entry.ip_hi.store(hi, Ordering::Relaxed);
        entry.ip_lo.store(lo, Ordering::Relaxed);
        entry.port_family.store(port_family, Ordering::Relaxed);
        entry.state.store(USED, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
        Some(index)
    }

    /// The entry of `addr`, if it is a peer.
    pub fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.peers().find(|&(_, a)| a == addr).map(|(i, _)| i)
    }

    /// Every peer with its entry.
    pub fn peers(&self) -> impl Iterator<Item = (usize, SocketAddr)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.state.load(Ordering::Acquire) == USED)
            .map(|(i, entry)| {
                let addr = decode(
                    entry.ip_hi.load(Ordering::Relaxed),
                    entry.ip_lo.load(Ordering::Relaxed),
                    entry.port_family.load(Ordering::Relaxed),
                );
                (i, addr)
            })
    }

    /// Changes whenever the set of peers does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cluster keys' figures.
    pub fn keys(&self) -> &KeyTable {
        &self.keys
    }

    /// Each process's sync sender.
    pub fn senders(&self) -> &SenderTable {
        &self.senders
    }

    /// The board the receiver publishes the ticket keys on.
    pub fn tickets(&self) -> &TicketBoard {
        &self.tickets
    }

    /// The counters of entry `index`.
    pub fn entry(&self, index: usize) -> &PeerEntry {
        &self.entries[index]
    }

    /// Whether pulls should wait for peer `index`.
    pub fn is_answering(&self, index: usize) -> bool {
        self.entries[index].silent_since.load(Ordering::Relaxed) == 0
    }

    /// Peer `index` let a pull's deadline pass at `now_ms`: later pulls do
    /// not wait for it until it is heard from again.
    pub fn mark_silent(&self, index: usize, now_ms: u64) {
        let _ = self.entries[index].silent_since.compare_exchange(
            0,
            now_ms.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A datagram from peer `index` arrived: it answers again.
    pub fn mark_answering(&self, index: usize) {
        if self.entries[index].silent_since.load(Ordering::Relaxed) != 0 {
            self.entries[index].silent_since.store(0, Ordering::Relaxed);
        }
    }

    /// Reserves a pull in flight for the router; `false` at the bound.
    pub fn reserve_pull(&self) -> bool {
        reserve(&self.pulls_in_flight, MAX_PULLS_IN_FLIGHT)
    }

    /// Releases what [`PeerTable::reserve_pull`] reserved.
    pub fn release_pull(&self) {
        release(&self.pulls_in_flight);
    }

    /// Reserves a pull in flight to peer `index`; `false` at the bound.
    pub fn reserve_peer_pull(&self, index: usize) -> bool {
        reserve(&self.entries[index].pulls_in_flight, MAX_PULLS_PER_PEER)
    }

    /// Releases what [`PeerTable::reserve_peer_pull`] reserved.
    pub fn release_peer_pull(&self, index: usize) {
        release(&self.entries[index].pulls_in_flight);
    }

    /// Forgets the pulls in flight a dead process left: it can no longer
    /// end them. (The master calls this when it replaces a worker; the
    /// counts are approximate for a moment, which only loosens a bound.)
    pub fn reset_pulls_in_flight(&self) {
        self.pulls_in_flight.store(0, Ordering::Relaxed);
        for entry in &self.entries {
            entry.pulls_in_flight.store(0, Ordering::Relaxed);
        }
    }

    /// Every peer's counters.
    pub fn figures(&self) -> Vec<PeerFigures> {
        self.peers()
            .map(|(i, addr)| {
                let s = &self.entries[i];
                PeerFigures {
                    addr,
                    sent_datagrams: s.sent_datagrams.load(Ordering::Relaxed),
                    sent_bytes: s.sent_bytes.load(Ordering::Relaxed),
                    send_errors: s.send_errors.load(Ordering::Relaxed),
                    received_datagrams: s.received_datagrams.load(Ordering::Relaxed),
                    received_bytes: s.received_bytes.load(Ordering::Relaxed),
                    pulls_sent: s.pulls_sent.load(Ordering::Relaxed),
                    pull_answers: s.pull_answers.load(Ordering::Relaxed),
                    pull_timeouts: s.pull_timeouts.load(Ordering::Relaxed),
                    pulls_skipped: s.pulls_skipped.load(Ordering::Relaxed),
                    silent: s.silent_since.load(Ordering::Relaxed) != 0,
                }
            })
            .collect()
    }
}

/// Adds one to `count` unless it reached `limit`.
fn reserve(count: &AtomicU64, limit: u64) -> bool {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// Takes one from `count`, never below zero: after a reset (a worker
/// died holding some) the pulls still in flight end against zero.
fn release(count: &AtomicU64) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

fn encode(addr: SocketAddr) -> (u64, u64, u64) {
    let (ip, v4) = match addr.ip() {
        IpAddr::V4(ip) => (ip.to_ipv6_mapped(), IPV4),
        IpAddr::V6(ip) => (ip, 0),
    };
    let bits = u128::from(ip);
    (
        (bits >> 64) as u64,
        bits as u64,
        u64::from(addr.port()) | v4,
    )
}

fn decode(hi: u64, lo: u64, port_family: u64) -> SocketAddr {
    let ip = Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo));
    let ip = match (port_family & IPV4 != 0, ip.to_ipv4_mapped()) {
        (true, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(ip),
    };
    SocketAddr::new(ip, port_family as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_added_once_and_read_back() {
        let table = table();
        let a: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let b: SocketAddr = "[::1]:4001".parse().unwrap();
        assert_eq!(table.add(a), Some(0));
        assert_eq!(table.add(b), Some(1));
        assert_eq!(table.add(a), Some(0));
        assert_eq!(table.generation(), 2);
        assert_eq!(table.peers().collect::<Vec<_>>(), [(0, a), (1, b)]);
        table
            .entry(1)
            .sent_datagrams
            .fetch_add(3, Ordering::Relaxed);
        assert_eq!(table.figures()[1].sent_datagrams, 3);
    }

    fn table() -> Box<PeerTable> {
        Box::new(PeerTable {
            generation: AtomicU64::new(0),
            pulls_in_flight: AtomicU64::new(0),
            entries: std::array::from_fn(|_| PeerEntry::default()),
            keys: KeyTable::default(),
            senders: SenderTable::default(),
            tickets: TicketBoard::default(),
        })
    }

    #[test]
    fn a_silent_peer_answers_again_once_heard_from() {
        let table = table();
        let peer = table.add("127.0.0.2:4000".parse().unwrap()).unwrap();
        assert!(table.is_answering(peer));
        table.mark_silent(peer, 0);
        assert!(
            !table.is_answering(peer),
            "silent even at the clock's origin"
        );
        assert!(table.figures()[0].silent);
        table.mark_answering(peer);
        assert!(table.is_answering(peer));
    }

    #[test]
    fn pulls_in_flight_are_bounded_per_router_and_per_peer() {
        let table = table();
        let peer = table.add("127.0.0.2:4000".parse().unwrap()).unwrap();
        for _ in 0..MAX_PULLS_PER_PEER {
            assert!(table.reserve_peer_pull(peer));
        }
        assert!(!table.reserve_peer_pull(peer));
        table.release_peer_pull(peer);
        assert!(table.reserve_peer_pull(peer));
        for _ in 0..MAX_PULLS_IN_FLIGHT {
            assert!(table.reserve_pull());
        }
        assert!(!table.reserve_pull());
        table.reset_pulls_in_flight();
        assert!(table.reserve_pull() && table.reserve_peer_pull(peer));
        // Releases after a reset stop at zero instead of wrapping around.
        for _ in 0..3 {
            table.release_pull();
        }
        assert!(table.reserve_pull());
    }
}
