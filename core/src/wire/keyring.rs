//! The keys a node holds at once, so that a cluster can roll to a new key
//! without downtime: the first seals, every one opens.
//!
//! A rollover is three steps, each applied on every node before the next
//! starts: add the new key second (everyone still seals under the old key,
//! and can already open the new one); move it first (everyone seals under
//! the new key, and still opens datagrams of nodes that have not switched
//! yet); drop the old key. At no step does a node seal under a key another
//! node cannot open.
//!
//! Opening tries only the keys whose id matches the header's: the id is one
//! byte derived from the key, so two keys of a ring may share it, and then
//! each is tried in turn. The ring counts what each key sealed and opened.

use super::{ClusterKey, Error, Fingerprint, Packet, Repr};

/// Keys a ring holds at most: enough for a rollover (old and new) with
/// room to spare, and small enough that a forged datagram costs at most
/// this many tag checks.
pub const MAX_KEYS: usize = 4;

/// Why a set of keys does not make a keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyringError {
    /// No key at all: nothing to seal with.
    Empty,
    /// More keys than the ring holds.
    TooMany {
        /// The ring's capacity.
        capacity: usize,
    },
    /// The same key twice (the second occurrence's position, from 0).
    Repeated {
        /// Where the key appears again.
        position: usize,
        /// Where it appeared first.
        first: usize,
    },
}

impl core::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyringError::Empty => f.write_str("no key: at least one is needed to seal"),
            KeyringError::TooMany { capacity } => {
                write!(f, "more than {capacity} keys")
            }
            KeyringError::Repeated { position, first } => {
                write!(f, "key {} repeats key {}", position + 1, first + 1)
            }
        }
    }
}

impl core::error::Error for KeyringError {}

/// What one key of a ring did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyUse {
    /// The key's public short name.
    pub fingerprint: Fingerprint,
    /// Whether it is the key that seals.
    pub sealing: bool,
    /// Datagrams sealed under it.
    pub sealed: u64,
    /// Datagrams that authenticated under it.
    pub opened: u64,
}

#[derive(Debug, Clone)]
struct Held {
    key: ClusterKey,
    sealed: u64,
    opened: u64,
}

/// Up to `N` cluster keys: the first seals, all open.
#[derive(Debug, Clone)]
pub struct Keyring<const N: usize = MAX_KEYS> {
    /// Never empty.
    keys: heapless::Vec<Held, N>,
}

impl<const N: usize> Keyring<N> {
    /// A ring of `keys`, the first sealing. Refuses none, more than `N`,
    /// and a key given twice (a sign of an editing mistake, and a key
    /// tried twice for nothing).
    pub fn new(keys: impl IntoIterator<Item = ClusterKey>) -> Result<Self, KeyringError> {
        let mut held: heapless::Vec<Held, N> = heapless::Vec::new();
        for (position, key) in keys.into_iter().enumerate() {
            if let Some(first) = held
                .iter()
                .position(|h| h.key.fingerprint() == key.fingerprint())
            {
                return Err(KeyringError::Repeated { position, first });
            }
            held.push(Held {
                key,
                sealed: 0,
                opened: 0,
            })
            .map_err(|_| KeyringError::TooMany { capacity: N })?;
        }
        if held.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys: held })
    }

    /// The key that seals.
    pub fn sealing(&self) -> &ClusterKey {
        &self.keys[0].key
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a ring holds a key to seal with.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Each key, sealing first, with what it sealed and opened.
    pub fn uses(&self) -> impl Iterator<Item = KeyUse> + '_ {
        self.keys.iter().enumerate().map(|(i, held)| KeyUse {
            fingerprint: held.key.fingerprint(),
            sealing: i == 0,
            sealed: held.sealed,
            opened: held.opened,
        })
    }

    /// Takes over what `old` counted for the keys both rings hold, so a
    /// node's figures per key go on counting across a change of keys.
    pub fn carry_counts(&mut self, old: &Keyring<N>) {
        for held in self.keys.iter_mut() {
            if let Some(before) = old
                .keys
                .iter()
                .find(|o| o.key.fingerprint() == held.key.fingerprint())
            {
                held.sealed = before.sealed;
                held.opened = before.opened;
            }
        }
    }

    /// Writes `repr` sealed under the first key into `buf`; as
    /// [`Repr::emit`].
    pub fn emit(&mut self, repr: &Repr<'_>, buf: &mut [u8]) -> Result<usize, Error> {
        let held = &mut self.keys[0];
        let len = repr.emit(&held.key, buf)?;
        held.sealed += 1;
        Ok(len)
    }

    /// Authenticates `packet` under the keys with its id and decrypts it
    /// into `scratch`; as [`Repr::parse`]. [`Error::UnknownKey`] when no
    /// key has the id, [`Error::Authentication`] when none with the id
    /// authenticates it.
    pub fn parse<'a, T: AsRef<[u8]>>(
        &mut self,
        packet: &Packet<T>,
        scratch: &'a mut [u8],
    ) -> Result<Repr<'a>, Error> {
        let mut outcome = Error::UnknownKey;
        let mut opened = None;
        for (index, held) in self.keys.iter().enumerate() {
            if held.key.id() != packet.key_id() {
                continue;
            }
            match held.key.open(packet, scratch) {
                Ok(body) => {
                    opened = Some((index, body.len()));
                    break;
                }
                Err(error) => outcome = error,
            }
        }
        let (index, len) = opened.ok_or(outcome)?;
        self.keys[index].opened += 1;
        Repr::decode(packet, &scratch[..len])
    }
}

