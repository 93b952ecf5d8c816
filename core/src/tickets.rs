//! Cluster ticket keys: stateless TLS session tickets that every router of
//! a cluster opens, under keys the cluster makes itself and rotates.
//!
//! Time is cut into *periods* of a fixed length counted from the Unix
//! epoch ([`Rotation`]), so that routers agree on period numbers without
//! talking, as far as their wall clocks agree. Each period has keys: every
//! router may *propose* one (32 random bytes) for the next period from the
//! middle of the current one on, unless it already holds one, and sends
//! what it holds to its peers. A router seals the tickets of a period under
//! the proposal with the smallest [`KeyId`] it holds for that period (a
//! deterministic winner, so no coordinator is needed), and opens a ticket
//! under whichever key its header names, so that a ticket sealed under a
//! proposal that later lost still opens everywhere the proposal reached.
//!
//! A table ([`TicketKeys`]) holds the keys of the previous period, the
//! current one and the two next; a key is erased (zeroed) when its period
//! is more than one period behind, so a ticket lives between one and two
//! periods and never longer. Clocks that disagree by less than half a
//! period still agree: the next period's keys are everywhere half a period
//! before it starts, and the previous period's are kept a whole period.
//!
//! A ticket: `period (8, big-endian) | key id (8) | nonce (24) | sealed
//! state | tag (16)`, XChaCha20-Poly1305 under the key with the first 16
//! bytes as associated data. The 192-bit nonce is random (the caller's
//! randomness), which is safe for any number of tickets per key.

use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::redacted::Redacted;

/// Bytes of a ticket key.
pub const SECRET_LEN: usize = 32;
/// Bytes of a ticket's random nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of a ticket before the sealed state: period and key id.
pub const HEADER_LEN: usize = 16;
/// Bytes of the authentication tag at a ticket's end.
pub const TAG_LEN: usize = 16;
/// Bytes a ticket adds to the state it seals.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Proposals kept per period: the smallest ids win, the rest are dropped
/// (routers that all start at once may all propose).
pub const CANDIDATES: usize = 4;
/// Periods a table holds keys for: the previous, the current, the next two.
pub const PERIODS: usize = 4;
/// Keys a table holds at most.
pub const MAX_KEYS: usize = CANDIDATES * PERIODS;

/// Label of the digest whose first bytes are a key's id.
const ID_LABEL: &[u8] = b"cachet ticket key id\0";

/// A ticket key's public name, carried in every ticket it seals: the first
/// 8 bytes of SHA-256 over a label, the period and the key. Ids order
/// proposals (the smallest wins) and name keys in stats; they reveal
/// nothing usable about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The short form stats show: the first 4 bytes as 8 hex digits.
    pub fn fingerprint(&self) -> crate::wire::Fingerprint {
        crate::wire::Fingerprint([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

impl core::fmt::Display for KeyId {
    /// Sixteen lower-case hex digits.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// One period's key. Zeroed when dropped; never printed.
#[derive(Debug)]
pub struct TicketKey {
    period: u64,
    id: KeyId,
    secret: Redacted<[u8; SECRET_LEN]>,
}

impl Drop for TicketKey {
    fn drop(&mut self) {
        self.secret.0.zeroize();
    }
}

impl TicketKey {
    /// The key `secret` for `period`, with its id.
    pub fn new(period: u64, secret: &[u8; SECRET_LEN]) -> TicketKey {
        let mut hasher = Sha256::new();
        hasher.update(ID_LABEL);
        hasher.update(period.to_le_bytes());
        hasher.update(secret);
        let digest: [u8; 32] = hasher.finalize().into();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        TicketKey {
            period,
            id: KeyId(id),
            secret: Redacted(*secret),
        }
    }

    /// The period whose tickets it seals.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// Its public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The secret, to hand to peers under the cluster key.
    pub fn secret(&self) -> &[u8; SECRET_LEN] {
        &self.secret.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.secret.0).into())
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&self.period.to_be_bytes());
        header[8..].copy_from_slice(&self.id.0);
        header
    }
}

/// How a key offered to a table was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Offered {
    /// Held from now on.
    Added,
    /// Already held.
    Known,
    /// Its period is over (more than one period behind): erased keys are
    /// never taken back.
    Expired,
    /// Its period is more than two periods ahead: a clock far off.
    TooEarly,
    /// Its period has [`CANDIDATES`] proposals with smaller ids.
    Outranked,
}

