//! What a datagram carries: replicated cache changes and control messages.

use serde::{Deserialize, Serialize};

/// A cache entry on the wire, with the lifetime it had left when the
/// datagram was written: what a [`Record::Set`] and a
/// [`Record::PullAnswer`] carry. (Encoded as its fields in order, as they
/// were when each record held them itself.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry<'a> {
    /// Cache key (context namespace and session id).
    #[serde(borrow)]
    pub key: &'a [u8],
    /// Encoded session.
    #[serde(borrow)]
    pub value: &'a [u8],
    /// Remaining lifetime when the datagram was written.
    pub ttl_ms: u64,
}

/// One entry of a datagram's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Record<'a> {
    /// Store the entry for its `ttl_ms` more milliseconds.
    Set(#[serde(borrow)] Entry<'a>),
    /// Remove `key` (a deleted session, or a TLS 1.3 ticket just used).
    Delete {
        /// Cache key.
        #[serde(borrow)]
        key: &'a [u8],
    },
    /// "I am here": a node announcing itself to its peers (membership).
    Hello,
    /// "Send me your live entries": a node that just started.
    BootstrapRequest,
    /// The last datagram of an answer to a [`Record::BootstrapRequest`].
    BootstrapEnd,
    /// "Send me your entry under `key`": a node that lacks the session a
    /// client offers. With `take`, the answering node removes the entry as
    /// it answers (a TLS 1.3 ticket, which resumes once in the cluster).
    /// Answered, to the sender alone, by [`Record::PullAnswer`] or
    /// [`Record::PullNone`] under the same `id`.
    PullRequest {
        /// Chosen by the asking node, unique among its pulls in flight.
        id: u64,
        /// Cache key.
        #[serde(borrow)]
        key: &'a [u8],
        /// Remove the entry while answering.
        take: bool,
    },
    /// The entry pull `id` asked for, with its remaining lifetime.
    PullAnswer {
        /// The pull answered.
        id: u64,
        /// The entry, under the key asked for.
        #[serde(borrow)]
        entry: Entry<'a>,
    },
    /// The answering node holds no live entry for pull `id`.
    PullNone {
        /// The pull answered.
        id: u64,
    },
    /// "Prove you are live": answered, to the sender alone, by a
    /// [`Record::Vouch`] under the same `nonce` for the answering node and
    /// every sender it speaks for (see `crate::sync::challenge`).
    Challenge {
        /// Fresh from the challenging node, for this challenge only.
        nonce: u64,
    },
    /// "Every datagram of `sender` numbered `since` or later was sealed
    /// after `nonce` was seen": what admits a sender to a node that
    /// challenged with `nonce`, its replay window starting at `since`.
    Vouch {
        /// The challenge answered.
        nonce: u64,
        /// The sender vouched for.
        sender: u64,
        /// Its first sequence number known to be fresh.
        since: u64,
    },
    /// A cluster ticket key for `period` (see [`crate::tickets`]): sent to
    /// every peer each second, in answer to a bootstrap request, and to
    /// the router's own workers through its shared region.
    TicketKey {
        /// The period whose tickets it seals.
        period: u64,
        /// The key, [`crate::tickets::SECRET_LEN`] bytes.
        #[serde(borrow)]
        secret: &'a [u8],
    },
}

/// Validated, encoded records: iterating yields each one in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Records<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Records<'a> {
    /// Checks that `bytes` is a whole number of well-formed records.
    pub fn parse(bytes: &'a [u8]) -> Result<Records<'a>, super::Error> {
        let mut rest = bytes;
        let mut count = 0;
        while !rest.is_empty() {
            let (_, tail) = postcard::take_from_bytes::<Record<'a>>(rest)
                .map_err(|_| super::Error::Malformed)?;
            rest = tail;
            count += 1;
        }
        Ok(Records { bytes, count })
    }

    /// Records a builder wrote (already known to be well formed).
    pub(crate) fn from_built(bytes: &'a [u8], count: usize) -> Records<'a> {
        Records { bytes, count }
    }

    /// No records at all.
    pub const EMPTY: Records<'static> = Records {
        bytes: &[],
        count: 0,
    };

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records in order.
    pub fn iter(&self) -> RecordIter<'a> {
        RecordIter { rest: self.bytes }
    }
}

impl<'a> IntoIterator for Records<'a> {
    type Item = Record<'a>;
    type IntoIter = RecordIter<'a>;

