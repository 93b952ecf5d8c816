//! The session cache: a fixed-capacity key/value table with expiry, laid out
//! in a byte region that the caller owns.
//!
//! The region can be a `static` array on a microcontroller, a `Vec<u8>` in a
//! test, or a shared-memory mapping that several router processes attach to in
//! turn (under a lock the host provides). Everything the table needs,
//! geometry, allocator state, hash key and counters, lives *inside* the
//! region, so [`Cache::attach`] on an already formatted region is O(1) and any
//! process sees the same figures. See [`layout`] for the byte layout and the
//! exact memory formula.
//!
//! Operations are expected O(1): a keyed SipHash picks the home bucket of an
//! open-addressing index kept at most half full; values live in chains of
//! small chunks taken from a free list.
//!
//! Expiry: every entry carries an absolute deadline on the caller's clock.
//! Lookups treat an entry whose deadline has passed as absent (and free it on
//! the spot), so an expired session is never returned even if no sweep has
//! run yet; [`Cache::sweep`] frees the rest a bounded number of slots at a
//! time.
//!
//! Eviction when full: CLOCK (second chance). A hit sets an entry's reference
//! bit; the hand walks the slots, takes the first entry that has expired or
//! whose bit is clear, and clears the bits it passes. Sessions that clients
//! come back for survive the flood of sessions that are never resumed (a TLS
//! 1.3 server issues two tickets per handshake, most never used), the state
//! is one bit per entry with no list pointers to damage in shared memory, and
//! each eviction costs amortised O(1). Expired entries the hand meets are
//! always taken before any live one; the sweeper keeps them rare.
//!
//! Crash safety: each mutation raises a `busy` mark in the header first and
//! clears it last. A process that attaches and finds the mark set (or a host
//! whose robust lock reports a dead owner) calls [`Cache::repair`], which
//! rebuilds the index and free lists from the slots and drops any entry whose
//! fields do not hold together.

pub mod layout;

mod counters;
#[cfg(any(test, feature = "model"))]
pub mod model;
mod repair;

#[cfg(test)]
mod tests;

use core::hash::Hasher;
use core::sync::atomic::{compiler_fence, Ordering};

use siphasher::sip::SipHasher13;

use crate::bytes::{read_u32, read_u64, write_u32, write_u64};
use crate::time::{Duration, Instant};
pub use counters::CacheCounters;
use counters::Counter;
use layout::{chunk, header, slot, HEADER_LEN};
pub use layout::{GeometryError, Layout, MAX_CAPACITY, MAX_KEY_LEN};
pub use repair::{Inconsistency, RepairReport};

// The counters must fit in the header.
const _: () = assert!(header::COUNTERS + 8 * Counter::COUNT <= HEADER_LEN);

const MAGIC: u64 = u64::from_le_bytes(*b"cachet\x00\x01");
/// Version of the region layout; a region formatted by another version is
/// refused by [`Cache::attach`].
pub const LAYOUT_VERSION: u32 = 1;

/// What a new cache looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Items the cache holds at most (uWSGI's `cache`).
    pub capacity: u32,
    /// Largest value in bytes (uWSGI's `cache-blocksize`).
    pub block_size: u32,
    /// Secret key of the index hash. Use fresh random bytes for every cache:
    /// with a known key, a peer could choose session ids that collide.
    pub hash_key: [u8; 16],
}

/// Why a region cannot be formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FormatError {
    /// The geometry itself is invalid.
    Geometry(GeometryError),
    /// The region is smaller than [`Layout::total_bytes`].
    RegionTooSmall {
        /// Bytes the geometry needs.
        needed: usize,
        /// Bytes the region has.
        available: usize,
    },
}

/// Why a region cannot be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AttachError {
    /// The region is shorter than a header.
    RegionTooSmall,
    /// The region was never formatted as a cachet cache.
    BadMagic,
    /// The region was formatted by another layout version.
    UnsupportedVersion(u32),
    /// The recorded geometry is invalid or does not fit the region.
    GeometryMismatch,
}

