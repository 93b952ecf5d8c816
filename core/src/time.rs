//! The cache's own clock: milliseconds on a monotonic timeline chosen by the
//! caller.
//!
//! `cachet-core` never reads a clock. Every operation that depends on time
//! takes `now` as an [`Instant`], so the same code runs against
//! `CLOCK_MONOTONIC` in the router (shared by every process on the machine),
//! a hardware timer on an appliance, or a fake clock in a test.
//!
//! Lifetimes that cross the network travel as a [`Duration`] (time remaining),
//! never as an `Instant`: two machines' timelines have unrelated origins.

use core::ops::{Add, Sub};

/// A point on the caller's monotonic millisecond timeline.
///
/// The origin is arbitrary (boot, process start, zero in a test); only
/// differences between instants of the same timeline mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    millis: u64,
}

impl Instant {
    /// The origin of the timeline.
    pub const ZERO: Instant = Instant { millis: 0 };

    /// The instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant { millis }
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.millis.saturating_sub(earlier.millis))
    }
}

/// A span of time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration {
    millis: u64,
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration { millis: 0 };

    /// A span of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    /// A span of `secs` seconds (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            millis: secs.saturating_mul(1000),
        }
    }

    /// The span in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// Whether this span is empty.
    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of the timeline rather than wrapping, so an
    /// absurd lifetime means "never expires" instead of "already expired".
    fn add(self, rhs: Duration) -> Instant {
        Instant::from_millis(self.millis.saturating_add(rhs.millis))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturates at zero: a deadline in the past leaves no time.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// Shorthands for the self-checks and the unit tests, which spell out many
/// instants and lifetimes.
#[cfg(any(test, feature = "selfcheck"))]
pub(crate) mod shorthand {
    use super::{Duration, Instant};

    /// The instant `ms` milliseconds after the origin.
    pub(crate) fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// `ms` milliseconds.
    pub(crate) fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// `s` seconds.
    pub(crate) fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let late = Instant::from_millis(u64::MAX - 1);
        assert_eq!(
            late + Duration::from_millis(10),
            Instant::from_millis(u64::MAX)
        );
        assert_eq!(
            Instant::from_millis(5) - Instant::from_millis(9),
            Duration::ZERO
        );
        assert_eq!(Duration::from_secs(300).as_millis(), 300_000);
    }
}
