//! rustls session storage over the `cachet-core` session cache.
//!
//! One [`SessionStore`] per process holds the cache; each TLS configuration
//! (listening socket and certificate) gets a [`SessionStore::for_context`]
//! view whose keys are `context digest (16 bytes) || rustls key`. The digest
//! is the first 16 bytes of SHA-256 over the session context, so a session
//! made under one certificate or SNI name can never be found under another,
//! and every key fits the cache's 64-byte limit (rustls' session ids and
//! ticket ids are 32 bytes).
//!
//! rustls calls `put` after a full handshake (a TLS 1.2 session id, or each
//! TLS 1.3 ticket), `get` on a TLS 1.2 resumption and `take` on a TLS 1.3
//! one, since tickets are single use. Every call is one short critical
//! section on the cache, with no I/O: the handshake never waits on anything
//! but memory.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use cachet_core::cache::Layout;
use cachet_core::Duration as CacheDuration;
use rustls::server::StoresServerSessions;

use crate::clock;
use crate::shared::SharedRegion;
use crate::stats::CacheFigures;
use crate::sync::outbound::ChangeQueue;
use crate::sync::Change;

/// Bytes of session-context digest in front of every key.
const CONTEXT_DIGEST_LEN: usize = 16;

/// The process's handle on the session cache.
#[derive(Debug)]
pub struct SessionStore {
    region: &'static SharedRegion,
    layout: Layout,
    lifetime: CacheDuration,
    changes: Option<ChangeQueue>,
}

impl SessionStore {
    /// The store over `region`'s cache, with sessions living `timeout`;
    /// `None` when the region has no cache. With `changes`, every session
    /// stored and every ticket consumed is queued for the cluster peers.
    pub fn new(
        region: &'static SharedRegion,
        timeout: Duration,
        changes: Option<ChangeQueue>,
    ) -> Option<Self> {
        Some(SessionStore {
            layout: *region.cache_layout()?,
            region,
            lifetime: CacheDuration::from_millis(timeout.as_millis() as u64),
            changes,
        })
    }

    /// Storage for one session context.
    pub fn for_context(&self, context: &[u8]) -> Arc<dyn StoresServerSessions> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, context);
        let mut prefix = [0u8; CONTEXT_DIGEST_LEN];
        prefix.copy_from_slice(&digest.as_ref()[..CONTEXT_DIGEST_LEN]);
        Arc::new(ContextStorage {
            region: self.region,
            block_size: self.layout.block_size() as usize,
            prefix,
            lifetime: self.lifetime,
            changes: self.changes.clone(),
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
            items: Some(u64::from(n.items)),
            hits: n.hits,
            miss: n.miss,
            full: n.full,
            sets: n.sets,
            deletes: n.deletes + n.takes,
            evictions: Some(n.evictions),
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

#[derive(Debug)]
struct ContextStorage {
    region: &'static SharedRegion,
    block_size: usize,
    prefix: [u8; CONTEXT_DIGEST_LEN],
    lifetime: CacheDuration,
    changes: Option<ChangeQueue>,
}

thread_local! {
    /// Where values are copied out of the cache; grows to the block size once.
    static VALUE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl ContextStorage {
    /// `prefix || key` on the stack; `None` when the key cannot fit the
    /// cache's 64-byte limit (the cache then counts the refusal on `put`).
    fn with_key<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        let mut full = [0u8; cachet_core::cache::MAX_KEY_LEN + 1];
        let len = (CONTEXT_DIGEST_LEN + key.len()).min(full.len());
        full[..CONTEXT_DIGEST_LEN].copy_from_slice(&self.prefix);
        let rest = len - CONTEXT_DIGEST_LEN;
        full[CONTEXT_DIGEST_LEN..len].copy_from_slice(&key[..rest]);
        f(&full[..len])
    }

    fn lookup(&self, key: &[u8], take: bool) -> Option<Vec<u8>> {
        let now = clock::now();
        let block = self.block_size;
        VALUE_BUFFER.with_borrow_mut(|out| {
            if out.len() < block {
                out.resize(block, 0);
            }
            self.with_key(key, |key| {
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
                    .inspect(|_| {
                        // A used ticket dies cluster-wide: it resumes once.
                        if let (true, Some(changes)) = (take, &self.changes) {
                            changes.push(Change::Delete { key: key.to_vec() });
                        }
                    })
            })
        })
    }
}

impl StoresServerSessions for ContextStorage {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let now = clock::now();
        self.with_key(&key, |key| {
            let stored = self
                .region
                .with_cache(|cache| cache.put(now, key, &value, self.lifetime).is_ok())
                .unwrap_or(false);
            if let (true, Some(changes)) = (stored, &self.changes) {
                changes.push(Change::Set {
                    key: key.to_vec(),
                    value: value.clone(),
                    lifetime: self.lifetime,
                });
            }
            stored
        })
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, false)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, true)
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
        SessionStore::new(region, timeout, None).unwrap()
    }

    #[test]
    fn contexts_do_not_see_each_other() {
        let store = store(Duration::from_secs(60));
        let a = store.for_context(b"a");
        let b = store.for_context(b"b");
        assert!(a.put(b"id".to_vec(), b"session".to_vec()));
        assert_eq!(a.get(b"id"), Some(b"session".to_vec()));
        assert_eq!(b.get(b"id"), None);
        let figures = store.figures();
        assert_eq!(
            (figures.hits, figures.miss, figures.sets, figures.items),
            (1, 1, 1, Some(1))
        );
    }

    #[test]
    fn take_is_single_use() {
        let store = store(Duration::from_secs(60));
        let a = store.for_context(b"a");
        assert!(a.put(b"ticket".to_vec(), b"v".to_vec()));
        assert_eq!(a.take(b"ticket"), Some(b"v".to_vec()));
        assert_eq!(a.take(b"ticket"), None);
        assert_eq!(store.figures().deletes, 1);
    }

    #[test]
    fn oversized_values_and_keys_are_refused_and_counted() {
        let store = store(Duration::from_secs(60));
        let a = store.for_context(b"a");
        assert!(!a.put(b"id".to_vec(), vec![0; 65]));
        assert!(!a.put(vec![1; 49], b"v".to_vec()));
        assert!(a.put(vec![1; 48], b"v".to_vec()));
        assert_eq!(a.get(b"id"), None);
        assert_eq!(store.figures().refused_too_large, 2);
    }

    #[test]
    fn expired_values_are_not_returned_and_the_sweep_frees_them() {
        let store = store(Duration::from_millis(1));
        let a = store.for_context(b"a");
        assert!(a.put(b"id".to_vec(), b"v".to_vec()));
        assert!(a.put(b"id2".to_vec(), b"v".to_vec()));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(a.get(b"id"), None);
        assert_eq!(store.sweep(100), 1);
        let figures = store.figures();
        assert_eq!((figures.expired, figures.items), (2, Some(0)));
    }
}
