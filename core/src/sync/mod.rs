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
//! Pulls ([`pull`]) are the other half: [`Node::pull`] asks the peers for
//! an entry this node lacks, [`Node::handle`] answers peers' requests from
//! the store and applies the answers to ours, and [`Node::poll_event`] says
//! how each pull ended. Requests and answers are addressed
//! ([`Node::poll_message`]): to the peers asked, or to the one asker.
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
//! than the window *stale*); authentication and decryption under the keys of
//! the node's [`Keyring`] whose id the header names; then per record,
//! the record window and the tombstones (a key deleted moments ago cannot be
//! resurrected by a late set). Each rejection is counted by reason. The work
//! per datagram is bounded by its size.
//!
//! Replay windows live in memory, so a node verifies each sender before it
//! applies any change from it ([`challenge`]): an authentic datagram
//! carrying changes from a sender not verified since this node started (or
//! since it forgot the sender among more than `PEERS` others) is rejected
//! as *unverified*, and the sender is challenged; its vouch under the
//! challenge's fresh nonce admits it with its window starting at a
//! sequence number only datagrams sealed after the challenge carry. A
//! datagram captured before a restart therefore never applies after it.
//! Requests (pulls, bootstrap, challenges) and answers that prove their own
//! freshness (a pull answer names a pull in flight, a vouch a nonce
//! outstanding) need no verified sender: they change nothing a replay
//! could exploit.

pub mod bootstrap;
pub mod challenge;
mod counters;
pub mod greeting;
mod message;
mod outbox;
mod pull;
mod tombstones;
mod window;

#[cfg(test)]
mod tests;

use core::hash::Hasher;

use siphasher::sip::SipHasher13;
use zeroize::Zeroize;

use crate::cache::{Cache, Fetched, MAX_KEY_LEN};
use crate::time::{Duration, Instant};
use crate::wire::{
    self, Keyring, Packet, Record, Records, RecordsBuilder, Repr, DEFAULT_DATAGRAM_LEN, MIN_LEN,
};
pub use bootstrap::BootstrapAnswer;
pub use challenge::Member;
use challenge::{Issued, MAX_MEMBERS, RECHALLENGE_AFTER};
pub use counters::{Reject, Rejections, SyncCounters};
pub use greeting::{Greeted, Greetings};
use message::Outgoing;
pub use message::{Destination, Message};
use outbox::{Entry, Queue};
use pull::Pulls;
pub use pull::{PullError, PullEvent, PullId, PullOutcome};
use tombstones::Tombstones;
pub use window::WINDOW;
use window::{Verdict, Window};

/// Where replicated changes are applied and peers' pulls and bootstrap
/// requests answered from: the cache, or a host's handle on a shared cache
/// that takes its lock per call.
pub trait Store {
    /// Runs `f` on the cache holding the entries (under its lock, for a
    /// shared one). `None` when there is no cache: nothing is stored, and
    /// nothing found.
    fn with_cache<R>(&mut self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R>;
    /// Whether a peer's pull may have the entry for `key`, removing it when
    /// `take`. Every entry by default.
    fn lends(&mut self, key: &[u8], take: bool) -> bool {
        let _ = (key, take);
        true
    }
    /// Whether a bootstrap answer sends the entry for `key` to the peer.
    /// Every entry by default.
    fn exports(&mut self, key: &[u8]) -> bool {
        let _ = key;
        true
    }
    /// The senders this node vouches for besides itself when challenged
    /// (a router's master: its worker processes), written into `out`;
    /// returns how many. None by default.
    fn members(&mut self, out: &mut [Member]) -> usize {
        let _ = out;
        0
    }
    /// A cluster ticket key a peer sent ([`crate::tickets`]). A store that
    /// keeps no ticket keys (the default) ignores it; [`WithTicketKeys`]
    /// hands it on.
    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]) {
        let _ = (period, secret);
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Store for Cache<S> {
    fn with_cache<R>(&mut self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R> {
        Some(f(&mut self.by_ref()))
    }
}

/// Where the cluster ticket keys a node receives go ([`crate::tickets`]).
pub trait TicketKeySink {
    /// A key a peer sent for `period`.
    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]);
}

impl<K: TicketKeySink> TicketKeySink for Option<K> {
    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]) {
        if let Some(keys) = self {
            keys.ticket_key(period, secret);
        }
    }
}

impl<K: TicketKeySink + ?Sized> TicketKeySink for &mut K {
    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]) {
        (**self).ticket_key(period, secret);
    }
}

