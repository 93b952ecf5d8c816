//! `cachet-core`: the parts of cachet that need no operating system.
//!
//! * [`cache`]: a fixed-capacity TLS session cache with expiry, laid out in
//!   a byte region the caller provides (shared memory in the router, a
//!   `static` on an appliance).
//! * [`wire`]: the sync datagram, sealed with an AEAD under the cluster key:
//!   a zero-copy checked [`wire::Packet`] view and a semantic [`wire::Repr`]
//!   with `parse` and `emit`.
//! * [`hello`]: what a TLS client offers in its ClientHello (SNI name,
//!   TLS 1.2 session id, TLS 1.3 PSK identities), reassembled from its
//!   records and read with every length checked, before the TLS library
//!   decides anything.
//! * [`sync`]: a sans-IO replication node: it turns local cache changes into
//!   datagrams and peers' datagrams into cache operations, with replay
//!   protection, and never touches a socket.
//! * [`tickets`]: cluster ticket keys: stateless TLS tickets sealed under
//!   keys the cluster proposes, agrees on and rotates by period.
//! * [`time`]: the millisecond [`time::Instant`] and [`time::Duration`] every
//!   time-dependent call takes from its caller.
//! * `selfcheck` (feature `selfcheck`): named checks of all of the above that
//!   run without a heap in a few KiB of stack, for firmware (the `qemu/`
//!   Cortex-M3 image) as well as the host's unit tests.
//!
//! The crate is `#![no_std]`, allocates nothing and contains no `unsafe`.
//! Errors are small enums that say exactly what went wrong; with the `defmt`
//! feature every public type can be logged by embedded firmware.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "model"))]
extern crate std;

mod bytes;
pub mod cache;
pub mod hello;
mod redacted;
#[cfg(any(test, feature = "selfcheck"))]
pub mod selfcheck;
pub mod sync;
pub mod tickets;
pub mod time;
pub mod wire;

pub use cache::{Cache, CacheCounters, Config};
pub use time::{Duration, Instant};
