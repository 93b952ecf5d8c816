//! Challenges: how a node learns, without trusting any clock, that a
//! sender's datagrams are fresh.
//!
//! A replay window lives in memory, so a node that restarts has none: a
//! datagram captured on the wire before the restart would pass every check
//! once more (a session that expired, pushed again with the lifetime it had
//! then, comes back to life). So a node *verifies* a sender before it
//! applies anything from it: it sends the sender a
//! [`Record::Challenge`](crate::wire::Record::Challenge) carrying a nonce
//! it has never used, and the sender answers with a
//! [`Record::Vouch`](crate::wire::Record::Vouch): "my datagrams from
//! sequence number `since` on were sealed after I saw your nonce". The
//! node then admits the sender with its replay window starting at `since`:
//! anything captured before the challenge carries a lower sequence number
//! and is rejected. The nonce is what makes the vouch fresh, and no clock
//! is compared with another's.
//!
//! A node may vouch for senders other than itself (a router's master for
//! its worker processes, from the sequence numbers they publish), so one
//! round trip verifies a whole router; and a node that answers a bootstrap
//! request vouches for itself in every datagram of its answer, under the
//! nonce the request carried (see [`super::Node::prove`]).
//!
//! Issued nonces are kept here, each for [`LIFETIME`], in a table of
//! [`ISSUED`]: a vouch under a nonce this node did not issue, or issued
//! longer ago, admits nobody.

use core::hash::Hasher;

use siphasher::sip::SipHasher13;

use crate::time::{Duration, Instant};

/// How long an issued nonce admits the senders vouched under it. Long
/// enough for a peer that is slow to answer; a vouch replayed later than
/// this is ignored.
pub const LIFETIME: Duration = Duration::from_secs(10);
/// How soon an unverified sender is challenged again, should the challenge
/// or its answer have been lost.
pub const RECHALLENGE_AFTER: Duration = Duration::from_millis(500);
/// Nonces outstanding at once; beyond, the oldest is forgotten.
pub const ISSUED: usize = 16;
/// Most senders a node vouches for besides itself in one answer.
pub const MAX_MEMBERS: usize = 32;

/// A sender a node vouches for besides itself: its id, and the lowest
/// sequence number it may still seal. (A router's master lists its
/// workers; a worker publishes, before every datagram it seals, the number
/// after it, so that any number at or above what the master reads belongs
/// to a datagram sealed after the read.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Member {
    /// The sender id.
    pub sender: u64,
    /// Every datagram it seals from now on is numbered at least this.
    pub since: u64,
}

#[derive(Debug, Clone, Copy)]
struct Nonce {
    value: u64,
    issued: Instant,
}

/// The nonces this node issued and that still admit.
#[derive(Debug)]
pub(super) struct Issued {
    nonces: heapless::Vec<Nonce, ISSUED>,
    /// Keyed by the node's sender id (fresh random bytes every start), so
    /// that nonces of one run never repeat those of another.
    seed: u64,
    count: u64,
}

impl Issued {
    pub(super) fn new(seed: u64) -> Self {
        Issued {
            nonces: heapless::Vec::new(),
            seed,
            count: 0,
        }
    }

    /// A nonce never issued before, valid from `now` for [`LIFETIME`].
    pub(super) fn issue(&mut self, now: Instant) -> u64 {
        self.count += 1;
        let mut hasher = SipHasher13::new_with_keys(self.seed, self.seed.rotate_left(32));
        hasher.write_u64(self.count);
        let nonce = Nonce {
            value: hasher.finish(),
            issued: now,
        };
        if let Err(nonce) = self.nonces.push(nonce) {
            let oldest = self
                .nonces
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| n.issued)
                .map_or(0, |(i, _)| i);
            self.nonces[oldest] = nonce;
        }
        nonce.value
    }

    /// Whether a vouch under `nonce` admits at `now`.
    pub(super) fn admits(&self, nonce: u64, now: Instant) -> bool {
        self.nonces
            .iter()
            .any(|n| n.value == nonce && now < n.issued + LIFETIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_unique_admit_for_their_lifetime_and_the_oldest_go_first() {
        let mut issued = Issued::new(7);
        let at = Instant::from_millis;
        let first = issued.issue(at(0));
        assert!(issued.admits(first, at(0)));
        assert!(issued.admits(first, at(9_999)));
        assert!(!issued.admits(first, at(10_000)), "past its lifetime");
        assert!(!issued.admits(first ^ 1, at(0)), "never issued");
        let later: std::vec::Vec<u64> = (1..=ISSUED as u64).map(|i| issued.issue(at(i))).collect();
        assert!(!later.contains(&first));
        assert!(!issued.admits(first, at(20)), "forgotten: the oldest");
        assert!(later.iter().all(|&n| issued.admits(n, at(20))));
        // Another run (another seed) issues other nonces.
        let mut other = Issued::new(8);
        assert_ne!(other.issue(at(0)), first);
    }
}
