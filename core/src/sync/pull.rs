//! Pulls: fetching from the peers an entry a client offers that this node
//! lacks, before the handshake needs it.
//!
//! Pushes alone lose a race: a client that reconnects the moment its
//! handshake ends can reach another node before the push has been applied
//! there. So a node that misses the session a client offers asks its peers
//! ([`Record::PullRequest`](crate::wire::Record::PullRequest), sent to
//! every peer the caller counts as live); each peer answers the asker alone,
//! with the entry ([`Record::PullAnswer`](crate::wire::Record::PullAnswer),
//! which the asker stores) or without
//! ([`Record::PullNone`](crate::wire::Record::PullNone)). A pull ends at the
//! first answer carrying the entry, when every peer asked has said it has
//! none, or at its deadline, whichever comes first; the caller learns which
//! from [`PullEvent`]s.
//!
//! A pull with `take` removes the entry at the node that answers with it,
//! atomically in that node's cache: that is how a TLS 1.3 ticket, held only
//! by the node that issued it, resumes at most once in the whole cluster
//! however many nodes it is offered to at the same instant. Of several
//! takes, one finds the entry; the others are answered "none".
//!
//! Requests and answers each go out as two copies under one record number
//! (see [`super::Settings::message_copies`]): a receiver acts on whichever
//! arrives first and counts the other as a duplicate, so with independent
//! loss `p` a pull fails for loss with probability about `2p^2`, and a
//! take is never applied twice.

use crate::cache::MAX_KEY_LEN;
use crate::time::Instant;

/// Identifies a pull among this node's pulls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PullId(pub u64);

/// How a pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PullOutcome {
    /// A peer answered with the entry, now in the store.
    Found,
    /// Every peer asked answered that it has none (or the entry that came
    /// could not be stored).
    NotFound,
    /// The deadline passed first.
    TimedOut,
}

/// A pull that ended, from [`super::Node::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PullEvent {
    /// The pull.
    pub id: PullId,
    /// How it ended.
    pub outcome: PullOutcome,
}

/// Why a pull was not started. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PullError {
    /// The key is empty or longer than a cache key.
    BadKey,
    /// As many pulls are in flight as the node has room for.
    TooMany,
    /// No peer to ask.
    NoPeers,
    /// A message from [`super::Node::poll_message`] is still waiting to be
    /// taken: the caller must send what it has before asking again.
    Busy,
}

impl core::fmt::Display for PullError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PullError::BadKey => "pull key empty or longer than a cache key",
            PullError::TooMany => "too many pulls in flight",
            PullError::NoPeers => "no peer to ask",
            PullError::Busy => "a message is waiting to be sent",
        })
    }
}

impl core::error::Error for PullError {}

#[derive(Debug, Clone)]
struct Pending {
    id: u64,
    key: heapless::Vec<u8, MAX_KEY_LEN>,
    /// Peers asked that have not answered yet.
    awaiting: u16,
    deadline: Instant,
}

/// The pulls in flight and the ones that ended but were not yet reported.
/// Together they never exceed `N`, so every ending finds room to be told.
#[derive(Debug)]
pub(super) struct Pulls<const N: usize> {
    pending: heapless::Vec<Pending, N>,
    events: heapless::Deque<PullEvent, N>,
    next_id: u64,
}

impl<const N: usize> Pulls<N> {
    /// Ids count up from `first_id`. A node passes its sender id, fresh
    /// random bytes at every start, so that the ids of one run never meet
    /// another's: an answer captured before a restart and replayed after it
    /// cannot pass for the answer to a new pull of the same key (which
    /// would resurrect a ticket used meanwhile).
    pub(super) fn new(first_id: u64) -> Self {
        Pulls {
            pending: heapless::Vec::new(),
            events: heapless::Deque::new(),
            next_id: first_id,
        }
    }

    /// Registers a pull of `key` that `awaiting` peers were asked.
    pub(super) fn start(
        &mut self,
        key: &[u8],
        awaiting: u16,
        deadline: Instant,
    ) -> Result<PullId, PullError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(PullError::BadKey);
        }
        if awaiting == 0 {
            return Err(PullError::NoPeers);
        }
        if self.pending.len() + self.events.len() >= N {
            return Err(PullError::TooMany);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let pending = Pending {
            id,
            key: heapless::Vec::from_slice(key).map_err(|_| PullError::BadKey)?,
            awaiting,
            deadline,
        };
        self.pending.push(pending).map_err(|_| PullError::TooMany)?;
        Ok(PullId(id))
    }

    /// Whether pull `id` of `key` is in flight (an answer to it is wanted).
    pub(super) fn wants(&self, id: u64, key: &[u8]) -> bool {
        self.pending
            .iter()
            .any(|p| p.id == id && p.key.as_slice() == key)
    }

    /// Ends pull `id` with `outcome`.
    pub(super) fn end(&mut self, id: u64, outcome: PullOutcome) {
        if let Some(index) = self.pending.iter().position(|p| p.id == id) {
            self.pending.swap_remove(index);
            // Room is guaranteed: pending plus events never exceed N.
            let _ = self.events.push_back(PullEvent {
                id: PullId(id),
                outcome,
            });
        }
    }

    /// A peer had nothing for pull `id`; ends it when it was the last one
    /// awaited. Whether the pull was in flight.
    pub(super) fn none(&mut self, id: u64) -> bool {
        let Some(pending) = self.pending.iter_mut().find(|p| p.id == id) else {
            return false;
        };
        pending.awaiting = pending.awaiting.saturating_sub(1);
        if pending.awaiting == 0 {
            self.end(id, PullOutcome::NotFound);
        }
        true
    }

    /// The earliest deadline in flight.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// The next ended pull, after ending those whose deadline passed.
    pub(super) fn poll_event(&mut self, now: Instant) -> Option<PullEvent> {
        while let Some(index) = self.pending.iter().position(|p| p.deadline <= now) {
            let id = self.pending[index].id;
            self.end(id, PullOutcome::TimedOut);
        }
        self.events.pop_front()
    }

    /// Pulls in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.pending.len()
    }
}
