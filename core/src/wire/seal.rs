//! Sealing and opening datagrams under the cluster key.

use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};

use super::{Error, Packet};

/// The cluster's shared secret, ready to seal and open datagrams.
///
/// The id travels in every header so that a cluster can roll to a new key:
/// nodes accept datagrams under the old and the new id while the new one is
/// deployed.
#[derive(Clone)]
pub struct ClusterKey {
    cipher: XChaCha20Poly1305,
    id: u8,
}

impl core::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the key.
        f.debug_struct("ClusterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ClusterKey {
    /// A key with id `id` from 32 secret bytes.
    pub fn new(id: u8, secret: &[u8; 32]) -> ClusterKey {
        ClusterKey {
            cipher: XChaCha20Poly1305::new(secret.into()),
            id,
        }
    }

    /// The key id written into datagrams this key seals.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The nonce is the header's sender and sequence: unique per datagram
    /// as long as a sender never repeats a sequence number, which the sync
    /// node guarantees by picking a fresh random sender id at every start.
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
