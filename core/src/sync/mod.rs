//! The sans-IO replication node.
//!
//! A [`Node`] sits between a cache and the network without touching either
//! socket or clock (the quinn-proto pattern): the caller tells it about local
//! changes ([`Node::record_set`], [`Node::record_delete`]), asks it for
//! datagrams to send ([`Node::poll_transmit`], [`Node::poll_timeout`]) and
//! hands it the datagrams peers sent ([`Node::handle`]) together with the
//! cache to apply them to. A test can therefore run a whole cluster in
//! memory with a fake clock and a hostile link.
//!
//! Delivery: every batch of records goes out twice, once at once and once
//! again [`Settings::repeat_after`] later under a new sequence number (or
//! earlier, just before the next batch). Records are numbered per sender and
//! a receiver applies each number once, so the repeat costs nothing when the
//! first copy arrived and saves the batch when it did not: with independent
//! loss `p` a record is lost with probability `p^2` (0.25% at 5% loss).
//!
//! Safety against the network, in the order the checks run: size, magic and
//! version ([`crate::wire::Packet`]); our own looped-back datagrams; the
//! sender's datagram window (a sequence seen before is *replayed*, one older
//! than the window *stale*); authentication and decryption; then per record,
//! the record window and the tombstones (a key deleted moments ago cannot be
//! resurrected by a late set). Each rejection is counted by reason. The work
//! per datagram is bounded by its size.
//!
//! Limitation: replay windows live in memory. A receiver that restarts, or
//! that forgets a sender after seeing more than `PEERS` others, would accept
//! a captured datagram of that sender once more; the cluster layer's
//! authenticated hello narrows this, and a replayed set can only restore a
//! session with the lifetime it had when first sent.

pub mod bootstrap;
mod counters;
mod outbox;
mod tombstones;
mod window;

#[cfg(test)]
mod tests;

use core::hash::Hasher;

use siphasher::sip::SipHasher13;

use crate::cache::{Cache, Refused, Stored, MAX_KEY_LEN};
use crate::time::{Duration, Instant};
use crate::wire::{
    ClusterKey, Packet, Record, Records, RecordsBuilder, Repr, DEFAULT_DATAGRAM_LEN, MIN_LEN,
};
pub use bootstrap::BootstrapAnswer;
pub use counters::{Reject, SyncCounters};
use outbox::{Entry, Queue};
use tombstones::Tombstones;
pub use window::WINDOW;
use window::{Verdict, Window};

/// Where replicated changes are applied: the cache, or a host's handle on a
/// shared cache that takes its lock per call.
pub trait Store {
    /// As [`Cache::put`].
    fn put(
        &mut self,
        now: Instant,
        key: &[u8],
        value: &[u8],
        lifetime: Duration,
    ) -> Result<Stored, Refused>;
    /// As [`Cache::delete`].
    fn delete(&mut self, now: Instant, key: &[u8]) -> bool;
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Store for Cache<S> {
    fn put(
        &mut self,
        now: Instant,
        key: &[u8],
        value: &[u8],
        lifetime: Duration,
    ) -> Result<Stored, Refused> {
        Cache::put(self, now, key, value, lifetime)
    }

    fn delete(&mut self, now: Instant, key: &[u8]) -> bool {
        Cache::delete(self, now, key)
    }
}

/// Tunables of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Settings {
    /// Largest datagram sent or accepted, at most the node's `MTU`.
    pub max_datagram: usize,
    /// Delay before a batch is sent the second time; `None` sends once.
    pub repeat_after: Option<Duration>,
    /// How long a deleted key stays deleted against late sets.
    pub tombstone_lifetime: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_datagram: DEFAULT_DATAGRAM_LEN,
            repeat_after: Some(Duration::from_millis(20)),
            tombstone_lifetime: Duration::from_secs(30),
        }
    }
}

/// Why a local change was not queued for sending. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QueueError {
    /// Key and value cannot fit in one datagram.
    TooLarge,
    /// The queue is full: the caller is not polling for datagrams.
    Full,
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            QueueError::TooLarge => "key and value do not fit in one datagram",
            QueueError::Full => "sync queue full",
        })
    }
}

impl core::error::Error for QueueError {}

