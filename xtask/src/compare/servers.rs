//! The routers under test and how each is configured.
//!
//! Every server gets the same certificate, the same backend, the same
//! number of workers and a session cache large enough for the whole run,
//! and keeps its backend connections alive. nginx and HAProxy get
//! `ssl_session_tickets off` / `no-tls-tickets`, so that resumption goes
//! through their shared session caches as it does in cachet (the design
//! under test); Debian's hitch is built without a shared cache, so it
//! resumes with OpenSSL's stateless tickets, whose key its workers inherit.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::certs::Certificate;
use crate::processes::{Processes, Ready};

/// Sessions every cache must hold: a run of full handshakes for the memory
/// figure makes 20000, with room to spare.
pub(crate) const CACHE_SESSIONS: usize = 25_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Cachet,
    Nginx,
    Haproxy,
    Hitch,
    Sozu,
}

pub(crate) const PEERS: [Kind; 4] = [Kind::Nginx, Kind::Haproxy, Kind::Hitch, Kind::Sozu];

/// The Sozu release compared, built by `cargo install` (it is not packaged
/// by Debian).
pub(crate) const SOZU_VERSION: &str = "2.3.3";

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Cachet => "cachet",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "HAProxy",
            Kind::Hitch => "hitch",
            Kind::Sozu => "Sozu",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Kind::Cachet => "cachet",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Hitch => "hitch",
            Kind::Sozu => "sozu",
        }
    }

    /// The Debian package that provides it (Sozu: the one its build needs).
    pub(crate) fn package(self) -> Option<&'static str> {
        match self {
            Kind::Cachet => None,
            Kind::Sozu => Some("protobuf-compiler"),
            Kind::Nginx => Some("nginx"),
            Kind::Haproxy => Some("haproxy"),
            Kind::Hitch => Some("hitch"),
        }
    }

    /// The installed version's first line, or `None` when not installed
    /// (and for cachet, which is built, not installed).
    pub(crate) fn version(self) -> Option<String> {
        let flag = match self {
            Kind::Cachet => return None,
            Kind::Nginx | Kind::Haproxy => "-v",
            Kind::Hitch | Kind::Sozu => "--version",
        };
        let output = Command::new(self.program()).arg(flag).output().ok()?;
        // nginx prints its version on stderr.
        let text = [output.stdout, output.stderr].concat();
        let text = String::from_utf8_lossy(&text);
        text.lines()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
    }
}

/// A started server.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub kind: Kind,
    /// Unique among the processes of the run.
    pub name: String,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// What a server is started with.
pub(crate) struct Setup<'a> {
    pub cachet: &'a Path,
    pub certificate: &'a Certificate,
    pub backend: SocketAddr,
    pub workers: usize,
    /// Where configuration files go; a directory of the run's own.
    pub scratch: &'a Path,
}

/// `cache-udp-pull-timeout` of the cluster nodes, in milliseconds.
const CLUSTER_PULL_TIMEOUT_MS: u32 = 50;

/// Replication settings for one cachet node of a cluster, and where it
/// serves its stats (for the pull figures).
pub(crate) struct ClusterNode<'a> {
    pub key_file: &'a Path,
    pub sync: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub stats: SocketAddr,
}

/// Starts `kind` as `name` on a free port.
pub(crate) fn start(
    processes: &mut Processes,
    kind: Kind,
    name: &str,
    setup: &Setup<'_>,
    cluster: Option<&ClusterNode<'_>>,
) -> Result<Server> {
    let addr = free_tcp_port()?;
    let dir = setup.scratch.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    let pid = match kind {
        Kind::Cachet => {
            let mut command = Command::new(setup.cachet);
            command.args(cachet_args(setup, addr, cluster));
            processes.start_cachet(name, command)?
        }
        Kind::Nginx => {
            let conf = write(&dir.join("nginx.conf"), &nginx_conf(setup, addr, &dir))?;
            let mut command = Command::new("nginx");
            command.arg("-p").arg(&dir).arg("-c").arg(conf);
            command.args(["-e", "stderr"]);
            processes.start(name, command, Ready::Accepts(addr))?
        }
        Kind::Haproxy => {
            let conf = write(&dir.join("haproxy.cfg"), &haproxy_conf(setup, addr))?;
            let mut command = Command::new("haproxy");
            command.arg("-f").arg(conf).arg("-db");
            processes.start(name, command, Ready::Accepts(addr))?
        }
        Kind::Hitch => {
            let mut command = Command::new("hitch");
            command
                .arg(format!("--frontend=[{}]:{}", addr.ip(), addr.port()))
                .arg(format!(
                    "--backend=[{}]:{}",
                    setup.backend.ip(),
                    setup.backend.port()
                ))
                .arg(format!("--workers={}", setup.workers))
                .arg("--alpn-protos=http/1.1")
                .arg("--log-level=1");
            // hitch refuses to run its workers as root; they only need the
            // certificate, which the master reads first.
            if is_root() {
                command.arg("--user=nobody");
            }
            command.arg(&setup.certificate.combined);
            processes.start(name, command, Ready::Accepts(addr))?
        }
        Kind::Sozu => {
            let conf = write(&dir.join("sozu.toml"), &sozu_conf(setup, addr, &dir))?;
            let mut command = Command::new("sozu");
            command.arg("start").arg("-c").arg(conf);
            processes.start(name, command, Ready::Accepts(addr))?
        }
    };
    Ok(Server {
        kind,
        name: name.to_owned(),
        addr,
        pid,
    })
}