/// A [`Store`] that also keeps ticket keys: entries go to `store`, ticket
/// keys to `keys`.
#[derive(Debug)]
pub struct WithTicketKeys<S, K> {
    /// Where entries go.
    pub store: S,
    /// Where ticket keys go.
    pub keys: K,
}

impl<S: Store, K: TicketKeySink> Delegate for WithTicketKeys<S, K> {
    type Entries = S;

    fn entries(&mut self) -> &mut S {
        &mut self.store
    }

    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]) {
        self.keys.ticket_key(period, secret);
    }
}

/// A [`Store`] that keeps its entries in another one and may add to it
/// (the senders it vouches for, where ticket keys go): the cache, and what
/// of it is lent and exported, come from [`Delegate::entries`], so a
/// wrapper writes only what it adds.
pub trait Delegate {
    /// The store holding the entries.
    type Entries: Store + ?Sized;
    /// Where the entries are.
    fn entries(&mut self) -> &mut Self::Entries;
    /// As [`Store::members`]; the entries' store's by default.
    fn members(&mut self, out: &mut [Member]) -> usize {
        self.entries().members(out)
    }
    /// As [`Store::ticket_key`]; the entries' store's by default.
    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]) {
        self.entries().ticket_key(period, secret);
    }
}

/// A store borrowed is the store itself.
impl<S: Store + ?Sized> Delegate for &mut S {
    type Entries = S;

    fn entries(&mut self) -> &mut S {
        self
    }
}