/// Why a put was refused. Every refusal is also counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refused {
    /// The key is empty.
    EmptyKey,
    /// The key is longer than [`MAX_KEY_LEN`].
    KeyTooLong,
    /// The value is longer than the block size.
    ValueTooLarge,
    /// The lifetime is zero: the entry would be dead on arrival.
    ZeroLifetime,
}

/// The caller's output buffer cannot hold the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall {
    /// Bytes the value needs.
    pub needed: usize,
}

/// What [`Cache::get`] and [`Cache::take`] return: the value as copied
/// into the caller's buffer, `None` on a miss, or the buffer too small.
pub type Lookup<'o> = Result<Option<&'o [u8]>, BufferTooSmall>;

/// What a successful put did besides storing the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stored {
    /// A live entry with the same key was replaced.
    pub replaced: bool,
    /// A live entry was evicted to make room.
    pub evicted: bool,
}

/// A live entry copied out by [`Cache::export_next`]. (No `defmt::Format`:
/// it carries session secrets, which firmware should not log.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported<'k, 'v> {
    /// The key.
    pub key: &'k [u8],
    /// The value.
    pub value: &'v [u8],
    /// Lifetime left.
    pub remaining: Duration,
    /// The cursor for the next call.
    pub next: u32,
}

/// A live entry copied out by [`Cache::fetch`]. (No `defmt::Format`: it
/// carries session secrets.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched<'o> {
    /// The value.
    pub value: &'o [u8],
    /// Lifetime left.
    pub remaining: Duration,
}

/// What one call to [`Cache::sweep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sweep {
    /// Slots looked at.
    pub examined: u32,
    /// Expired entries freed.
    pub freed: u32,
    /// The cursor went past the last slot, completing a pass.
    pub wrapped: bool,
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FormatError::Geometry(e) => e.fmt(f),
            FormatError::RegionTooSmall { needed, available } => write!(
                f,
                "cache region too small: the geometry needs {needed} bytes, the region has {available}"
            ),
        }
    }
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttachError::RegionTooSmall => f.write_str("region shorter than a cache header"),
            AttachError::BadMagic => f.write_str("region does not hold a cachet cache"),
            AttachError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "cache layout version {v} is not supported (expected {LAYOUT_VERSION})"
                )
            }
            AttachError::GeometryMismatch => {
                f.write_str("cache header geometry is invalid or larger than the region")
            }
        }
    }
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refused::EmptyKey => "empty key",
            Refused::KeyTooLong => "key longer than 64 bytes",
            Refused::ValueTooLarge => "value larger than the block size",
            Refused::ZeroLifetime => "zero lifetime",
        })
    }
}

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "output buffer too small: the value needs {} bytes",
            self.needed
        )
    }
}

/// A session cache over the byte region `S`.
///
/// `S` is anything that lends out its bytes: `&mut [u8]`, `Vec<u8>`,
/// `[u8; N]`. The struct itself holds only the geometry read at attach time.
pub struct Cache<S> {
    storage: S,
    layout: Layout,
    hash_key: [u8; 16],
}

