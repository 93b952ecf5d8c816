//! The crate's self-checks, small enough to run on the smallest target it
//! supports.
//!
//! The unit tests exercise `cachet-core` on the build machine; these checks
//! exercise it where it is meant to run. The `qemu/` firmware runs every one
//! of [`CHECKS`] on an emulated Cortex-M3 (LM3S6965: 64 KiB of RAM, no heap)
//! and a host unit test runs them too, so a check that only fails on a
//! 32-bit target without an allocator is caught in CI either way.
//!
//! Each check keeps its state on the stack: cache regions of at most
//! [`REGION_LEN`] bytes and sync nodes of type [`SmallNode`], well under
//! 16 KiB per check. A check reports the first expectation it finds broken
//! as a [`Failure`] rather than panicking, so one broken check does not hide
//! the others.

use core::fmt;

use crate::bytes::write_u32;
use crate::cache::layout::{header, slot};
use crate::cache::{
    AttachError, BufferTooSmall, Cache, Config, FormatError, Inconsistency, Layout, Refused,
    RepairReport, Stored,
};
use crate::hello::{self, ClientHello, Reassembly};
use crate::sync::{Node, Reject, Settings, WINDOW};
use crate::time::shorthand::{at, ms, secs};
use crate::time::Duration;
use crate::wire::{self, ClusterKey, Error, Packet, Record, RecordsBuilder, Repr, HEADER_LEN};

/// One named self-check.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// A short name, one word, for the report.
    pub name: &'static str,
    /// Runs the check.
    pub run: fn() -> Result<(), Failure>,
}

/// What a failed check found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Failure(pub &'static str);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// How many checks of a run passed and failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Tally {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl fmt::Display for Tally {
    /// The summary line CI looks for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// The checks `$run`, each named after its function.
macro_rules! checks {
    ($($run:ident),* $(,)?) => {
        &[$(Check { name: stringify!($run), run: $run }),*]
    };
}

/// Every self-check, in the order they run.
pub const CHECKS: &[Check] = checks![
    cache_format_attach,
    cache_put_get_take_delete,
    cache_replace,
    cache_refusals,
    cache_eviction_when_full,
    cache_clear,
    cache_multi_chunk_values,
    cache_expiry,
    cache_sweep,
    cache_repair_interrupted_write,
    cache_repair_torn_chain,
    wire_seal_open,
    wire_tampered_header,
    wire_tampered_body,
    wire_wrong_key,
    hello_offers,
    hello_fragments_and_truncations,
    sync_exchange,
    sync_replay_rejected,
    sync_foreign_cluster,
    sync_verification,
];

/// Runs every check in order, telling `report` each outcome as soon as it
/// is known (a firmware prints it at once, so a check that hangs or panics
/// shows where the run stopped).
pub fn run_all(mut report: impl FnMut(&Check, Result<(), Failure>)) -> Tally {
    let mut tally = Tally::default();
    for check in CHECKS {
        let outcome = (check.run)();
        if outcome.is_ok() {
            tally.passed += 1;
        } else {
            tally.failed += 1;
        }
        report(check, outcome);
    }
    tally
}

// ---- helpers ------------------------------------------------------------

/// Bytes of the largest cache region a check formats (4 items of up to
/// 300 bytes: 3,040 bytes).
pub const REGION_LEN: usize = 3072;

/// Bytes of the cache region behind a sync node (4 items of up to 64 bytes:
/// 1,088 bytes); two of them sit beside two nodes on the stack.
const SYNC_REGION_LEN: usize = 1088;

/// The sync node the checks run: a 512-byte datagram, 4 peers, 16
/// tombstones, a 1 KiB queue and 2 pulls in flight keep two of them, their caches and their
/// buffers within a few KiB of stack.
pub type SmallNode = Node<512, 4, 16, 1024, 2>;

const MTU: usize = 512;
const CLUSTER_SECRET: [u8; 32] = [0x42; 32];

/// Turns an unexpected outcome into a [`Failure`] with its reason.
trait OrFail<T> {
    fn or_fail(self, why: &'static str) -> Result<T, Failure>;
}

impl<T, E> OrFail<T> for Result<T, E> {
    fn or_fail(self, why: &'static str) -> Result<T, Failure> {
        self.map_err(|_| Failure(why))
    }
}

impl<T> OrFail<T> for Option<T> {
    fn or_fail(self, why: &'static str) -> Result<T, Failure> {
        self.ok_or(Failure(why))
    }
}

fn ensure(condition: bool, why: &'static str) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(Failure(why))
    }
}

fn config(capacity: u32, block_size: u32) -> Config {
    Config {
        capacity,
        block_size,
        hash_key: *b"selfcheck hashky",
    }
}

fn format(region: &mut [u8], capacity: u32, block_size: u32) -> Result<Cache<&mut [u8]>, Failure> {
    Cache::format(region, &config(capacity, block_size)).or_fail("format refused the region")
}

/// The value of `key` at `now`, read through `out`.
fn get<'o>(
    cache: &mut Cache<&mut [u8]>,
    now: u64,
    key: &[u8],
    out: &'o mut [u8],
) -> Result<Option<&'o [u8]>, Failure> {
    cache
        .get(at(now), key, out)
        .or_fail("get: output buffer too small")
}

