//! A router whose wall clock is off: libfaketime (Debian's `faketime`)
//! preloaded into it and its workers, shifting `CLOCK_REALTIME` by a fixed
//! offset. The monotonic clock is left alone: the cache and every timer
//! run on it, and a real clock that disagrees with its peers' does not
//! jump either.

use std::path::PathBuf;

/// The environment that runs a program `offset` off the real time
/// (libfaketime's syntax: `+4s`, `-2s`). Panics, naming the Debian
/// package, when libfaketime is not installed.
pub fn skewed(offset: &str) -> Vec<(&'static str, String)> {
    let library = library().unwrap_or_else(|| {
        panic!(
            "libfaketime is not installed; the clock skew tests need it \
             (apt-get install faketime)"
        )
    });
    vec![
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME", offset.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        // The offset is read once: no file to re-read per call.
        ("FAKETIME_NO_CACHE", "0".to_owned()),
    ]
}

/// The multi-threaded libfaketime, wherever the architecture puts it.
fn library() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketimeMT.so.1"))
        .find(|path| path.is_file())
}

/// Removes what libfaketime leaves in `/dev/shm` for process `pid` when
/// that process is killed rather than exiting (its destructor removes them
/// at a normal exit): a semaphore and a shared memory object named after
/// the pid. Left there, they pile up, a pair per killed router, on a
/// machine that runs the tests again and again. Nothing to do for a
/// process that ran without libfaketime.
pub fn remove_leftovers(pid: u32) {
    for name in [
        format!("faketime_shm_{pid}"),
        format!("sem.faketime_sem_{pid}"),
    ] {
        let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(name));
    }
}
