//! One timer always armed in a serving process, so that arming a
//! connection's deadlines costs no system call.
//!
//! tokio's timer wheel wakes its own I/O driver (an `eventfd` write, and
//! then an `epoll_wait` that returns at once) whenever a new timer is due
//! before the earliest one pending when the driver last went to sleep, or
//! when none was pending. A connection arms several (the handshake
//! deadline, hyper's header read timeout, the idle check); with short
//! connections and nothing else pending, every connection found the wheel
//! empty and paid that wake-up, one to two per connection: measured with
//! `strace -f -c` on resumed TLS 1.2 handshakes, 14 system calls per
//! connection where 11 to 12 do the work. With a timer that never lets the
//! wheel empty and is always due sooner than those deadlines (the shortest,
//! the handshake's, is 10 s), registering them wakes nothing.

use std::time::Duration;

use crate::shutdown::Shutdown;

/// Well under every per-connection deadline; once a second costs nothing.
const PERIOD: Duration = Duration::from_secs(1);

/// Keeps a timer armed until `shutdown`.
pub fn spawn(mut shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.requested() => return,
            }
        }
    });
}