/// Why a ticket could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TicketError {
    /// No key for the current period yet.
    NoKey,
    /// The output buffer cannot hold the result.
    BufferTooSmall,
    /// Shorter than a ticket's header, nonce and tag.
    Truncated,
    /// Its period is more than one period behind: its key was erased.
    Expired,
    /// No key held has the id and period it names.
    UnknownKey,
    /// The tag does not match: forged or damaged.
    Authentication,
}

impl core::fmt::Display for TicketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TicketError::NoKey => "no ticket key for the current period",
            TicketError::BufferTooSmall => "output buffer too small for the ticket",
            TicketError::Truncated => "ticket shorter than its header, nonce and tag",
            TicketError::Expired => "ticket sealed more than two periods ago: its key is erased",
            TicketError::UnknownKey => "ticket sealed under a key this router does not hold",
            TicketError::Authentication => "ticket failed authentication",
        })
    }
}

impl core::error::Error for TicketError {}

/// The period schedule: `length` milliseconds each, from the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rotation {
    length_ms: u64,
}

impl Rotation {
    /// Periods of `length_ms` milliseconds; `None` for zero.
    pub fn new(length_ms: u64) -> Option<Rotation> {
        (length_ms > 0).then_some(Rotation { length_ms })
    }

    /// A period's length in milliseconds.
    pub fn length_ms(&self) -> u64 {
        self.length_ms
    }

    /// The period `unix_ms` falls in.
    pub fn period_at(&self, unix_ms: u64) -> u64 {
        unix_ms / self.length_ms
    }

    /// The period a router should propose a key for at `unix_ms`, if any:
    /// the current one when it holds none for it (the first router of a
    /// cluster, or one cut off for two periods), else the next one from
    /// the middle of the current period on, when it holds none for it yet.
    pub fn due(&self, keys: &TicketKeys, unix_ms: u64) -> Option<u64> {
        let now = self.period_at(unix_ms);
        if !keys.has_period(now) {
            return Some(now);
        }
        let into = unix_ms % self.length_ms;
        (into >= self.length_ms / 2 && !keys.has_period(now + 1)).then_some(now + 1)
    }
}

/// The ticket keys a router holds. See the module docs.
#[derive(Debug, Default)]
pub struct TicketKeys {
    keys: heapless::Vec<TicketKey, MAX_KEYS>,
}

impl TicketKeys {
    /// No keys.
    pub const fn new() -> TicketKeys {
        TicketKeys {
            keys: heapless::Vec::new(),
        }
    }

    /// Takes `key` at period `now`, erasing expired keys first.
    pub fn offer(&mut self, now: u64, key: TicketKey) -> Offered {
        self.expire(now);
        if key.period.saturating_add(1) < now {
            return Offered::Expired;
        }
        if key.period > now.saturating_add(2) {
            return Offered::TooEarly;
        }
        if self.keys.iter().any(|held| held.id == key.id) {
            return Offered::Known;
        }
        let rivals = self.keys.iter().filter(|held| held.period == key.period);
        if rivals.clone().count() >= CANDIDATES {
            // Keep the smallest ids: every router drops the same ones.
            let largest = rivals
                .enumerate()
                .max_by_key(|(_, held)| held.id)
                .map(|(_, held)| held.id);
            match largest {
                Some(largest) if largest > key.id => {
                    self.keys.retain(|held| held.id != largest);
                }
                _ => return Offered::Outranked,
            }
        }
        // Room is certain: at most CANDIDATES per period, PERIODS periods.
        match self.keys.push(key) {
            Ok(()) => Offered::Added,
            Err(_) => Offered::Outranked,
        }
    }

