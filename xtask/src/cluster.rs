//! `cargo xtask cluster`: the seed's Setup 2 on loopback, end to end.
//!
//! Builds cachet in release, starts the three routers of `examples/cluster`
//! and a small uwsgi backend (below, std only) on 127.0.0.1:3031, puts
//! HAProxy in front (`examples/cluster/haproxy.cfg`, `mode tcp`) when it is
//! installed, else connects to the routers round-robin itself, runs a short
//! resumption load with `openssl s_client -sess_out/-sess_in`, and prints a
//! table per router from its stats socket. Every process it started is
//! stopped at the end, also when something fails on the way.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use cachet_tests::openssl::{self, Session};
use cachet_tests::uwsgi;

use crate::processes::{release_cachet, require, Processes, Ready};

/// The three routers of `examples/cluster`: ini file, HTTPS, sync and stats
/// addresses (as written in the ini files).
const NODES: [Node; 3] = [
    Node {
        ini: "node1.ini",
        https: "127.0.0.1:8441",
        sync: "127.0.0.1:19001",
        stats: "127.0.0.1:5001",
    },
    Node {
        ini: "node2.ini",
        https: "127.0.0.1:8442",
        sync: "127.0.0.1:19002",
        stats: "127.0.0.1:5002",
    },
    Node {
        ini: "node3.ini",
        https: "127.0.0.1:8443",
        sync: "127.0.0.1:19003",
        stats: "127.0.0.1:5003",
    },
];
/// The backend the ini files name (`http-to`).
const BACKEND: &str = "127.0.0.1:3031";
/// HAProxy's frontend in `examples/cluster/haproxy.cfg`.
const FRONTEND: &str = "127.0.0.1:8440";
/// Clients per TLS version, and connections per client (the first makes
/// the session, the others try to resume it).
const CLIENTS_PER_VERSION: usize = 12;
const CONNECTIONS_PER_CLIENT: usize = 8;
/// s_client processes at once.
const PARALLEL: usize = 4;

struct Node {
    ini: &'static str,
    https: &'static str,
    sync: &'static str,
    stats: &'static str,
}

