//! The appliance: a sync node and a replica behind one smoltcp UDP socket.

use cachet_core::cache::Cache;
use cachet_core::sync::bootstrap::Step;
use cachet_core::sync::{BootstrapAnswer, ControlKind, Greeted, Greetings, Node};
use cachet_core::{Duration, Instant};
use smoltcp::iface::{Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::udp::{self, SendError};
use smoltcp::wire::IpEndpoint;

use crate::{
    smoltcp_instant, ApplianceCounters, ApplianceNode, Config, Error, Timing, MAX_PEERS,
    MAX_WAITING, MTU,
};

/// The bootstrap answer in progress.
#[derive(Debug)]
struct Answering {
    to: IpEndpoint,
    answer: BootstrapAnswer,
    /// Not before then: a burst pause, or the last batch's repeat.
    resume_at: Instant,
}

/// A cluster peer holding a replica of the routers' sessions. See the
/// crate docs.
pub struct Appliance<S> {
    cache: Cache<S>,
    node: ApplianceNode,
    socket: SocketHandle,
    timing: Timing,
    /// The configured peers, greeted until they answer our bootstrap
    /// request.
    greetings: Greetings<IpEndpoint, MAX_PEERS>,
    answering: Option<Answering>,
    waiting: heapless::Deque<IpEndpoint, MAX_WAITING>,
    /// Where every outgoing datagram is sealed.
    out: [u8; MTU],
    /// A datagram in `out` the socket had no room for: it goes first at
    /// the next poll, and nothing else is sealed meanwhile.
    stash: Option<(IpEndpoint, usize)>,
    next_sweep: Instant,
    /// The `now` of the last poll.
    now: Instant,
    counters: ApplianceCounters,
}

impl<S> core::fmt::Debug for Appliance<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Appliance")
            .field("node", &self.node)
            .field("answering", &self.answering.as_ref().map(|a| a.to))
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Appliance<S> {
    /// Formats `storage` as an empty replica and binds the UDP socket
    /// `handle` of `sockets` to `config.port`. The first [`Appliance::poll`]
    /// greets the configured peers.
    pub fn new(
        config: &Config<'_>,
        storage: S,
        sockets: &mut SocketSet<'_>,
        handle: SocketHandle,
    ) -> Result<Self, Error> {
        let cache = Cache::format(storage, &config.cache).map_err(Error::Cache)?;
        let timing = &config.timing;
        let greetings = Greetings::new(
            config.peers,
            timing.greeting_interval,
            timing.greeting_tries,
        )
        .map_err(|_| Error::TooManyPeers)?;
        sockets
            .get_mut::<udp::Socket>(handle)
            .bind(config.port)
            .map_err(Error::Bind)?;
        Ok(Appliance {
            cache,
            node: Node::new(config.key.clone(), config.sender, config.sync),
            socket: handle,
            timing: config.timing,
            greetings,
            answering: None,
            waiting: heapless::Deque::new(),
            out: [0; MTU],
            stash: None,
            next_sweep: Instant::ZERO,
            now: Instant::ZERO,
            counters: ApplianceCounters::default(),
        })
    }

    /// The replica.
    pub fn cache(&self) -> &Cache<S> {
        &self.cache
    }

    /// The replica, to look entries up (a lookup marks them referenced).
    pub fn cache_mut(&mut self) -> &mut Cache<S> {
        &mut self.cache
    }

    /// This appliance's sender id.
    pub fn sender(&self) -> u64 {
        self.node.sender()
    }

    /// What the appliance and its sync node counted.
    pub fn counters(&self) -> ApplianceCounters {
        ApplianceCounters {
            sync: *self.node.counters(),
            ..self.counters
        }
    }

    /// One turn of the firmware's main loop over the whole stack: takes in
    /// up to [`Timing::receive_budget`] packets from `device`, handing each
    /// datagram to the replica at once, then [`Appliance::poll`], then
    /// sends everything queued.
    ///
    /// Taking packets in one at a time is what keeps the UDP socket's
    /// receive buffer from overflowing during a burst (a router answering
    /// our bootstrap request, many workers pushing at once): smoltcp's
    /// `Interface::poll` would take in every packet the device holds before
    /// the appliance could read any.
    pub fn poll_stack<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
    ) {
        let timestamp = smoltcp_instant(now);
        for _ in 0..self.timing.receive_budget {
            if iface.poll_ingress_single(timestamp, device, sockets)
                == PollIngressSingleResult::None
            {
                break;
            }
            self.receive(now, sockets.get_mut::<udp::Socket>(self.socket));
        }
        self.poll(now, sockets);
        // smoltcp sends one datagram per socket per call; this ends when
        // the socket is empty or the device refuses more.
        while iface.poll_egress(timestamp, device, sockets) != PollResult::None {}
    }

    /// Does everything that is due at `now`: reads every datagram the
    /// socket holds, greets peers, sends the next burst of a bootstrap
    /// answer, sweeps. For callers that poll the interface themselves:
    /// before (to receive) and after (to send what this queued).
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        self.now = now;
        let socket = sockets.get_mut::<udp::Socket>(self.socket);
        if let Some((to, len)) = self.stash {
            self.send(socket, to, len);
        }
        self.receive(now, socket);
        self.greet(now, socket);
        self.answer_bootstrap(now, socket);
        if now >= self.next_sweep {
            let sweep = self.cache.sweep(now, self.timing.sweep_budget);
            self.counters.swept += u64::from(sweep.freed);
            self.next_sweep = now + self.timing.sweep_interval;
        }
    }

    /// When [`Appliance::poll`] has something to do next, if no datagram
    /// arrives before: at the latest the next sweep. The instant of the
    /// last poll means as soon as the interface has run.
    pub fn poll_at(&self) -> Instant {
        let answering = match &self.answering {
            Some(answering) => Some(answering.resume_at.max(self.now)),
            None => (!self.waiting.is_empty()).then_some(self.now),
        };
        let stash = self.stash.map(|_| self.now);
        self.greetings
            .poll_at()
            .into_iter()
            .chain(answering)
            .chain(stash)
            .fold(self.next_sweep, Instant::min)
    }

    /// How long from `now` until [`Appliance::poll_at`].
    pub fn poll_delay(&self, now: Instant) -> Duration {
        self.poll_at() - now
    }

    fn receive(&mut self, now: Instant, socket: &mut udp::Socket<'_>) {
        self.now = now;
        while let Ok((datagram, meta)) = socket.recv() {
            self.counters.received_datagrams += 1;
            let from = meta.endpoint;
            let handled = match self.node.handle(now, datagram, &mut self.cache) {
                Ok(handled) => handled,
                Err(reason) => {
                    debug!("sync datagram from {} rejected: {}", from, reason);
                    continue;
                }
            };
            // A router's master answers from its `cache-udp-server`
            // address, the one we greeted; its workers push from ports of
            // their own.
            if self.greetings.is_configured(from) {
                self.counters.bootstrap_entries_received += u64::from(handled.sets);
                if handled.control.bootstrap_end && self.greetings.answered(from) {
                    self.counters.peers_bootstrapped += 1;
                    info!("peer {} answered our bootstrap request", from);
                }
            }
            if handled.control.bootstrap_request {
                self.queue_answer(from);
            }
            if self.node.message_waiting() {
                self.answer(from, handled.pulls.requests > 0, socket);
            }
        }
    }

    /// Sends the node's answers to the datagram `to` just sent: to the
    /// pull requests it made, from the replica (a router that lacks a
    /// session a client offers asks every peer, and the appliance may be
    /// the one that still holds it), and to its challenge (the node's
    /// vouch) or the node's own challenge to a sender it has not verified.
    fn answer(&mut self, to: IpEndpoint, pulls: bool, socket: &mut udp::Socket<'_>) {
        while self.stash.is_none() {
            let Some(message) = self.node.poll_message(&mut self.out) else {
                return;
            };
            self.send(socket, to, message.len);
            if self.stash.is_none() && pulls {
                self.counters.pull_answers_sent += 1;
            }
        }
        // The socket is full: the router's deadline covers a copy that
        // never comes (a challenge goes again), and the node must be free
        // for the next request.
        if self.node.message_waiting() {
            self.node.discard_message();
            if pulls {
                self.counters.pull_answers_unsent += 1;
            }
        }
    }

    fn queue_answer(&mut self, to: IpEndpoint) {
        // A requester asks again every second until the end marker
        // arrives: an answer already under way or queued covers it.
        let answering = self.answering.as_ref().is_some_and(|a| a.to == to);
        if answering || self.waiting.iter().any(|&w| w == to) {
            return;
        }
        if self.waiting.push_back(to).is_err() {
            self.counters.bootstrap_requests_dropped += 1;
            warn!("bootstrap request from {} dropped: too many waiting", to);
        }
    }

    /// Greets each configured peer that is due: hello, then a bootstrap
    /// request.
    fn greet(&mut self, now: Instant, socket: &mut udp::Socket<'_>) {
        while self.stash.is_none() {
            let Some(peer) = self.greetings.due(now) else {
                return;
            };
            self.send_control(ControlKind::Hello, peer, socket);
            if self.stash.is_some() {
                // The greeting is not counted: the hello goes again, with
                // the request, once the socket has room.
                return;
            }
            self.send_control(ControlKind::BootstrapRequest, peer, socket);
            self.counters.greetings_sent += 1;
            if self.greetings.greeted(peer, now) == Greeted::GaveUp {
                self.counters.peers_given_up += 1;
                warn!("peer {} never answered; no more bootstrap requests", peer);
            }
        }
    }

    /// Sends the next burst of the bootstrap answer in progress, starting
    /// the next one when it is done.
    fn answer_bootstrap(&mut self, now: Instant, socket: &mut udp::Socket<'_>) {
        let mut burst = 0;
        while self.stash.is_none() {
            let answering = match &mut self.answering {
                Some(answering) => answering,
                None => match self.waiting.pop_front() {
                    Some(to) => {
                        info!("answering a bootstrap request from {}", to);
                        self.answering.insert(Answering {
                            to,
                            answer: BootstrapAnswer::new(),
                            resume_at: now,
                        })
                    }
                    None => return,
                },
            };
            if answering.resume_at > now {
                return;
            }
            if burst == self.timing.burst {
                answering.resume_at = now + self.timing.burst_pause;
                return;
            }
            let to = answering.to;
            let step =
                answering
                    .answer
                    .poll_transmit(now, &mut self.cache, &mut self.node, &mut self.out);
            match step {
                Ok(Step::Transmit(len)) => {
                    self.send(socket, to, len);
                    burst += 1;
                }
                Ok(Step::Wait(due)) => {
                    answering.resume_at = due;
                    return;
                }
                // `out` holds MTU bytes, the node's largest datagram, so
                // an error cannot happen; if it did, the answer would end
                // here without its marker and the requester would ask again.
                Ok(Step::Done) | Err(_) => {
                    let entries = answering.answer.entries();
                    self.counters.bootstrap_requests_answered += 1;
                    self.counters.bootstrap_entries_sent += entries;
                    info!("answered {} with {} entries", to, entries);
                    self.answering = None;
                }
            }
        }
    }

    fn send_control(&mut self, kind: ControlKind, to: IpEndpoint, socket: &mut udp::Socket<'_>) {
        if let Some(len) = self.node.transmit_control(self.now, kind, &mut self.out) {
            self.send(socket, to, len);
        }
    }

    /// Hands the datagram in `out` to the socket, or keeps it for the next
    /// poll when the socket is full.
    fn send(&mut self, socket: &mut udp::Socket<'_>, to: IpEndpoint, len: usize) {
        self.stash = None;
        match socket.send_slice(&self.out[..len], to) {
            Ok(()) => self.counters.sent_datagrams += 1,
            Err(SendError::BufferFull) => self.stash = Some((to, len)),
            Err(SendError::Unaddressable) => {
                self.counters.send_errors += 1;
                warn!("sync datagram to {} dropped: unaddressable", to);
            }
        }
    }
}