impl<D: Delegate> Store for D {
    fn with_cache<R>(&mut self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R> {
        self.entries().with_cache(f)
    }

    fn lends(&mut self, key: &[u8], take: bool) -> bool {
        self.entries().lends(key, take)
    }

    fn exports(&mut self, key: &[u8]) -> bool {
        self.entries().exports(key)
    }

    fn members(&mut self, out: &mut [Member]) -> usize {
        Delegate::members(self, out)
    }

    fn ticket_key(&mut self, period: u64, secret: &[u8; crate::tickets::SECRET_LEN]) {
        Delegate::ticket_key(self, period, secret);
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
    /// Copies of each addressed message (pull requests and answers) sent
    /// back to back under the same record numbers, against loss.
    pub message_copies: u8,
    /// Apply changes only from senders verified fresh since this node
    /// started (see [`challenge`]). Off only where no datagram can be
    /// captured and replayed to the node, as in tests of other rules.
    pub verify_senders: bool,
}

impl Settings {
    /// Bytes of records a datagram may take, vouch included: the sealed
    /// body less its first record number (a varint of 10 bytes at most).
    fn body_room(&self) -> usize {
        self.max_datagram - MIN_LEN - 10
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_datagram: DEFAULT_DATAGRAM_LEN,
            repeat_after: Some(Duration::from_millis(20)),
            tombstone_lifetime: Duration::from_secs(30),
            message_copies: 2,
            verify_senders: true,
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

/// Largest encoded [`Record::Vouch`]: the variant, three varints.
const VOUCH_LEN: usize = 1 + 3 * 10;

/// What a datagram did about pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PullTraffic {
    /// Answers to our pulls it carried, with an entry or without (so the
    /// sender is answering).
    pub answers: u32,
    /// Pull requests of the sender it carried; the answers wait in
    /// [`Node::poll_message`].
    pub requests: u32,
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
    /// Ask the peer to vouch for itself and the senders it speaks for (and
    /// so, since this node is new to it, to challenge this node back).
    Challenge,
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
    /// Pull requests and answers seen.
    pub pulls: PullTraffic,
    /// The nonce of the challenge the datagram carried, answered already
    /// with this node's vouches; a node answering the sender's bootstrap
    /// request proves itself under it ([`Node::prove`]).
    pub challenge: Option<u64>,
    /// Cluster ticket keys handed to the store.
    pub ticket_keys: u32,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    sender: u64,
    datagrams: Window,
    records: Window,
    last_seen: Instant,
    /// Vouched fresh since this node started: its changes apply.
    verified: bool,
    /// When it was last challenged, while not verified.
    challenged: Option<Instant>,
}

/// A replication node. `MTU` sizes its datagram buffers, `PEERS` the
/// senders it tracks, `TOMBSTONES` the deletions it remembers, `QUEUE` the
/// bytes of local changes waiting to be sent, `PULLS` its pulls in flight.
pub struct Node<
    const MTU: usize = DEFAULT_DATAGRAM_LEN,
    const PEERS: usize = 32,
    const TOMBSTONES: usize = 256,
    const QUEUE: usize = 8192,
    const PULLS: usize = 8,
> {
    seal: Sealer,
    settings: Settings,
    next_record: u64,
    peers: heapless::Vec<Peer, PEERS>,
    tombstones: Tombstones<TOMBSTONES>,
    pending: Queue<QUEUE>,
    repeat: Queue<MTU>,
    repeat_first: u64,
    repeat_due: Option<Instant>,
    scratch: [u8; MTU],
    message: Outgoing<MTU>,
    pulls: Pulls<PULLS>,
    issued: Issued,
    /// Nonce and first sequence number this node vouches for itself under
    /// in every datagram it seals ([`Node::prove`]).
    proof: Option<(u64, u64)>,
    counters: SyncCounters,
}

impl<
        const MTU: usize,
        const PEERS: usize,
        const TOMBSTONES: usize,
        const QUEUE: usize,
        const PULLS: usize,
    > core::fmt::Debug for Node<MTU, PEERS, TOMBSTONES, QUEUE, PULLS>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("sender", &self.seal.sender)
            .field("next_sequence", &self.seal.next_sequence)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl<
        const MTU: usize,
        const PEERS: usize,
        const TOMBSTONES: usize,
        const QUEUE: usize,
        const PULLS: usize,
    > Node<MTU, PEERS, TOMBSTONES, QUEUE, PULLS>
{
    /// A node sealing with the first of `keys` and opening with all of
    /// them (a [`crate::wire::ClusterKey`] makes a ring of one). `sender`
    /// must be fresh random bytes at every start: with the sequence number
    /// it forms the AEAD nonce, which must never repeat under one key.
    /// `settings.max_datagram` is clamped to `MTU`.
    pub fn new(keys: impl Into<Keyring>, sender: u64, mut settings: Settings) -> Self {
        settings.max_datagram = settings.max_datagram.clamp(MIN_LEN, MTU);
        Node {
            seal: Sealer {
                keys: keys.into(),
                sender,
                next_sequence: 1,
            },
            settings,
            next_record: 1,
            peers: heapless::Vec::new(),
            tombstones: Tombstones::new(),
            pending: Queue::new(),
            repeat: Queue::new(),
            repeat_first: 0,
            repeat_due: None,
            scratch: [0; MTU],
            message: Outgoing::new(),
            pulls: Pulls::new(sender),
            issued: Issued::new(sender),
            proof: None,
            counters: SyncCounters::default(),
        }
    }

    /// The sequence number of the next datagram this node seals: each
    /// call that seals ([`Node::poll_transmit`], [`Node::poll_message`],
    /// [`Node::transmit_control`]) seals one and takes it.
    pub fn next_sequence(&self) -> u64 {
        self.seal.next_sequence
    }

    /// Vouches for this node under `nonce` in every datagram it seals from
    /// now on, so that each is admitted on its own by the node that issued
    /// the nonce, whatever the order they arrive in: for a node that
    /// answers a bootstrap request ([`Handled::challenge`]). Call before
    /// queueing anything: it takes room from every datagram.
    pub fn prove(&mut self, nonce: u64) {
        self.proof = Some((nonce, self.seal.next_sequence));
    }

    /// The vouch every datagram begins with, if the node proves itself.
    fn prefix(&self) -> Option<Record<'static>> {
        self.proof.map(|(nonce, since)| Record::Vouch {
            nonce,
            sender: self.seal.sender,
            since,
        })
    }

    /// Bytes of records a batch of changes may take.
    pub fn batch_room(&self) -> usize {
        let prefix = if self.proof.is_some() { VOUCH_LEN } else { 0 };
        self.settings.body_room() - prefix
    }

    /// This node's sender id.
    pub fn sender(&self) -> u64 {
        self.seal.sender
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the node has counted.
    pub fn counters(&self) -> &SyncCounters {
        &self.counters
    }

    /// The keys in force, with what each sealed and opened.
    pub fn keyring(&self) -> &Keyring {
        &self.seal.keys
    }

    /// Seals and opens with `keys` from now on (a key rollover step). The
    /// sender id and sequence numbers go on: a nonce may thus seal under
    /// the old key and the new one, which is harmless (a nonce must be
    /// unique per key). Keys in both rings keep their counts.
    pub fn set_keyring(&mut self, mut keys: Keyring) {
        keys.carry_counts(&self.seal.keys);
        self.seal.keys = keys;
    }

    /// Largest key plus value that fits in one datagram.
    pub fn max_entry_len(&self) -> usize {
        // Record: variant 1 + key length 2 + value length 3 + lifetime 10.
        self.batch_room() - 16
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
    /// A bootstrap request carries a challenge, issued at `now`: the
    /// answer proves itself under it.
    pub fn transmit_control(
        &mut self,
        now: Instant,
        kind: ControlKind,
        buf: &mut [u8],
    ) -> Option<usize> {
        let record = match kind {
            ControlKind::Hello => Some(Record::Hello),
            ControlKind::BootstrapRequest => Some(Record::BootstrapRequest),
            ControlKind::BootstrapEnd => Some(Record::BootstrapEnd),
            ControlKind::Challenge => None,
        };
        let nonce = matches!(kind, ControlKind::BootstrapRequest | ControlKind::Challenge)
            .then(|| self.issued.issue(now));
        let records = [nonce.map(|nonce| Record::Challenge { nonce }), record];
        let len = self.transmit_records(buf, |builder| {
            for record in records.iter().flatten() {
                let _ = builder.push(record);
            }
        })?;
        if nonce.is_some() {
            self.counters.challenges_sent += 1;
        }
        Some(len)
    }

    /// Writes a datagram carrying `keys` (each a period and its secret)
    /// into `buf`, as many as fit, and returns its length; `None` when
    /// there are none. Like control messages, sent once: the caller sends
    /// its keys again each second.
    pub fn transmit_ticket_keys<'k>(
        &mut self,
        keys: impl IntoIterator<Item = (u64, &'k [u8; crate::tickets::SECRET_LEN])>,
        buf: &mut [u8],
    ) -> Option<usize> {
        self.transmit_records(buf, |builder| {
            for (period, secret) in keys {
                if builder.push(&Record::TicketKey { period, secret }).is_err() {
                    break;
                }
            }
        })
    }

    /// Seals the records `fill` writes as this node's next datagram into
    /// `buf`, after this node's vouch when it proves itself, numbered from
    /// the next record number, ahead of any queued change; its length, or
    /// `None` when `fill` wrote nothing.
    fn transmit_records(
        &mut self,
        buf: &mut [u8],
        fill: impl FnOnce(&mut RecordsBuilder<'_>),
    ) -> Option<usize> {
        let prefix = self.prefix();
        let room = self.settings.body_room();
        let mut builder = records_after(&mut self.scratch[..room], prefix.as_ref())?;
        let before = builder.records().len();
        fill(&mut builder);
        if builder.records().len() == before {
            return None;
        }
        let (count, used) = (builder.records().len() as u64, builder.len());
        let len = self
            .seal
            .next(&mut self.counters, self.next_record, builder.records(), buf);
        // No copy in clear left behind (ticket keys travel this way).
        self.scratch[..used].zeroize();
        if len.is_some() {
            self.next_record += count;
        }
        len
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

    /// When the node next has something to do even if no datagram or
    /// change arrives: the repeat of the last batch for
    /// [`Node::poll_transmit`], or a pull's deadline for
    /// [`Node::poll_event`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.repeat_due, self.pulls.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts a pull of `key` (see [`pull`]): `awaiting` is how many peers
    /// the caller will send the request to; the pull ends at `deadline` at
    /// the latest. The request waits in [`Node::poll_message`], addressed
    /// to [`Destination::Peers`]; how the pull ends comes from
    /// [`Node::poll_event`], and an entry found is put in the store passed
    /// to [`Node::handle`] before that.
    pub fn pull(
        &mut self,
        key: &[u8],
        take: bool,
        awaiting: u16,
        deadline: Instant,
    ) -> Result<PullId, PullError> {
        let result = self.start_pull(key, take, awaiting, deadline);
        if result.is_err() {
            self.counters.pulls_refused += 1;
        }
        result
    }

    fn start_pull(
        &mut self,
        key: &[u8],
        take: bool,
        awaiting: u16,
        deadline: Instant,
    ) -> Result<PullId, PullError> {
        if self.message.is_waiting() {
            return Err(PullError::Busy);
        }
        let id = self.pulls.start(key, awaiting, deadline)?;
        let copies = self.settings.message_copies;
        self.message
            .open(Destination::Peers, self.next_record, copies);
        let request = Record::PullRequest {
            id: id.0,
            key,
            take,
        };
        let room = self.settings.body_room();
        if self.message.push(&request, room).is_err() {
            // A cache key always fits; this only keeps the books straight.
            self.message.copies_left = 0;
            self.pulls.end(id.0, PullOutcome::NotFound);
            return Err(PullError::BadKey);
        }
        self.next_record += 1;
        self.counters.pulls_sent += 1;
        Ok(id)
    }

    /// Pulls in flight.
    pub fn pulls_in_flight(&self) -> usize {
        self.pulls.in_flight()
    }

    /// The next pull that ended, once its answer was handled or its
    /// deadline passed; ask until `None` after every [`Node::handle`] and
    /// at [`Node::poll_timeout`].
    pub fn poll_event(&mut self, now: Instant) -> Option<PullEvent> {
        let event = self.pulls.poll_event(now)?;
        match event.outcome {
            PullOutcome::Found => self.counters.pulls_found += 1,
            PullOutcome::NotFound => self.counters.pulls_not_found += 1,
            PullOutcome::TimedOut => self.counters.pulls_timed_out += 1,
        }
        Some(event)
    }

    /// Drops the waiting addressed message, for a caller that cannot send
    /// it (its socket is full): the node is then free for the next one,
    /// and the peer that asked waits out its deadline.
    pub fn discard_message(&mut self) {
        self.message.copies_left = 0;
    }

    /// Whether an addressed message waits for [`Node::poll_message`].
    pub fn message_waiting(&self) -> bool {
        self.message.is_waiting()
    }

    /// Writes the next copy of the waiting addressed message (a pull
    /// request this node started, or its answers to the pull requests of
    /// the datagram just handled) into `buf`; `None` when there is none.
    /// Call until `None` right after [`Node::pull`] and [`Node::handle`]:
    /// an answer addressed to [`Destination::Sender`] goes to the address
    /// that datagram came from. `buf` must hold `settings().max_datagram`
    /// bytes.
    pub fn poll_message(&mut self, buf: &mut [u8]) -> Option<Message> {
        if !self.message.is_waiting() || buf.len() < self.settings.max_datagram {
            return None;
        }
        let len = self.seal.next(
            &mut self.counters,
            self.message.first_record,
            self.message.records(),
            buf,
        );
        self.message.copies_left -= 1;
        len.map(|len| Message {
            destination: self.message.destination,
            len,
        })
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
        let body_room = self.settings.body_room();
        let keep = self.settings.repeat_after.is_some();
        self.repeat.clear();
        let prefix = self.prefix();
        let mut builder = records_after(&mut self.scratch[..body_room], prefix.as_ref())?;
        let mut count = 0;
        for entry in self.pending.iter() {
            if builder.push(&entry.record(now)).is_err() || (keep && !self.repeat.push(&entry)) {
                break;
            }
            count += 1;
        }
        let len = self
            .seal
            .next(&mut self.counters, self.next_record, builder.records(), buf)?;
        self.pending.pop_front(count);
        self.repeat_first = self.next_record;
        self.next_record += (count + usize::from(prefix.is_some())) as u64;
        self.repeat_due = self.settings.repeat_after.map(|after| now + after);
        Some(len)
    }

    fn transmit_repeat(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.repeat_due = None;
        let prefix = self.prefix();
        let mut builder = records_after(&mut self.scratch[..], prefix.as_ref())?;
        for entry in self.repeat.iter() {
            // Each entry fitted in the first copy, whose lifetimes were no
            // shorter to write, so it fits again.
            builder.push(&entry.record(now)).ok()?;
        }
        let len = self.seal.next(
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
            return Err(Reject::Wire(crate::wire::Error::Oversized));
        }
        let packet = Packet::new_checked(datagram)?;
        let sender = packet.sender();
        if sender == self.seal.sender {
            return Err(Reject::Own);
        }
        let known = self.peers.iter().position(|p| p.sender == sender);
        let window = known.map_or_else(Window::default, |i| self.peers[i].datagrams);
        match window.check(packet.sequence()) {
            Verdict::Fresh => {}
            Verdict::Duplicate => return Err(Reject::Replayed),
            Verdict::TooOld => return Err(Reject::Stale),
        }
        // The body opens into the front of the scratch buffer; the rest is
        // where the values of pull answers are read (a pull request is a
        // short datagram, so most of the buffer is left).
        let body_len = datagram.len().saturating_sub(MIN_LEN).min(MTU);
        let (body_buf, spare) = self.scratch.split_at_mut(body_len);
        let repr = self.seal.keys.parse(&packet, body_buf)?;

        // Authentic from here on: only now may it change any state.
        admit_vouched(
            &mut self.peers,
            &self.issued,
            &mut self.counters,
            (self.seal.sender, now),
            repr.records,
        );
        // (Vouches may have added senders: the table moved.)
        let index = match self.peers.iter().position(|p| p.sender == sender) {
            Some(index) => index,
            None => admit(&mut self.peers, sender, now, !self.settings.verify_senders),
        };
        let peer = &mut self.peers[index];
        // Only a vouch that lied about its own datagram lands here.
        match peer.datagrams.check(repr.sequence) {
            Verdict::Fresh => {}
            Verdict::Duplicate => return Err(Reject::Replayed),
            Verdict::TooOld => return Err(Reject::Stale),
        }
        let verified = peer.verified;
        if !verified && repr.records.iter().any(|r| needs_verified_sender(&r)) {
            self.challenge(now, index);
            return Err(Reject::Unverified);
        }
        peer.datagrams.mark(repr.sequence);
        peer.last_seen = now;

        let mut handled = Handled {
            sender,
            ..Handled::default()
        };
        // Whether the sender, not verified, asked for anything: then it is
        // challenged, so that its changes apply from the next ones on.
        let mut introduced = false;
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
                Record::Set(entry) => {
                    if entry.ttl_ms == 0 {
                        self.counters.expired_sets += 1;
                    } else if self
                        .tombstones
                        .is_buried(fingerprint(self.seal.sender, entry.key), now)
                    {
                        self.counters.tombstoned_sets += 1;
                    } else if put(store, now, entry) {
                        self.counters.applied_sets += 1;
                        handled.sets += 1;
                    } else {
                        self.counters.refused_sets += 1;
                    }
                }
                Record::Delete { key } => {
                    store.with_cache(|cache| cache.delete(now, key));
                    let until = now + self.settings.tombstone_lifetime;
                    self.tombstones
                        .bury(fingerprint(self.seal.sender, key), until);
                    self.counters.applied_deletes += 1;
                    handled.deletes += 1;
                }
                Record::Hello => {
                    // Membership changes with a hello: a verified one only.
                    handled.control.hello = verified;
                    introduced = true;
                    control += 1;
                }
                Record::BootstrapRequest => {
                    handled.control.bootstrap_request = true;
                    control += 1;
                }
                Record::Challenge { nonce } => {
                    handled.challenge = Some(nonce);
                    introduced = true;
                    control += 1;
                }
                // Admitted before anything else (`admit_vouched`).
                Record::Vouch { .. } => control += 1,
                Record::BootstrapEnd => {
                    handled.control.bootstrap_end = true;
                    control += 1;
                }
                Record::PullRequest { id, key, take } => {
                    handled.pulls.requests += 1;
                    let answer = Answer {
                        now,
                        asker: sender,
                        room: self.settings.body_room(),
                        copies: self.settings.message_copies,
                    };
                    answer.pull(
                        &mut self.message,
                        &mut self.next_record,
                        spare,
                        &mut self.counters,
                        store,
                        (id, key, take),
                    );
                }
                Record::PullAnswer { id, entry } => {
                    handled.pulls.answers += 1;
                    if !self.pulls.wants(id, entry.key) {
                        self.counters.late_pull_answers += 1;
                    } else if entry.ttl_ms > 0 && put(store, now, entry) {
                        self.counters.applied_sets += 1;
                        handled.sets += 1;
                        self.pulls.end(id, PullOutcome::Found);
                    } else {
                        self.counters.refused_sets += 1;
                        self.pulls.end(id, PullOutcome::NotFound);
                    }
                }
                Record::PullNone { id } => {
                    handled.pulls.answers += 1;
                    if !self.pulls.none(id) {
                        self.counters.late_pull_answers += 1;
                    }
                }
                Record::TicketKey { period, secret } => {
                    self.counters.ticket_keys_received += 1;
                    // A key of another length is no key of ours: skipped.
                    if let Ok(secret) = secret.try_into() {
                        store.ticket_key(period, secret);
                        handled.ticket_keys += 1;
                    }
                }
            }
        }
        self.counters.control_records += control;
        if handled.ticket_keys > 0 {
            // The keys in clear leave no copy behind.
            self.scratch[..body_len].zeroize();
        }
        if let Some(nonce) = handled.challenge {
            self.answer_challenge(sender, nonce, store);
        }
        if introduced && !verified {
            self.challenge(now, index);
        }
        Ok(handled)
    }

    /// Challenges the sender at `index`, not verified, in the message to
    /// it: at most once every [`RECHALLENGE_AFTER`].
    fn challenge(&mut self, now: Instant, index: usize) {
        let peer = &mut self.peers[index];
        if peer
            .challenged
            .is_some_and(|at| now < at + RECHALLENGE_AFTER)
        {
            return;
        }
        let challenge = Record::Challenge {
            nonce: self.issued.issue(now),
        };
        let (message, next_record) = (&mut self.message, &mut self.next_record);
        if message_to(message, next_record, self.settings, peer.sender, &challenge) {
            peer.challenged = Some(now);
            self.counters.challenges_sent += 1;
        }
    }

    /// Vouches for this node and the `store`'s members under `nonce`, in
    /// the message to `asker`.
    fn answer_challenge<St: Store>(&mut self, asker: u64, nonce: u64, store: &mut St) {
        let own = Member {
            sender: self.seal.sender,
            since: self.seal.next_sequence,
        };
        let mut members = [Member::default(); MAX_MEMBERS];
        let count = store.members(&mut members).min(MAX_MEMBERS);
        let others = members[..count]
            .iter()
            .filter(|m| m.sender != 0 && m.sender != own.sender && m.sender != asker);
        for member in core::iter::once(&own).chain(others) {
            let vouch = Record::Vouch {
                nonce,
                sender: member.sender,
                since: member.since,
            };
            let sent = message_to(
                &mut self.message,
                &mut self.next_record,
                self.settings,
                asker,
                &vouch,
            );
            if !sent {
                // The rest do not fit: they are challenged on their own
                // when they send changes.
                break;
            }
        }
        self.counters.challenges_answered += 1;
    }

    fn fingerprint(&self, key: &[u8]) -> u64 {
        fingerprint(self.seal.sender, key)
    }
}

/// Answering the pull requests of one datagram, all into one message to
/// their asker. (Fields are passed apart: the requests borrow the node's
/// scratch buffer meanwhile.)
struct Answer {
    now: Instant,
    asker: u64,
    room: usize,
    copies: u8,
}

impl Answer {
    fn pull<St: Store, const MTU: usize>(
        &self,
        message: &mut Outgoing<MTU>,
        next_record: &mut u64,
        value_buf: &mut [u8],
        counters: &mut SyncCounters,
        store: &mut St,
        (id, key, take): (u64, &[u8], bool),
    ) {
        let destination = Destination::Sender(self.asker);
        if !message.admits(destination) {
            // The caller did not take the last message: it is not polling.
            counters.pull_answers_dropped += 1;
            return;
        }
        // Read no more than fits beside the key, so that whatever is taken
        // can be sent: a take removes only what it returns.
        let overhead = key.len() + 32;
        let limit = self.room.saturating_sub(overhead).min(value_buf.len());
        let numbering = (next_record, self.copies, self.room);
        let (record, found) = match fetch(store, self.now, key, take, &mut value_buf[..limit]) {
            Some(found) if !found.remaining.is_zero() => {
                let record = Record::PullAnswer {
                    id,
                    entry: wire::Entry {
                        key,
                        value: found.value,
                        ttl_ms: found.remaining.as_millis(),
                    },
                };
                (record, true)
            }
            _ => (Record::PullNone { id }, false),
        };
        if !message.append(destination, numbering, &record) {
            // Several requests in one datagram, more than one answer fits.
            counters.pull_answers_dropped += 1;
        } else if found {
            counters.pull_requests_found += 1;
        } else {
            counters.pull_requests_none += 1;
        }
    }
}

/// Stores an entry a peer sent, alive for its `ttl_ms` from `now`; whether
/// it was stored.
fn put<St: Store>(store: &mut St, now: Instant, entry: wire::Entry<'_>) -> bool {
    let lifetime = Duration::from_millis(entry.ttl_ms);
    store
        .with_cache(|cache| cache.put(now, entry.key, entry.value, lifetime).is_ok())
        .unwrap_or(false)
}

/// The entry for `key` copied into `out` (removed when `take`) for a peer's
/// pull: `None` when the store does not lend it, there is no live entry, or
/// it does not fit `out` (which then loses nothing: a take removes only
/// what it returns).
fn fetch<'o, St: Store>(
    store: &mut St,
    now: Instant,
    key: &[u8],
    take: bool,
    out: &'o mut [u8],
) -> Option<Fetched<'o>> {
    if !store.lends(key, take) {
        return None;
    }
    store
        .with_cache(|cache| cache.fetch(now, key, out, take).ok().flatten())
        .flatten()
}

/// A builder of a datagram's records over `scratch`, starting with the
/// node's vouch when it proves itself; `None` when even that does not fit.
fn records_after<'s>(
    scratch: &'s mut [u8],
    prefix: Option<&Record<'_>>,
) -> Option<RecordsBuilder<'s>> {
    let mut builder = RecordsBuilder::new(scratch);
    if let Some(prefix) = prefix {
        builder.push(prefix).ok()?;
    }
    Some(builder)
}

