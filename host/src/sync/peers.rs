//! The peers a router pushes sessions to, shared by its processes.
//!
//! The master writes the table (peers from `cache-udp-node`, and peers that
//! announce themselves with an authenticated hello); every worker reads it
//! before sending and counts what it sent to each peer. Everything is an
//! atomic, so the table can live in shared memory and be read without a
//! lock; a slot is published by storing its address first and its state
//! last (release), and read in the opposite order (acquire).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most peers a router tracks.
pub const MAX_PEERS: usize = 64;

/// One peer's address and counters.
#[repr(C)]
#[derive(Debug, Default)]
pub struct PeerSlot {
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
}

/// The table. `repr(C)`, all atomics, valid when zeroed.
#[repr(C)]
#[derive(Debug)]
pub struct PeerTable {
    /// Bumped whenever a peer is added, so readers refresh their copy.
    generation: AtomicU64,
    slots: [PeerSlot; MAX_PEERS],
}

/// A snapshot of one peer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFigures {
    pub addr: SocketAddr,
    pub sent_datagrams: u64,
    pub sent_bytes: u64,
    pub send_errors: u64,
    pub received_datagrams: u64,
    pub received_bytes: u64,
}

const USED: u64 = 1;
const IPV4: u64 = 1 << 16;

impl PeerTable {
    /// Adds `addr` unless present; returns its slot, or `None` when full.
    /// Only one task (the master's sync receiver) may add.
    pub fn add(&self, addr: SocketAddr) -> Option<usize> {
        if let Some(index) = self.find(addr) {
            return Some(index);
        }
        let index = self
            .slots
            .iter()
            .position(|s| s.state.load(Ordering::Acquire) != USED)?;
        let slot = &self.slots[index];
        let (hi, lo, port_family) = encode(addr);
        slot.ip_hi.store(hi, Ordering::Relaxed);
        slot.ip_lo.store(lo, Ordering::Relaxed);
        slot.port_family.store(port_family, Ordering::Relaxed);
        slot.state.store(USED, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
        Some(index)
    }

    /// The slot of `addr`, if it is a peer.
    pub fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.peers().find(|&(_, a)| a == addr).map(|(i, _)| i)
    }

    /// Every peer with its slot.
    pub fn peers(&self) -> impl Iterator<Item = (usize, SocketAddr)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.state.load(Ordering::Acquire) == USED)
            .map(|(i, slot)| {
                let addr = decode(
                    slot.ip_hi.load(Ordering::Relaxed),
                    slot.ip_lo.load(Ordering::Relaxed),
                    slot.port_family.load(Ordering::Relaxed),
                );
                (i, addr)
            })
    }

    /// Changes whenever the set of peers does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The counters of slot `index`.
    pub fn slot(&self, index: usize) -> &PeerSlot {
        &self.slots[index]
    }

    /// Every peer's counters.
    pub fn figures(&self) -> Vec<PeerFigures> {
        self.peers()
            .map(|(i, addr)| {
                let s = &self.slots[i];
                PeerFigures {
                    addr,
                    sent_datagrams: s.sent_datagrams.load(Ordering::Relaxed),
                    sent_bytes: s.sent_bytes.load(Ordering::Relaxed),
                    send_errors: s.send_errors.load(Ordering::Relaxed),
                    received_datagrams: s.received_datagrams.load(Ordering::Relaxed),
                    received_bytes: s.received_bytes.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
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
        let table: Box<PeerTable> = Box::new(PeerTable {
            generation: AtomicU64::new(0),
            slots: std::array::from_fn(|_| PeerSlot::default()),
        });
        let a: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let b: SocketAddr = "[::1]:4001".parse().unwrap();
        assert_eq!(table.add(a), Some(0));
        assert_eq!(table.add(b), Some(1));
        assert_eq!(table.add(a), Some(0));
        assert_eq!(table.generation(), 2);
        assert_eq!(table.peers().collect::<Vec<_>>(), [(0, a), (1, b)]);
        table.slot(1).sent_datagrams.fetch_add(3, Ordering::Relaxed);
        assert_eq!(table.figures()[1].sent_datagrams, 3);
    }
}
