//! Everything the master and its workers share: one memory file holding the
//! robust lock, each worker's counters and the session cache.
//!
//! ```text
//! +--------------+-------------------------------+------------+-------------------+
//! | control page | counters: MAX_WORKERS blocks  | sync peers | cachet-core cache |
//! | robust mutex | (metrics::ProcessCounters,    | (atomics)  | (optional)        |
//! |              |  atomics)                     |            |                   |
//! +--------------+-------------------------------+------------+-------------------+
//! ```
//!
//! The master creates and formats the region before any worker exists and
//! hands its descriptor to each worker, which maps it. Cache operations run
//! under the robust mutex: every one attaches a [`Cache`] view (O(1)) to the
//! bytes while holding it. A worker that dies holding the lock costs nothing
//! but a repair: the next locker hears `EOWNERDEAD` and rebuilds the
//! table's derived state from its slots before going on.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use anyhow::{anyhow, Context as _, Result};
use cachet_core::cache::{Cache, Config, Layout};

use crate::metrics::{Metrics, ProcessCounters};
use crate::robust_lock::{Acquired, RobustMutex, MUTEX_SIZE};
use crate::shm::SharedMemory;
use crate::sync::peers::PeerTable;

/// Most processes that can count in the region: workers are numbered from
/// 1, block 0 belongs to a process serving on its own.
pub const MAX_WORKERS: usize = 1024;

const PAGE: usize = 4096;
const CONTROL_LEN: usize = PAGE;
const COUNTERS_AT: usize = CONTROL_LEN;
const COUNTERS_LEN: usize = (MAX_WORKERS + 1) * std::mem::size_of::<ProcessCounters>();
const PEERS_AT: usize = (COUNTERS_AT + COUNTERS_LEN).div_ceil(PAGE) * PAGE;
const PEERS_LEN: usize = std::mem::size_of::<PeerTable>();
const CACHE_AT: usize = (PEERS_AT + PEERS_LEN).div_ceil(PAGE) * PAGE;
const _: () = assert!(MUTEX_SIZE <= CONTROL_LEN);

/// Test-only: the worker number named in this variable blocks forever while
/// holding the cache lock, the first time it takes it, so that a test can
/// kill it there. Never set outside tests.
pub const TEST_HOLD_LOCK_ENV: &str = "CACHET_TEST_HOLD_CACHE_LOCK";

