//! Shared memory between the master and its workers: an anonymous memory
//! file (`memfd_create`) mapped `MAP_SHARED`, and the typed places in it.
//!
//! A memfd, rather than an anonymous mapping, because workers are started by
//! re-executing the binary (never by forking a process that runs threads):
//! the file descriptor survives `exec`, an anonymous mapping does not. Fresh
//! memfd pages read as zero and only become resident when touched, so a
//! large, mostly empty cache costs little memory.
//!
//! A mapping lives as long as the process (the region is made once, at
//! start), so what is placed in it is `&'static`. Each range of it is
//! handed out once ([`SharedMemory::place`], [`SharedMemory::new_mutex`]):
//! two references never alias in this process, and between processes only
//! atomics and bytes under the robust mutex are shared.

use std::ffi::CString;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use super::robust_mutex::RobustMutex;

/// Types that may live in shared memory: valid when every byte is zero
/// (the state of a fresh memfd), and holding nothing but atomics, so that
/// every process may read and write them at once through `&T`.
///
/// # Safety
/// An implementor must be valid for the all-zero bit pattern and made of
/// atomics only (no pointer, no non-atomic interior). Implement it for a
/// struct with [`zeroable!`](crate::sys::shm::zeroable), which checks that
/// every field is itself `Zeroable`.
pub unsafe trait Zeroable: Sync {}

// SAFETY: an AtomicU64 is a u64 in an UnsafeCell, valid when zero, and
// atomic from every process mapping it.
unsafe impl Zeroable for AtomicU64 {}
// SAFETY: an array of zero-valid atomics is zero-valid atomics.
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}

/// Compile-time half of [`zeroable!`]: accepts only `Zeroable` fields.
pub fn is_zeroable<T: Zeroable>(_: &T) {}

/// Marks a struct made only of [`Zeroable`] fields as `Zeroable`. Every
/// field must be named (the destructuring below has no `..`), so a field
/// added later without the trait stops the build instead of the proof.
///
/// ```ignore
/// crate::sys::shm::zeroable!(Counters { hits, misses, latency });
/// ```
macro_rules! zeroable {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        const _: () = {
            #[allow(dead_code)]
            fn every_field_is_zeroable(value: &$ty) {
                let $ty { $($field),* } = value;
                $($crate::sys::shm::is_zeroable($field);)*
            }
        };
        // SAFETY: a struct whose every field is Zeroable (checked above) is
        // valid when all zero (padding may hold anything) and atomics only.
        #[allow(unsafe_code)]
        unsafe impl $crate::sys::shm::Zeroable for $ty {}
    };
}
pub(crate) use zeroable;

/// A shared mapping of a memory file, for the life of the process.
#[derive(Debug)]
pub struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    /// Ranges handed out so far: none is handed out twice.
    claimed: Mutex<Vec<Range<usize>>>,
}

// SAFETY: the mapping is plain memory; what is handed out of it is atomics
// (`Zeroable`) or bytes behind the process-shared lock, which is what makes
// sharing sound. The pointer itself never changes.
unsafe impl Send for SharedMemory {}
// SAFETY: as above.
unsafe impl Sync for SharedMemory {}

/// Why a place in the mapping cannot be handed out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaceError {
    #[error("bytes {at}..{end} lie beyond the {len}-byte shared mapping")]
    OutOfBounds { at: usize, end: usize, len: usize },
    #[error("offset {at} is not aligned to {align} bytes")]
    Misaligned { at: usize, align: usize },
    #[error("bytes {at}..{end} overlap bytes {other_at}..{other_end} already handed out")]
    Overlaps {
        at: usize,
        end: usize,
        other_at: usize,
        other_end: usize,
    },
}

