//! HAProxy (Debian's `haproxy`) as the TCP balancer of the seed's Setup 2:
//! `mode tcp` frontends on free loopback ports, each balancing round-robin
//! over its servers, with or without the PROXY protocol header.
//!
//! ```no_run
//! # use cachet_tests::haproxy::{Frontend, Haproxy, SendProxy};
//! # let router: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
//! let balancer = Haproxy::tcp(&[Frontend {
//!     servers: &[router],
//!     send_proxy: SendProxy::V2,
//!     check: false,
//! }]);
//! // connect to balancer.frontends[0]
//! ```

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long HAProxy may take to listen on a loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts tried before giving up: a free port picked for HAProxy can be
/// taken by another process before HAProxy binds it.
const STARTS: usize = 3;

/// Whether HAProxy puts a PROXY protocol header before the client's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendProxy {
    No,
    /// `send-proxy`: the text header.
    V1,
    /// `send-proxy-v2`: the binary header.
    V2,
}

impl SendProxy {
    fn keyword(self) -> &'static str {
        match self {
            SendProxy::No => "",
            SendProxy::V1 => " send-proxy",
            SendProxy::V2 => " send-proxy-v2",
        }
    }
}

/// One `mode tcp` frontend and the servers it balances over.
#[derive(Clone, Copy, Debug)]
pub struct Frontend<'a> {
    pub servers: &'a [SocketAddr],
    pub send_proxy: SendProxy,
    /// Health-check the servers (HAProxy's `check`: a TCP connection every
    /// 2 s, with a PROXY header if the servers get one: v2 `LOCAL`).
    pub check: bool,
}

/// A running HAProxy, killed when dropped.
pub struct Haproxy {
    child: Child,
    /// Where each frontend listens, in the order given.
    pub frontends: Vec<SocketAddr>,
    log: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy with `frontends` and waits until they accept.
    /// Panics naming the Debian package when HAProxy is not installed.
    pub fn tcp(frontends: &[Frontend<'_>]) -> Haproxy {
        crate::tools::require("haproxy", &["-v"], "haproxy");
        let mut failures = String::new();
        for _ in 0..STARTS {
            match Haproxy::try_start(frontends) {
                Ok(haproxy) => return haproxy,
                Err(failure) => failures.push_str(&failure),
            }
        }
        panic!("HAProxy did not start in {STARTS} tries:\n{failures}");
    }

    fn try_start(frontends: &[Frontend<'_>]) -> Result<Haproxy, String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // One port per frontend, and one more for a listener that only
        // says HAProxy is up. HAProxy binds in the order of the file, so
        // once the last one accepts, every frontend does; the frontends
        // themselves are never probed, which would send the servers
        // connections (and PROXY headers) no test asked for.
        let addrs: Vec<SocketAddr> = (0..=frontends.len()).map(|_| free_port()).collect();
        let (ready, addrs) = addrs.split_last().expect("at least the readiness port");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, configuration(frontends, addrs, *ready))
            .expect("writing haproxy.cfg");

        let mut child = Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting haproxy");
        let log = Arc::new(Mutex::new(String::new()));
        for output in [
            Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let log = Arc::clone(&log);
            // Keeps reading for HAProxy's whole life so its pipes never fill.
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let mut haproxy = Haproxy {
            child,
            frontends: addrs.to_vec(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if TcpStream::connect(ready).is_ok() {
                return Ok(haproxy);
            }
            if let Some(status) = haproxy.child.try_wait().expect("waiting for haproxy") {
                return Err(format!("haproxy exited ({status}):\n{}", haproxy.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "haproxy did not listen within {STARTUP_TIMEOUT:?}:\n{}",
                    haproxy.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What HAProxy wrote so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding a throwaway port")
}

/// haproxy.cfg: each frontend on its address, then the readiness listener,
/// which refuses every connection it takes.
fn configuration(frontends: &[Frontend<'_>], addrs: &[SocketAddr], ready: SocketAddr) -> String {
    let mut text = String::from(
        "global\n    maxconn 1024\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    \
         timeout client 60s\n    timeout server 60s\n\n",
    );
    for (i, (frontend, addr)) in frontends.iter().zip(addrs).enumerate() {
        let _ = write!(
            text,
            "frontend f{i}\n    bind {addr}\n    default_backend b{i}\n\n\
             backend b{i}\n    balance roundrobin\n"
        );
        for (j, server) in frontend.servers.iter().enumerate() {
            let check = if frontend.check { " check" } else { "" };
            let _ = writeln!(
                text,
                "    server s{j} {server}{}{check}",
                frontend.send_proxy.keyword()
            );
        }
        text.push('\n');
    }
    let _ = write!(
        text,
        "frontend ready\n    bind {ready}\n    tcp-request connection reject\n"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names_every_server_and_header() {
        let a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        let text = configuration(
            &[
                Frontend {
                    servers: &[a, b],
                    send_proxy: SendProxy::V2,
                    check: false,
                },
                Frontend {
                    servers: &[a],
                    send_proxy: SendProxy::V1,
                    check: true,
                },
            ],
            &[
                "127.0.0.1:2001".parse().unwrap(),
                "127.0.0.1:2002".parse().unwrap(),
            ],
            "127.0.0.1:2003".parse().unwrap(),
        );
        for line in [
            "bind 127.0.0.1:2001",
            "server s0 127.0.0.1:1001 send-proxy-v2\n",
            "server s1 127.0.0.1:1002 send-proxy-v2\n",
            "server s0 127.0.0.1:1001 send-proxy check\n",
            "bind 127.0.0.1:2003\n    tcp-request connection reject",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
