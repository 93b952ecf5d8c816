//! What rustls' side of a handshake costs the router, apart from sockets,
//! the kernel and the runtime: the server configuration a worker serves
//! (the router's cipher order and key schedule, sessions in the shared
//! cache) against the load generator's own client configuration, the two
//! connections talking through memory.
//!
//! Only the server's calls are timed (making its connection, reading and
//! processing the client's flights, writing its own, dropping it), so each
//! figure is the least user-space time one handshake of that kind can cost
//! a worker. `cargo xtask bench` reports the whole of it per handshake
//! (server CPU, and the kernel's part of it) for comparison: what lies
//! between this figure plus the kernel's part and the router's total is
//! the router's own work and the runtime's (docs/BENCH.md).

use std::ffi::OsString;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachet::config::{Command, Config};
use criterion::{criterion_group, criterion_main, Criterion};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};

/// The router's configuration for a socket with a self-signed ECDSA P-256
/// certificate (rcgen's default) and sessions in the cache, as the
/// comparison of `cargo xtask bench` runs it.
fn server_config() -> Arc<ServerConfig> {
    let args = [
        "--https",
        "127.0.0.1:0",
        "--cache",
        "1000",
        "--ssl-sessions-use-cache",
        "--ssl-sessions-timeout",
        "600",
    ];
    let config = match Config::load(args.iter().map(OsString::from)) {
        Ok(Command::Run(config)) => config,
        other => panic!("the bench's router options: {other:?}"),
    };
    cachet::mode::tls_config(&config).expect("the router's TLS configuration")
}

/// The load generator's client (`cachet bench --insecure --tls VERSION`),
/// with a session store of its own when `resume`.
fn client_config(version: &str, resume: bool) -> Arc<ClientConfig> {
    let args = ["--insecure", "--tls", version, "127.0.0.1:443"].map(OsString::from);
    let options = match cachet_bench::options::parse(&args) {
        Ok(cachet_bench::options::Parsed::Run(options)) => options,
        other => panic!("the bench's client options: {other:?}"),
    };
    let base = cachet_bench::tls::base_config(&options).expect("the client's configuration");
    cachet_bench::tls::client_config(&base, resume)
}

/// One handshake through memory, to its end (TLS 1.3 tickets included);
/// returns the time spent in the server's calls and how it went.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (Duration, HandshakeKind) {
    let name = ServerName::try_from("localhost").expect("a valid name");
    let mut client = ClientConnection::new(Arc::clone(client), name).expect("a client connection");
    let started = Instant::now();
    let mut server_conn = ServerConnection::new(Arc::clone(server)).expect("a server connection");
    let mut spent = started.elapsed();
    let mut wire = Vec::with_capacity(8192);
    loop {
        wire.clear();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client flight");
        }
        let from_client = !wire.is_empty();
        if from_client {
            let started = Instant::now();
            feed(&mut wire.as_slice(), |bytes| server_conn.read_tls(bytes));
            server_conn
                .process_new_packets()
                .expect("the server accepts the client's flight");
            spent += started.elapsed();
        }
        wire.clear();
        let started = Instant::now();
        while server_conn.wants_write() {
            server_conn.write_tls(&mut wire).expect("server flight");
        }
        spent += started.elapsed();
        let from_server = !wire.is_empty();
        if from_server {
            feed(&mut wire.as_slice(), |bytes| client.read_tls(bytes));
            client
                .process_new_packets()
                .expect("the client accepts the server's flight");
        }
        if !from_client && !from_server {
            break;
        }
    }
    assert!(
        !client.is_handshaking() && !server_conn.is_handshaking(),
        "the handshake stalled"
    );
    let kind = server_conn.handshake_kind().expect("a finished handshake");
    let started = Instant::now();
    drop(server_conn);
    spent += started.elapsed();
    (spent, kind)
}

/// Hands `bytes` to `read_tls` until it has taken them all (it takes at
/// most one buffer's worth a call).
fn feed(bytes: &mut &[u8], mut read_tls: impl FnMut(&mut dyn Read) -> std::io::Result<usize>) {
    while !bytes.is_empty() {
        read_tls(bytes).expect("read_tls");
    }
}

fn bench(c: &mut Criterion) {
    let server = server_config();
    let mut group = c.benchmark_group("handshake_server_side");
    for version in ["1.2", "1.3"] {
        for resume in [false, true] {
            let client = client_config(version, resume);
            let expected = if resume {
                // The first handshake leaves the client a session or ticket.
                handshake(&server, &client);
                HandshakeKind::Resumed
            } else {
                HandshakeKind::Full
            };
            let name = format!(
                "{}_tls{}",
                if resume { "resumed" } else { "new" },
                version.replace('.', "")
            );
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (spent, kind) = handshake(&server, &client);
                        // A resumption that quietly became a full handshake
                        // would measure the wrong thing.
                        assert_eq!(kind, expected, "TLS {version}");
                        total += spent;
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