fn has(cache: &mut Cache<&mut [u8]>, now: u64, key: &[u8]) -> Result<bool, Failure> {
    let mut out = [0u8; 300];
    Ok(get(cache, now, key, &mut out)?.is_some())
}

/// A value of length up to 300 bytes that differs for each seed, so a
/// value read back under the wrong key or with a wrong chunk shows.
fn pattern(seed: u8, buf: &mut [u8; 300]) -> &[u8] {
    let len = (usize::from(seed) * 53) % 301;
    for (i, byte) in buf[..len].iter_mut().enumerate() {
        *byte = seed.wrapping_mul(31) ^ i as u8;
    }
    &buf[..len]
}

// ---- cache --------------------------------------------------------------

fn cache_format_attach() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    ensure(
        Cache::attach(&mut region[..]).err() == Some(AttachError::BadMagic),
        "attach accepted a region never formatted",
    )?;
    ensure(
        Cache::attach(&mut region[..10]).err() == Some(AttachError::RegionTooSmall),
        "attach accepted a region shorter than a header",
    )?;
    let needed = Layout::new(8, 64)
        .or_fail("valid geometry refused")?
        .total_bytes();
    ensure(
        Cache::format(&mut region[..100], &config(8, 64)).err()
            == Some(FormatError::RegionTooSmall {
                needed,
                available: 100,
            }),
        "format accepted a region too small",
    )?;

    let mut cache = format(&mut region, 8, 64)?;
    cache
        .put(at(0), b"k", b"v", secs(10))
        .or_fail("put refused")?;
    // A second process attaching sees the same table and the same figures.
    let region = cache.into_storage();
    let mut again = Cache::attach(&mut region[..]).or_fail("attach refused a formatted region")?;
    let mut out = [0u8; 64];
    ensure(
        get(&mut again, 1, b"k", &mut out)? == Some(b"v"),
        "entry lost across attach",
    )?;
    let n = again.counters();
    ensure(
        (n.sets, n.hits, n.items) == (1, 1, 1),
        "counters lost across attach",
    )?;
    ensure(
        Cache::attach(&mut region[..needed - 1]).err() == Some(AttachError::GeometryMismatch),
        "attach accepted a region shorter than its geometry",
    )
}

fn cache_put_get_take_delete() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 4, 64)?;
    let mut out = [0u8; 64];
    ensure(
        cache.put(at(1), b"a", b"alpha", secs(10)) == Ok(Stored::default()),
        "put a: refused or reported a replacement",
    )?;
    ensure(
        cache.put(at(1), b"b", b"beta", secs(10)) == Ok(Stored::default()),
        "put b: refused or reported a replacement",
    )?;
    ensure(
        get(&mut cache, 2, b"a", &mut out)? == Some(b"alpha"),
        "get a did not return its value",
    )?;
    ensure(
        get(&mut cache, 2, b"zz", &mut out)?.is_none(),
        "get of a missing key hit",
    )?;
    ensure(
        cache.take(at(3), b"b", &mut out) == Ok(Some(&b"beta"[..])),
        "take b did not return its value",
    )?;
    ensure(
        cache.take(at(3), b"b", &mut out) == Ok(None),
        "b still there after take",
    )?;
    ensure(cache.delete(at(4), b"a"), "delete a found nothing")?;
    ensure(!cache.delete(at(4), b"a"), "a deleted twice")?;
    let n = cache.counters();
    ensure(
        (n.items, n.hits, n.miss, n.sets, n.takes, n.deletes) == (0, 2, 2, 2, 1, 1),
        "counters wrong after put/get/take/delete",
    )?;
    ensure(
        cache.last_modified() == at(4),
        "last_modified not the last change",
    )?;
    cache.verify().or_fail("table inconsistent afterwards")
}

fn cache_replace() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 2, 16)?;
    let mut out = [0u8; 16];
    cache
        .put(at(0), b"k", b"one", secs(1))
        .or_fail("put refused")?;
    let stored = cache
        .put(at(0), b"k", b"two", secs(1))
        .or_fail("replacing put refused")?;
    ensure(stored.replaced, "replacement not reported")?;
    ensure(cache.items() == 1, "replacement added a second entry")?;
    ensure(
        get(&mut cache, 0, b"k", &mut out)? == Some(b"two"),
        "old value survived the replacement",
    )?;
    // Writing over an expired entry is a fresh store, not a replacement.
    cache
        .put(at(0), b"x", b"old", ms(10))
        .or_fail("put refused")?;
    let stored = cache
        .put(at(10), b"x", b"new", secs(1))
        .or_fail("put over an expired entry refused")?;
    ensure(
        !stored.replaced,
        "an expired entry counted as a replacement",
    )?;
    let n = cache.counters();
    ensure(
        (n.replaced, n.expired, n.items) == (1, 1, 2),
        "replacement counters wrong",
    )?;
    cache.verify().or_fail("table inconsistent afterwards")
}

