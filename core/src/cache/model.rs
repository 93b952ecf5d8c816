//! A naive model of the cache, for the property tests and the fuzz target.
//!
//! The same policy written the obvious way: slots in a `Vec`, keys found by
//! linear search, a `Vec` as the free stack. It shares no code with the
//! cache, so agreement exercises the index, the chunk chains, the byte
//! layout and the counters. Needs `std`; compiled for tests and with the
//! `model` feature only.
#![allow(missing_docs)]

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use super::{Cache, CacheCounters, Config, Layout, Refused, Stored, Sweep, MAX_KEY_LEN};
use crate::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
    expires: u64,
    referenced: bool,
}

/// The same policy, written the obvious way: slots in a `Vec`, keys found by
/// linear search, a `Vec` as the free stack. It shares no code with the
/// cache, so agreement exercises the index, the chunk chains, the byte
/// layout and the counters.
pub struct Model {
    block_size: usize,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    high: usize,
    hand: usize,
    cursor: usize,
    /// The counters the cache should report.
    pub n: CacheCounters,
}

impl Model {
    pub fn new(capacity: u32, block_size: u32) -> Model {
        Model {
            block_size: block_size as usize,
            slots: vec![None; capacity as usize],
            free: Vec::new(),
            high: 0,
            hand: 0,
            cursor: 0,
            n: CacheCounters::default(),
        }
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|e| e.key == key))
    }

    fn remove(&mut self, slot: usize) {
        self.slots[slot] = None;
        self.free.push(slot);
        self.n.items -= 1;
    }

    fn find_live(&mut self, now: u64, key: &[u8]) -> Option<usize> {
        let slot = self.find(key)?;
        if self.slots[slot].as_ref().unwrap().expires <= now {
            self.remove(slot);
            self.n.expired += 1;
            return None;
        }
        Some(slot)
    }

    pub fn lookup(&mut self, now: u64, key: &[u8], take: bool) -> Option<Vec<u8>> {
        match self.find_live(now, key) {
            None => {
                self.n.miss += 1;
                None
            }
            Some(slot) => {
                self.n.hits += 1;
                let entry = self.slots[slot].as_mut().unwrap();
                entry.referenced = true;
                let value = entry.value.clone();
                if take {
                    self.remove(slot);
                    self.n.takes += 1;
                }
                Some(value)
            }
        }
    }

    pub fn put(
        &mut self,
        now: u64,
        key: &[u8],
        value: &[u8],
        life: u64,
    ) -> Result<Stored, Refused> {
        let refused = if key.is_empty() {
            self.n.refused_empty_key += 1;
            Refused::EmptyKey
        } else if key.len() > MAX_KEY_LEN {
            self.n.refused_key_too_long += 1;
            Refused::KeyTooLong
        } else if value.len() > self.block_size {
            self.n.refused_value_too_large += 1;
            Refused::ValueTooLarge
        } else if life == 0 {
            self.n.refused_zero_lifetime += 1;
            Refused::ZeroLifetime
        } else {
            return Ok(self.store(now, key, value, life));
        };
        Err(refused)
    }

    fn store(&mut self, now: u64, key: &[u8], value: &[u8], life: u64) -> Stored {
        let mut stored = Stored::default();
        let expires = now + life;
        if let Some(slot) = self.find(key) {
            let entry = self.slots[slot].as_mut().unwrap();
            if entry.expires <= now {
                self.n.expired += 1;
            } else {
                stored.replaced = true;
                self.n.replaced += 1;
            }
            entry.value = value.to_vec();
            entry.expires = expires;
        } else {
            let slot = if let Some(slot) = self.free.pop() {
                slot
            } else if self.high < self.slots.len() {
                self.high += 1;
                self.high - 1
            } else {
                self.n.full += 1;
                stored.evicted = self.evict(now);
                self.free.pop().unwrap()
            };
            self.slots[slot] = Some(Entry {
                key: key.to_vec(),
                value: value.to_vec(),
                expires,
                referenced: false,
            });
            self.n.items += 1;
        }
        self.n.sets += 1;
        stored
    }

    fn evict(&mut self, now: u64) -> bool {
        loop {
            let slot = if self.hand >= self.slots.len() {
                0
            } else {
                self.hand
            };
            self.hand = slot + 1;
            let entry = self.slots[slot].as_mut().unwrap();
            let expired = entry.expires <= now;
            if !expired && entry.referenced {
                entry.referenced = false;
                continue;
            }
            self.remove(slot);
            if expired {
                self.n.expired += 1;
            } else {
                self.n.evictions += 1;
            }
            return !expired;
        }
    }

    pub fn delete(&mut self, now: u64, key: &[u8]) -> bool {
        match self.find_live(now, key) {
            Some(slot) => {
                self.remove(slot);
                self.n.deletes += 1;
                true
            }
            None => false,
        }
    }

    pub fn sweep(&mut self, now: u64, budget: u32) -> Sweep {
        let mut report = Sweep::default();
        for _ in 0..(budget as usize).min(self.high) {
            if self.cursor >= self.high {
                self.cursor = 0;
            }
            let slot = self.cursor;
            self.cursor += 1;
            if self.cursor >= self.high {
                report.wrapped = true;
            }
            report.examined += 1;
            if self.slots[slot].as_ref().is_some_and(|e| e.expires <= now) {
                self.remove(slot);
                self.n.expired += 1;
                report.freed += 1;
            }
        }
        report
    }

    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.free.clear();
        (self.high, self.hand, self.cursor, self.n.items) = (0, 0, 0, 0);
    }
}

