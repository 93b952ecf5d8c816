//! The one backend every router under test forwards to: a tiny HTTP/1.1
//! server with keep-alive, std only, so that it costs the same whoever
//! calls it and is never the bottleneck of a comparison.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

const BODY: &str = "hello from the benchmark backend\n";

/// A running backend; it lives until the xtask process ends.
pub(crate) struct Backend {
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
}

impl Backend {
    /// Requests answered so far.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// Starts the backend on a free loopback port.
pub(crate) fn start() -> Result<Backend> {
    let listener = TcpListener::bind("127.0.0.1:0").context("backend")?;
    let addr = listener.local_addr().context("backend")?;
    let served = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let _ = serve(stream, &count);
            });
        }
    });
    Ok(Backend { addr, served })
}

/// Answers requests on one connection until the peer closes it or asks to.
fn serve(stream: TcpStream, served: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut line = String::new();
    loop {
        // Request line and headers; only the body length and the wish to
        // close matter.
        let mut length = 0usize;
        let mut close = false;
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            if first {
                close = header.ends_with("HTTP/1.0");
                first = false;
                continue;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        std::io::copy(&mut (&mut reader).take(length as u64), &mut std::io::sink())?;
        writer.write_all(response.as_bytes())?;
        served.fetch_add(1, Ordering::Relaxed);
        if close {
            return Ok(());
        }
    }
}