fn cache_refusals() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 4, 8)?;
    ensure(
        cache.put(at(0), b"", b"v", secs(1)) == Err(Refused::EmptyKey),
        "empty key not refused",
    )?;
    ensure(
        cache.put(at(0), &[1; 65], b"v", secs(1)) == Err(Refused::KeyTooLong),
        "65-byte key not refused",
    )?;
    ensure(
        cache.put(at(0), b"k", &[0; 9], secs(1)) == Err(Refused::ValueTooLarge),
        "value over the block size not refused",
    )?;
    ensure(
        cache.put(at(0), b"k", b"v", Duration::ZERO) == Err(Refused::ZeroLifetime),
        "zero lifetime not refused",
    )?;
    ensure(
        cache.put(at(0), &[1; 64], &[7; 8], secs(1)).is_ok(),
        "largest key and value refused",
    )?;
    let n = cache.counters();
    ensure(
        (
            n.refused_empty_key,
            n.refused_key_too_long,
            n.refused_value_too_large,
            n.refused_zero_lifetime,
            n.items,
        ) == (1, 1, 1, 1, 1),
        "refusals not counted one by one",
    )?;
    // A value is never truncated to fit the caller's buffer.
    let mut small = [0u8; 4];
    ensure(
        cache.get(at(0), &[1; 64], &mut small) == Err(BufferTooSmall { needed: 8 }),
        "short output buffer not reported",
    )
}

fn cache_eviction_when_full() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 3, 16)?;
    for key in [b"a", b"b", b"c"] {
        let stored = cache
            .put(at(0), key, b"v", secs(60))
            .or_fail("put refused")?;
        ensure(!stored.evicted, "evicted before the cache was full")?;
    }
    // "a" is resumed; "b" and "c" never are.
    ensure(has(&mut cache, 1, b"a")?, "a missing before eviction")?;
    let stored = cache
        .put(at(2), b"d", b"v", secs(60))
        .or_fail("put into a full cache refused")?;
    ensure(stored.evicted, "a full cache did not evict")?;
    ensure(
        has(&mut cache, 3, b"a")?,
        "referenced entry got no second chance",
    )?;
    ensure(
        !has(&mut cache, 3, b"b")?,
        "first unreferenced entry not evicted",
    )?;
    ensure(
        has(&mut cache, 3, b"c")? && has(&mut cache, 3, b"d")?,
        "an entry other than the victim went",
    )?;
    let n = cache.counters();
    ensure(
        (n.full, n.evictions, n.items) == (1, 1, 3),
        "eviction counters wrong",
    )?;
    cache.verify().or_fail("table inconsistent afterwards")
}

fn cache_clear() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 4, 16)?;
    for key in [b"a", b"b", b"c"] {
        cache
            .put(at(0), key, b"v", secs(60))
            .or_fail("put refused")?;
    }
    cache.clear(at(1));
    ensure(cache.items() == 0, "entries left after clear")?;
    ensure(
        cache.last_modified() == at(1),
        "clear not recorded as a change",
    )?;
    for key in [b"a", b"b", b"c"] {
        ensure(!has(&mut cache, 2, key)?, "entry readable after clear")?;
    }
    ensure(cache.counters().sets == 3, "clear reset the counters")?;
    // Every slot is free again: filling the cache evicts nothing.
    for key in [b"d", b"e", b"f", b"g"] {
        let stored = cache
            .put(at(3), key, b"v", secs(60))
            .or_fail("put refused")?;
        ensure(!stored.evicted, "clear left slots taken")?;
    }
    cache.verify().or_fail("table inconsistent afterwards")
}

fn cache_multi_chunk_values() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 2, 300)?;
    let mut value = [0u8; 300];
    for (i, byte) in value.iter_mut().enumerate() {
        *byte = (i * 7) as u8;
    }
    cache
        .put(at(0), b"big", &value, secs(1))
        .or_fail("full-block value refused")?;
    cache
        .put(at(0), b"small", b"tiny", secs(1))
        .or_fail("put refused")?;
    let mut out = [0u8; 300];
    ensure(
        get(&mut cache, 0, b"big", &mut out)? == Some(&value[..]),
        "value spanning two chunks read back wrong",
    )?;
    ensure(
        get(&mut cache, 0, b"small", &mut out)? == Some(b"tiny"),
        "small value read back wrong",
    )?;
    cache.verify().or_fail("table inconsistent afterwards")
}

fn cache_expiry() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 4, 16)?;
    cache
        .put(at(1000), b"k", b"v", ms(500))
        .or_fail("put refused")?;
    ensure(
        has(&mut cache, 1499, b"k")?,
        "entry gone before its deadline",
    )?;
    ensure(
        !has(&mut cache, 1500, b"k")?,
        "entry returned at its deadline",
    )?;
    // The lookup that found it expired freed it, with no sweep.
    let n = cache.counters();
    ensure(
        (n.items, n.expired, n.miss) == (0, 1, 1),
        "expired entry not freed by the lookup",
    )?;
    cache
        .put(at(0), b"t", b"v", ms(100))
        .or_fail("put refused")?;
    let mut out = [0u8; 16];
    ensure(
        cache.take(at(100), b"t", &mut out) == Ok(None),
        "take returned an expired entry",
    )?;
    cache
        .put(at(0), b"d", b"v", ms(100))
        .or_fail("put refused")?;
    ensure(
        !cache.delete(at(100), b"d"),
        "delete reported an expired entry as live",
    )?;
    cache.verify().or_fail("table inconsistent afterwards")
}

