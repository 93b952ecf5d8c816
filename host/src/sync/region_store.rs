//! The shared cache as the sync node sees it.

use cachet_core::cache::Cache;
use cachet_core::sync::{Member, Store};

use crate::session_key::Kind;
use crate::shared::SharedRegion;

/// The shared cache as the sync node's [`Store`], for changes, pulls and
/// bootstrap answers alike: one lock per change, per pull answered, per
/// exported entry. (The configuration requires a cache whenever sync runs;
/// without one, nothing is stored or found.)
#[derive(Debug, Clone, Copy)]
pub struct RegionStore(pub &'static SharedRegion);

impl Store for RegionStore {
    fn with_cache<R>(&mut self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R> {
        self.0.with_cache(f)
    }

    /// A peer may only take what resumes once: it cannot remove a TLS 1.2
    /// session, nor copy a ticket without taking it.
    fn lends(&mut self, key: &[u8], take: bool) -> bool {
        Kind::of(key).is_some_and(|kind| kind.is_single_use() == take)
    }

    /// Live entries that travel: TLS 1.3 tickets stay with their issuer.
    fn exports(&mut self, key: &[u8]) -> bool {
        Kind::of(key).is_some_and(Kind::is_replicated)
    }

    /// The router's processes, each with the number its next datagram
    /// will carry at least (see [`crate::shared::senders`]).
    fn members(&mut self, out: &mut [Member]) -> usize {
        self.0.peers().senders().members(out)
    }
}
