//! Keys deleted a moment ago, so that a late `Set` cannot bring them back.
//!
//! A TLS 1.3 ticket used on node B is deleted cluster-wide. If node C gets
//! B's delete before A's (delayed or repeated) set of the same ticket, the
//! set must not resurrect it: C remembers the deletion for a while.

use crate::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
struct Tombstone {
    fingerprint: u64,
    until: Instant,
}

/// A ring of the last `N` deletions, each remembered until its deadline.
#[derive(Debug)]
pub(crate) struct Tombstones<const N: usize> {
    ring: [Tombstone; N],
    next: usize,
}

impl<const N: usize> Tombstones<N> {
    pub(crate) fn new() -> Self {
        Tombstones {
            ring: [Tombstone::default(); N],
            next: 0,
        }
    }

    pub(crate) fn bury(&mut self, fingerprint: u64, until: Instant) {
        if N == 0 {
            return;
        }
        self.ring[self.next] = Tombstone { fingerprint, until };
        self.next = (self.next + 1) % N;
    }

    pub(crate) fn is_buried(&self, fingerprint: u64, now: Instant) -> bool {
        self.ring
            .iter()
            .any(|t| t.fingerprint == fingerprint && t.until > now)
    }

    /// Forgets a key that was stored again locally on purpose.
    pub(crate) fn exhume(&mut self, fingerprint: u64) {
        for t in self
            .ring
            .iter_mut()
            .filter(|t| t.fingerprint == fingerprint)
        {
            t.until = Instant::ZERO;
        }
    }
}