fn cache_sweep() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 4, 16)?;
    for key in [b"k0", b"k1", b"k2"] {
        cache.put(at(0), key, b"v", ms(10)).or_fail("put refused")?;
    }
    cache
        .put(at(0), b"long", b"v", secs(60))
        .or_fail("put refused")?;
    let early = cache.sweep(at(5), 100);
    ensure(
        (early.examined, early.freed) == (4, 0),
        "sweep freed a live entry",
    )?;
    // A budget of one slot per call: a pass takes four calls.
    let mut freed = 0;
    for _ in 0..4 {
        let step = cache.sweep(at(10), 1);
        ensure(step.examined <= 1, "sweep exceeded its budget")?;
        freed += step.freed;
    }
    ensure(freed == 3, "one pass did not free every expired entry")?;
    let n = cache.counters();
    ensure((n.items, n.expired) == (1, 3), "sweep counters wrong")?;
    ensure(has(&mut cache, 10, b"long")?, "sweep took a live entry")?;
    for key in [b"n0", b"n1", b"n2"] {
        let stored = cache
            .put(at(10), key, b"v", secs(60))
            .or_fail("put refused")?;
        ensure(!stored.evicted, "swept slots not free for reuse")?;
    }
    ensure(cache.counters().full == 0, "swept slots not free for reuse")?;
    cache.verify().or_fail("table inconsistent afterwards")
}

fn cache_repair_interrupted_write() -> Result<(), Failure> {
    const KEYS: u8 = 6;
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 4, 300)?;
    let mut value = [0u8; 300];
    for seed in 0..KEYS {
        cache
            .put(at(0), &[b'k', seed], pattern(seed, &mut value), secs(60))
            .or_fail("put refused")?;
    }
    let mut present = [false; KEYS as usize];
    for (seed, present) in (0..KEYS).zip(&mut present) {
        *present = has(&mut cache, 1, &[b'k', seed])?;
    }

    // The writer dies mid-mutation: the busy mark stays up, the index and
    // the free-list heads hold garbage.
    let layout = *cache.layout();
    let region = cache.into_storage();
    region[layout.index_at..layout.slots_at].fill(0x5A);
    write_u32(region, header::BUSY, 1);
    write_u32(region, header::SLOT_FREE, 7);
    write_u32(region, header::CHUNK_FREE, 3);

    let mut cache = Cache::attach(&mut region[..]).or_fail("attach refused a damaged region")?;
    ensure(cache.needs_repair(), "interrupted write not detected")?;
    ensure(
        cache.verify() == Err(Inconsistency::Busy),
        "verify passed an interrupted table",
    )?;
    ensure(
        cache.repair()
            == RepairReport {
                kept: 4,
                dropped: 0,
            },
        "repair did not keep every entry",
    )?;
    cache.verify().or_fail("table inconsistent after repair")?;
    let mut out = [0u8; 300];
    for (seed, was_present) in (0..KEYS).zip(present) {
        let expected = pattern(seed, &mut value);
        let found = get(&mut cache, 2, &[b'k', seed], &mut out)?;
        ensure(
            found.is_some() == was_present,
            "repair changed which entries are present",
        )?;
        ensure(
            found.is_none_or(|v| v == expected),
            "repair changed a value",
        )?;
    }
    ensure(cache.counters().repairs == 1, "repair not counted")?;
    cache
        .put(at(3), b"after", pattern(5, &mut value), secs(60))
        .or_fail("put after repair refused")?;
    cache.verify().or_fail("table inconsistent after a put")
}

fn cache_repair_torn_chain() -> Result<(), Failure> {
    let mut region = [0u8; REGION_LEN];
    let mut cache = format(&mut region, 4, 300)?;
    // 290 bytes take a home chunk and one pool chunk each.
    cache
        .put(at(0), b"a", &[1; 290], secs(60))
        .or_fail("put refused")?;
    cache
        .put(at(0), b"b", &[2; 290], secs(60))
        .or_fail("put refused")?;
    let layout = *cache.layout();
    let region = cache.into_storage();
    // A torn write points b's chain at a's chunks.
    let a_first = crate::bytes::read_u32(region, layout.slot_at(0) + slot::FIRST);
    write_u32(region, layout.slot_at(1) + slot::FIRST, a_first);

    let mut cache = Cache::attach(&mut region[..]).or_fail("attach refused a damaged region")?;
    ensure(cache.verify().is_err(), "verify passed a shared chain")?;
    ensure(
        cache.repair()
            == RepairReport {
                kept: 1,
                dropped: 1,
            },
        "repair did not drop exactly the damaged entry",
    )?;
    cache.verify().or_fail("table inconsistent after repair")?;
    let mut out = [0u8; 300];
    ensure(
        get(&mut cache, 1, b"a", &mut out)? == Some(&[1; 290][..]),
        "repair damaged the sound entry",
    )?;
    ensure(!has(&mut cache, 1, b"b")?, "damaged entry survived repair")?;
    // The dropped entry's chunks are free again: the cache fills up.
    for key in [b"c", b"d", b"e"] {
        let stored = cache
            .put(at(2), key, &[3; 300], secs(60))
            .or_fail("put after repair refused")?;
        ensure(!stored.evicted, "repair leaked a slot")?;
    }
    cache.verify().or_fail("table inconsistent after refilling")
}

