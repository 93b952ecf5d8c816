//! What a TLS client offers in its ClientHello, read before the TLS
//! library decides anything.
//!
//! A router that shares sessions across a cluster has to know which session
//! a client wants to resume *before* its TLS library looks the session up,
//! so that it can fetch one it lacks from a peer. This module extracts
//! exactly that from the first flight of a connection, and nothing more:
//!
//! * [`reassemble`] finds the ClientHello message in the bytes a client
//!   sent, TLS records of content type handshake (RFC 8446 5.1), possibly
//!   fragmented over many records, telling "need more bytes"
//!   ([`Reassembly::Incomplete`]) from malformed or oversized input (an
//!   [`Error`]). A message within one record, as nearly every client sends
//!   it, is returned in place; [`join`] copies a fragmented one into a
//!   buffer the caller provides, of the length [`reassemble`] reported.
//! * [`ClientHello`] is a zero-copy view of that message in the style of
//!   smoltcp's packets: [`ClientHello::new_checked`] validates the framing of
//!   every field and of every extension, and the contents of the extensions
//!   read here, so that the accessors never fail: the SNI host name
//!   ([`ClientHello::server_name`]), the `legacy_session_id` a TLS 1.2
//!   client resumes with ([`ClientHello::session_id`]), whether TLS 1.3 is
//!   offered in `supported_versions` ([`ClientHello::offers_tls13`]), and the
//!   identities of the `pre_shared_key` extension a TLS 1.3 client resumes
//!   with ([`ClientHello::psk_identities`], RFC 8446 4.2.11). Each of
//!   these walks the extensions; [`ClientHello::offered`] reads them all in
//!   one walk, for a caller that wants several (a router at every
//!   connection).
//!
//! Lengths on the wire are never trusted: every one is checked against what
//! remains of the field that encloses it, iteration is bounded by the bytes
//! it walks (each step consumes some), and other extensions are skipped by
//! their length without being looked into. The parser never panics,
//! whatever the bytes (see the exhaustive truncation and bit-flip tests, the
//! property tests and the `client_hello` fuzz target).
//!
//! It refuses what RFC 8446 and RFC 6066 forbid in the parts it reads, and
//! otherwise follows what rustls 0.23 accepts, so that no client rustls
//! would serve is turned away by this earlier look: a duplicate extension
//! among those read here, a `pre_shared_key` with no identity or with not
//! as many binders as identities, two host names in `server_name`. Beyond
//! the RFCs it refuses more than [`MAX_PSK_IDENTITIES`] PSK identities
//! (real clients offer one or two), so that whoever acts on the offer does a
//! bounded amount of work per connection. Whether `pre_shared_key` is the
//! last extension, as RFC 8446 requires, is reported
//! ([`ClientHello::pre_shared_key_is_last`]) for the caller to decide.

mod client_hello;
mod reader;
mod record;
#[cfg(test)]
mod tests;

pub use client_hello::{ClientHello, Extension, Extensions, Offered, PskIdentities, PskIdentity};
pub use record::{join, reassemble, Reassembly, MAX_FRAGMENT_LEN, RECORD_HEADER_LEN};

/// The record content type of handshake messages.
pub const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// The handshake message type of a ClientHello.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Bytes of a handshake message's header: type and 24-bit length.
pub const HANDSHAKE_HEADER_LEN: usize = 4;
/// The longest `legacy_session_id` (RFC 8446 4.1.2, RFC 5246 7.4.1.2).
pub const MAX_SESSION_ID_LEN: usize = 32;
/// The most PSK identities accepted in one ClientHello.
pub const MAX_PSK_IDENTITIES: usize = 16;
/// `supported_versions`' code for TLS 1.3.
pub const TLS13: u16 = 0x0304;

/// Extension types read here (IANA "TLS ExtensionType Values").
pub mod extension {
    /// `server_name` (RFC 6066 3).
    pub const SERVER_NAME: u16 = 0;
    /// `pre_shared_key` (RFC 8446 4.2.11).
    pub const PRE_SHARED_KEY: u16 = 41;
    /// `session_ticket` (RFC 5077): a TLS 1.2 client's ticket.
    pub const SESSION_TICKET: u16 = 35;
    /// `supported_versions` (RFC 8446 4.2.1).
    pub const SUPPORTED_VERSIONS: u16 = 43;
}

/// The part of a ClientHello an [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Field {
    /// The handshake message as a whole (its 24-bit length).
    Handshake,
    /// `legacy_version` and `random`.
    Fixed,
    /// `legacy_session_id`.
    SessionId,
    /// `cipher_suites`.
    CipherSuites,
    /// `legacy_compression_methods`.
    CompressionMethods,
    /// The extensions block.
    Extensions,
    /// One extension's type, length and data.
    Extension,
    /// The `server_name` extension's list of names.
    ServerName,
    /// A `host_name` in `server_name`.
    HostName,
    /// The `supported_versions` extension's list.
    SupportedVersions,
    /// The `pre_shared_key` extension.
    PreSharedKey,
    /// The identities of `pre_shared_key`.
    PskIdentities,
    /// One identity of `pre_shared_key`.
    PskIdentity,
    /// The binders of `pre_shared_key`.
    PskBinders,
    /// One binder of `pre_shared_key`.
    PskBinder,
}

