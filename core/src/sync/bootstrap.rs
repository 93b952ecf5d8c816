//! Answering a peer's bootstrap request, sans-IO.
//!
//! A node that (re)starts asks its peers for their live sessions
//! ([`ControlKind::BootstrapRequest`]); each peer answers with every live
//! entry of its cache, as ordinary sets, then [`ControlKind::BootstrapEnd`].
//! [`BootstrapAnswer`] is that answer as a state machine: a cursor over
//! [`Cache::export_next`](crate::cache::Cache::export_next) that feeds entries to the answering [`Node`] about
//! one datagram's worth at a time and hands back each sealed datagram, the
//! last batch's repeat, then the end marker. It never touches a socket or a
//! clock and does a bounded amount of work per call, so a router can pace it
//! with sleeps and an appliance across the turns of its main loop.
//!
//! The node should carry nothing else while it answers: every datagram it
//! produces goes to the one requester. Both users have a node of their own
//! for control messages and answers, so this holds.

use crate::cache::{BufferTooSmall, MAX_KEY_LEN};
use crate::time::{Duration, Instant};

use super::{ControlKind, Node, QueueError, Store};

/// Bytes a set record adds to its key and value on the wire, at most:
/// variant 1, key length 2, value length 3, lifetime 10 (postcard varints).
const RECORD_OVERHEAD: usize = 16;

/// What an answer in progress needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// The buffer holds a datagram of this many bytes: send it to the
    /// requester, then call again.
    Transmit(usize),
    /// Nothing to send before this instant (the last batch's repeat is not
    /// due yet): call again then.
    Wait(Instant),
    /// The answer is complete: the end marker went out.
    Done,
}

/// Why an answer cannot make progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AnswerError {
    /// The datagram buffer is shorter than the node's `max_datagram`.
    BufferTooSmall,
}

impl core::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AnswerError::BufferTooSmall => "datagram buffer shorter than the node's max_datagram",
        })
    }
}

impl core::error::Error for AnswerError {}

/// One answer to one bootstrap request. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BootstrapAnswer {
    /// The next slot [`Cache::export_next`](crate::cache::Cache::export_next)
    /// looks at.
    cursor: u32,
    /// Every live entry has been handed to the node.
    exported: bool,
    /// The end marker went out.
    done: bool,
    entries: u64,
}

impl BootstrapAnswer {
    /// An answer that starts at the cache's first slot.
    pub const fn new() -> Self {
        BootstrapAnswer {
            cursor: 0,
            exported: false,
            done: false,
            entries: 0,
        }
    }

    /// Entries handed to the node so far (each goes out twice, as every
    /// batch does).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Whether the end marker went out.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Writes the answer's next datagram into `buf`, or says when to come
    /// back. `buf` must hold the node's `max_datagram` bytes; between
    /// datagrams it is also where values are copied out of the cache (a
    /// value longer than a datagram could not be sent anyway).
    ///
    /// Each call exports about one datagram's worth of entries; the only
    /// longer walk is past live entries too large to send, one slot per
    /// export, since the cache cannot say where such an entry sits.
    pub fn poll_transmit<
        E: Store + ?Sized,
        const MTU: usize,
        const PEERS: usize,
        const TOMBSTONES: usize,
        const QUEUE: usize,
        const PULLS: usize,
    >(
        &mut self,
        now: Instant,
        source: &mut E,
        node: &mut Node<MTU, PEERS, TOMBSTONES, QUEUE, PULLS>,
        buf: &mut [u8],
    ) -> Result<Step, AnswerError> {
        if buf.len() < node.settings().max_datagram {
            return Err(AnswerError::BufferTooSmall);
        }
        loop {
            if self.done {
                return Ok(Step::Done);
            }
            // A repeat that fell due, or a batch of what was fed last time.
            if let Some(len) = node.poll_transmit(now, buf) {
                return Ok(Step::Transmit(len));
            }
            if !self.exported {
                let room = node.batch_room();
                self.feed(
                    now,
                    source,
                    room,
                    |key, value, remaining| node.record_set(now, key, value, remaining),
                    buf,
                );
                continue;
            }
            // Everything went out once; the end marker must not overtake
            // the last batch's second copy.
            if let Some(due) = node.poll_timeout() {
                return Ok(Step::Wait(due));
            }
            self.done = true;
            if let Some(len) = node.transmit_control(now, ControlKind::BootstrapEnd, buf) {
                return Ok(Step::Transmit(len));
            }
        }
    }