impl<S> core::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cache")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// Where a key was found in the index.
#[derive(Clone, Copy)]
struct Found {
    bucket: u32,
    slot: u32,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Cache<S> {
    /// Lays out an empty cache in `storage`, which must hold at least
    /// [`Layout::total_bytes`] bytes.
    ///
    /// Writes only the header and the index: slots and chunks are initialised
    /// as they are first handed out, so never-used parts of a large region
    /// stay untouched (and, in a fresh mapping, never become resident).
    pub fn format(mut storage: S, config: &Config) -> Result<Self, FormatError> {
        let layout =
            Layout::new(config.capacity, config.block_size).map_err(FormatError::Geometry)?;
        let available = storage.as_ref().len();
        if available < layout.total_bytes() {
            return Err(FormatError::RegionTooSmall {
                needed: layout.total_bytes(),
                available,
            });
        }
        let buf = storage.as_mut();
        buf[..layout.slots_at].fill(0);
        write_u64(buf, header::MAGIC, MAGIC);
        write_u32(buf, header::VERSION, LAYOUT_VERSION);
        write_u32(buf, header::CAPACITY, layout.capacity);
        write_u32(buf, header::BLOCK_SIZE, layout.block_size);
        write_u32(buf, header::CHUNK_SIZE, layout.chunk_size);
        write_u32(buf, header::CHUNK_COUNT, layout.chunk_count);
        write_u32(buf, header::BUCKETS, layout.buckets);
        buf[header::HASH_KEY..header::HASH_KEY + 16].copy_from_slice(&config.hash_key);
        write_u32(buf, header::CHUNK_HIGH, layout.capacity);
        Ok(Cache {
            storage,
            layout,
            hash_key: config.hash_key,
        })
    }

    /// Attaches to a region that [`Cache::format`] laid out earlier, possibly
    /// in another process. O(1): it reads and checks the header only.
    ///
    /// Check [`Cache::needs_repair`] afterwards when the previous user of the
    /// region may have died mid-operation.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        let buf = storage.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(AttachError::RegionTooSmall);
        }
        if read_u64(buf, header::MAGIC) != MAGIC {
            return Err(AttachError::BadMagic);
        }
        let version = read_u32(buf, header::VERSION);
        if version != LAYOUT_VERSION {
            return Err(AttachError::UnsupportedVersion(version));
        }
        let layout = Layout::new(
            read_u32(buf, header::CAPACITY),
            read_u32(buf, header::BLOCK_SIZE),
        )
        .map_err(|_| AttachError::GeometryMismatch)?;
        if layout.total_bytes() > buf.len()
            || read_u32(buf, header::CHUNK_SIZE) != layout.chunk_size
            || read_u32(buf, header::CHUNK_COUNT) != layout.chunk_count
            || read_u32(buf, header::BUCKETS) != layout.buckets
        {
            return Err(AttachError::GeometryMismatch);
        }
        let mut hash_key = [0u8; 16];
        hash_key.copy_from_slice(&buf[header::HASH_KEY..header::HASH_KEY + 16]);
        Ok(Cache {
            storage,
            layout,
            hash_key,
        })
    }

    /// Gives the region back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// This cache over a borrow of its region, so that code written for one
    /// region type (a [`crate::sync::Store`]) works on every cache.
    pub fn by_ref(&mut self) -> Cache<&mut [u8]> {
        Cache {
            storage: self.storage.as_mut(),
            layout: self.layout,
            hash_key: self.hash_key,
        }
    }

    /// The geometry of this cache.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Live entries (including expired ones not yet freed).
    pub fn items(&self) -> u32 {
        read_u32(self.buf(), header::ITEMS)
    }

    /// When the table last changed, on the caller's clock.
    pub fn last_modified(&self) -> Instant {
        Instant::from_millis(read_u64(self.buf(), header::LAST_MODIFIED))
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CacheCounters {
        CacheCounters::from_fn(self.items(), |c| self.counter(c))
    }

    /// Whether a mutation was interrupted (its process died between starting
    /// and finishing it); if so, call [`Cache::repair`] before anything else.
    pub fn needs_repair(&self) -> bool {
        read_u32(self.buf(), header::BUSY) != 0
    }

    /// Looks `key` up and copies its value into `out`, returning the value.
    ///
    /// `Ok(None)` is a miss: no entry, or only an expired one (which is freed
    /// now). A hit marks the entry as referenced for eviction.
    pub fn get<'o>(&mut self, now: Instant, key: &[u8], out: &'o mut [u8]) -> Lookup<'o> {
        Ok(self.fetch(now, key, out, false)?.map(|f| f.value))
    }

    /// Like [`Cache::get`], and removes the entry on a hit: a TLS 1.3 ticket
    /// is good for one resumption only.
    pub fn take<'o>(&mut self, now: Instant, key: &[u8], out: &'o mut [u8]) -> Lookup<'o> {
        Ok(self.fetch(now, key, out, true)?.map(|f| f.value))
    }

    /// [`Cache::get`] (`take` false) or [`Cache::take`] (`take` true), with
    /// the lifetime the entry has left: what a node answering a peer's pull
    /// sends on, so the copy expires when the original would have.
    pub fn fetch<'o>(
        &mut self,
        now: Instant,
        key: &[u8],
        out: &'o mut [u8],
        take: bool,
    ) -> Result<Option<Fetched<'o>>, BufferTooSmall> {
        self.begin();
        let found = match self.find_live(now, key) {
            Some(found) => found,
            None => {
                self.bump(Counter::Misses);
                self.end();
                return Ok(None);
            }
        };
        let len = self.slot_u32(found.slot, slot::VALUE_LEN) as usize;
        if len > out.len() {
            self.end();
            return Err(BufferTooSmall { needed: len });
        }
        self.read_chain(self.slot_u32(found.slot, slot::FIRST), &mut out[..len]);
        let expires = Instant::from_millis(self.slot_u64(found.slot, slot::EXPIRES));
        self.bump(Counter::Hits);
        if take {
            self.remove(found);
            self.bump(Counter::Takes);
            self.touch(now);
        } else {
            // Write only on the first hit: a clean cache line need not be
            // written back, and in shared memory it stays shared between cores.
            let at = self.layout.slot_at(found.slot) + slot::FLAGS;
            if self.buf()[at] & slot::FLAG_REFERENCED == 0 {
                self.buf_mut()[at] |= slot::FLAG_REFERENCED;
            }
        }
        self.end();
        Ok(Some(Fetched {
            value: &out[..len],
            remaining: expires - now,
        }))
    }

    /// Whether a live entry for `key` is present. Counts nothing and
    /// changes nothing (an expired entry is left for the sweeper): a router
    /// asks this before the handshake, and rustls' own lookup then counts
    /// the hit or the miss once.
    pub fn contains(&self, now: Instant, key: &[u8]) -> bool {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return false;
        }
        self.find(self.hash(key), key)
            .is_some_and(|found| !self.is_expired(found.slot, now))
    }

    /// Inserts or replaces the entry for `key`, alive for `lifetime` from
    /// `now`. A full cache makes room by evicting (see the module docs); a
    /// value that cannot be stored is refused, never truncated.
    pub fn put(
        &mut self,
        now: Instant,
        key: &[u8],
        value: &[u8],
        lifetime: Duration,
    ) -> Result<Stored, Refused> {
        let refusal = if key.is_empty() {
            Some((Refused::EmptyKey, Counter::RefusedEmptyKey))
        } else if key.len() > MAX_KEY_LEN {
            Some((Refused::KeyTooLong, Counter::RefusedKeyTooLong))
        } else if value.len() > self.layout.block_size as usize {
            Some((Refused::ValueTooLarge, Counter::RefusedValueTooLarge))
        } else if lifetime.is_zero() {
            Some((Refused::ZeroLifetime, Counter::RefusedZeroLifetime))
        } else {
            None
        };
        if let Some((reason, counter)) = refusal {
            self.begin();
            self.bump(counter);
            self.end();
            return Err(reason);
        }

        self.begin();
        let hash = self.hash(key);
        let expires = now + lifetime;
        let mut stored = Stored::default();
        let slot_no = match self.find(hash, key) {
            Some(found) => {
                if self.is_expired(found.slot, now) {
                    self.bump(Counter::Expired);
                } else {
                    stored.replaced = true;
                    self.bump(Counter::Replaced);
                }
                self.free_value(found.slot);
                found.slot
            }
            None => {
                let (slot_no, evicted) = self.allocate_slot(now);
                stored.evicted = evicted;
                let at = self.layout.slot_at(slot_no);
                let buf = self.buf_mut();
                write_u32(buf, at + slot::HASH, hash);
                buf[at + slot::KEY_LEN] = key.len() as u8;
                buf[at + slot::FLAGS] = 0;
                buf[at + slot::KEY..at + slot::KEY + key.len()].copy_from_slice(key);
                self.index_insert(hash, slot_no);
                self.add_items(1);
                slot_no
            }
        };
        let first = self.write_chain(slot_no, value);
        let at = self.layout.slot_at(slot_no);
        let buf = self.buf_mut();
        write_u32(buf, at + slot::FIRST, first);
        write_u32(buf, at + slot::VALUE_LEN, value.len() as u32);
        write_u64(buf, at + slot::EXPIRES, expires.as_millis());
        self.bump(Counter::Sets);
        self.touch(now);
        self.end();
        Ok(stored)
    }

    /// Removes the entry for `key`. Returns whether a live entry was removed.
    pub fn delete(&mut self, now: Instant, key: &[u8]) -> bool {
        self.begin();
        let removed = match self.find_live(now, key) {
            Some(found) => {
                self.remove(found);
                self.bump(Counter::Deletes);
                self.touch(now);
                true
            }
            None => false,
        };
        self.end();
        removed
    }

    /// Frees expired entries, looking at no more than `budget` slots, and
    /// resumes next time where this call stopped. A full pass over the table
    /// takes `capacity / budget` calls.
    pub fn sweep(&mut self, now: Instant, budget: u32) -> Sweep {
        let high = self.header_u32(header::SLOT_HIGH);
        let mut report = Sweep::default();
        if high == 0 {
            return report;
        }
        self.begin();
        let mut cursor = self.header_u32(header::SWEEP_CURSOR);
        for _ in 0..budget.min(high) {
            if cursor >= high {
                cursor = 0;
            }
            let slot_no = cursor;
            cursor += 1;
            if cursor >= high {
                report.wrapped = true;
            }
            report.examined += 1;
            if self.is_live(slot_no) && self.is_expired(slot_no, now) {
                let found = self.locate(slot_no);
                self.remove(found);
                self.bump(Counter::Expired);
                report.freed += 1;
            }
        }
        self.set_header_u32(header::SWEEP_CURSOR, cursor);
        if report.freed > 0 {
            self.touch(now);
        }
        self.end();
        report
    }

    /// The first live entry at or after slot `cursor`, copied out: its key
    /// into `key_out`, its value into `value_out`. Returns the entry and the
    /// cursor to pass next, or `None` when no live entry remains. For a
    /// node answering a peer's bootstrap request; changes nothing (an
    /// expired entry is skipped, not freed) and counts nothing.
    pub fn export_next<'k, 'v>(
        &self,
        now: Instant,
        cursor: u32,
        key_out: &'k mut [u8; MAX_KEY_LEN],
        value_out: &'v mut [u8],
    ) -> Result<Option<Exported<'k, 'v>>, BufferTooSmall> {
        let high = self.header_u32(header::SLOT_HIGH);
        for slot_no in cursor..high {
            if !self.is_live(slot_no) || self.is_expired(slot_no, now) {
                continue;
            }
            let at = self.layout.slot_at(slot_no);
            let buf = self.buf();
            let key_len = buf[at + slot::KEY_LEN] as usize;
            let value_len = read_u32(buf, at + slot::VALUE_LEN) as usize;
            if value_len > value_out.len() {
                return Err(BufferTooSmall { needed: value_len });
            }
            key_out[..key_len].copy_from_slice(&buf[at + slot::KEY..at + slot::KEY + key_len]);
            self.read_chain(read_u32(buf, at + slot::FIRST), &mut value_out[..value_len]);
            let expires = Instant::from_millis(read_u64(buf, at + slot::EXPIRES));
            return Ok(Some(Exported {
                key: &key_out[..key_len],
                value: &value_out[..value_len],
                remaining: expires - now,
                next: slot_no + 1,
            }));
        }
        Ok(None)
    }

    /// Drops every entry. Counters keep counting.
    pub fn clear(&mut self, now: Instant) {
        self.begin();
        self.reset_table();
        self.touch(now);
        self.end();
    }

    // ---- lookup -------------------------------------------------------

    /// Finds a live entry; an expired one is freed and reported absent.
    fn find_live(&mut self, now: Instant, key: &[u8]) -> Option<Found> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return None;
        }
        let found = self.find(self.hash(key), key)?;
        if self.is_expired(found.slot, now) {
            self.remove(found);
            self.bump(Counter::Expired);
            return None;
        }
        Some(found)
    }

    // ---- index --------------------------------------------------------

    fn hash(&self, key: &[u8]) -> u32 {
        let mut hasher = SipHasher13::new_with_key(&self.hash_key);
        hasher.write(key);
        hasher.finish() as u32
    }

    fn find(&self, hash: u32, key: &[u8]) -> Option<Found> {
        let buf = self.buf();
        let mask = self.layout.buckets - 1;
        let mut bucket = hash & mask;
        // The index is never more than half full, so an empty bucket ends
        // every probe; the bound only guards a damaged region.
        for _ in 0..self.layout.buckets {
            let entry = read_u32(buf, self.layout.bucket_at(bucket));
            if entry == 0 {
                return None;
            }
            let slot_no = entry - 1;
            let at = self.layout.slot_at(slot_no);
            if read_u32(buf, at + slot::HASH) == hash
                && buf[at + slot::KEY_LEN] as usize == key.len()
                && &buf[at + slot::KEY..at + slot::KEY + key.len()] == key
            {
                return Some(Found {
                    bucket,
                    slot: slot_no,
                });
            }
            bucket = (bucket + 1) & mask;
        }
        None
    }

    /// The index position of a live slot.
    fn locate(&self, slot_no: u32) -> Found {
        let buf = self.buf();
        let mask = self.layout.buckets - 1;
        let mut bucket = self.slot_u32(slot_no, slot::HASH) & mask;
        for _ in 0..self.layout.buckets {
            if read_u32(buf, self.layout.bucket_at(bucket)) == slot_no + 1 {
                return Found {
                    bucket,
                    slot: slot_no,
                };
            }
            bucket = (bucket + 1) & mask;
        }
        panic!("cachet cache: live slot {slot_no} missing from the index (region damaged)");
    }

    fn index_insert(&mut self, hash: u32, slot_no: u32) {
        let mask = self.layout.buckets - 1;
        let mut bucket = hash & mask;
        loop {
            let at = self.layout.bucket_at(bucket);
            if read_u32(self.buf(), at) == 0 {
                write_u32(self.buf_mut(), at, slot_no + 1);
                return;
            }
            bucket = (bucket + 1) & mask;
        }
    }

    /// Empties `bucket` and shifts later members of its probe run back, so
    /// the index needs no tombstones and probes stay short.
    fn index_remove(&mut self, bucket: u32) {
        let mask = self.layout.buckets - 1;
        let mut hole = bucket;
        let mut next = (hole + 1) & mask;
        loop {
            let entry = read_u32(self.buf(), self.layout.bucket_at(next));
            if entry == 0 {
                break;
            }
            let home = self.slot_u32(entry - 1, slot::HASH) & mask;
            // The entry may fill the hole unless its home lies after the
            // hole (cyclically), in which case moving it would hide it.
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                let at = self.layout.bucket_at(hole);
                write_u32(self.buf_mut(), at, entry);
                hole = next;
            }
            next = (next + 1) & mask;
        }
        let at = self.layout.bucket_at(hole);
        write_u32(self.buf_mut(), at, 0);
    }

    // ---- slots --------------------------------------------------------

    /// Unlinks a live entry and returns its slot and chunks to the free lists.
    fn remove(&mut self, found: Found) {
        self.index_remove(found.bucket);
        self.free_value(found.slot);
        self.free_slot(found.slot);
        self.add_items(-1);
    }

    fn free_slot(&mut self, slot_no: u32) {
        let head = self.header_u32(header::SLOT_FREE);
        let at = self.layout.slot_at(slot_no);
        let buf = self.buf_mut();
        write_u64(buf, at + slot::EXPIRES, 0);
        write_u32(buf, at + slot::FIRST, head);
        buf[at + slot::FLAGS] = 0;
        self.set_header_u32(header::SLOT_FREE, slot_no + 1);
    }

    /// A free slot: from the free list, else never used, else by eviction.
    /// Returns the slot and whether a live entry was evicted for it.
    fn allocate_slot(&mut self, now: Instant) -> (u32, bool) {
        let mut evicted = false;
        if self.header_u32(header::SLOT_FREE) == 0 {
            let high = self.header_u32(header::SLOT_HIGH);
            if high < self.layout.capacity {
                self.set_header_u32(header::SLOT_HIGH, high + 1);
                return (high, false);
            }
            self.bump(Counter::Full);
            evicted = self.evict_one(now);
        }
        let head = self.header_u32(header::SLOT_FREE);
        debug_assert!(head != 0, "eviction freed no slot");
        let slot_no = head - 1;
        let next = self.slot_u32(slot_no, slot::FIRST);
        self.set_header_u32(header::SLOT_FREE, next);
        (slot_no, evicted)
    }

    /// Frees one entry chosen by the CLOCK hand. Returns whether it was live
    /// (an eviction) rather than expired.
    fn evict_one(&mut self, now: Instant) -> bool {
        let capacity = self.layout.capacity;
        let mut hand = self.header_u32(header::CLOCK_HAND);
        // Every slot is live here. After one lap every reference bit is
        // clear, so a victim turns up within two laps.
        for _ in 0..=2 * capacity {
            let slot_no = if hand >= capacity { 0 } else { hand };
            hand = slot_no + 1;
            let flags_at = self.layout.slot_at(slot_no) + slot::FLAGS;
            let expired = self.is_expired(slot_no, now);
            if !expired && self.buf()[flags_at] & slot::FLAG_REFERENCED != 0 {
                self.buf_mut()[flags_at] &= !slot::FLAG_REFERENCED;
                continue;
            }
            self.set_header_u32(header::CLOCK_HAND, hand);
            let found = self.locate(slot_no);
            self.remove(found);
            self.bump(if expired {
                Counter::Expired
            } else {
                Counter::Evictions
            });
            return !expired;
        }
        panic!("cachet cache: CLOCK found no victim (region damaged)");
    }

    fn is_live(&self, slot_no: u32) -> bool {
        self.slot_u64(slot_no, slot::EXPIRES) != 0
    }

    fn is_expired(&self, slot_no: u32, now: Instant) -> bool {
        self.slot_u64(slot_no, slot::EXPIRES) <= now.as_millis()
    }

    // ---- chunks -------------------------------------------------------

    /// Copies `value` into a chain of chunks owned by slot `owner`: its
    /// home chunk first (chunk number = slot number, so a lookup can fetch
    /// it without waiting for the slot), then chunks from the pool.
    /// Returns the first chunk + 1 (0 for an empty value).
    fn write_chain(&mut self, owner: u32, value: &[u8]) -> u32 {
        let payload = self.layout.chunk_payload();
        let mut first = 0;
        let mut previous: Option<usize> = None;
        for piece in value.chunks(payload) {
            let chunk_no = if previous.is_none() {
                owner
            } else {
                self.allocate_chunk()
            };
            let at = self.layout.chunk_at(chunk_no);
            let buf = self.buf_mut();
            write_u32(buf, at + chunk::NEXT, 0);
            write_u32(buf, at + chunk::OWNER, owner);
            let data = at + layout::CHUNK_HEADER_LEN;
            buf[data..data + piece.len()].copy_from_slice(piece);
            match previous {
                Some(prev_at) => write_u32(buf, prev_at + chunk::NEXT, chunk_no + 1),
                None => first = chunk_no + 1,
            }
            previous = Some(at);
        }
        first
    }

    /// Copies a chain's bytes into `out`, whose length is the value length.
    fn read_chain(&self, mut link: u32, out: &mut [u8]) {
        let buf = self.buf();
        for piece in out.chunks_mut(self.layout.chunk_payload()) {
            let at = self.layout.chunk_at(link - 1);
            let data = at + layout::CHUNK_HEADER_LEN;
            piece.copy_from_slice(&buf[data..data + piece.len()]);
            link = read_u32(buf, at + chunk::NEXT);
        }
    }

    /// Returns a slot's pool chunks to the free list (its home chunk stays
    /// with the slot). Walks exactly as many chunks as the value length
    /// needs, so a damaged end-of-chain link can never lead it astray.
    fn free_value(&mut self, slot_no: u32) {
        let mut link = self.slot_u32(slot_no, slot::FIRST);
        let len = self.slot_u32(slot_no, slot::VALUE_LEN) as usize;
        for _ in 0..len.div_ceil(self.layout.chunk_payload()) {
            let chunk_no = link - 1;
            let at = self.layout.chunk_at(chunk_no);
            link = read_u32(self.buf(), at + chunk::NEXT);
            // Marking the owner free is what lets `repair` tell live chunks
            // from leftovers.
            if chunk_no < self.layout.capacity {
                write_u32(self.buf_mut(), at + chunk::OWNER, chunk::FREE);
                continue;
            }
            let head = self.header_u32(header::CHUNK_FREE);
            let buf = self.buf_mut();
            write_u32(buf, at + chunk::NEXT, head);
            write_u32(buf, at + chunk::OWNER, chunk::FREE);
            self.set_header_u32(header::CHUNK_FREE, chunk_no + 1);
        }
    }

    fn allocate_chunk(&mut self) -> u32 {
        let head = self.header_u32(header::CHUNK_FREE);
        if head != 0 {
            let next = read_u32(self.buf(), self.layout.chunk_at(head - 1) + chunk::NEXT);
            self.set_header_u32(header::CHUNK_FREE, next);
            return head - 1;
        }
        let high = self.header_u32(header::CHUNK_HIGH);
        // There are enough chunks for every slot to hold a full block, so
        // this only fails on a damaged region.
        assert!(
            high < self.layout.chunk_count,
            "cachet cache: out of value chunks (region damaged)"
        );
        self.set_header_u32(header::CHUNK_HIGH, high + 1);
        high
    }

    // ---- header and raw fields ---------------------------------------

    fn zero_index(&mut self) {
        let (start, end) = (self.layout.index_at, self.layout.slots_at);
        self.buf_mut()[start..end].fill(0);
    }

    fn reset_table(&mut self) {
        self.zero_index();
        // The pool starts after the home chunks, one per slot.
        let pool_start = self.layout.capacity;
        self.set_header_u32(header::CHUNK_HIGH, pool_start);
        let buf = self.buf_mut();
        for field in [
            header::SLOT_HIGH,
            header::SLOT_FREE,
            header::CHUNK_FREE,
            header::CLOCK_HAND,
            header::SWEEP_CURSOR,
            header::ITEMS,
        ] {
            write_u32(buf, field, 0);
        }
    }

    /// Marks the start of a mutation. The fence keeps the compiler from
    /// moving table writes above the mark, so a process killed mid-way always
    /// leaves the mark set.
    fn begin(&mut self) {
        self.set_header_u32(header::BUSY, 1);
        compiler_fence(Ordering::SeqCst);
    }

    fn end(&mut self) {
        compiler_fence(Ordering::SeqCst);
        self.set_header_u32(header::BUSY, 0);
    }

    fn touch(&mut self, now: Instant) {
        write_u64(self.buf_mut(), header::LAST_MODIFIED, now.as_millis());
    }

    fn add_items(&mut self, delta: i32) {
        let items = self.header_u32(header::ITEMS);
        self.set_header_u32(header::ITEMS, items.wrapping_add_signed(delta));
    }

    fn counter(&self, counter: Counter) -> u64 {
        read_u64(self.buf(), header::COUNTERS + 8 * counter as usize)
    }

    fn bump(&mut self, counter: Counter) {
        self.add_counter(counter, 1);
    }

    fn add_counter(&mut self, counter: Counter, n: u64) {
        let at = header::COUNTERS + 8 * counter as usize;
        let value = read_u64(self.buf(), at).wrapping_add(n);
        write_u64(self.buf_mut(), at, value);
    }

    fn header_u32(&self, field: usize) -> u32 {
        read_u32(self.buf(), field)
    }

    fn set_header_u32(&mut self, field: usize, value: u32) {
        write_u32(self.buf_mut(), field, value);
    }

    fn slot_u32(&self, slot_no: u32, field: usize) -> u32 {
        read_u32(self.buf(), self.layout.slot_at(slot_no) + field)
    }

    fn slot_u64(&self, slot_no: u32, field: usize) -> u64 {
        read_u64(self.buf(), self.layout.slot_at(slot_no) + field)
    }

    #[inline]
    fn buf(&self) -> &[u8] {
        self.storage.as_ref()
    }

    #[inline]
    fn buf_mut(&mut self) -> &mut [u8] {
        self.storage.as_mut()
    }
}

impl core::error::Error for FormatError {}
impl core::error::Error for AttachError {}
impl core::error::Error for Refused {}
impl core::error::Error for BufferTooSmall {}
