//! Error lines on stderr, each in one write(2).
//!
//! Rust's stderr is unbuffered and `eprintln!` writes a line piece by
//! piece (and panics when stderr is closed). A script reading the bench's
//! stderr next to other processes' output must see its lines whole, so each
//! is formatted into a buffer first, as the router's own lines are.

use std::io::{self, Write};

/// Writes the formatted line and a newline to stderr in one write(2).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(::std::format_args!($($arg)*))
    };
}

/// What [`say!`] expands to. A line that cannot be written is dropped:
/// there is nowhere left to report it.
pub(crate) fn line(line: std::fmt::Arguments<'_>) {
    let _ = io::stderr().write_all(format!("{line}\n").as_bytes());
}
