//! A cluster peer that only listens: a UDP socket a router is told to
//! replicate to, which opens what arrives with the cluster key and keeps
//! the set records, so a test can see exactly which sessions were on the
//! wire at a given moment (the router's own stats only count datagrams),
//! and the cluster ticket keys the router shares with its peers.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

use cachet_core::wire::{ClusterKey, Packet, Record, Repr};

/// A listening peer on `127.0.0.1:0`.
pub struct SyncTap {
    socket: UdpSocket,
    key: ClusterKey,
    /// (sender, record number) of every set seen: a batch's repeat carries
    /// the same numbers, so each set counts once.
    sets: HashSet<(u64, u64)>,
    /// Every distinct cluster ticket key seen: (period, key).
    ticket_keys: Vec<(u64, [u8; 32])>,
    /// Datagrams that did not open with the key.
    unreadable: u64,
}

impl SyncTap {
    /// A tap for the cluster key `secret` (key id 0, as `cache-udp-key`).
    pub fn new(secret: &[u8; 32]) -> SyncTap {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding the tap");
        socket.set_nonblocking(true).expect("a non-blocking tap");
        SyncTap {
            socket,
            key: ClusterKey::new(secret),
            sets: HashSet::new(),
            ticket_keys: Vec::new(),
            unreadable: 0,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("the tap's address")
    }

    /// Reads every datagram already waiting, without waiting for more;
    /// returns how many distinct set records arrived so far.
    pub fn sets_arrived(&mut self) -> usize {
        self.read_waiting();
        self.sets.len()
    }

    /// Reads every datagram already waiting; returns every distinct
    /// cluster ticket key (period, key) that arrived so far.
    pub fn ticket_keys(&mut self) -> &[(u64, [u8; 32])] {
        self.read_waiting();
        &self.ticket_keys
    }

    fn read_waiting(&mut self) {
        let mut buf = vec![0u8; 65_536];
        let mut scratch = vec![0u8; 65_536];
        loop {
            let len = match self.socket.recv(&mut buf) {
                Ok(len) => len,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => panic!("reading the tap: {error}"),
            };
            let Ok(packet) = Packet::new_checked(&buf[..len]) else {
                self.unreadable += 1;
                continue;
            };
            let Ok(repr) = Repr::parse(&packet, &self.key, &mut scratch) else {
                self.unreadable += 1;
                continue;
            };
            for (number, record) in (repr.first_record..).zip(repr.records) {
                match record {
                    Record::Set { .. } => {
                        self.sets.insert((repr.sender, number));
                    }
                    Record::TicketKey { period, secret } => {
                        let key = (period, secret.try_into().expect("a 32-byte ticket key"));
                        if !self.ticket_keys.contains(&key) {
                            self.ticket_keys.push(key);
                        }
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(
            self.unreadable, 0,
            "datagrams the cluster key does not open"
        );
    }
}
