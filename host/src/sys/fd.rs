//! Descriptors handed from a master to the workers it starts: kept open
//! across `exec`, and adopted by number on the other side.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Clears close-on-exec on `fd` so a process started next inherits it.
pub fn inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFD) on a descriptor that `fd` keeps open.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; F_SETFD changes only the descriptor's flags.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Why an inherited descriptor cannot be adopted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdoptError {
    #[error("descriptor {0} is standard input, output or error, never a handed-down one")]
    Standard(RawFd),
    #[error("descriptor {0} was not inherited (it is not open)")]
    NotOpen(RawFd),
}

/// Takes ownership of descriptor `fd`, inherited from the parent.
///
/// Each inherited descriptor must be adopted once: the parent names each
/// one once in the child's environment, and the child reads that once at
/// start, so no other owner of the number exists in the process.
pub fn adopt_inherited(fd: RawFd) -> Result<OwnedFd, AdoptError> {
    if fd < 3 {
        return Err(AdoptError::Standard(fd));
    }
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(AdoptError::NotOpen(fd));
    }
    // SAFETY: the descriptor is open, and (this function's contract above,
    // kept by its one caller, the worker's start) nothing else in this
    // process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
