//! The ticket keys a router holds (`ssl-session-tickets = keys`): made,
//! agreed on and rotated by the cluster, held by the sync receiver.
//!
//! The receiver (the master, or a process alone) is the router's one
//! holder: it proposes keys when they fall due (`cachet_core::tickets`),
//! takes the keys peers send, sends what it holds to every peer each
//! second and to any peer that asks for a bootstrap, and publishes them,
//! sealed under the cluster key, on the shared region's board for the
//! serving processes (see [`crate::tickets`]). One holder per router means
//! one proposal per router per period and one place where a router's view
//! of the keys changes; the workers follow the board.
//!
//! At start the holder proposes nothing until a configured peer sent its
//! keys (a router that restarts rejoins the cluster's keys, and the
//! tickets it issued before still open), a configured peer finished
//! answering the bootstrap request without sending any (it has none), or
//! [`STARTUP_WAIT`] passed (no peer answers: the first router of a
//! cluster). The router serves only once it holds keys.

use cachet_core::sync::TicketKeySink;
use cachet_core::tickets::{KeyId, Offered, Rotation, TicketKey, TicketKeys, SECRET_LEN};
use cachet_core::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};
use zeroize::Zeroize;

use super::RouterNode;
use crate::clock;
use crate::shared::ticket_board::TicketBoard;

/// How long a starting router waits for its peers' keys before it makes
/// its own: a few greeting rounds (one a second), so that a peer that
/// missed the first hello and bootstrap request still has two more.
pub const STARTUP_WAIT: Duration = Duration::from_secs(3);

/// What stats show of the ticket keys: periods and ids, never a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketKeyFigures {
    /// The period length, in seconds.
    pub rotate_secs: u64,
    /// The current period, by this router's clock.
    pub period: u64,
    /// The key sealing this period's tickets.
    pub sealing: Option<KeyId>,
    /// Every key held: its period and id.
    pub keys: Vec<(u64, KeyId)>,
    /// Keys this router proposed, and keys peers sent that it took.
    pub proposed: u64,
    pub received: u64,
    /// Times the sealing key changed.
    pub rotations: u64,
    /// Keys refused from peers for a period more than two periods ahead
    /// of this router's clock.
    pub too_early: u64,
    /// Whether the startup wait is over (keys held, or made).
    pub ready: bool,
}

/// The router's ticket keys. See the module docs.
#[derive(Debug)]
pub struct TicketHolder {
    keys: TicketKeys,
    rotation: Rotation,
    board: &'static TicketBoard,
    /// Until when no key is proposed (monotonic), while starting.
    waiting_until: Option<Instant>,
    /// The keys changed since the board was last written.
    changed: bool,
    /// A key was added since the keys were last sent to the peers.
    unshared: bool,
    ready: watch::Sender<bool>,
    figures: TicketKeyFigures,
    /// The wall clock (Unix milliseconds) periods follow, and the
    /// monotonic one the startup wait runs on: the system's, or a test's.
    clocks: Clocks,
}

#[derive(Debug, Clone, Copy)]
struct Clocks {
    wall: fn() -> u64,
    monotonic: fn() -> Instant,
}

impl Clocks {
    const SYSTEM: Clocks = Clocks {
        wall: clock::unix_ms,
        monotonic: clock::now,
    };
}

impl TicketHolder {
    /// A holder with periods of `rotation` publishing on `board`; it waits
    /// for peers' keys first when `peers` are configured. The receiver of
    /// the returned watch learns when the router holds keys (see
    /// [`TicketHolder::announce_ready`]).
    pub fn new(
        rotation: Rotation,
        board: &'static TicketBoard,
        peers: bool,
    ) -> (TicketHolder, watch::Receiver<bool>) {
        Self::with_clocks(rotation, board, peers, Clocks::SYSTEM)
    }

    fn with_clocks(
        rotation: Rotation,
        board: &'static TicketBoard,
        peers: bool,
        clocks: Clocks,
    ) -> (TicketHolder, watch::Receiver<bool>) {
        let (ready, ready_rx) = watch::channel(false);
        let holder = TicketHolder {
            keys: TicketKeys::new(),
            rotation,
            board,
            waiting_until: peers.then(|| (clocks.monotonic)() + STARTUP_WAIT),
            changed: false,
            unshared: false,
            ready,
            figures: TicketKeyFigures {
                rotate_secs: rotation.length_ms() / 1000,
                ..TicketKeyFigures::default()
            },
            clocks,
        };
        (holder, ready_rx)
    }