impl Field {
    /// The field as the protocol's specifications name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Handshake => "the handshake message",
            Field::Fixed => "legacy_version and random",
            Field::SessionId => "legacy_session_id",
            Field::CipherSuites => "cipher_suites",
            Field::CompressionMethods => "legacy_compression_methods",
            Field::Extensions => "the extensions block",
            Field::Extension => "an extension",
            Field::ServerName => "the server_name extension",
            Field::HostName => "a host_name in server_name",
            Field::SupportedVersions => "the supported_versions extension",
            Field::PreSharedKey => "the pre_shared_key extension",
            Field::PskIdentities => "the identities of pre_shared_key",
            Field::PskIdentity => "a pre_shared_key identity",
            Field::PskBinders => "the binders of pre_shared_key",
            Field::PskBinder => "a pre_shared_key binder",
        }
    }
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the bytes are not an acceptable ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// A record of this content type where a handshake record must be: not
    /// TLS at all (plain HTTP, a scanner), or a record of another type in
    /// the middle of the ClientHello (RFC 8446 5.1 forbids interleaving).
    NotHandshakeRecord(u8),
    /// A record whose `legacy_record_version` does not start with 3: an
    /// SSL 2.0 ClientHello, or not TLS.
    RecordVersion(u8),
    /// A handshake record with no content (RFC 8446 5.1 forbids them).
    EmptyRecord,
    /// A record longer than 2^14 bytes (`record_overflow`).
    RecordOverflow(u16),
    /// The first handshake message is of this type, not a ClientHello.
    NotClientHello(u8),
    /// The ClientHello (`len` bytes, header included) is longer than the
    /// `max` accepted.
    Oversized {
        /// The message's length, from its header.
        len: usize,
        /// The largest length accepted: the caller's buffer.
        max: usize,
    },
    /// A length runs past the end of the field that encloses it.
    Truncated(Field),
    /// A field has bytes left over after its content.
    TrailingBytes(Field),
    /// A field is empty where the protocol requires content.
    Empty(Field),
    /// A field whose content is made of 16-bit values has an odd length.
    OddLength(Field),
    /// `legacy_session_id` is longer than 32 bytes.
    SessionIdTooLong(u8),
    /// An extension read here appears twice (RFC 8446 4.2 forbids it).
    DuplicateExtension(u16),
    /// `server_name` names two host names (RFC 6066 3 forbids it).
    DuplicateHostName,
    /// More than [`MAX_PSK_IDENTITIES`] PSK identities.
    TooManyPskIdentities,
    /// `pre_shared_key` has not as many binders as identities.
    PskBinderCount {
        /// Identities offered.
        identities: u16,
        /// Binders given.
        binders: u16,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::NotHandshakeRecord(kind) => write!(
                f,
                "a TLS record of content type {kind} where a handshake record (22) must be"
            ),
            Error::RecordVersion(major) => write!(
                f,
                "a record version with major byte {major:#04x}, not 3 (SSL 2.0 or not TLS)"
            ),
            Error::EmptyRecord => f.write_str("an empty handshake record"),
            Error::RecordOverflow(len) => {
                write!(f, "a record of {len} bytes, over the limit of 16384")
            }
            Error::NotClientHello(kind) => write!(
                f,
                "the first handshake message is of type {kind}, not a ClientHello (1)"
            ),
            Error::Oversized { len, max } => write!(
                f,
                "a ClientHello of {len} bytes, more than the {max} accepted"
            ),
            Error::Truncated(field) => write!(f, "{field} runs past the end of its enclosing data"),
            Error::TrailingBytes(field) => write!(f, "{field} has bytes after its content"),
            Error::Empty(field) => write!(f, "{field} is empty"),
            Error::OddLength(field) => write!(f, "{field} has an odd length"),
            Error::SessionIdTooLong(len) => {
                write!(f, "a legacy_session_id of {len} bytes, more than 32")
            }
            Error::DuplicateExtension(kind) => write!(f, "extension {kind} appears twice"),
            Error::DuplicateHostName => f.write_str("server_name holds two host names"),
            Error::TooManyPskIdentities => write!(
                f,
                "pre_shared_key offers more than {MAX_PSK_IDENTITIES} identities"
            ),
            Error::PskBinderCount {
                identities,
                binders,
            } => write!(
                f,
                "pre_shared_key offers {identities} identities with {binders} binders"
            ),
        }
    }
}

impl core::error::Error for Error {}

impl Error {
    /// The TLS alert a server sends for it (RFC 8446 6.2): what rustls
    /// would send for the same input.
    pub fn alert(&self) -> u8 {
        /// Alert descriptions (RFC 8446 6).
        const UNEXPECTED_MESSAGE: u8 = 10;
        const RECORD_OVERFLOW: u8 = 22;
        const ILLEGAL_PARAMETER: u8 = 47;
        const DECODE_ERROR: u8 = 50;
        match self {
            Error::NotHandshakeRecord(_) | Error::NotClientHello(_) => UNEXPECTED_MESSAGE,
            Error::RecordOverflow(_) => RECORD_OVERFLOW,
            Error::DuplicateExtension(_)
            | Error::DuplicateHostName
            | Error::PskBinderCount { .. } => ILLEGAL_PARAMETER,
            _ => DECODE_ERROR,
        }
    }
}