impl<const N: usize> From<ClusterKey> for Keyring<N> {
    /// A ring of one key.
    fn from(key: ClusterKey) -> Self {
        const { assert!(N > 0, "a keyring needs room for one key") };
        let mut keys = heapless::Vec::new();
        // Room for one key is checked above, at compile time.
        let _ = keys.push(Held {
            key,
            sealed: 0,
            opened: 0,
        });
        Keyring { keys }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Record, RecordsBuilder};

    const OLD: [u8; 32] = [1; 32];
    const NEW: [u8; 32] = [2; 32];

    fn key(secret: &[u8; 32]) -> ClusterKey {
        ClusterKey::new(secret)
    }

    /// Seals a one-record datagram with `ring` into `buf`.
    fn seal(ring: &mut Keyring, buf: &mut [u8]) -> usize {
        let mut records = [0u8; 64];
        let mut builder = RecordsBuilder::new(&mut records);
        builder.push(&Record::Hello).unwrap();
        let repr = Repr {
            sender: 5,
            sequence: 1,
            first_record: 1,
            records: builder.records(),
        };
        ring.emit(&repr, buf).unwrap()
    }

    fn open(ring: &mut Keyring, datagram: &[u8]) -> Result<(), Error> {
        let packet = Packet::new_checked(datagram)?;
        let mut scratch = [0u8; 128];
        ring.parse(&packet, &mut scratch).map(|_| ())
    }

    fn uses(ring: &Keyring) -> heapless::Vec<(Fingerprint, bool, u64, u64), 4> {
        ring.uses()
            .map(|u| (u.fingerprint, u.sealing, u.sealed, u.opened))
            .collect()
    }

    #[test]
    fn the_first_seals_and_every_key_opens() {
        let mut old_first = Keyring::new([key(&OLD), key(&NEW)]).unwrap();
        let mut new_first = Keyring::new([key(&NEW), key(&OLD)]).unwrap();
        let mut new_only = Keyring::new([key(&NEW)]).unwrap();
        let mut buf = [0u8; 128];

        let len = seal(&mut old_first, &mut buf);
        assert_eq!(buf[5], key(&OLD).id(), "the header names the sealing key");
        assert_eq!(open(&mut new_first, &buf[..len]), Ok(()));
        // Ids are one byte: were OLD's equal to NEW's, the tag would decide.
        let expected = if key(&OLD).id() == key(&NEW).id() {
            Error::Authentication
        } else {
            Error::UnknownKey
        };
        assert_eq!(open(&mut new_only, &buf[..len]), Err(expected));

        let len = seal(&mut new_first, &mut buf);
        assert_eq!(buf[5], key(&NEW).id());
        assert_eq!(open(&mut old_first, &buf[..len]), Ok(()));
        assert_eq!(open(&mut new_only, &buf[..len]), Ok(()));

        let (old, new) = (key(&OLD).fingerprint(), key(&NEW).fingerprint());
        assert_eq!(
            uses(&old_first).as_slice(),
            &[(old, true, 1, 0), (new, false, 0, 1)]
        );
        assert_eq!(
            uses(&new_first).as_slice(),
            &[(new, true, 1, 0), (old, false, 0, 1)]
        );
        assert_eq!(uses(&new_only).as_slice(), &[(new, true, 0, 1)]);
    }

