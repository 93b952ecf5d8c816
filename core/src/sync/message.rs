//! Addressed messages: datagrams meant for some nodes only.
//!
//! Replicated changes go to every peer ([`super::Node::poll_transmit`]). A
//! pull request goes to the peers the caller counts as live, and its answer
//! to the asker alone, so these travel apart as a [`Message`] with a
//! [`Destination`]. A node holds at most one message under construction: a
//! pull it starts, or the answers to the pull requests of the datagram it
//! just handled. The caller takes it with [`super::Node::poll_message`]
//! right after the call that made it, once per copy.

use crate::wire::{Error, Record};

/// Where a [`Message`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Destination {
    /// Every peer the caller asked the pull of (it said how many).
    Peers,
    /// The node with this sender id, at the address the datagram just
    /// handled came from.
    Sender(u64),
}

/// A sealed datagram in the caller's buffer, and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Message {
    /// Where to send it.
    pub destination: Destination,
    /// Its length in the buffer.
    pub len: usize,
}

/// The records of a message being built, with the record number of the
/// first: every copy carries the same numbers, so a receiver acts once.
#[derive(Debug)]
pub(super) struct Outgoing<const MTU: usize> {
    pub(super) destination: Destination,
    pub(super) first_record: u64,
    pub(super) count: usize,
    pub(super) copies_left: u8,
    len: usize,
    records: [u8; MTU],
}

impl<const MTU: usize> Outgoing<MTU> {
    pub(super) fn new() -> Self {
        Outgoing {
            destination: Destination::Peers,
            first_record: 0,
            count: 0,
            copies_left: 0,
            len: 0,
            records: [0; MTU],
        }
    }

    /// Whether a message is waiting to be taken.
    pub(super) fn is_waiting(&self) -> bool {
        self.copies_left > 0
    }

    /// Starts a message for `destination`, numbered from `first_record`.
    pub(super) fn open(&mut self, destination: Destination, first_record: u64, copies: u8) {
        self.destination = destination;
        self.first_record = first_record;
        self.count = 0;
        self.len = 0;
        self.copies_left = copies.max(1);
    }

    /// Appends `record` if it fits in `room` bytes of records.
    pub(super) fn push(&mut self, record: &Record<'_>, room: usize) -> Result<(), Error> {
        let end = room.min(MTU);
        if self.len >= end {
            return Err(Error::BufferTooSmall);
        }
        let written = postcard::to_slice(record, &mut self.records[self.len..end])
            .map_err(|_| Error::BufferTooSmall)?
            .len();
        self.len += written;
        self.count += 1;
        Ok(())
    }

    /// Whether a record for `destination` may join: no message waits, or
    /// the one waiting goes there too (else the caller did not take it).
    pub(super) fn admits(&self, destination: Destination) -> bool {
        !self.is_waiting() || self.destination == destination
    }

    /// Appends `record` to the message for `destination`, opening one
    /// numbered from `next_record` (with `copies` copies) if none waits,
    /// and takes its record number. `false` when another destination's
    /// message waits or the record does not fit in `room` bytes.
    pub(super) fn append(
        &mut self,
        destination: Destination,
        (next_record, copies, room): (&mut u64, u8, usize),
        record: &Record<'_>,
    ) -> bool {
        if !self.admits(destination) {
            return false;
        }
        if !self.is_waiting() {
            self.open(destination, *next_record, copies);
        }
        if self.push(record, room).is_err() {
            if self.count == 0 {
                self.copies_left = 0;
            }
            return false;
        }
        *next_record += 1;
        true
    }

    /// The encoded records.
    pub(super) fn records(&self) -> crate::wire::Records<'_> {
        crate::wire::Records::from_built(&self.records[..self.len], self.count)
    }
}
