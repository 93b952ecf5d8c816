//! The ClientHello message out of the TLS records that carry it.
//!
//! A client may split its ClientHello over any number of handshake
//! records (RFC 8446 5.1), each of which may arrive in any number of TCP
//! segments. [`reassemble`] is called again with everything received so
//! far until it has the whole message; it keeps no state between calls, and
//! it refuses what cannot become a ClientHello as soon as the offending byte
//! has arrived (the first byte of plain HTTP, say), so that junk is not
//! waited for.

use super::reader::Reader;
use super::{Error, Field, CONTENT_TYPE_HANDSHAKE, HANDSHAKE_CLIENT_HELLO, HANDSHAKE_HEADER_LEN};

/// Bytes of a record header: content type, legacy version, length.
pub const RECORD_HEADER_LEN: usize = 5;
/// The longest record content (RFC 8446 5.1: 2^14 bytes).
pub const MAX_FRAGMENT_LEN: usize = 1 << 14;

/// How far the ClientHello has arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly<'a> {
    /// Everything so far is a valid start; more bytes are needed.
    Incomplete,
    /// The whole message, its 4-byte header included, in one record:
    /// returned in place.
    Whole(&'a [u8]),
    /// The whole message has arrived over several records: [`join`] copies
    /// its `len` bytes into a buffer.
    Fragmented {
        /// The message's length, its header included.
        len: usize,
    },
}

/// Finds the ClientHello in `records`, the bytes a client sent first, and
/// checks that it is not longer than `max_len` bytes (header included) as
/// soon as its header says how long it is. Bytes after the message are not
/// looked at.
pub fn reassemble(records: &[u8], max_len: usize) -> Result<Reassembly<'_>, Error> {
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    // Bytes of the message seen so far, header included.
    let mut seen = 0usize;
    let mut total = None;
    let mut fragments = Fragments { rest: records };
    let mut first = true;
    while let Some(fragment) = fragments.next()? {
        let bytes = fragment.bytes;
        if seen < HANDSHAKE_HEADER_LEN {
            let n = bytes.len().min(HANDSHAKE_HEADER_LEN - seen);
            header[seen..seen + n].copy_from_slice(&bytes[..n]);
            // The type is known from the first byte: refuse at once.
            if seen == 0 && n > 0 && bytes[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(Error::NotClientHello(bytes[0]));
            }
        }
        seen += bytes.len();
        if total.is_none() && seen >= HANDSHAKE_HEADER_LEN {
            let mut reader = Reader::new(&header[1..], Field::Handshake);
            let len = HANDSHAKE_HEADER_LEN + reader.u24()? as usize;
            if len > max_len {
                return Err(Error::Oversized { len, max: max_len });
            }
            total = Some(len);
        }
        if let Some(len) = total.filter(|&len| seen >= len) {
            return Ok(if first {
                Reassembly::Whole(&bytes[..len])
            } else {
                Reassembly::Fragmented { len }
            });
        }
        if !fragment.whole {
            break;
        }
        first = false;
    }
    Ok(Reassembly::Incomplete)
}

/// Copies the message that [`reassemble`] found [`Reassembly::Fragmented`]
/// in `records` into `out`, which must be its `len` bytes long, and returns
/// it.
pub fn join<'a>(records: &[u8], out: &'a mut [u8]) -> Result<&'a [u8], Error> {
    let mut fragments = Fragments { rest: records };
    let mut filled = 0;
    while filled < out.len() {
        let Some(fragment) = fragments.next()? else {
            return Err(Error::Truncated(Field::Handshake));
        };
        let n = fragment.bytes.len().min(out.len() - filled);
        out[filled..filled + n].copy_from_slice(&fragment.bytes[..n]);
        filled += n;
    }
    Ok(out)
}

/// One record's content, or as much of it as has arrived.
struct Fragment<'a> {
    bytes: &'a [u8],
    /// Whether the whole record has arrived.
    whole: bool,
}

/// Walks handshake records, checking each header as far as it has arrived.
struct Fragments<'a> {
    rest: &'a [u8],
}