/// Control messages a datagram carried, for the caller to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Control {
    /// The sender announced itself.
    pub hello: bool,
    /// The sender asks for our live entries.
    pub bootstrap_request: bool,
    /// The sender finished answering our bootstrap request.
    pub bootstrap_end: bool,
}

/// A control message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ControlKind {
    /// Announce this node.
    Hello,
    /// Ask peers for their live entries.
    BootstrapRequest,
    /// Mark the end of an answer to a bootstrap request.
    BootstrapEnd,
}

/// What an accepted datagram did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Handled {
    /// The sending node.
    pub sender: u64,
    /// Sets applied.
    pub sets: u32,
    /// Deletes applied.
    pub deletes: u32,
    /// Control messages seen.
    pub control: Control,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    sender: u64,
    datagrams: Window,
    records: Window,
    last_seen: Instant,
}

/// A replication node. `MTU` sizes its datagram buffers, `PEERS` the
/// senders it tracks, `TOMBSTONES` the deletions it remembers, `QUEUE` the
/// bytes of local changes waiting to be sent.
pub struct Node<
    const MTU: usize = DEFAULT_DATAGRAM_LEN,
    const PEERS: usize = 32,
    const TOMBSTONES: usize = 256,
    const QUEUE: usize = 8192,
> {
    key: ClusterKey,
    sender: u64,
    settings: Settings,
    next_sequence: u64,
    next_record: u64,
    peers: heapless::Vec<Peer, PEERS>,
    tombstones: Tombstones<TOMBSTONES>,
    pending: Queue<QUEUE>,
    repeat: Queue<MTU>,
    repeat_first: u64,
    repeat_due: Option<Instant>,
    scratch: [u8; MTU],
    counters: SyncCounters,
}

