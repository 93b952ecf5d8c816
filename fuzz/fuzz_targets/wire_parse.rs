//! Arbitrary bytes as a datagram: the checked view, opening, and the body
//! decoder on its own (which only an authentic datagram reaches, so it gets
//! fuzzed directly too). Nothing may panic or read out of bounds.
#![no_main]

use cachet_core::wire::{ClusterKey, Packet, Records, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new(&[0x42; 32]);
    let mut scratch = [0u8; 65_536];
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = (packet.sender(), packet.sequence(), packet.key_id(), packet.tag());
        if let Ok(repr) = Repr::parse(&packet, &key, &mut scratch) {
            panic!("forged datagram accepted: {repr:?}");
        }
    }
    if let Ok(records) = Records::parse(data) {
        assert_eq!(records.iter().count(), records.len());
    }
});
