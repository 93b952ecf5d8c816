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
    use super::Verdict::{Duplicate, Fresh, TooOld};
    use super::*;

    /// Asserts the window's verdict on each number.
    fn assert_verdicts(w: &Window, expected: &[(u64, Verdict)]) {
        for &(n, verdict) in expected {
            assert_eq!(w.check(n), verdict, "{n}");
        }
    }

    #[test]
    fn accepts_each_number_once_within_the_window() {
        let mut w = Window::default();
        assert_verdicts(&w, &[(0, TooOld)]);
        for n in [5, 3, 4, 100, 99, 37] {
            assert_verdicts(&w, &[(n, Fresh)]);
            w.mark(n);
            assert_verdicts(&w, &[(n, Duplicate)]);
        }
        assert_verdicts(&w, &[(36, TooOld), (98, Fresh), (5, TooOld)]);
        w.mark(1000);
        assert_verdicts(&w, &[(999, Fresh), (100, TooOld)]);
    }

    #[test]
    fn a_raised_floor_rejects_everything_at_or_below_it() {
        let mut w = Window::default();
        w.raise_floor(0);
        assert_eq!(w, Window::default(), "floor 0: everything from 1 fresh");
        w.raise_floor(10);
        assert_verdicts(&w, &[(10, Duplicate), (1, Duplicate), (11, Fresh)]);
        // Below what was already seen: only the numbers up to the floor.
        w.mark(20);
        w.raise_floor(15);
        assert_verdicts(&w, &[(15, Duplicate), (16, Fresh), (20, Duplicate)]);
        w.raise_floor(200);
        assert_verdicts(
            &w,
            &[
                (200, Duplicate),
                (137, Duplicate),
                (136, TooOld),
                (201, Fresh),
            ],
        );
    }
}
