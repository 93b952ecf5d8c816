//! Twin clients: one TLS 1.3 ticket, held by several rustls clients.
//!
//! rustls hands a client's ticket to one connection only and cannot copy
//! it (`Tls13ClientSessionValue` is neither `Clone` nor serializable, on
//! purpose). To offer the *same* ticket to several servers at once, the
//! ticket is made several times over: [`Twins`] are rustls client
//! connections built under the same replayed randomness ([`super::seeded`]),
//! so they write byte-identical ClientHellos; one of them talks to the
//! server, and every byte the server answers is given to all of them. They
//! derive the same secrets, write the same records (checked at every
//! flight: a difference is [`TwinError::Diverged`]) and each stores the same
//! tickets in its own [`Shelf`].

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, NamedGroup};

use super::seeded::Replayable;

/// Tickets one shelf keeps; servers send one or two per handshake.
const TICKETS_PER_SHELF: usize = 8;

/// Why the twins could not go on.
#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("no random bytes from the operating system")]
    Random,
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("reading the server's records: {0}")]
    Io(#[from] io::Error),
    /// The method itself failed: rustls drew randomness the replay does not
    /// cover, so the twins no longer hold one ticket.
    #[error("twin client {twin} wrote other bytes than twin 0: they no longer share a ticket")]
    Diverged { twin: usize },
}

/// Client connections that stay byte-for-byte identical.
pub struct Twins {
    connections: Vec<ClientConnection>,
}

impl Twins {
    /// One connection per configuration, each built under `random`
    /// replaying one fresh seed. Every configuration must use the provider
    /// `random` belongs to.
    pub fn new(
        configs: &[Arc<ClientConfig>],
        name: &ServerName<'static>,
        random: &Replayable,
    ) -> Result<Twins, TwinError> {
        let seed = Replayable::seed().map_err(|_| TwinError::Random)?;
        let mut connections = Vec::with_capacity(configs.len());
        let built = configs.iter().try_for_each(|config| {
            random.replay(seed);
            connections.push(ClientConnection::new(Arc::clone(config), name.clone())?);
            Ok::<_, rustls::Error>(())
        });
        // Whatever happened, later connections draw the system's bytes.
        random.release();
        built?;
        Ok(Twins { connections })
    }

    /// The records every twin has to send: the same from each, or
    /// [`TwinError::Diverged`].
    pub fn output(&mut self) -> Result<Vec<u8>, TwinError> {
        let mut first: Option<Vec<u8>> = None;
        for (twin, connection) in self.connections.iter_mut().enumerate() {
            let mut out = Vec::new();
            while connection.wants_write() {
                connection.write_tls(&mut out)?;
            }
            match &first {
                None => first = Some(out),
                Some(expected) if *expected == out => {}
                Some(_) => return Err(TwinError::Diverged { twin }),
            }
        }
        Ok(first.unwrap_or_default())
    }

    /// Gives every twin the bytes the server sent.
    pub fn input(&mut self, bytes: &[u8]) -> Result<(), TwinError> {
        for connection in &mut self.connections {
            let mut rest = bytes;
            while !rest.is_empty() {
                // 0: the server's close_notify came; what follows it is
                // nothing a client reads.
                if connection.read_tls(&mut rest)? == 0 {
                    break;
                }
                connection.process_new_packets()?;
            }
        }
        Ok(())
    }

    pub fn is_handshaking(&self) -> bool {
        self.connections.iter().any(|c| c.is_handshaking())
    }

    /// Whether the handshake resumed (twin 0 speaks for all).
    pub fn resumed(&self) -> bool {
        self.connections.first().and_then(|c| c.handshake_kind()) == Some(HandshakeKind::Resumed)
    }

    pub fn send_close_notify(&mut self) {
        for connection in &mut self.connections {
            connection.send_close_notify();
        }
    }
}

/// One configuration per twin, each `base` with a [`Shelf`] of its own,
/// and the shelves.
pub fn configs(base: &ClientConfig, count: usize) -> (Vec<Arc<ClientConfig>>, Vec<Arc<Shelf>>) {
    let shelves: Vec<Arc<Shelf>> = (0..count).map(|_| Arc::default()).collect();
    let configs = shelves
        .iter()
        .map(|shelf| {
            let mut config = base.clone();
            config.resumption = Resumption::store(Arc::clone(shelf) as _);
            Arc::new(config)
        })
        .collect();
    (configs, shelves)
}

