//! rustls session storage over the `cachet-core` session cache.
//!
//! One [`SessionStore`] per process holds the cache; each TLS configuration
//! (listening socket and certificate) gets a [`SessionStore::for_context`]
//! view, [`ContextStorage`], whose keys are laid out in
//! [`crate::session_key`]: a kind (TLS 1.2 session or TLS 1.3 ticket), a
//! digest of the session context, the rustls id. Every key fits the
//! cache's 64-byte limit (rustls' session ids and ticket ids are 32 bytes).
//!
//! rustls calls `put` after a full handshake (a TLS 1.2 session id, or each
//! TLS 1.3 ticket), `get` on a TLS 1.2 resumption and `take` on a TLS 1.3
//! one, since tickets are single use. Every call is one short critical
//! section on the cache, with no I/O: rustls never waits on anything but
//! memory. What the network can add happens before rustls runs:
//! [`ContextStorage::fetch_offered`] pulls the session a client offers from
//! the cluster when the cache lacks it.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use cachet_core::cache::{Layout, MAX_KEY_LEN};
use cachet_core::Duration as CacheDuration;
use rustls::server::{ProducesTickets, StoresServerSessions};

use crate::client_hello::{Offer, Resumption};
use crate::clock;
use crate::metrics::pulls::Pulled;
use crate::redis::{self, RedisTier};
use crate::session_key::{self, Kind, Prefix};
use crate::session_writes;
use crate::shared::SharedRegion;
use crate::stats::CacheFigures;
use crate::sync::outbound::ClusterLink;
use crate::sync::Change;
use crate::tickets::Ticketer;

/// The process's handle on the session cache.
#[derive(Debug)]
pub struct SessionStore {
    region: &'static SharedRegion,
    layout: Layout,
    lifetime: CacheDuration,
    cluster: Option<ClusterLink>,
    redis: Option<RedisTier>,
    /// Stateless tickets under the cluster's ticket keys
    /// (`ssl-session-tickets = keys`): no TLS 1.3 ticket is then stored.
    ticketer: Option<Arc<Ticketer>>,
}

impl SessionStore {
    /// The cluster keys of this process, when it replicates.
    pub fn cluster_keys(&self) -> Option<&Arc<crate::sync::keys::Keys>> {
        self.cluster.as_ref().map(|cluster| &cluster.keys)
    }

    /// The Redis tier of this process, when on.
    pub fn redis(&self) -> Option<&RedisTier> {
        self.redis.as_ref()
    }

    /// The store over `region`'s cache, with sessions living `timeout`;
    /// `None` when the region has no cache. With `cluster`, every TLS 1.2
    /// session stored is pushed to the peers, and offered sessions the
    /// cache lacks are pulled from them. With `redis`, sessions are
    /// written to Redis and offered ones the cache lacks read (or, for
    /// tickets, taken) from it (see [`crate::redis`]). With `ticketer`,
    /// TLS tickets are stateless, sealed by it.
    pub fn new(
        region: &'static SharedRegion,
        timeout: Duration,
        cluster: Option<ClusterLink>,
        redis: Option<RedisTier>,
        ticketer: Option<Arc<Ticketer>>,
    ) -> Option<Self> {
        Some(SessionStore {
            layout: *region.cache_layout()?,
            region,
            lifetime: CacheDuration::from_millis(timeout.as_millis() as u64),
            cluster,
            redis,
            ticketer,
        })
    }

    /// The ticketer every TLS configuration installs, when tickets are
    /// stateless.
    pub fn ticketer(&self) -> Option<Arc<dyn ProducesTickets>> {
        self.ticketer
            .as_ref()
            .map(|t| Arc::clone(t) as Arc<dyn ProducesTickets>)
    }

    /// Storage for one session context.
    pub fn for_context(&self, context: &[u8]) -> Arc<ContextStorage> {
        Arc::new(ContextStorage {
            region: self.region,
            block_size: self.layout.block_size() as usize,
            prefix: Prefix::of_context(context),
            lifetime: self.lifetime,
            cluster: self.cluster.clone(),
            redis: self.redis.clone(),
            stateless_tickets: self.ticketer.is_some(),
        })
    }

    /// Frees expired sessions, looking at no more than `budget` slots.
    /// Returns how many were freed.
    pub fn sweep(&self, budget: u32) -> u32 {
        let now = clock::now();
        self.region
            .with_cache(|cache| cache.sweep(now, budget).freed)
            .unwrap_or(0)
    }

