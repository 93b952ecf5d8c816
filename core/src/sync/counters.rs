//! What a sync node counts.

use crate::wire;

/// Why an incoming datagram was rejected: the datagram itself (see
/// [`wire::Error`]), or what the node knows of its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reject {
    /// Its size, header, key id, tag or body.
    Wire(wire::Error),
    /// A datagram already received from that sender.
    Replayed,
    /// Older than the sender's replay window.
    Stale,
    /// Our own datagram, looped back (multicast).
    Own,
    /// Authentic, but from a sender not verified fresh since this node
    /// started, and carrying changes: perhaps captured before a restart
    /// and replayed. The sender is challenged (see `super::challenge`).
    Unverified,
}

impl Reject {
    /// Every reason counted, in the order stats list them. A receiver
    /// never sees [`wire::Error::BufferTooSmall`] apart from `Malformed`
    /// (same name), so it has no place of its own.
    pub const ALL: [Reject; 11] = [
        Reject::Wire(wire::Error::Truncated),
        Reject::Wire(wire::Error::Oversized),
        Reject::Wire(wire::Error::BadMagic),
        Reject::Wire(wire::Error::UnsupportedVersion),
        Reject::Wire(wire::Error::UnknownKey),
        Reject::Wire(wire::Error::Authentication),
        Reject::Wire(wire::Error::Malformed),
        Reject::Replayed,
        Reject::Stale,
        Reject::Own,
        Reject::Unverified,
    ];

    /// The reason as used in counter names (`rejected_<reason>`) and the
    /// `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reject::Wire(error) => error.name(),
            Reject::Replayed => "replay",
            Reject::Stale => "stale",
            Reject::Own => "own",
            Reject::Unverified => "unverified",
        }
    }

    /// Where the reason is counted in [`Rejections`]: the place of the
    /// reason in [`Reject::ALL`] of the same name.
    fn index(self) -> Option<usize> {
        Reject::ALL
            .iter()
            .position(|reason| reason.as_str() == self.as_str())
    }
}

impl core::fmt::Display for Reject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<wire::Error> for Reject {
    fn from(error: wire::Error) -> Reject {
        Reject::Wire(error)
    }
}

impl core::error::Error for Reject {}

/// Datagrams rejected, by reason (in [`Reject::ALL`] order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rejections([u64; Reject::ALL.len()]);

impl Rejections {
    /// Datagrams rejected for `reason`.
    pub fn get(&self, reason: Reject) -> u64 {
        reason.index().map_or(0, |i| self.0[i])
    }

    /// Every reason with its count, in [`Reject::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Reject, u64)> + '_ {
        Reject::ALL.into_iter().zip(self.0)
    }

    /// Datagrams rejected for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn count(&mut self, reason: Reject) {
        if let Some(i) = reason.index() {
            self.0[i] += 1;
        }
    }
}

/// Everything a sync node has counted since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SyncCounters {
    /// Datagrams handed out by `poll_transmit`.
    pub sent_datagrams: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Records in them, repeats included.
    pub sent_records: u64,
    /// Datagrams that were repeats of an earlier batch.
    pub sent_repeats: u64,
    /// Local changes not queued: too large for one datagram.
    pub skipped_oversize: u64,
    /// Local changes not queued: the queue was full.
    pub skipped_queue_full: u64,
    /// Datagrams accepted.
    pub received_datagrams: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// Sets applied to the cache.
    pub applied_sets: u64,
    /// Deletes applied to the cache.
    pub applied_deletes: u64,
    /// Records already applied (a repeat or a duplicate).
    pub duplicate_records: u64,
    /// Records too far behind the sender's record window.
    pub stale_records: u64,
    /// Sets ignored because the key was deleted moments ago.
    pub tombstoned_sets: u64,
    /// Sets whose lifetime had run out in transit.
    pub expired_sets: u64,
    /// Sets the cache refused (bad key, value too large).
    pub refused_sets: u64,
    /// Control records received (hello, bootstrap).
    pub control_records: u64,
    /// Pulls this node started.
    pub pulls_sent: u64,
    /// Pulls not started (bad key, too many in flight, no peer).
    pub pulls_refused: u64,
    /// Pulls that ended with the entry stored.
    pub pulls_found: u64,
    /// Pulls that every peer asked answered without the entry.
    pub pulls_not_found: u64,
    /// Pulls whose deadline passed first.
    pub pulls_timed_out: u64,
    /// Answers to pulls no longer in flight (late, or a second copy).
    pub late_pull_answers: u64,
    /// Peers' pull requests answered with the entry.
    pub pull_requests_found: u64,
    /// Peers' pull requests answered without.
    pub pull_requests_none: u64,
    /// Peers' pull requests left unanswered: the answer did not fit, or
    /// the caller had not taken the previous message.
    pub pull_answers_dropped: u64,
    /// Cluster ticket keys received (see [`crate::tickets`]), whatever the
    /// store made of them.
    pub ticket_keys_received: u64,
    /// Datagrams rejected, by reason.
    pub rejected: Rejections,
    /// Challenges this node sent (on its own, in bootstrap requests, or
    /// to a sender not verified yet).
    pub challenges_sent: u64,
    /// Peers' challenges this node answered with its vouches.
    pub challenges_answered: u64,
    /// Senders admitted by a vouch under a nonce of ours.
    pub senders_verified: u64,
    /// Vouches for a sender not verified yet under a nonce this node did
    /// not issue or no longer admits (replayed, or too late): ignored.
    pub stale_vouches: u64,
}

impl SyncCounters {
    pub(crate) fn count_rejection(&mut self, reason: Reject) {
        self.rejected.count(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_place_and_a_name_of_its_own() {
        for (i, reason) in Reject::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), Some(i), "{reason:?}");
        }
        let mut rejections = Rejections::default();
        rejections.count(Reject::Wire(wire::Error::BufferTooSmall));
        rejections.count(Reject::Own);
        assert_eq!(rejections.get(Reject::Wire(wire::Error::Malformed)), 1);
        assert_eq!(rejections.get(Reject::Own), 1);
        assert_eq!(rejections.total(), 2);
    }
}
