//! Counters of one router process, kept in atomics that the stats
//! endpoints read without stopping anyone.
//!
//! With worker processes the atomics live in shared memory (one block per
//! worker, see [`crate::shared`]), so the master reads every worker's
//! figures directly; a single process keeps its block on the heap.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rustls::{HandshakeKind, ProtocolVersion, ServerConnection};

use crate::proxy::client_hello::{self, Offer, Resumption};
use crate::proxy::proxy_header::{Rejection, Source};
use crate::redis::counters::{RedisCounters, RedisFigures};
use crate::sync::pull::{PullCounters, PullFigures, Pulled};

/// A handle on one process's counters; cheap to bump from any task.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    c: &'static Counters,
}

impl Default for Metrics {
    /// Counters of their own, for a process that shares them with nobody.
    fn default() -> Self {
        Metrics::on(Box::leak(Box::default()))
    }
}

/// The atomics themselves. `repr(C)` and all-zero valid, so a block of
/// shared memory fresh from the kernel is a set of zeroed counters.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Counters {
    tls12_full: AtomicU64,
    tls12_resumed: AtomicU64,
    tls13_full: AtomicU64,
    tls13_resumed: AtomicU64,
    handshake_failures: AtomicU64,
    handshake_timeouts: AtomicU64,
    /// ClientHellos offering something to resume: a TLS 1.2 session id, or
    /// TLS 1.3 PSKs (tickets; see [`Offer::resumption`]).
    offered_session_ids: AtomicU64,
    offered_psks: AtomicU64,
    /// Connections closed for their ClientHello, by reason (also counted
    /// in `handshake_failures`).
    client_hello_malformed: AtomicU64,
    client_hello_oversized: AtomicU64,
    connections: AtomicU64,
    open_connections: AtomicU64,
    requests: AtomicU64,
    bad_gateway: AtomicU64,
    gateway_timeout: AtomicU64,
    /// PROXY protocol headers accepted (`enable-proxy-protocol`), and those
    /// of them that kept the real peer (v2 LOCAL, v1 UNKNOWN).
    proxy_headers: AtomicU64,
    proxy_headers_local: AtomicU64,
    /// Connections refused for their PROXY header, by reason.
    proxy_missing: AtomicU64,
    proxy_malformed: AtomicU64,
    proxy_timeouts: AtomicU64,
    /// Local changes not replicated: too large for a datagram, or the
    /// sync queue was full.
    sync_skipped: AtomicU64,
    /// Sessions pulled from the peers before handshakes.
    pulls: PullCounters,
    /// The Redis tier's commands, failures and latency.
    redis: RedisCounters,
    /// Stateless tickets (`ssl-session-tickets = keys`): sealed, opened,
    /// and refused by reason (see [`crate::tickets`]).
    tickets: TicketCounters,
    /// Pid of the worker serving from this block once it accepts
    /// connections; 0 before (the master waits for it).
    ready: AtomicU64,
}
crate::sys::shm::zeroable!(Counters {
    tls12_full,
    tls12_resumed,
    tls13_full,
    tls13_resumed,
    handshake_failures,
    handshake_timeouts,
    offered_session_ids,
    offered_psks,
    client_hello_malformed,
    client_hello_oversized,
    connections,
    open_connections,
    requests,
    bad_gateway,
    gateway_timeout,
    proxy_headers,
    proxy_headers_local,
    proxy_missing,
    proxy_malformed,
    proxy_timeouts,
    sync_skipped,
    pulls,
    redis,
    tickets,
    ready
});

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub tls12_full: u64,
    pub tls12_resumed: u64,
    pub tls13_full: u64,
    pub tls13_resumed: u64,
    pub handshake_failures: u64,
    pub handshake_timeouts: u64,
    pub offered_session_ids: u64,
    pub offered_psks: u64,
    pub client_hello_malformed: u64,
    pub client_hello_oversized: u64,
    pub connections: u64,
    pub open_connections: u64,
    pub requests: u64,
    pub bad_gateway: u64,
    pub gateway_timeout: u64,
    pub proxy_headers: u64,
    pub proxy_headers_local: u64,
    pub proxy_missing: u64,
    pub proxy_malformed: u64,
    pub proxy_timeouts: u64,
    pub sync_skipped: u64,
    pub pulls: PullFigures,
    pub redis: RedisFigures,
    pub tickets: TicketFigures,
}

