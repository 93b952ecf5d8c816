//! Unit tests of the cache, and a property test that runs random operation
//! sequences against a naive model of the same policy.

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::model::{self, key, Op};
use super::*;
use crate::time::shorthand::{at, ms, secs};

fn config(capacity: u32, block_size: u32) -> Config {
    Config {
        capacity,
        block_size,
        hash_key: *b"0123456789abcdef",
    }
}

fn cache(capacity: u32, block_size: u32) -> Cache<Vec<u8>> {
    let layout = Layout::new(capacity, block_size).unwrap();
    Cache::format(
        vec![0u8; layout.total_bytes()],
        &config(capacity, block_size),
    )
    .unwrap()
}

fn get(cache: &mut Cache<Vec<u8>>, now: u64, key: &[u8]) -> Option<Vec<u8>> {
    let mut out = [0u8; 4096];
    cache
        .get(at(now), key, &mut out)
        .unwrap()
        .map(<[u8]>::to_vec)
}

#[test]
fn put_get_take_delete() {
    let mut c = cache(4, 64);
    assert_eq!(
        c.put(at(1), b"a", b"alpha", secs(10)),
        Ok(Stored::default())
    );
    assert_eq!(c.put(at(1), b"b", b"beta", secs(10)), Ok(Stored::default()));
    assert_eq!(get(&mut c, 2, b"a").as_deref(), Some(&b"alpha"[..]));
    assert_eq!(get(&mut c, 2, b"zz"), None);

    let mut out = [0u8; 64];
    assert_eq!(c.take(at(3), b"b", &mut out).unwrap(), Some(&b"beta"[..]));
    assert_eq!(c.take(at(3), b"b", &mut out).unwrap(), None);
    assert!(c.delete(at(4), b"a"));
    assert!(!c.delete(at(4), b"a"));

    let n = c.counters();
    assert_eq!(
        (n.items, n.hits, n.miss, n.sets, n.takes, n.deletes),
        (0, 2, 2, 2, 1, 1)
    );
    c.verify().unwrap();
}

#[test]
fn replacing_keeps_one_entry() {
    let mut c = cache(2, 16);
    c.put(at(0), b"k", b"one", secs(1)).unwrap();
    let stored = c.put(at(0), b"k", b"two", secs(1)).unwrap();
    assert!(stored.replaced);
    assert_eq!(c.items(), 1);
    assert_eq!(get(&mut c, 0, b"k").as_deref(), Some(&b"two"[..]));
    c.verify().unwrap();
}

#[test]
fn expired_entries_are_never_returned() {
    let mut c = cache(4, 16);
    c.put(at(1000), b"k", b"v", ms(500)).unwrap();
    assert!(get(&mut c, 1499, b"k").is_some());
    assert_eq!(
        get(&mut c, 1500, b"k"),
        None,
        "deadline reached, no sweep yet"
    );
    let n = c.counters();
    assert_eq!((n.items, n.expired, n.miss), (0, 1, 1));
}

#[test]
fn sweep_is_bounded_and_resumes() {
    let mut c = cache(100, 16);
    for i in 0..100u32 {
        c.put(at(0), &i.to_le_bytes(), b"v", ms(10)).unwrap();
    }
    let first = c.sweep(at(5), 1000);
    assert_eq!((first.examined, first.freed), (100, 0));
    let mut freed = 0;
    let mut calls = 0;
    while freed < 100 {
        let step = c.sweep(at(10), 7);
        assert!(step.examined <= 7);
        freed += step.freed;
        calls += 1;
        assert!(calls <= 15, "a pass takes capacity / budget calls");
    }
    assert_eq!(c.items(), 0);
    assert_eq!(c.counters().expired, 100);
    c.verify().unwrap();
}

#[test]
fn refusals_are_counted_and_nothing_is_truncated() {
    let mut c = cache(4, 8);
    assert_eq!(c.put(at(0), b"", b"v", secs(1)), Err(Refused::EmptyKey));
    assert_eq!(
        c.put(at(0), &[1; 65], b"v", secs(1)),
        Err(Refused::KeyTooLong)
    );
    assert_eq!(
        c.put(at(0), b"k", &[0; 9], secs(1)),
        Err(Refused::ValueTooLarge)
    );
    assert_eq!(
        c.put(at(0), b"k", b"v", Duration::ZERO),
        Err(Refused::ZeroLifetime)
    );
    assert_eq!(
        c.put(at(0), &[1; 64], &[0; 8], secs(1)).map(|s| s.replaced),
        Ok(false)
    );
    let n = c.counters();
    assert_eq!(
        (
            n.refused_empty_key,
            n.refused_key_too_long,
            n.refused_value_too_large,
            n.refused_zero_lifetime
        ),
        (1, 1, 1, 1)
    );
    assert_eq!((n.refused(), n.items), (4, 1));
    let mut small = [0u8; 4];
    assert_eq!(
        c.get(at(0), &[1; 64], &mut small),
        Err(BufferTooSmall { needed: 8 })
    );
}

