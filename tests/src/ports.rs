//! Loopback ports whose state a test controls.
//!
//! Everything that can bind port 0 does, and reports what it got. Two
//! cases cannot: an address where nothing may answer, and a cluster whose
//! nodes must be given each other's sync addresses before any of them
//! starts. A port picked free and released is free only until someone
//! else binds it (other tests, other programs on the machine), so:
//!
//! - [`Refusing`] keeps its port bound, without listening, for as long as
//!   it lives: connections to it are refused and nothing else can take it;
//! - [`on_free_udp_ports`] starts the nodes on ports that were free a
//!   moment ago and, should one of them have been taken meanwhile, starts
//!   everything again on fresh ones.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Socket, Type};

use crate::NotReady;

/// A TCP address on loopback that refuses every connection: bound, never
/// listening.
#[derive(Debug)]
pub struct Refusing {
    addr: SocketAddr,
    _socket: Socket,
}

impl Refusing {
    pub fn new() -> Refusing {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket
            .bind(&any_port.into())
            .expect("binding a loopback port");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .expect("the bound address");
        Refusing {
            addr,
            _socket: socket,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for Refusing {
    fn default() -> Self {
        Refusing::new()
    }
}

/// A TCP port on loopback that was free a moment ago, for a server that
/// takes its port on the command line (and may find it taken: retry).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Whether TCP `port` on loopback is free now.
pub fn tcp_port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A UDP port on loopback that was free a moment ago.
pub fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("binding a throwaway UDP port")
}

/// How many times [`on_free_udp_ports`] draws fresh ports.
const ATTEMPTS: usize = 5;

/// Runs `start` with `count` UDP addresses that were free a moment ago;
/// when it fails because one of them was taken meanwhile (whatever it
/// started is dropped, hence stopped, with its result), runs it again with
/// fresh ones. Any other failure panics.
pub fn on_free_udp_ports<T>(
    count: usize,
    mut start: impl FnMut(&[SocketAddr]) -> Result<T, NotReady>,
) -> T {
    let mut taken = Vec::new();
    for _ in 0..ATTEMPTS {
        let addrs: Vec<SocketAddr> = (0..count).map(|_| free_udp()).collect();
        match start(&addrs) {
            Ok(started) => return started,
            Err(error) if error.address_in_use() => taken.push(error),
            Err(error) => panic!("{error}"),
        }
    }
    panic!(
        "{ATTEMPTS} sets of free UDP ports were each taken before the routers bound them; \
         the last failure: {}",
        taken.last().expect("at least one attempt")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusing_address_refuses_and_stays_taken() {
        let refusing = Refusing::new();
        let error = std::net::TcpStream::connect(refusing.addr()).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(std::net::TcpListener::bind(refusing.addr()).is_err());
    }

    #[test]
    fn taken_ports_are_drawn_again() {
        let mut attempts = 0;
        let got = on_free_udp_ports(2, |addrs| {
            attempts += 1;
            assert_eq!(addrs.len(), 2);
            if attempts < 3 {
                return Err(NotReady {
                    args: Vec::new(),
                    status: None,
                    log: "cachet: error: option `cache-udp-server` = `127.0.0.1:9`: cannot listen: Address already in use (os error 98)".into(),
                });
            }
            Ok(addrs.to_vec())
        });
        assert_eq!((attempts, got.len()), (3, 2));
    }
}