/// Why a robust mutex cannot be formatted.
#[derive(Debug, thiserror::Error)]
pub enum NewMutexError {
    #[error(transparent)]
    Place(#[from] PlaceError),
    #[error("pthread refused the robust process-shared mutex: {0}")]
    Init(#[from] io::Error),
}

impl SharedMemory {
    /// A new zero-filled memory file of `len` bytes, mapped for the life
    /// of the process. The descriptor is inherited by child processes (no
    /// close-on-exec), so workers can map the same memory with
    /// [`SharedMemory::open`].
    pub fn create(name: &str, len: usize) -> io::Result<&'static SharedMemory> {
        let name = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: `name` is a valid NUL-terminated string; flags 0 leaves the
        // descriptor inheritable on purpose.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just created and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len).map_err(io::Error::other)?;
        // SAFETY: plain syscall on a valid descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd, len)
    }

    /// Maps a memory file inherited from the master.
    pub fn open(fd: OwnedFd) -> io::Result<&'static SharedMemory> {
        let len = std::fs::File::from(fd.try_clone()?).metadata()?.len();
        let len = usize::try_from(len).map_err(io::Error::other)?;
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<&'static SharedMemory> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty shared memory",
            ));
        }
        // SAFETY: a fresh mapping at an address of the kernel's choosing; it
        // aliases nothing in this process.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        // Never unmapped: everything placed in it is 'static.
        Ok(Box::leak(Box::new(SharedMemory {
            ptr,
            len,
            fd,
            claimed: Mutex::new(Vec::new()),
        })))
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: creation refuses that).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory file, to hand to a worker.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The `T` at byte `at`, handed out once. Valid from the start: the
    /// bytes are zero, or whatever another process made of them.
    pub fn place<T: Zeroable>(&'static self, at: usize) -> Result<&'static T, PlaceError> {
        let align = std::mem::align_of::<T>();
        if (self.ptr.as_ptr() as usize + at) % align != 0 {
            return Err(PlaceError::Misaligned { at, align });
        }
        self.claim(at, std::mem::size_of::<T>())?;
        // SAFETY: the bytes lie inside the mapping, which is never unmapped,
        // are aligned for T (both checked above) and handed out only here
        // (claimed); T is valid when zero and for whatever other processes
        // wrote (atomics only: `Zeroable`'s contract).
        Ok(unsafe { &*self.ptr.as_ptr().add(at).cast::<T>() })
    }

    /// Formats a robust mutex at byte `at` that guards bytes `guards`: in
    /// the process that creates the region, before any other maps it.
    pub fn new_mutex(
        &'static self,
        at: usize,
        guards: Range<usize>,
    ) -> Result<RobustMutex, NewMutexError> {
        let (mutex, bytes) = self.mutex_places(at, guards)?;
        // SAFETY: both places are inside the mapping, never unmapped, and
        // handed out only to this mutex; no other process maps it yet.
        Ok(unsafe { RobustMutex::init(mutex, bytes) }?)
    }

    /// The robust mutex another process formatted at `at`, guarding `guards`.
    pub fn attach_mutex(
        &'static self,
        at: usize,
        guards: Range<usize>,
    ) -> Result<RobustMutex, PlaceError> {
        let (mutex, bytes) = self.mutex_places(at, guards)?;
        // SAFETY: as in `new_mutex`; the creator formatted the mutex before
        // handing the memory file over (and zero bytes, had it not, are a
        // plain mutex on Linux, never undefined).
        Ok(unsafe { RobustMutex::attach(mutex, bytes) })
    }

    fn mutex_places(
        &'static self,
        at: usize,
        guards: Range<usize>,
    ) -> Result<(NonNull<libc::pthread_mutex_t>, NonNull<[u8]>), PlaceError> {
        let align = std::mem::align_of::<libc::pthread_mutex_t>();
        if (self.ptr.as_ptr() as usize + at) % align != 0 {
            return Err(PlaceError::Misaligned { at, align });
        }
        self.claim(at, std::mem::size_of::<libc::pthread_mutex_t>())?;
        let len = guards.end.saturating_sub(guards.start);
        self.claim(guards.start, len)?;
        // SAFETY: both offsets were checked to lie inside the mapping.
        let (mutex, bytes) = unsafe {
            (
                self.ptr.as_ptr().add(at).cast::<libc::pthread_mutex_t>(),
                self.ptr.as_ptr().add(guards.start),
            )
        };
        let mutex = NonNull::new(mutex).expect("inside a non-null mapping");
        let bytes = NonNull::new(bytes).expect("inside a non-null mapping");
        Ok((mutex, NonNull::slice_from_raw_parts(bytes, len)))
    }

    fn claim(&self, at: usize, size: usize) -> Result<(), PlaceError> {
        let end =
            at.checked_add(size)
                .filter(|&end| end <= self.len)
                .ok_or(PlaceError::OutOfBounds {
                    at,
                    end: at.saturating_add(size),
                    len: self.len,
                })?;
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        if size > 0 {
            if let Some(other) = claimed.iter().find(|r| r.start < end && at < r.end) {
                return Err(PlaceError::Overlaps {
                    at,
                    end,
                    other_at: other.start,
                    other_end: other.end,
                });
            }
            claimed.push(at..end);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_file_see_each_other() {
        let a = SharedMemory::create("cachet-test", 8192).unwrap();
        let fd = a.fd().try_clone_to_owned().unwrap();
        let b = SharedMemory::open(fd).unwrap();
        assert_eq!(b.len(), 8192);
        let in_a: &AtomicU64 = a.place(4000).unwrap();
        let in_b: &AtomicU64 = b.place(4000).unwrap();
        assert_eq!(in_a.load(Ordering::Relaxed), 0, "fresh pages are zero");
        in_a.store(42, Ordering::Relaxed);
        assert_eq!(in_b.load(Ordering::Relaxed), 42);
    }

    #[test]
    fn a_place_is_handed_out_once_inside_the_mapping_and_aligned() {
        let memory = SharedMemory::create("cachet-test", 4096).unwrap();
        let _: &[AtomicU64; 4] = memory.place(64).unwrap();
        assert_eq!(
            memory.place::<AtomicU64>(80).unwrap_err(),
            PlaceError::Overlaps {
                at: 80,
                end: 88,
                other_at: 64,
                other_end: 96
            }
        );
        assert_eq!(
            memory.place::<AtomicU64>(4092).unwrap_err(),
            PlaceError::Misaligned { at: 4092, align: 8 }
        );
        assert_eq!(
            memory.place::<AtomicU64>(4096).unwrap_err(),
            PlaceError::OutOfBounds {
                at: 4096,
                end: 4104,
                len: 4096
            }
        );
        assert!(memory.new_mutex(0, 90..100).is_err(), "overlaps the array");
    }
}
