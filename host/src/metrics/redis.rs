//! The Redis tier's figures ([`crate::redis`]): one table of events, so that the atomics,
//! the JSON stats and the Prometheus families cannot disagree on a name.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::latency::{Latency, LatencyCounters};

/// Everything the tier counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A TLS 1.2 session looked up (GET) before a handshake...
    Get,
    /// ...and found.
    GetHit,
    /// A TLS 1.3 ticket taken (GETDEL) before a handshake...
    Take,
    /// ...and found: it resumes here and nowhere else.
    TakeHit,
    /// A new session written (SET with the session's lifetime).
    Set,
    /// A lookup or write not tried: Redis was down (the local cache and the
    /// mesh serve meanwhile).
    SkippedDown,
    /// Commands that failed, by kind: no answer within
    /// `cache-redis-timeout`...
    Timeout,
    /// ...the connection refused, dropped or not made...
    Connection,
    /// ...Redis out of memory (`maxmemory` with `noeviction`)...
    Full,
    /// ...any other error reply...
    Reply,
    /// ...a value found that does not open under the cluster keys (written
    /// by another cluster, or tampered with); it is not used.
    BadValue,
    /// The connection came up (at start and after every outage).
    Connected,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::Get,
        Event::GetHit,
        Event::Take,
        Event::TakeHit,
        Event::Set,
        Event::SkippedDown,
        Event::Timeout,
        Event::Connection,
        Event::Full,
        Event::Reply,
        Event::BadValue,
        Event::Connected,
    ];

    /// The name in JSON stats.
    pub fn name(self) -> &'static str {
        match self {
            Event::Get => "gets",
            Event::GetHit => "get_hits",
            Event::Take => "takes",
            Event::TakeHit => "take_hits",
            Event::Set => "sets",
            Event::SkippedDown => "skipped_down",
            Event::Timeout => "errors_timeout",
            Event::Connection => "errors_connection",
            Event::Full => "errors_full",
            Event::Reply => "errors_reply",
            Event::BadValue => "bad_values",
            Event::Connected => "connects",
        }
    }

    /// Failures, by the `kind` label of `cachet_redis_errors_total`.
    pub fn error_kind(self) -> Option<&'static str> {
        match self {
            Event::Timeout => Some("timeout"),
            Event::Connection => Some("connection"),
            Event::Full => Some("full"),
            Event::Reply => Some("reply"),
            Event::BadValue => Some("bad_value"),
            _ => None,
        }
    }
}

/// One process's atomics, in its shared-memory metrics block. `repr(C)`,
/// valid when zeroed.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RedisCounters {
    events: [AtomicU64; Event::ALL.len()],
    /// 1 while this process's connection is up.
    up: AtomicU64,
    /// How long commands took, answered or not.
    latency: LatencyCounters,
}
crate::sys::shm::zeroable!(RedisCounters {
    events,
    up,
    latency
});

impl RedisCounters {
    pub fn count(&self, event: Event) {
        self.events[event as usize].fetch_add(1, Relaxed);
    }

    pub fn took(&self, took: Duration) {
        self.latency.record(took);
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(u64::from(up), Relaxed);
    }

    pub fn snapshot(&self) -> RedisFigures {
        RedisFigures {
            events: std::array::from_fn(|i| self.events[i].load(Relaxed)),
            connected: self.up.load(Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

/// The figures of one process, or of all added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisFigures {
    events: [u64; Event::ALL.len()],
    /// Processes whose connection is up.
    pub connected: u64,
    pub latency: Latency,
}

impl RedisFigures {
    pub fn get(&self, event: Event) -> u64 {
        self.events[event as usize]
    }

    /// Every event with its count, in [`Event::ALL`] order.
    pub fn events(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::ALL.into_iter().map(|event| (event, self.get(event)))
    }

    pub fn plus(&self, other: &RedisFigures) -> RedisFigures {
        RedisFigures {
            events: std::array::from_fn(|i| self.events[i] + other.events[i]),
            connected: self.connected + other.connected,
            latency: self.latency.plus(&other.latency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_indexes_every_event_once() {
        for (index, event) in Event::ALL.into_iter().enumerate() {
            assert_eq!(event as usize, index, "{event:?}");
        }
        let counters = RedisCounters::default();
        counters.count(Event::TakeHit);
        counters.count(Event::TakeHit);
        counters.set_up(true);
        let figures = counters.snapshot().plus(&counters.snapshot());
        assert_eq!(figures.get(Event::TakeHit), 4);
        assert_eq!(figures.connected, 2);
        assert_eq!(figures.events().filter(|(_, n)| *n > 0).count(), 1);
    }
}
