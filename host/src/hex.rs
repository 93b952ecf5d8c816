//! Bytes as lower-case hex, for logs and keys, written straight into the
//! formatter (nothing is allocated when a log line is filtered out).

use std::fmt;

/// Displays its bytes as lower-case hex, two digits each.
#[derive(Clone, Copy, Debug)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::Hex;

    #[test]
    fn two_lower_case_digits_per_byte() {
        assert_eq!(Hex(&[0x00, 0x0f, 0xab, 0xff]).to_string(), "000fabff");
        assert_eq!(Hex(&[]).to_string(), "");
    }
}
