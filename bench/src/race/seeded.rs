//! Randomness that can be replayed, and an X25519 key exchange drawing its
//! private key from it: a client [`CryptoProvider`] under which several
//! rustls clients write byte-identical ClientHellos (see [`super::twins`]).
//!
//! A TLS 1.3 ClientHello draws three things at random: the client random,
//! the legacy session id and the key share's private key. rustls takes the
//! first two from the provider's [`SecureRandom`]; aws-lc's own key
//! exchange takes the third from aws-lc's generator, which cannot be
//! seeded, hence a key exchange of our own over the same randomness. Only
//! X25519 is offered, so a server never asks for another share (a
//! HelloRetryRequest would need a second draw).

use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::{agreement, digest};
use rustls::crypto::{
    aws_lc_rs as provider, ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom,
    SharedSecret, SupportedKxGroup,
};
use rustls::{Error, NamedGroup, PeerMisbehaved};

/// Bytes from the operating system, or, from [`Replayable::replay`] to
/// [`Replayable::release`], a stream derived from a seed: every `replay`
/// with the same seed starts the same stream again.
#[derive(Debug, Default)]
pub struct Replayable {
    stream: Mutex<Option<Stream>>,
}

/// SHA-256 of the seed and a block counter, block after block. The seed is
/// fresh from the operating system for each use, so the stream is as
/// unpredictable to a server as the system's own bytes.
#[derive(Debug)]
struct Stream {
    seed: [u8; 32],
    block: u64,
    /// What is left of the current block.
    left: Vec<u8>,
}

impl Stream {
    fn fill(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            if self.left.is_empty() {
                let mut input = self.seed.to_vec();
                input.extend_from_slice(&self.block.to_le_bytes());
                self.left = digest::digest(&digest::SHA256, &input).as_ref().to_vec();
                self.block += 1;
            }
            let n = out.len().min(self.left.len());
            out[..n].copy_from_slice(&self.left[..n]);
            self.left.drain(..n);
            out = &mut out[n..];
        }
    }
}

impl Replayable {
    /// Until [`Replayable::release`], every draw comes from `seed`'s stream,
    /// from its start.
    pub fn replay(&self, seed: [u8; 32]) {
        *self.lock() = Some(Stream {
            seed,
            block: 0,
            left: Vec::new(),
        });
    }

    /// Back to the operating system's bytes.
    pub fn release(&self) {
        *self.lock() = None;
    }

    /// 32 bytes from the operating system, to seed a replay with.
    pub fn seed() -> Result<[u8; 32], GetRandomFailed> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| GetRandomFailed)?;
        Ok(seed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Stream>> {
        // The stream is plain data: a panic elsewhere cannot leave it torn.
        self.stream.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SecureRandom for Replayable {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        match self.lock().as_mut() {
            Some(stream) => {
                stream.fill(buf);
                Ok(())
            }
            None => aws_lc_rs::rand::fill(buf).map_err(|_| GetRandomFailed),
        }
    }
}

/// X25519 whose private keys are drawn from a [`Replayable`].
#[derive(Debug)]
struct ReplayableX25519 {
    random: &'static Replayable,
}

impl SupportedKxGroup for ReplayableX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut private = [0u8; 32];
        self.random
            .fill(&mut private)
            .map_err(|_| Error::FailedToGetRandomBytes)?;
        let key = agreement::PrivateKey::from_private_key(&agreement::X25519, &private)
            .map_err(|_| Error::General("an X25519 private key was refused".into()))?;
        let public = key
            .compute_public_key()
            .map_err(|_| Error::General("no X25519 public key".into()))?
            .as_ref()
            .to_vec();
        Ok(Box::new(X25519Exchange { key, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct X25519Exchange {
    key: agreement::PrivateKey,
    public: Vec<u8>,
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        agreement::agree(
            &self.key,
            agreement::UnparsedPublicKey::new(&agreement::X25519, peer),
            Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare),
            |secret| Ok(SharedSecret::from(secret)),
        )
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// aws-lc's provider with replayable randomness and X25519 only, and the
/// randomness to steer it.
///
/// rustls wants both as `&'static`: they are leaked, two small objects
/// per call, which a `cachet bench` process makes once.
pub fn provider() -> (Arc<CryptoProvider>, &'static Replayable) {
    let random: &'static Replayable = Box::leak(Box::default());
    let x25519: &'static ReplayableX25519 = Box::leak(Box::new(ReplayableX25519 { random }));
    let provider = CryptoProvider {
        kx_groups: vec![x25519],
        secure_random: random,
        ..provider::default_provider()
    };
    (Arc::new(provider), random)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(random: &Replayable, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        random.fill(&mut out).unwrap();
        out
    }

    #[test]
    fn a_replay_repeats_its_stream_and_a_release_ends_it() {
        let random = Replayable::default();
        let seed = Replayable::seed().unwrap();
        random.replay(seed);
        // Draws of odd sizes across block boundaries.
        let first: Vec<u8> = [draw(&random, 5), draw(&random, 40), draw(&random, 3)].concat();
        random.replay(seed);
        assert_eq!(draw(&random, 48), first);
        random.replay(Replayable::seed().unwrap());
        assert_ne!(draw(&random, 48), first, "another seed, another stream");
        random.release();
        assert_ne!(draw(&random, 32), draw(&random, 32));
    }

    #[test]
    fn replayed_key_exchanges_have_one_public_key_and_agree_with_a_peer() {
        let (_, random) = provider();
        let group = ReplayableX25519 { random };
        let seed = Replayable::seed().unwrap();
        random.replay(seed);
        let a = group.start().unwrap();
        random.replay(seed);
        let b = group.start().unwrap();
        random.release();
        assert_eq!(a.pub_key(), b.pub_key());
        assert_eq!(a.pub_key().len(), 32);
        // Against aws-lc's own X25519, both sides derive the same secret.
        let peer = provider::kx_group::X25519.start().unwrap();
        let peer_public = peer.pub_key().to_vec();
        let ours = a.complete(&peer_public).unwrap();
        let theirs = peer.complete(b.pub_key()).unwrap();
        assert_eq!(ours.secret_bytes(), theirs.secret_bytes());
        assert!(b.complete(&[0u8; 5]).is_err(), "a short share is refused");
    }
}
