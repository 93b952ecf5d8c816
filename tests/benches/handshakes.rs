//! Full and resumed TLS handshakes per second of a running router.
//!
//! Starts a release `cachet` with the session cache on and an HTTP backend,
//! then, for TLS 1.2 and 1.3, keeps `CONNECTIONS` clients busy for
//! `CACHET_BENCH_SECS` seconds (default 5) each opening connection after
//! connection: one handshake and one `GET /` through the router (reading the
//! response is also what delivers TLS 1.3 tickets). "Full" clients never
//! offer a session; "resumed" clients offer the last one they got. Client and
//! router share the machine's cores, so the figures are a floor.
//!
//! Then the resumed rows again with the router as a master with one and
//! with two worker processes sharing the cache, to show how resumptions
//! scale with workers (on a 2-core machine that also runs the clients).
//!
//! Prints a table and writes `target/bench-handshakes.json` for
//! `cargo xtask bench`. Run: `cargo bench -p cachet-tests --bench handshakes`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachet_tests::client::{self, Tls};
use cachet_tests::{backends, Pki, Router};
use rustls::client::Resumption;
use rustls::ClientConfig;
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 8;

#[derive(Default)]
struct Tally {
    full: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
}

async fn one_connection(config: &Arc<ClientConfig>, addr: SocketAddr, tally: &Tally) {
    let outcome = async {
        let mut tls = client::connect(config, addr, "localhost").await?;
        let kind = tls.get_ref().1.handshake_kind();
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await?;
        if !response.starts_with(b"HTTP/1.1 200") {
            return Err(std::io::Error::other("not a 200 response"));
        }
        Ok::<_, std::io::Error>(kind)
    };
    match tokio::time::timeout(Duration::from_secs(10), outcome).await {
        Ok(Ok(Some(HandshakeKind::Resumed))) => tally.resumed.fetch_add(1, Ordering::Relaxed),
        Ok(Ok(_)) => tally.full.fetch_add(1, Ordering::Relaxed),
        _ => tally.errors.fetch_add(1, Ordering::Relaxed),
    };
}

async fn measure(
    pki: &Pki,
    version: Tls,
    resume: bool,
    addr: SocketAddr,
    secs: u64,
) -> serde_json::Value {
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut config = (*client::config(pki, version, &[b"http/1.1"])).clone();
        if !resume {
            config.resumption = Resumption::disabled();
        }
        let config = Arc::new(config);
        let tally = Arc::clone(&tally);
        tasks.push(tokio::spawn(async move {
            if resume {
                // Get a session to offer; not counted.
                one_connection(&config, addr, &Tally::default()).await;
            }
            while Instant::now() < deadline {
                one_connection(&config, addr, &tally).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let full = tally.full.load(Ordering::Relaxed);
    let resumed = tally.resumed.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    let wanted = if resume { resumed } else { full };
    let name = format!(
        "{} {}",
        match version {
            Tls::V12 => "TLS 1.2",
            Tls::V13 => "TLS 1.3",
        },
        if resume { "resumed" } else { "full" }
    );
    let per_sec = wanted as f64 / elapsed;
    println!(
        "{name:<16} {per_sec:>9.0} handshakes/s   (full {full}, resumed {resumed}, errors {errors}, {elapsed:.1} s)"
    );
    serde_json::json!({
        "name": name,
        "per_second": per_sec,
        "full": full,
        "resumed": resumed,
        "errors": errors,
        "seconds": elapsed,
    })
}

#[tokio::main]
async fn main() {
    let secs = std::env::var("CACHET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    let pki = Pki::new();
    let leaf = pki.leaf("bench", &["localhost"]);
    let backend = backends::http("bench").await;
    let start = |extra: &[&str]| {
        let mut args = vec![
            "--https".to_string(),
            leaf.https("127.0.0.1:0"),
            "--http-to".to_string(),
            backend.http_to(),
            "--cache".to_string(),
            "20000".to_string(),
            "--ssl-sessions-use-cache".to_string(),
            "--stats".to_string(),
            "127.0.0.1:0".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Router::start(&args)
    };
    let router = start(&[]);
    let addr = router.addr();
    let mut results = Vec::new();
    for version in [Tls::V12, Tls::V13] {
        for resume in [false, true] {
            results.push(measure(&pki, version, resume, addr, secs).await);
        }
    }
    let stats = router.stats();
    let stats = serde_json::json!({ "tls": stats["tls"], "caches": stats["caches"] });
    drop(router);

    let mut scaling = Vec::new();
    for workers in [1usize, 2] {
        let router = start(&["--master", "--http-processes", &workers.to_string()]);
        println!("-- {workers} worker process(es) under a master");
        for version in [Tls::V12, Tls::V13] {
            let mut row = measure(&pki, version, true, router.addr(), secs).await;
            row["workers"] = workers.into();
            scaling.push(row);
        }
    }
    let out = serde_json::json!({
        "connections": CONNECTIONS,
        "seconds_each": secs,
        "results": results,
        "router_stats": stats,
        "scaling": scaling,
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cachet_tests::repo_root().join("target"));
    let path = target.join("bench-handshakes.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {}", path.display());
}
