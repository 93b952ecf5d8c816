//! The cluster key file (`cache-udp-key`): one key per line, 64 hex
//! characters each, as `cachet keygen` prints them. The first key seals,
//! every key opens, so that a cluster rolls to a new key in three steps
//! without downtime (docs/CLUSTER.md, *Rolling the key over*). Blank lines
//! and whitespace around a key are ignored.

use std::fmt;

use cachet_core::wire::{ClusterKey, Fingerprint, Keyring, MAX_KEYS};

/// The keys of a key file, in order. `Debug` shows their fingerprints,
/// never the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKeys(Vec<[u8; 32]>);

impl fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.fingerprints().iter().map(|fp| fp.to_string()))
            .finish()
    }
}

/// What is wrong with a key file, naming the line (from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("holds no key (one per line, 64 hex characters, as `cachet keygen` prints)")]
    Empty,
    #[error("line {line}: a key file holds at most {MAX_KEYS} keys")]
    TooMany { line: usize },
    #[error("line {line}: {len} characters where a key is 64 hex characters")]
    WrongLength { line: usize, len: usize },
    #[error("line {line}: not hex (a key is 64 characters of 0-9 and a-f)")]
    NotHex { line: usize },
    #[error("line {line}: repeats the key of line {first}")]
    Repeated { line: usize, first: usize },
}

impl ClusterKeys {
    /// Reads a key file's text.
    pub fn parse(text: &str) -> Result<ClusterKeys, KeyFileError> {
        let mut keys: Vec<([u8; 32], usize)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let (line, number) = (line.trim(), index + 1);
            if line.is_empty() {
                continue;
            }
            if keys.len() == MAX_KEYS {
                return Err(KeyFileError::TooMany { line: number });
            }
            if line.len() != 64 {
                return Err(KeyFileError::WrongLength {
                    line: number,
                    len: line.chars().count(),
                });
            }
            let key =
                crate::hex::decode::<32>(line).ok_or(KeyFileError::NotHex { line: number })?;
            if let Some(&(_, first)) = keys.iter().find(|(k, _)| *k == key) {
                return Err(KeyFileError::Repeated {
                    line: number,
                    first,
                });
            }
            keys.push((key, number));
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(ClusterKeys(keys.into_iter().map(|(k, _)| k).collect()))
    }

    /// The keys as a ring for the sync nodes: the first seals.
    pub fn keyring(&self) -> Keyring {
        let ring = Keyring::new(self.0.iter().map(ClusterKey::new));
        // `parse` admits 1 to MAX_KEYS distinct keys; distinct keys with
        // equal 32-bit fingerprints would take some 2^16 keys to find.
        ring.expect("a parsed key file makes a keyring")
    }

    /// For each key, in the file's order, a 32-byte key for one purpose
    /// named by `label` (HMAC-SHA256 of the label under the key), so that
    /// no two uses (datagrams, Redis names, Redis values) share a key and
    /// the cluster keys themselves never leave this type.
    pub fn derive(&self, label: &[u8]) -> Vec<[u8; 32]> {
        use aws_lc_rs::hmac;
        self.0
            .iter()
            .map(|key| {
                let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), label);
                let mut derived = [0u8; 32];
                derived.copy_from_slice(tag.as_ref());
                derived
            })
            .collect()
    }

    /// Each key's fingerprint, in the file's order.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.0
            .iter()
            .map(|k| ClusterKey::new(k).fingerprint())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        format!("{byte:02x}").repeat(32)
    }

    #[test]
    fn several_keys_in_order_blank_lines_and_spaces_ignored() {
        let text = format!(
            "\n  {}\t\n\n{}\n{}  \n",
            key(1),
            key(2),
            key(3).to_uppercase()
        );
        let keys = ClusterKeys::parse(&text).unwrap();
        assert_eq!(keys.0, vec![[1; 32], [2; 32], [3; 32]]);
        let ring = keys.keyring();
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.sealing().fingerprint(), keys.fingerprints()[0]);
        // Debug shows fingerprints only.
        let shown = format!("{keys:?}");
        assert!(!shown.contains(&key(1)[..8]), "{shown}");
        assert!(
            shown.contains(&keys.fingerprints()[1].to_string()),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let cases = [
            (String::new(), KeyFileError::Empty),
            ("\n \n".to_owned(), KeyFileError::Empty),
            (
                format!("{}\n{}", key(1), &key(2)[1..]),
                KeyFileError::WrongLength { line: 2, len: 63 },
            ),
            (
                format!("{}\n\n{}x", key(1), &key(2)[1..]),
                KeyFileError::NotHex { line: 3 },
            ),
            (
                format!("{}\n{}\n{}", key(1), key(2), key(1)),
                KeyFileError::Repeated { line: 3, first: 1 },
            ),
            (
                (1..=5).map(|b| key(b) + "\n").collect(),
                KeyFileError::TooMany { line: 5 },
            ),
            (
                format!("{} {}", key(1), key(2)),
                KeyFileError::WrongLength { line: 1, len: 129 },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(ClusterKeys::parse(&text), Err(expected.clone()), "{text:?}");
        }
        assert_eq!(
            KeyFileError::WrongLength { line: 2, len: 63 }.to_string(),
            "line 2: 63 characters where a key is 64 hex characters"
        );
    }
}
