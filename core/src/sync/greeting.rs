//! Greeting: how a node that starts makes itself known and refills.
//!
//! A node that starts says hello to each peer it was configured with and
//! asks it for its live entries (a bootstrap request), then again every
//! `interval` until that peer answers to the end marker, at most `tries`
//! times: a peer may be down, or a datagram lost. [`Greetings`] keeps that
//! schedule for any kind of address `A` (a router's socket address, an
//! appliance's smoltcp endpoint) without a socket or a clock: the caller
//! asks which peer is [`Greetings::due`], sends the two control messages
//! ([`super::ControlKind::Hello`], [`super::ControlKind::BootstrapRequest`])
//! and reports it with [`Greetings::greeted`]; a
//! [`super::Control::bootstrap_end`] from a peer goes to
//! [`Greetings::answered`].

use crate::time::{Duration, Instant};

/// What a greeting sent did to its peer's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Greeted {
    /// Greeted again at this instant unless it answers first.
    Again(Instant),
    /// That was the last try: the peer is no longer greeted.
    GaveUp,
}

#[derive(Debug, Clone, Copy)]
struct Greeting<A> {
    peer: A,
    tries: u32,
    /// When to greet it next; `None` once it answered or was given up.
    due: Option<Instant>,
}

/// The greeting schedule of up to `N` configured peers.
#[derive(Debug)]
pub struct Greetings<A, const N: usize> {
    peers: heapless::Vec<Greeting<A>, N>,
    interval: Duration,
    tries: u32,
}

impl<A: Copy + PartialEq, const N: usize> Greetings<A, N> {
    /// Greets each of `peers` at once, then every `interval`, `tries`
    /// times at most. `Err` when there are more than `N`.
    pub fn new(peers: &[A], interval: Duration, tries: u32) -> Result<Self, TooManyPeers> {
        let mut greetings = heapless::Vec::new();
        for &peer in peers {
            greetings
                .push(Greeting {
                    peer,
                    tries: 0,
                    due: Some(Instant::ZERO),
                })
                .map_err(|_| TooManyPeers)?;
        }
        Ok(Greetings {
            peers: greetings,
            interval,
            tries,
        })
    }

    /// A peer whose greeting is due at `now`, if any. Greet it, then call
    /// [`Greetings::greeted`]; ask again until `None`.
    pub fn due(&self, now: Instant) -> Option<A> {
        self.peers
            .iter()
            .find(|g| g.due.is_some_and(|due| due <= now))
            .map(|g| g.peer)
    }

    /// The greeting to `peer` went out at `now`.
    pub fn greeted(&mut self, peer: A, now: Instant) -> Greeted {
        let Some(greeting) = self.peers.iter_mut().find(|g| g.peer == peer) else {
            return Greeted::GaveUp;
        };
        greeting.tries += 1;
        if greeting.tries < self.tries {
            // Never due again at the same instant, whatever the interval.
            let next = now + self.interval.max(Duration::from_millis(1));
            greeting.due = Some(next);
            Greeted::Again(next)
        } else {
            greeting.due = None;
            Greeted::GaveUp
        }
    }

    /// `peer` finished answering our bootstrap request: no more greetings
    /// to it. Whether it was still being greeted.
    pub fn answered(&mut self, peer: A) -> bool {
        self.peers
            .iter_mut()
            .find(|g| g.peer == peer)
            .is_some_and(|g| g.due.take().is_some())
    }

    /// Whether `peer` is one of the configured peers.
    pub fn is_configured(&self, peer: A) -> bool {
        self.peers.iter().any(|g| g.peer == peer)
    }

    /// The next instant a greeting falls due, if any is still scheduled.
    pub fn poll_at(&self) -> Option<Instant> {
        self.peers.iter().filter_map(|g| g.due).min()
    }
}

/// More configured peers than a [`Greetings`] has room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooManyPeers;

impl core::fmt::Display for TooManyPeers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("more configured peers than there is room for")
    }
}

impl core::error::Error for TooManyPeers {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_greeted_every_interval_until_they_answer_or_tries_run_out() {
        let second = Duration::from_secs(1);
        let mut greetings: Greetings<u8, 2> = Greetings::new(&[1, 2], second, 3).unwrap();
        let at = Instant::from_millis;
        assert_eq!(greetings.due(at(0)), Some(1));
        assert_eq!(greetings.greeted(1, at(0)), Greeted::Again(at(1_000)));
        assert_eq!(greetings.due(at(0)), Some(2));
        greetings.greeted(2, at(0));
        assert_eq!(greetings.due(at(999)), None);
        assert_eq!(greetings.poll_at(), Some(at(1_000)));

        // 1 answers; 2 is greeted until its third try, then given up.
        assert!(greetings.answered(1));
        assert!(!greetings.answered(1), "answered once");
        assert_eq!(greetings.due(at(1_000)), Some(2));
        assert_eq!(greetings.greeted(2, at(1_000)), Greeted::Again(at(2_000)));
        assert_eq!(greetings.greeted(2, at(2_000)), Greeted::GaveUp);
        assert_eq!(greetings.due(at(10_000)), None);
        assert_eq!(greetings.poll_at(), None);
        assert!(greetings.is_configured(2) && !greetings.is_configured(3));
        assert_eq!(
            Greetings::<u8, 1>::new(&[1, 2], second, 3).unwrap_err(),
            TooManyPeers
        );
    }
}
