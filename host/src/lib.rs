//! cachet: an HTTPS router whose TLS session cache outlives any one connection,
//! process or node.
//!
//! The binary (`src/main.rs`) only parses the command line, sets up logging and
//! hands a validated [`config::Config`] to [`mode::run`]. Everything else lives
//! in this library so that the master/worker process model, the benchmarks and
//! the integration tests can reach the same code. (The fuzz targets exercise
//! `cachet-core`, where the parsers of untrusted bytes live.)

// `unsafe` lives in `sys` alone, behind safe functions.
#![deny(unsafe_code)]

/// Fails the build unless `$table[i].$index as usize == i` for every line:
/// a table indexed by an enum (options, metrics) must list the enum's
/// values once each, in order, or a lookup would read another line.
macro_rules! assert_indexed_in_order {
    ($table:expr, $index:ident) => {
        const _: () = {
            let mut i = 0;
            while i < $table.len() {
                assert!(
                    $table[i].$index as usize == i,
                    concat!(stringify!($table), " is out of its enum's order")
                );
                i += 1;
            }
        };
    };
}

pub mod access_log;
pub mod check;
pub(crate) mod client_hello;
pub mod clock;
pub mod config;
pub mod field_lines;
pub(crate) mod hex;
pub(crate) mod latency;
pub(crate) mod limits;
pub mod lines;
pub(crate) mod listen;
pub(crate) mod metrics;
pub mod mode;
pub(crate) mod proxy;
pub(crate) mod redis;
pub(crate) mod reload;
pub(crate) mod session_key;
pub(crate) mod session_writes;
pub mod shared;
pub(crate) mod shutdown;
pub(crate) mod stats;
pub(crate) mod status_line;
pub(crate) mod store;
pub mod sync;
#[allow(unsafe_code)]
pub mod sys;
pub(crate) mod systemd;
pub(crate) mod tickets;
pub(crate) mod tls;
pub mod uwsgi;
