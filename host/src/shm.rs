//! Shared memory between the master and its workers: an anonymous memory
//! file (`memfd_create`) mapped `MAP_SHARED`.
//!
//! A memfd, rather than an anonymous mapping, because workers are started by
//! re-executing the binary (never by forking a process that runs threads):
//! the file descriptor survives `exec`, an anonymous mapping does not. Fresh
//! memfd pages read as zero and only become resident when touched, so a
//! large, mostly empty cache costs little memory.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// A shared mapping of a memory file, unmapped when dropped.
#[derive(Debug)]
pub struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain memory; every access to it goes through a
// process-shared lock or atomics, which is what makes sharing sound.
unsafe impl Send for SharedMemory {}
// SAFETY: as above.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// A new zero-filled memory file of `len` bytes, mapped. The descriptor
    /// is inherited by child processes (no close-on-exec), so workers can
    /// map the same memory with [`SharedMemory::open`].
    pub fn create(name: &str, len: usize) -> io::Result<SharedMemory> {
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
    pub fn open(fd: OwnedFd) -> io::Result<SharedMemory> {
        // SAFETY: `stat` is plain data that `fstat` fills in.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and a pointer to a live `stat`.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = usize::try_from(stat.st_size).map_err(io::Error::other)?;
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedMemory> {
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
        Ok(SharedMemory { ptr, len, fd })
    }

    /// Start of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
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
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing borrowed
        // from it outlives `self` (borrows are tied to `&self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_file_see_each_other() {
        let a = SharedMemory::create("cachet-test", 8192).unwrap();
        let fd = a.fd().try_clone_to_owned().unwrap();
        let b = SharedMemory::open(fd).unwrap();
        assert_eq!(b.len(), 8192);
        // SAFETY: both pointers are valid for 8192 bytes; no other access.
        unsafe {
            assert_eq!(*a.as_ptr().add(4000), 0, "fresh pages are zero");
            *a.as_ptr().add(4000) = 42;
            assert_eq!(*b.as_ptr().add(4000), 42);
        }
    }
}
