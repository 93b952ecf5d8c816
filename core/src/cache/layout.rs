//! Where everything sits inside the caller's byte region, and how big the
//! region must be.
//!
//! ```text
//! +-----------+-------------------+--------------------------------------+-----------------------+
//! | header    | index             | records: capacity x (slot+home chunk)| pool chunks           |
//! | 256 bytes | buckets x 4 bytes | 88 + chunk_size bytes each           | the rest of the chunks|
//! +-----------+-------------------+--------------------------------------+-----------------------+
//! ```
//!
//! * **header**: geometry, the hash key, allocator heads, counters.
//! * **index**: open-addressing table of `slot + 1` (0 = empty), linear
//!   probing, `buckets` = the power of two at or above `2 x capacity`, so the
//!   load factor never exceeds one half.
//! * **records**: one per item: the 88-byte slot (expiry, hash, lengths,
//!   first chunk, the key inline, up to [`MAX_KEY_LEN`] bytes) followed by
//!   its home chunk, the first chunk of its value. A record is a whole
//!   number of cache lines, so a hit on a typical session reads the index
//!   and one stretch of memory, no more.
//! * **pool chunks**: the rest of a value longer than a home chunk holds,
//!   in chains (each chunk: an 8-byte link and owner, then payload). A value
//!   takes only the chunks it needs, so a 100-byte TLS session in a cache
//!   configured for 4096-byte blocks touches its record, never a 4 KiB
//!   page of its own: the pool is mostly never-touched virtual memory. There
//!   are enough chunks for every slot to hold a full block, so running out
//!   of chunks cannot happen before running out of slots.
//!
//! Memory formula, exactly as [`Layout::total_bytes`] computes it:
//!
//! ```text
//! chunk_size    = round_up(88 + min(256, round_up(block_size + 8, 8)), 64) - 88
//! chunk_payload = chunk_size - 8
//! chunk_count   = capacity x ceil(block_size / chunk_payload)   (home chunks included)
//! buckets       = next_power_of_two(2 x capacity)
//! total         = round_up(256 + 4 x buckets, 64) + (88 + chunk_size) x capacity
//!                 + chunk_size x (chunk_count - capacity)
//! ```
//!
//! Fixed overhead per item beyond its value bytes: 88 (slot, key included) +
//! 8 to 16 (index) + 8 per chunk the value uses, i.e. 104 to 112 bytes for a
//! value that fits its home chunk (uWSGI: 88 + 2048 bytes of key space per
//! item). For the seed's `cache = 20000`, `cache-blocksize = 4096`: 91 MB of
//! address space, of which a cache full of typical 100-byte sessions touches
//! about 8 MB (the records and the index).

/// Longest key the cache stores: a session-context namespace (up to 32
/// bytes) followed by a TLS session id or ticket id (up to 32 bytes).
pub const MAX_KEY_LEN: usize = 64;

/// Largest capacity: slot numbers must leave the top bit of a `u32` free
/// (the repair pass uses it as a mark).
pub const MAX_CAPACITY: u32 = 1 << 30;

pub(crate) const HEADER_LEN: usize = 256;
pub(crate) const SLOT_LEN: usize = 88;
pub(crate) const CHUNK_HEADER_LEN: usize = 8;
const MAX_CHUNK_LEN: u32 = 256;
const CACHE_LINE: u32 = 64;

/// Byte offsets of the header fields.
pub(crate) mod header {
    pub const MAGIC: usize = 0; // u64
    pub const VERSION: usize = 8; // u32
    pub const CAPACITY: usize = 12; // u32
    pub const BLOCK_SIZE: usize = 16; // u32
    pub const CHUNK_SIZE: usize = 20; // u32
    pub const CHUNK_COUNT: usize = 24; // u32
    pub const BUCKETS: usize = 28; // u32
    pub const HASH_KEY: usize = 32; // [u8; 16]
    pub const SLOT_HIGH: usize = 48; // u32: slots ever handed out (bump allocator)
    pub const SLOT_FREE: usize = 52; // u32: free-list head, slot + 1 (0 = empty)
    pub const CHUNK_HIGH: usize = 56; // u32
    pub const CHUNK_FREE: usize = 60; // u32: chunk + 1
    pub const CLOCK_HAND: usize = 64; // u32
    pub const SWEEP_CURSOR: usize = 68; // u32
    pub const ITEMS: usize = 72; // u32
    pub const BUSY: usize = 76; // u32: non-zero while a mutation is under way
    pub const LAST_MODIFIED: usize = 80; // u64: Instant of the last change
    pub const COUNTERS: usize = 96; // [u64; Counter::COUNT]
}

/// Byte offsets inside a slot.
pub(crate) mod slot {
    pub const EXPIRES: usize = 0; // u64, 0 = slot is free
    pub const HASH: usize = 8; // u32
    pub const VALUE_LEN: usize = 12; // u32
    pub const FIRST: usize = 16; // u32: first chunk; on a free slot, next free slot + 1
    pub const KEY_LEN: usize = 20; // u8
    pub const FLAGS: usize = 21; // u8
    pub const KEY: usize = 24; // [u8; MAX_KEY_LEN]
    pub const FLAG_REFERENCED: u8 = 1;
}

/// Byte offsets inside a chunk header.
pub(crate) mod chunk {
    pub const NEXT: usize = 0; // u32: next chunk + 1 (0 = end of chain)
    pub const OWNER: usize = 4; // u32: owning slot, or FREE
    pub const FREE: u32 = u32::MAX;
}