// ---- wire ---------------------------------------------------------------

const WIRE_SECRET: [u8; 32] = [7; 32];

const SAMPLE_RECORDS: [Record<'static>; 3] = [
    Record::Set(wire::Entry {
        key: b"ctx|id",
        value: b"master secret",
        ttl_ms: 300_000,
    }),
    Record::Delete { key: b"gone" },
    Record::Hello,
];

/// Seals [`SAMPLE_RECORDS`] into `buf` and returns the datagram's length.
fn sealed_sample(buf: &mut [u8]) -> Result<usize, Failure> {
    let mut encoded = [0u8; 128];
    let mut builder = RecordsBuilder::new(&mut encoded);
    for record in &SAMPLE_RECORDS {
        builder.push(record).or_fail("records do not fit")?;
    }
    let repr = Repr {
        sender: 42,
        sequence: 9,
        first_record: 300,
        records: builder.records(),
    };
    let len = repr
        .emit(&ClusterKey::new(&WIRE_SECRET), buf)
        .or_fail("emit failed")?;
    ensure(len == repr.buffer_len(), "emit wrote other than buffer_len")?;
    Ok(len)
}

/// Whether `datagram` passes every check and opens under `key`.
fn opens(datagram: &[u8], key: &ClusterKey) -> bool {
    let mut scratch = [0u8; 256];
    Packet::new_checked(datagram)
        .and_then(|packet| Repr::parse(&packet, key, &mut scratch).map(|_| ()))
        .is_ok()
}

fn wire_seal_open() -> Result<(), Failure> {
    let mut buf = [0u8; 256];
    let len = sealed_sample(&mut buf)?;
    let datagram = &buf[..len];
    ensure(
        !datagram.windows(6).any(|w| w == b"master"),
        "session secret travels in clear",
    )?;
    let packet = Packet::new_checked(datagram).or_fail("own datagram fails the checks")?;
    ensure(
        (packet.key_id(), packet.sender(), packet.sequence())
            == (ClusterKey::new(&WIRE_SECRET).id(), 42, 9),
        "header fields read back wrong",
    )?;
    let mut scratch = [0u8; 256];
    let repr = Repr::parse(&packet, &ClusterKey::new(&WIRE_SECRET), &mut scratch)
        .or_fail("own datagram does not open")?;
    ensure(
        (repr.sender, repr.sequence, repr.first_record) == (42, 9, 300),
        "parsed header differs from the emitted one",
    )?;
    ensure(
        repr.records.len() == SAMPLE_RECORDS.len()
            && repr.records.iter().eq(SAMPLE_RECORDS.iter().copied()),
        "parsed records differ from the emitted ones",
    )?;
    ensure(
        repr.buffer_len() == len,
        "parsed datagram re-emits at another length",
    )
}

// ---- hello ---------------------------------------------------------------

/// `openssl s_client -tls1_3 -sess_in` resuming: its first flight and the
/// ticket its session file held (see `hello/vectors/README.md`).
const OPENSSL_TLS13_RESUME: &[u8] = include_bytes!("hello/vectors/openssl_tls13_resume.bin");
const OPENSSL_TLS13_TICKET: &[u8] = include_bytes!("hello/vectors/openssl_tls13_resume.ticket");
/// Room for the vector's message, and for it in records of 64 bytes.
const HELLO_LEN: usize = 512;
const HELLO_RECORDS_LEN: usize = 560;

/// The vector's ClientHello message, found in place.
fn hello_message() -> Result<&'static [u8], Failure> {
    match hello::reassemble(OPENSSL_TLS13_RESUME, HELLO_LEN) {
        Ok(Reassembly::Whole(message)) => Ok(message),
        _ => Err(Failure("a ClientHello in one record is not found in place")),
    }
}

fn hello_offers() -> Result<(), Failure> {
    let hello = ClientHello::new_checked(hello_message()?).or_fail("a real ClientHello refused")?;
    ensure(
        hello.server_name() == Some(b"localhost"),
        "SNI name read wrong",
    )?;
    ensure(hello.offers_tls13(), "TLS 1.3 offer missed")?;
    ensure(hello.session_id().len() == 32, "session id read wrong")?;
    let mut identities = hello.psk_identities();
    ensure(
        identities.next().map(|psk| psk.identity) == Some(OPENSSL_TLS13_TICKET),
        "ticket read wrong",
    )?;
    ensure(identities.next().is_none(), "a second ticket read")?;
    ensure(
        hello.pre_shared_key_is_last(),
        "pre_shared_key not seen last",
    )
}

