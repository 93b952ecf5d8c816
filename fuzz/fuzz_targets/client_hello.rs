//! Arbitrary bytes as a client's first flight (TLS records) and as a
//! ClientHello message: reassembly, joining, the check and every accessor.
//! Nothing may panic or read out of bounds, and what the check accepts
//! keeps the accessors' promises.
#![no_main]

use cachet_core::hello::{
    join, reassemble, ClientHello, Reassembly, MAX_PSK_IDENTITIES, MAX_SESSION_ID_LEN,
};
use libfuzzer_sys::fuzz_target;

/// The router's limit on a ClientHello.
const MAX_LEN: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut joined = Vec::new();
    let message = match reassemble(data, MAX_LEN) {
        Ok(Reassembly::Whole(message)) => Some(message),
        Ok(Reassembly::Fragmented { len }) => {
            assert!(len <= MAX_LEN);
            joined.resize(len, 0);
            Some(join(data, &mut joined).expect("reassemble saw every fragment"))
        }
        Ok(Reassembly::Incomplete) | Err(_) => None,
    };
    if let Some(message) = message {
        read(message);
    }
    read(data);
});

fn read(message: &[u8]) {
    let hello = ClientHello::new_unchecked(message);
    let checked = hello.check().is_ok();
    assert!(hello.session_id().len() <= MAX_SESSION_ID_LEN);
    let _ = (hello.legacy_version(), hello.random(), hello.server_name());
    let _ = (hello.offers_tls13(), hello.pre_shared_key_is_last());
    let _ = hello.cipher_suites().count();
    let extensions = hello.extensions().take_while(Result::is_ok).count();
    let identities = hello.psk_identities().count();
    assert!(identities <= MAX_PSK_IDENTITIES);
    if checked {
        // A checked ClientHello's extensions are all well framed, and a
        // pre_shared_key in it has at least one identity.
        assert_eq!(extensions, hello.extensions().count());
        assert!(!hello.pre_shared_key_is_last() || identities > 0);
    }
}