    /// Hands the node as many entries as surely fit in one datagram (by an
    /// upper bound on their encoded size), so that each batch the node
    /// seals carries exactly them; or marks the export finished.
    /// `room` is the node's [`Node::batch_room`], `record` its
    /// [`Node::record_set`] (passed apart so that this needs no node type).
    fn feed<E: Store + ?Sized>(
        &mut self,
        now: Instant,
        source: &mut E,
        room: usize,
        mut record: impl FnMut(&[u8], &[u8], Duration) -> Result<(), QueueError>,
        scratch: &mut [u8],
    ) {
        let mut key = [0u8; MAX_KEY_LEN];
        let mut fed = 0;
        loop {
            let exported = source
                .with_cache(|cache| cache.export_next(now, self.cursor, &mut key, scratch))
                .unwrap_or(Ok(None));
            let entry = match exported {
                Ok(Some(entry)) if !source.exports(entry.key) => {
                    self.cursor = entry.next;
                    continue;
                }
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    self.exported = true;
                    return;
                }
                Err(BufferTooSmall { .. }) => {
                    // Some live entry at or after the cursor is larger than
                    // a datagram (the node would refuse it too): step past
                    // it one slot at a time.
                    self.cursor += 1;
                    continue;
                }
            };
            let len = entry.key.len() + entry.value.len() + RECORD_OVERHEAD;
            if fed > 0 && fed + len > room {
                // It goes in the next batch (and is exported again then):
                // a leftover would otherwise travel in a batch of its own.
                return;
            }
            match record(entry.key, entry.value, entry.remaining) {
                Ok(()) => {
                    self.entries += 1;
                    fed += len;
                }
                // A queue full of this batch is sent first, and this entry
                // exported again afterwards.
                Err(QueueError::Full) if fed > 0 => return,
                // Too large for one datagram (or for the whole queue): it
                // cannot be sent at all, and the node counted it.
                Err(QueueError::Full | QueueError::TooLarge) => {}
            }
            self.cursor = entry.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::cache::{Cache, Config, Layout};
    use crate::sync::Settings;
    use crate::time::Duration;
    use crate::wire::{ClusterKey, DEFAULT_DATAGRAM_LEN};

    const SECRET: [u8; 32] = [7; 32];

    fn node(sender: u64) -> Node {
        // Verifying senders is tested in `super::super::tests`.
        let settings = Settings {
            verify_senders: false,
            ..Settings::default()
        };
        Node::new(ClusterKey::new(&SECRET), sender, settings)
    }

    fn cache(capacity: u32, block_size: u32) -> Cache<Vec<u8>> {
        let layout = Layout::new(capacity, block_size).unwrap();
        let config = Config {
            capacity,
            block_size,
            hash_key: [9; 16],
        };
        Cache::format(vec![0u8; layout.total_bytes()], &config).unwrap()
    }

    fn key(i: u32) -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        key
    }

    /// Runs an answer to completion on a fake clock that jumps to every
    /// `Wait`; returns the datagrams and how many waits there were.
    fn run(
        answer: &mut BootstrapAnswer,
        source: &mut impl Store,
        node: &mut Node,
    ) -> (Vec<Vec<u8>>, u32) {
        let mut now = Instant::from_millis(1_000);
        let mut buf = [0u8; DEFAULT_DATAGRAM_LEN];
        let (mut sent, mut waits) = (Vec::new(), 0);
        for _ in 0..10_000 {
            match answer.poll_transmit(now, source, node, &mut buf).unwrap() {
                Step::Transmit(len) => sent.push(buf[..len].to_vec()),
                Step::Wait(due) => {
                    assert!(due > now, "a wait is for later");
                    now = due;
                    waits += 1;
                }
                Step::Done => return (sent, waits),
            }
        }
        panic!("the answer never finished");
    }