pub(crate) fn run(root: &Path) -> Result<()> {
    require("openssl", &["version"])?;
    ports_free()?;
    let bin = release_cachet(root)?;
    let examples = root.join("examples/cluster");
    let certificate = root.join("examples/foobar.crt");

    let served = start_backend()?;
    // Dropped last thing in this function, or on any early return: stops
    // every process started through it.
    let mut processes = Processes::default();
    for node in &NODES {
        let ini = examples.join(node.ini);
        processes.start_router(&bin, &ini)?;
        eprintln!("xtask: router {} up (https {})", node.ini, node.https);
    }
    let entry: Vec<String> = if require("haproxy", &["-v"]).is_ok() {
        let mut haproxy = Command::new("haproxy");
        haproxy
            .arg("-f")
            .arg(examples.join("haproxy.cfg"))
            .arg("-db");
        let frontend: SocketAddr = FRONTEND.parse().expect("a socket address");
        processes.start("haproxy", haproxy, Ready::Accepts(frontend))?;
        eprintln!("xtask: HAProxy up on {FRONTEND}, round-robin over the three routers");
        vec![FRONTEND.to_owned()]
    } else {
        eprintln!("xtask: haproxy not installed: connecting to the routers round-robin");
        NODES.iter().map(|n| n.https.to_owned()).collect()
    };

    let scratch = std::env::temp_dir().join(format!("cachet-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("{}", scratch.display()))?;
    let started = Instant::now();
    let load = load(&entry, &certificate, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let load = load?;
    let elapsed = started.elapsed();
    // Let the last batches' repeats land before reading the figures.
    std::thread::sleep(Duration::from_millis(300));

    let mut table = String::new();
    writeln!(
        table,
        "{:<6} {:<16} {:>6} {:>8} {:>7} {:>7} {:>7} {:>10} {:>10} {:>8} {:>7} {:>8} {:>9}",
        "router",
        "https",
        "full",
        "resumed",
        "items",
        "hits",
        "misses",
        "sync sent",
        "sync recv",
        "applied",
        "pulled",
        "answered",
        "rejected"
    )
    .expect("writing to a String");
    for node in &NODES {
        let stats = read_stats(node.stats)?;
        writeln!(table, "{}", row(node, &stats)).expect("writing to a String");
    }
    println!();
    println!(
        "{} clients x {} connections through {} in {:.1} s; backend served {} requests",
        2 * CLIENTS_PER_VERSION,
        CONNECTIONS_PER_CLIENT,
        if entry.len() == 1 {
            "HAProxy"
        } else {
            "the routers in turn"
        },
        elapsed.as_secs_f64(),
        served.load(Ordering::Relaxed)
    );
    for (version, tally) in [("TLS 1.2", &load.tls12), ("TLS 1.3", &load.tls13)] {
        println!(
            "  {version}: {} new sessions, {} of {} reconnections resumed ({:.1}%), {} failed",
            tally.new,
            tally.resumed,
            tally.reconnections,
            percent(tally.resumed, tally.reconnections),
            tally.failed
        );
    }
    println!();
    print!("{table}");
    println!(
        "\nfull/resumed: TLS handshakes (1.2 + 1.3); items/hits/misses: the session cache; \
         sync sent: datagrams pushed to peers; sync recv: datagrams accepted from peers; \
         applied: replicated sets and deletes; pulled: sessions a client offered that the \
         router lacked, found at a peer before the handshake (of all it asked for); answered: \
         peers' pulls it answered with the session; rejected: datagrams refused, all reasons."
    );
    drop(processes);
    if load.tls12.failed + load.tls13.failed > 0 {
        return Err(anyhow!("some client connections failed (see above)"));
    }
    Ok(())
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Every fixed port of the example must be free: a clear message beats a
/// router failing to bind.
fn ports_free() -> Result<()> {
    let mut tcp: Vec<&str> = vec![BACKEND, FRONTEND];
    tcp.extend(NODES.iter().flat_map(|n| [n.https, n.stats]));
    for addr in tcp {
        TcpListener::bind(addr)
            .with_context(|| format!("TCP {addr} is in use: is a cluster already running?"))?;
    }
    for node in &NODES {
        UdpSocket::bind(node.sync).with_context(|| {
            format!("UDP {} is in use: is a cluster already running?", node.sync)
        })?;
    }
    Ok(())
}

/// A uwsgi backend on [`BACKEND`]: reads the packet header, the variables
/// and CONTENT_LENGTH bytes of body, answers a short HTTP response. Lives
/// until xtask exits. Returns the count of requests served.
fn start_backend() -> Result<Arc<AtomicUsize>> {
    let listener = TcpListener::bind(BACKEND).with_context(|| format!("backend on {BACKEND}"))?;
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                if answer_uwsgi(stream).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    Ok(served)
}

fn answer_uwsgi(mut stream: TcpStream) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut header = [0u8; uwsgi::HEADER_LEN];
    stream.read_exact(&mut header)?;
    let mut block = vec![0u8; uwsgi::block_len(header)?];
    stream.read_exact(&mut block)?;
    let vars = uwsgi::var_map(&block)?;
    let content_length = uwsgi::content_length(&vars).context("CONTENT_LENGTH is not a number")?;
    std::io::copy(
        &mut (&mut stream).take(content_length),
        &mut std::io::sink(),
    )?;
    let body = "hello from the cachet cluster demo backend\n";
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    Ok(())
}

/// What the clients of one TLS version saw.
#[derive(Default, Debug)]
struct Tally {
    new: usize,
    resumed: usize,
    reconnections: usize,
    failed: usize,
}

#[derive(Default, Debug)]
struct Load {
    tls12: Tally,
    tls13: Tally,
}

/// Runs every client: each makes a session on its first connection and
/// offers it (TLS 1.3: the newest ticket) on the following ones. With one
/// entry address (HAProxy) the balancer picks the router; with several,
/// connection k of client c goes to router (c + k) mod 3, so consecutive
/// connections always land on different routers.
fn load(entry: &[String], ca: &Path, scratch: &Path) -> Result<Load> {
    let jobs: Vec<(usize, &'static str)> = (0..2 * CLIENTS_PER_VERSION)
        .map(|c| (c, if c % 2 == 0 { "-tls1_2" } else { "-tls1_3" }))
        .collect();
    let jobs = Arc::new(Mutex::new(jobs));
    let results = Arc::new(Mutex::new(Load::default()));
    let first_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            let jobs = Arc::clone(&jobs);
            let results = Arc::clone(&results);
            let first_error = Arc::clone(&first_error);
            scope.spawn(move || loop {
                let Some((client, tls)) = jobs.lock().unwrap().pop() else {
                    return;
                };
                let session = scratch.join(format!("client{client}.pem"));
                for k in 0..CONNECTIONS_PER_CLIENT {
                    let addr = &entry[(client + k) % entry.len()];
                    let outcome = s_client(addr, tls, ca, (k > 0).then_some(&session), &session);
                    let mut load = results.lock().unwrap();
                    let tally = if tls == "-tls1_2" {
                        &mut load.tls12
                    } else {
                        &mut load.tls13
                    };
                    match outcome {
                        Ok(resumed) => {
                            if k == 0 {
                                tally.new += 1;
                            } else {
                                tally.reconnections += 1;
                                tally.resumed += usize::from(resumed);
                            }
                        }
                        Err(e) => {
                            tally.failed += 1;
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.lock().unwrap().take() {
        eprintln!("xtask: first client failure: {e:#}");
    }
    let load = std::mem::take(&mut *results.lock().unwrap());
    if load.tls12.new + load.tls13.new == 0 {
        return Err(anyhow!("no client connection succeeded"));
    }
    Ok(load)
}

/// One `openssl s_client` run: handshake, `GET /`, the whole response.
/// Returns whether the session was reused.
fn s_client(
    addr: &str,
    tls: &str,
    ca: &Path,
    sess_in: Option<&PathBuf>,
    sess_out: &Path,
) -> Result<bool> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not an address"))?;
    let sess_in = sess_in.map(PathBuf::as_path);
    let (session, stdout) =
        openssl::try_s_client(addr, &[tls], "localhost", ca, sess_in, sess_out)?;
    ensure!(
        stdout.contains("HTTP/1.1 200 OK"),
        "s_client to {addr} got no 200:\n{stdout}"
    );
    Ok(session == Session::Reused)
}

/// One stats document from a `stats` socket.
pub(crate) fn read_stats(addr: &str) -> Result<serde_json::Value> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("stats {addr}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .with_context(|| format!("stats {addr}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .with_context(|| format!("stats {addr}"))?;
    serde_json::from_str(&text).with_context(|| format!("stats {addr} is not JSON: {text}"))
}

/// A table row from one router's stats.
fn row(node: &Node, stats: &serde_json::Value) -> String {
    let num = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let handshakes = &stats["tls"]["handshakes"];
    let full = num(&handshakes["tls12"]["full"]) + num(&handshakes["tls13"]["full"]);
    let resumed = num(&handshakes["tls12"]["resumed"]) + num(&handshakes["tls13"]["resumed"]);
    let cache = &stats["caches"][0];
    let sync = &stats["sync"];
    let sent: u64 = sync["peers"].as_array().map_or(0, |peers| {
        peers.iter().map(|p| num(&p["sent_datagrams"])).sum()
    });
    let rejected: u64 = sync.as_object().map_or(0, |o| {
        o.iter()
            .filter(|(k, _)| k.starts_with("rejected_"))
            .map(|(_, v)| num(v))
            .sum()
    });
    let pulls = &sync["pulls"];
    format!(
        "{:<6} {:<16} {:>6} {:>8} {:>7} {:>7} {:>7} {:>10} {:>10} {:>8} {:>7} {:>8} {:>9}",
        node.ini.trim_end_matches(".ini"),
        node.https,
        full,
        resumed,
        num(&cache["items"]),
        num(&cache["hits"]),
        num(&cache["miss"]),
        sent,
        num(&sync["received_datagrams"]),
        num(&sync["applied_sets"]) + num(&sync["applied_deletes"]),
        format!("{}/{}", num(&pulls["found"]), num(&pulls["asked"])),
        num(&pulls["answered_found"]),
        rejected
    )
}
