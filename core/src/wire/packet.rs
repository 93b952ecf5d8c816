//! The zero-copy datagram view.

use super::{Error, HEADER_LEN, MAGIC, MAX_LEN, MIN_LEN, TAG_LEN, VERSION};
use crate::bytes::{read_u64, write_u64};

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const KEY_ID: usize = 5;
    pub const SENDER: usize = 6;
    pub const SEQUENCE: usize = 14;
}

/// A datagram in a buffer, read and written in place.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors may panic on a short
    /// buffer; use [`Packet::new_checked`] on anything from the network.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking its length, magic and version, so every
    /// accessor stays in bounds.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// Checks length, magic and version.
    pub fn check(&self) -> Result<(), Error> {
        let data = self.buffer.as_ref();
        if data.len() < MIN_LEN {
            return Err(Error::Truncated);
        }
        if data.len() > MAX_LEN {
            return Err(Error::Oversized);
        }
        if data[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        if data[field::VERSION] != VERSION {
            return Err(Error::UnsupportedVersion);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Wire format version.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Id of the cluster key that sealed the datagram.
    pub fn key_id(&self) -> u8 {
        self.buffer.as_ref()[field::KEY_ID]
    }

    /// The sending node's id for this run.
    pub fn sender(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::SENDER)
    }

    /// The sender's datagram counter.
    pub fn sequence(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::SEQUENCE)
    }

    /// The plaintext header, authenticated as associated data.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The encrypted body.
    pub fn sealed_body(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[HEADER_LEN..data.len() - TAG_LEN]
    }

    /// The authentication tag.
    pub fn tag(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[data.len() - TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes magic, version, key id, sender and sequence.
    pub fn fill_header(&mut self, key_id: u8, sender: u64, sequence: u64) {
        let data = self.buffer.as_mut();
        data[field::MAGIC].copy_from_slice(&MAGIC);
        data[field::VERSION] = VERSION;
        data[field::KEY_ID] = key_id;
        write_u64(data, field::SENDER, sender);
        write_u64(data, field::SEQUENCE, sequence);
    }

    /// Overwrites the wire format version (a test of a receiver's checks
    /// writes one it does not speak).
    pub fn set_version(&mut self, version: u8) {
        self.buffer.as_mut()[field::VERSION] = version;
    }

    /// Overwrites the sender's datagram counter (the header is
    /// authenticated: a changed sequence fails to open).
    pub fn set_sequence(&mut self, sequence: u64) {
        write_u64(self.buffer.as_mut(), field::SEQUENCE, sequence);
    }

    /// Header, body and tag, split for sealing in place.
    pub(crate) fn parts_mut(&mut self) -> (&[u8], &mut [u8], &mut [u8]) {
        let data = self.buffer.as_mut();
        let len = data.len();
        let (header, rest) = data.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(len - HEADER_LEN - TAG_LEN);
        (header, body, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_reject_short_foreign_and_future_datagrams() {
        assert_eq!(
            Packet::new_checked(&[0u8; MIN_LEN - 1][..]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&[0u8; MIN_LEN][..]).err(),
            Some(Error::BadMagic)
        );
        let mut buf = [0u8; MIN_LEN];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.fill_header(3, 0xAABB, 7);
        let buf = packet.into_inner();
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (packet.key_id(), packet.sender(), packet.sequence()),
            (3, 0xAABB, 7)
        );
        assert_eq!(packet.sealed_body().len(), 0);
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_sequence(8);
        assert_eq!(packet.sequence(), 8);
        packet.set_version(VERSION + 1);
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::UnsupportedVersion)
        );
    }
}
