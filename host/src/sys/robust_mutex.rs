//! A process-shared, robust mutex living in shared memory, and the bytes
//! it guards.
//!
//! uWSGI guards its cache with a process-shared `pthread_rwlock`, which has
//! no robust form: a worker killed while holding it hangs every other worker
//! forever. A robust mutex is released by the kernel when its owner dies,
//! and the next locker is told (`EOWNERDEAD`) so it can repair what the dead
//! owner left half done before marking the mutex consistent again.

use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A `pthread_mutex_t` at a fixed place in shared memory, guarding a range
/// of bytes of the same mapping. Made by
/// [`SharedMemory::new_mutex`](super::shm::SharedMemory::new_mutex) or
/// [`attach_mutex`](super::shm::SharedMemory::attach_mutex).
#[derive(Debug)]
pub struct RobustMutex {
    mutex: NonNull<libc::pthread_mutex_t>,
    bytes: NonNull<[u8]>,
}

// SAFETY: the pthread mutex is designed to be used from any thread (and
// process); both pointers target a mapping that is never unmapped, and the
// bytes are only reached through a `Guard`, that is holding the mutex.
unsafe impl Send for RobustMutex {}
// SAFETY: as above.
unsafe impl Sync for RobustMutex {}

/// Bytes a mutex takes in the shared region.
pub const MUTEX_SIZE: usize = std::mem::size_of::<libc::pthread_mutex_t>();

/// What acquiring the lock revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The usual case.
    Clean,
    /// The previous owner died holding the lock; what it guarded may be
    /// half updated.
    PreviousOwnerDied,
}

/// The lock, held: the guarded bytes, and the lock released on drop.
/// Not `Send`: a pthread mutex is unlocked by the thread that locked it.
#[derive(Debug)]
pub struct Guard<'a> {
    lock: &'a RobustMutex,
    acquired: Acquired,
    _same_thread: PhantomData<*const ()>,
}

impl RobustMutex {
    /// Formats a robust, process-shared mutex at `mutex`.
    ///
    /// # Safety
    /// `mutex` must be aligned and writable, `bytes` readable and writable,
    /// both in a mapping that is never unmapped, and handed to no one else;
    /// no process may be using a mutex at `mutex` yet.
    pub(super) unsafe fn init(
        mutex: NonNull<libc::pthread_mutex_t>,
        bytes: NonNull<[u8]>,
    ) -> io::Result<RobustMutex> {
        // SAFETY: attr is plain data initialised by pthread_mutexattr_init;
        // `mutex` is valid per this function's contract.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let configured = check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| check(libc::pthread_mutex_init(mutex.as_ptr(), &attr)));
            libc::pthread_mutexattr_destroy(&mut attr);
            configured?;
        }
        Ok(RobustMutex { mutex, bytes })
    }

    /// A handle on a mutex another process formatted at `mutex`.
    ///
    /// # Safety
    /// As for [`RobustMutex::init`], except that the mutex is formatted
    /// already (by the process that created the mapping).
    pub(super) unsafe fn attach(
        mutex: NonNull<libc::pthread_mutex_t>,
        bytes: NonNull<[u8]>,
    ) -> RobustMutex {
        RobustMutex { mutex, bytes }
    }

    /// Blocks until the lock is held; the guard releases it.
    ///
    /// Waits in slices of [`RECHECK`]: when an owner is killed, the kernel
    /// marks the lock and should wake a waiter, but a waiter has been seen
    /// here sleeping on through it (several processes contending while one
    /// was SIGKILLed). Waking up now and then to look again turns such a
    /// missed wake-up into a short delay instead of a hang.
    pub fn lock(&self) -> io::Result<Guard<'_>> {
        loop {
            let deadline = deadline_after(RECHECK);
            // SAFETY: `self.mutex` points to a formatted mutex (constructors'
            // contracts); `deadline` is a live timespec.
            let acquired =
                match unsafe { libc::pthread_mutex_timedlock(self.mutex.as_ptr(), &deadline) } {
                    0 => Acquired::Clean,
                    libc::EOWNERDEAD => {
                        // From here on the guard unlocks, whatever happens next.
                        let guard = self.guard(Acquired::PreviousOwnerDied);
                        // SAFETY: we hold the lock; this marks it usable again.
                        check(unsafe { libc::pthread_mutex_consistent(self.mutex.as_ptr()) })?;
                        return Ok(guard);
                    }
                    libc::ETIMEDOUT => continue,
                    error => return Err(io::Error::from_raw_os_error(error)),
                };
            return Ok(self.guard(acquired));
        }
    }

    fn guard(&self, acquired: Acquired) -> Guard<'_> {
        Guard {
            lock: self,
            acquired,
            _same_thread: PhantomData,
        }
    }
}

impl Guard<'_> {
    /// Whether the previous owner died holding the lock.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }
}

impl std::ops::Deref for Guard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the guarded bytes are in a mapping that is never unmapped
        // and reached only through a guard, of which one exists at a time in
        // all processes (the mutex is held).
        unsafe { self.lock.bytes.as_ref() }
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { &mut *self.lock.bytes.as_ptr() }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: a guard exists only while this thread holds the lock (it
        // is not Send), and is dropped once.
        unsafe {
            libc::pthread_mutex_unlock(self.lock.mutex.as_ptr());
        }
    }
}

/// How long a waiter sleeps before looking at the lock again.
const RECHECK: Duration = Duration::from_millis(200);

/// `CLOCK_REALTIME` now plus `wait`, as `pthread_mutex_timedlock` wants it.
fn deadline_after(wait: Duration) -> libc::timespec {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + wait;
    libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: at.subsec_nanos() as _,
    }
}

fn check(code: libc::c_int) -> io::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::shm::SharedMemory;

    #[test]
    fn a_dead_owner_releases_the_lock_and_is_reported() {
        let memory = SharedMemory::create("cachet-lock-test", 4096).unwrap();
        let lock: &'static RobustMutex = Box::leak(Box::new(memory.new_mutex(0, 64..128).unwrap()));
        {
            let mut guard = lock.lock().unwrap();
            assert_eq!(guard.acquired(), Acquired::Clean);
            assert_eq!(guard.len(), 64);
            guard[0] = 7;
        }

        // A thread that exits holding a robust mutex counts as a dead owner,
        // just like a killed process.
        std::thread::spawn(move || {
            let guard = lock.lock().unwrap();
            assert_eq!(guard.acquired(), Acquired::Clean);
            std::mem::forget(guard);
        })
        .join()
        .unwrap();
        let guard = lock.lock().unwrap();
        assert_eq!(guard.acquired(), Acquired::PreviousOwnerDied);
        assert_eq!(guard[0], 7, "the bytes survive their owner");
        drop(guard);
        assert_eq!(lock.lock().unwrap().acquired(), Acquired::Clean);
    }
}
