//! Sealing and opening datagrams under the cluster key.

use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use super::{Error, Packet};
use crate::redacted::Redacted;

/// Label of the digest whose first byte is a key's id.
const ID_LABEL: &[u8] = b"cachet cluster key id\0";
/// Label of the digest whose first bytes are a key's fingerprint.
const FINGERPRINT_LABEL: &[u8] = b"cachet cluster key fingerprint\0";

/// A short public name for a cluster key, for stats and logs: the first
/// four bytes of SHA-256 over a label and the key. It tells keys apart and
/// reveals nothing usable about the key (finding a key from it means
/// inverting SHA-256, and 32 bits leave 2^224 candidates anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fingerprint(pub [u8; 4]);

impl Fingerprint {
    /// The fingerprint as one number (big-endian), for atomic tables.
    pub fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The fingerprint a [`Fingerprint::to_u32`] came from.
    pub fn from_u32(value: u32) -> Fingerprint {
        Fingerprint(value.to_be_bytes())
    }
}

impl core::fmt::Display for Fingerprint {
    /// Eight lower-case hex digits.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// The cluster's shared secret, ready to seal and open datagrams.
///
/// Its id travels in every header so that a node holding several keys (a
/// [`super::Keyring`], during a rollover) knows which to try. The id is
/// derived from the key itself, so routers agree on it without being told;
/// being one byte, two keys may share it, and a keyring then tries both.
#[derive(Clone, Debug)]
pub struct ClusterKey {
    cipher: Redacted<XChaCha20Poly1305>,
    id: u8,
    fingerprint: Fingerprint,
}

impl ClusterKey {
    /// The key made of 32 secret bytes, with its id and fingerprint.
    pub fn new(secret: &[u8; 32]) -> ClusterKey {
        let id = labelled_digest(ID_LABEL, secret)[0];
        let digest = labelled_digest(FINGERPRINT_LABEL, secret);
        ClusterKey {
            cipher: Redacted(XChaCha20Poly1305::new(secret.into())),
            id,
            fingerprint: Fingerprint([digest[0], digest[1], digest[2], digest[3]]),
        }
    }

    /// The key id written into datagrams this key seals.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The key's public short name (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The nonce is the header's sender and sequence: unique per datagram
    /// as long as a sender never repeats a sequence number, which the sync
    /// node guarantees by picking a fresh random sender id at every start.
    /// A node that changes keys keeps its sender and sequence, so one nonce
    /// may seal under two keys: harmless, since a nonce must be unique per
    /// key, and two keys are two independent XChaCha20-Poly1305 instances.
    fn nonce(sender: u64, sequence: u64) -> XNonce {
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&sender.to_le_bytes());
        nonce[8..16].copy_from_slice(&sequence.to_le_bytes());
        nonce[16..].copy_from_slice(b"cachet\x00\x01");
        XNonce::from(nonce)
    }

    /// Encrypts the body of `packet` in place and writes the tag. The header
    /// must already be filled.
    pub(crate) fn seal<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), Error> {
        let nonce = Self::nonce(packet.sender(), packet.sequence());
        let (header, body, tag_out) = packet.parts_mut();
        let tag = self
            .cipher
            .0
            .encrypt_inout_detached(&nonce, header, InOutBuf::from(body))
            .map_err(|_| Error::BufferTooSmall)?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }

    /// Authenticates `packet` and decrypts its body into `out`, returning the
    /// plaintext. Nothing is written to `out` beyond the body's length.
    pub(crate) fn open<'o, T: AsRef<[u8]>>(
        &self,
        packet: &Packet<T>,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], Error> {
        if packet.key_id() != self.id {
            return Err(Error::UnknownKey);
        }
        let body = packet.sealed_body();
        let out = out.get_mut(..body.len()).ok_or(Error::BufferTooSmall)?;
        let tag = Tag::try_from(packet.tag()).map_err(|_| Error::Truncated)?;
        let nonce = Self::nonce(packet.sender(), packet.sequence());
        let buffer = InOutBuf::new(body, out).map_err(|_| Error::BufferTooSmall)?;
        match self
            .cipher
            .0
            .decrypt_inout_detached(&nonce, packet.header(), buffer, &tag)
        {
            Ok(()) => Ok(out),
            Err(_) => {
                // Leave no unauthenticated plaintext behind.
                out.fill(0);
                Err(Error::Authentication)
            }
        }
    }
}

/// SHA-256 of `label` followed by `secret`.
fn labelled_digest(label: &[u8], secret: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(label);
    hasher.update(secret);
    hasher.finalize().into()
}

#[cfg(any(test, feature = "selfcheck"))]
impl ClusterKey {
    /// A key whose id is `id` but whose secret differs from `unlike`: what
    /// tests of id collisions need. Found by trying secrets in turn (about
    /// 256 digests).
    pub(crate) fn colliding(id: u8, unlike: &[u8; 32]) -> ClusterKey {
        (0u32..)
            .map(|n| {
                let mut secret = *unlike;
                secret[..4].copy_from_slice(&n.wrapping_add(1).to_le_bytes());
                secret[4] ^= 0x5a;
                ClusterKey::new(&secret)
            })
            .find(|key| key.id == id)
            .expect("some secret has every id")
    }
}