/// A client's session store that keeps TLS 1.3 tickets only, hands out the
/// newest first (as rustls' own store does), and tells how many it holds.
#[derive(Default)]
pub struct Shelf {
    tickets: Mutex<Vec<Tls13ClientSessionValue>>,
}

impl Shelf {
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tls13ClientSessionValue>> {
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Shelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shelf({} tickets)", self.len())
    }
}

impl ClientSessionStore for Shelf {
    // No hint: with one group offered there is nothing to choose, and a
    // hint would make a twin's ClientHello depend on its history.
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut tickets = self.lock();
        if tickets.len() == TICKETS_PER_SHELF {
            tickets.remove(0);
        }
        tickets.push(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.lock().pop()
    }
}

#[cfg(test)]
mod tests {
    use super::super::seeded;
    use super::*;
    use crate::options::Options;
    use crate::tls;
    use rustls::server::ServerSessionMemoryCache;
    use rustls::{ServerConfig, ServerConnection};

    const NAME: &str = "localhost";

    fn server() -> Arc<ServerConfig> {
        let certified = rcgen::generate_simple_self_signed(vec![NAME.to_owned()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        // Stateful tickets: single use, as in a router's session cache.
        config.session_storage = ServerSessionMemoryCache::new(64);
        config.send_tls13_tickets = 2;
        Arc::new(config)
    }

    /// Twin configurations (one shelf each) under one replayable provider.
    fn twin_configs(
        count: usize,
    ) -> (Vec<Arc<ClientConfig>>, Vec<Arc<Shelf>>, &'static Replayable) {
        let (provider, random) = seeded::provider();
        let base = tls::config_with_provider(&Options::default(), provider).unwrap();
        let (configs, shelves) = configs(&base, count);
        (configs, shelves, random)
    }

    /// Runs `twins` against `server` in memory until both are done.
    fn handshake(twins: &mut Twins, server: &mut ServerConnection) {
        for _ in 0..10 {
            let out = twins.output().unwrap();
            server.read_tls(&mut &out[..]).unwrap();
            server.process_new_packets().unwrap();
            let mut back = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut back).unwrap();
            }
            twins.input(&back).unwrap();
            if !twins.is_handshaking() && !server.is_handshaking() && back.is_empty() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    fn name() -> ServerName<'static> {
        ServerName::try_from(NAME).unwrap()
    }

    #[test]
    fn twins_hold_one_ticket_that_resumes_once() {
        let server_config = server();
        let (configs, shelves, random) = twin_configs(3);
        let mut twins = Twins::new(&configs, &name(), random).unwrap();
        let mut server = ServerConnection::new(Arc::clone(&server_config)).unwrap();
        handshake(&mut twins, &mut server);
        assert!(!twins.resumed());
        // Every twin was given the server's two tickets.
        assert!(shelves.iter().all(|shelf| shelf.len() == 2), "{shelves:?}");

        // Each twin's newest ticket is the same ticket: the first offer
        // resumes, the server then refuses the other two.
        let mut resumed = 0;
        for config in &configs {
            let mut client = Twins::new(std::slice::from_ref(config), &name(), random).unwrap();
            let mut server = ServerConnection::new(Arc::clone(&server_config)).unwrap();
            handshake(&mut client, &mut server);
            resumed += usize::from(client.resumed());
        }
        assert_eq!(resumed, 1);
        // Each offered one and was given two new ones.
        assert!(shelves.iter().all(|shelf| shelf.len() == 3), "{shelves:?}");
    }

    #[test]
    fn twins_that_differ_are_caught() {
        let (mut configs, _, random) = twin_configs(2);
        // A twin whose ClientHello asks for another protocol writes other
        // bytes from its first flight.
        let mut odd = (*configs[1]).clone();
        odd.alpn_protocols = vec![b"h2".to_vec()];
        configs[1] = Arc::new(odd);
        let mut twins = Twins::new(&configs, &name(), random).unwrap();
        assert!(matches!(
            twins.output(),
            Err(TwinError::Diverged { twin: 1 })
        ));
    }

    #[test]
    fn a_shelf_keeps_the_newest_tickets_and_nothing_else() {
        let shelf = Shelf::default();
        assert!(shelf.is_empty());
        assert_eq!(shelf.kx_hint(&name()), None);
        assert!(shelf.tls12_session(&name()).is_none());
        assert!(shelf.take_tls13_ticket(&name()).is_none());
    }
}
