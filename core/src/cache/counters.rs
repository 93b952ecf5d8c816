//! The cache's counters, kept inside the region itself.
//!
//! They live in the shared header and change only under the same exclusive
//! access as the table, so every process sees one exact set of figures
//! (uWSGI bumps its counters under a *read* lock and loses increments).

/// One counter in the region header. The discriminant is its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub(crate) enum Counter {
    Hits = 0,
    Misses,
    Full,
    Sets,
    Replaced,
    Deletes,
    Takes,
    Evictions,
    Expired,
    RefusedEmptyKey,
    RefusedKeyTooLong,
    RefusedValueTooLarge,
    RefusedZeroLifetime,
    Repairs,
    RepairDropped,
}

impl Counter {
    pub(crate) const COUNT: usize = 15;
}

/// A snapshot of the cache's figures.
///
/// `items`, `hits`, `miss` and `full` carry uWSGI's names and meaning (with
/// one honest difference: a full cache evicts, so `full` counts the puts that
/// found no free slot, each followed by an eviction, rather than failed sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CacheCounters {
    /// Live entries now (expired entries not yet swept included).
    pub items: u32,
    /// Lookups (`get` or `take`) that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing, or only an expired entry.
    pub miss: u64,
    /// Puts that found every slot taken and had to evict or reuse an expired one.
    pub full: u64,
    /// Successful puts, replacements included.
    pub sets: u64,
    /// Puts that replaced an existing entry with the same key.
    pub replaced: u64,
    /// Entries removed by `delete`.
    pub deletes: u64,
    /// Entries removed by a successful `take`.
    pub takes: u64,
    /// Live entries pushed out to make room.
    pub evictions: u64,
    /// Entries freed because their lifetime had run out (sweep, lookup or reuse).
    pub expired: u64,
    /// Puts refused because the key was empty.
    pub refused_empty_key: u64,
    /// Puts refused because the key exceeded [`MAX_KEY_LEN`](crate::cache::MAX_KEY_LEN).
    pub refused_key_too_long: u64,
    /// Puts refused because the value exceeded the block size.
    pub refused_value_too_large: u64,
    /// Puts refused because the lifetime was zero.
    pub refused_zero_lifetime: u64,
    /// Times the table was rebuilt after an interrupted mutation.
    pub repairs: u64,
    /// Entries the repairs found damaged and dropped.
    pub repair_dropped: u64,
}

impl CacheCounters {
    /// Total puts refused, all reasons together.
    pub fn refused(&self) -> u64 {
        self.refused_empty_key
            + self.refused_key_too_long
            + self.refused_value_too_large
            + self.refused_zero_lifetime
    }

    pub(crate) fn from_fn(items: u32, read: impl Fn(Counter) -> u64) -> CacheCounters {
        CacheCounters {
            items,
            hits: read(Counter::Hits),
            miss: read(Counter::Misses),
            full: read(Counter::Full),
            sets: read(Counter::Sets),
            replaced: read(Counter::Replaced),
            deletes: read(Counter::Deletes),
            takes: read(Counter::Takes),
            evictions: read(Counter::Evictions),
            expired: read(Counter::Expired),
            refused_empty_key: read(Counter::RefusedEmptyKey),
            refused_key_too_long: read(Counter::RefusedKeyTooLong),
            refused_value_too_large: read(Counter::RefusedValueTooLarge),
            refused_zero_lifetime: read(Counter::RefusedZeroLifetime),
            repairs: read(Counter::Repairs),
            repair_dropped: read(Counter::RepairDropped),
        }
    }
}