impl<const MTU: usize, const PEERS: usize, const TOMBSTONES: usize, const QUEUE: usize>
    core::fmt::Debug for Node<MTU, PEERS, TOMBSTONES, QUEUE>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("sender", &self.sender)
            .field("next_sequence", &self.next_sequence)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl<const MTU: usize, const PEERS: usize, const TOMBSTONES: usize, const QUEUE: usize>
    Node<MTU, PEERS, TOMBSTONES, QUEUE>
{
    /// A node sealing with `key`. `sender` must be fresh random bytes at
    /// every start: with the sequence number it forms the AEAD nonce, which
    /// must never repeat under one key. `settings.max_datagram` is clamped to
    /// `MTU`.
    pub fn new(key: ClusterKey, sender: u64, mut settings: Settings) -> Self {
        settings.max_datagram = settings.max_datagram.clamp(MIN_LEN, MTU);
        Node {
            key,
            sender,
            settings,
            next_sequence: 1,
            next_record: 1,
            peers: heapless::Vec::new(),
            tombstones: Tombstones::new(),
            pending: Queue::new(),
            repeat: Queue::new(),
            repeat_first: 0,
            repeat_due: None,
            scratch: [0; MTU],
            counters: SyncCounters::default(),
        }
    }

    /// This node's sender id.
    pub fn sender(&self) -> u64 {
        self.sender
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the node has counted.
    pub fn counters(&self) -> &SyncCounters {
        &self.counters
    }

    /// Largest key plus value that fits in one datagram.
    pub fn max_entry_len(&self) -> usize {
        // Record: variant 1 + key length 2 + value length 3 + lifetime 10;
        // body: first-record number 10.
        self.settings.max_datagram - MIN_LEN - 10 - 16
    }

    /// Queues a local store of `key` for the peers.
    pub fn record_set(
        &mut self,
        now: Instant,
        key: &[u8],
        value: &[u8],
        lifetime: Duration,
    ) -> Result<(), QueueError> {
        self.tombstones.exhume(self.fingerprint(key));
        self.enqueue(&Entry {
            key,
            set: Some((value, now + lifetime)),
        })
    }

    /// Queues a local deletion of `key` (a deleted session, a used ticket).
    pub fn record_delete(&mut self, now: Instant, key: &[u8]) -> Result<(), QueueError> {
        let until = now + self.settings.tombstone_lifetime;
        self.tombstones.bury(self.fingerprint(key), until);
        self.enqueue(&Entry { key, set: None })
    }

    /// Writes a datagram carrying the control message `kind` alone into
    /// `buf`, ahead of any queued change, and returns its length. Control
    /// messages are sent once; the cluster layer repeats them if it must.
    pub fn transmit_control(&mut self, kind: ControlKind, buf: &mut [u8]) -> Option<usize> {
        let record = match kind {
            ControlKind::Hello => Record::Hello,
            ControlKind::BootstrapRequest => Record::BootstrapRequest,
            ControlKind::BootstrapEnd => Record::BootstrapEnd,
        };
        let mut builder = RecordsBuilder::new(&mut self.scratch[..]);
        builder.push(&record).ok()?;
        let len = seal_next(
            &self.key,
            self.sender,
            &mut self.next_sequence,
            &mut self.counters,
            self.next_record,
            builder.records(),
            buf,
        )?;
        self.next_record += 1;
        Some(len)
    }

    fn enqueue(&mut self, entry: &Entry<'_>) -> Result<(), QueueError> {
        let value_len = entry.set.map_or(0, |(v, _)| v.len());
        if entry.key.len() > MAX_KEY_LEN || entry.key.len() + value_len > self.max_entry_len() {
            self.counters.skipped_oversize += 1;
            return Err(QueueError::TooLarge);
        }
        if !self.pending.push(entry) {
            self.counters.skipped_queue_full += 1;
            return Err(QueueError::Full);
        }
        Ok(())
    }

    /// When [`Node::poll_transmit`] next has something to send even if no
    /// new change arrives (the repeat of the last batch).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.repeat_due
    }

    /// Writes the next datagram to send to every peer into `buf` and
    /// returns its length, or `None` when there is nothing to send now.
    /// `buf` must hold `settings().max_datagram` bytes.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < self.settings.max_datagram {
            return None;
        }
        if let Some(due) = self.repeat_due {
            if now >= due || !self.pending.is_empty() {
                return self.transmit_repeat(now, buf);
            }
        }
        if self.pending.is_empty() {
            return None;
        }
        let body_room = self.settings.max_datagram - MIN_LEN - 10;
        let keep = self.settings.repeat_after.is_some();
        self.repeat.clear();
        let mut builder = RecordsBuilder::new(&mut self.scratch[..body_room]);
        let mut count = 0;
        for entry in self.pending.iter() {
            if builder.push(&entry.record(now)).is_err() || (keep && !self.repeat.push(&entry)) {
                break;
            }
            count += 1;
        }
        let len = seal_next(
            &self.key,
            self.sender,
            &mut self.next_sequence,
            &mut self.counters,
            self.next_record,
            builder.records(),
            buf,
        )?;
        self.pending.pop_front(count);
        self.repeat_first = self.next_record;
        self.next_record += count as u64;
        self.repeat_due = self.settings.repeat_after.map(|after| now + after);
        Some(len)
    }

    fn transmit_repeat(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.repeat_due = None;
        let mut builder = RecordsBuilder::new(&mut self.scratch[..]);
        for entry in self.repeat.iter() {
            // Each entry fitted in the first copy, whose lifetimes were no
            // shorter to write, so it fits again.
            builder.push(&entry.record(now)).ok()?;
        }
        let len = seal_next(
            &self.key,
            self.sender,
            &mut self.next_sequence,
            &mut self.counters,
            self.repeat_first,
            builder.records(),
            buf,
        )?;
        self.repeat.clear();
        self.counters.sent_repeats += 1;
        Some(len)
    }

    /// Checks, opens and applies a datagram from a peer to `store`.
    pub fn handle<St: Store>(
        &mut self,
        now: Instant,
        datagram: &[u8],
        store: &mut St,
    ) -> Result<Handled, Reject> {
        match self.receive(now, datagram, store) {
            Ok(handled) => {
                self.counters.received_datagrams += 1;
                self.counters.received_bytes += datagram.len() as u64;
                Ok(handled)
            }
            Err(reason) => {
                self.counters.count_rejection(reason);
                Err(reason)
            }
        }
    }

    fn receive<St: Store>(
        &mut self,
        now: Instant,
        datagram: &[u8],
        store: &mut St,
    ) -> Result<Handled, Reject> {
        if datagram.len() > self.settings.max_datagram {
            return Err(Reject::Oversized);
        }
        let packet = Packet::new_checked(datagram)?;
        let sender = packet.sender();
        if sender == self.sender {
            return Err(Reject::Own);
        }
        let known = self.peers.iter().position(|p| p.sender == sender);
        let window = known.map_or_else(Window::default, |i| self.peers[i].datagrams);
        match window.check(packet.sequence()) {
            Verdict::Fresh => {}
            Verdict::Duplicate => return Err(Reject::Replayed),
            Verdict::TooOld => return Err(Reject::Stale),
        }
        let repr = Repr::parse(&packet, &self.key, &mut self.scratch)?;

        // Authentic from here on: only now may it change any state.
        let index = match known {
            Some(index) => index,
            None => admit(&mut self.peers, sender, now),
        };
        let peer = &mut self.peers[index];
        peer.datagrams.mark(repr.sequence);
        peer.last_seen = now;

        let mut handled = Handled {
            sender,
            ..Handled::default()
        };
        let mut control = 0u64;
        for (offset, record) in repr.records.iter().enumerate() {
            let number = repr.first_record.saturating_add(offset as u64);
            match peer.records.check(number) {
                Verdict::Fresh => peer.records.mark(number),
                Verdict::Duplicate => {
                    self.counters.duplicate_records += 1;
                    continue;
                }
                Verdict::TooOld => {
                    self.counters.stale_records += 1;
                    continue;
                }
            }
            match record {
                Record::Set { key, value, ttl_ms } => {
                    if ttl_ms == 0 {
                        self.counters.expired_sets += 1;
                    } else if self
                        .tombstones
                        .is_buried(fingerprint(self.sender, key), now)
                    {
                        self.counters.tombstoned_sets += 1;
                    } else if store
                        .put(now, key, value, Duration::from_millis(ttl_ms))
                        .is_ok()
                    {
                        self.counters.applied_sets += 1;
                        handled.sets += 1;
                    } else {
                        self.counters.refused_sets += 1;
                    }
                }
                Record::Delete { key } => {
                    store.delete(now, key);
                    let until = now + self.settings.tombstone_lifetime;
                    self.tombstones.bury(fingerprint(self.sender, key), until);
                    self.counters.applied_deletes += 1;
                    handled.deletes += 1;
                }
                Record::Hello => {
                    handled.control.hello = true;
                    control += 1;
                }
                Record::BootstrapRequest => {
                    handled.control.bootstrap_request = true;
                    control += 1;
                }
                Record::BootstrapEnd => {
                    handled.control.bootstrap_end = true;
                    control += 1;
                }
            }
        }
        self.counters.control_records += control;
        Ok(handled)
    }

    fn fingerprint(&self, key: &[u8]) -> u64 {
        fingerprint(self.sender, key)
    }
}