/// What a node seals with: its keyring, its sender id for this start and
/// the sequence number its next datagram carries.
struct Sealer {
    keys: Keyring,
    sender: u64,
    next_sequence: u64,
}

impl Sealer {
    /// Seals `records` as this sender's next datagram into `buf`, advancing
    /// the sequence and counting what was sent. (Apart from the node's
    /// other fields, so the records may borrow its scratch buffer
    /// meanwhile.)
    fn next(
        &mut self,
        counters: &mut SyncCounters,
        first_record: u64,
        records: Records<'_>,
        buf: &mut [u8],
    ) -> Option<usize> {
        let repr = Repr {
            sender: self.sender,
            sequence: self.next_sequence,
            first_record,
            records,
        };
        let len = self.keys.emit(&repr, buf).ok()?;
        self.next_sequence += 1;
        counters.sent_datagrams += 1;
        counters.sent_bytes += len as u64;
        counters.sent_records += records.len() as u64;
        Some(len)
    }
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
/// when the table is full (among those not verified, if any). Returns its
/// index.
fn admit<const PEERS: usize>(
    peers: &mut heapless::Vec<Peer, PEERS>,
    sender: u64,
    now: Instant,
    verified: bool,
) -> usize {
    let peer = Peer {
        sender,
        datagrams: Window::default(),
        records: Window::default(),
        last_seen: now,
        verified,
        challenged: None,
    };
    match peers.push(peer) {
        Ok(()) => peers.len() - 1,
        Err(peer) => {
            let oldest = peers
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| (p.verified, p.last_seen))
                .map_or(0, |(i, _)| i);
            peers[oldest] = peer;
            oldest
        }
    }
}

