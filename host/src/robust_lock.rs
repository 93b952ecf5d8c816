//! A process-shared, robust mutex living in shared memory.
//!
//! uWSGI guards its cache with a process-shared `pthread_rwlock`, which has
//! no robust form: a worker killed while holding it hangs every other worker
//! forever. A robust mutex is released by the kernel when its owner dies,
//! and the next locker is told (`EOWNERDEAD`) so it can repair what the dead
//! owner left half done before marking the mutex consistent again.

use std::io;

/// A `pthread_mutex_t` at a fixed place in shared memory.
#[derive(Debug)]
pub struct RobustMutex {
    mutex: *mut libc::pthread_mutex_t,
}

// SAFETY: the pthread mutex is designed to be used from any thread (and
// process); the pointer targets shared memory that outlives this handle.
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

impl RobustMutex {
    /// Initialises a mutex at `at`.
    ///
    /// # Safety
    /// `at` must point to `MUTEX_SIZE` writable bytes, suitably aligned, in
    /// memory that stays mapped as long as any handle to it is used, and no
    /// process may be using a mutex there.
    pub unsafe fn init(at: *mut u8) -> io::Result<RobustMutex> {
        let mutex = at.cast::<libc::pthread_mutex_t>();
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
            .and_then(|()| check(libc::pthread_mutex_init(mutex, &attr)));
            libc::pthread_mutexattr_destroy(&mut attr);
            configured?;
        }
        Ok(RobustMutex { mutex })
    }

    /// A handle on a mutex another process initialised at `at`.
    ///
    /// # Safety
    /// `at` must point to a mutex made by [`RobustMutex::init`] in memory
    /// that stays mapped as long as the handle is used.
    pub unsafe fn attach(at: *mut u8) -> RobustMutex {
        RobustMutex {
            mutex: at.cast::<libc::pthread_mutex_t>(),
        }
    }

    /// Blocks until the lock is held. The caller must call
    /// [`RobustMutex::unlock`] exactly once afterwards, from the same thread.
    ///
    /// Waits in slices of [`RECHECK`]: when an owner is killed, the kernel
    /// marks the lock and should wake a waiter, but a waiter has been seen
    /// here sleeping on through it (several processes contending while one
    /// was SIGKILLed). Waking up now and then to look again turns such a
    /// missed wake-up into a short delay instead of a hang.
    pub fn lock(&self) -> io::Result<Acquired> {
        loop {
            let deadline = deadline_after(RECHECK)?;
            // SAFETY: `self.mutex` points to an initialised mutex
            // (constructors' contracts); `deadline` is a live timespec.
            match unsafe { libc::pthread_mutex_timedlock(self.mutex, &deadline) } {
                0 => return Ok(Acquired::Clean),
                libc::EOWNERDEAD => {
                    // SAFETY: we hold the lock; this marks it usable again.
                    check(unsafe { libc::pthread_mutex_consistent(self.mutex) })?;
                    return Ok(Acquired::PreviousOwnerDied);
                }
                libc::ETIMEDOUT => continue,
                error => return Err(io::Error::from_raw_os_error(error)),
            }
        }
    }

    /// Releases the lock taken by [`RobustMutex::lock`].
    pub fn unlock(&self) {
        // SAFETY: called by the thread that holds the lock.
        unsafe {
            libc::pthread_mutex_unlock(self.mutex);
        }
    }
}

/// How long a waiter sleeps before looking at the lock again.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// `CLOCK_REALTIME` now plus `wait`, as `pthread_mutex_timedlock` wants it.
fn deadline_after(wait: std::time::Duration) -> io::Result<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a live local.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let nanos: i64 = now.tv_nsec + i64::from(wait.subsec_nanos());
    Ok(libc::timespec {
        tv_sec: now.tv_sec
            + wait.as_secs() as libc::time_t
            + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as _,
    })
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
    use crate::shm::SharedMemory;

    #[test]
    fn a_dead_owner_releases_the_lock_and_is_reported() {
        let memory = SharedMemory::create("cachet-lock-test", 4096).unwrap();
        // SAFETY: the mapping is page aligned, 4096 bytes, and outlives the
        // handles below.
        let lock = unsafe { RobustMutex::init(memory.as_ptr()) }.unwrap();
        assert_eq!(lock.lock().unwrap(), Acquired::Clean);
        lock.unlock();

        // A thread that exits holding a robust mutex counts as a dead owner,
        // just like a killed process.
        let ptr = memory.as_ptr() as usize;
        std::thread::spawn(move || {
            // SAFETY: same mapping, still alive (joined below).
            let lock = unsafe { RobustMutex::attach(ptr as *mut u8) };
            assert_eq!(lock.lock().unwrap(), Acquired::Clean);
        })
        .join()
        .unwrap();
        assert_eq!(lock.lock().unwrap(), Acquired::PreviousOwnerDied);
        lock.unlock();
        assert_eq!(lock.lock().unwrap(), Acquired::Clean);
        lock.unlock();
    }
}
