//! The semantic datagram: parse a packet into it, emit it into a buffer.

use super::{ClusterKey, Error, Packet, Records, HEADER_LEN, TAG_LEN};

/// A datagram's meaning: who sent it, its sequence, and its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// The sending node's id for this run.
    pub sender: u64,
    /// The sender's datagram counter (the replay check's subject).
    pub sequence: u64,
    /// Number of the first record; the rest follow consecutively.
    pub first_record: u64,
    /// The records.
    pub records: Records<'a>,
}

impl<'a> Repr<'a> {
    /// Authenticates and decrypts `packet` with `key`, using `scratch` for
    /// the plaintext, and validates the body.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        key: &ClusterKey,
        scratch: &'a mut [u8],
    ) -> Result<Repr<'a>, Error> {
        let body = key.open(packet, scratch)?;
        Repr::decode(packet, body)
    }

    /// Validates the opened `body` of `packet`.
    pub(crate) fn decode<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        body: &'a [u8],
    ) -> Result<Repr<'a>, Error> {
        let (first_record, records) =
            postcard::take_from_bytes::<u64>(body).map_err(|_| Error::Malformed)?;
        Ok(Repr {
            sender: packet.sender(),
            sequence: packet.sequence(),
            first_record,
            records: Records::parse(records)?,
        })
    }

    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + varint_len(self.first_record) + self.records.as_bytes().len() + TAG_LEN
    }

    /// Writes the datagram into the front of `buf`, sealed with `key`, and
    /// returns its length.
    pub fn emit(&self, key: &ClusterKey, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let body = &mut buf[HEADER_LEN..len - TAG_LEN];
        let first = postcard::to_slice(&self.first_record, body)
            .map_err(|_| Error::BufferTooSmall)?
            .len();
        body[first..].copy_from_slice(self.records.as_bytes());
        let mut packet = Packet::new_unchecked(buf);
        packet.fill_header(key.id(), self.sender, self.sequence);
        key.seal(&mut packet)?;
        Ok(len)
    }
}

/// Bytes of a postcard varint.
fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use std::vec;

    use super::*;
    use crate::wire::{Entry, Record, RecordsBuilder, MIN_LEN};

    const SECRET: [u8; 32] = [7; 32];

    fn sample(buf: &mut [u8]) -> usize {
        let mut records = [0u8; 200];
        let mut builder = RecordsBuilder::new(&mut records);
        builder
            .push(&Record::Set(Entry {
                key: b"k",
                value: b"master secret",
                ttl_ms: 1000,
            }))
            .unwrap();
        let repr = Repr {
            sender: 42,
            sequence: 9,
            first_record: 300,
            records: builder.records(),
        };
        repr.emit(&ClusterKey::new(&SECRET), buf).unwrap()
    }

    #[test]
    fn emit_then_parse_round_trips_and_hides_the_value() {
        let mut buf = [0u8; 256];
        let len = sample(&mut buf);
        let datagram = &buf[..len];
        assert!(
            !datagram.windows(6).any(|w| w == b"master"),
            "value in clear"
        );
        let packet = Packet::new_checked(datagram).unwrap();
        let mut scratch = [0u8; 256];
        let repr = Repr::parse(&packet, &ClusterKey::new(&SECRET), &mut scratch).unwrap();
        assert_eq!(
            (repr.sender, repr.sequence, repr.first_record),
            (42, 9, 300)
        );
        assert_eq!(repr.buffer_len(), len);
        assert_eq!(
            repr.records.iter().next(),
            Some(Record::Set(Entry {
                key: b"k",
                value: b"master secret",
                ttl_ms: 1000
            }))
        );
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let mut buf = [0u8; 256];
        let len = sample(&mut buf);
        let key = ClusterKey::new(&SECRET);
        for bit in 0..len * 8 {
            let mut damaged = vec![0u8; len];
            damaged.copy_from_slice(&buf[..len]);
            damaged[bit / 8] ^= 1 << (bit % 8);
            let mut scratch = [0u8; 256];
            let outcome = Packet::new_checked(&damaged[..])
                .and_then(|packet| Repr::parse(&packet, &key, &mut scratch).map(|_| ()));
            assert!(outcome.is_err(), "bit {bit} flipped and still accepted");
        }
    }

    #[test]
    fn another_key_or_key_id_cannot_open() {
        let mut buf = [0u8; 256];
        let len = sample(&mut buf);
        let packet = Packet::new_checked(&buf[..len]).unwrap();
        let mut scratch = [0u8; 256];
        assert_eq!(
            Repr::parse(
                &packet,
                &ClusterKey::colliding(packet.key_id(), &SECRET),
                &mut scratch
            ),
            Err(Error::Authentication)
        );
        let other_id = ClusterKey::colliding(packet.key_id().wrapping_add(1), &SECRET);
        assert_eq!(
            Repr::parse(&packet, &other_id, &mut scratch),
            Err(Error::UnknownKey)
        );
        assert!(
            scratch.iter().all(|&b| b == 0),
            "no unauthenticated plaintext left"
        );
    }

    #[test]
    fn emit_refuses_a_small_buffer_and_varints_are_sized_right() {
        let mut small = [0u8; MIN_LEN];
        assert_eq!(sample_into(&mut small), Err(Error::BufferTooSmall));
        for value in [0u64, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = [0u8; 10];
            assert_eq!(
                postcard::to_slice(&value, &mut out).unwrap().len(),
                varint_len(value)
            );
        }
    }

    fn sample_into(buf: &mut [u8]) -> Result<usize, Error> {
        let repr = Repr {
            sender: 1,
            sequence: 1,
            first_record: 1,
            records: Records::parse(&[3]).unwrap(),
        };
        repr.emit(&ClusterKey::new(&SECRET), buf)
    }
}