fn hello_fragments_and_truncations() -> Result<(), Failure> {
    let message = hello_message()?;
    ensure(message.len() <= HELLO_LEN, "vector longer than expected")?;
    // The message again, in records of 64 bytes.
    let mut records = [0u8; HELLO_RECORDS_LEN];
    let mut len = 0;
    for chunk in message.chunks(64) {
        let header = [22, 3, 1, 0, chunk.len() as u8];
        records[len..len + 5].copy_from_slice(&header);
        records[len + 5..len + 5 + chunk.len()].copy_from_slice(chunk);
        len += 5 + chunk.len();
    }
    for cut in 0..len {
        ensure(
            hello::reassemble(&records[..cut], HELLO_LEN) == Ok(Reassembly::Incomplete),
            "a cut first flight is not incomplete",
        )?;
    }
    ensure(
        hello::reassemble(&records[..len], HELLO_LEN)
            == Ok(Reassembly::Fragmented { len: message.len() }),
        "fragments not found whole",
    )?;
    let mut joined = [0u8; HELLO_LEN];
    let joined = hello::join(&records[..len], &mut joined[..message.len()])
        .or_fail("fragments not joined")?;
    ensure(joined == message, "fragments joined wrong")?;
    ensure(
        hello::reassemble(&records[..len], message.len() - 1).is_err(),
        "an oversized ClientHello accepted",
    )?;
    for cut in 0..message.len() {
        ensure(
            ClientHello::new_checked(&message[..cut]).is_err(),
            "a cut ClientHello accepted",
        )?;
    }
    Ok(())
}

/// Flips each bit of the sample datagram's header (or of the rest) in
/// turn; every damaged copy must be refused.
fn every_flip_rejected(in_header: bool, why: &'static str) -> Result<(), Failure> {
    let mut buf = [0u8; 256];
    let len = sealed_sample(&mut buf)?;
    let key = ClusterKey::new(&WIRE_SECRET);
    ensure(opens(&buf[..len], &key), "untouched datagram refused")?;
    let bytes = if in_header {
        0..HEADER_LEN
    } else {
        HEADER_LEN..len
    };
    let mut damaged = [0u8; 256];
    for bit in bytes.start * 8..bytes.end * 8 {
        damaged[..len].copy_from_slice(&buf[..len]);
        damaged[bit / 8] ^= 1 << (bit % 8);
        ensure(!opens(&damaged[..len], &key), why)?;
    }
    Ok(())
}

fn wire_tampered_header() -> Result<(), Failure> {
    every_flip_rejected(true, "a header bit flipped and still accepted")
}

fn wire_tampered_body() -> Result<(), Failure> {
    every_flip_rejected(false, "a body or tag bit flipped and still accepted")?;
    let mut buf = [0u8; 256];
    let len = sealed_sample(&mut buf)?;
    let key = ClusterKey::new(&WIRE_SECRET);
    ensure(!opens(&buf[..len - 1], &key), "truncated datagram accepted")?;
    ensure(
        !opens(&buf[..len + 1], &key),
        "datagram with a byte appended accepted",
    )
}

fn wire_wrong_key() -> Result<(), Failure> {
    let mut buf = [0u8; 256];
    let len = sealed_sample(&mut buf)?;
    let packet = Packet::new_checked(&buf[..len]).or_fail("own datagram fails the checks")?;
    let mut scratch = [0u8; 256];
    ensure(
        Repr::parse(
            &packet,
            &ClusterKey::colliding(packet.key_id(), &WIRE_SECRET),
            &mut scratch,
        ) == Err(Error::Authentication),
        "opened under another secret",
    )?;
    ensure(
        Repr::parse(
            &packet,
            &ClusterKey::colliding(packet.key_id().wrapping_add(1), &WIRE_SECRET),
            &mut scratch,
        ) == Err(Error::UnknownKey),
        "opened under another key id",
    )?;
    ensure(
        scratch.iter().all(|&b| b == 0),
        "unauthenticated plaintext left in the scratch buffer",
    )
}

// ---- sync ---------------------------------------------------------------

/// A node that applies changes from any authentic sender (verifying
/// senders has a check of its own, `sync_verification`).
fn node(sender: u64) -> SmallNode {
    let settings = Settings {
        verify_senders: false,
        ..Settings::default()
    };
    Node::new(ClusterKey::new(&CLUSTER_SECRET), sender, settings)
}

/// Hands every datagram `from` has to send at `from_now` (its clock) to
/// `to` at `to_now` (its own), which must accept each. Returns how many
/// there were.
fn deliver(
    from: &mut SmallNode,
    from_now: u64,
    to: &mut SmallNode,
    to_now: u64,
    cache: &mut Cache<&mut [u8]>,
) -> Result<u32, Failure> {
    let mut buf = [0u8; MTU];
    let mut sent = 0;
    while let Some(len) = from.poll_transmit(at(from_now), &mut buf) {
        to.handle(at(to_now), &buf[..len], cache)
            .or_fail("peer rejected an authentic datagram")?;
        sent += 1;
    }
    Ok(sent)
}

