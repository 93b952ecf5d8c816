//! Idle HTTP/1.1 connections to a backend, kept for the next request.
//!
//! Opening a TCP connection per proxied request costs a handshake with the
//! backend and a socket in TIME_WAIT afterwards; over keep-alive client
//! connections that cost dominated. A connection goes back to its
//! backend's idle list once hyper reports it ready for another request
//! (the response body was read to its end), and the next request to that
//! backend takes the most recently parked one. Connections the backend
//! closed are noticed by hyper's connection task and skipped; one closed
//! at the very moment it is taken is caught by `try_send_request`, which
//! hands the unsent request back (see `http_backend`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::limits;

/// A backend's idle connections, newest last.
#[derive(Debug, Default)]
pub struct IdleConnections {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
}

impl IdleConnections {
    /// The newest idle connection still open and young enough, if any.
    /// Older ones are dropped on the way (closing them).
    pub fn take(&self) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        idle.retain(|c| {
            !c.sender.is_closed() && now.duration_since(c.since) < limits::BACKEND_IDLE_TIMEOUT
        });
        idle.pop().map(|c| c.sender)
    }

    /// Connections parked now (some may have closed since).
    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Parks `sender` once its connection can take another request: after
    /// the response being streamed now has been read to its end. A
    /// connection that fails or closes meanwhile is dropped.
    pub fn park_when_ready(self: &Arc<Self>, mut sender: SendRequest<Incoming>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                this.park(sender);
            }
        });
    }

    fn park(&self, sender: SendRequest<Incoming>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < limits::BACKEND_IDLE_PER_PROCESS {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}