/// What a process's ticketer did. `repr(C)`, all atomics.
#[repr(C)]
#[derive(Debug, Default)]
struct TicketCounters {
    issued: AtomicU64,
    unissued: AtomicU64,
    opened: AtomicU64,
    expired: AtomicU64,
    unknown_key: AtomicU64,
    invalid: AtomicU64,
}
crate::sys::shm::zeroable!(TicketCounters {
    issued,
    unissued,
    opened,
    expired,
    unknown_key,
    invalid
});

/// A copy of [`TicketCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TicketFigures {
    /// Tickets sealed.
    pub issued: u64,
    /// Tickets not sealed: no key for the current period.
    pub unissued: u64,
    /// Tickets opened (a resumption follows, unless rustls refuses the
    /// session for another reason: SNI, cipher suite).
    pub opened: u64,
    /// Tickets refused: sealed more than two periods ago.
    pub expired: u64,
    /// Tickets refused: a key id this router never held (another
    /// cluster's, or one it could not learn).
    pub unknown_key: u64,
    /// Tickets refused: truncated, forged or damaged.
    pub invalid: u64,
}

impl TicketFigures {
    /// Both added up.
    pub fn plus(&self, other: &TicketFigures) -> TicketFigures {
        TicketFigures {
            issued: self.issued + other.issued,
            unissued: self.unissued + other.unissued,
            opened: self.opened + other.opened,
            expired: self.expired + other.expired,
            unknown_key: self.unknown_key + other.unknown_key,
            invalid: self.invalid + other.invalid,
        }
    }
}

/// What became of one ticket the ticketer was asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketEvent {
    Issued,
    Unissued,
    Opened,
    Expired,
    UnknownKey,
    Invalid,
}

impl MetricsSnapshot {
    pub fn handshakes(&self) -> u64 {
        self.tls12_full + self.tls12_resumed + self.tls13_full + self.tls13_resumed
    }

    /// Connections closed for their ClientHello, by reason.
    pub fn client_hello_rejections(&self) -> [(client_hello::Rejection, u64); 2] {
        [
            (
                client_hello::Rejection::Malformed,
                self.client_hello_malformed,
            ),
            (
                client_hello::Rejection::Oversized,
                self.client_hello_oversized,
            ),
        ]
    }

    /// Connections refused for their PROXY header, by reason.
    pub fn proxy_rejections(&self) -> [(Rejection, u64); 3] {
        [
            (Rejection::Missing, self.proxy_missing),
            (Rejection::Malformed, self.proxy_malformed),
            (Rejection::Timeout, self.proxy_timeouts),
        ]
    }
}