#[derive(Clone, Debug)]
pub enum Op {
    Advance(u64),
    Get(usize),
    Take(usize),
    Put(usize, usize, u64),
    Delete(usize),
    Sweep(u32),
    Clear,
}

/// Keys of several lengths, including the empty and the too-long one.
pub fn key(i: usize) -> Vec<u8> {
    match i {
        0 => Vec::new(),
        1 => vec![7; MAX_KEY_LEN + 1],
        2 => vec![9; MAX_KEY_LEN],
        i => {
            let mut k = vec![b'k'; 1 + i % 5];
            k.push(i as u8);
            k
        }
    }
}

/// Runs `ops` on a fresh cache and on the model, comparing every answer,
/// the counters and the cache's invariants after each step.
pub fn check(capacity: u32, block_size: u32, ops: &[Op]) -> Result<(), String> {
    let layout = Layout::new(capacity, block_size).map_err(|e| format!("{e}"))?;
    let config = Config {
        capacity,
        block_size,
        hash_key: *b"model hash key!!",
    };
    let mut c =
        Cache::format(vec![0u8; layout.total_bytes()], &config).map_err(|e| format!("{e}"))?;
    let mut m = Model::new(capacity, block_size);
    let mut now = 0u64;
    let mut out = vec![0u8; block_size as usize];
    let at = Instant::from_millis;
    for (step, op) in ops.iter().enumerate() {
        let agree = match *op {
            Op::Advance(ms) => {
                now = now.saturating_add(ms);
                true
            }
            Op::Get(k) => {
                let got = c
                    .get(at(now), &key(k), &mut out)
                    .map(|v| v.map(<[u8]>::to_vec));
                got == Ok(m.lookup(now, &key(k), false))
            }
            Op::Take(k) => {
                let got = c
                    .take(at(now), &key(k), &mut out)
                    .map(|v| v.map(<[u8]>::to_vec));
                got == Ok(m.lookup(now, &key(k), true))
            }
            Op::Put(k, len, life) => {
                let value: Vec<u8> = (0..len).map(|i| (i + k * 31 + step) as u8).collect();
                c.put(at(now), &key(k), &value, Duration::from_millis(life))
                    == m.put(now, &key(k), &value, life)
            }
            Op::Delete(k) => c.delete(at(now), &key(k)) == m.delete(now, &key(k)),
            Op::Sweep(budget) => c.sweep(at(now), budget) == m.sweep(now, budget),
            Op::Clear => {
                c.clear(at(now));
                m.clear();
                true
            }
        };
        if !agree {
            return Err(format!("step {step}: {op:?}: cache and model disagree"));
        }
        if c.counters() != m.n {
            return Err(format!(
                "step {step}: counters {:?} != model {:?}",
                c.counters(),
                m.n
            ));
        }
        c.verify()
            .map_err(|e| format!("step {step}: invariant broken: {e:?}"))?;
    }
    Ok(())
}