    /// Erases (zeroes) the keys of periods more than one behind `now`;
    /// returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.keys.len();
        self.keys.retain(|key| key.period.saturating_add(1) >= now);
        before - self.keys.len()
    }

    /// Whether some key for `period` is held.
    pub fn has_period(&self, period: u64) -> bool {
        self.keys.iter().any(|key| key.period == period)
    }

    /// The key tickets are sealed under in period `now`: the smallest id
    /// among that period's proposals.
    pub fn sealing(&self, now: u64) -> Option<&TicketKey> {
        self.keys
            .iter()
            .filter(|key| key.period == now)
            .min_by_key(|key| key.id)
    }

    /// Every key held.
    pub fn iter(&self) -> impl Iterator<Item = &TicketKey> {
        self.keys.iter()
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `state` into a ticket in `out` under the key of period `now`
    /// with `nonce` (fresh random bytes); returns the ticket's length,
    /// `state.len() + OVERHEAD`.
    pub fn seal(
        &self,
        now: u64,
        nonce: &[u8; NONCE_LEN],
        state: &[u8],
        out: &mut [u8],
    ) -> Result<usize, TicketError> {
        let key = self.sealing(now).ok_or(TicketError::NoKey)?;
        let len = state.len() + OVERHEAD;
        let out = out.get_mut(..len).ok_or(TicketError::BufferTooSmall)?;
        let header = key.header();
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header);
        let (nonce_out, rest) = rest.split_at_mut(NONCE_LEN);
        nonce_out.copy_from_slice(nonce);
        let (body, tag_out) = rest.split_at_mut(state.len());
        body.copy_from_slice(state);
        let tag = key
            .cipher()
            .encrypt_inout_detached(&XNonce::from(*nonce), &header, InOutBuf::from(body))
            .map_err(|_| TicketError::BufferTooSmall)?;
        tag_out.copy_from_slice(&tag);
        Ok(len)
    }

    /// Opens `ticket` at period `now` into `out`, returning the state it
    /// sealed. Nothing is left in `out` when it fails.
    pub fn open<'o>(
        &self,
        now: u64,
        ticket: &[u8],
        out: &'o mut [u8],
    ) -> Result<&'o [u8], TicketError> {
        if ticket.len() < OVERHEAD {
            return Err(TicketError::Truncated);
        }
        let (header, rest) = ticket.split_at(HEADER_LEN);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut period = [0u8; 8];
        period.copy_from_slice(&header[..8]);
        let period = u64::from_be_bytes(period);
        if period.saturating_add(1) < now {
            return Err(TicketError::Expired);
        }
        let key = self
            .keys
            .iter()
            .find(|key| key.period == period && key.id.0 == header[8..])
            .ok_or(TicketError::UnknownKey)?;
        let out = out
            .get_mut(..body.len())
            .ok_or(TicketError::BufferTooSmall)?;
        let tag = Tag::try_from(tag).map_err(|_| TicketError::Truncated)?;
        let nonce = XNonce::try_from(nonce).map_err(|_| TicketError::Truncated)?;
        let buffer = InOutBuf::new(body, out).map_err(|_| TicketError::BufferTooSmall)?;
        match key
            .cipher()
            .decrypt_inout_detached(&nonce, header, buffer, &tag)
        {
            Ok(()) => Ok(out),
            Err(_) => {
                out.fill(0);
                Err(TicketError::Authentication)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(period: u64, seed: u8) -> TicketKey {
        TicketKey::new(period, &[seed; SECRET_LEN])
    }

    #[test]
    fn the_smallest_id_seals_and_every_proposal_opens() {
        let mut keys = TicketKeys::new();
        let (a, b) = (key(10, 1), key(10, 2));
        let (small, large) = if a.id < b.id {
            (a.id, b.id)
        } else {
            (b.id, a.id)
        };
        assert_eq!(keys.offer(10, a), Offered::Added);
        assert_eq!(keys.offer(10, key(10, 1)), Offered::Known);
        assert_eq!(keys.offer(10, b), Offered::Added);
        assert_eq!(keys.sealing(10).unwrap().id, small);

        let mut ticket = [0u8; 100];
        let len = keys
            .seal(10, &[7; NONCE_LEN], b"session state", &mut ticket)
            .unwrap();
        assert_eq!(len, 13 + OVERHEAD);
        assert_eq!(&ticket[8..16], &small.0);
        let mut out = [0u8; 100];
        assert_eq!(
            keys.open(10, &ticket[..len], &mut out).unwrap(),
            b"session state"
        );

        // A table that holds only the loser opens what the loser sealed.
        let mut other = TicketKeys::new();
        let loser = [a_or_b(large)];
        other.offer(10, key(10, loser[0]));
        let len = other.seal(10, &[9; NONCE_LEN], b"x", &mut ticket).unwrap();
        assert_eq!(keys.open(11, &ticket[..len], &mut out).unwrap(), b"x");
    }

    /// The seed (1 or 2) of the period-10 key whose id is `id`.
    fn a_or_b(id: KeyId) -> u8 {
        if key(10, 1).id == id {
            1
        } else {
            2
        }
    }

    #[test]
    fn a_ticket_lives_one_to_two_periods() {
        let mut keys = TicketKeys::new();
        keys.offer(5, key(5, 3));
        let mut ticket = [0u8; 64];
        let len = keys.seal(5, &[1; NONCE_LEN], b"s", &mut ticket).unwrap();
        let mut out = [0u8; 64];
        assert!(keys.open(5, &ticket[..len], &mut out).is_ok());
        assert!(keys.open(6, &ticket[..len], &mut out).is_ok());
        assert_eq!(
            keys.open(7, &ticket[..len], &mut out),
            Err(TicketError::Expired)
        );
        assert_eq!(keys.expire(7), 1);
        assert!(keys.is_empty());
        assert_eq!(keys.offer(7, key(5, 3)), Offered::Expired);
        assert_eq!(keys.offer(7, key(10, 3)), Offered::TooEarly);
        assert_eq!(
            keys.seal(7, &[1; NONCE_LEN], b"s", &mut ticket),
            Err(TicketError::NoKey)
        );
    }

    #[test]
    fn bad_tickets_are_refused_by_reason() {
        let mut keys = TicketKeys::new();
        keys.offer(1, key(1, 4));
        let mut ticket = [0u8; 64];
        let len = keys
            .seal(1, &[2; NONCE_LEN], b"state", &mut ticket)
            .unwrap();
        let mut out = [0u8; 64];
        assert_eq!(
            keys.open(1, &ticket[..OVERHEAD - 1], &mut out),
            Err(TicketError::Truncated)
        );
        for byte in 0..len {
            let mut damaged = ticket;
            damaged[byte] ^= 0x20;
            let refused = keys.open(1, &damaged[..len], &mut out).unwrap_err();
            let expected = match byte {
                0..=7 => [TicketError::UnknownKey, TicketError::Expired],
                8..=15 => [TicketError::UnknownKey; 2],
                _ => [TicketError::Authentication; 2],
            };
            assert!(expected.contains(&refused), "byte {byte}: {refused:?}");
            assert!(out.iter().all(|&b| b == 0), "plaintext left behind");
        }
        assert_eq!(
            keys.open(1, &ticket[..len], &mut [0u8; 4]),
            Err(TicketError::BufferTooSmall)
        );
    }

    #[test]
    fn a_period_keeps_its_smallest_proposals() {
        let mut keys = TicketKeys::new();
        let mut ids: [KeyId; 8] = [KeyId([0; 8]); 8];
        for seed in 0..8u8 {
            ids[seed as usize] = key(3, seed).id;
            keys.offer(3, key(3, seed));
        }
        ids.sort();
        let held: heapless::Vec<KeyId, MAX_KEYS> = keys.iter().map(|k| k.id).collect();
        assert_eq!(held.len(), CANDIDATES);
        assert!(ids[..CANDIDATES].iter().all(|id| held.contains(id)));
        assert_eq!(keys.sealing(3).unwrap().id, ids[0]);
    }

    #[test]
    fn proposals_fall_due_for_the_current_period_then_at_mid_period() {
        let rotation = Rotation::new(10_000).unwrap();
        let mut keys = TicketKeys::new();
        assert_eq!(rotation.due(&keys, 123_000), Some(12));
        keys.offer(12, key(12, 1));
        assert_eq!(rotation.due(&keys, 124_999), None);
        assert_eq!(rotation.due(&keys, 125_000), Some(13));
        keys.offer(12, key(13, 1));
        assert_eq!(rotation.due(&keys, 129_999), None);
        assert_eq!(rotation.due(&keys, 130_000), None, "13 is held");
        assert_eq!(rotation.due(&keys, 135_000), Some(14));
        assert!(Rotation::new(0).is_none());
    }

    proptest::proptest! {
        /// Whatever a client offers as a ticket: no panic, nothing opened
        /// but what was sealed, nothing left in the output.
        #[test]
        fn any_offered_bytes_are_refused_without_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            now in 0u64..4,
        ) {
            let mut keys = TicketKeys::new();
            keys.offer(1, key(1, 7));
            let mut out = [0u8; 300];
            proptest::prop_assert!(keys.open(now, &bytes, &mut out).is_err());
            proptest::prop_assert!(out.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn no_key_in_debug_output() {
        let key = key(1, 0xab);
        let text = std::format!("{key:?}");
        assert!(!text.contains("171") && !text.contains("ab, "), "{text}");
    }
}
