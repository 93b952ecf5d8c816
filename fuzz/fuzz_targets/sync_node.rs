//! A sync node fed a mix of raw junk and well-sealed datagrams whose
//! records, senders, sequence and record numbers the fuzzer chooses, and
//! pulls and challenges of its own started between them (vouches may name
//! a nonce the node issued, or any). The node must never panic, the cache
//! must stay consistent, every datagram must be either accepted or
//! rejected with a counted reason, no change may apply from a sender never
//! vouched for under a nonce the node issued, every pull must end exactly
//! once, and every answer must fit a datagram.
#![no_main]

use arbitrary::Arbitrary;
use cachet_core::cache::{Cache, Config, Layout};
use std::collections::HashSet;

use cachet_core::sync::{ControlKind, Node, PullOutcome, Settings};
use cachet_core::wire::{ClusterKey, Entry, Packet, Record, RecordsBuilder, Repr};
use cachet_core::Instant;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum FuzzRecord {
    Set { key: Vec<u8>, value: Vec<u8>, ttl_ms: u64 },
    Delete { key: Vec<u8> },
    Hello,
    BootstrapRequest,
    BootstrapEnd,
    PullRequest { id: u64, key: Vec<u8>, take: bool },
    PullAnswer { id: u64, key: Vec<u8>, value: Vec<u8>, ttl_ms: u64 },
    PullNone { id: u64 },
    Challenge { nonce: u64 },
    Vouch { nonce: Nonce, sender: u8, since: u16 },
}

