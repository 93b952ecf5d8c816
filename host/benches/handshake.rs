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
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, NamedGroup, ServerConfig, ServerConnection,
};

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
    client_config_over(version, resume, aws_lc_rs::default_provider())
}

/// The same client offering `provider`'s key exchange groups.
fn client_config_over(version: &str, resume: bool, provider: CryptoProvider) -> Arc<ClientConfig> {
    let args = ["--insecure", "--tls", version, "127.0.0.1:443"].map(OsString::from);
    let options = match cachet_bench::options::parse(&args) {
        Ok(cachet_bench::options::Parsed::Run(options)) => options,
        other => panic!("the bench's client options: {other:?}"),
    };
    let base = cachet_bench::tls::config_with_provider(&options, Arc::new(provider))
        .expect("the client's configuration");
    cachet_bench::tls::client_config(&base, resume)
}

/// How a handshake went, on the server's side.
#[derive(Debug, PartialEq)]
struct Outcome {
    kind: HandshakeKind,
    /// The key exchange group, where the handshake made one (not a TLS 1.2
    /// resumption).
    group: Option<NamedGroup>,
}

/// One handshake through memory, to its end (TLS 1.3 tickets included);
/// returns the time spent in the server's calls and how it went.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (Duration, Outcome) {
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
    let outcome = Outcome {
        kind: server_conn.handshake_kind().expect("a finished handshake"),
        group: server_conn
            .negotiated_key_exchange_group()
            .map(|group| group.name()),
    };
    let started = Instant::now();
    drop(server_conn);
    spent += started.elapsed();
    (spent, outcome)
}

/// Hands `bytes` to `read_tls` until it has taken them all (it takes at
/// most one buffer's worth a call).
fn feed(bytes: &mut &[u8], mut read_tls: impl FnMut(&mut dyn Read) -> std::io::Result<usize>) {
    while !bytes.is_empty() {
        read_tls(bytes).expect("read_tls");
    }
}

fn bench(c: &mut Criterion) {
    use HandshakeKind::{Full, Resumed};
    use NamedGroup::{X25519, X25519MLKEM768};
    let server = server_config();
    // Each client with how its handshakes must go: a resumption that
    // quietly became a full handshake, or another key exchange than the
    // one named, would measure the wrong thing. A TLS 1.2 resumption makes
    // no key exchange; rustls offers the post-quantum hybrid first for TLS
    // 1.3, and the router takes it.
    let outcome = |kind, group| Outcome { kind, group };
    let mut clients = vec![
        (
            "new_tls12",
            client_config("1.2", false),
            outcome(Full, Some(X25519)),
        ),
        (
            "resumed_tls12",
            client_config("1.2", true),
            outcome(Resumed, None),
        ),
        (
            "new_tls13",
            client_config("1.3", false),
            outcome(Full, Some(X25519MLKEM768)),
        ),
        (
            "resumed_tls13",
            client_config("1.3", true),
            outcome(Resumed, Some(X25519MLKEM768)),
        ),
    ];
    // What the post-quantum half of the key exchange costs a TLS 1.3
    // resumption: the same client offering X25519 alone, which is what the
    // OpenSSL 3.0 servers of the comparison agree on.
    let x25519_alone = CryptoProvider {
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        ..aws_lc_rs::default_provider()
    };
    clients.push((
        "resumed_tls13_x25519",
        client_config_over("1.3", true, x25519_alone),
        outcome(Resumed, Some(X25519)),
    ));
    let mut group = c.benchmark_group("handshake_server_side");
    for (name, client, expected) in clients {
        if expected.kind == Resumed {
            // The first handshake leaves the client a session or ticket.
            handshake(&server, &client);
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (spent, outcome) = handshake(&server, &client);
                    assert_eq!(outcome, expected, "{name}");
                    total += spent;
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
