//! systemd's service notification protocol (`sd_notify(3)`), for
//! `Type=notify` and `Type=notify-reload` units.
//!
//! systemd passes a datagram socket in `NOTIFY_SOCKET` (a path, or an
//! abstract name written `@name`); the service sends `KEY=VALUE` lines to it:
//! `READY=1` once it serves, `RELOADING=1` (with `MONOTONIC_USEC`) when a
//! SIGHUP reload starts and `READY=1` again when it is done, `STOPPING=1`
//! when it begins to shut down. Without `NOTIFY_SOCKET` every call does
//! nothing, so the router behaves the same outside systemd.
//!
//! Only the process systemd started (the master, or the lone router)
//! notifies: workers are started without `NOTIFY_SOCKET`, as systemd by
//! default listens to the main process only (`NotifyAccess=main`).
//!
//! Notification is best effort: a router that cannot reach systemd keeps
//! serving and logs why once per message.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd names its socket in.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// The router serves: every listener accepts.
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A SIGHUP reload begins; [`reloaded`] follows when it has been applied.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
        crate::clock::monotonic_micros()
    ));
}

/// A reload has finished, applied or refused (the router serves either way).
pub fn reloaded(applied: bool) {
    let status = if applied {
        "serving (configuration reloaded)"
    } else {
        "serving (reload failed: running configuration kept)"
    };
    send(&format!("READY=1\nSTATUS={status}"));
}

/// Shutdown has begun: no new connections, open ones drain.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining connections");
}

fn send(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return;
    };
    if let Err(error) = notify(&socket, state) {
        tracing::warn!(
            socket = %socket.to_string_lossy(),
            %error,
            "cannot notify systemd"
        );
    }
}

/// Sends `state` to the notification socket named `socket`.
pub fn notify(socket: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    let addr = notify_addr(socket)?;
    let sender = UnixDatagram::unbound()?;
    let sent = sender.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was truncated",
        ));
    }
    Ok(())
}

/// `NOTIFY_SOCKET` as an address: a filesystem path, or `@name` for the
/// abstract namespace (what systemd uses in containers).
fn notify_addr(socket: &std::ffi::OsStr) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET must be an absolute path or an abstract name starting with `@`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_sockets_receive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        notify(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("cachet-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        notify(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn relative_socket_names_are_refused() {
        let error = notify(std::ffi::OsStr::new("relative/path"), "READY=1").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