fn sync_exchange() -> Result<(), Failure> {
    let (mut a, mut b) = (node(1), node(2));
    let mut region_a = [0u8; SYNC_REGION_LEN];
    let mut region_b = [0u8; SYNC_REGION_LEN];
    let mut cache_a = format(&mut region_a, 4, 64)?;
    let mut cache_b = format(&mut region_b, 4, 64)?;
    // The clocks have different origins: lifetimes travel as time left.
    let (a_now, b_now) = (5_000, 9_000_000);

    for (key, lifetime) in [(&b"s1"[..], secs(300)), (&b"s2"[..], secs(60))] {
        cache_a
            .put(at(a_now), key, b"secret", lifetime)
            .or_fail("local put refused")?;
        a.record_set(at(a_now), key, b"secret", lifetime)
            .or_fail("set not queued")?;
    }
    let mut buf = [0u8; MTU];
    let len = a
        .poll_transmit(at(a_now), &mut buf)
        .or_fail("nothing to send after two sets")?;
    ensure(
        a.poll_transmit(at(a_now), &mut buf).is_none(),
        "two sets took more than one datagram",
    )?;
    let handled = b
        .handle(at(b_now), &buf[..len], &mut cache_b)
        .or_fail("B rejected A's datagram")?;
    ensure(
        (handled.sender, handled.sets, handled.deletes) == (1, 2, 0),
        "B did not apply both sets",
    )?;
    ensure(
        has(&mut cache_b, b_now + 59_999, b"s2")?,
        "replicated entry expired early",
    )?;
    ensure(
        !has(&mut cache_b, b_now + 60_000, b"s2")?,
        "replicated entry outlived its lifetime",
    )?;

    // B resumes s1 once (a TLS 1.3 ticket) and tells A to drop it.
    let b_later = b_now + 60_001;
    let mut out = [0u8; 64];
    ensure(
        cache_b.take(at(b_later), b"s1", &mut out) == Ok(Some(&b"secret"[..])),
        "replicated value differs",
    )?;
    b.record_delete(at(b_later), b"s1")
        .or_fail("delete not queued")?;
    ensure(
        deliver(&mut b, b_later, &mut a, a_now + 1, &mut cache_a)? == 1,
        "B sent other than one datagram",
    )?;
    ensure(
        !has(&mut cache_a, a_now + 1, b"s1")?,
        "delete not applied on A",
    )?;
    ensure(a.counters().applied_deletes == 1, "delete not counted on A")?;

    // A's repeat of the first batch arrives after the delete: its records
    // are duplicates and must not bring the used ticket back.
    ensure(
        a.poll_timeout() == Some(at(a_now) + ms(20)),
        "no repeat scheduled",
    )?;
    ensure(
        deliver(&mut a, a_now + 20, &mut b, b_later + 1, &mut cache_b)? == 1,
        "repeat not sent once",
    )?;
    ensure(
        !has(&mut cache_b, b_later + 2, b"s1")?,
        "repeat resurrected a deleted entry",
    )?;
    let n = b.counters();
    ensure(
        (n.duplicate_records, n.applied_sets, n.received_datagrams) == (2, 2, 2),
        "repeat not recognised as duplicates",
    )?;
    ensure(a.counters().sent_repeats == 1, "repeat not counted")
}

fn sync_replay_rejected() -> Result<(), Failure> {
    let (mut a, mut b) = (node(1), node(2));
    let mut region = [0u8; SYNC_REGION_LEN];
    let mut cache = format(&mut region, 4, 64)?;
    a.record_set(at(0), b"k", b"v", secs(1))
        .or_fail("set not queued")?;
    let mut good = [0u8; MTU];
    let len = a
        .poll_transmit(at(0), &mut good)
        .or_fail("nothing to send")?;
    let good = &mut good[..len];
    b.handle(at(0), good, &mut cache)
        .or_fail("first copy rejected")?;

    ensure(
        b.handle(at(0), good, &mut cache) == Err(Reject::Replayed),
        "replayed datagram accepted",
    )?;
    // A new sequence number makes it fresh to the window, but the tag does
    // not cover it.
    good[14] ^= 0x80;
    ensure(
        b.handle(at(0), good, &mut cache) == Err(Reject::Wire(wire::Error::Authentication)),
        "datagram with a forged sequence accepted",
    )?;
    good[14] ^= 0x80;
    ensure(
        a.handle(at(0), good, &mut cache) == Err(Reject::Own),
        "own looped-back datagram accepted",
    )?;

    // Once the window has moved past it, the datagram is stale.
    for i in 0..WINDOW {
        a.record_set(at(i), b"k", b"v", secs(1))
            .or_fail("set not queued")?;
        deliver(&mut a, i + 100, &mut b, 0, &mut cache)?;
    }
    ensure(
        b.handle(at(0), good, &mut cache) == Err(Reject::Stale),
        "datagram older than the window accepted",
    )?;
    let n = b.counters();
    ensure(
        (
            n.rejected.get(Reject::Replayed),
            n.rejected.get(Reject::Wire(wire::Error::Authentication)),
            n.rejected.get(Reject::Stale),
        ) == (1, 1, 1),
        "rejections not counted by reason",
    )?;
    ensure(
        a.counters().rejected.get(Reject::Own) == 1,
        "own datagram not counted",
    )
}

