//! Sliding windows of numbers already seen from one sender.

/// How far behind the highest number a late arrival may still be accepted.
pub const WINDOW: u64 = 64;

/// Numbers seen from one sender: the highest, and a bitmap of the
/// [`WINDOW`] numbers below it. Numbering starts at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Window {
    highest: u64,
    /// Bit `i` is set when `highest - i` has been seen.
    seen: u64,
}

/// Where a number stands against a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Fresh,
    Duplicate,
    TooOld,
}

impl Window {
    pub(crate) fn check(&self, n: u64) -> Verdict {
        if n == 0 {
            return Verdict::TooOld;
        }
        if n > self.highest {
            return Verdict::Fresh;
        }
        let age = self.highest - n;
        if age >= WINDOW {
            Verdict::TooOld
        } else if self.seen & (1 << age) != 0 {
            Verdict::Duplicate
        } else {
            Verdict::Fresh
        }
    }

    /// Treats every number up to `floor` as seen: what a sender vouched
    /// fresh starts above it (see `super::challenge`).
    pub(crate) fn raise_floor(&mut self, floor: u64) {
        if floor == 0 {
            // Numbering starts at 1: nothing to cover.
        } else if floor > self.highest {
            self.highest = floor;
            self.seen = u64::MAX;
        } else if self.highest - floor < WINDOW {
            self.seen |= u64::MAX << (self.highest - floor);
        }
    }

    /// Records `n` as seen. Call only after `check` said `Fresh`.
    pub(crate) fn mark(&mut self, n: u64) {
        if n > self.highest {
            let shift = n - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = n;
        } else {
            self.seen |= 1 << (self.highest - n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_number_once_within_the_window() {
        let mut w = Window::default();
        assert_eq!(w.check(0), Verdict::TooOld);
        for n in [5, 3, 4, 100, 99, 37] {
            assert_eq!(w.check(n), Verdict::Fresh, "{n}");
            w.mark(n);
            assert_eq!(w.check(n), Verdict::Duplicate, "{n}");
        }
        assert_eq!(w.check(36), Verdict::TooOld);
        assert_eq!(w.check(98), Verdict::Fresh);
        assert_eq!(w.check(5), Verdict::TooOld);
        w.mark(1000);
        assert_eq!(w.check(999), Verdict::Fresh);
        assert_eq!(w.check(100), Verdict::TooOld);
    }

    #[test]
    fn a_raised_floor_rejects_everything_at_or_below_it() {
        let mut w = Window::default();
        w.raise_floor(0);
        assert_eq!(w, Window::default(), "floor 0: everything from 1 fresh");
        w.raise_floor(10);
        assert_eq!(w.check(10), Verdict::Duplicate);
        assert_eq!(w.check(1), Verdict::Duplicate);
        assert_eq!(w.check(11), Verdict::Fresh);
        // Below what was already seen: only the numbers up to the floor.
        w.mark(20);
        w.raise_floor(15);
        assert_eq!(w.check(15), Verdict::Duplicate);
        assert_eq!(w.check(16), Verdict::Fresh);
        assert_eq!(w.check(20), Verdict::Duplicate);
        w.raise_floor(200);
        assert_eq!(w.check(200), Verdict::Duplicate);
        assert_eq!(w.check(137), Verdict::Duplicate);
        assert_eq!(w.check(136), Verdict::TooOld);
        assert_eq!(w.check(201), Verdict::Fresh);
    }
}