/// The shared region.
#[derive(Debug)]
pub struct SharedRegion {
    memory: SharedMemory,
    lock: RobustMutex,
    layout: Option<Layout>,
    /// Armed by [`TEST_HOLD_LOCK_ENV`] for this process.
    hold_lock_for_test: bool,
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
        // SAFETY: the control page starts the fresh, page-aligned mapping,
        // which `memory` keeps alive as long as the region; nobody else uses
        // it yet.
        let lock =
            unsafe { RobustMutex::init(memory.as_ptr()) }.context("initialising the cache lock")?;
        let mut region = SharedRegion {
            memory,
            lock,
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
            let bytes = region.cache_bytes_mut().expect("the layout was just made");
            Cache::format(bytes, &config).map_err(|e| anyhow!("{e}"))?;
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
        // SAFETY: the master initialised the mutex at the start of this
        // mapping before starting any worker; `memory` outlives the handle.
        let lock = unsafe { RobustMutex::attach(memory.as_ptr()) };
        let mut region = SharedRegion {
            memory,
            lock,
            layout: None,
            hold_lock_for_test: std::env::var(TEST_HOLD_LOCK_ENV)
                .is_ok_and(|n| n == worker.to_string()),
        };
        if region.memory.len() > CACHE_AT {
            let bytes = region
                .cache_bytes_mut()
                .expect("the region has a cache part");
            region.layout = Some(
                *Cache::attach(bytes)
                    .map_err(|e| anyhow!("shared cache: {e}"))?
                    .layout(),
            );
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

    /// The counters of process `slot` (0 for a lone process, else the worker
    /// number).
    pub fn metrics(&'static self, slot: usize) -> Metrics {
        assert!(slot <= MAX_WORKERS, "worker {slot} beyond {MAX_WORKERS}");
        let at = COUNTERS_AT + slot * std::mem::size_of::<ProcessCounters>();
        // SAFETY: the block lies inside the mapping (checked above and at
        // creation), is 8-byte aligned (page + a multiple of the size of a
        // struct of u64 atomics), and is all atomics, for which the zeroed
        // bytes the kernel gave us are valid. `self` is 'static, so the
        // mapping outlives the reference; atomics make concurrent use from
        // several processes sound.
        let counters = unsafe { &*self.memory.as_ptr().add(at).cast::<ProcessCounters>() };
        Metrics::on(counters)
    }

    /// The sync peers table.
    pub fn peers(&'static self) -> &'static PeerTable {
        // SAFETY: the table lies inside the mapping at a page boundary, is
        // all atomics (valid when zeroed, as the kernel gave the pages), and
        // `self` is 'static so the mapping outlives the reference.
        unsafe { &*self.memory.as_ptr().add(PEERS_AT).cast::<PeerTable>() }
    }

    /// Runs `f` on the cache, holding the process-shared lock; `None` when
    /// the region has no cache.
    pub fn with_cache<R>(&self, f: impl FnOnce(&mut Cache<&mut [u8]>) -> R) -> Option<R> {
        let layout = self.layout?;
        let acquired = match self.lock.lock() {
            Ok(acquired) => acquired,
            Err(error) => panic!("cache lock failed: {error}"),
        };
        let guard = Unlock(&self.lock);
        if self.hold_lock_for_test {
            crate::say!("cachet: test hook: holding the cache lock");
            loop {
                std::thread::park();
            }
        }
        // SAFETY: the cache part lies inside the mapping, and holding the
        // process-shared lock makes this the only live reference to those
        // bytes in any process until `guard` drops.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.memory.as_ptr().add(CACHE_AT), layout.total_bytes())
        };
        let mut cache = Cache::attach(bytes).expect("the shared region holds a formatted cache");
        if acquired == Acquired::PreviousOwnerDied || cache.needs_repair() {
            let report = cache.repair();
            tracing::warn!(
                kept = report.kept,
                dropped = report.dropped,
                "session cache repaired after a process died holding it"
            );
        }
        let result = f(&mut cache);
        drop(guard);
        Some(result)
    }

    fn cache_bytes_mut(&mut self) -> Option<&mut [u8]> {
        let len = self.memory.len().checked_sub(CACHE_AT).filter(|&n| n > 0)?;
        // SAFETY: inside the mapping; `&mut self` and no worker yet (create)
        // or no other use in this process yet (open) make it exclusive here.
        Some(unsafe { std::slice::from_raw_parts_mut(self.memory.as_ptr().add(CACHE_AT), len) })
    }
}

/// Releases the lock however the critical section ends.
struct Unlock<'a>(&'a RobustMutex);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Clears close-on-exec on `fd` so a worker started next inherits it.
pub fn inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain fcntl on a valid descriptor.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
        assert_eq!(
            other
                .metrics(3)
                .snapshot()
                .get(crate::metrics::Metric::Requests),
            1
        );
        assert_eq!(
            other
                .metrics(2)
                .snapshot()
                .get(crate::metrics::Metric::Requests),
            0
        );
    }

    #[test]
    fn a_region_without_cache_still_shares_counters() {
        let region: &'static SharedRegion =
            Box::leak(Box::new(SharedRegion::create(None).unwrap()));
        assert!(region.cache_layout().is_none());
        assert!(region.with_cache(|c| c.items()).is_none());
        region.metrics(0).request();
        assert_eq!(
            region
                .metrics(0)
                .snapshot()
                .get(crate::metrics::Metric::Requests),
            1
        );
    }
}
