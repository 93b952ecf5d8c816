//! Receiving peers' datagrams into the shared cache; hellos, bootstrap,
//! and answering peers' pulls.
//!
//! The master (or the lone process) owns the `cache-udp-server` socket.
//! Every datagram goes through its node's checks; pushed sessions land in
//! the shared cache; a pull request is answered at once, to the address it
//! came from, from the shared cache (a TLS 1.3 ticket is taken there, the
//! one place it lives). A bootstrap request is answered by a task of its
//! own with a node of its own, paced so the requester keeps up, while the
//! receiver goes on receiving. Every second the receiver says hello to
//! every peer: how peers that went silent for pulls are heard from again.
//!
//! A peer's changes apply only once its sender is verified fresh
//! (`cachet_core::sync::challenge`): the node challenges senders it has not
//! verified, and answers peers' challenges (the one in a bootstrap request
//! among them) with its vouch and one for each of the router's processes
//! ([`crate::shared::senders`]), so that a peer that (re)starts verifies the whole
//! router in one round trip; a bootstrap answer proves itself under the
//! request's challenge in every datagram.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use cachet_core::sync::bootstrap::Step;
use cachet_core::sync::{
    BootstrapAnswer, ControlKind, Destination, Greeted, Greetings, SyncCounters, WithTicketKeys,
};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::keys::Keys;
use super::outbound::send_counted;
use super::region_store::RegionStore;
use super::ticket_keys::{TicketHolder, TicketKeyFigures};
use super::RouterNode;
use crate::clock;
use crate::shared::peers::{PeerTable, MAX_PEERS};
use crate::shared::SharedRegion;
use crate::shutdown::Shutdown;
/// How often hello and bootstrap requests go again to configured peers
/// that have not answered yet (they may be down, or the datagram lost),
/// and how many times at most.
const GREETING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
const GREETING_TRIES: u32 = 60;
/// Source addresses tracked for the per-source receive figures.
const MAX_SOURCES: usize = 256;

/// What the receiver counted, for stats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InboundFigures {
    pub sender: u64,
    pub node: SyncCounters,
    pub bootstrap_entries_sent: u64,
    pub bootstrap_requests_answered: u64,
    /// Sessions received in answer to this router's bootstrap requests.
    pub bootstrap_entries_received: u64,
    /// Datagrams and bytes received, by source IP. (A peer's workers send
    /// from ports of their own, so the IP is what identifies the peer.)
    pub received_from: Vec<SourceFigures>,
    /// The ticket keys, when the router runs them.
    pub ticket_keys: Option<TicketKeyFigures>,
}

/// What arrived from one source IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFigures {
    pub ip: IpAddr,
    pub datagrams: u64,
    pub bytes: u64,
}

impl InboundFigures {
    fn count_source(&mut self, ip: IpAddr, bytes: usize) {
        let index = match self.received_from.iter().position(|s| s.ip == ip) {
            Some(index) => index,
            None if self.received_from.len() < MAX_SOURCES => {
                self.received_from.push(SourceFigures {
                    ip,
                    datagrams: 0,
                    bytes: 0,
                });
                self.received_from.len() - 1
            }
            None => return,
        };
        let source = &mut self.received_from[index];
        source.datagrams += 1;
        source.bytes += bytes as u64;
    }
}

/// Shared with the stats endpoints.
pub type Figures = Arc<Mutex<InboundFigures>>;

/// Datagrams a bootstrap answer sends before pausing a millisecond, so
/// that the requester's socket buffer keeps up even when several peers
/// answer at once.
const BOOTSTRAP_BURST: usize = 8;
/// Bootstrap answers under way at once at most; a requester beyond asks
/// again a second later.
const MAX_ANSWERS: usize = 4;

