//! Stateless TLS tickets under the cluster's ticket keys
//! (`ssl-session-tickets = keys`).
//!
//! [`Ticketer`] is the rustls `ProducesTickets` every serving process
//! installs in its TLS configurations: rustls then seals TLS 1.2 and 1.3
//! session state into the ticket itself instead of storing it, and opens
//! whatever ticket a client offers. The keys come from the router's
//! [`TicketBoard`] (the sync receiver publishes them there, sealed under the
//! cluster key, whenever they change): each process opens the board again
//! when its generation moves, checked at every ticket, so a process never
//! uses keys older than the receiver's last publication, and never a key
//! whose period is over (the period is checked against this process's own
//! clock at every seal and open).
//!
//! The cipher and the key schedule are `cachet_core::tickets`; here are
//! only randomness, the wall clock, the board and the counters.

use std::sync::{Arc, Mutex};

use cachet_core::tickets::{Rotation, TicketError, TicketKey, TicketKeys, NONCE_LEN, OVERHEAD};
use cachet_core::wire::{Packet, Record};
use rustls::server::ProducesTickets;
use tracing::{info, warn};
use zeroize::Zeroize;

use crate::clock;
use crate::metrics::{Metrics, TicketEvent};
use crate::shared::ticket_board::TicketBoard;
use crate::sync::keys::Keys;

/// The longest ticket lifetime TLS 1.3 allows clients to be told (RFC 8446
/// §4.6.1): 7 days.
const MAX_LIFETIME_SECS: u64 = 604_800;

/// A serving process's ticketer. See the module docs.
#[derive(Debug)]
pub struct Ticketer {
    board: &'static TicketBoard,
    /// The process's cluster keys, to open the board with.
    cluster: Arc<Keys>,
    rotation: Rotation,
    loaded: Mutex<Loaded>,
    metrics: Metrics,
}

/// The keys this process opened from the board, and from which
/// publication.
#[derive(Debug, Default)]
struct Loaded {
    generation: u64,
    keys: TicketKeys,
}

impl Ticketer {
    /// A ticketer reading `board`, opening it with `cluster`, with periods
    /// of `rotation`, counting into `metrics`.
    pub fn new(
        board: &'static TicketBoard,
        cluster: Arc<Keys>,
        rotation: Rotation,
        metrics: Metrics,
    ) -> Arc<Ticketer> {
        let ticketer = Ticketer {
            board,
            cluster,
            rotation,
            loaded: Mutex::default(),
            metrics,
        };
        ticketer.with_keys(|_, keys| {
            info!(keys = keys.len(), "ticket keys loaded");
        });
        Arc::new(ticketer)
    }

    /// Runs `f` on the keys and the current period, after loading the
    /// board's keys again if it changed since.
    fn with_keys<R>(&self, f: impl FnOnce(u64, &TicketKeys) -> R) -> R {
        let now = self.rotation.period_at(clock::unix_ms());
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if self.board.generation() != loaded.generation {
            if let Some((generation, datagram)) = self.board.read() {
                match self.open_board(now, &datagram) {
                    Ok(keys) => *loaded = Loaded { generation, keys },
                    Err(error) => {
                        // Keep what works; the next publication is tried
                        // again (the receiver republishes on every change).
                        warn!("ticket keys on the shared board not loaded: {error}");
                        loaded.generation = generation;
                    }
                }
            }
        }
        loaded.keys.expire(now);
        f(now, &loaded.keys)
    }

    /// The keys a board datagram carries.
    fn open_board(&self, now: u64, datagram: &[u8]) -> Result<TicketKeys, BoardError> {
        let packet = Packet::new_checked(datagram).map_err(BoardError::Datagram)?;
        let mut ring = self.cluster.current();
        let mut scratch = vec![0u8; datagram.len()];
        let mut keys = TicketKeys::new();
        let opened = ring.parse(&packet, &mut scratch).map(|repr| {
            for record in repr.records {
                if let Record::TicketKey { period, secret } = record {
                    if let Ok(secret) = secret.try_into() {
                        keys.offer(now, TicketKey::new(period, secret));
                    }
                }
            }
        });
        // The plaintext held the keys.
        scratch.zeroize();
        opened.map_err(BoardError::Datagram)?;
        Ok(keys)
    }
}

