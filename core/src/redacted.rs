//! Key material that never shows in debug output.

/// `T`, printed by `{:?}` as `<redacted>`: a struct holding a key derives
/// `Debug` and still never prints it, whatever fields it gains later.
#[derive(Clone)]
pub(crate) struct Redacted<T>(pub(crate) T);

impl<T> core::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Redacted;

    #[test]
    fn shows_nothing_of_the_value() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Key {
            id: u8,
            secret: Redacted<[u8; 4]>,
        }
        let key = Key {
            id: 7,
            secret: Redacted([0xab; 4]),
        };
        assert_eq!(std::format!("{key:?}"), "Key { id: 7, secret: <redacted> }");
    }
}