/// Runs the receiver until `shutdown`, following `keys` (the nodes that
/// answer bootstrap requests take the keys in force when they start), and
/// holding the ticket keys with `tickets` when the router runs them.
pub async fn run(
    socket: StdUdpSocket,
    keys: Arc<Keys>,
    region: &'static SharedRegion,
    configured: Vec<SocketAddr>,
    figures: Figures,
    mut tickets: Option<TicketHolder>,
    mut shutdown: Shutdown,
) -> Result<()> {
    let mut follower = keys.follow();
    let mut node = super::new_node(follower.initial())?;
    let socket = Arc::new(UdpSocket::from_std(socket)?);
    let peers = region.peers();
    figures.lock().expect("figures lock").sender = node.sender();
    let mut buf = vec![0u8; 65_536];
    let mut out = vec![0u8; node.settings().max_datagram];
    let answering: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();

    // Announce ourselves and ask for the sessions we missed while down,
    // again every second to the peers that have not answered; and say
    // hello to every peer each second, so that peers that stopped waiting
    // for our pull answers hear we are back.
    socket.writable().await?;
    // (Beyond the peer table's room, `register_peers` said which were
    // left out.)
    let configured = &configured[..configured.len().min(MAX_PEERS)];
    // Due a little before the next tick, so that a tick that fires a few
    // milliseconds early does not skip a peer for a whole interval.
    let interval =
        cachet_core::Duration::from_millis(GREETING_INTERVAL.as_millis() as u64 * 9 / 10);
    let mut greetings: Greetings<SocketAddr, MAX_PEERS> =
        Greetings::new(configured, interval, GREETING_TRIES).expect("no more than MAX_PEERS");
    let mut greeting = tokio::time::interval(GREETING_INTERVAL);
    loop {
        let (len, from) = tokio::select! {
            result = socket.recv_from(&mut buf) => match result {
                Ok(got) => got,
                Err(e) => {
                    warn!("sync receive failed: {e}");
                    continue;
                }
            },
            _ = greeting.tick() => {
                greet(&mut node, &socket, peers, &mut greetings, &mut out);
                if let Some(holder) = &mut tickets {
                    tick_ticket_keys(holder, &mut node, &figures);
                    holder.take_unshared();
                    share_ticket_keys(holder, &mut node, &socket, peers, &mut out);
                }
                follower.publish(&node);
                continue;
            }
            () = follower.changed() => {
                follower.apply(&mut node);
                continue;
            }
            () = shutdown.requested() => {
                follower.publish(&node);
                return Ok(());
            }
        };
        let known = peers.find(from);
        if let Some(index) = known {
            let peer = peers.entry(index);
            peer.received_datagrams.fetch_add(1, Ordering::Relaxed);
            peer.received_bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
        let mut store = WithTicketKeys {
            store: RegionStore(region),
            keys: tickets.as_mut(),
        };
        let outcome = node.handle(clock::now(), &buf[..len], &mut store);
        // Answers to the pull requests it carried, to where it came from.
        while let Some(message) = node.poll_message(&mut out) {
            if let Destination::Sender(_) = message.destination {
                send_to(&socket, &out[..message.len], from, peers, known);
            }
        }
        if let Ok(handled) = outcome {
            if let Some(index) = known {
                peers.mark_answering(index);
                // Only a peer's master sends from its server address: sets
                // from there answer our bootstrap request.
                if handled.sets > 0 {
                    figures
                        .lock()
                        .expect("figures lock")
                        .bootstrap_entries_received += u64::from(handled.sets);
                }
            }
            if handled.control.bootstrap_end && greetings.answered(from) {
                if let Some(holder) = &mut tickets {
                    holder.bootstrap_answered();
                }
            }
            if handled.control.hello && known.is_none() {
                match peers.add(from) {
                    Some(_) => info!(peer = %from, "sync peer joined"),
                    None => warn!(peer = %from, "sync peer table full; peer ignored"),
                }
            }
            if handled.control.bootstrap_request {
                // The ticket keys first, at once: a router that restarts
                // serves as soon as it has them.
                if let Some(holder) = &tickets {
                    if let Some(len) = holder.datagram(&mut node, &mut out) {
                        send_to(&socket, &out[..len], from, peers, known);
                    }
                }
                let request = Request {
                    from,
                    challenge: handled.challenge,
                };
                spawn_answer(&socket, &keys, region, request, &answering, &figures);
            }
        }
        if let Some(holder) = &mut tickets {
            tick_ticket_keys(holder, &mut node, &figures);
            if holder.take_unshared() {
                share_ticket_keys(holder, &mut node, &socket, peers, &mut out);
            }
        }
        // Publishing after each datagram keeps stats exact; it is a copy
        // of a few hundred bytes under an uncontended lock.
        follower.publish(&node);
        let mut f = figures.lock().expect("figures lock");
        f.node = *node.counters();
        f.count_source(from.ip(), len);
    }
}

/// Runs the ticket key holder's turn, then shows its figures, and only
/// then says the router holds keys (so stats show them as soon as the
/// router serves).
fn tick_ticket_keys(holder: &mut TicketHolder, node: &mut RouterNode, figures: &Figures) {
    holder.tick(node);
    figures.lock().expect("figures lock").ticket_keys = Some(holder.figures());
    holder.announce_ready();
}

/// Sends the ticket keys held to every peer: when a key was added, and
/// each second (so that peers that missed it, or joined since, get it
/// within a second).
fn share_ticket_keys(
    holder: &TicketHolder,
    node: &mut RouterNode,
    socket: &UdpSocket,
    peers: &PeerTable,
    out: &mut [u8],
) {
    for (index, addr) in peers.peers() {
        if let Some(len) = holder.datagram(node, out) {
            send_to(socket, &out[..len], addr, peers, Some(index));
        }
    }
}

/// A bootstrap request: where it came from, and the challenge it carried.
#[derive(Debug, Clone, Copy)]
struct Request {
    from: SocketAddr,
    challenge: Option<u64>,
}

/// Answers a bootstrap request in a task of its own, unless an answer to
/// its sender is under way or [`MAX_ANSWERS`] are. The answer proves itself
/// under the request's challenge in every datagram, so the requester
/// admits it whatever the order the datagrams arrive in.
fn spawn_answer(
    socket: &Arc<UdpSocket>,
    keys: &Arc<Keys>,
    region: &'static SharedRegion,
    Request { from, challenge }: Request,
    answering: &Arc<Mutex<Vec<SocketAddr>>>,
    figures: &Figures,
) {
    {
        let mut answering = answering.lock().expect("answering lock");
        if answering.contains(&from) || answering.len() >= MAX_ANSWERS {
            return;
        }
        answering.push(from);
    }
    // A node of its own: its datagrams all go to the one requester, and
    // its sequence numbers are nobody else's business.
    let node = match super::new_node(keys.current()) {
        Ok(mut node) => {
            if let Some(nonce) = challenge {
                node.prove(nonce);
            }
            node
        }
        Err(e) => {
            warn!(peer = %from, "bootstrap request not answered: {e:#}");
            answering
                .lock()
                .expect("answering lock")
                .retain(|a| *a != from);
            return;
        }
    };
    let (socket, answering, figures, keys) = (
        Arc::clone(socket),
        Arc::clone(answering),
        Arc::clone(figures),
        Arc::clone(keys),
    );
    tokio::spawn(async move {
        let (sent, node) = answer_bootstrap(node, &socket, region, from).await;
        keys.count_finished(&node);
        answering
            .lock()
            .expect("answering lock")
            .retain(|a| *a != from);
        let mut f = figures.lock().expect("figures lock");
        f.bootstrap_entries_sent += sent;
        f.bootstrap_requests_answered += 1;
        info!(peer = %from, entries = sent, "answered a bootstrap request");
    });
}

/// Says hello to every peer, and asks each configured peer that has not
/// answered a bootstrap request yet for its sessions (see
/// `cachet_core::sync::greeting`).
fn greet(
    node: &mut RouterNode,
    socket: &UdpSocket,
    peers: &PeerTable,
    greetings: &mut Greetings<SocketAddr, MAX_PEERS>,
    out: &mut [u8],
) {
    let now = clock::now();
    for (index, addr) in peers.peers() {
        if let Some(len) = node.transmit_control(now, ControlKind::Hello, out) {
            send_to(socket, &out[..len], addr, peers, Some(index));
        }
    }
    while let Some(addr) = greetings.due(now) {
        let index = peers.find(addr);
        // A configured peer the table had no room for got no hello above.
        let kinds: &[ControlKind] = match index {
            Some(_) => &[ControlKind::BootstrapRequest],
            None => &[ControlKind::Hello, ControlKind::BootstrapRequest],
        };
        for &kind in kinds {
            if let Some(len) = node.transmit_control(now, kind, out) {
                send_to(socket, &out[..len], addr, peers, index);
            }
        }
        if greetings.greeted(addr, now) == Greeted::GaveUp {
            warn!(peer = %addr, "sync peer never answered; no more bootstrap requests to it");
        }
    }
}

/// Sends every live session that travels to `to`, then the end marker.
/// Returns how many entries went out, and the node (for its figures).
async fn answer_bootstrap(
    mut node: RouterNode,
    socket: &UdpSocket,
    region: &'static SharedRegion,
    to: SocketAddr,
) -> (u64, RouterNode) {
    let peers = region.peers();
    let index = peers.find(to).or_else(|| peers.add(to));
    let mut out = vec![0u8; node.settings().max_datagram];
    let mut answer = BootstrapAnswer::new();
    let mut burst = 0;
    loop {
        match answer.poll_transmit(clock::now(), &mut RegionStore(region), &mut node, &mut out) {
            Ok(Step::Transmit(len)) => {
                send_to(socket, &out[..len], to, peers, index);
                burst += 1;
                if burst % BOOTSTRAP_BURST == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            // The last batch's second copy, when it falls due.
            Ok(Step::Wait(due)) => {
                let wait = (due - clock::now()).as_millis();
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            Ok(Step::Done) => break,
            Err(e) => {
                warn!(peer = %to, "bootstrap answer cut short: {e}");
                break;
            }
        }
    }
    (answer.entries(), node)
}

fn send_to(
    socket: &UdpSocket,
    datagram: &[u8],
    to: SocketAddr,
    peers: &PeerTable,
    index: Option<usize>,
) {
    match index {
        Some(index) => send_counted(Some(socket), datagram, to, peers, index),
        None => {
            let _ = socket.try_send_to(datagram, to);
        }
    }
}