/// Records a sender not verified may not carry: changes, and the end of a
/// bootstrap answer (which would stop this node asking for one).
fn needs_verified_sender(record: &Record<'_>) -> bool {
    matches!(
        record,
        Record::Set { .. } | Record::Delete { .. } | Record::BootstrapEnd
    )
}

/// Admits the senders vouched for in `records` under a nonce this node
/// issued, each with its replay window starting at the sequence number
/// vouched for (`own` is this node's sender id and the time).
fn admit_vouched<const PEERS: usize>(
    peers: &mut heapless::Vec<Peer, PEERS>,
    issued: &Issued,
    counters: &mut SyncCounters,
    (own, now): (u64, Instant),
    records: Records<'_>,
) {
    for record in records.iter() {
        let Record::Vouch {
            nonce,
            sender,
            since,
        } = record
        else {
            continue;
        };
        let known = peers.iter().position(|p| p.sender == sender);
        if sender == own || known.is_some_and(|i| peers[i].verified) {
            continue;
        }
        if !issued.admits(nonce, now) {
            counters.stale_vouches += 1;
            continue;
        }
        let index = known.unwrap_or_else(|| admit(peers, sender, now, true));
        let peer = &mut peers[index];
        peer.datagrams.raise_floor(since.saturating_sub(1));
        peer.verified = true;
        peer.challenged = None;
        counters.senders_verified += 1;
    }
}

/// Appends `record` to the message to `sender` (see [`Outgoing::append`]).
fn message_to<const MTU: usize>(
    message: &mut Outgoing<MTU>,
    next_record: &mut u64,
    settings: Settings,
    sender: u64,
    record: &Record<'_>,
) -> bool {
    let room = settings.body_room();
    let numbering = (next_record, settings.message_copies, room);
    message.append(Destination::Sender(sender), numbering, record)
}
