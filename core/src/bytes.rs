//! Little-endian field access on byte slices.
//!
//! Both the cache region and the wire format are plain bytes: the cache
//! because it lives in memory that several processes (or a `static` on a
//! microcontroller) share, the datagram because it crosses the network. Fields
//! are read and written through these helpers instead of casting bytes to
//! structs, which keeps the crate free of `unsafe` and of alignment concerns.
//!
//! Callers index within bounds they have already validated; an out-of-range
//! offset is a bug in this crate and panics like any slice index.

#[inline]
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

#[inline]
pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[inline]
pub(crate) fn write_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[inline]
pub(crate) fn write_u64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
