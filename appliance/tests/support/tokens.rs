//! The smoltcp tokens of the test devices: a packet received is a whole
//! `Vec`, and a packet to send is written into a fresh `Vec` and then
//! handed to the device's [`Link`]. Shared by the in-memory wire of the
//! unit tests and the loopback bridge of the router test; the including
//! module imports `phy` (smoltcp's, under whatever path it has there).

use std::vec;
use std::vec::Vec;

use super::phy;

/// Where a device's sent packets go.
pub trait Link {
    /// Carries one IP packet smoltcp has written.
    fn send(self, packet: Vec<u8>);
}

/// A packet the device received.
pub struct RxToken(pub Vec<u8>);

/// Room for one packet to send over `L`.
pub struct TxToken<L>(pub L);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl<L: Link> phy::TxToken for TxToken<L> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let result = f(&mut packet);
        self.0.send(packet);
        result
    }
}
