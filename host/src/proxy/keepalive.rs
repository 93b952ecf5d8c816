//! Idle HTTP/1.1 connections to a backend, kept for the next request.
//!
//! Opening a TCP connection per proxied request costs a handshake with the
//! backend and a socket in TIME_WAIT afterwards; over keep-alive client
//! connections that cost dominated. A connection goes back to its
//! backend's idle list the moment its response body has been read to its
//! end ([`super::response_body`]), or after an upload once the request
//! body's sender is done too ([`super::backend_stream`]), and the next
//! request to that backend takes the most recently parked one.
//!
//! A parked connection has no task watching it. Whether the backend closed
//! it meanwhile is asked when it is taken: a closed connection is readable
//! (end of stream), and tokio knows a socket's readiness from epoll, so
//! the check on a live connection costs no system call. One closed at the
//! very moment it is taken is caught by `http_backend`, which retries an
//! idempotent request on a new connection.

use std::io;
use std::sync::Mutex;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::limits;

/// A backend's idle connections, newest last.
#[derive(Debug, Default)]
pub struct IdleConnections {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

impl IdleConnections {
    /// The newest idle connection still open and young enough, if any.
    /// Older ones are dropped on the way (closing them).
    pub fn take(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        idle.retain(|c| now.duration_since(c.since) < limits::BACKEND_IDLE_TIMEOUT);
        while let Some(Idle { stream, .. }) = idle.pop() {
            if still_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Connections parked now (some may have closed since).
    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Parks `stream`, which has no request on it, for the next one; past
    /// the limit it is closed instead.
    pub fn park(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < limits::BACKEND_IDLE_PER_PROCESS {
            idle.push(Idle {
                stream,
                since: Instant::now(),
            });
        }
    }
}

/// Whether an idle connection can take a request: the backend has neither
/// closed it nor sent anything unasked (either makes it unusable).
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    match stream.try_read(&mut probe) {
        Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

/// Both ends of a loopback TCP connection, for tests of what goes on one.
#[cfg(test)]
pub(super) async fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_handed_out() {
        let idle = IdleConnections::default();
        let (open, _open_server) = connected_pair().await;
        let (closed, closed_server) = connected_pair().await;
        drop(closed_server);
        // The end of stream reaches the socket's readiness once the runtime
        // has polled epoll: wait for it, as a taker later would find it.
        tokio::time::timeout(std::time::Duration::from_secs(10), closed.readable())
            .await
            .expect("the close is seen")
            .unwrap();
        idle.park(open);
        idle.park(closed);
        let taken = idle.take().expect("the open connection");
        assert_eq!(idle.len(), 0, "the closed one was dropped on the way");
        assert!(still_open(&taken));
    }
}
