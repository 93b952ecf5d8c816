//! Binding the listening sockets: every one the router listens on (https,
//! stats, `cache-udp-server`) is bound here, and only here.
//!
//! Sockets are bound before any runtime or worker exists, as plain std
//! listeners, so that a master process can bind once and hand them to its
//! workers. Port 0 is allowed; the bound addresses are announced on stderr
//! in a fixed form (see [`Addresses::announce_ready`]) for scripts and
//! tests, once the router serves.
//!
//! By default a master's workers share each https socket: a worker that is
//! stuck (stopped, or busy in a long computation) leaves new connections
//! to the others. With `reuse-port`, each worker gets its own socket for
//! every https address, all bound with `SO_REUSEPORT`, and the kernel
//! spreads new connections over them: no worker wakes for a connection
//! another takes (on a shared socket every worker's event loop wakes and
//! all but one find nothing to accept), at the price of a stuck worker's
//! share waiting for it. The master keeps every socket open, so a dead
//! worker's queue of pending connections is served by its replacement.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{Context, Result};

use crate::config::Config;

/// Every socket the router listens on, in configuration order.
#[derive(Debug)]
pub struct Listeners {
    pub https: Vec<TcpListener>,
    pub stats: Option<TcpListener>,
    pub stats_http: Option<TcpListener>,
    /// `cache-udp-server`, when the router replicates sessions.
    pub sync: Option<UdpSocket>,
}

impl Listeners {
    /// Binds every configured socket; https sockets with `SO_REUSEPORT`
    /// when `per_worker`, so that [`Listeners::https_for_worker`] can add
    /// more to each.
    pub fn bind(config: &Config, per_worker: bool) -> Result<Self> {
        Ok(Self {
            https: config
                .https
                .iter()
                .map(|socket| bind("https", socket.addr, ClientFirst, per_worker))
                .collect::<Result<_>>()?,
            stats: config
                .stats
                .map(|addr| bind("stats", addr, ServerFirst, false))
                .transpose()?,
            stats_http: config
                .stats_http
                .map(|addr| bind("stats-http", addr, ClientFirst, false))
                .transpose()?,
            // The configuration accepts `cache-udp-server` only with a
            // cluster key: given, it replicates.
            sync: config.cluster.udp_server.map(bind_udp).transpose()?,
        })
    }
}

impl Listeners {
    /// The https sockets of worker `id` (from 1): worker 1 serves the
    /// sockets bound first, every other worker new ones on the same
    /// addresses (ports chosen with port 0 included), which needs the first
    /// ones bound with `per_worker`.
    pub fn https_for_worker(&self, id: usize) -> Result<Vec<TcpListener>> {
        self.https
            .iter()
            .map(|first| {
                if id == 1 {
                    return first.try_clone().context("sharing an https socket");
                }
                let addr = first.local_addr()?;
                bind("https", addr, ClientFirst, true)
            })
            .collect()
    }
}

/// Connections waiting to be accepted, per socket.
const BACKLOG: i32 = 1024;

/// Who speaks first on a listener's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirstBytes {
    /// The client: a TLS ClientHello (or a PROXY header), an HTTP request.
    ClientFirst,
    /// The server: the uWSGI stats socket writes its JSON on connect.
    ServerFirst,
}
use FirstBytes::{ClientFirst, ServerFirst};

/// How long the kernel holds a connection whose client has sent nothing
/// before queueing it for `accept` all the same, in seconds. nginx's
/// `deferred` uses 1 too: a client that waits for the server (which no
/// TLS client does) is served a second late, not refused.
const DEFER_ACCEPT_SECS: libc::c_int = 1;

fn bind(
    option: &str,
    addr: SocketAddr,
    first: FirstBytes,
    reuse_port: bool,
) -> Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let cannot = || format!("option `{option}` = `{addr}`: cannot listen");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).with_context(cannot)?;
    // As std's own bind does: a restart need not wait for old connections
    // in TIME_WAIT.
    socket.set_reuse_address(true).with_context(cannot)?;
    if reuse_port {
        socket.set_reuse_port(true).with_context(cannot)?;
    }
    // Accepted sockets inherit TCP_NODELAY from the listening one on
    // Linux: set here once, it costs no system call per connection.
    // Small responses and handshake flights must not wait for an ACK.
    socket.set_tcp_nodelay(true).with_context(cannot)?;
    // A connection is handed to a worker with its first bytes already
    // there: the worker wakes once for it instead of twice (accept, then
    // the ClientHello), and never registers a socket it cannot yet read.
    // Some 4% of the router's CPU per resumed handshake (docs/BENCH.md).
    if first == ClientFirst {
        crate::sys::socket::defer_accept(&socket, DEFER_ACCEPT_SECS).with_context(cannot)?;
    }
    socket.bind(&addr.into()).with_context(cannot)?;
    socket.listen(BACKLOG).with_context(cannot)?;
    // tokio requires non-blocking sockets.
    socket
        .set_nonblocking(true)
        .with_context(|| format!("option `{option}` = `{addr}`"))?;
    Ok(socket.into())
}