/// A datagram captured before the receiver (re)started is refused as from
/// a sender not verified; the sender, challenged, vouches from its next
/// number on: the capture is then a replay, and new changes apply.
fn sync_verification() -> Result<(), Failure> {
    let key = || ClusterKey::new(&CLUSTER_SECRET);
    let (mut a, mut b): (SmallNode, SmallNode) = (
        Node::new(key(), 1, Settings::default()),
        Node::new(key(), 2, Settings::default()),
    );
    let mut region = [0u8; SYNC_REGION_LEN];
    let mut cache = format(&mut region, 4, 64)?;
    a.record_set(at(0), b"old", b"v", secs(1))
        .or_fail("set not queued")?;
    let mut captured = [0u8; MTU];
    let captured_len = a
        .poll_transmit(at(0), &mut captured)
        .or_fail("nothing to send")?;
    let captured = &captured[..captured_len];
    // Its repeat goes out too, and is lost.
    let mut repeat = [0u8; MTU];
    a.poll_transmit(at(20), &mut repeat).or_fail("no repeat")?;
    let later = 60_000;
    ensure(
        b.handle(at(later), captured, &mut cache) == Err(Reject::Unverified),
        "a change from a sender not verified applied",
    )?;
    // B's challenge to A, A's vouch to B.
    let mut buf = [0u8; MTU];
    let challenge = b.poll_message(&mut buf).or_fail("no challenge")?;
    a.handle(at(later), &buf[..challenge.len], &mut cache)
        .or_fail("challenge rejected")?;
    let vouch = a.poll_message(&mut buf).or_fail("no vouch")?;
    b.handle(at(later), &buf[..vouch.len], &mut cache)
        .or_fail("vouch rejected")?;
    ensure(b.counters().senders_verified == 1, "vouch did not verify")?;
    ensure(
        b.handle(at(later), captured, &mut cache) == Err(Reject::Replayed),
        "a capture from before the vouch accepted",
    )?;
    ensure(
        !has(&mut cache, later, b"old")?,
        "expired session resurrected",
    )?;
    a.record_set(at(later), b"new", b"v", secs(1))
        .or_fail("set not queued")?;
    ensure(
        deliver(&mut a, later, &mut b, later, &mut cache)? == 1,
        "A sent other than one datagram",
    )?;
    ensure(
        has(&mut cache, later, b"new")?,
        "a verified sender's set lost",
    )?;
    ensure(
        b.counters().rejected.get(Reject::Unverified) == 1,
        "unverified rejection not counted",
    )
}

fn sync_foreign_cluster() -> Result<(), Failure> {
    // Another cluster's key with our key's id: the tag must tell them apart.
    let key = ClusterKey::colliding(ClusterKey::new(&CLUSTER_SECRET).id(), &CLUSTER_SECRET);
    let settings = Settings {
        verify_senders: false,
        ..Settings::default()
    };
    let mut outsider: SmallNode = Node::new(key, 7, settings);
    let mut b = node(2);
    let mut region = [0u8; SYNC_REGION_LEN];
    let mut cache = format(&mut region, 4, 64)?;
    outsider
        .record_set(at(0), b"evil", b"payload", secs(60))
        .or_fail("set not queued")?;
    let mut buf = [0u8; MTU];
    let len = outsider
        .poll_transmit(at(0), &mut buf)
        .or_fail("nothing to send")?;
    ensure(
        !buf[..len].windows(7).any(|w| w == b"payload"),
        "value travels in clear",
    )?;
    ensure(
        b.handle(at(0), &buf[..len], &mut cache) == Err(Reject::Wire(wire::Error::Authentication)),
        "datagram from another cluster accepted",
    )?;
    ensure(cache.items() == 0, "another cluster's entry stored")?;
    ensure(
        b.counters()
            .rejected
            .get(Reject::Wire(wire::Error::Authentication))
            == 1,
        "foreign datagram not counted",
    )
}

#[cfg(test)]
mod tests {
    use std::string::{String, ToString};
    use std::vec::Vec;

    use super::*;

    #[test]
    fn every_check_passes() {
        let mut failures: Vec<String> = Vec::new();
        let tally = run_all(|check, outcome| {
            if let Err(failure) = outcome {
                failures.push(std::format!("{}: {failure}", check.name));
            }
        });
        assert!(failures.is_empty(), "failed checks: {failures:?}");
        assert_eq!(tally.passed as usize, CHECKS.len());
        assert_eq!(
            tally.to_string(),
            std::format!("{} passed, 0 failed", CHECKS.len())
        );
    }

    #[test]
    fn check_names_are_unique_single_words() {
        for (i, check) in CHECKS.iter().enumerate() {
            assert!(
                !check.name.is_empty() && !check.name.contains(char::is_whitespace),
                "{:?}",
                check.name
            );
            assert!(
                CHECKS[..i].iter().all(|other| other.name != check.name),
                "{} twice",
                check.name
            );
        }
    }

    #[test]
    fn regions_fit_their_geometries_and_the_stack_budget() {
        let size = |capacity, block_size| Layout::new(capacity, block_size).unwrap().total_bytes();
        assert!(size(4, 300) <= REGION_LEN);
        assert!(size(4, 64) <= SYNC_REGION_LEN);
        // The largest check holds two nodes, two regions and two datagram
        // buffers; the firmware's stack is what 64 KiB of RAM leaves, and
        // this keeps it under a fifth of that (nodes carry a message buffer
        // and a pull table since pulls came).
        let sync = 2 * (core::mem::size_of::<SmallNode>() + SYNC_REGION_LEN + MTU);
        assert!(sync < 12 * 1024, "{sync} bytes");
    }
}
