//! Arbitrary cache operation sequences, checked step by step against the
//! reference model (answers, counters and invariants).
#![no_main]

use arbitrary::Arbitrary;
use cachet_core::cache::model::{check, Op};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Advance(u8),
    Get(u8),
    Take(u8),
    Put(u8, u16, u8),
    Delete(u8),
    Sweep(u8),
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    block_size: u16,
    ops: Vec<FuzzOp>,
}

fuzz_target!(|input: Input| {
    let capacity = u32::from(input.capacity % 16) + 1;
    let block_size = u32::from(input.block_size % 1200) + 1;
    let ops: Vec<Op> = input
        .ops
        .iter()
        .map(|op| match *op {
            FuzzOp::Advance(ms) => Op::Advance(u64::from(ms)),
            FuzzOp::Get(k) => Op::Get(usize::from(k % 24)),
            FuzzOp::Take(k) => Op::Take(usize::from(k % 24)),
            FuzzOp::Put(k, len, life) => {
                Op::Put(usize::from(k % 24), usize::from(len) % (block_size as usize + 2), u64::from(life))
            }
            FuzzOp::Delete(k) => Op::Delete(usize::from(k % 24)),
            FuzzOp::Sweep(budget) => Op::Sweep(u32::from(budget % 12)),
            FuzzOp::Clear => Op::Clear,
        })
        .collect();
    if let Err(e) = check(capacity, block_size, &ops) {
        panic!("{e}");
    }
});
