//! Counters of one router process, kept in atomics that the stats
//! endpoints read without stopping anyone.
//!
//! With worker processes the atomics live in shared memory (one block per
//! worker, see [`crate::shared`]), so the master reads every worker's
//! figures directly; a single process keeps its block on the heap.

pub mod family;
pub mod pulls;
pub mod redis;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rustls::{HandshakeKind, ProtocolVersion, ServerConnection};

pub use self::family::{Family, Kind};
use self::pulls::{PullCounters, PullFigures, Pulled};
use self::redis::{RedisCounters, RedisFigures};

/// Everything one router process counts, in the order of [`TABLE`]: the
/// index of its atomic in a [`ProcessCounters`] block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Tls12Full,
    Tls12Resumed,
    Tls13Full,
    Tls13Resumed,
    HandshakeFailures,
    HandshakeTimeouts,
    /// ClientHellos offering something to resume: a TLS 1.2 session id, or
    /// TLS 1.3 PSKs (tickets; see [`crate::client_hello::Offer::resumption`]).
    OfferedSessionIds,
    OfferedPsks,
    /// Connections closed for their ClientHello, by reason (also counted
    /// in `HandshakeFailures`).
    ClientHelloMalformed,
    ClientHelloOversized,
    /// Stateless tickets (`ssl-session-tickets = keys`): sealed...
    TicketsIssued,
    /// ...not sealed: no key for the current period...
    TicketsUnissued,
    /// ...opened (a resumption follows, unless rustls refuses the session
    /// for another reason: SNI, cipher suite)...
    TicketsOpened,
    /// ...refused: sealed more than two periods ago...
    TicketsExpired,
    /// ...refused: a key id this router never held (another cluster's, or
    /// one it could not learn)...
    TicketsUnknownKey,
    /// ...refused: truncated, forged or damaged (see [`crate::tickets`]).
    TicketsInvalid,
    /// PROXY protocol headers accepted (`enable-proxy-protocol`) that named
    /// the client, and those that kept the real peer (v2 LOCAL, v1 UNKNOWN).
    ProxyHeadersClient,
    ProxyHeadersLocal,
    /// Connections refused for their PROXY header, by reason.
    ProxyMissing,
    ProxyMalformed,
    ProxyTimeouts,
    Connections,
    OpenConnections,
    Requests,
    BadGateway,
    GatewayTimeout,
    /// Local changes not replicated: too large for a datagram, or the
    /// sync queue was full.
    SyncSkipped,
}

/// Where one metric shows: its place in the JSON document, keys joined
/// by dots (`None`: not at the top level), and its Prometheus family with
/// the values of the family's labels (`None`: not exposed).
pub struct Line {
    pub metric: Metric,
    pub json: Option<&'static str>,
    pub prometheus: Option<(&'static Family, &'static [&'static str])>,
}

impl Line {
    /// A metric neither at the JSON document's top level nor in
    /// Prometheus: one that shows elsewhere, on its own terms.
    const fn unexposed(metric: Metric) -> Line {
        Line {
            metric,
            json: None,
            prometheus: None,
        }
    }
}

impl Family {
    /// `metric` as this family's sample with label `values`, and in JSON
    /// at the dotted path `json`.
    const fn line(
        &'static self,
        metric: Metric,
        json: &'static str,
        values: &'static [&'static str],
    ) -> Line {
        Line {
            metric,
            json: Some(json),
            prometheus: Some((self, values)),
        }
    }

    /// `metric` as this family's sample with label `values`; JSON shows it
    /// elsewhere than at the top level.
    const fn line_not_in_json(
        &'static self,
        metric: Metric,
        values: &'static [&'static str],
    ) -> Line {
        Line {
            metric,
            json: None,
            prometheus: Some((self, values)),
        }
    }
}

