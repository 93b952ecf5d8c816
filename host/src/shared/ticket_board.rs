//! Where a router's processes find its ticket keys: one sealed datagram in
//! the shared region.
//!
//! The process that runs the sync receiver (the master, or a process alone)
//! holds the keys and, whenever they change, seals them as an ordinary sync
//! datagram under the cluster key and writes it here; every serving process
//! opens it with its own copy of the cluster key. So the keys are in the
//! region (a memfd every process holds open) only sealed, exactly as they
//! travel between routers: a dump of the region, or of any file the router
//! holds open, shows no key.
//!
//! A sequence lock over atomics: the single writer makes the sequence odd,
//! writes, makes it even again; a reader copies and keeps the copy only if
//! the sequence was the same even number before and after.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Words of datagram the board holds: room for a 1400-byte datagram.
const WORDS: usize = 176;
/// Copies a reader tries while the writer keeps writing.
const READ_TRIES: usize = 1000;

/// The board. `repr(C)`, all atomics, valid (and empty) when zeroed.
#[repr(C)]
#[derive(Debug)]
pub struct TicketBoard {
    /// Odd while the writer writes; up by 2 per publication.
    sequence: AtomicU64,
    len: AtomicU64,
    words: [AtomicU64; WORDS],
}
crate::sys::shm::zeroable!(TicketBoard {
    sequence,
    len,
    words
});

impl Default for TicketBoard {
    fn default() -> Self {
        TicketBoard {
            sequence: AtomicU64::new(0),
            len: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Why a datagram was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a ticket key datagram of {0} bytes does not fit the board's {max}", max = WORDS * 8)]
pub struct TooLong(pub usize);

impl TicketBoard {
    /// Publishes `datagram`. One writer only: the sync receiver.
    pub fn publish(&self, datagram: &[u8]) -> Result<(), TooLong> {
        if datagram.len() > WORDS * 8 {
            return Err(TooLong(datagram.len()));
        }
        self.sequence.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.len.store(datagram.len() as u64, Ordering::Relaxed);
        for (word, chunk) in self.words.iter().zip(datagram.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        self.sequence.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// How many datagrams were published so far.
    pub fn generation(&self) -> u64 {
        self.sequence.load(Ordering::Acquire) / 2
    }

    /// The last datagram published with its generation; `None` before the
    /// first, or if the writer kept writing through every try.
    pub fn read(&self) -> Option<(u64, Vec<u8>)> {
        for _ in 0..READ_TRIES {
            let before = self.sequence.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            if before == 0 {
                return None;
            }
            let len = (self.len.load(Ordering::Relaxed) as usize).min(WORDS * 8);
            let mut datagram = Vec::with_capacity(len.next_multiple_of(8));
            for word in &self.words[..len.div_ceil(8)] {
                datagram.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
            datagram.truncate(len);
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) == before {
                return Some((before / 2, datagram));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_whole_publications_only() {
        let board: &'static TicketBoard = Box::leak(Box::default());
        assert_eq!(board.read(), None);
        board.publish(b"first datagram").unwrap();
        assert_eq!(board.read(), Some((1, b"first datagram".to_vec())));
        assert_eq!(
            board.publish(&[0; WORDS * 8 + 1]),
            Err(TooLong(WORDS * 8 + 1))
        );

        // A writer publishing patterns of every length while a reader
        // reads: every copy is one whole pattern.
        let writer = std::thread::spawn(move || {
            for round in 0..20_000u32 {
                let len = (round as usize * 7) % (WORDS * 8) + 1;
                board.publish(&vec![round as u8; len]).unwrap();
            }
        });
        let mut seen = 0;
        while !writer.is_finished() {
            if let Some((generation, datagram)) = board.read() {
                // (Generation 1 is the text published above.)
                assert!(
                    generation == 1 || datagram.iter().all(|&b| b == datagram[0]),
                    "a torn copy of publication {generation}"
                );
                seen += 1;
            }
        }
        writer.join().unwrap();
        assert!(seen > 0);
        assert_eq!(board.generation(), 20_001);
    }
}
