//! The socket options socket2 does not offer.

use std::io;
use std::os::fd::AsRawFd;

/// Sets the receive buffer of `socket` to `bytes`: beyond the system's
/// limit when privileged (`SO_RCVBUFFORCE`), else up to it (`SO_RCVBUF`).
pub fn force_receive_buffer(socket: &impl AsRawFd, bytes: libc::c_int) -> io::Result<()> {
    set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
        .or_else(|_| set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes))
}

/// Asks the kernel to queue a connection for `accept` only once its first
/// bytes arrived, waiting up to `seconds` for them (`TCP_DEFER_ACCEPT`).
pub fn defer_accept(socket: &impl AsRawFd, seconds: libc::c_int) -> io::Result<()> {
    set_int(socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, seconds)
}

/// The `TCP_DEFER_ACCEPT` hold of a listening socket, in seconds (0: none).
#[cfg(test)]
pub fn deferred_accept(socket: &impl AsRawFd) -> io::Result<libc::c_int> {
    get(socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT)
}

/// The kernel's account of a TCP connection (`TCP_INFO`): what it sent,
/// what it holds back, what it received. For tests, here and end to end
/// (`tests/`), of how the router's writes become segments.
pub fn tcp_info(socket: &impl AsRawFd) -> io::Result<libc::tcp_info> {
    get(socket, libc::IPPROTO_TCP, libc::TCP_INFO)
}

/// A socket option's value: plain integers, for which all zeroes is a
/// value (what `get` starts from).
///
/// # Safety
/// An implementor must be valid when all its bytes are zero.
unsafe trait OptionValue: Copy {}

// SAFETY: an integer.
unsafe impl OptionValue for libc::c_int {}
// SAFETY: a C struct of integers.
unsafe impl OptionValue for libc::tcp_info {}

fn get<T: OptionValue>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    option: libc::c_int,
) -> io::Result<T> {
    // SAFETY: all zeroes is a value of any `OptionValue` (its contract).
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live local of
    // that size, and the length back into another; the descriptor is the
    // socket's own, open while `socket` is borrowed.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    } == 0;
    succeeded(done).map(|()| value)
}

fn set_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from a live local for the length
    // given; the descriptor is the socket's own, open while `socket` is
    // borrowed.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    succeeded(done)
}

/// A system call's outcome: the error it left in `errno` when it failed.
fn succeeded(done: bool) -> io::Result<()> {
    if done {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
