//! The uwsgi protocol's request packet, decoded by code of our own (not the
//! router's), so that the two implementations check each other: the test
//! backends and `cargo xtask cluster`'s demo backend read requests with it.
//!
//! A packet is a 4-byte header (`modifier1`, the variable block's size as
//! a little-endian u16, `modifier2`) and the block: key/value pairs, each a
//! little-endian u16 length and that many bytes.

use std::collections::BTreeMap;

/// Bytes of the packet header.
pub const HEADER_LEN: usize = 4;

/// What is wrong with a packet.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UwsgiError {
    #[error("uwsgi modifier1 {0}, not 0 (a WSGI request)")]
    Modifier1(u8),
    #[error("uwsgi modifier2 {0}, not 0")]
    Modifier2(u8),
    #[error("uwsgi variable block cut short at byte {at} of {len}")]
    Truncated { at: usize, len: usize },
}

/// The size of the variable block that follows `header`, for a WSGI
/// request (both modifiers 0).
pub fn block_len(header: [u8; HEADER_LEN]) -> Result<usize, UwsgiError> {
    match header {
        [0, low, high, 0] => Ok(usize::from(u16::from_le_bytes([low, high]))),
        [0, _, _, modifier2] => Err(UwsgiError::Modifier2(modifier2)),
        [modifier1, ..] => Err(UwsgiError::Modifier1(modifier1)),
    }
}

/// The variables of a block, in their order, as bytes.
pub fn vars(block: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), UwsgiError>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at == block.len() {
            return None;
        }
        let mut field = || {
            let truncated = || UwsgiError::Truncated {
                at,
                len: block.len(),
            };
            let len = block.get(at..at + 2).ok_or_else(truncated)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let value = block.get(at + 2..at + 2 + len).ok_or_else(truncated)?;
            at += 2 + len;
            Ok(value)
        };
        let pair = field().and_then(|key| Ok((key, field()?)));
        if pair.is_err() {
            // Nothing after a malformed pair can be trusted.
            at = block.len();
        }
        Some(pair)
    })
}

/// The variables of a block, by name (values decoded lossily as UTF-8).
pub fn var_map(block: &[u8]) -> Result<BTreeMap<String, String>, UwsgiError> {
    vars(block)
        .map(|pair| {
            let (key, value) = pair?;
            Ok((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
        .collect()
}

/// `CONTENT_LENGTH` of a block: 0 when absent, `None` when not a number.
pub fn content_length(vars: &BTreeMap<String, String>) -> Option<u64> {
    vars.get("CONTENT_LENGTH")
        .map_or(Some(0), |len| len.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in pairs {
            for part in [key, value] {
                out.extend_from_slice(&(part.len() as u16).to_le_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }

    #[test]
    fn decodes_a_request() {
        let packed = block(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "12")]);
        let header = [0, packed.len() as u8, 0, 0];
        assert_eq!(block_len(header), Ok(packed.len()));
        let map = var_map(&packed).unwrap();
        assert_eq!(map["REQUEST_METHOD"], "POST");
        assert_eq!(content_length(&map), Some(12));
        assert_eq!(content_length(&BTreeMap::new()), Some(0));
        assert_eq!(var_map(&[]), Ok(BTreeMap::new()));
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        assert_eq!(block_len([5, 0, 0, 0]), Err(UwsgiError::Modifier1(5)));
        assert_eq!(block_len([0, 0, 0, 1]), Err(UwsgiError::Modifier2(1)));
        let mut packed = block(&[("A", "1"), ("B", "2")]);
        packed.pop();
        let error = var_map(&packed).unwrap_err();
        // The value "2" starts at byte 9, after A=1 and the key B.
        assert_eq!(error, UwsgiError::Truncated { at: 9, len: 11 });
        assert_eq!(vars(&[1]).count(), 1, "one error, then the end");
        let mut bad = BTreeMap::new();
        bad.insert("CONTENT_LENGTH".to_owned(), "many".to_owned());
        assert_eq!(content_length(&bad), None);
    }
}
