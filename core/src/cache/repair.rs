//! Rebuilding the table after a process died in the middle of a mutation,
//! and checking that it holds together.
//!
//! The slots are the source of truth. Index, free lists and the item count
//! are derived from them, so a repair zeroes the derived state and rebuilds it
//! from every slot whose fields are consistent: key length within bounds, hash
//! matching the key, a value chain of exactly the right length whose chunks
//! name this slot as their owner and belong to no other chain, and no earlier
//! slot with the same key. Anything else is dropped and counted. A repair
//! touches every slot and chunk ever handed out: O(size of the region in use).

use super::layout::{chunk, header, slot, MAX_KEY_LEN};
use super::{Cache, Counter};
use crate::bytes::{read_u32, write_u32, write_u64};

/// Marks a chunk as claimed by a valid chain during a repair. Slot numbers
/// stay below `MAX_CAPACITY`, so the top bit is free.
const CLAIMED: u32 = 1 << 31;

/// What a repair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RepairReport {
    /// Entries kept.
    pub kept: u32,
    /// Entries dropped because their fields did not hold together.
    pub dropped: u32,
}

/// The first broken invariant [`Cache::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Inconsistency {
    /// A mutation was interrupted and the table has not been repaired.
    Busy,
    /// An allocator's high-water mark exceeds the region.
    HighWater,
    /// The header's item count differs from the live slots.
    ItemCount,
    /// A live slot is damaged or not reachable through the index.
    Slot(u32),
    /// The index holds a bucket pointing at a free or missing slot.
    Index(u32),
    /// A free list is cyclic, too long, or holds a live element.
    FreeList,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Cache<S> {
    /// Rebuilds the index, free lists and item count from the slots, dropping
    /// damaged entries. Safe to call at any time; needed after
    /// [`Cache::needs_repair`] or when a host's robust lock reports that its
    /// previous owner died.
    pub fn repair(&mut self) -> RepairReport {
        self.set_header_u32(header::BUSY, 1);
        let slot_high = self.header_u32(header::SLOT_HIGH).min(self.layout.capacity);
        let chunk_high = self
            .header_u32(header::CHUNK_HIGH)
            .clamp(self.layout.capacity, self.layout.chunk_count);
        self.zero_index();
        self.set_header_u32(header::SLOT_HIGH, slot_high);
        self.set_header_u32(header::CHUNK_HIGH, chunk_high);

        // An owner that names no slot is damage; clearing it first keeps it
        // from passing for a claim mark below.
        for chunk_no in 0..chunk_high {
            let owner_at = self.layout.chunk_at(chunk_no) + chunk::OWNER;
            if read_u32(self.buf(), owner_at) >= self.layout.capacity {
                write_u32(self.buf_mut(), owner_at, chunk::FREE);
            }
        }

        let mut report = RepairReport::default();
        for slot_no in 0..slot_high {
            if !self.is_live(slot_no) {
                continue;
            }
            if self.claim_slot(slot_no, chunk_high) {
                report.kept += 1;
            } else {
                let at = self.layout.slot_at(slot_no);
                write_u64(self.buf_mut(), at + slot::EXPIRES, 0);
                report.dropped += 1;
            }
        }

        // Free lists, rebuilt high to low so that low numbers come out first.
        self.set_header_u32(header::SLOT_FREE, 0);
        for slot_no in (0..slot_high).rev() {
            if !self.is_live(slot_no) {
                self.free_slot(slot_no);
            }
        }
        self.set_header_u32(header::CHUNK_FREE, 0);
        for chunk_no in (0..chunk_high).rev() {
            let owner_at = self.layout.chunk_at(chunk_no) + chunk::OWNER;
            let owner = read_u32(self.buf(), owner_at);
            if owner != chunk::FREE && owner & CLAIMED != 0 {
                write_u32(self.buf_mut(), owner_at, owner & !CLAIMED);
            } else if chunk_no < self.layout.capacity {
                // A home chunk belongs to its slot, never to the pool.
                write_u32(self.buf_mut(), owner_at, chunk::FREE);
            } else {
                let head = self.header_u32(header::CHUNK_FREE);
                let at = self.layout.chunk_at(chunk_no);
                write_u32(self.buf_mut(), at + chunk::NEXT, head);
                write_u32(self.buf_mut(), owner_at, chunk::FREE);
                self.set_header_u32(header::CHUNK_FREE, chunk_no + 1);
            }
        }

        let capacity = self.layout.capacity;
        let hand = self.header_u32(header::CLOCK_HAND);
        self.set_header_u32(header::CLOCK_HAND, if hand > capacity { 0 } else { hand });
        let cursor = self.header_u32(header::SWEEP_CURSOR);
        self.set_header_u32(
            header::SWEEP_CURSOR,
            if cursor > slot_high { 0 } else { cursor },
        );
        self.set_header_u32(header::ITEMS, report.kept);
        self.bump(Counter::Repairs);
        self.add_counter(Counter::RepairDropped, u64::from(report.dropped));
        self.end();
        report
    }

    /// Checks a live slot and, if it is sound, claims its chunks and puts it
    /// in the index.
    fn claim_slot(&mut self, slot_no: u32, chunk_high: u32) -> bool {
        let at = self.layout.slot_at(slot_no);
        let buf = self.buf();
        let key_len = buf[at + slot::KEY_LEN] as usize;
        let value_len = read_u32(buf, at + slot::VALUE_LEN);
        if key_len == 0 || key_len > MAX_KEY_LEN || value_len > self.layout.block_size {
            return false;
        }
        let mut key = [0u8; MAX_KEY_LEN];
        key[..key_len].copy_from_slice(&buf[at + slot::KEY..at + slot::KEY + key_len]);
        let key = &key[..key_len];
        let hash = self.hash(key);
        if read_u32(buf, at + slot::HASH) != hash || self.find(hash, key).is_some() {
            return false;
        }

        let needed = (value_len as usize).div_ceil(self.layout.chunk_payload());
        let first = read_u32(buf, at + slot::FIRST);
        let home = if needed == 0 { 0 } else { slot_no + 1 };
        let claimed = self.claim_chain(slot_no, first, needed, chunk_high);
        if claimed < needed || first != home {
            self.release_chain(slot_no, first, claimed);
            return false;
        }
        self.index_insert(hash, slot_no);
        true
    }

    /// Marks up to `needed` chunks of the chain as claimed by `owner`,
    /// stopping at the first that is out of range or not owned by it.
    fn claim_chain(&mut self, owner: u32, mut link: u32, needed: usize, chunk_high: u32) -> usize {
        for claimed in 0..needed {
            if link == 0 || link > chunk_high {
                return claimed;
            }
            let at = self.layout.chunk_at(link - 1);
            if read_u32(self.buf(), at + chunk::OWNER) != owner {
                return claimed;
            }
            write_u32(self.buf_mut(), at + chunk::OWNER, owner | CLAIMED);
            link = read_u32(self.buf(), at + chunk::NEXT);
        }
        needed
    }

    /// Undoes the first `count` claims of a chain that turned out damaged.
    fn release_chain(&mut self, owner: u32, mut link: u32, count: usize) {
        for _ in 0..count {
            let at = self.layout.chunk_at(link - 1);
            write_u32(self.buf_mut(), at + chunk::OWNER, owner);
            link = read_u32(self.buf(), at + chunk::NEXT);
        }
    }

    /// Checks every structural invariant; for tests and for hosts that want
    /// to audit a shared region. O(size of the region in use).
    pub fn verify(&self) -> Result<(), Inconsistency> {
        if self.needs_repair() {
            return Err(Inconsistency::Busy);
        }
        let buf = self.buf();
        let slot_high = self.header_u32(header::SLOT_HIGH);
        let chunk_high = self.header_u32(header::CHUNK_HIGH);
        if slot_high > self.layout.capacity
            || chunk_high > self.layout.chunk_count
            || chunk_high < self.layout.capacity
        {
            return Err(Inconsistency::HighWater);
        }
        let payload = self.layout.chunk_payload();
        let mut live = 0u32;
        let mut chunks_in_use = 0u32;
        for slot_no in 0..slot_high {
            if !self.is_live(slot_no) {
                continue;
            }
            live += 1;
            let at = self.layout.slot_at(slot_no);
            let key_len = buf[at + slot::KEY_LEN] as usize;
            let value_len = read_u32(buf, at + slot::VALUE_LEN);
            if key_len == 0 || key_len > MAX_KEY_LEN || value_len > self.layout.block_size {
                return Err(Inconsistency::Slot(slot_no));
            }
            let key = &buf[at + slot::KEY..at + slot::KEY + key_len];
            let hash = self.hash(key);
            match self.find(hash, key) {
                Some(found) if found.slot == slot_no && read_u32(buf, at + slot::HASH) == hash => {}
                _ => return Err(Inconsistency::Slot(slot_no)),
            }
            let mut link = read_u32(buf, at + slot::FIRST);
            let needed = (value_len as usize).div_ceil(payload);
            if link != if needed == 0 { 0 } else { slot_no + 1 } {
                return Err(Inconsistency::Slot(slot_no));
            }
            for _ in 0..needed {
                if link == 0 || link > chunk_high {
                    return Err(Inconsistency::Slot(slot_no));
                }
                let chunk_at = self.layout.chunk_at(link - 1);
                if read_u32(buf, chunk_at + chunk::OWNER) != slot_no {
                    return Err(Inconsistency::Slot(slot_no));
                }
                if link > self.layout.capacity {
                    chunks_in_use += 1;
                }
                link = read_u32(buf, chunk_at + chunk::NEXT);
            }
        }
        if live != self.items() {
            return Err(Inconsistency::ItemCount);
        }
        let mut indexed = 0u32;
        for bucket in 0..self.layout.buckets {
            let entry = read_u32(buf, self.layout.bucket_at(bucket));
            if entry == 0 {
                continue;
            }
            if entry > slot_high || !self.is_live(entry - 1) {
                return Err(Inconsistency::Index(bucket));
            }
            indexed += 1;
        }
        if indexed != live {
            return Err(Inconsistency::ItemCount);
        }

        // Free slots: exactly the non-live ones below the high-water mark.
        let mut free = 0u32;
        let mut link = self.header_u32(header::SLOT_FREE);
        while link != 0 {
            if link > slot_high || self.is_live(link - 1) || free >= slot_high {
                return Err(Inconsistency::FreeList);
            }
            free += 1;
            link = self.slot_u32(link - 1, slot::FIRST);
        }
        if free + live != slot_high {
            return Err(Inconsistency::FreeList);
        }
        let mut free_chunks = 0u32;
        let mut link = self.header_u32(header::CHUNK_FREE);
        while link != 0 {
            let at = self.layout.chunk_at(link - 1);
            if link > chunk_high
                || link <= self.layout.capacity
                || read_u32(buf, at + chunk::OWNER) != chunk::FREE
                || free_chunks >= chunk_high
            {
                return Err(Inconsistency::FreeList);
            }
            free_chunks += 1;
            link = read_u32(buf, at + chunk::NEXT);
        }
        if free_chunks + chunks_in_use != chunk_high - self.layout.capacity {
            return Err(Inconsistency::FreeList);
        }
        Ok(())
    }
}
