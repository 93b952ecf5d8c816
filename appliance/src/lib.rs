//! `cachet-appliance`: a member of a cachet cluster that runs on a
//! microcontroller and keeps a replica of the routers' TLS session cache,
//! so that a router that restarts gets its sessions back even when every
//! other router restarted too.
//!
//! # Layers
//!
//! From the wire up, each layer owned by whoever owns its memory:
//!
//! * **Device** (the firmware's): an Ethernet MAC, a SLIP or PPP link, or
//!   anything else that implements [`smoltcp::phy::Device`].
//! * **IP and UDP** ([`smoltcp`], the firmware's): the firmware owns the
//!   [`Interface`](smoltcp::iface::Interface), the
//!   [`SocketSet`](smoltcp::iface::SocketSet) and the buffers of one UDP socket, and
//!   polls the interface as smoltcp asks. The appliance only touches that
//!   one socket, through its [`SocketHandle`](smoltcp::iface::SocketHandle).
//! * **Replication** ([`cachet_core::sync::Node`], inside the
//!   [`Appliance`]): opens and authenticates the routers' sealed datagrams
//!   and applies their sets and deletes, with replay protection and
//!   tombstones; seals what the appliance sends.
//! * **Replica** ([`cachet_core::Cache`], over the firmware's storage):
//!   capacity and block size are the firmware's choice (see
//!   [`cachet_core::cache::Layout::total_bytes`] for the bytes they cost).
//!   Entries expire by the appliance's own clock: lookups never return an
//!   expired one and a bounded sweep frees them a few slots per poll.
//!
//! On top of those the [`Appliance`] does what a router's master does:
//!
//! * answers a router's bootstrap request with every live entry of the
//!   replica ([`cachet_core::sync::BootstrapAnswer`], shared with the
//!   router), [`Timing::burst`] datagrams per [`Timing::burst_pause`] so
//!   that a poll never blocks and the router's socket keeps up, then the end
//!   marker;
//! * greets its configured peers at start with a hello and a bootstrap
//!   request, again every [`Timing::greeting_interval`] until each answers
//!   to the end, so that an appliance that restarts refills from the
//!   routers.
//!
//! It never originates changes: it serves no TLS.
//!
//! # Driving it
//!
//! Like smoltcp and quinn-proto it has no clock and does no I/O of its own:
//!
//! ```text
//! loop {
//!     let now = clock.now(); // a cachet_core::Instant, in milliseconds
//!     appliance.poll_stack(now, &mut iface, &mut device, &mut sockets);
//!     // Sleep until the earlier of these, or until the device has a packet.
//!     let at = appliance.poll_at();
//!     let smoltcp_at = iface.poll_at(cachet_appliance::smoltcp_instant(now), &sockets);
//! }
//! ```
//!
//! [`Appliance::poll_stack`] takes packets in one at a time and hands each
//! to the replica before the next, so the socket's receive buffer cannot
//! overflow in a burst; [`Appliance::poll`] is the socket-level step for a
//! caller that polls the interface itself.
//!
//! The firmware provides the storage of the replica, a monotonic clock in
//! milliseconds, the device, the cluster key, and fresh random bytes for
//! the sender id and the cache's hash key at every start. See
//! `docs/APPLIANCE.md` for the sizes and `appliance/firmware/` for an
//! example.
//!
//! Logging goes through defmt with the `defmt` feature, and nowhere
//! otherwise. The crate is `no_std`, allocates nothing and contains no
//! `unsafe`.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

#[macro_use]
mod log;
mod appliance;
mod counters;

#[cfg(test)]
mod tests;

pub use cachet_core;
pub use smoltcp;

use cachet_core::cache::FormatError;
use cachet_core::sync::{Node, Settings};
use cachet_core::wire::{ClusterKey, DEFAULT_DATAGRAM_LEN};
use cachet_core::{Duration, Instant};
use smoltcp::socket::udp::BindError;
use smoltcp::wire::IpEndpoint;

pub use appliance::Appliance;
pub use counters::ApplianceCounters;