    #[test]
    fn an_answer_carries_every_live_entry_in_full_batches_then_the_end() {
        let mut source = cache(500, 512);
        let now = Instant::from_millis(1_000);
        for i in 0..300 {
            source
                .put(now, &key(i), &[i as u8; 150], Duration::from_secs(60))
                .unwrap();
        }
        // An expired entry stays behind.
        source
            .put(Instant::ZERO, b"old", b"gone", Duration::from_millis(5))
            .unwrap();
        let (mut answering, mut requester) = (node(1), node(2));
        let mut replica = cache(500, 512);
        let mut answer = BootstrapAnswer::new();
        let (datagrams, waits) = run(&mut answer, &mut source, &mut answering);
        assert!(answer.is_done());
        assert_eq!(answer.entries(), 300);
        assert_eq!(waits, 1, "only the last repeat is waited for");

        let (mut sets, mut ends) = (0, 0);
        for datagram in &datagrams {
            let handled = requester.handle(now, datagram, &mut replica).unwrap();
            sets += handled.sets;
            ends += u32::from(handled.control.bootstrap_end);
        }
        assert_eq!((sets, ends), (300, 1));
        assert!(
            requester.counters().duplicate_records >= 290,
            "every batch went twice"
        );
        // 32-byte keys and 150-byte values, 6 or 7 to a 1400-byte
        // datagram: far fewer datagrams than entries, each sent twice, and
        // the end marker.
        let batches = (datagrams.len() - 1) / 2;
        assert!(
            (300 / 7..=300 / 6 + 1).contains(&batches),
            "{batches} batches"
        );
        assert!(datagrams
            .last()
            .is_some_and(|d| requester.handle(now, d, &mut replica).is_err()));
        assert_eq!(replica.items(), 300);
        let mut out = [0u8; 512];
        let value = replica.get(now, &key(299), &mut out).unwrap().unwrap();
        assert_eq!(value, &[299u32 as u8; 150][..]);
    }

    /// A cache whose store exports only the entries whose key starts with
    /// an even byte, as a router's keeps its TLS 1.3 tickets.
    struct EvenKeysOnly(Cache<Vec<u8>>);

    impl Store for EvenKeysOnly {
        fn with_cache<R>(&mut self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R> {
            self.0.with_cache(f)
        }

        fn exports(&mut self, key: &[u8]) -> bool {
            key[0] % 2 == 0
        }
    }

    #[test]
    fn entries_the_store_does_not_export_stay_behind() {
        let mut source = EvenKeysOnly(cache(64, 512));
        let now = Instant::from_millis(1_000);
        for i in 0..40 {
            source
                .0
                .put(now, &key(i), b"v", Duration::from_secs(60))
                .unwrap();
        }
        let (mut answering, mut requester) = (node(1), node(2));
        let mut answer = BootstrapAnswer::new();
        let (datagrams, _) = run(&mut answer, &mut source, &mut answering);
        assert!(answer.is_done());
        assert_eq!(answer.entries(), 20);
        let mut replica = cache(64, 512);
        for datagram in &datagrams {
            requester.handle(now, datagram, &mut replica).unwrap();
        }
        let mut out = [0u8; 512];
        for i in 0..40 {
            let found = replica.get(now, &key(i), &mut out).unwrap().is_some();
            assert_eq!(found, i % 2 == 0, "key {i}");
        }
    }

    #[test]
    fn entries_too_large_for_a_datagram_are_stepped_over() {
        let mut source = cache(16, 4096);
        let now = Instant::from_millis(1_000);
        source
            .put(now, b"small-1", b"v1", Duration::from_secs(9))
            .unwrap();
        source
            .put(now, b"huge", &[1; 3000], Duration::from_secs(9))
            .unwrap();
        source
            .put(now, b"over", &[2; 1390], Duration::from_secs(9))
            .unwrap();
        source
            .put(now, b"small-2", b"v2", Duration::from_secs(9))
            .unwrap();
        let (mut answering, mut requester) = (node(1), node(2));
        let mut replica = cache(16, 4096);
        let mut answer = BootstrapAnswer::new();
        let (datagrams, _) = run(&mut answer, &mut source, &mut answering);
        assert_eq!(answer.entries(), 2);
        assert_eq!(answering.counters().skipped_oversize, 1);
        for datagram in &datagrams {
            let _ = requester.handle(now, datagram, &mut replica);
        }
        assert_eq!(replica.items(), 2);
        assert!(replica.delete(now, b"small-2"));
    }

    #[test]
    fn an_empty_cache_is_answered_with_the_end_marker_alone() {
        let mut source = cache(4, 64);
        let (mut answering, mut requester) = (node(1), node(2));
        let mut answer = BootstrapAnswer::new();
        let (datagrams, waits) = run(&mut answer, &mut source, &mut answering);
        assert_eq!((datagrams.len(), waits, answer.entries()), (1, 0, 0));
        let handled = requester
            .handle(Instant::ZERO, &datagrams[0], &mut cache(4, 64))
            .unwrap();
        assert!(handled.control.bootstrap_end);
        let mut short = [0u8; 100];
        assert_eq!(
            BootstrapAnswer::new().poll_transmit(
                Instant::ZERO,
                &mut source,
                &mut answering,
                &mut short
            ),
            Err(AnswerError::BufferTooSmall)
        );
    }
}
