//! What a sync node counts.

/// Why an incoming datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reject {
    /// Shorter than a header and a tag.
    Truncated,
    /// Longer than this node's datagram size.
    Oversized,
    /// Wrong magic: not a cachet sync datagram.
    BadMagic,
    /// Another wire version.
    UnsupportedVersion,
    /// Sealed under a key id this node does not hold.
    UnknownKey,
    /// Failed authentication: forged, damaged or another cluster's key.
    Authentication,
    /// Authentic but undecodable.
    Malformed,
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
    /// The reason as used in counter names (`rejected_<reason>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Truncated => "truncated",
            Reject::Oversized => "oversize",
            Reject::BadMagic => "magic",
            Reject::UnsupportedVersion => "version",
            Reject::UnknownKey => "unknown_key",
            Reject::Authentication => "authentication",
            Reject::Malformed => "malformed",
            Reject::Replayed => "replay",
            Reject::Stale => "stale",
            Reject::Own => "own",
            Reject::Unverified => "unverified",
        }
    }
}

impl core::fmt::Display for Reject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<crate::wire::Error> for Reject {
    fn from(e: crate::wire::Error) -> Reject {
        use crate::wire::Error;
        match e {
            Error::Truncated => Reject::Truncated,
            Error::Oversized => Reject::Oversized,
            Error::BadMagic => Reject::BadMagic,
            Error::UnsupportedVersion => Reject::UnsupportedVersion,
            Error::UnknownKey => Reject::UnknownKey,
            Error::Authentication => Reject::Authentication,
            Error::Malformed | Error::BufferTooSmall => Reject::Malformed,
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
    /// Rejected: truncated.
    pub rejected_truncated: u64,
    /// Rejected: oversize.
    pub rejected_oversize: u64,
    /// Rejected: bad magic.
    pub rejected_magic: u64,
    /// Rejected: unsupported version.
    pub rejected_version: u64,
    /// Rejected: unknown key id.
    pub rejected_unknown_key: u64,
    /// Rejected: failed authentication.
    pub rejected_authentication: u64,
    /// Rejected: authentic but malformed.
    pub rejected_malformed: u64,
    /// Rejected: replayed.
    pub rejected_replay: u64,
    /// Rejected: stale.
    pub rejected_stale: u64,
    /// Rejected: our own datagram.
    pub rejected_own: u64,
    /// Rejected: changes from a sender not verified yet.
    pub rejected_unverified: u64,
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
        let counter = match reason {
            Reject::Truncated => &mut self.rejected_truncated,
            Reject::Oversized => &mut self.rejected_oversize,
            Reject::BadMagic => &mut self.rejected_magic,
            Reject::UnsupportedVersion => &mut self.rejected_version,
            Reject::UnknownKey => &mut self.rejected_unknown_key,
            Reject::Authentication => &mut self.rejected_authentication,
            Reject::Malformed => &mut self.rejected_malformed,
            Reject::Replayed => &mut self.rejected_replay,
            Reject::Stale => &mut self.rejected_stale,
            Reject::Own => &mut self.rejected_own,
            Reject::Unverified => &mut self.rejected_unverified,
        };
        *counter += 1;
    }

    /// Datagrams rejected for any reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_truncated
            + self.rejected_oversize
            + self.rejected_magic
            + self.rejected_version
            + self.rejected_unknown_key
            + self.rejected_authentication
            + self.rejected_malformed
            + self.rejected_replay
            + self.rejected_stale
            + self.rejected_own
            + self.rejected_unverified
    }
}

impl core::error::Error for Reject {}
