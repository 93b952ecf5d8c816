//! Everything the master and its workers share: one memory file holding the
//! robust lock, each process's counters, the sync tables and the session
//! cache.
//!
//! ```text
//! +--------------+------------------------------+--------------------+-------------------+
//! | control page | counters: MAX_WORKERS+1      | peers: PeerTable   | cachet-core cache |
//! | robust mutex | blocks (ProcessCounters)     | (peers, key_table, | (optional), under |
//! |              |                              |  senders, tickets) | the robust mutex  |
//! +--------------+------------------------------+--------------------+-------------------+
//! ```
//!
//! The master creates and formats the region before any worker exists and
//! hands its descriptor to each worker, which maps it. Counters and tables
//! are atomics, read and written without a lock. Cache operations run
//! under the robust mutex: every one attaches a [`Cache`] view (O(1)) to the
//! bytes while holding it. A worker that dies holding the lock costs nothing
//! but a repair: the next locker hears `EOWNERDEAD` and rebuilds the
//! table's derived state from its slots before going on.
//!
//! The modules below are the tables that live in the region (and only
//! that: what a process does with them lives with that process's code).

pub mod key_table;
pub mod peers;
pub mod senders;
pub mod ticket_board;

use std::os::fd::{BorrowedFd, OwnedFd};

use anyhow::{anyhow, Context as _, Result};
use cachet_core::cache::{Cache, Config, Layout};

use crate::metrics::{Metrics, ProcessCounters};
use crate::sys::robust_mutex::{Acquired, Guard, RobustMutex, MUTEX_SIZE};
use crate::sys::shm::SharedMemory;
use peers::PeerTable;

/// Most processes that can count in the region: workers are numbered from
/// 1, block 0 belongs to a process serving on its own (or the master).
pub const MAX_WORKERS: usize = 1024;

/// Every process's counters, by process number.
type CounterBlocks = [ProcessCounters; MAX_WORKERS + 1];

const PAGE: usize = 4096;
const CONTROL_LEN: usize = PAGE;
const COUNTERS_AT: usize = CONTROL_LEN;
const COUNTERS_LEN: usize = std::mem::size_of::<CounterBlocks>();
const PEERS_AT: usize = (COUNTERS_AT + COUNTERS_LEN).div_ceil(PAGE) * PAGE;
const PEERS_LEN: usize = std::mem::size_of::<PeerTable>();
const CACHE_AT: usize = (PEERS_AT + PEERS_LEN).div_ceil(PAGE) * PAGE;
const _: () = assert!(MUTEX_SIZE <= CONTROL_LEN);

/// Test-only: the worker number named in this variable blocks forever while
/// holding the cache lock, the first time it takes it, so that a test can
/// kill it there. Never set outside tests.
pub const TEST_HOLD_LOCK_ENV: &str = "CACHET_TEST_HOLD_CACHE_LOCK";

/// The shared region, as one process maps it.
pub struct SharedRegion {
    memory: &'static SharedMemory,
    /// Guards the cache bytes (none when the region has no cache).
    lock: RobustMutex,
    counters: &'static CounterBlocks,
    peers: &'static PeerTable,
    layout: Option<Layout>,
    /// Armed by [`TEST_HOLD_LOCK_ENV`] for this process.
    hold_lock_for_test: bool,
}

impl std::fmt::Debug for SharedRegion {
    // Not the thousand counter blocks and the peer table.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRegion")
            .field("bytes", &self.memory.len())
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// The geometry of the cache to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheGeometry {
    /// Items (`cache`).
    pub capacity: u32,
    /// Largest value (`cache-blocksize`).
    pub block_size: u32,
}

impl SharedRegion {
    /// Creates and formats a region, with a cache when `cache` is given.
    pub fn create(cache: Option<CacheGeometry>) -> Result<SharedRegion> {
        let layout = cache
            .map(|g| {
                Layout::new(g.capacity, g.block_size).with_context(|| {
                    format!("cache = {}, cache-blocksize = {}", g.capacity, g.block_size)
                })
            })
            .transpose()?;
        let len = CACHE_AT + layout.map_or(0, |l| l.total_bytes());
        let memory =
            SharedMemory::create("cachet-shared", len).context("creating shared memory")?;
        let lock = memory
            .new_mutex(0, CACHE_AT..len)
            .context("initialising the cache lock")?;
        let region = SharedRegion {
            memory,
            lock,
            counters: memory.place(COUNTERS_AT)?,
            peers: memory.place(PEERS_AT)?,
            layout,
            hold_lock_for_test: false,
        };
        if let (Some(g), Some(_)) = (cache, layout) {
            let mut hash_key = [0u8; 16];
            aws_lc_rs::rand::fill(&mut hash_key)
                .map_err(|_| anyhow!("no randomness for the cache hash key"))?;
            let config = Config {
                capacity: g.capacity,
                block_size: g.block_size,
                hash_key,
            };
            let mut bytes = region.lock.lock().context("cache lock")?;
            Cache::format(&mut bytes[..], &config).map_err(|e| anyhow!("{e}"))?;
        }
        Ok(region)
    }

