//! What each process's cluster keys did, in the shared region, for stats:
//! which ring every process holds, and how many datagrams each key sealed
//! and opened, by fingerprint, never by key (the keys themselves never
//! leave the process that read them; see `crate::sync::keys`).

use std::sync::atomic::{AtomicU64, Ordering};

use cachet_core::wire::{Fingerprint, Keyring, MAX_KEYS};

use super::MAX_WORKERS;

/// Keys whose use a router counts, the first it met since it started
/// (a rollover meets two; this leaves room for many).
pub const MAX_COUNTED_KEYS: usize = 16;

/// A stored fingerprint: the fingerprint in the low 32 bits, this bit set
/// (so that zero means "none").
const PRESENT: u64 = 1 << 32;

/// The keys' figures in the shared region. `repr(C)`, all atomics, valid
/// when zeroed.
#[repr(C)]
#[derive(Debug)]
pub struct KeyTable {
    counted: [KeyCount; MAX_COUNTED_KEYS],
    /// Each process's ring, sealing key first, by process slot (0 for the
    /// master or a lone process, then the workers' numbers).
    rings: [[AtomicU64; MAX_KEYS]; MAX_WORKERS + 1],
}
crate::sys::shm::zeroable!(KeyTable { counted, rings });

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            counted: std::array::from_fn(|_| KeyCount::default()),
            rings: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

#[repr(C)]
#[derive(Debug, Default)]
struct KeyCount {
    fingerprint: AtomicU64,
    sealed: AtomicU64,
    opened: AtomicU64,
}
crate::sys::shm::zeroable!(KeyCount {
    fingerprint,
    sealed,
    opened
});

/// What one key did across the router's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFigures {
    pub fingerprint: Fingerprint,
    pub sealed: u64,
    pub opened: u64,
}

/// A ring some processes hold, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingFigures {
    /// Fingerprints, sealing key first.
    pub keys: Vec<Fingerprint>,
    pub processes: u64,
}

impl KeyTable {
    /// Adds what a node sealed and opened under `fingerprint`. Beyond
    /// [`MAX_COUNTED_KEYS`] keys, further keys are not counted.
    pub fn count(&self, fingerprint: Fingerprint, sealed: u64, opened: u64) {
        let tag = PRESENT | u64::from(fingerprint.to_u32());
        let slot = self.counted.iter().find(|slot| {
            // Take the first slot that holds this key or, failing that,
            // is free (claimed atomically: processes count concurrently).
            match slot
                .fingerprint
                .compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => true,
                Err(held) => held == tag,
            }
        });
        if let Some(slot) = slot {
            slot.sealed.fetch_add(sealed, Ordering::Relaxed);
            slot.opened.fetch_add(opened, Ordering::Relaxed);
        }
    }

    /// Records the ring process `process` now uses.
    pub fn set_ring(&self, process: usize, ring: &Keyring) {
        let Some(slots) = self.rings.get(process) else {
            return;
        };
        let mut keys = ring
            .uses()
            .map(|u| PRESENT | u64::from(u.fingerprint.to_u32()));
        for slot in slots {
            slot.store(keys.next().unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Every key counted, in the order first met.
    pub fn figures(&self) -> Vec<KeyFigures> {
        self.counted
            .iter()
            .map_while(|slot| {
                let tag = slot.fingerprint.load(Ordering::Acquire);
                (tag != 0).then(|| KeyFigures {
                    fingerprint: Fingerprint::from_u32(tag as u32),
                    sealed: slot.sealed.load(Ordering::Relaxed),
                    opened: slot.opened.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// The distinct rings the processes hold, most held first: one entry
    /// once a change of keys has reached every process. (A ring is read
    /// key by key, so one read during a change may mix old and new.)
    pub fn rings(&self) -> Vec<RingFigures> {
        let mut rings: Vec<RingFigures> = Vec::new();
        for slots in &self.rings {
            let keys: Vec<Fingerprint> = slots
                .iter()
                .map(|slot| slot.load(Ordering::Relaxed))
                .take_while(|&tag| tag != 0)
                .map(|tag| Fingerprint::from_u32(tag as u32))
                .collect();
            if keys.is_empty() {
                continue;
            }
            match rings.iter_mut().find(|ring| ring.keys == keys) {
                Some(ring) => ring.processes += 1,
                None => rings.push(RingFigures { keys, processes: 1 }),
            }
        }
        rings.sort_by_key(|ring| std::cmp::Reverse(ring.processes));
        rings
    }
}
