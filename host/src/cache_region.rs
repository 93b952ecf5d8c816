//! The memory the session cache lives in, and the lock around it.
//!
//! Every operation attaches a [`Cache`] view to the region under the lock
//! (O(1): the geometry is read from the region's header), so the code that
//! uses the cache is the same whether the region is private memory, as
//! here, or a mapping shared by worker processes.

use std::sync::{Mutex, PoisonError};

use anyhow::{Context as _, Result};
use cachet_core::cache::{Cache, Config, Layout};

/// A formatted cache region behind a lock.
pub struct CacheRegion {
    bytes: Mutex<Box<[u8]>>,
    layout: Layout,
}

impl std::fmt::Debug for CacheRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheRegion")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl CacheRegion {
    /// A new, empty cache of `capacity` items of at most `block_size` bytes.
    pub fn new(capacity: u32, block_size: u32) -> Result<Self> {
        let layout = Layout::new(capacity, block_size)
            .with_context(|| format!("cache = {capacity}, cache-blocksize = {block_size}"))?;
        let mut hash_key = [0u8; 16];
        aws_lc_rs::rand::fill(&mut hash_key).context("no randomness for the cache hash key")?;
        // Zeroed allocations come from fresh pages that stay untouched (and
        // not resident) until the cache first uses them.
        let mut bytes = vec![0u8; layout.total_bytes()].into_boxed_slice();
        Cache::format(
            &mut bytes[..],
            &Config {
                capacity,
                block_size,
                hash_key,
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(CacheRegion {
            bytes: Mutex::new(bytes),
            layout,
        })
    }

    /// The cache's geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Runs `f` on the cache with exclusive access.
    pub fn with<R>(&self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> R {
        // A panic while holding the lock leaves the region's busy mark set;
        // the next user repairs it instead of giving up on a poisoned lock.
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cache = Cache::attach(&mut bytes[..]).expect("the region was formatted by new()");
        if cache.needs_repair() {
            let report = cache.repair();
            tracing::warn!(
                kept = report.kept,
                dropped = report.dropped,
                "session cache repaired"
            );
        }
        f(&mut cache)
    }
}