/// Receive buffer asked for on `cache-udp-server`: bursts (bootstrap
/// answers from several peers, many workers pushing at once) must not
/// overflow the kernel's default of about 200 KB.
const RECEIVE_BUFFER: libc::c_int = 8 << 20;

/// Binds `cache-udp-server`. A multicast group address is joined on every
/// interface, with the socket bound to the group's port.
fn bind_udp(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = if addr.ip().is_multicast() {
        let any: IpAddr = if addr.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u16; 8])
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, addr.port()))
            .with_context(|| format!("option `cache-udp-server` = `{addr}`: cannot listen"))?;
        match addr.ip() {
            IpAddr::V4(group) => socket.join_multicast_v4(&group, &[0, 0, 0, 0].into()),
            IpAddr::V6(group) => socket.join_multicast_v6(&group, 0),
        }
        .with_context(|| format!("option `cache-udp-server` = `{addr}`: cannot join the group"))?;
        socket
    } else {
        UdpSocket::bind(addr)
            .with_context(|| format!("option `cache-udp-server` = `{addr}`: cannot listen"))?
    };
    socket.set_nonblocking(true)?;
    enlarge_receive_buffer(&socket);
    Ok(socket)
}

/// Asks for [`RECEIVE_BUFFER`] bytes of receive buffer: beyond the
/// system's limit when privileged, else up to it. A smaller buffer only
/// drops more datagrams in a burst, which replication tolerates.
fn enlarge_receive_buffer(socket: &UdpSocket) {
    if crate::sys::socket::force_receive_buffer(socket, RECEIVE_BUFFER).is_err() {
        tracing::warn!("cache-udp-server: could not enlarge the receive buffer");
    }
}

/// Where the router listens, kept once the sockets went to their tasks.
#[derive(Debug, Clone)]
pub struct Addresses(Vec<(&'static str, SocketAddr)>);

impl Listeners {
    /// The bound addresses, in the order they are announced.
    pub fn addresses(&self) -> Result<Addresses> {
        let mut all = Vec::new();
        if let Some(sync) = &self.sync {
            all.push(("sync", sync.local_addr()?));
        }
        for (kind, listener) in [("stats", &self.stats), ("stats-http", &self.stats_http)] {
            if let Some(listener) = listener {
                all.push((kind, listener.local_addr()?));
            }
        }
        for listener in &self.https {
            all.push(("https", listener.local_addr()?));
        }
        Ok(Addresses(all))
    }
}

impl Addresses {
    /// Prints `cachet: listening KIND ADDR` for every socket, then
    /// `cachet: ready`, on stderr: once the router serves. The format is
    /// an interface: tests and scripts parse it to learn ports chosen with
    /// port 0, and wait for `ready`.
    pub fn announce_ready(&self) {
        for (kind, addr) in &self.0 {
            crate::say!("cachet: listening {kind} {addr}");
        }
        crate::say!("cachet: ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    fn https() -> TcpListener {
        bind("https", "127.0.0.1:0".parse().unwrap(), ClientFirst, false).unwrap()
    }

    #[test]
    fn accepted_connections_come_with_nodelay() {
        let listener = https();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"\x16").unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not inherited");
    }

    /// A connection that has sent nothing is not handed over yet; its
    /// first bytes make it acceptable. The kernel holds a silent one for
    /// about a second (until it sends its SYN-ACK again), so the first
    /// check means something only when it comes sooner: on a machine too
    /// slow for that it is skipped, not failed.
    #[test]
    fn https_connections_are_accepted_once_the_client_has_spoken() {
        let listener = https();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let started = std::time::Instant::now();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let early = listener.accept();
        if started.elapsed() < std::time::Duration::from_millis(500) {
            let error = early.expect_err("accepted before the client sent anything");
            assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock);
        }
        client.write_all(b"\x16").unwrap();
        listener.set_nonblocking(false).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        let mut first = [0u8; 1];
        std::io::Read::read_exact(&mut accepted, &mut first).unwrap();
        assert_eq!(first, *b"\x16");
    }

    #[test]
    fn only_sockets_whose_clients_speak_first_defer_accepting() {
        use crate::sys::socket::deferred_accept;
        assert!(deferred_accept(&https()).unwrap() > 0);
        let stats_http = bind(
            "stats-http",
            "127.0.0.1:0".parse().unwrap(),
            ClientFirst,
            false,
        );
        assert!(deferred_accept(&stats_http.unwrap()).unwrap() > 0);
        // The uWSGI stats server writes first: deferring would hold every
        // one of its clients.
        let stats = bind("stats", "127.0.0.1:0".parse().unwrap(), ServerFirst, false);
        assert_eq!(deferred_accept(&stats.unwrap()).unwrap(), 0);
    }
}