/// Why a cache geometry cannot be laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GeometryError {
    /// Capacity must be between 1 and [`MAX_CAPACITY`] items.
    Capacity,
    /// Block size must be at least one byte.
    BlockSize,
    /// The region would not fit in this platform's address space.
    TooLarge,
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GeometryError::Capacity => "capacity must be between 1 and 2^30 items",
            GeometryError::BlockSize => "block size must be at least 1 byte",
            GeometryError::TooLarge => "cache region does not fit in the address space",
        })
    }
}

/// The computed geometry of a cache region: sizes and offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    pub(crate) capacity: u32,
    pub(crate) block_size: u32,
    pub(crate) chunk_size: u32,
    pub(crate) chunk_count: u32,
    pub(crate) buckets: u32,
    /// A slot and its home chunk.
    pub(crate) record_len: usize,
    pub(crate) index_at: usize,
    pub(crate) slots_at: usize,
    pub(crate) chunks_at: usize,
    pub(crate) total: usize,
}

impl Layout {
    /// The geometry for `capacity` items whose values are at most
    /// `block_size` bytes.
    pub fn new(capacity: u32, block_size: u32) -> Result<Layout, GeometryError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(GeometryError::Capacity);
        }
        if block_size == 0 {
            return Err(GeometryError::BlockSize);
        }
        // A slot and its home chunk form one record of whole cache lines,
        // so a lookup reads one stretch of memory; the chunk takes the
        // rounding.
        let wanted = block_size
            .checked_add(CHUNK_HEADER_LEN as u32 + 7)
            .map(|n| n & !7)
            .map_or(MAX_CHUNK_LEN, |n| n.min(MAX_CHUNK_LEN));
        let record_len = (SLOT_LEN as u32 + wanted).next_multiple_of(CACHE_LINE);
        let chunk_size = record_len - SLOT_LEN as u32;
        let payload = chunk_size - CHUNK_HEADER_LEN as u32;
        let per_value = block_size.div_ceil(payload);
        let chunk_count = capacity
            .checked_mul(per_value)
            .ok_or(GeometryError::TooLarge)?;
        let buckets = (capacity * 2).next_power_of_two();

        let index_at = HEADER_LEN;
        let slots_at = mul_add(buckets, 4, index_at)?.next_multiple_of(CACHE_LINE as usize);
        let chunks_at = mul_add(capacity, record_len as usize, slots_at)?;
        let total = mul_add(chunk_count - capacity, chunk_size as usize, chunks_at)?;
        Ok(Layout {
            capacity,
            block_size,
            chunk_size,
            chunk_count,
            buckets,
            record_len: record_len as usize,
            index_at,
            slots_at,
            chunks_at,
            total,
        })
    }

    /// Bytes the region must have.
    pub fn total_bytes(&self) -> usize {
        self.total
    }

    /// Items the cache holds at most.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Largest value, in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Buckets in the hash index.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Size of one value chunk, header included.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Chunks in the region.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    pub(crate) fn chunk_payload(&self) -> usize {
        self.chunk_size as usize - CHUNK_HEADER_LEN
    }

    #[inline]
    pub(crate) fn bucket_at(&self, bucket: u32) -> usize {
        self.index_at + bucket as usize * 4
    }

    #[inline]
    pub(crate) fn slot_at(&self, slot: u32) -> usize {
        self.slots_at + slot as usize * self.record_len
    }

    /// A home chunk follows its slot; pool chunks follow the records.
    #[inline]
    pub(crate) fn chunk_at(&self, chunk: u32) -> usize {
        if chunk < self.capacity {
            self.slot_at(chunk) + SLOT_LEN
        } else {
            self.chunks_at + (chunk - self.capacity) as usize * self.chunk_size as usize
        }
    }
}

fn mul_add(count: u32, size: usize, base: usize) -> Result<usize, GeometryError> {
    (count as usize)
        .checked_mul(size)
        .and_then(|n| n.checked_add(base))
        .ok_or(GeometryError::TooLarge)
}

impl core::error::Error for GeometryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_geometry_matches_the_documented_formula() {
        let layout = Layout::new(20_000, 4096).unwrap();
        // 88 + 256 rounds up to 384: six cache lines per record.
        assert_eq!(layout.chunk_size(), 296);
        assert_eq!(layout.chunk_count(), 20_000 * 15);
        assert_eq!(layout.buckets(), 65_536);
        assert_eq!(
            layout.total_bytes(),
            256 + 4 * 65_536 + 384 * 20_000 + 296 * 20_000 * 14
        );
    }

    #[test]
    fn per_item_overhead_stays_under_128_bytes() {
        for capacity in [1u32, 2, 3, 1000, 1025, 20_000, 65_537] {
            let layout = Layout::new(capacity, 4096).unwrap();
            let index_per_item = 4 * layout.buckets() as usize / capacity as usize;
            let overhead = SLOT_LEN + index_per_item + CHUNK_HEADER_LEN;
            assert!(overhead < 128, "capacity {capacity}: {overhead} bytes");
        }
    }

    #[test]
    fn small_blocks_get_small_chunks() {
        let layout = Layout::new(10, 100).unwrap();
        assert_eq!(layout.chunk_size(), 256 - 88);
        assert_eq!(layout.chunk_count(), 10);
        assert_eq!(Layout::new(0, 100), Err(GeometryError::Capacity));
        assert_eq!(Layout::new(10, 0), Err(GeometryError::BlockSize));
        assert_eq!(
            Layout::new(MAX_CAPACITY, u32::MAX).err(),
            Some(GeometryError::TooLarge)
        );
    }
}