const HANDSHAKES: Family = Family::new(
    "cachet_tls_handshakes_total",
    Kind::Counter,
    "Completed TLS handshakes by protocol version and kind.",
    &["version", "kind"],
);
const HANDSHAKE_FAILURES: Family = Family::new(
    "cachet_tls_handshake_failures_total",
    Kind::Counter,
    "TLS handshakes that failed.",
    &[],
);
const HANDSHAKE_TIMEOUTS: Family = Family::new(
    "cachet_tls_handshake_timeouts_total",
    Kind::Counter,
    "TLS handshakes that did not finish in time.",
    &[],
);
const RESUMPTION_OFFERED: Family = Family::new(
    "cachet_tls_resumption_offered_total",
    Kind::Counter,
    "ClientHellos offering a session to resume: a TLS 1.2 session id from a client without TLS 1.3, or TLS 1.3 PSKs.",
    &["kind"],
);
const CLIENT_HELLO_REJECTED: Family = Family::new(
    "cachet_tls_client_hello_rejected_total",
    Kind::Counter,
    "Connections closed for their ClientHello, by reason (also counted as failed handshakes).",
    &["reason"],
);
const TICKETS: Family = Family::new(
    "cachet_tls_tickets_total",
    Kind::Counter,
    "Stateless TLS tickets (ssl-session-tickets = keys): issued, not issued (no key for the \
     period), opened, and refused by reason (expired: sealed more than two periods ago; \
     unknown_key; invalid).",
    &["outcome"],
);
const PROXY_HEADERS: Family = Family::new(
    "cachet_proxy_protocol_headers_total",
    Kind::Counter,
    "Valid PROXY protocol headers, by whether they named the client or kept the real peer.",
    &["source"],
);
const PROXY_REJECTED: Family = Family::new(
    "cachet_proxy_protocol_rejected_total",
    Kind::Counter,
    "Connections closed for their PROXY protocol header, by reason.",
    &["reason"],
);
const CONNECTIONS: Family = Family::new(
    "cachet_connections_total",
    Kind::Counter,
    "Client TCP connections accepted.",
    &[],
);
const OPEN_CONNECTIONS: Family = Family::new(
    "cachet_open_connections",
    Kind::Gauge,
    "Client connections open now.",
    &[],
);
const REQUESTS: Family = Family::new(
    "cachet_http_requests_total",
    Kind::Counter,
    "HTTP requests received from clients.",
    &[],
);
const HTTP_ERRORS: Family = Family::new(
    "cachet_http_errors_total",
    Kind::Counter,
    "Requests answered by the router itself because of a backend problem.",
    &["status"],
);

/// Every metric, where it shows in JSON and Prometheus: the one list of
/// names. Lines of one family follow each other, in the order Prometheus
/// lists them.
pub const TABLE: [Line; 27] = {
    use Metric::*;
    [
        HANDSHAKES.line(Tls12Full, "tls.handshakes.tls12.full", &["1.2", "full"]),
        HANDSHAKES.line(
            Tls12Resumed,
            "tls.handshakes.tls12.resumed",
            &["1.2", "resumed"],
        ),
        HANDSHAKES.line(Tls13Full, "tls.handshakes.tls13.full", &["1.3", "full"]),
        HANDSHAKES.line(
            Tls13Resumed,
            "tls.handshakes.tls13.resumed",
            &["1.3", "resumed"],
        ),
        HANDSHAKE_FAILURES.line(HandshakeFailures, "tls.failures", &[]),
        HANDSHAKE_TIMEOUTS.line(HandshakeTimeouts, "tls.timeouts", &[]),
        RESUMPTION_OFFERED.line(
            OfferedSessionIds,
            "tls.offered.tls12_session_id",
            &["tls12_session_id"],
        ),
        RESUMPTION_OFFERED.line(OfferedPsks, "tls.offered.tls13_psk", &["tls13_psk"]),
        CLIENT_HELLO_REJECTED.line(
            ClientHelloMalformed,
            "tls.client_hello_rejected.malformed",
            &["malformed"],
        ),
        CLIENT_HELLO_REJECTED.line(
            ClientHelloOversized,
            "tls.client_hello_rejected.oversized",
            &["oversized"],
        ),
        TICKETS.line(TicketsIssued, "tls.tickets.issued", &["issued"]),
        TICKETS.line(TicketsUnissued, "tls.tickets.unissued", &["unissued"]),
        TICKETS.line(TicketsOpened, "tls.tickets.opened", &["opened"]),
        TICKETS.line(TicketsExpired, "tls.tickets.refused.expired", &["expired"]),
        TICKETS.line(
            TicketsUnknownKey,
            "tls.tickets.refused.unknown_key",
            &["unknown_key"],
        ),
        TICKETS.line(TicketsInvalid, "tls.tickets.refused.invalid", &["invalid"]),
        // JSON shows all headers (`proxy_protocol.headers`, added up by
        // `render_json`) and the local ones.
        PROXY_HEADERS.line_not_in_json(ProxyHeadersClient, &["client"]),
        PROXY_HEADERS.line(ProxyHeadersLocal, "proxy_protocol.local", &["local"]),
        PROXY_REJECTED.line(
            ProxyMissing,
            "proxy_protocol.rejected.missing",
            &["missing"],
        ),
        PROXY_REJECTED.line(
            ProxyMalformed,
            "proxy_protocol.rejected.malformed",
            &["malformed"],
        ),
        PROXY_REJECTED.line(
            ProxyTimeouts,
            "proxy_protocol.rejected.timeout",
            &["timeout"],
        ),
        // Per worker in JSON (see `render_json`).
        CONNECTIONS.line_not_in_json(Connections, &[]),
        OPEN_CONNECTIONS.line_not_in_json(OpenConnections, &[]),
        REQUESTS.line(Requests, "http.requests", &[]),
        HTTP_ERRORS.line(BadGateway, "http.bad_gateway", &["502"]),
        HTTP_ERRORS.line(GatewayTimeout, "http.gateway_timeout", &["504"]),
        // In the JSON `sync` object, when replication is on.
        Line::unexposed(SyncSkipped),
    ]
};