/// Why the board's datagram gave no keys.
#[derive(Debug, thiserror::Error)]
enum BoardError {
    #[error("{0} (was the cluster key changed on one process only?)")]
    Datagram(cachet_core::wire::Error),
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    /// Two periods: the longest a ticket can live (one sealed at the very
    /// start of a period opens until the end of the next). A client told
    /// less would drop tickets that still resume; one that offers a ticket
    /// whose key is gone gets a full handshake, which it would have had
    /// anyway.
    fn lifetime(&self) -> u32 {
        let secs = 2 * self.rotation.length_ms() / 1000;
        secs.min(MAX_LIFETIME_SECS) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut ticket = vec![0u8; plain.len() + OVERHEAD];
        let sealed = self.with_keys(|now, keys| keys.seal(now, &nonce, plain, &mut ticket));
        match sealed {
            Ok(len) => {
                ticket.truncate(len);
                self.metrics.ticket(TicketEvent::Issued);
                Some(ticket)
            }
            Err(_) => {
                // No key for this period (the receiver could not publish
                // one): rustls sends no ticket, the client resumes nothing.
                self.metrics.ticket(TicketEvent::Unissued);
                None
            }
        }
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let mut plain = vec![0u8; ticket.len()];
        let opened =
            self.with_keys(|now, keys| keys.open(now, ticket, &mut plain).map(<[u8]>::len));
        let event = match opened {
            Ok(len) => {
                plain.truncate(len);
                self.metrics.ticket(TicketEvent::Opened);
                return Some(plain);
            }
            Err(TicketError::Expired) => TicketEvent::Expired,
            Err(TicketError::UnknownKey) => TicketEvent::UnknownKey,
            Err(_) => TicketEvent::Invalid,
        };
        self.metrics.ticket(event);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::key_file::ClusterKeys;
    use crate::shared::key_table::KeyTable;

    fn cluster(byte: u8) -> Arc<Keys> {
        let keys = ClusterKeys::parse(&format!("{byte:02x}").repeat(32)).unwrap();
        Keys::new(&keys, Box::leak(Box::<KeyTable>::default()), 0)
    }

    /// Seals `keys` as the receiver would and publishes them on `board`.
    fn publish(board: &TicketBoard, cluster: &Keys, keys: &TicketKeys) {
        let mut node = crate::sync::new_node(cluster.current()).unwrap();
        let mut buf = vec![0u8; 1400];
        let len = node
            .transmit_ticket_keys(keys.iter().map(|k| (k.period(), k.secret())), &mut buf)
            .unwrap();
        board.publish(&buf[..len]).unwrap();
    }

    #[test]
    fn processes_seal_and_open_under_the_published_keys_and_count() {
        let board: &'static TicketBoard = Box::leak(Box::default());
        let keys = cluster(0x11);
        let rotation = Rotation::new(60_000).unwrap();
        let (a, b) = (
            Ticketer::new(board, Arc::clone(&keys), rotation, Metrics::default()),
            Ticketer::new(board, Arc::clone(&keys), rotation, Metrics::default()),
        );
        // Nothing published yet: no ticket.
        assert_eq!(a.encrypt(b"state"), None);
        assert_eq!(
            a.metrics
                .snapshot()
                .get(crate::metrics::Metric::TicketsUnissued),
            1
        );

        let now = rotation.period_at(clock::unix_ms());
        let mut held = TicketKeys::new();
        held.offer(now, TicketKey::new(now, &[0x22; 32]));
        held.offer(now, TicketKey::new(now + 1, &[0x33; 32]));
        publish(board, &keys, &held);
        let ticket = a.encrypt(b"session state").unwrap();
        assert!(!ticket.windows(13).any(|w| w == b"session state"));
        assert_eq!(b.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        assert_eq!(a.lifetime(), 120);

        let mut forged = ticket.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(b.decrypt(&forged), None);
        let mut unknown = ticket.clone();
        unknown[8] ^= 1;
        assert_eq!(b.decrypt(&unknown), None);
        let mut old = ticket;
        old[..8].copy_from_slice(&(now - 2).to_be_bytes());
        assert_eq!(b.decrypt(&old), None);
        let figures = b.metrics.snapshot();
        use crate::metrics::Metric::*;
        for metric in [
            TicketsOpened,
            TicketsInvalid,
            TicketsUnknownKey,
            TicketsExpired,
        ] {
            assert_eq!(figures.get(metric), 1, "{metric:?}");
        }

        // A board sealed under another cluster key is not taken: the keys
        // loaded before stay.
        publish(board, &cluster(0x44), &held);
        assert!(a.encrypt(b"still").is_some());
    }
}
