//! `CLOCK_MONOTONIC` as a number: std's `Instant` reads the same clock but
//! never shows its value, which the cache's timeline (shared by every
//! process on the machine) and systemd's `MONOTONIC_USEC` need.

/// `CLOCK_MONOTONIC` in microseconds.
pub fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through a pointer to a
    // live, properly aligned local; CLOCK_MONOTONIC is always supported on
    // Linux, so the call cannot fail.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000) + (ts.tv_nsec as u64) / 1000
}
