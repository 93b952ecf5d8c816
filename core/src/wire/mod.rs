//! The sync datagram: how routers tell each other about sessions.
//!
//! Layers, from the bytes up (as in smoltcp):
//!
//! * [`Packet`]: a zero-copy view over a buffer with checked field
//!   accessors for the plaintext header. [`Packet::new_checked`] guarantees
//!   every accessor stays in bounds.
//! * [`ClusterKey`]: XChaCha20-Poly1305 under the 32-byte cluster key. The
//!   header is authenticated, the body encrypted: session values carry TLS
//!   master secrets and never travel in clear. A [`Keyring`] holds the
//!   keys of a rollover: the first seals, all open.
//! * [`Record`]: one replicated change (`Set`, `Delete`) or control message,
//!   encoded with postcard inside the sealed body.
//! * [`Repr`]: the semantic datagram. [`Repr::parse`] opens and validates a
//!   packet; [`Repr::emit`] writes and seals one into a caller's buffer.
//!
//! ```text
//!  0      4   5   6          14         22                    len-16   len
//!  +------+---+---+----------+----------+-----------------------+-------+
//!  | CSYN |ver|kid| sender   | sequence | sealed body (postcard) |  tag  |
//!  +------+---+---+----------+----------+-----------------------+-------+
//!  \_____________ header: authenticated, in clear _____________/
//! ```
//!
//! `sender` is a random 64-bit id a node picks each time it starts;
//! `sequence` counts that sender's datagrams from 1. Together they form the
//! nonce, so a nonce is never reused under one key. `kid` is one byte of
//! SHA-256 over a label and the sealing key, so that the receiver knows
//! which of its keys to try. The body is
//! `first_record: varint` followed by records, numbered from `first_record`;
//! a `Set` carries the entry's *remaining* lifetime so that peers need not
//! agree on the time.
//!
//! Decoding never panics and never reads out of bounds, whatever the bytes:
//! see the fuzz targets in `fuzz/`.

mod keyring;
mod packet;
mod record;
mod repr;
mod seal;

pub use keyring::{KeyUse, Keyring, KeyringError, MAX_KEYS};
pub use packet::Packet;
pub use record::{Entry, Record, Records, RecordsBuilder};
pub use repr::Repr;
pub use seal::{ClusterKey, Fingerprint};

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"CSYN";
/// The wire format version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes of plaintext header.
pub const HEADER_LEN: usize = 22;
/// Bytes of authentication tag at the end.
pub const TAG_LEN: usize = 16;
/// Smallest possible datagram: a header, an empty body and a tag.
pub const MIN_LEN: usize = HEADER_LEN + TAG_LEN;
/// Largest datagram a UDP socket can carry (IPv4).
pub const MAX_LEN: usize = 65_507;
/// Datagram size the sync node aims for by default: small enough never to
/// be fragmented on an Ethernet path, even over a tunnel.
pub const DEFAULT_DATAGRAM_LEN: usize = 1400;

/// Why a datagram was not accepted, or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// Shorter than a header and a tag.
    Truncated,
    /// Longer than the receiver accepts.
    Oversized,
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// Speaks another wire version.
    UnsupportedVersion,
    /// Sealed under a key id this node does not hold.
    UnknownKey,
    /// The tag does not match: forged, damaged, or sealed with another key.
    Authentication,
    /// Authentic, but the body does not decode.
    Malformed,
    /// The output buffer is too small for what was to be written.
    BufferTooSmall,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "datagram shorter than header and tag",
            Error::Oversized => "datagram larger than the accepted maximum",
            Error::BadMagic => "datagram does not start with the cachet sync magic",
            Error::UnsupportedVersion => "unsupported sync wire version",
            Error::UnknownKey => "datagram sealed under an unknown key id",
            Error::Authentication => "datagram failed authentication",
            Error::Malformed => "authentic datagram with an undecodable body",
            Error::BufferTooSmall => "output buffer too small",
        })
    }
}

impl Error {
    /// A short name for the error, as in counter names and metric labels
    /// (`rejected_<name>`, `reason="<name>"`). A receiver cannot tell a
    /// buffer too small for the body from a body that does not decode, so
    /// both are `malformed`.
    pub const fn name(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::Oversized => "oversize",
            Error::BadMagic => "magic",
            Error::UnsupportedVersion => "version",
            Error::UnknownKey => "unknown_key",
            Error::Authentication => "authentication",
            Error::Malformed | Error::BufferTooSmall => "malformed",
        }
    }
}

impl core::error::Error for Error {}
