//! A site's rustls configurations, one per thing the router decides from
//! the ClientHello before rustls sees it.
//!
//! rustls takes such decisions from its `ServerConfig` alone, so a site
//! keeps one configuration per combination, all sharing certificate,
//! session storage and ticketer, and a connection picks one:
//!
//! - the cipher order ([`super::cipher_order`]): the router's, or ChaCha20
//!   first for a client that lists it first;
//! - how many TLS 1.3 tickets the handshake ends with: two after a full
//!   handshake (a client may open two connections at once, and a ticket is
//!   single-use), one when the client offers a ticket to resume with: it
//!   spent one and gets one back. This is what OpenSSL (nginx, HAProxy)
//!   does; each ticket issued costs a cache write and a record.

use std::sync::Arc;

use rustls::{CipherSuite, ServerConfig};

use super::cipher_order;

/// TLS 1.3 tickets sent after a full handshake (rustls' and OpenSSL's
/// default).
const TICKETS_AFTER_FULL: usize = 2;
/// TLS 1.3 tickets sent when the client offers one.
const TICKETS_AFTER_RESUMING: usize = 1;

/// What the ClientHello says that picks a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub chacha_first: bool,
    /// The client offers a TLS 1.3 ticket.
    pub resuming: bool,
}

/// The site's configurations, by [`Choice`].
#[derive(Clone, Debug)]
pub struct Variants {
    /// Indexed by `[chacha_first][resuming]`.
    configs: [[Arc<ServerConfig>; 2]; 2],
}

impl Variants {
    /// `server_order` and `chacha_first` are the same configuration over
    /// the router's order of suites and its ChaCha20-first reordering; both
    /// are made to choose by that order rather than the client's, and to
    /// share `server_order`'s session storage and ticketer.
    pub fn new(server_order: ServerConfig, mut chacha_first: ServerConfig) -> Self {
        chacha_first.session_storage = Arc::clone(&server_order.session_storage);
        chacha_first.ticketer = Arc::clone(&server_order.ticketer);
        let by_tickets = |mut config: ServerConfig| {
            config.ignore_client_order = true;
            config.send_tls13_tickets = TICKETS_AFTER_FULL;
            let mut resuming = config.clone();
            resuming.send_tls13_tickets = TICKETS_AFTER_RESUMING;
            [Arc::new(config), Arc::new(resuming)]
        };
        Self {
            configs: [by_tickets(server_order), by_tickets(chacha_first)],
        }
    }

    /// The configuration in the router's order after a full handshake:
    /// what the site's sessions and settings are read from.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.configs[0][0]
    }

    /// The choice for a client offering `client_suites` (in its order),
    /// and a TLS 1.3 ticket or not.
    pub fn choice(&self, client_suites: &[CipherSuite], offers_ticket: bool) -> Choice {
        Choice {
            chacha_first: cipher_order::client_prefers_chacha(
                client_suites,
                &self.config().crypto_provider().cipher_suites,
            ),
            resuming: offers_ticket,
        }
    }

    pub fn get(&self, choice: Choice) -> &Arc<ServerConfig> {
        &self.configs[usize::from(choice.chacha_first)][usize::from(choice.resuming)]
    }
}
