//! How a TLS session is keyed in the shared cache, and what the key says
//! about who may hold it.
//!
//! ```text
//!  0      1                       16                          16 + id
//!  +------+-----------------------+---------------------------+
//!  | kind | context digest (15 B) | rustls id (32 B: session  |
//!  |      |                       | id or ticket)             |
//!  +------+-----------------------+---------------------------+
//! ```
//!
//! The context digest (SHA-256 of the session context, cut) keeps a
//! session made under one certificate or SNI name from ever being found
//! under another. The kind separates two policies:
//!
//! * [`Kind::Session`], a TLS 1.2 session id: resumable any number of times
//!   until it expires, so it is pushed to every peer, handed to restarting
//!   peers, and pulled by a peer that lacks it.
//! * [`Kind::Ticket`], a TLS 1.3 ticket: single use (RFC 8446 §8.1). It
//!   lives only in the cache of the router that issued it, which is its one
//!   authority: a resumption anywhere takes it from there, atomically (a
//!   local take, or a peer's pull with `take`), so it resumes at most once
//!   in the cluster however many routers it is offered to at the same
//!   instant. Never pushed, never in a bootstrap answer. If its issuer is
//!   gone, the client gets a full handshake: the safe answer.

/// Bytes of context digest after the kind byte.
pub const CONTEXT_DIGEST_LEN: usize = 15;
/// Bytes before the rustls id.
pub const PREFIX_LEN: usize = 1 + CONTEXT_DIGEST_LEN;

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TLS 1.2 session id.
    Session,
    /// A TLS 1.3 ticket.
    Ticket,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Session => b'S',
            Kind::Ticket => b'T',
        }
    }

    /// The kind of a whole cache key, if it is one of ours.
    pub fn of(key: &[u8]) -> Option<Kind> {
        match key.first() {
            Some(b'S') => Some(Kind::Session),
            Some(b'T') => Some(Kind::Ticket),
            _ => None,
        }
    }

    /// Whether entries of this kind travel to peers (pushes, bootstrap).
    pub fn is_replicated(self) -> bool {
        self == Kind::Session
    }

    /// Whether resuming removes the entry (so a pull must take it).
    pub fn is_single_use(self) -> bool {
        self == Kind::Ticket
    }
}

/// The key prefix of one session context, for both kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix([u8; CONTEXT_DIGEST_LEN]);

impl Prefix {
    /// The prefix of the session context `context`.
    pub fn of_context(context: &[u8]) -> Prefix {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, context);
        let mut prefix = [0u8; CONTEXT_DIGEST_LEN];
        prefix.copy_from_slice(&digest.as_ref()[..CONTEXT_DIGEST_LEN]);
        Prefix(prefix)
    }

    /// Calls `f` with `kind || prefix || id` on the stack, cut to `max`
    /// bytes (a longer key is refused by the cache anyway, which counts it).
    pub fn with_key<R, const MAX: usize>(
        &self,
        kind: Kind,
        id: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        let mut full = [0u8; MAX];
        let len = (PREFIX_LEN + id.len()).min(MAX);
        full[0] = kind.byte();
        full[1..PREFIX_LEN].copy_from_slice(&self.0);
        full[PREFIX_LEN..len].copy_from_slice(&id[..len - PREFIX_LEN]);
        f(&full[..len])
    }
}

/// The version a rustls `ServerSessionValue` was made under, read from its
/// encoding: an optional SNI name (`0`, or `1` and a u8-prefixed name),
/// then the protocol version as a big-endian u16. rustls tells its session
/// store nothing else about a `put`, and TLS 1.2 ids and TLS 1.3 tickets
/// are both 32 random bytes. A unit test holds this to rustls' real
/// encoding, so a rustls upgrade that changes it fails the build's tests.
pub fn rustls_session_version(value: &[u8]) -> Option<u16> {
    let at = match *value.first()? {
        0 => 1,
        1 => 2 + usize::from(*value.get(1)?),
        _ => return None,
    };
    let bytes = value.get(at..at + 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// TLS 1.3's version number on the wire.
pub const TLS13: u16 = 0x0304;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_contexts_make_distinct_keys() {
        let a = Prefix::of_context(b"a");
        let b = Prefix::of_context(b"b");
        let key = |prefix: Prefix, kind| prefix.with_key::<_, 64>(kind, b"id", <[u8]>::to_vec);
        assert_ne!(key(a, Kind::Session), key(a, Kind::Ticket));
        assert_ne!(key(a, Kind::Session), key(b, Kind::Session));
        assert_eq!(Kind::of(&key(a, Kind::Ticket)), Some(Kind::Ticket));
        assert_eq!(Kind::of(&key(a, Kind::Session)), Some(Kind::Session));
        assert_eq!(Kind::of(b"xyz"), None);
        assert_eq!(key(a, Kind::Session).len(), PREFIX_LEN + 2);
        // Cut at the cache's limit, never beyond.
        let long = a.with_key::<_, 20>(Kind::Session, &[7; 32], <[u8]>::to_vec);
        assert_eq!(long.len(), 20);
    }

    #[test]
    fn versions_read_from_encodings_with_and_without_a_name() {
        assert_eq!(rustls_session_version(&[0, 3, 4, 0x13, 1]), Some(TLS13));
        assert_eq!(
            rustls_session_version(&[1, 3, b'a', b'.', b'b', 3, 3, 0xc0]),
            Some(0x0303)
        );
        assert_eq!(rustls_session_version(&[1, 200, 0]), None);
        assert_eq!(rustls_session_version(&[2, 3, 4]), None);
        assert_eq!(rustls_session_version(&[]), None);
    }
}
