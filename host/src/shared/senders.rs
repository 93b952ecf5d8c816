//! Each process's sync sender, published for the master to vouch for.
//!
//! A peer that (re)starts verifies a sender before applying its changes
//! (`cachet_core::sync::challenge`). The master answers a peer's challenge
//! for the whole router in one round trip: for itself, and for every
//! process's sync node listed here, each with the lowest sequence number it
//! may still seal. That vouch is only sound if no datagram numbered at or
//! above the listed number was sealed before the master read it, so a
//! process publishes its next number around every call that seals, as a
//! seqlock would: *sealing* `n` before the call, *idle* at the number after
//! it. A master that reads "idle at `n`" lists `n` (nothing is being
//! sealed, and the next datagram is `n`); one that reads "sealing `n`"
//! lists `n + 1`, since datagram `n` may be sealed before the read. A
//! datagram sealed before the read and sent after the vouch (or sealed
//! while it was read) is then refused by that one peer as a replay: the
//! first copy of a push lost in a race of microseconds, which the push's
//! repeat under a new number, or a pull on miss, makes up for.
//! A slot keeps the last process that held it, alive or not; vouching for
//! a dead one is harmless (it seals nothing more), and a new worker in the
//! same slot replaces it.

use std::sync::atomic::{AtomicU64, Ordering};

use cachet_core::sync::Member;

use super::MAX_WORKERS;

/// One slot per process (0 for the master or a lone process, then the
/// workers' numbers): its sync node's sender id and next sequence number.
/// `repr(C)`, all atomics, valid when zeroed (sender 0: none).
#[repr(C)]
#[derive(Debug)]
pub struct SenderTable {
    slots: [SenderSlot; MAX_WORKERS + 1],
}
crate::sys::shm::zeroable!(SenderTable { slots });

#[repr(C)]
#[derive(Debug, Default)]
struct SenderSlot {
    sender: AtomicU64,
    /// The next sequence number, shifted left by one; bit 0 set while a
    /// datagram with that number is being sealed.
    next: AtomicU64,
}
crate::sys::shm::zeroable!(SenderSlot { sender, next });

impl Default for SenderTable {
    fn default() -> Self {
        SenderTable {
            slots: std::array::from_fn(|_| SenderSlot::default()),
        }
    }
}

impl SenderTable {
    /// Process `process`'s node `sender` is about to seal datagram `next`
    /// (`sealing`), or is done sealing and will number its next datagram
    /// `next`. Call before and after every call that seals.
    pub fn publish(&self, process: usize, sender: u64, next: u64, sealing: bool) {
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
        let next = next.min(u64::MAX >> 1) << 1 | u64::from(sealing);
        slot.next.store(next, Ordering::SeqCst);
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
            let next = slot.next.load(Ordering::SeqCst);
            if sender == 0 || slot.sender.load(Ordering::SeqCst) != sender {
                continue;
            }
            // While sealing `n`, datagram `n` may predate this read.
            let since = (next >> 1) + (next & 1);
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
        table.publish(0, 7, 1, false);
        table.publish(2, 9, 5, true);
        assert_eq!(table.members(&mut out), 2);
        assert_eq!(out[1].since, 6, "datagram 5 may be sealed already");
        table.publish(2, 9, 6, false);
        table.publish(MAX_WORKERS + 1, 1, 1, false); // no such slot: ignored
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
