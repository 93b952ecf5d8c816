//! Bytes as lower-case hex, for logs and keys, written straight into the
//! formatter (nothing is allocated when a log line is filtered out); and
//! hex read back into bytes.

use std::fmt;

/// Displays its bytes as lower-case hex, two digits each.
#[derive(Clone, Copy, Debug)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// Reads exactly `N` bytes written as `2 * N` hex digits (either case);
/// `None` for anything else.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let digit = |d: u8| (d as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{decode, Hex};

    #[test]
    fn decode_takes_exactly_n_bytes_of_digits() {
        assert_eq!(decode::<2>("0fAb"), Some([0x0f, 0xab]));
        assert_eq!(decode::<2>("0fa"), None);
        assert_eq!(decode::<2>("0fabc"), None);
        assert_eq!(decode::<2>("0g00"), None);
        assert_eq!(decode::<2>("+f00"), None);
        assert_eq!(decode::<1>("é"), None);
    }

    #[test]
    fn two_lower_case_digits_per_byte() {
        assert_eq!(Hex(&[0x00, 0x0f, 0xab, 0xff]).to_string(), "000fabff");
        assert_eq!(Hex(&[]).to_string(), "");
    }
}
