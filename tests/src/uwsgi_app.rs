//! A real uWSGI application server (Debian's `uwsgi-core` and
//! `uwsgi-plugin-python3`) running a WSGI application, as a uwsgi backend:
//! what users put behind the router, rather than the in-process
//! [`crate::backends`] that only report what they received.
//!
//! uWSGI binds `127.0.0.1:0` itself and logs the port it got, so no port
//! is picked and then raced for. It runs under its master with
//! `--no-orphans` (workers die with the master) and `--die-on-term`
//! (SIGTERM stops it instead of reloading it); dropping a [`UwsgiApp`]
//! kills the master.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tools;

/// How long uWSGI may take to load the application and start its workers
/// on a loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Listen backlog asked for: the router opens one connection per request,
/// so a burst of HTTP/2 streams is a burst of connections. uWSGI refuses
/// to start when this exceeds `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 1024;

/// The WSGI applications kept under `tests/apps/`.
pub fn app_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("apps")
        .join(file)
}

/// How to run uWSGI.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    pub wsgi_file: PathBuf,
    /// `--processes`.
    pub processes: u32,
    /// More uWSGI options, added as they are (`--cgi-mode`...).
    pub extra: &'a [&'a str],
    /// What uWSGI speaks on its socket.
    pub protocol: Protocol,
}

/// The protocol of uWSGI's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The uwsgi binary protocol (`--socket`), what uWSGI's own router
    /// speaks to its nodes.
    Uwsgi,
    /// HTTP/1.1 with keep-alive (`--http11-socket`).
    Http11,
}

impl Options<'_> {
    /// `wsgi_file` under two worker processes.
    pub fn new(wsgi_file: PathBuf) -> Self {
        Self {
            wsgi_file,
            processes: 2,
            extra: &[],
            protocol: Protocol::Uwsgi,
        }
    }
}

/// A running uWSGI, killed when dropped.
pub struct UwsgiApp {
    child: Child,
    pub addr: SocketAddr,
    protocol: Protocol,
    log: PathBuf,
    _dir: TempDir,
}

impl UwsgiApp {
    /// Starts uWSGI and waits until it has bound its socket and spawned
    /// every worker.
    pub fn start(options: &Options<'_>) -> UwsgiApp {
        tools::require("uwsgi", &["--version"], "uwsgi-core");
        assert!(
            options.wsgi_file.is_file(),
            "no WSGI application at {}",
            options.wsgi_file.display()
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("uwsgi.log");
        let child = Command::new("uwsgi")
            // Unknown options are errors, not warnings.
            .arg("--strict")
            .args(["--plugin", "python3"])
            .args([
                match options.protocol {
                    Protocol::Uwsgi => "--socket",
                    Protocol::Http11 => "--http11-socket",
                },
                "127.0.0.1:0",
            ])
            .arg("--wsgi-file")
            .arg(&options.wsgi_file)
            .arg("--need-app")
            .arg("--master")
            .args(["--processes", &options.processes.to_string()])
            .args(["--listen", &listen_backlog().to_string()])
            // The largest variables block the uwsgi protocol allows, as the
            // router may send (the default is 4 KiB).
            .args(["--buffer-size", "65535"])
            .args(["--die-on-term", "--no-orphans"])
            .arg("--logto")
            .arg(&log)
            .args(options.extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting uwsgi");
        let mut app = UwsgiApp {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            protocol: options.protocol,
            log,
            _dir: dir,
        };
        app.addr = app.wait_until_ready(options.processes);
        app
    }

    /// The router's `--http-to` value for this uWSGI.
    pub fn http_to(&self) -> String {
        match self.protocol {
            Protocol::Uwsgi => self.addr.to_string(),
            Protocol::Http11 => format!("http://{}", self.addr),
        }
    }

    /// Everything uWSGI logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until_ready(&mut self, processes: u32) -> SocketAddr {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let log = self.log();
            if log.contains("UNABLE to load uWSGI plugin") {
                panic!(
                    "uwsgi cannot load its python3 plugin (apt-get install \
                     uwsgi-plugin-python3):\n{log}"
                );
            }
            if let Some(addr) = bound_addr(&log) {
                // uWSGI listens before it logs the address, and loads the
                // application in the master before it forks the workers:
                // once every worker is there, requests are served.
                if log.matches("spawned uWSGI worker").count() >= processes as usize {
                    return addr;
                }
            }
            if let Some(status) = self.child.try_wait().expect("waiting for uwsgi") {
                panic!("uwsgi exited while starting ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "uwsgi was not ready within {STARTUP_TIMEOUT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for UwsgiApp {
    fn drop(&mut self) {
        // The workers follow the master (`--no-orphans`).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in uWSGI's `uwsgi socket 0 bound to TCP address
/// 127.0.0.1:PORT (port auto-assigned) fd 3` line.
fn bound_addr(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let rest = line.split_once("bound to TCP address ")?.1;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// [`LISTEN_BACKLOG`], or the kernel's limit when that is lower.
fn listen_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map_or(LISTEN_BACKLOG, |limit: u32| limit.min(LISTEN_BACKLOG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_auto_assigned_port() {
        let log = "thunder lock: disabled\n\
            uwsgi socket 0 bound to TCP address 127.0.0.1:34497 (port auto-assigned) fd 3\n";
        assert_eq!(bound_addr(log), Some("127.0.0.1:34497".parse().unwrap()));
        assert_eq!(bound_addr("uwsgi socket 0 bound to TCP address"), None);
    }
}