/// Seals `records` as this sender's next datagram into `buf`, advancing
/// the sequence and counting what was sent. (Fields are passed apart so the
/// records may borrow the node's scratch buffer meanwhile.)
fn seal_next(
    key: &ClusterKey,
    sender: u64,
    next_sequence: &mut u64,
    counters: &mut SyncCounters,
    first_record: u64,
    records: Records<'_>,
    buf: &mut [u8],
) -> Option<usize> {
    let repr = Repr {
        sender,
        sequence: *next_sequence,
        first_record,
        records,
    };
    let len = repr.emit(key, buf).ok()?;
    *next_sequence += 1;
    counters.sent_datagrams += 1;
    counters.sent_bytes += len as u64;
    counters.sent_records += records.len() as u64;
    Some(len)
}

/// A key's tombstone fingerprint. Keys are session ids the servers chose at
/// random, so the hash need not be secret; keying it per node only keeps
/// fingerprints from being comparable across nodes.
fn fingerprint(seed: u64, key: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(seed, !seed);
    hasher.write(key);
    hasher.finish()
}

/// Adds a sender to the table, replacing the one heard from longest ago
/// when the table is full. Returns its index.
fn admit<const PEERS: usize>(
    peers: &mut heapless::Vec<Peer, PEERS>,
    sender: u64,
    now: Instant,
) -> usize {
    let peer = Peer {
        sender,
        datagrams: Window::default(),
        records: Window::default(),
        last_seen: now,
    };
    match peers.push(peer) {
        Ok(()) => peers.len() - 1,
        Err(peer) => {
            let oldest = peers
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.last_seen)
                .map_or(0, |(i, _)| i);
            peers[oldest] = peer;
            oldest
        }
    }
}