    fn period_now(&self) -> u64 {
        self.rotation.period_at((self.clocks.wall)())
    }

    /// A key a peer sent.
    pub fn receive(&mut self, period: u64, secret: &[u8; SECRET_LEN]) {
        let now = self.period_now();
        match self.keys.offer(now, TicketKey::new(period, secret)) {
            Offered::Added => {
                self.changed = true;
                self.unshared = true;
                self.figures.received += 1;
                // A peer's keys end the startup wait.
                self.waiting_until = None;
            }
            Offered::TooEarly => {
                // Every second from such a peer: said once, then counted.
                if self.figures.too_early == 0 {
                    warn!(
                        period,
                        now,
                        "a peer sent a ticket key for a period more than two ahead: is its \
                         clock off? (counted in stats as ticket_keys.too_early from now on)"
                    );
                }
                self.figures.too_early += 1;
            }
            Offered::Known | Offered::Expired | Offered::Outranked => {}
        }
    }

    /// A configured peer finished answering our bootstrap request: if it
    /// sent no keys, it has none, and waiting longer is pointless.
    pub fn bootstrap_answered(&mut self) {
        if self.keys.is_empty() {
            self.waiting_until = None;
        }
    }

    /// Erases expired keys, proposes one when due, and publishes the keys
    /// on the board (sealed by `node`) if they changed. Call every second
    /// and after every datagram.
    pub fn tick(&mut self, node: &mut RouterNode) {
        let unix_ms = (self.clocks.wall)();
        let now = self.rotation.period_at(unix_ms);
        if self.keys.expire(now) > 0 {
            self.changed = true;
        }
        if self
            .waiting_until
            .is_some_and(|until| (self.clocks.monotonic)() >= until)
        {
            self.waiting_until = None;
            info!("no peer sent ticket keys: this router makes them");
        }
        if self.waiting_until.is_none() {
            if let Some(period) = self.rotation.due(&self.keys, unix_ms) {
                self.propose(now, period);
            }
        }
        // A new period seals under a key held since the last one: nothing
        // changed in the table, but stats must show the new epoch.
        let sealing = self.keys.sealing(now).map(|key| key.id());
        if sealing != self.figures.sealing || now != self.figures.period {
            self.changed = true;
        }
        if self.changed {
            self.publish(node, now);
        }
    }

    fn propose(&mut self, now: u64, period: u64) {
        let mut secret = [0u8; SECRET_LEN];
        if aws_lc_rs::rand::fill(&mut secret).is_err() {
            warn!("no randomness for a ticket key; trying again in a second");
            return;
        }
        let key = TicketKey::new(period, &secret);
        secret.zeroize();
        let id = key.id();
        if self.keys.offer(now, key) == Offered::Added {
            self.changed = true;
            self.unshared = true;
            self.figures.proposed += 1;
            info!(period, key = %id.fingerprint(), "ticket key proposed");
        }
    }

    /// Seals the keys onto the board and refreshes the figures.
    fn publish(&mut self, node: &mut RouterNode, now: u64) {
        let mut buf = vec![0u8; node.settings().max_datagram];
        if let Some(len) = self.datagram(node, &mut buf) {
            if let Err(error) = self.board.publish(&buf[..len]) {
                warn!("ticket keys not published to the workers: {error}");
                return;
            }
        }
        self.changed = false;
        let sealing = self.keys.sealing(now).map(|key| key.id());
        if sealing.is_some() && sealing != self.figures.sealing {
            self.figures.rotations += 1;
            info!(
                period = now,
                key = %sealing.map(|id| id.fingerprint().to_string()).unwrap_or_default(),
                "ticket keys: this period's tickets are sealed under this key"
            );
        }
        self.figures.period = now;
        self.figures.sealing = sealing;
        self.figures.keys = self.keys.iter().map(|k| (k.period(), k.id())).collect();
        self.figures.ready |= !self.keys.is_empty();
    }