    #[test]
    fn keys_sharing_an_id_are_each_tried() {
        let twin = ClusterKey::colliding(key(&OLD).id(), &OLD);
        assert_eq!(twin.id(), key(&OLD).id());
        assert_ne!(twin.fingerprint(), key(&OLD).fingerprint());
        let mut buf = [0u8; 128];
        let len = seal(&mut Keyring::from(key(&OLD)), &mut buf);

        // The twin comes first and fails the tag; OLD after it opens.
        let mut ring: Keyring = Keyring::new([twin.clone(), key(&OLD)]).unwrap();
        assert_eq!(open(&mut ring, &buf[..len]), Ok(()));
        assert_eq!(ring.uses().map(|u| u.opened).sum::<u64>(), 1);
        assert_eq!(ring.uses().nth(1).unwrap().opened, 1);

        // The twin alone: the id matches, the tag does not.
        let mut twin_only: Keyring = Keyring::from(twin);
        assert_eq!(
            open(&mut twin_only, &buf[..len]),
            Err(Error::Authentication)
        );
        assert_eq!(twin_only.uses().next().unwrap().opened, 0);
    }

    #[test]
    fn an_unknown_id_is_told_from_a_bad_tag() {
        let mut buf = [0u8; 128];
        let len = seal(&mut Keyring::from(key(&OLD)), &mut buf);
        let mut stranger: Keyring =
            Keyring::from(ClusterKey::colliding(key(&OLD).id().wrapping_add(1), &OLD));
        assert_eq!(open(&mut stranger, &buf[..len]), Err(Error::UnknownKey));
        let mut damaged = buf;
        damaged[len - 1] ^= 1;
        assert_eq!(
            open(&mut Keyring::from(key(&OLD)), &damaged[..len]),
            Err(Error::Authentication)
        );
    }

    #[test]
    fn rings_refuse_nothing_too_much_and_repeats() {
        assert_eq!(Keyring::<4>::new([]).unwrap_err(), KeyringError::Empty);
        let five = (1..=5u8).map(|b| key(&[b; 32]));
        assert_eq!(
            Keyring::<4>::new(five).unwrap_err(),
            KeyringError::TooMany { capacity: 4 }
        );
        let error = Keyring::<4>::new([key(&OLD), key(&NEW), key(&OLD)]).unwrap_err();
        assert_eq!(
            error,
            KeyringError::Repeated {
                position: 2,
                first: 0
            }
        );
        assert_eq!(std::format!("{error}"), "key 3 repeats key 1");
    }

    #[test]
    fn counts_carry_over_for_the_keys_kept() {
        let mut before: Keyring = Keyring::new([key(&OLD)]).unwrap();
        let mut buf = [0u8; 128];
        seal(&mut before, &mut buf);
        seal(&mut before, &mut buf);
        let mut after: Keyring = Keyring::new([key(&NEW), key(&OLD)]).unwrap();
        after.carry_counts(&before);
        let (old, new) = (key(&OLD).fingerprint(), key(&NEW).fingerprint());
        assert_eq!(
            uses(&after).as_slice(),
            &[(new, true, 0, 0), (old, false, 2, 0)]
        );
    }

    #[test]
    fn fingerprints_and_debug_never_show_the_key() {
        let k = key(&[0xab; 32]);
        let shown = std::format!("{k:?} {}", k.fingerprint());
        assert!(!shown.contains("abab"), "{shown}");
        assert_eq!(std::format!("{}", k.fingerprint()).len(), 8);
        assert_eq!(
            Fingerprint::from_u32(k.fingerprint().to_u32()),
            k.fingerprint()
        );
    }
}
