//! Which cipher suite a connection gets.
//!
//! rustls follows the client's order by default. Most non-browser clients
//! (rustls, OpenSSL, Go) list AES-256-GCM with SHA-384 first, and a
//! SHA-384 key schedule costs more than a SHA-256 one: x86-64 and ARMv8
//! have instructions for SHA-256 and none for SHA-512, which every HKDF and
//! HMAC of a TLS 1.3 handshake, and the TLS 1.2 PRF, run on. A resumed
//! handshake is mostly that key schedule, so the router chooses itself:
//!
//! - **AES-128-GCM first** (with SHA-256), then AES-256-GCM, then
//!   ChaCha20-Poly1305, in TLS 1.3 and in TLS 1.2 alike. Browsers already
//!   list AES-128-GCM first (Chrome, Firefox, Safari), so they see no
//!   change; AES-128 keeps a 128-bit security level, the one the X25519 and
//!   P-256 key exchanges give anyway.
//! - **ChaCha20-Poly1305 first for a client that lists it first** among
//!   the suites the router has: such a client says it has no AES hardware
//!   (phones without AES instructions), where ChaCha20 is several times
//!   faster for it. rustls has no such switch of its own, so a site keeps
//!   a second configuration with ChaCha20 moved up, chosen per connection
//!   from the ClientHello ([`super::variants`]).
//! - A cipher list given in `https` (`ADDR,CRT,KEY,CIPHERS`) is taken as
//!   the router's order, as written; the ChaCha20 rule still applies.
//!
//! Sessions resume only under a suite of the same hash, so a session made
//! under AES-256-GCM-SHA384 (by an older router) resumes once more as a full
//! handshake.

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, SupportedCipherSuite};

/// The bulk ciphers, in the router's default order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bulk {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
    Other,
}

impl Bulk {
    fn of(suite: CipherSuite) -> Bulk {
        match suite {
            CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Bulk::Aes128Gcm,
            CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Bulk::Aes256Gcm,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Bulk::ChaCha20Poly1305,
            _ => Bulk::Other,
        }
    }
}

/// Puts `suites` in the router's default order: TLS 1.3's before TLS
/// 1.2's, and within a version AES-128-GCM, AES-256-GCM, ChaCha20. The
/// sort is stable, so the provider's order (ECDSA before RSA in TLS 1.2)
/// holds within a rank.
pub fn default_order(suites: &mut [SupportedCipherSuite]) {
    suites.sort_by_key(|suite| {
        (
            suite.version().version != rustls::ProtocolVersion::TLSv1_3,
            Bulk::of(suite.suite()),
        )
    });
}

/// `provider` with its ChaCha20 suites moved to the front, the order among
/// the others kept.
pub fn chacha_first(provider: &CryptoProvider) -> CryptoProvider {
    let mut provider = provider.clone();
    provider
        .cipher_suites
        .sort_by_key(|suite| Bulk::of(suite.suite()) != Bulk::ChaCha20Poly1305);
    provider
}

/// Whether a client offering `client_suites` (in its order) should get
/// the ChaCha20-first configuration: the first of them the router has is
/// a ChaCha20 suite (GREASE values and suites the router lacks skipped).
pub fn client_prefers_chacha(client_suites: &[CipherSuite], ours: &[SupportedCipherSuite]) -> bool {
    client_suites
        .iter()
        .find(|offered| ours.iter().any(|suite| suite.suite() == **offered))
        .is_some_and(|suite| Bulk::of(*suite) == Bulk::ChaCha20Poly1305)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::aws_lc_rs;

    fn names(suites: &[SupportedCipherSuite]) -> Vec<CipherSuite> {
        suites.iter().map(|suite| suite.suite()).collect()
    }

    #[test]
    fn aes_128_comes_first_in_each_version() {
        let mut provider = aws_lc_rs::default_provider();
        default_order(&mut provider.cipher_suites);
        let order = names(&provider.cipher_suites);
        assert_eq!(
            order[..3],
            [
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(
            order[3..5],
            [
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        );
        let chacha = chacha_first(&provider);
        assert_eq!(
            names(&chacha.cipher_suites)[..2],
            [
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(chacha.cipher_suites.len(), provider.cipher_suites.len());
    }

    #[test]
    fn chacha_goes_to_clients_that_ask_for_it_first() {
        let mut provider = aws_lc_rs::default_provider();
        default_order(&mut provider.cipher_suites);
        let ours = &provider.cipher_suites;
        let grease = CipherSuite::from(0x0a0a);
        let chacha = CipherSuite::TLS13_CHACHA20_POLY1305_SHA256;
        let aes = CipherSuite::TLS13_AES_256_GCM_SHA384;
        assert!(client_prefers_chacha(&[grease, chacha, aes], ours));
        assert!(!client_prefers_chacha(&[grease, aes, chacha], ours));
        assert!(!client_prefers_chacha(&[], ours));
        let only_aes = provider_with(&[CipherSuite::TLS13_AES_128_GCM_SHA256]);
        assert!(!client_prefers_chacha(
            &[chacha, CipherSuite::TLS13_AES_128_GCM_SHA256],
            &only_aes
        ));
    }

    fn provider_with(names: &[CipherSuite]) -> Vec<SupportedCipherSuite> {
        aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .filter(|suite| names.contains(&suite.suite()))
            .copied()
            .collect()
    }
}