    /// The cache's figures for stats.
    pub fn figures(&self) -> CacheFigures {
        let layout = self.layout;
        let (n, last_modified) = self
            .region
            .with_cache(|cache| (cache.counters(), cache.last_modified()))
            .unwrap_or_default();
        CacheFigures {
            max_items: u64::from(layout.capacity()),
            blocksize: u64::from(layout.block_size()),
            blocks: u64::from(layout.chunk_count()),
            keysize: cachet_core::cache::MAX_KEY_LEN as u64,
            items: u64::from(n.items),
            hits: n.hits,
            miss: n.miss,
            full: n.full,
            sets: n.sets,
            deletes: n.deletes + n.takes,
            evictions: n.evictions,
            expired: n.expired,
            refused_too_large: n.refused_value_too_large + n.refused_key_too_long,
            refused_full: 0,
            last_modified_at: if n.sets == 0 {
                0
            } else {
                clock::unix_seconds_at(last_modified)
            },
        }
    }
}

/// The sessions of one context: rustls' store, and what a connection asks
/// before rustls runs.
#[derive(Debug)]
pub struct ContextStorage {
    region: &'static SharedRegion,
    block_size: usize,
    prefix: Prefix,
    lifetime: CacheDuration,
    cluster: Option<ClusterLink>,
    /// Tickets are sealed state, in no cache: never pulled.
    stateless_tickets: bool,
    redis: Option<RedisTier>,
}

/// Where the session a client offered came from, when the cache lacked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Redis's answer, when the tier is on...
    pub redis: Option<redis::Lookup>,
    /// ...and the peers', when asked (the mesh is on and Redis had nothing).
    pub peers: Option<Pulled>,
}

thread_local! {
    /// Where values are copied out of the cache; grows to the block size once.
    static VALUE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl ContextStorage {
    /// The cache key of `id`; one byte longer than the cache takes at most,
    /// so that an overlong id is refused (and counted) rather than cut.
    fn with_key<R>(&self, kind: Kind, id: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        self.prefix.with_key::<R, { MAX_KEY_LEN + 1 }>(kind, id, f)
    }

    fn lookup(&self, kind: Kind, id: &[u8]) -> Option<Vec<u8>> {
        let now = clock::now();
        let block = self.block_size;
        let take = kind.is_single_use();
        VALUE_BUFFER.with_borrow_mut(|out| {
            if out.len() < block {
                out.resize(block, 0);
            }
            self.with_key(kind, id, |key| {
                self.region
                    .with_cache(|cache| {
                        let found = if take {
                            cache.take(now, key, out)
                        } else {
                            cache.get(now, key, out)
                        };
                        found.ok().flatten().map(<[u8]>::to_vec)
                    })
                    .flatten()
            })
        })
    }

    /// Makes sure the session `offer` will resume with is in the cache
    /// before rustls looks for it. When the cache lacks it: asks Redis,
    /// when the tier is on (a TLS 1.3 ticket is taken, so it resumes
    /// nowhere else); then, if still missing and the router is in a mesh,
    /// pulls it from the peers (a ticket is taken from the router that
    /// issued it). Copies what it finds into the cache and returns where
    /// it looked; `None` when it needed not look.
    /// `tls13`: whether this configuration serves TLS 1.3 (else a TLS 1.3
    /// client resumes by session id).
    pub async fn fetch_offered(&self, offer: &Offer, tls13: bool) -> Option<Fetched> {
        if self.cluster.is_none() && self.redis.is_none() {
            return None;
        }
        // rustls tries a client's tickets in order; the first is the one
        // nearly every client sends alone, and the only one fetched, so
        // that a ClientHello costs the fleet one lookup at most.
        let (kind, id) = match offer.resumption_by(tls13) {
            Resumption::None => return None,
            // A stateless ticket carries its session: nothing to pull (and
            // rustls, offered a TLS 1.2 ticket, never looks the id up).
            Resumption::Tickets(_) if self.stateless_tickets => return None,
            Resumption::SessionId(_) if self.stateless_tickets && offer.tls12_ticket => {
                return None
            }
            Resumption::SessionId(id) => (Kind::Session, id),
            Resumption::Tickets(tickets) => (Kind::Ticket, tickets.first()?.as_slice()),
        };
        let now = clock::now();
        let key = self.with_key(kind, id, |key| {
            let present = self
                .region
                .with_cache(|cache| cache.contains(now, key))
                .unwrap_or(false);
            (!present).then(|| key.to_vec())
        })?;
        let take = kind.is_single_use();
        let mut fetched = Fetched {
            redis: None,
            peers: None,
        };
        if let Some(redis) = &self.redis {
            let (outcome, found) = redis.fetch(&key, take).await;
            fetched.redis = Some(outcome);
            if let Some(found) = found {
                let lifetime = CacheDuration::from_millis(found.remaining.as_millis() as u64);
                self.store_here(&key, &found.value, lifetime);
                return Some(fetched);
            }
        }
        if let Some(cluster) = &self.cluster {
            fetched.peers = Some(cluster.puller.pull(key, take).await);
        }
        Some(fetched)
    }

    /// Whether sessions stored here wait to be sent to the cluster's other
    /// routers.
    pub fn changes_waiting(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.changes.is_waiting())
    }

    /// Whether new sessions are written to Redis (the tier is on; up or
    /// not, it says per write).
    pub fn writes_to_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Stores a session in this router's cache only.
    fn store_here(&self, key: &[u8], value: &[u8], lifetime: CacheDuration) -> bool {
        put_in(self.region, key, value, lifetime)
    }

    /// Writes a new session to Redis, holding the handshake's next bytes
    /// until Redis has it; false when the tier is off or down. With
    /// `keep_if_refused`, a session Redis refuses (full) is stored here
    /// after all, so that it keeps one holder.
    fn store_in_redis(&self, key: &[u8], value: &[u8], keep_if_refused: bool) -> bool {
        let Some(redis) = &self.redis else {
            return false;
        };
        let lifetime = self.lifetime;
        let refused = {
            let (region, key, value) = (self.region, key.to_vec(), value.to_vec());
            move || {
                if keep_if_refused {
                    put_in(region, &key, &value, lifetime);
                }
            }
        };
        let lifetime = Duration::from_millis(lifetime.as_millis());
        match redis.store(key, value, lifetime, refused) {
            Some(written) => {
                session_writes::register(written);
                true
            }
            None => false,
        }
    }
}

