//! What cachet writes to Redis: names that hide which session ids exist,
//! values that hide the sessions' secrets.
//!
//! Whoever reads Redis (an operator, a backup, a compromised replica) sees
//! `cachet:` and 32 hex digits per session, and an opaque value:
//!
//! * the **name** is a keyed hash (HMAC-SHA256, first 16 bytes) of the
//!   router's cache key (kind, context digest, session id or ticket id),
//!   under a key derived from the cluster key: without the cluster key one
//!   cannot tell whether a given id is stored;
//! * the **value** is `version (1) | key id (1) | nonce (24) | ciphertext |
//!   tag (16)`: XChaCha20-Poly1305 under another derived key, with a random
//!   nonce (192 bits, so random nonces never collide in practice) and the
//!   name as associated data, so a value moved to another name fails to
//!   open.
//!
//! During a cluster key rollover a router holds several keys: it writes
//! under the first and looks a session up under every key's name, so that
//! sessions written by routers still sealing under the old key are found.

use aws_lc_rs::hmac;
use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};

use crate::config::key_file::ClusterKeys;

/// The derivation labels: each use of the cluster key gets its own key.
const NAME_LABEL: &[u8] = b"cachet redis names v1";
const VALUE_LABEL: &[u8] = b"cachet redis values v1";

/// Version byte of the value format above.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 2 + NONCE_LEN;
/// Bytes of the keyed hash kept in a name: 128 bits.
const NAME_HASH_LEN: usize = 16;
const NAME_PREFIX: &str = "cachet:";

/// Why a value read from Redis was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("shorter than a sealed value")]
    Truncated,
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("sealed under a key this router does not hold")]
    UnknownKey,
    #[error("failed authentication")]
    Authentication,
}

/// One cluster key's pair of derived keys.
struct Derived {
    id: u8,
    names: hmac::Key,
    values: XChaCha20Poly1305,
}

/// The names and seals of one ring of cluster keys.
pub struct Sealer {
    /// The first writes; all are looked up and open.
    keys: Vec<Derived>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Sealer")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(keys: &ClusterKeys) -> Sealer {
        let names = keys.derive(NAME_LABEL);
        let values = keys.derive(VALUE_LABEL);
        let keys = names
            .iter()
            .zip(&values)
            .map(|(name_key, value_key)| Derived {
                // The id tells keys apart in a value; derived from the
                // value key, so routers agree on it without being told.
                id: hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, value_key), b"id").as_ref()[0],
                names: hmac::Key::new(hmac::HMAC_SHA256, name_key),
                values: XChaCha20Poly1305::new(value_key.into()),
            })
            .collect();
        Sealer { keys }
    }

    /// The name a session is written under: the first key's.
    pub fn name(&self, cache_key: &[u8]) -> String {
        name_under(&self.keys[0], cache_key)
    }

    /// Every name the session may be under, the writing key's first.
    pub fn names(&self, cache_key: &[u8]) -> Vec<String> {
        let mut names: Vec<String> = self
            .keys
            .iter()
            .map(|key| name_under(key, cache_key))
            .collect();
        names.dedup();
        names
    }

    /// `value` sealed for `name` under the first key; `None` when the
    /// system gives no randomness for the nonce (then nothing is written).
    pub fn seal(&self, name: &str, value: &[u8]) -> Option<Vec<u8>> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER_LEN + value.len() + TAG_LEN);
        out.extend_from_slice(&[VERSION, key.id]);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(value);
        let body = &mut out[HEADER_LEN..];
        let tag = key
            .values
            .encrypt_inout_detached(&XNonce::from(nonce), name.as_bytes(), InOutBuf::from(body))
            .expect("XChaCha20-Poly1305 seals any value shorter than 256 GiB");
        out.extend_from_slice(&tag);
        Some(out)
    }

    /// The session sealed in `sealed` for `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        if sealed[0] != VERSION {
            return Err(OpenError::Version(sealed[0]));
        }
        let nonce = XNonce::try_from(&sealed[2..HEADER_LEN]).map_err(|_| OpenError::Truncated)?;
        let (body, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
        let tag = Tag::try_from(tag).map_err(|_| OpenError::Truncated)?;
        let mut tried = false;
        for key in self.keys.iter().filter(|key| key.id == sealed[1]) {
            tried = true;
            let mut plain = body.to_vec();
            let opened = key.values.decrypt_inout_detached(
                &nonce,
                name.as_bytes(),
                InOutBuf::from(plain.as_mut_slice()),
                &tag,
            );
            if opened.is_ok() {
                return Ok(plain);
            }
        }
        Err(if tried {
            OpenError::Authentication
        } else {
            OpenError::UnknownKey
        })
    }
}

fn name_under(key: &Derived, cache_key: &[u8]) -> String {
    let hash = hmac::sign(&key.names, cache_key);
    let mut name = String::with_capacity(NAME_PREFIX.len() + 2 * NAME_HASH_LEN);
    name.push_str(NAME_PREFIX);
    name.push_str(&crate::hex::Hex(&hash.as_ref()[..NAME_HASH_LEN]).to_string());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lines: &[u8]) -> ClusterKeys {
        let text: Vec<String> = lines
            .iter()
            .map(|b| format!("{b:02x}").repeat(32))
            .collect();
        ClusterKeys::parse(&text.join("\n")).unwrap()
    }

    #[test]
    fn sealed_values_open_under_their_name_only() {
        let sealer = Sealer::new(&keys(&[1]));
        let name = sealer.name(b"Tsome-ticket");
        assert!(
            name.starts_with("cachet:") && name.len() == 7 + 32,
            "{name}"
        );
        let sealed = sealer.seal(&name, b"master secret").unwrap();
        assert!(!sealed.windows(13).any(|w| w == b"master secret"));
        assert_eq!(sealer.open(&name, &sealed).unwrap(), b"master secret");
        let other = sealer.name(b"Tanother");
        assert_eq!(sealer.open(&other, &sealed), Err(OpenError::Authentication));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            sealer.open(&name, &tampered),
            Err(OpenError::Authentication)
        );
        assert_eq!(sealer.open(&name, &sealed[..20]), Err(OpenError::Truncated));
        let mut version = sealed;
        version[0] = 9;
        assert_eq!(sealer.open(&name, &version), Err(OpenError::Version(9)));
    }

    #[test]
    fn names_hide_the_id_and_differ_per_key() {
        let a = Sealer::new(&keys(&[1]));
        let b = Sealer::new(&keys(&[2]));
        let id = b"Sabcdef";
        assert_ne!(a.name(id), b.name(id));
        assert_eq!(a.name(id), a.name(id));
        assert!(!a.name(id).contains("616263"), "no hex of the id");
    }

    #[test]
    fn during_a_rollover_both_keys_find_and_open() {
        let old = Sealer::new(&keys(&[1]));
        let both_new_first = Sealer::new(&keys(&[2, 1]));
        let id = b"Ssession";
        let name = old.name(id);
        let sealed = old.seal(&name, b"v").unwrap();
        let names = both_new_first.names(id);
        assert_eq!(names.len(), 2);
        assert_eq!(names[1], name, "the old key's name is looked up too");
        assert_eq!(both_new_first.open(&name, &sealed).unwrap(), b"v");
        let new_only = Sealer::new(&keys(&[2]));
        assert_eq!(new_only.open(&name, &sealed), Err(OpenError::UnknownKey));
    }
}