#[test]
fn full_cache_evicts_unreferenced_entries_first() {
    let mut c = cache(3, 16);
    for key in [b"a", b"b", b"c"] {
        c.put(at(0), key, b"v", secs(60)).unwrap();
    }
    // "a" is resumed; "b" and "c" never are.
    assert!(get(&mut c, 1, b"a").is_some());
    let stored = c.put(at(2), b"d", b"v", secs(60)).unwrap();
    assert!(stored.evicted);
    assert!(
        get(&mut c, 3, b"a").is_some(),
        "referenced entry got a second chance"
    );
    assert!(
        get(&mut c, 3, b"b").is_none(),
        "first unreferenced entry went"
    );
    let n = c.counters();
    assert_eq!((n.full, n.evictions, n.items), (1, 1, 3));
    c.verify().unwrap();
}

#[test]
fn full_cache_reuses_an_expired_entry_without_counting_an_eviction() {
    let mut c = cache(2, 16);
    c.put(at(0), b"short", b"v", ms(5)).unwrap();
    c.put(at(0), b"long", b"v", secs(60)).unwrap();
    assert!(get(&mut c, 1, b"long").is_some());
    let stored = c.put(at(10), b"new", b"v", secs(60)).unwrap();
    assert!(!stored.evicted);
    let n = c.counters();
    assert_eq!((n.evictions, n.expired, n.items), (0, 1, 2));
}

#[test]
fn multi_chunk_values_round_trip() {
    let mut c = cache(8, 4096);
    let value: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    c.put(at(0), b"big", &value, secs(1)).unwrap();
    c.put(at(0), b"small", b"tiny", secs(1)).unwrap();
    assert_eq!(get(&mut c, 0, b"big"), Some(value));
    c.verify().unwrap();
}

#[test]
fn attach_sees_the_same_table_and_rejects_foreign_regions() {
    let mut c = cache(16, 128);
    c.put(at(0), b"k", b"v", secs(10)).unwrap();
    let region = c.into_storage();
    let mut again = Cache::attach(region).unwrap();
    assert_eq!(get(&mut again, 1, b"k").as_deref(), Some(&b"v"[..]));
    assert_eq!(again.counters().hits, 1);

    assert_eq!(
        Cache::attach(vec![0u8; 10]).err(),
        Some(AttachError::RegionTooSmall)
    );
    assert_eq!(
        Cache::attach(vec![0u8; 4096]).err(),
        Some(AttachError::BadMagic)
    );
    let mut region = again.into_storage();
    region.truncate(1000);
    assert_eq!(
        Cache::attach(region).err(),
        Some(AttachError::GeometryMismatch)
    );
    assert_eq!(
        Cache::format(vec![0u8; 100], &config(16, 128)).err(),
        Some(FormatError::RegionTooSmall {
            needed: Layout::new(16, 128).unwrap().total_bytes(),
            available: 100
        })
    );
}

#[test]
fn format_touches_only_header_and_index() {
    let layout = Layout::new(64, 1024).unwrap();
    let mut region = vec![0xAAu8; layout.total_bytes()];
    Cache::format(&mut region[..], &config(64, 1024)).unwrap();
    assert!(region[layout.slots_at..].iter().all(|&b| b == 0xAA));
    let mut c = Cache::attach(&mut region[..]).unwrap();
    c.put(at(0), b"k", b"v", secs(1)).unwrap();
    c.verify().unwrap();
}

#[test]
fn repair_rebuilds_an_interrupted_table() {
    let mut c = cache(32, 600);
    for i in 0..40u32 {
        let value = vec![i as u8; (i as usize * 37) % 600];
        c.put(at(0), &i.to_le_bytes(), &value, secs(60)).unwrap();
    }
    let before: Vec<_> = (0..40u32)
        .map(|i| get(&mut c, 1, &i.to_le_bytes()))
        .collect();
    // A process dies mid-mutation: the busy mark stays, index and free
    // lists are garbage.
    let mut region = c.into_storage();
    let layout = Layout::new(32, 600).unwrap();
    region[layout.index_at..layout.slots_at].fill(0x5A);
    write_u32(&mut region, header::BUSY, 1);
    write_u32(&mut region, header::SLOT_FREE, 7);
    write_u32(&mut region, header::CHUNK_FREE, 3);
    let mut c = Cache::attach(region).unwrap();
    assert!(c.needs_repair());
    assert_eq!(c.verify(), Err(Inconsistency::Busy));
    let report = c.repair();
    assert_eq!((report.kept, report.dropped), (32, 0));
    c.verify().unwrap();
    let after: Vec<_> = (0..40u32)
        .map(|i| get(&mut c, 1, &i.to_le_bytes()))
        .collect();
    assert_eq!(before, after);
    assert_eq!(c.counters().repairs, 1);
}