pub(crate) fn cachet_args(
    setup: &Setup<'_>,
    addr: SocketAddr,
    cluster: Option<&ClusterNode<'_>>,
) -> Vec<String> {
    let cert = setup.certificate;
    let mut args = vec![
        "--https".to_owned(),
        format!("{addr},{},{}", cert.cert.display(), cert.key.display()),
        "--http-to".to_owned(),
        format!("http://{}", setup.backend),
        "--cache".to_owned(),
        CACHE_SESSIONS.to_string(),
        "--ssl-sessions-use-cache".to_owned(),
        "--ssl-sessions-timeout".to_owned(),
        "600".to_owned(),
    ];
    if setup.workers > 1 {
        args.extend([
            "--master".to_owned(),
            "--http-processes".to_owned(),
            setup.workers.to_string(),
        ]);
    }
    if let Some(node) = cluster {
        args.extend([
            "--cache-udp-server".to_owned(),
            node.sync.to_string(),
            "--cache-udp-key".to_owned(),
            node.key_file.display().to_string(),
        ]);
        for peer in &node.peers {
            args.extend(["--cache-udp-node".to_owned(), peer.to_string()]);
        }
        args.extend(["--stats".to_owned(), node.stats.to_string()]);
        // What a miss may wait for a peer's answer: ample on loopback,
        // where a pull is answered well under a millisecond.
        args.extend([
            "--cache-udp-pull-timeout".to_owned(),
            CLUSTER_PULL_TIMEOUT_MS.to_string(),
        ]);
    }
    args
}

fn nginx_conf(setup: &Setup<'_>, addr: SocketAddr, dir: &Path) -> String {
    let cert = setup.certificate;
    let mut conf = String::new();
    // As root, nginx's workers would switch to `nobody` and lose access to
    // the scratch directory.
    if is_root() {
        conf.push_str("user root;\n");
    }
    // About 4000 sessions fit in a megabyte of nginx's cache.
    let cache_mb = CACHE_SESSIONS.div_ceil(4000) * 2;
    writeln!(
        conf,
        "worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000;
    upstream backend {{
        server {backend};
        keepalive 64;
    }}
    server {{
        listen {addr} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:{cache_mb}m;
        ssl_session_timeout 10m;
        ssl_session_tickets off;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}",
        workers = setup.workers,
        dir = dir.display(),
        backend = setup.backend,
        cert = cert.cert.display(),
        key = cert.key.display(),
    )
    .expect("writing to a String");
    conf
}

fn haproxy_conf(setup: &Setup<'_>, addr: SocketAddr) -> String {
    format!(
        "global
    nbthread {workers}
    # HAProxy raises its descriptor limit to fit maxconn; keep it under
    # the usual hard limit.
    maxconn 4000
    tune.ssl.cachesize {sessions}
    tune.ssl.lifetime 600
    ssl-default-bind-options no-tls-tickets
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend https
    bind {addr} ssl crt {pem} alpn http/1.1
    default_backend app
backend app
    http-reuse always
    server app {backend}
",
        workers = setup.workers,
        sessions = CACHE_SESSIONS,
        pem = setup.certificate.combined.display(),
        backend = setup.backend,
    )
}

/// Sozu's defaults but for what the comparison fixes for every server:
/// workers, the one certificate, HTTP/1.1 by ALPN, the backend (kept
/// alive, as Sozu always does). Its workers are separate processes, each
/// with rustls' in-memory session store: no cache shared among them, the
/// reason a client resumes only when it lands on the worker that holds
/// its session.
fn sozu_conf(setup: &Setup<'_>, addr: SocketAddr, dir: &Path) -> String {
    let cert = setup.certificate;
    format!(
        r#"command_socket = "{dir}/sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = {workers}
worker_automatic_restart = false
max_connections = 4096
max_buffers = 8192

[[listeners]]
protocol = "https"
address = "{addr}"
tls_versions = ["TLS_V12", "TLS_V13"]
alpn_protocols = ["http/1.1"]

[clusters.app]
protocol = "http"
load_balancing = "ROUND_ROBIN"
frontends = [
  {{ address = "{addr}", hostname = "localhost", certificate = "{crt}", key = "{key}", certificate_chain = "{crt}" }},
]
backends = [ {{ address = "{backend}" }} ]
"#,
        dir = dir.display(),
        workers = setup.workers,
        crt = cert.cert.display(),
        key = cert.key.display(),
        backend = setup.backend,
    )
}

fn write(path: &Path, text: &str) -> Result<PathBuf> {
    std::fs::write(path, text).with_context(|| format!("{}", path.display()))?;
    Ok(path.to_owned())
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A loopback port free a moment ago (the servers bind it themselves).
pub(crate) fn free_tcp_port() -> Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free TCP port")
}

/// A loopback UDP port free a moment ago.
pub(crate) fn free_udp_port() -> Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .context("no free UDP port")
}
