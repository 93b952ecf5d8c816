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

pub mod access_log;
pub mod bench;
pub mod check;
pub mod clock;
pub mod config;
pub mod hex;
pub mod latency;
pub mod limits;
pub mod lines;
pub mod listen;
pub mod metrics;
pub mod mode;
pub mod proxy;
pub mod redis;
pub mod reload;
pub mod session_key;
pub mod shared;
pub mod shutdown;
pub mod stats;
pub mod status_line;
pub mod store;
pub mod sync;
#[allow(unsafe_code)]
pub mod sys;
pub mod systemd;
pub mod tickets;
pub mod tls;
pub mod uwsgi;
