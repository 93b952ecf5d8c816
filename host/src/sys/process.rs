//! Signals between the master and its workers, and a worker's tie to its
//! master's life.

use std::io;

/// Sends `signal` to process `pid`; nothing for pid 0 (which would mean
/// this whole process group).
pub fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid == 0 {
        return;
    }
    // SAFETY: kill(2) takes two numbers and touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Asks the kernel to send SIGTERM to this process when its parent dies.
pub fn terminate_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes
    // nothing but this process's own death signal.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets SIGHUP's disposition to ignore (inherited across `exec`).
pub fn ignore_hangups() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler
    // code and touches no memory.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}