// `Metric` indexes `TABLE`: a line out of the enum's order does not
// compile.
assert_indexed_in_order!(TABLE, metric);

/// A handle on one process's counters; cheap to bump from any task.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    c: &'static ProcessCounters,
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
pub struct ProcessCounters {
    /// One per [`Metric`].
    counts: [AtomicU64; TABLE.len()],
    /// Sessions pulled from the peers before handshakes.
    pulls: PullCounters,
    /// The Redis tier's commands, failures and latency.
    redis: RedisCounters,
    /// Pid of the worker serving from this block once it accepts
    /// connections; 0 before (the master waits for it).
    ready: AtomicU64,
}
crate::sys::shm::zeroable!(ProcessCounters {
    counts,
    pulls,
    redis,
    ready
});

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    counts: [u64; TABLE.len()],
    pub pulls: PullFigures,
    pub redis: RedisFigures,
}

impl MetricsSnapshot {
    pub fn get(&self, metric: Metric) -> u64 {
        self.counts[metric as usize]
    }

    /// The same figures with `metric` set to `value` (for tests of what
    /// renders them).
    pub fn with(mut self, metric: Metric, value: u64) -> MetricsSnapshot {
        self.counts[metric as usize] = value;
        self
    }

    /// Every metric's line in [`TABLE`] with its count.
    pub fn lines(&self) -> impl Iterator<Item = (&'static Line, u64)> + '_ {
        TABLE.iter().map(|line| (line, self.get(line.metric)))
    }

    /// Both added up.
    pub fn plus(&self, other: &MetricsSnapshot) -> MetricsSnapshot {
        MetricsSnapshot {
            counts: std::array::from_fn(|i| self.counts[i] + other.counts[i]),
            pulls: self.pulls.plus(&other.pulls),
            redis: self.redis.plus(&other.redis),
        }
    }

    pub fn handshakes(&self) -> u64 {
        [
            Metric::Tls12Full,
            Metric::Tls12Resumed,
            Metric::Tls13Full,
            Metric::Tls13Resumed,
        ]
        .into_iter()
        .map(|metric| self.get(metric))
        .sum()
    }

    /// Valid PROXY protocol headers, whatever they named.
    pub fn proxy_headers(&self) -> u64 {
        self.get(Metric::ProxyHeadersClient) + self.get(Metric::ProxyHeadersLocal)
    }
}

/// Something that happened to a connection which one metric counts (what a
/// ClientHello offers, a PROXY header's source, why either was refused).
/// Implemented where the outcome is decided, which knows its metric, so
/// that the counters need not know the modules that produce them.
pub trait Outcome {
    /// The metric counting it; `None` when nothing is counted (a
    /// ClientHello offering nothing to resume).
    fn metric(&self) -> Option<Metric>;
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

/// Keeps `open_connections` right however a connection task ends.
#[derive(Debug)]
pub struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0
            .counter(Metric::OpenConnections)
            .fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// A handle on counters that live elsewhere (in shared memory).
    pub fn on(counters: &'static ProcessCounters) -> Metrics {
        Metrics { c: counters }
    }