/// Keeps `open_connections` right however a connection task ends.
#[derive(Debug)]
pub struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.c.open_connections.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// A handle on counters that live elsewhere (in shared memory).
    pub fn on(counters: &'static Counters) -> Metrics {
        Metrics { c: counters }
    }

    /// Forgets the connections a dead process left open: it can no longer
    /// close them, and a replacement starts with none.
    pub fn reset_open_connections(&self) {
        self.c.open_connections.store(0, Relaxed);
    }

    /// Marks the block's process as serving (its pid), or not (0).
    pub fn set_ready(&self, pid: u32) {
        self.c.ready.store(u64::from(pid), Relaxed);
    }

    /// The pid of the process serving from this block, 0 if none yet.
    pub fn ready_pid(&self) -> u32 {
        self.c.ready.load(Relaxed) as u32
    }

    /// Counts an accepted TCP connection until the guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.c.connections.fetch_add(1, Relaxed);
        self.c.open_connections.fetch_add(1, Relaxed);
        OpenConnection(self)
    }

    /// Counts a completed handshake as full or resumed, per TLS version.
    /// A HelloRetryRequest round trip is still a full handshake.
    pub fn handshake_completed(&self, connection: &ServerConnection) {
        let resumed = connection.handshake_kind() == Some(HandshakeKind::Resumed);
        let counter = match (connection.protocol_version(), resumed) {
            (Some(ProtocolVersion::TLSv1_3), false) => &self.c.tls13_full,
            (Some(ProtocolVersion::TLSv1_3), true) => &self.c.tls13_resumed,
            (_, false) => &self.c.tls12_full,
            (_, true) => &self.c.tls12_resumed,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn handshake_failed(&self) {
        self.c.handshake_failures.fetch_add(1, Relaxed);
    }

    pub fn handshake_timed_out(&self) {
        self.c.handshake_timeouts.fetch_add(1, Relaxed);
    }

    /// Counts what a ClientHello offers to resume.
    pub fn client_hello_read(&self, offer: &Offer) {
        match offer.resumption() {
            Resumption::None => {}
            Resumption::SessionId(_) => {
                self.c.offered_session_ids.fetch_add(1, Relaxed);
            }
            Resumption::Tickets(_) => {
                self.c.offered_psks.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts a connection closed for its ClientHello: a failed handshake,
    /// and why.
    pub fn client_hello_rejected(&self, reason: client_hello::Rejection) {
        self.handshake_failed();
        let counter = match reason {
            client_hello::Rejection::Malformed => &self.c.client_hello_malformed,
            client_hello::Rejection::Oversized => &self.c.client_hello_oversized,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn request(&self) {
        self.c.requests.fetch_add(1, Relaxed);
    }

    pub fn bad_gateway(&self) {
        self.c.bad_gateway.fetch_add(1, Relaxed);
    }

    pub fn gateway_timeout(&self) {
        self.c.gateway_timeout.fetch_add(1, Relaxed);
    }

    /// Counts a valid PROXY protocol header; `source` says whether it named
    /// the client or kept the real peer.
    pub fn proxy_header_accepted(&self, source: Source) {
        self.c.proxy_headers.fetch_add(1, Relaxed);
        if source == Source::Local {
            self.c.proxy_headers_local.fetch_add(1, Relaxed);
        }
    }

    /// Counts a connection closed for its PROXY protocol header.
    pub fn proxy_header_rejected(&self, reason: Rejection) {
        let counter = match reason {
            Rejection::Missing => &self.c.proxy_missing,
            Rejection::Malformed => &self.c.proxy_malformed,
            Rejection::Timeout => &self.c.proxy_timeouts,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a local change that could not be replicated.
    /// A connection's pull ended after `waited`.
    pub fn pulled(&self, pulled: Pulled, waited: std::time::Duration) {
        self.c.pulls.count(pulled, waited);
    }

    /// The Redis tier's counters of this process.
    pub fn redis(&self) -> &'static RedisCounters {
        &self.c.redis
    }

    /// Counts what the ticketer did with one ticket.
    pub fn ticket(&self, event: TicketEvent) {
        let t = &self.c.tickets;
        let counter = match event {
            TicketEvent::Issued => &t.issued,
            TicketEvent::Unissued => &t.unissued,
            TicketEvent::Opened => &t.opened,
            TicketEvent::Expired => &t.expired,
            TicketEvent::UnknownKey => &t.unknown_key,
            TicketEvent::Invalid => &t.invalid,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn sync_skipped(&self) {
        self.c.sync_skipped.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            tls12_full: self.c.tls12_full.load(Relaxed),
            tls12_resumed: self.c.tls12_resumed.load(Relaxed),
            tls13_full: self.c.tls13_full.load(Relaxed),
            tls13_resumed: self.c.tls13_resumed.load(Relaxed),
            handshake_failures: self.c.handshake_failures.load(Relaxed),
            handshake_timeouts: self.c.handshake_timeouts.load(Relaxed),
            offered_session_ids: self.c.offered_session_ids.load(Relaxed),
            offered_psks: self.c.offered_psks.load(Relaxed),
            client_hello_malformed: self.c.client_hello_malformed.load(Relaxed),
            client_hello_oversized: self.c.client_hello_oversized.load(Relaxed),
            connections: self.c.connections.load(Relaxed),
            open_connections: self.c.open_connections.load(Relaxed),
            requests: self.c.requests.load(Relaxed),
            bad_gateway: self.c.bad_gateway.load(Relaxed),
            gateway_timeout: self.c.gateway_timeout.load(Relaxed),
            proxy_headers: self.c.proxy_headers.load(Relaxed),
            proxy_headers_local: self.c.proxy_headers_local.load(Relaxed),
            proxy_missing: self.c.proxy_missing.load(Relaxed),
            proxy_malformed: self.c.proxy_malformed.load(Relaxed),
            proxy_timeouts: self.c.proxy_timeouts.load(Relaxed),
            sync_skipped: self.c.sync_skipped.load(Relaxed),
            pulls: self.c.pulls.snapshot(),
            redis: self.c.redis.snapshot(),
            tickets: {
                let t = &self.c.tickets;
                TicketFigures {
                    issued: t.issued.load(Relaxed),
                    unissued: t.unissued.load(Relaxed),
                    opened: t.opened.load(Relaxed),
                    expired: t.expired.load(Relaxed),
                    unknown_key: t.unknown_key.load(Relaxed),
                    invalid: t.invalid.load(Relaxed),
                }
            },
        }
    }
}