/// Stores a session in `region`'s cache; whether it was stored.
fn put_in(region: &SharedRegion, key: &[u8], value: &[u8], lifetime: CacheDuration) -> bool {
    let now = clock::now();
    region
        .with_cache(|cache| cache.put(now, key, value, lifetime).is_ok())
        .unwrap_or(false)
}

impl StoresServerSessions for ContextStorage {
    fn put(&self, id: Vec<u8>, value: Vec<u8>) -> bool {
        let kind = match session_key::rustls_session_version(&value) {
            Some(session_key::TLS13) => Kind::Ticket,
            _ => Kind::Session,
        };
        self.with_key(kind, &id, |key| {
            // A ticket has one holder, whose take is the only way to
            // resume it: Redis when the tier is up, else this router.
            if kind == Kind::Ticket && self.store_in_redis(key, &value, true) {
                return true;
            }
            let stored = self.store_here(key, &value, self.lifetime);
            // A TLS 1.2 session goes to Redis and to every peer.
            if stored && kind.is_replicated() {
                self.store_in_redis(key, &value, false);
                if let Some(cluster) = &self.cluster {
                    cluster.changes.push(Change {
                        key: key.to_vec(),
                        value: value.clone(),
                        lifetime: self.lifetime,
                    });
                }
            }
            stored
        })
    }

    fn get(&self, id: &[u8]) -> Option<Vec<u8>> {
        self.lookup(Kind::Session, id)
    }