#[test]
fn repair_drops_entries_whose_chunks_were_stolen() {
    let mut c = cache(4, 600);
    c.put(at(0), b"a", &[1; 500], secs(60)).unwrap();
    c.put(at(0), b"b", &[2; 500], secs(60)).unwrap();
    let mut region = c.into_storage();
    let layout = Layout::new(4, 600).unwrap();
    // Point b's chain at a's first chunk, as a torn write could.
    let a_first = read_u32(&region, layout.slot_at(0) + slot::FIRST);
    write_u32(&mut region, layout.slot_at(1) + slot::FIRST, a_first);
    let mut c = Cache::attach(region).unwrap();
    assert!(c.verify().is_err());
    let report = c.repair();
    assert_eq!((report.kept, report.dropped), (1, 1));
    c.verify().unwrap();
    assert_eq!(get(&mut c, 1, b"a"), Some(vec![1; 500]));
    assert_eq!(get(&mut c, 1, b"b"), None);
    // The dropped entry's chunks are free again: the cache fills completely.
    for key in [b"c", b"d", b"e"] {
        c.put(at(2), key, &[3; 600], secs(60)).unwrap();
    }
    c.verify().unwrap();
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        2 => (0u64..40).prop_map(Op::Advance),
        4 => (0usize..16).prop_map(Op::Get),
        2 => (0usize..16).prop_map(Op::Take),
        6 => (0usize..16, 0usize..700, 0u64..60).prop_map(|(k, v, l)| Op::Put(k, v, l)),
        2 => (0usize..16).prop_map(Op::Delete),
        1 => (0u32..10).prop_map(Op::Sweep),
        1 => Just(Op::Clear).prop_filter("rare", |_| true),
    ];
    proptest::collection::vec(op, 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn cache_matches_the_model(
        capacity in 1u32..9,
        block_size in prop_oneof![Just(1u32), Just(40), Just(300), Just(600)],
        ops in ops(),
    ) {
        if let Err(e) = model::check(capacity, block_size, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }

    #[test]
    fn repair_survives_arbitrary_damage(
        ops in ops(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..40),
        more in ops(),
    ) {
        let mut c = cache(6, 600);
        let mut out = vec![0u8; 600];
        let mut now = 0;
        let mut run = |c: &mut Cache<Vec<u8>>, ops: &[Op], now: &mut u64| {
            for op in ops {
                match *op {
                    Op::Advance(ms) => *now += ms,
                    Op::Get(k) => { let _ = c.get(at(*now), &key(k), &mut out); }
                    Op::Take(k) => { let _ = c.take(at(*now), &key(k), &mut out); }
                    Op::Put(k, len, life) => {
                        let _ = c.put(at(*now), &key(k), &vec![1; len], ms(life));
                    }
                    Op::Delete(k) => { c.delete(at(*now), &key(k)); }
                    Op::Sweep(b) => { c.sweep(at(*now), b); }
                    Op::Clear => c.clear(at(*now)),
                }
            }
        };
        run(&mut c, &ops, &mut now);
        let mut region = c.into_storage();
        // Everything after the fixed geometry may be scribbled on.
        let damageable = region.len() - header::SLOT_HIGH;
        for (index, byte) in damage {
            region[header::SLOT_HIGH + index.index(damageable)] = byte;
        }
        let mut c = Cache::attach(region).unwrap();
        c.repair();
        prop_assert_eq!(c.verify(), Ok(()));
        run(&mut c, &more, &mut now);
        prop_assert_eq!(c.verify(), Ok(()));
    }
}

#[test]
fn export_walks_live_entries_only() {
    let mut c = cache(8, 600);
    c.put(at(0), b"a", &[1; 500], ms(100)).unwrap();
    c.put(at(0), b"b", b"short", ms(10)).unwrap();
    c.put(at(0), b"c", b"three", ms(100)).unwrap();
    c.delete(at(0), b"a");
    let mut key = [0u8; MAX_KEY_LEN];
    let mut value = [0u8; 600];
    let mut cursor = 0;
    let mut seen = Vec::new();
    while let Some(e) = c.export_next(at(50), cursor, &mut key, &mut value).unwrap() {
        seen.push((e.key.to_vec(), e.value.to_vec(), e.remaining));
        cursor = e.next;
    }
    assert_eq!(seen, [(b"c".to_vec(), b"three".to_vec(), ms(50))]);
    let mut small = [0u8; 2];
    assert_eq!(
        c.export_next(at(50), 0, &mut key, &mut small),
        Err(BufferTooSmall { needed: 5 })
    );
}