/// Largest sync datagram sent or accepted: the routers' size, which an
/// Ethernet MTU carries unfragmented.
pub const MTU: usize = DEFAULT_DATAGRAM_LEN;
/// Configured peers an appliance greets at most.
pub const MAX_PEERS: usize = 8;
/// Bootstrap requesters that may wait while another is answered.
pub const MAX_WAITING: usize = 4;

/// The appliance's sync node: [`MTU`]-byte datagrams; 32 senders tracked
/// (a router counts once per worker process, plus its master); 256
/// remembered deletions; a 4 KiB queue, room for the about two datagrams
/// of entries a bootstrap answer keeps queued. About 11 KiB.
pub type ApplianceNode = Node<MTU, 32, 256, 4096>;

/// The timers and budgets of an appliance. The defaults are the router's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timing {
    /// How often a configured peer that has not answered is greeted again.
    pub greeting_interval: Duration,
    /// Greetings a peer gets before the appliance stops asking it.
    pub greeting_tries: u32,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
    /// Slots the sweeper looks at per run: a full pass over the replica
    /// takes `capacity / sweep_budget` runs.
    pub sweep_budget: u32,
    /// Datagrams of a bootstrap answer sent in one go...
    pub burst: u32,
    /// ...before pausing this long, so the requester's socket keeps up.
    pub burst_pause: Duration,
    /// Packets [`Appliance::poll_stack`] takes in per turn at most, so that
    /// a flood cannot starve the rest of the main loop.
    pub receive_budget: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            greeting_interval: Duration::from_secs(1),
            greeting_tries: 60,
            sweep_interval: Duration::from_millis(100),
            sweep_budget: 64,
            burst: 8,
            burst_pause: Duration::from_millis(1),
            receive_budget: 64,
        }
    }
}

/// What an appliance needs to start.
#[derive(Debug, Clone)]
pub struct Config<'p> {
    /// The cluster key: the routers' `cache-udp-key`.
    pub key: ClusterKey,
    /// Fresh random bytes at every start: with the sequence number it forms
    /// the AEAD nonce, which must never repeat under the key.
    pub sender: u64,
    /// The replica's capacity and block size (at least the routers' largest
    /// session value) and a fresh random hash key.
    pub cache: cachet_core::Config,
    /// The UDP port to listen and answer on: what the routers list as a
    /// `cache-udp-node`.
    pub port: u16,
    /// Routers to ask for their sessions at start (their
    /// `cache-udp-server` addresses), at most [`MAX_PEERS`].
    pub peers: &'p [IpEndpoint],
    /// The sync node's settings.
    pub sync: Settings,
    /// Timers and budgets.
    pub timing: Timing,
}

impl<'p> Config<'p> {
    /// A configuration with no peers to greet and the default settings.
    pub fn new(key: ClusterKey, sender: u64, cache: cachet_core::Config, port: u16) -> Self {
        Config {
            key,
            sender,
            cache,
            port,
            peers: &[],
            sync: Settings::default(),
            timing: Timing::default(),
        }
    }
}

/// Why an appliance cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The storage cannot hold a cache of the configured geometry.
    Cache(FormatError),
    /// More than [`MAX_PEERS`] peers.
    TooManyPeers,
    /// The UDP socket cannot be bound to the port.
    Bind(BindError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Cache(e) => write!(f, "replica storage: {e}"),
            Error::TooManyPeers => write!(f, "more than {MAX_PEERS} peers"),
            Error::Bind(e) => write!(f, "binding the sync port: {e}"),
        }
    }
}

impl core::error::Error for Error {}

/// smoltcp's clock reading for a cachet one, for the caller that drives
/// both from one millisecond counter.
pub fn smoltcp_instant(now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_millis(i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
}

/// What a device that carries bare IPv4 packets over an Ethernet-sized
/// link (1500 bytes, so that an [`MTU`]-byte datagram goes unfragmented)
/// tells smoltcp: a firmware's IP-level device, or a test's wire.
pub fn ip_device_capabilities() -> smoltcp::phy::DeviceCapabilities {
    let mut caps = smoltcp::phy::DeviceCapabilities::default();
    caps.medium = smoltcp::phy::Medium::Ip;
    caps.max_transmission_unit = 1500;
    caps
}
