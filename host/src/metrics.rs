//! Counters of this router process, kept in atomics that the stats
//! endpoints read without stopping anyone.
//!
//! Each worker process will own one `Metrics`; the master then adds them up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rustls::{HandshakeKind, ProtocolVersion, ServerConnection};

/// Live counters; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    tls12_full: AtomicU64,
    tls12_resumed: AtomicU64,
    tls13_full: AtomicU64,
    tls13_resumed: AtomicU64,
    handshake_failures: AtomicU64,
    handshake_timeouts: AtomicU64,
    connections: AtomicU64,
    open_connections: AtomicU64,
    requests: AtomicU64,
    bad_gateway: AtomicU64,
    gateway_timeout: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub tls12_full: u64,
    pub tls12_resumed: u64,
    pub tls13_full: u64,
    pub tls13_resumed: u64,
    pub handshake_failures: u64,
    pub handshake_timeouts: u64,
    pub connections: u64,
    pub open_connections: u64,
    pub requests: u64,
    pub bad_gateway: u64,
    pub gateway_timeout: u64,
}

impl MetricsSnapshot {
    pub fn handshakes(&self) -> u64 {
        self.tls12_full + self.tls12_resumed + self.tls13_full + self.tls13_resumed
    }
}

/// Keeps `open_connections` right however a connection task ends.
#[derive(Debug)]
pub struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// Counts an accepted TCP connection until the guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections.fetch_add(1, Relaxed);
        self.open_connections.fetch_add(1, Relaxed);
        OpenConnection(self)
    }

    /// Counts a completed handshake as full or resumed, per TLS version.
    /// A HelloRetryRequest round trip is still a full handshake.
    pub fn handshake_completed(&self, connection: &ServerConnection) {
        let resumed = connection.handshake_kind() == Some(HandshakeKind::Resumed);
        let counter = match (connection.protocol_version(), resumed) {
            (Some(ProtocolVersion::TLSv1_3), false) => &self.tls13_full,
            (Some(ProtocolVersion::TLSv1_3), true) => &self.tls13_resumed,
            (_, false) => &self.tls12_full,
            (_, true) => &self.tls12_resumed,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Relaxed);
    }

    pub fn handshake_timed_out(&self) {
        self.handshake_timeouts.fetch_add(1, Relaxed);
    }

    pub fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub fn bad_gateway(&self) {
        self.bad_gateway.fetch_add(1, Relaxed);
    }

    pub fn gateway_timeout(&self) {
        self.gateway_timeout.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            tls12_full: self.tls12_full.load(Relaxed),
            tls12_resumed: self.tls12_resumed.load(Relaxed),
            tls13_full: self.tls13_full.load(Relaxed),
            tls13_resumed: self.tls13_resumed.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Relaxed),
            connections: self.connections.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bad_gateway: self.bad_gateway.load(Relaxed),
            gateway_timeout: self.gateway_timeout.load(Relaxed),
        }
    }
}
