//! cachet: an HTTPS router whose TLS session cache outlives any one connection,
//! process or node.
//!
//! The binary (`src/main.rs`) only parses the command line, sets up logging and
//! hands a validated [`config::Config`] to [`router::run`]. Everything else lives
//! in this library so that the master/worker process model, the benchmarks and
//! the end-to-end tests can reach the same code. (The fuzz targets exercise
//! `cachet-core`, where the parsers of untrusted bytes live.)

pub mod access_log;
pub mod check;
pub mod clock;
pub mod config;
pub mod hex;
pub mod latency;
pub mod limits;
pub mod lines;
pub mod listen;
pub mod master;
pub mod metrics;
pub mod proxy;
pub mod redis;
pub mod reload;
pub mod robust_lock;
pub mod router;
pub mod session_key;
pub mod shared;
pub mod shm;
pub mod shutdown;
pub mod stats;
pub mod status_line;
pub mod store;
pub mod sync;
pub mod systemd;
pub mod tickets;
pub mod tls;
pub mod uwsgi;
pub mod worker;