    /// Tells whoever waits to serve that the router holds keys, once it
    /// does (after [`TicketHolder::tick`] published them).
    pub fn announce_ready(&self) {
        if self.figures.ready && !*self.ready.borrow() {
            self.ready.send_replace(true);
        }
    }

    /// Whether a key was added (proposed here, or from a peer) since the
    /// last call: the keys are then sent to every peer at once rather
    /// than at the next second, so that a ticket sealed under a new key
    /// an instant ago opens on whichever router the client tries next.
    pub fn take_unshared(&mut self) -> bool {
        std::mem::take(&mut self.unshared)
    }

    /// Writes the keys held as one sealed datagram into `buf`, for a peer
    /// or the board; `None` when none is held.
    pub fn datagram(&self, node: &mut RouterNode, buf: &mut [u8]) -> Option<usize> {
        node.transmit_ticket_keys(self.keys.iter().map(|k| (k.period(), k.secret())), buf)
    }

    /// The figures for stats, with the current period by this clock.
    pub fn figures(&self) -> TicketKeyFigures {
        TicketKeyFigures {
            period: self.period_now(),
            ..self.figures.clone()
        }
    }
}

impl TicketKeySink for TicketHolder {
    fn ticket_key(&mut self, period: u64, secret: &[u8; SECRET_LEN]) {
        self.receive(period, secret);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::key_file::ClusterKeys;
    use crate::shared::key_table::KeyTable;
    use crate::sync::keys::Keys;

    fn node() -> RouterNode {
        let keys = ClusterKeys::parse(&"5a".repeat(32)).unwrap();
        let keys = Keys::new(&keys, Box::leak(Box::<KeyTable>::default()), 0);
        crate::sync::new_node(keys.current()).unwrap()
    }

    fn board() -> &'static TicketBoard {
        Box::leak(Box::default())
    }

    const HOUR: u64 = 3_600_000;
    /// A second into period 500 000 of an hour each; the startup wait
    /// never ends.
    const CLOCKS: Clocks = Clocks {
        wall: || 500_000 * HOUR + 1_000,
        monotonic: || Instant::from_millis(1),
    };

    fn start(peers: bool) -> (TicketHolder, watch::Receiver<bool>, &'static TicketBoard) {
        let board = board();
        let rotation = Rotation::new(HOUR).unwrap();
        let (holder, ready) = TicketHolder::with_clocks(rotation, board, peers, CLOCKS);
        (holder, ready, board)
    }

    #[test]
    fn a_router_alone_makes_keys_at_once_and_publishes_them() {
        let (mut holder, ready, board) = start(false);
        let mut node = node();
        holder.tick(&mut node);
        assert!(!*ready.borrow(), "ready before the figures were shown");
        holder.announce_ready();
        assert!(*ready.borrow());
        assert_eq!(board.generation(), 1);
        let figures = holder.figures();
        assert_eq!((figures.proposed, figures.rotations), (1, 1));
        assert!(figures.sealing.is_some());
        assert!(
            holder.take_unshared(),
            "a proposal goes to the peers at once"
        );
        assert!(!holder.take_unshared());
        // Nothing new: nothing published again.
        holder.tick(&mut node);
        assert_eq!(board.generation(), 1);
    }

    #[test]
    fn a_starting_router_waits_for_its_peers_keys() {
        let (mut holder, ready, _) = start(true);
        let mut node = node();
        holder.tick(&mut node);
        holder.announce_ready();
        assert!(!*ready.borrow(), "proposed while waiting for its peers");
        let period = 500_000;
        holder.ticket_key(period, &[9; SECRET_LEN]);
        holder.tick(&mut node);
        holder.announce_ready();
        assert!(*ready.borrow());
        let figures = holder.figures();
        assert_eq!((figures.proposed, figures.received), (0, 1));
        assert_eq!(
            figures.sealing,
            Some(TicketKey::new(period, &[9; SECRET_LEN]).id())
        );

        // A peer that answered without keys ends the wait too.
        let (mut other, ready, _) = start(true);
        other.bootstrap_answered();
        other.tick(&mut node);
        other.announce_ready();
        assert!(*ready.borrow());
        assert_eq!(other.figures().proposed, 1);
    }
}
