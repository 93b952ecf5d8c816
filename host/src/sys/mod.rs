//! Every `unsafe` of the host, behind safe functions: the shared memory
//! mapping and what may be placed in it, the robust process-shared mutex,
//! inherited descriptors, signals and the parent's death, the monotonic
//! clock, one socket option.
//!
//! The rest of the crate denies `unsafe_code` (see `lib.rs`); each block
//! here says why it is sound in a `// SAFETY:` note, which clippy checks.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod clock;
pub mod fd;
pub mod process;
pub mod robust_mutex;
pub mod shm;
pub mod socket;