    fn counter(&self, metric: Metric) -> &AtomicU64 {
        &self.c.counts[metric as usize]
    }

    fn count(&self, metric: Metric) {
        self.counter(metric).fetch_add(1, Relaxed);
    }

    /// Forgets the connections a dead process left open: it can no longer
    /// close them, and a replacement starts with none.
    pub fn reset_open_connections(&self) {
        self.counter(Metric::OpenConnections).store(0, Relaxed);
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
        self.count(Metric::Connections);
        self.count(Metric::OpenConnections);
        OpenConnection(self)
    }

    /// Counts a completed handshake as full or resumed, per TLS version.
    /// A HelloRetryRequest round trip is still a full handshake.
    pub fn handshake_completed(&self, connection: &ServerConnection) {
        let resumed = connection.handshake_kind() == Some(HandshakeKind::Resumed);
        self.count(match (connection.protocol_version(), resumed) {
            (Some(ProtocolVersion::TLSv1_3), false) => Metric::Tls13Full,
            (Some(ProtocolVersion::TLSv1_3), true) => Metric::Tls13Resumed,
            (_, false) => Metric::Tls12Full,
            (_, true) => Metric::Tls12Resumed,
        });
    }

    pub fn handshake_failed(&self) {
        self.count(Metric::HandshakeFailures);
    }

    pub fn handshake_timed_out(&self) {
        self.count(Metric::HandshakeTimeouts);
    }

    /// Counts what a ClientHello offers to resume, if anything.
    pub fn client_hello_read(&self, offer: &impl Outcome) {
        self.counted(offer);
    }

    /// Counts a connection closed for its ClientHello: a failed handshake,
    /// and why.
    pub fn client_hello_rejected(&self, reason: impl Outcome) {
        self.handshake_failed();
        self.counted(&reason);
    }

    /// Counts `outcome` under its metric, if it has one.
    fn counted(&self, outcome: &impl Outcome) {
        if let Some(metric) = outcome.metric() {
            self.count(metric);
        }
    }

    pub fn request(&self) {
        self.count(Metric::Requests);
    }

    pub fn bad_gateway(&self) {
        self.count(Metric::BadGateway);
    }

    pub fn gateway_timeout(&self) {
        self.count(Metric::GatewayTimeout);
    }

    /// Counts a valid PROXY protocol header by what it named (the client,
    /// or the real peer kept).
    pub fn proxy_header_accepted(&self, source: impl Outcome) {
        self.counted(&source);
    }

    /// Counts a connection closed for its PROXY protocol header.
    pub fn proxy_header_rejected(&self, reason: impl Outcome) {
        self.counted(&reason);
    }

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
        self.count(match event {
            TicketEvent::Issued => Metric::TicketsIssued,
            TicketEvent::Unissued => Metric::TicketsUnissued,
            TicketEvent::Opened => Metric::TicketsOpened,
            TicketEvent::Expired => Metric::TicketsExpired,
            TicketEvent::UnknownKey => Metric::TicketsUnknownKey,
            TicketEvent::Invalid => Metric::TicketsInvalid,
        });
    }

    /// Counts a local change that could not be replicated.
    pub fn sync_skipped(&self) {
        self.count(Metric::SyncSkipped);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            counts: std::array::from_fn(|i| self.c.counts[i].load(Relaxed)),
            pulls: self.c.pulls.snapshot(),
            redis: self.c.redis.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_whole_and_fully_labelled() {
        for line in TABLE {
            if let Some((family, values)) = line.prometheus {
                assert_eq!(family.labels.len(), values.len(), "{:?}", line.metric);
            }
        }
        // A family's lines follow each other, so that its header is
        // written once.
        let names: Vec<&str> = TABLE
            .iter()
            .filter_map(|line| Some(line.prometheus?.0.name))
            .collect();
        for (i, name) in names.iter().enumerate() {
            assert!(
                !names[..i].contains(name) || names[i - 1] == *name,
                "{name} split"
            );
        }
    }
}
