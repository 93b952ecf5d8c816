//! A cursor over TLS's big-endian, length-prefixed fields.
//!
//! Every read checks the bytes it needs against what remains of the
//! enclosing field and fails with that field's name instead of indexing
//! out of bounds, so no length on the wire is ever trusted.

use super::{Error, Field};

/// The unread part of one field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    /// What is being read, for errors.
    field: Field,
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(bytes: &'a [u8], field: Field) -> Reader<'a> {
        Reader { rest: bytes, field }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.rest.len() {
            return Err(Error::Truncated(self.field));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Result<u32, Error> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A field with a one-byte length: a reader over its content, which
    /// must lie within this one. `field` names the content.
    pub(crate) fn vec8(&mut self, field: Field) -> Result<Reader<'a>, Error> {
        let len = self.u8().map_err(|_| Error::Truncated(field))?;
        self.sub(usize::from(len), field)
    }

    /// A field with a two-byte length, as [`Reader::vec8`].
    pub(crate) fn vec16(&mut self, field: Field) -> Result<Reader<'a>, Error> {
        let len = self.u16().map_err(|_| Error::Truncated(field))?;
        self.sub(usize::from(len), field)
    }

    fn sub(&mut self, len: usize, field: Field) -> Result<Reader<'a>, Error> {
        let content = self.take(len).map_err(|_| Error::Truncated(field))?;
        Ok(Reader::new(content, field))
    }

    /// The rest of the field, all of it.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }

    /// Fails unless every byte of the field was read.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(self.field))
        }
    }

    /// Fails if the field has no content.
    pub(crate) fn non_empty(self) -> Result<Reader<'a>, Error> {
        if self.rest.is_empty() {
            Err(Error::Empty(self.field))
        } else {
            Ok(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end_of_their_field() {
        let bytes = [0x00, 0x03, 0xaa, 0xbb, 0xcc, 0x05, 0x01];
        let mut outer = Reader::new(&bytes, Field::Extensions);
        let mut inner = outer.vec16(Field::ServerName).unwrap();
        assert_eq!(inner.u16().unwrap(), 0xaabb);
        assert_eq!(inner.u16(), Err(Error::Truncated(Field::ServerName)));
        // The failed read took nothing.
        assert_eq!(inner.u8().unwrap(), 0xcc);
        inner.finish().unwrap();
        // A length of 5 with one byte left.
        assert_eq!(
            outer.vec8(Field::SupportedVersions).err(),
            Some(Error::Truncated(Field::SupportedVersions))
        );
        assert_eq!(outer.finish(), Err(Error::TrailingBytes(Field::Extensions)));
        assert_eq!(
            Reader::new(&[0], Field::CipherSuites)
                .vec8(Field::CompressionMethods)
                .unwrap()
                .non_empty()
                .err(),
            Some(Error::Empty(Field::CompressionMethods))
        );
        let mut numbers = Reader::new(&[1, 2, 3, 4, 5, 6, 7], Field::PskIdentities);
        assert_eq!(numbers.u24().unwrap(), 0x010203);
        assert_eq!(numbers.u32().unwrap(), 0x04050607);
        assert!(numbers.is_empty());
    }
}
