//! The one socket option socket2 does not offer.

use std::io;
use std::os::fd::AsRawFd;

/// Sets the receive buffer of `socket` to `bytes`: beyond the system's
/// limit when privileged (`SO_RCVBUFFORCE`), else up to it (`SO_RCVBUF`).
pub fn force_receive_buffer(socket: &impl AsRawFd, bytes: libc::c_int) -> io::Result<()> {
    let mut last = io::Error::other("no option tried");
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads one c_int from a live local for the
        // length given; the descriptor is the socket's own, open while
        // `socket` is borrowed.
        let done = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if done {
            return Ok(());
        }
        last = io::Error::last_os_error();
    }
    Err(last)
}
