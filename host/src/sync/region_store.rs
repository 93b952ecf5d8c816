//! The shared cache as the sync node sees it.

use cachet_core::cache::{BufferTooSmall, Exported, Fetched, Refused, Stored, MAX_KEY_LEN};
use cachet_core::sync::bootstrap::Export;
use cachet_core::sync::{Member, Store};
use cachet_core::{Duration, Instant};

use crate::session_key::Kind;
use crate::shared::SharedRegion;

/// The shared cache as the sync node's [`Store`] and a bootstrap answer's
/// [`Export`]: one lock per change, per pull answered, per exported entry.
/// (The configuration requires a cache whenever sync runs; without one,
/// nothing is stored or found.)
#[derive(Debug, Clone, Copy)]
pub struct RegionStore(pub &'static SharedRegion);

impl Store for RegionStore {
    /// The router's processes, each with the number its next datagram
    /// will carry at least (see [`crate::shared::senders`]).
    fn members(&mut self, out: &mut [Member]) -> usize {
        self.0.peers().senders().members(out)
    }

    fn put(
        &mut self,
        now: Instant,
        key: &[u8],
        value: &[u8],
        lifetime: Duration,
    ) -> Result<Stored, Refused> {
        self.0
            .with_cache(|cache| cache.put(now, key, value, lifetime))
            .unwrap_or(Err(Refused::ValueTooLarge))
    }

    fn delete(&mut self, now: Instant, key: &[u8]) -> bool {
        self.0
            .with_cache(|cache| cache.delete(now, key))
            .unwrap_or(false)
    }

    fn fetch<'o>(
        &mut self,
        now: Instant,
        key: &[u8],
        take: bool,
        out: &'o mut [u8],
    ) -> Option<Fetched<'o>> {
        // A peer may only take what resumes once: it cannot remove a TLS
        // 1.2 session, nor copy a ticket without taking it.
        let take = match Kind::of(key) {
            Some(kind) if kind.is_single_use() == take => take,
            _ => return None,
        };
        let (len, remaining) = self
            .0
            .with_cache(|cache| {
                cache
                    .fetch(now, key, out, take)
                    .ok()
                    .flatten()
                    .map(|found| (found.value.len(), found.remaining))
            })
            .flatten()?;
        Some(Fetched {
            value: &out[..len],
            remaining,
        })
    }
}

impl Export for RegionStore {
    /// Live entries that travel: TLS 1.3 tickets stay with their issuer.
    fn export_next<'k, 'v>(
        &mut self,
        now: Instant,
        mut cursor: u32,
        key_out: &'k mut [u8; MAX_KEY_LEN],
        value_out: &'v mut [u8],
    ) -> Result<Option<Exported<'k, 'v>>, BufferTooSmall> {
        let next = loop {
            let found = self
                .0
                .with_cache(|cache| cache.export_next(now, cursor, key_out, value_out))
                .unwrap_or(Ok(None))?;
            match found {
                None => return Ok(None),
                Some(entry) if Kind::of(entry.key).is_some_and(Kind::is_replicated) => {
                    break (
                        entry.key.len(),
                        entry.value.len(),
                        entry.remaining,
                        entry.next,
                    )
                }
                Some(entry) => cursor = entry.next,
            }
        };
        let (key_len, value_len, remaining, next) = next;
        Ok(Some(Exported {
            key: &key_out[..key_len],
            value: &value_out[..value_len],
            remaining,
            next,
        }))
    }
}
