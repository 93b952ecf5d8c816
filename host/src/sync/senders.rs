//! Each process's sync sender, published for the master to vouch for.
//!
//! A peer that (re)starts verifies a sender before applying its changes
//! (`cachet_core::sync::challenge`). The master answers a peer's challenge
//! for the whole router in one round trip: for itself, and for every
//! process's sync node listed here, each with the lowest sequence number it
//! may still seal. That vouch is only sound if no datagram numbered at or
//! above the listed number was sealed before the master read it, so a
//! process publishes the number *after* each datagram before sealing it
//! ([`SenderTable::publish`] before every call that seals): whatever the
//! master reads, every datagram numbered at or above it is sealed later.
//! A slot keeps the last process that held it, alive or not; vouching for
//! a dead one is harmless (it seals nothing more), and a new worker in the
//! same slot replaces it.

use std::sync::atomic::{AtomicU64, Ordering};

use cachet_core::sync::Member;

use crate::shared::MAX_WORKERS;

/// One slot per process (0 for the master or a lone process, then the
/// workers' numbers): its sync node's sender id and next sequence number.
/// `repr(C)`, all atomics, valid when zeroed (sender 0: none).
#[repr(C)]
#[derive(Debug)]
pub struct SenderTable {
    slots: [SenderSlot; MAX_WORKERS + 1],
}

#[repr(C)]
#[derive(Debug, Default)]
struct SenderSlot {
    sender: AtomicU64,
    since: AtomicU64,
}

impl Default for SenderTable {
    fn default() -> Self {
        SenderTable {
            slots: std::array::from_fn(|_| SenderSlot::default()),
        }
    }
}

impl SenderTable {
    /// Process `process`'s node `sender` will number its next datagram no
    /// lower than `since`. Call before each call that seals.
    pub fn publish(&self, process: usize, sender: u64, since: u64) {
        let Some(slot) = self.slots.get(process) else {
            return;
        };
        // Sequential consistency: a master that reads `since` reads it
        // before any datagram numbered from it is sealed. A new sender in
        // the slot clears it first, so that no reader pairs the old sender
        // with the new one's (lower) number.
        if slot.sender.load(Ordering::SeqCst) != sender {
            slot.sender.store(0, Ordering::SeqCst);
        }
        slot.since.store(since, Ordering::SeqCst);
        slot.sender.store(sender, Ordering::SeqCst);
    }

    /// The published senders, into `out`; returns how many.
    pub fn members(&self, out: &mut [Member]) -> usize {
        let mut count = 0;
        for slot in &self.slots {
            if count == out.len() {
                break;
            }
            // Sender, number, sender again: a slot changing hands meanwhile
            // is left out rather than read torn.
            let sender = slot.sender.load(Ordering::SeqCst);
            let since = slot.since.load(Ordering::SeqCst);
            if sender == 0 || slot.sender.load(Ordering::SeqCst) != sender {
                continue;
            }
            out[count] = Member { sender, since };
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_senders_are_listed_with_their_latest_number() {
        let table = Box::<SenderTable>::default();
        let mut out = [Member::default(); 4];
        assert_eq!(table.members(&mut out), 0);
        table.publish(0, 7, 1);
        table.publish(2, 9, 5);
        table.publish(2, 9, 6);
        table.publish(MAX_WORKERS + 1, 1, 1); // no such slot: ignored
        assert_eq!(table.members(&mut out), 2);
        assert_eq!(
            out[..2],
            [
                Member {
                    sender: 7,
                    since: 1
                },
                Member {
                    sender: 9,
                    since: 6
                }
            ]
        );
        assert_eq!(table.members(&mut out[..1]), 1, "bounded by `out`");
    }
}