    /// Maps a region the master created, from its inherited descriptor.
    /// `worker` is this process's worker number (for the test hook).
    pub fn open(fd: OwnedFd, worker: usize) -> Result<SharedRegion> {
        let memory = SharedMemory::open(fd).context("mapping the shared region")?;
        if memory.len() < CACHE_AT {
            return Err(anyhow!(
                "shared region of {} bytes is too small",
                memory.len()
            ));
        }
        let mut region = SharedRegion {
            memory,
            lock: memory.attach_mutex(0, CACHE_AT..memory.len())?,
            counters: memory.place(COUNTERS_AT)?,
            peers: memory.place(PEERS_AT)?,
            layout: None,
            hold_lock_for_test: std::env::var(TEST_HOLD_LOCK_ENV)
                .is_ok_and(|n| n == worker.to_string()),
        };
        if memory.len() > CACHE_AT {
            // The geometry is the header's, written once before any worker
            // started; reading it under the lock repairs, like any use.
            let layout = region.locked_cache(|cache| *cache.layout())?;
            region.layout = Some(layout);
        }
        Ok(region)
    }

    /// The descriptor to hand to a worker.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.memory.fd()
    }

    /// The cache's geometry, if the region has a cache.
    pub fn cache_layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// The counters of process `process` (0 for a lone process or the
    /// master, else the worker number).
    pub fn metrics(&'static self, process: usize) -> Metrics {
        assert!(
            process <= MAX_WORKERS,
            "worker {process} beyond {MAX_WORKERS}"
        );
        Metrics::on(&self.counters[process])
    }

    /// The sync peers table.
    pub fn peers(&'static self) -> &'static PeerTable {
        self.peers
    }

    /// Runs `f` on the cache, holding the process-shared lock; `None` when
    /// the region has no cache.
    pub fn with_cache<R>(&self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R> {
        self.layout?;
        let result = self.locked_cache(|cache| {
            if self.hold_lock_for_test {
                crate::say!("cachet: test hook: holding the cache lock");
                loop {
                    std::thread::park();
                }
            }
            f(cache)
        });
        match result {
            Ok(result) => Some(result),
            Err(error) => panic!("{error:#}"),
        }
    }

    /// Runs `f` on the cache under the lock, repairing it first when a
    /// process died holding the lock or in the middle of a change.
    fn locked_cache<R>(&self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Result<R> {
        let mut guard: Guard<'_> = self.lock.lock().context("cache lock failed")?;
        let owner_died = guard.acquired() == Acquired::PreviousOwnerDied;
        let mut cache = Cache::attach(&mut guard[..])
            .map_err(|e| anyhow!("the shared region holds no formatted cache: {e}"))?;
        if owner_died || cache.needs_repair() {
            let report = cache.repair();
            tracing::warn!(
                kept = report.kept,
                dropped = report.dropped,
                "session cache repaired after a process died holding it"
            );
        }
        Ok(f(&mut cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachet_core::{Duration, Instant};

    #[test]
    fn a_second_mapping_sees_the_same_cache_and_counters() {
        let region: &'static SharedRegion = Box::leak(Box::new(
            SharedRegion::create(Some(CacheGeometry {
                capacity: 100,
                block_size: 512,
            }))
            .unwrap(),
        ));
        let fd = region.fd().try_clone_to_owned().unwrap();
        let other: &'static SharedRegion = Box::leak(Box::new(SharedRegion::open(fd, 1).unwrap()));
        region
            .with_cache(|c| c.put(Instant::from_millis(1), b"k", b"v", Duration::from_secs(9)))
            .unwrap()
            .unwrap();
        let mut out = [0u8; 512];
        let got = other
            .with_cache(|c| {
                c.get(Instant::from_millis(2), b"k", &mut out)
                    .unwrap()
                    .map(<[u8]>::to_vec)
            })
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"v"[..]));
        region.metrics(3).request();
        assert_eq!(requests(other, 3), 1);
        assert_eq!(requests(other, 2), 0);
    }

    #[test]
    fn a_region_without_cache_still_shares_counters() {
        let region: &'static SharedRegion =
            Box::leak(Box::new(SharedRegion::create(None).unwrap()));
        assert!(region.cache_layout().is_none());
        assert!(region.with_cache(|c| c.items()).is_none());
        region.metrics(0).request();
        assert_eq!(requests(region, 0), 1);
    }

    /// The requests `process` counted, as any mapping of `region` reads them.
    fn requests(region: &'static SharedRegion, process: usize) -> u64 {
        region
            .metrics(process)
            .snapshot()
            .get(crate::metrics::Metric::Requests)
    }
}