    fn into_iter(self) -> RecordIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Records`].
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        // `Records::parse` validated every record, so decoding succeeds.
        let (record, tail) = postcard::take_from_bytes::<Record<'a>>(self.rest).ok()?;
        self.rest = tail;
        Some(record)
    }
}

/// Encodes records one after another into a caller's buffer.
#[derive(Debug)]
pub struct RecordsBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    count: usize,
}

impl<'b> RecordsBuilder<'b> {
    /// An empty list writing into `buf`.
    pub fn new(buf: &'b mut [u8]) -> RecordsBuilder<'b> {
        RecordsBuilder {
            buf,
            len: 0,
            count: 0,
        }
    }

    /// Appends `record`, or leaves the list unchanged and fails if it does
    /// not fit.
    pub fn push(&mut self, record: &Record<'_>) -> Result<(), super::Error> {
        let written = postcard::to_slice(record, &mut self.buf[self.len..])
            .map_err(|_| super::Error::BufferTooSmall)?
            .len();
        self.len += written;
        self.count += 1;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records written.
    pub fn records(&self) -> Records<'_> {
        Records {
            bytes: &self.buf[..self.len],
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry is encoded as its fields in order, right after the
    /// variant (and a pull answer's id): the bytes of the records that
    /// held key, value and lifetime themselves, so peers of either build
    /// read each other.
    #[test]
    fn entries_encode_as_their_fields_in_place() {
        let mut buf = [0u8; 32];
        let mut builder = RecordsBuilder::new(&mut buf);
        let entry = |value| Entry {
            key: b"k",
            value,
            ttl_ms: 300,
        };
        builder.push(&Record::Set(entry(b"vv"))).unwrap();
        let answer = Record::PullAnswer {
            id: 7,
            entry: entry(b"v"),
        };
        builder.push(&answer).unwrap();
        assert_eq!(
            builder.records().as_bytes(),
            [0, 1, b'k', 2, b'v', b'v', 0xac, 0x02, 6, 7, 1, b'k', 1, b'v', 0xac, 0x02]
        );
    }

    #[test]
    fn records_round_trip_and_garbage_is_malformed() {
        let mut buf = [0u8; 256];
        let mut builder = RecordsBuilder::new(&mut buf);
        let set = Record::Set(Entry {
            key: b"ctx|id",
            value: b"session",
            ttl_ms: 300_000,
        });
        builder.push(&set).unwrap();
        builder.push(&Record::Delete { key: b"gone" }).unwrap();
        builder.push(&Record::Hello).unwrap();
        let pull = Record::PullRequest {
            id: 7,
            key: b"ctx|ticket",
            take: true,
        };
        let answer = Record::PullAnswer {
            id: 7,
            entry: Entry {
                key: b"ctx|ticket",
                value: b"session",
                ttl_ms: 1_000,
            },
        };
        builder.push(&pull).unwrap();
        builder.push(&answer).unwrap();
        builder.push(&Record::PullNone { id: 8 }).unwrap();
        let vouch = Record::Vouch {
            nonce: u64::MAX,
            sender: 9,
            since: 3,
        };
        builder.push(&Record::Challenge { nonce: 1 << 40 }).unwrap();
        builder.push(&vouch).unwrap();
        let ticket_key = Record::TicketKey {
            period: 1_234,
            secret: &[5; 32],
        };
        builder.push(&ticket_key).unwrap();
        let records = Records::parse(builder.records().as_bytes()).unwrap();
        assert_eq!(records.len(), 9);
        let mut iter = records.iter();
        assert_eq!(iter.next(), Some(set));
        assert_eq!(iter.next(), Some(Record::Delete { key: b"gone" }));
        assert_eq!(iter.next(), Some(Record::Hello));
        assert_eq!(iter.next(), Some(pull));
        assert_eq!(iter.next(), Some(answer));
        assert_eq!(iter.next(), Some(Record::PullNone { id: 8 }));
        assert_eq!(iter.next(), Some(Record::Challenge { nonce: 1 << 40 }));
        assert_eq!(iter.next(), Some(vouch));
        assert_eq!(iter.next(), Some(ticket_key));
        assert_eq!(iter.next(), None);

        assert_eq!(Records::parse(&[0x7F]), Err(crate::wire::Error::Malformed));
        let mut tiny = [0u8; 4];
        assert_eq!(
            RecordsBuilder::new(&mut tiny).push(&set),
            Err(crate::wire::Error::BufferTooSmall)
        );
    }
}