/// A vouch's nonce: one the node issued (by its rank), or any.
#[derive(Arbitrary, Debug)]
enum Nonce {
    Issued(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Control {
    Hello,
    BootstrapRequest,
    Challenge,
}

#[derive(Arbitrary, Debug)]
enum Datagram {
    /// The node starts a pull of its own.
    Pull { key: Vec<u8>, take: bool, awaiting: u8, wait_ms: u16 },
    /// The node sends a control message (the challenges in it are kept).
    Control(Control),
    Raw(Vec<u8>),
    Sealed {
        sender: u8,
        sequence: u16,
        first_record: u16,
        records: Vec<FuzzRecord>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    steps: Vec<(u16, Datagram)>,
}

fuzz_target!(|input: Input| {
    let secret = [0x42; 32];
    let key = ClusterKey::new(&secret);
    let mut node: Node<1400, 4, 8, 1024, 4> = Node::new(key.clone(), 999, Settings::default());
    let layout = Layout::new(16, 256).unwrap();
    let config = Config { capacity: 16, block_size: 256, hash_key: [1; 16] };
    let mut cache = Cache::format(vec![0u8; layout.total_bytes()], &config).unwrap();
    let mut now = 0u64;
    let mut buf = vec![0u8; 70_000];
    let mut scratch = vec![0u8; 70_000];
    let mut out = vec![0u8; 1400];
    let (mut started, mut ended) = (0u64, 0u64);
    // Nonces the node issued, in order, and the senders vouched for under
    // one of them.
    let mut issued: Vec<u64> = Vec::new();
    let mut vouched: HashSet<u64> = HashSet::new();
    for (advance, datagram) in input.steps {
        now += u64::from(advance);
        let len = match datagram {
            Datagram::Pull { key, take, awaiting, wait_ms } => {
                let deadline = Instant::from_millis(now + u64::from(wait_ms));
                if node.pull(&key, take, u16::from(awaiting), deadline).is_ok() {
                    started += 1;
                }
                while let Some(message) = node.poll_message(&mut out) {
                    assert!(message.len <= 1400);
                }
                continue;
            }
            Datagram::Control(control) => {
                let kind = match control {
                    Control::Hello => ControlKind::Hello,
                    Control::BootstrapRequest => ControlKind::BootstrapRequest,
                    Control::Challenge => ControlKind::Challenge,
                };
                let Some(len) = node.transmit_control(Instant::from_millis(now), kind, &mut out)
                else {
                    continue;
                };
                let packet = Packet::new_checked(&out[..len]).expect("a datagram the node sealed");
                let repr = Repr::parse(&packet, &key, &mut scratch).expect("it opens");
                for record in repr.records {
                    if let Record::Challenge { nonce } = record {
                        issued.push(nonce);
                    }
                }
                continue;
            }
            Datagram::Raw(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                bytes.len()
            }
            Datagram::Sealed { sender, sequence, first_record, records } => {
                let mut builder = RecordsBuilder::new(&mut scratch);
                let mut vouches = Vec::new();
                for r in &records {
                    let record = match r {
                        FuzzRecord::Set { key, value, ttl_ms } => {
                            Record::Set(Entry { key, value, ttl_ms: *ttl_ms })
                        }
                        FuzzRecord::Delete { key } => Record::Delete { key },
                        FuzzRecord::Hello => Record::Hello,
                        FuzzRecord::BootstrapRequest => Record::BootstrapRequest,
                        FuzzRecord::BootstrapEnd => Record::BootstrapEnd,
                        FuzzRecord::PullRequest { id, key, take } => {
                            Record::PullRequest { id: *id, key, take: *take }
                        }
                        FuzzRecord::PullAnswer { id, key, value, ttl_ms } => Record::PullAnswer {
                            id: *id,
                            entry: Entry { key, value, ttl_ms: *ttl_ms },
                        },
                        FuzzRecord::PullNone { id } => Record::PullNone { id: *id },
                        FuzzRecord::Challenge { nonce } => Record::Challenge { nonce: *nonce },
                        FuzzRecord::Vouch { nonce, sender, since } => {
                            let (nonce, known) = match nonce {
                                Nonce::Issued(rank) if !issued.is_empty() => {
                                    (issued[usize::from(*rank) % issued.len()], true)
                                }
                                Nonce::Issued(rank) => (u64::from(*rank), false),
                                Nonce::Any(nonce) => (*nonce, issued.contains(nonce)),
                            };
                            if known {
                                vouches.push(u64::from(*sender));
                            }
                            Record::Vouch {
                                nonce,
                                sender: u64::from(*sender),
                                since: u64::from(*since),
                            }
                        }
                    };
                    if builder.push(&record).is_err() {
                        break;
                    }
                }
                // Authentic, so its vouches under an issued nonce count
                // whatever else the datagram does.
                vouched.extend(vouches);
                let repr = Repr {
                    sender: u64::from(sender),
                    sequence: u64::from(sequence),
                    first_record: u64::from(first_record),
                    records: builder.records(),
                };
                match repr.emit(&key, &mut buf) {
                    Ok(len) => len,
                    Err(_) => continue,
                }
            }
        };
        let before = *node.counters();
        let outcome = node.handle(Instant::from_millis(now), &buf[..len], &mut cache);
        let after = *node.counters();
        match outcome {
            Ok(_) => assert_eq!(after.received_datagrams, before.received_datagrams + 1),
            Err(_) => assert_eq!(after.rejected.total(), before.rejected.total() + 1),
        }
        cache.verify().expect("cache invariants after a datagram");
        // Answers to the pull requests it carried fit a datagram.
        while let Some(message) = node.poll_message(&mut out) {
            assert!(message.len <= 1400);
        }
        let mut pulled = 0;
        while let Some(event) = node.poll_event(Instant::from_millis(now)) {
            pulled += u64::from(event.outcome == PullOutcome::Found);
            ended += 1;
        }
        // Sets beyond the pull answers it stored (which prove their own
        // freshness), and deletes, come from a sender vouched for.
        let pushed = after.applied_sets - before.applied_sets > pulled
            || after.applied_deletes > before.applied_deletes;
        if let (true, Ok(handled)) = (pushed, outcome) {
            assert!(
                vouched.contains(&handled.sender),
                "changes applied from sender {} never vouched for",
                handled.sender
            );
        }
        assert!(ended <= started, "a pull ended twice");
    }
    // Past every deadline, every pull has ended, once.
    while node.poll_event(Instant::from_millis(u64::MAX / 2)).is_some() {
        ended += 1;
    }
    assert_eq!(ended, started, "pulls started and ended");
    assert_eq!(node.pulls_in_flight(), 0);
});
