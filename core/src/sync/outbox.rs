//! Local changes waiting to be sent, and the last batch waiting to be sent
//! again.
//!
//! Entries are kept in a compact form with an absolute deadline, so that
//! the lifetime written on the wire is the time remaining when the datagram
//! leaves, even for a repeat:
//!
//! ```text
//! kind u8 | key_len u8 | value_len u16 | deadline u64 | key | value
//! ```

use crate::bytes::{read_u64, write_u64};
use crate::time::Instant;
use crate::wire::{self, Record};

const ENTRY_HEADER: usize = 12;
const KIND_SET: u8 = 1;
const KIND_DELETE: u8 = 2;

/// A change as stored in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub(crate) key: &'a [u8],
    /// `Some((value, deadline))` for a set, `None` for a delete.
    pub(crate) set: Option<(&'a [u8], Instant)>,
}

impl<'a> Entry<'a> {
    pub(crate) fn encoded_len(&self) -> usize {
        ENTRY_HEADER + self.key.len() + self.set.map_or(0, |(v, _)| v.len())
    }

    /// The record to put on the wire at `now`.
    pub(crate) fn record(&self, now: Instant) -> Record<'a> {
        match self.set {
            Some((value, deadline)) => Record::Set(wire::Entry {
                key: self.key,
                value,
                ttl_ms: (deadline - now).as_millis(),
            }),
            None => Record::Delete { key: self.key },
        }
    }

    fn write(&self, out: &mut [u8]) {
        let (kind, value, deadline) = match self.set {
            Some((value, deadline)) => (KIND_SET, value, deadline),
            None => (KIND_DELETE, &[][..], Instant::ZERO),
        };
        out[0] = kind;
        out[1] = self.key.len() as u8;
        out[2..4].copy_from_slice(&(value.len() as u16).to_le_bytes());
        write_u64(out, 4, deadline.as_millis());
        out[ENTRY_HEADER..ENTRY_HEADER + self.key.len()].copy_from_slice(self.key);
        let value_at = ENTRY_HEADER + self.key.len();
        out[value_at..value_at + value.len()].copy_from_slice(value);
    }

    /// Reads the entry at the front of `bytes` (written by `write`).
    fn read(bytes: &'a [u8]) -> (Entry<'a>, usize) {
        let key_len = bytes[1] as usize;
        let value_len = u16::from_le_bytes([bytes[2], bytes[3]]) as usize;
        let key = &bytes[ENTRY_HEADER..ENTRY_HEADER + key_len];
        let set = (bytes[0] == KIND_SET).then(|| {
            let value_at = ENTRY_HEADER + key_len;
            (
                &bytes[value_at..value_at + value_len],
                Instant::from_millis(read_u64(bytes, 4)),
            )
        });
        let entry = Entry { key, set };
        (entry, entry.encoded_len())
    }
}

/// A byte queue of compact entries.
#[derive(Debug)]
pub(crate) struct Queue<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Queue<N> {
    pub(crate) fn new() -> Self {
        Queue {
            bytes: [0; N],
            len: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `entry`, or returns false when there is no room.
    pub(crate) fn push(&mut self, entry: &Entry<'_>) -> bool {
        let len = entry.encoded_len();
        if self.len + len > N {
            return false;
        }
        entry.write(&mut self.bytes[self.len..self.len + len]);
        self.len += len;
        true
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        let mut rest = &self.bytes[..self.len];
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (entry, used) = Entry::read(rest);
            rest = &rest[used..];
            Some(entry)
        })
    }

    /// Drops the first `count` entries.
    pub(crate) fn pop_front(&mut self, count: usize) {
        let consumed: usize = self.iter().take(count).map(|e| e.encoded_len()).sum();
        self.bytes.copy_within(consumed..self.len, 0);
        self.len -= consumed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_entries_in_order_and_refuses_overflow() {
        let mut q: Queue<64> = Queue::new();
        let set = Entry {
            key: b"key",
            set: Some((b"value", Instant::from_millis(500))),
        };
        let delete = Entry {
            key: b"old",
            set: None,
        };
        assert!(q.push(&set));
        assert!(q.push(&delete));
        assert!(!q.push(&Entry {
            key: &[0; 40],
            set: None
        }));
        assert_eq!(q.iter().collect::<heapless::Vec<_, 4>>(), [set, delete]);
        q.pop_front(1);
        assert_eq!(q.iter().next(), Some(delete));
        assert_eq!(
            set.record(Instant::from_millis(200)),
            Record::Set(wire::Entry {
                key: b"key",
                value: b"value",
                ttl_ms: 300
            })
        );
    }
}