impl<'a> Fragments<'a> {
    fn next(&mut self) -> Result<Option<Fragment<'a>>, Error> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let header = &self.rest[..self.rest.len().min(RECORD_HEADER_LEN)];
        if header[0] != CONTENT_TYPE_HANDSHAKE {
            return Err(Error::NotHandshakeRecord(header[0]));
        }
        if let Some(&major) = header.get(1) {
            if major != 3 {
                return Err(Error::RecordVersion(major));
            }
        }
        if header.len() < RECORD_HEADER_LEN {
            self.rest = &[];
            return Ok(Some(Fragment {
                bytes: &[],
                whole: false,
            }));
        }
        let len = u16::from_be_bytes([header[3], header[4]]);
        if len == 0 {
            return Err(Error::EmptyRecord);
        }
        if usize::from(len) > MAX_FRAGMENT_LEN {
            return Err(Error::RecordOverflow(len));
        }
        let content = &self.rest[RECORD_HEADER_LEN..];
        let len = usize::from(len);
        let fragment = if content.len() >= len {
            self.rest = &content[len..];
            Fragment {
                bytes: &content[..len],
                whole: true,
            }
        } else {
            self.rest = &[];
            Fragment {
                bytes: content,
                whole: false,
            }
        };
        Ok(Some(fragment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake ClientHello of `body` bytes, header included.
    fn message(body: usize) -> std::vec::Vec<u8> {
        let mut m = std::vec![HANDSHAKE_CLIENT_HELLO];
        m.extend_from_slice(&(body as u32).to_be_bytes()[1..]);
        m.extend((0..body).map(|i| i as u8));
        m
    }

    /// `message` cut into records of at most `size` bytes.
    fn records(message: &[u8], size: usize) -> std::vec::Vec<u8> {
        let mut out = std::vec::Vec::new();
        for chunk in message.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn one_record_is_returned_in_place() {
        let m = message(300);
        let mut input = records(&m, 16384);
        // What follows (early data, say) is not looked at.
        input.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
        match reassemble(&input, 512).unwrap() {
            Reassembly::Whole(message) => {
                assert_eq!(message, &m[..]);
                assert_eq!(message.as_ptr(), input[5..].as_ptr(), "not copied");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Reassembles `input` completely, joining fragments as a caller does.
    fn whole(input: &[u8], max_len: usize) -> Result<std::vec::Vec<u8>, Error> {
        match reassemble(input, max_len)? {
            Reassembly::Whole(message) => Ok(message.to_vec()),
            Reassembly::Fragmented { len } => {
                let mut out = std::vec![0; len];
                Ok(join(input, &mut out)?.to_vec())
            }
            Reassembly::Incomplete => Err(Error::Truncated(Field::Handshake)),
        }
    }

    #[test]
    fn fragments_are_joined_whatever_their_size_and_arrival() {
        let m = message(700);
        for size in [1, 2, 3, 4, 5, 100, 703, 704] {
            let input = records(&m, size);
            for cut in 0..input.len() {
                assert_eq!(
                    reassemble(&input[..cut], 1024),
                    Ok(Reassembly::Incomplete),
                    "records of {size}, cut at {cut}"
                );
            }
            let expected = if size >= m.len() {
                Reassembly::Whole(&m[..])
            } else {
                Reassembly::Fragmented { len: m.len() }
            };
            assert_eq!(reassemble(&input, 1024), Ok(expected), "records of {size}");
            assert_eq!(whole(&input, 1024).unwrap(), m, "records of {size}");
        }
    }

    #[test]
    fn a_message_is_whole_before_its_record_is() {
        // One record holding the ClientHello and the start of something
        // else: the message is complete before the record is.
        let m = message(100);
        let mut content = m.clone();
        content.extend_from_slice(&[2, 0, 0, 50]);
        let mut input = std::vec![22, 3, 3];
        input.extend_from_slice(&(content.len() as u16 + 50).to_be_bytes());
        input.extend_from_slice(&content);
        assert_eq!(reassemble(&input, 1024), Ok(Reassembly::Whole(&m[..])));
        // Fragmented, and the last fragment cut short after the message.
        let mut input = records(&m[..60], 16384);
        input.extend_from_slice(&[22, 3, 3, 0, 200]);
        input.extend_from_slice(&m[60..]);
        assert_eq!(
            reassemble(&input, 1024),
            Ok(Reassembly::Fragmented { len: m.len() })
        );
        assert_eq!(whole(&input, 1024).unwrap(), m);
    }

    #[test]
    fn the_limit_is_checked_on_the_header_alone() {
        let m = message(1020);
        let input = records(&m, 100);
        assert_eq!(whole(&input, 1024).unwrap(), m);
        let oversized = Err(Error::Oversized {
            len: 1024,
            max: 1023,
        });
        // Refused with the rest still to come.
        assert_eq!(reassemble(&input[..9], 1023), oversized);
        assert_eq!(reassemble(&records(&m, 16384), 1023), oversized);
        // The header itself in pieces.
        assert_eq!(reassemble(&records(&m[..4], 1), 1023), oversized);
        // The largest length a header can give.
        assert_eq!(
            reassemble(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff], 1023),
            Err(Error::Oversized {
                len: 0xff_ffff + 4,
                max: 1023
            })
        );
    }

    #[test]
    fn what_cannot_be_a_client_hello_is_refused_on_arrival() {
        for (input, error) in [
            (&b"GET / HTTP/1.1\r\n"[..], Error::NotHandshakeRecord(b'G')),
            (&b"G"[..], Error::NotHandshakeRecord(b'G')),
            // SSL 2.0's ClientHello.
            (
                &[0x80, 0x2e, 0x01, 0x00, 0x02][..],
                Error::NotHandshakeRecord(0x80),
            ),
            (&[22, 2][..], Error::RecordVersion(2)),
            (&[22, 3, 1, 0, 0][..], Error::EmptyRecord),
            (&[22, 3, 1, 0x40, 0x01][..], Error::RecordOverflow(0x4001)),
            // A ServerHello.
            (&[22, 3, 3, 0, 10, 2][..], Error::NotClientHello(2)),
            // An alert between two fragments.
            (
                &[22, 3, 1, 0, 2, 1, 0, 21, 3, 3, 0, 2, 2, 40][..],
                Error::NotHandshakeRecord(21),
            ),
            // An empty record between two fragments.
            (
                &[22, 3, 1, 0, 2, 1, 0, 22, 3, 3, 0, 0][..],
                Error::EmptyRecord,
            ),
        ] {
            assert_eq!(reassemble(input, 64), Err(error), "{input:?}");
        }
        // A record header cut short is not an error yet.
        for input in [&[][..], &[22], &[22, 3], &[22, 3, 1, 0]] {
            assert_eq!(reassemble(input, 64), Ok(Reassembly::Incomplete));
        }
        // Joining records that do not hold the message.
        let mut out = [0u8; 8];
        assert_eq!(
            join(&[22, 3, 1, 0, 2, 1, 0], &mut out),
            Err(Error::Truncated(Field::Handshake))
        );
    }
}