    fn take(&self, id: &[u8]) -> Option<Vec<u8>> {
        self.lookup(Kind::Ticket, id)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::CacheGeometry;

    fn store(timeout: Duration) -> SessionStore {
        let geometry = CacheGeometry {
            capacity: 16,
            block_size: 64,
        };
        let region = Box::leak(Box::new(SharedRegion::create(Some(geometry)).unwrap()));
        SessionStore::new(region, timeout, None, None, None).unwrap()
    }

    /// A store and its storage for the session context `a`.
    fn store_with_context(timeout: Duration) -> (SessionStore, Arc<ContextStorage>) {
        let store = store(timeout);
        let context = store.for_context(b"a");
        (store, context)
    }

    #[test]
    fn contexts_do_not_see_each_other() {
        let (store, a) = store_with_context(Duration::from_secs(60));
        let b = store.for_context(b"b");
        assert!(a.put(b"id".to_vec(), b"session".to_vec()));
        assert_eq!(a.get(b"id"), Some(b"session".to_vec()));
        assert_eq!(b.get(b"id"), None);
        let figures = store.figures();
        assert_eq!(
            (figures.hits, figures.miss, figures.sets, figures.items),
            (1, 1, 1, 1)
        );
    }

    /// A rustls session value made under TLS 1.3, as far as the store
    /// reads it (no SNI name, version 0x0304).
    const TLS13_VALUE: &[u8] = &[0, 3, 4, 0x13, 1];

    #[test]
    fn take_is_single_use() {
        let (store, a) = store_with_context(Duration::from_secs(60));
        assert!(a.put(b"ticket".to_vec(), TLS13_VALUE.to_vec()));
        assert_eq!(a.take(b"ticket"), Some(TLS13_VALUE.to_vec()));
        assert_eq!(a.take(b"ticket"), None);
        assert_eq!(store.figures().deletes, 1);
    }

    #[test]
    fn tickets_and_session_ids_never_meet() {
        let (_store, a) = store_with_context(Duration::from_secs(60));
        assert!(a.put(b"id".to_vec(), TLS13_VALUE.to_vec()));
        assert_eq!(a.get(b"id"), None, "a ticket is not a TLS 1.2 session");
        assert!(a.put(b"id2".to_vec(), b"tls12".to_vec()));
        assert_eq!(a.take(b"id2"), None, "a TLS 1.2 session is not a ticket");
        assert_eq!(a.get(b"id2"), Some(b"tls12".to_vec()));
    }

    /// What rustls stores, recorded with the kind the store gave it.
    #[derive(Debug)]
    struct Recorder(std::sync::Mutex<Vec<Option<u16>>>);

    impl StoresServerSessions for Recorder {
        fn put(&self, _: Vec<u8>, value: Vec<u8>) -> bool {
            let version = session_key::rustls_session_version(&value);
            self.0.lock().unwrap().push(version);
            true
        }
        fn get(&self, _: &[u8]) -> Option<Vec<u8>> {
            None
        }
        fn take(&self, _: &[u8]) -> Option<Vec<u8>> {
            None
        }
        fn can_cache(&self) -> bool {
            true
        }
    }

    /// The versions of the sessions a real rustls server stores in one
    /// handshake at `version`, with and without an SNI name.
    fn stored_versions(
        version: &'static rustls::SupportedProtocolVersion,
        sni: bool,
    ) -> Vec<Option<u16>> {
        use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = CertificateDer::from(generated.cert.der().to_vec());
        let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let recorder = Arc::new(Recorder(Default::default()));
        let mut server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .unwrap();
        server_config.session_storage = recorder.clone();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client_config = client_config;
        client_config.enable_sni = sni;
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        // Shuttle bytes until both sides are done and the tickets are out.
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        let stored = recorder.0.lock().unwrap().clone();
        stored
    }

    #[test]
    fn the_version_is_read_from_what_rustls_really_stores() {
        for sni in [false, true] {
            let tls12 = stored_versions(&rustls::version::TLS12, sni);
            assert_eq!(tls12, [Some(0x0303)], "sni {sni}");
            let tls13 = stored_versions(&rustls::version::TLS13, sni);
            assert!(!tls13.is_empty(), "no tickets");
            assert!(
                tls13.iter().all(|v| *v == Some(session_key::TLS13)),
                "{tls13:?}"
            );
        }
    }

    #[test]
    fn oversized_values_and_keys_are_refused_and_counted() {
        let (store, a) = store_with_context(Duration::from_secs(60));
        assert!(!a.put(b"id".to_vec(), vec![0; 65]));
        assert!(!a.put(vec![1; 49], b"v".to_vec()));
        assert!(a.put(vec![1; 48], b"v".to_vec()));
        assert_eq!(a.get(b"id"), None);
        assert_eq!(store.figures().refused_too_large, 2);
    }

    #[test]
    fn expired_values_are_not_returned_and_the_sweep_frees_them() {
        let (store, a) = store_with_context(Duration::from_millis(1));
        assert!(a.put(b"id".to_vec(), b"v".to_vec()));
        assert!(a.put(b"id2".to_vec(), b"v".to_vec()));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(a.get(b"id"), None);
        assert_eq!(store.sweep(100), 1);
        let figures = store.figures();
        assert_eq!((figures.expired, figures.items), (2, 0));
    }
}
