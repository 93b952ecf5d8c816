//! TLS 1.3's key schedule on HMAC keys that are set up once.
//!
//! A TLS 1.3 handshake is some twenty HKDF operations (RFC 8446 section
//! 7.1). rustls' aws-lc-rs provider runs each through aws-lc's one-shot
//! HKDF, which sets the HMAC key up again every time (hashing its inner and
//! outer pads: two SHA-256 blocks), and for a secret just extracted redoes
//! the extraction too: four blocks of work where two would do, up to eight.
//! rustls' own generic HKDF ([`HkdfUsingHmac`]) makes each pseudorandom key
//! into an HMAC key once and starts every expansion from a copy of it; on
//! aws-lc-rs' HMAC that is a copy of the hashed pads. The outputs are the
//! same bytes (RFC 5869; checked against the provider's below); a resumed
//! TLS 1.3 handshake hashes about half as many blocks.
//!
//! Only the key schedule changes: the AEADs, the hash of the transcript
//! and everything TLS 1.2 does stay the provider's.

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::{SupportedCipherSuite, Tls13CipherSuite};

/// HMAC for rustls, on aws-lc-rs.
struct AwsLcHmac(hmac::Algorithm);

impl Hmac for AwsLcHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(AwsLcHmacKey(hmac::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

/// An HMAC key with its pads already hashed: each signature starts from a
/// copy of that state.
struct AwsLcHmacKey(hmac::Key);

impl Key for AwsLcHmacKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(first);
        for part in middle {
            context.update(part);
        }
        context.update(last);
        Tag::new(context.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: AwsLcHmac = AwsLcHmac(hmac::HMAC_SHA256);
static HMAC_SHA384: AwsLcHmac = AwsLcHmac(hmac::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// The provider's TLS 1.3 suites, each with the key schedule above: built
/// once, since rustls keeps suites by `'static` reference.
static SUITES: LazyLock<Vec<(SupportedCipherSuite, SupportedCipherSuite)>> = LazyLock::new(|| {
    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter_map(|&suite| {
            let SupportedCipherSuite::Tls13(tls13) = suite else {
                return None;
            };
            let hkdf_provider: &'static HkdfUsingHmac<'static> =
                match tls13.common.hash_provider.algorithm() {
                    rustls::crypto::hash::HashAlgorithm::SHA256 => &HKDF_SHA256,
                    rustls::crypto::hash::HashAlgorithm::SHA384 => &HKDF_SHA384,
                    _ => return None,
                };
            let ours: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
                common: rustls::CipherSuiteCommon {
                    suite: tls13.common.suite,
                    hash_provider: tls13.common.hash_provider,
                    confidentiality_limit: tls13.common.confidentiality_limit,
                },
                hkdf_provider,
                aead_alg: tls13.aead_alg,
                quic: tls13.quic,
            }));
            Some((suite, SupportedCipherSuite::Tls13(ours)))
        })
        .collect()
});

/// `suites` with each TLS 1.3 suite of aws-lc-rs replaced by the same
/// suite on the key schedule above; the order, and every other suite, as
/// they were.
pub fn with_precomputed_hmac_keys(suites: &mut [SupportedCipherSuite]) {
    for suite in suites {
        if let Some((_, ours)) = SUITES
            .iter()
            .find(|(theirs, _)| theirs.suite() == suite.suite())
        {
            *suite = *ours;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::tls13::{Hkdf, OkmBlock};

    fn tls13(suite: SupportedCipherSuite) -> &'static Tls13CipherSuite {
        match suite {
            SupportedCipherSuite::Tls13(suite) => suite,
            SupportedCipherSuite::Tls12(_) => panic!("a TLS 1.2 suite"),
        }
    }

    /// RFC 5869, test case 1 (SHA-256).
    #[test]
    fn rfc_5869_test_vector() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let expander = HKDF_SHA256.extract_from_secret(Some(&salt), &ikm);
        let mut okm = [0; 42];
        expander.expand_slice(&[&info], &mut okm).unwrap();
        let expected = crate::hex::decode::<42>(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
             34007208d5b887185865",
        );
        assert_eq!(Some(okm), expected);
    }

    /// Every operation gives the bytes the provider's own HKDF gives, for
    /// both hashes.
    #[test]
    fn the_same_bytes_as_the_providers_hkdf() {
        let mut suites = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES.to_vec();
        with_precomputed_hmac_keys(&mut suites);
        let mut replaced = 0;
        for (theirs, ours) in rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .zip(&suites)
        {
            assert_eq!(theirs.suite(), ours.suite(), "the order is kept");
            let (SupportedCipherSuite::Tls13(theirs), SupportedCipherSuite::Tls13(_)) =
                (theirs, ours)
            else {
                continue;
            };
            replaced += 1;
            let (theirs, ours) = (theirs.hkdf_provider, tls13(*ours).hkdf_provider);
            let secret = [7u8; 48];
            let salt = [9u8; 48];
            let info: [&[u8]; 3] = [b"tls13 ", b"c hs traffic", &[1, 2, 3]];
            for salt in [None, Some(&salt[..])] {
                let (a, b) = (
                    theirs.extract_from_secret(salt, &secret),
                    ours.extract_from_secret(salt, &secret),
                );
                assert_eq!(
                    a.expand_block(&info).as_ref(),
                    b.expand_block(&info).as_ref()
                );
                let (mut long_a, mut long_b) = ([0; 100], [0; 100]);
                a.expand_slice(&info, &mut long_a).unwrap();
                b.expand_slice(&info, &mut long_b).unwrap();
                assert_eq!(long_a, long_b);
                let (a, b) = (
                    theirs.extract_from_zero_ikm(salt),
                    ours.extract_from_zero_ikm(salt),
                );
                assert_eq!(
                    a.expand_block(&info).as_ref(),
                    b.expand_block(&info).as_ref()
                );
            }
            let okm = OkmBlock::new(&secret[..theirs.extract_from_zero_ikm(None).hash_len()]);
            assert_eq!(
                theirs.expander_for_okm(&okm).expand_block(&info).as_ref(),
                ours.expander_for_okm(&okm).expand_block(&info).as_ref()
            );
            assert_eq!(
                theirs.hmac_sign(&okm, b"finished").as_ref(),
                ours.hmac_sign(&okm, b"finished").as_ref()
            );
        }
        assert_eq!(replaced, 3, "every TLS 1.3 suite");
    }
}
