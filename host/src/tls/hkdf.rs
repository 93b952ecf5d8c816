//! TLS 1.3's key schedule on HMAC keys that are set up once.
//!
//! A TLS 1.3 handshake is some twenty HKDF operations (RFC 8446 section
//! 7.1). rustls' aws-lc-rs provider runs each through aws-lc's one-shot
//! HKDF, which sets the HMAC key up again every time (hashing its inner and
//! outer pads: two SHA-256 blocks), and for a secret just extracted redoes
//! the extraction too: four blocks of work where two would do, up to eight.
//! Here each pseudorandom key becomes an HMAC key once, when it is
//! extracted, and every expansion starts from a copy of its hashed pads.
//! The outputs are the same bytes (RFC 5869; checked against the
//! provider's below).
//!
//! rustls has a generic HKDF on HMAC of its own (`HkdfUsingHmac`), but it
//! passes each extracted key through a `Vec` that is freed without being
//! wiped: the handshake and master secrets would be left in freed heap
//! memory. Here they pass only through the stack (aws-lc-rs' tag, then
//! rustls' `Tag`, wiped on drop) into aws-lc's HMAC state (wiped when the
//! key is dropped).
//!
//! Only the key schedule changes: the AEADs, the hash of the transcript
//! and everything TLS 1.2 does stay the provider's.

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use rustls::crypto::hmac::Tag;
use rustls::crypto::tls13::{Hkdf, HkdfExpander, OkmBlock, OutputLengthError};
use rustls::{SupportedCipherSuite, Tls13CipherSuite};

/// HKDF (RFC 5869) with one of aws-lc-rs' HMACs.
struct PrecomputedHkdf(hmac::Algorithm);

impl PrecomputedHkdf {
    fn hash_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }

    /// HKDF-Extract: the pseudorandom key, made into an HMAC key at once.
    fn extract(&self, salt: Option<&[u8]>, secret: &[u8]) -> Box<dyn HkdfExpander> {
        let zeroes = [0u8; OkmBlock::MAX_LEN];
        let salt = salt.unwrap_or(&zeroes[..self.hash_len()]);
        let prk = sign(&hmac::Key::new(self.0, salt), secret);
        Box::new(Expander(hmac::Key::new(self.0, prk.as_ref())))
    }
}

impl Hkdf for PrecomputedHkdf {
    fn extract_from_zero_ikm(&self, salt: Option<&[u8]>) -> Box<dyn HkdfExpander> {
        let zeroes = [0u8; OkmBlock::MAX_LEN];
        self.extract(salt, &zeroes[..self.hash_len()])
    }

    fn extract_from_secret(&self, salt: Option<&[u8]>, secret: &[u8]) -> Box<dyn HkdfExpander> {
        self.extract(salt, secret)
    }

    fn expander_for_okm(&self, okm: &OkmBlock) -> Box<dyn HkdfExpander> {
        Box::new(Expander(hmac::Key::new(self.0, okm.as_ref())))
    }

    fn hmac_sign(&self, key: &OkmBlock, message: &[u8]) -> Tag {
        sign(&hmac::Key::new(self.0, key.as_ref()), message)
    }
}

/// HKDF-Expand from a pseudorandom key held as an HMAC key.
struct Expander(hmac::Key);

impl Expander {
    /// T(n) = HMAC(PRK, T(n - 1) | info | n), T(0) empty (RFC 5869
    /// section 2.3).
    fn term(&self, previous: Option<&Tag>, info: &[&[u8]], n: u8) -> Tag {
        let mut context = hmac::Context::with_key(&self.0);
        if let Some(previous) = previous {
            context.update(previous.as_ref());
        }
        for part in info {
            context.update(part);
        }
        context.update(&[n]);
        Tag::new(context.sign().as_ref())
    }
}

impl HkdfExpander for Expander {
    fn expand_slice(&self, info: &[&[u8]], output: &mut [u8]) -> Result<(), OutputLengthError> {
        let hash_len = self.hash_len();
        if output.len() > 255 * hash_len {
            return Err(OutputLengthError);
        }
        let mut previous = None;
        for (chunk, n) in output.chunks_mut(hash_len).zip(1..=u8::MAX) {
            let term = self.term(previous.as_ref(), info, n);
            chunk.copy_from_slice(&term.as_ref()[..chunk.len()]);
            previous = Some(term);
        }
        Ok(())
    }

    fn expand_block(&self, info: &[&[u8]]) -> OkmBlock {
        OkmBlock::new(self.term(None, info, 1).as_ref())
    }

    fn hash_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

/// HMAC of `message`, from `key`'s hashed pads.
fn sign(key: &hmac::Key, message: &[u8]) -> Tag {
    Tag::new(hmac::sign(key, message).as_ref())
}

static HKDF_SHA256: PrecomputedHkdf = PrecomputedHkdf(hmac::HMAC_SHA256);
static HKDF_SHA384: PrecomputedHkdf = PrecomputedHkdf(hmac::HMAC_SHA384);

/// The provider's TLS 1.3 suites, each with the key schedule above: built
/// once, since rustls keeps suites by `'static` reference.
static SUITES: LazyLock<Vec<(SupportedCipherSuite, SupportedCipherSuite)>> = LazyLock::new(|| {
    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter_map(|&suite| {
            let SupportedCipherSuite::Tls13(tls13) = suite else {
                return None;
            };
            let hkdf_provider: &'static PrecomputedHkdf =
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
                let too_long = 255 * b.hash_len() + 1;
                assert!(b.expand_slice(&info, &mut vec![0; too_long]).is_err());
                assert!(b.expand_slice(&info, &mut vec![0; too_long - 1]).is_ok());
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
