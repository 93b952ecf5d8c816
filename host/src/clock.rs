//! The clock the session cache runs on.
//!
//! `cachet-core` takes time from its caller as milliseconds on a monotonic
//! timeline. The router uses `CLOCK_MONOTONIC`: it never jumps with the wall
//! clock, and it is the same timeline in every process on the machine, which
//! matters once several worker processes share one cache.

use cachet_core::Instant;

/// Now, on the cache's timeline.
pub fn now() -> Instant {
    Instant::from_millis(monotonic_micros() / 1000)
}

/// `CLOCK_MONOTONIC` in microseconds: the cache's timeline, and the one
/// systemd expects in `MONOTONIC_USEC` when a service reloads.
pub fn monotonic_micros() -> u64 {
    crate::sys::clock::monotonic_micros()
}

/// Milliseconds since the Unix epoch: the wall clock, which only ticket
/// key periods follow (they must mean the same on every router; see
/// `cachet_core::tickets`). Everything else runs on [`now`].
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch at which the monotonic `instant` happened,
/// for figures that uWSGI reports as Unix times.
pub fn unix_seconds_at(instant: Instant) -> u64 {
    let unix_now = unix_ms();
    let ago = (now() - instant).as_millis();
    unix_now.saturating_sub(ago) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_close_to_unix_time() {
        let a = now();
        let b = now();
        assert!(b >= a);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(unix_seconds_at(b).abs_diff(unix) <= 1);
    }
}
