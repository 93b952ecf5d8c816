//! `cachet-core`'s cache against rustls' `ServerSessionMemoryCache`, both at
//! 20000 entries with TLS-session-sized values, in one run.
//!
//! Both sit behind a mutex, as they do in a server: rustls' cache has one
//! inside; the router guards the shared region with its process-shared lock.
//! Keys are 48 bytes (a 16-byte context namespace and a 32-byte session id),
//! values 110 bytes (a typical rustls session encoding).
//!
//! Run: `cargo bench -p cachet-core --bench cache`

use std::hint::black_box;
use std::sync::Mutex;

use cachet_core::cache::{Cache, Config, Layout};
use cachet_core::{Duration, Instant};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};

const ENTRIES: usize = 20_000;
const VALUE_LEN: usize = 110;

fn key(i: usize) -> Vec<u8> {
    let mut k = b"context-16-bytes".to_vec();
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    k.extend_from_slice(&id);
    k
}

fn core_cache() -> Mutex<Cache<Vec<u8>>> {
    let layout = Layout::new(ENTRIES as u32, 4096).unwrap();
    let config = Config {
        capacity: ENTRIES as u32,
        block_size: 4096,
        hash_key: *b"bench hash key!!",
    };
    let mut cache = Cache::format(vec![0u8; layout.total_bytes()], &config).unwrap();
    for i in 0..ENTRIES {
        cache
            .put(
                Instant::ZERO,
                &key(i),
                &[7; VALUE_LEN],
                Duration::from_secs(300),
            )
            .unwrap();
    }
    Mutex::new(cache)
}

fn rustls_cache() -> std::sync::Arc<ServerSessionMemoryCache> {
    let cache = ServerSessionMemoryCache::new(ENTRIES);
    for i in 0..ENTRIES {
        cache.put(key(i), vec![7; VALUE_LEN]);
    }
    cache
}

fn benches(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..ENTRIES).map(key).collect();
    let now = Instant::from_millis(1);
    let life = Duration::from_secs(300);

    let mut group = c.benchmark_group("get_hit");
    let ours = core_cache();
    let theirs = rustls_cache();
    let mut i = 0;
    group.bench_function("cachet", |b| {
        let mut out = [0u8; 4096];
        b.iter(|| {
            i = (i + 7919) % ENTRIES;
            let mut cache = ours.lock().unwrap();
            black_box(cache.get(now, &keys[i], &mut out).unwrap().map(|v| v.len()))
        })
    });
    group.bench_function("rustls", |b| {
        b.iter(|| {
            i = (i + 7919) % ENTRIES;
            black_box(theirs.get(&keys[i]).map(|v| v.len()))
        })
    });
    group.finish();

    // Puts of new keys into a full cache: each one evicts.
    let mut group = c.benchmark_group("put_full");
    let mut n = ENTRIES;
    group.bench_function("cachet", |b| {
        b.iter(|| {
            n += 1;
            let k = key(n);
            let v = vec![9u8; VALUE_LEN];
            let mut cache = ours.lock().unwrap();
            black_box(cache.put(now, &k, &v, life).unwrap())
        })
    });
    group.bench_function("rustls", |b| {
        b.iter(|| {
            n += 1;
            black_box(theirs.put(key(n), vec![9u8; VALUE_LEN]))
        })
    });
    group.finish();

    // Take of a present key (a TLS 1.3 ticket used). The setup puts it
    // back, unmeasured.
    let mut group = c.benchmark_group("take_hit");
    let ours = core_cache();
    let theirs = rustls_cache();
    group.bench_function("cachet", |b| {
        let mut out = [0u8; 4096];
        b.iter_batched(
            || {
                i = (i + 7919) % ENTRIES;
                let mut cache = ours.lock().unwrap();
                cache.put(now, &keys[i], &[7; VALUE_LEN], life).unwrap();
                i
            },
            |i| {
                let mut cache = ours.lock().unwrap();
                black_box(
                    cache
                        .take(now, &keys[i], &mut out)
                        .unwrap()
                        .map(|v| v.len()),
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("rustls", |b| {
        b.iter_batched(
            || {
                i = (i + 7919) % ENTRIES;
                theirs.put(keys[i].clone(), vec![7; VALUE_LEN]);
                i
            },
            |i| black_box(theirs.take(&keys[i]).map(|v| v.len())),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = cache;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(cache);
