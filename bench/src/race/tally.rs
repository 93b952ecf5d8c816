//! How the rounds of a ticket race ended: per round, how many of the
//! servers offered the ticket at once resumed it. One is what a cluster
//! that honours single use allows; two or more is a double resumption.

use crate::report::TicketRace;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// `per_round[k]`: rounds in which exactly `k` servers resumed.
    per_round: Vec<u64>,
    /// Rounds whose first handshake failed or issued no ticket: nothing
    /// was raced.
    pub no_ticket: u64,
}

impl Tally {
    /// For rounds racing against `rivals` servers each.
    pub fn new(rivals: usize) -> Tally {
        Tally {
            per_round: vec![0; rivals + 1],
            no_ticket: 0,
        }
    }

    /// A round in which `resumed` servers resumed the ticket.
    pub fn raced(&mut self, resumed: usize) {
        if resumed >= self.per_round.len() {
            self.per_round.resize(resumed + 1, 0);
        }
        self.per_round[resumed] += 1;
    }

    pub fn no_ticket(&mut self) {
        self.no_ticket += 1;
    }

    /// Rounds in which the ticket was offered.
    pub fn rounds(&self) -> u64 {
        self.per_round.iter().sum()
    }

    /// Rounds in which no server resumed.
    pub fn none(&self) -> u64 {
        self.per_round.first().copied().unwrap_or(0)
    }

    /// Rounds in which exactly one server resumed.
    pub fn once(&self) -> u64 {
        self.per_round.get(1).copied().unwrap_or(0)
    }

    /// Rounds in which two or more servers resumed the one ticket.
    pub fn double(&self) -> u64 {
        self.per_round.iter().skip(2).sum()
    }

    /// The rounds as the report gives them.
    pub fn report(&self) -> TicketRace {
        TicketRace {
            rounds: self.rounds(),
            resumed_per_round: self.per_round.clone(),
            resumed_nowhere: self.none(),
            resumed_once: self.once(),
            double_resumptions: self.double(),
            no_ticket: self.no_ticket,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_counted_by_resumptions() {
        let mut tally = Tally::new(2);
        for resumed in [0, 1, 1, 2, 1, 0] {
            tally.raced(resumed);
        }
        tally.no_ticket();
        assert_eq!(tally.rounds(), 6);
        assert_eq!((tally.none(), tally.once(), tally.double()), (2, 3, 1));
        assert_eq!(tally.no_ticket, 1);
        let report = tally.report();
        assert_eq!(report.resumed_per_round, [2, 3, 1]);
        assert_eq!(report.double_resumptions, 1);
        assert_eq!(report.no_ticket, 1);
        let text = report.to_text();
        assert!(text.contains("double resumptions: 1 of 6"), "{text}");
    }

    #[test]
    fn more_resumptions_than_rivals_still_count_as_double() {
        // Cannot happen with one offer per rival, but a miscount must show,
        // not panic.
        let mut tally = Tally::new(1);
        tally.raced(3);
        assert_eq!(tally.double(), 1);
        assert_eq!(tally.report().resumed_per_round, [0, 0, 0, 1]);
    }

    #[test]
    fn an_empty_tally() {
        let tally = Tally::new(2);
        assert_eq!((tally.rounds(), tally.none(), tally.double()), (0, 0, 0));
        assert_eq!(Tally::default().once(), 0);
    }
}
