//! `cargo xtask bench`: run the criterion benchmarks and write
//! `docs/BENCHMARKS.md` from criterion's own result files.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context, Result};

use crate::compare::load::{Load, Tls};
use crate::processes::target_dir;
use crate::{compare, run};

/// Benchmark groups of `core/benches/cache.rs` and what they measure.
const CACHE_GROUPS: [(&str, &str); 3] = [
    ("get_hit", "`get` of a present session (TLS 1.2 resumption)"),
    (
        "put_full",
        "`put` of a new session into a full cache (evicts one)",
    ),
    (
        "take_hit",
        "`take` of a present ticket (TLS 1.3 resumption)",
    ),
];

/// The criterion group of `host/benches/handshake.rs`.
const HANDSHAKE_GROUP: &str = "handshake_server_side";
/// Its functions, each with the load of the comparison whose handshakes it
/// times rustls' side of.
const HANDSHAKE_FUNCTIONS: [(&str, Load); 4] = [
    ("new_tls12", Load::New(Tls::V12)),
    ("new_tls13", Load::New(Tls::V13)),
    ("resumed_tls12", Load::Resumed(Tls::V12)),
    ("resumed_tls13", Load::Resumed(Tls::V13)),
];

const USAGE: &str =
    "usage: cargo xtask bench [--install] [--quick] [--rounds N] [--skip-micro] [--smoke] [--access-log]
  --install     install nginx, HAProxy and hitch from Debian, Sozu with cargo install, if missing
  --quick       short runs (a few minutes in all), for trying the setup
  --rounds N    interleaved rounds of every load against every server (default 5,
                3 with --quick); more rounds, steadier medians on a noisy machine
  --skip-micro  skip the criterion benchmarks (their last results are reused)
  --smoke       every step of the comparison once, briefly, cachet alone, on the
                debug build; writes to target/bench-smoke/ and fails unless every
                figure was measured (what CI runs)
  --access-log  only measure what the access log costs proxied requests (plain and
                JSON lines against none), with --quick for short rounds";

/// `--smoke`: the comparison's every step on cachet alone, its report and
/// chart written under the target directory, and a check that each figure
/// was measured, so that the comparison cannot rot between full runs.
pub(crate) fn smoke_run(root: &Path) -> Result<()> {
    let plan = compare::Plan::smoke();
    let results = compare::run(root, plan)?;
    let dir = target_dir(root).join("bench-smoke");
    fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    compare::chart::draw(
        &dir.join(CHART),
        "smoke run",
        &compare::report::bars(&results),
    )?;
    let path = dir.join("BENCHMARKS.md");
    fs::write(&path, compare::report::markdown(&results, &plan)?)
        .with_context(|| format!("{}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    compare::report::check_smoke(&results)
}

/// The chart, next to `docs/BENCHMARKS.md`.
const CHART: &str = "bench-ratios.svg";

/// `cargo xtask bench ARGS`.
pub(crate) fn all(root: &Path, args: &[String]) -> Result<()> {
    let (mut install, mut quick, mut skip_micro, mut smoke) = (false, false, false, false);
    let mut access_log = false;
    let mut rounds = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = Some(
                    args.next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                        .context("bench: --rounds takes a number, 1 or more")?,
                );
            }
            "--install" => install = true,
            "--quick" => quick = true,
            "--skip-micro" => skip_micro = true,
            "--smoke" => smoke = true,
            "--access-log" => access_log = true,
            other => return Err(anyhow!("bench: unknown option `{other}`\n{USAGE}")),
        }
    }
    if smoke {
        return smoke_run(root);
    }
    if access_log {
        print!("{}", compare::access_log_cost::run(root, quick)?);
        return Ok(());
    }
    if install {
        compare::install()?;
    }
    if !skip_micro {
        run(
            root,
            "cargo",
            &["bench", "-p", "cachet-core", "--bench", "cache"],
        )?;
        run(
            root,
            "cargo",
            &["bench", "-p", "cachet", "--bench", "handshake"],
        )?;
        run(
            root,
            "cargo",
            &["bench", "-p", "cachet-tests", "--bench", "handshakes"],
        )?;
    }
    let mut plan = if quick {
        compare::Plan::quick()
    } else {
        compare::Plan::full()
    };
    if let Some(rounds) = rounds {
        plan.rounds = rounds;
    }
    let mut results = compare::run(root, plan)?;
    results.tls_alone = tls_alone(&target_dir(root).join("criterion")).unwrap_or_else(|e| {
        eprintln!("xtask: rustls' side of the handshakes not measured: {e:#}");
        Vec::new()
    });
    let docs = root.join("docs");
    fs::create_dir_all(&docs).context("docs/")?;
    compare::chart::draw(
        &docs.join(CHART),
        "cachet / peer, medians on loopback (lines: 1x, and 1.5x for resumption)",
        &compare::report::bars(&results),
    )?;
    let micro = micro_sections(root, &results.tls_alone).unwrap_or_else(|e| {
        format!("## Session cache and router microbenchmarks\n\nNot available: {e:#}\n")
    });
    let flags = format!(
        "{}{}",
        if quick { " --quick" } else { "" },
        rounds.map_or(String::new(), |n| format!(" --rounds {n}"))
    );
    let doc = format!(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench{flags}` on {machine}; rerun it to refresh this file\n\
         and the chart.\n\n\
         ![cachet / peer]({CHART})\n\n\
         {comparison}\n{micro}",
        machine = machine(),
        comparison = compare::report::markdown(&results, &plan)?,
    );
    let path = docs.join("BENCHMARKS.md");
    fs::write(&path, doc).with_context(|| format!("{}", path.display()))?;
    eprintln!("xtask: wrote {} and docs/{CHART}", path.display());
    for line in compare::report::verdicts(&results, &plan) {
        eprintln!("xtask: {line}");
    }
    Ok(())
}

/// The medians of `host/benches/handshake.rs`, in microseconds, by load.
fn tls_alone(criterion: &Path) -> Result<Vec<(Load, f64)>> {
    HANDSHAKE_FUNCTIONS
        .iter()
        .map(|(function, load)| {
            Ok((
                *load,
                median_ns(criterion, HANDSHAKE_GROUP, function)? / 1e3,
            ))
        })
        .collect()
}

/// The criterion and router sections, from the benchmarks' result files
/// (`tls_alone` already read from them).
fn micro_sections(root: &Path, tls_alone: &[(Load, f64)]) -> Result<String> {
    let handshakes = handshake_table(root)?;
    let criterion = target_dir(root).join("criterion");
    // Missing results (a `--skip-micro` run before this bench existed) leave
    // the other sections be.
    let tls_table = match tls_alone {
        [] => "Not measured (`cargo bench -p cachet --bench handshake`).\n".to_owned(),
        rows => {
            let mut table = String::from("| handshake | rustls' side (us) |\n|---|---:|\n");
            for (load, us) in rows {
                writeln!(table, "| {} | {us:.1} |", load.short()).expect("writing to a String");
            }
            if let Ok(ns) = median_ns(&criterion, HANDSHAKE_GROUP, "resumed_tls13_x25519") {
                writeln!(
                    table,
                    "| resumed 1.3, X25519 alone (no ML-KEM) | {:.1} |",
                    ns / 1e3
                )
                .expect("writing to a String");
            }
            table
        }
    };
    let mut table = String::from(
        "| operation | cachet-core (ns) | rustls `ServerSessionMemoryCache` (ns) | rustls / cachet |\n|---|---:|---:|---:|\n",
    );
    for (group, what) in CACHE_GROUPS {
        let ours = median_ns(&criterion, group, "cachet")?;
        let theirs = median_ns(&criterion, group, "rustls")?;
        writeln!(
            table,
            "| {what} | {ours:.0} | {theirs:.0} | {:.2}x |",
            theirs / ours
        )
        .expect("writing to a String");
    }

    Ok(format!(
        "## Session cache: cachet-core against rustls' built-in cache\n\n\
         20000 entries, 48-byte keys (16-byte context + 32-byte session id), 110-byte values,\n\
         both behind a mutex as in a server. Median time per operation (criterion, `cargo bench -p\n\
         cachet-core --bench cache`); lower is better, a ratio above 1 means cachet is faster.\n\n\
         {table}\n\
         cachet-core copies the value into the caller's buffer and allocates nothing; rustls'\n\
         cache clones a `Vec` on every hit and allocates key and value on every put. The\n\
         machine is shared and small, so compare the two columns of one run, not runs.\n\n\
         A hit reads the index and then one record: the 88-byte slot and the first chunk of\n\
         its value side by side, a whole number of cache lines. (With slot and value chunk\n\
         apart, a `get` took twice as long as rustls'.) In a running router either is noise\n\
         next to a resumed handshake, about 140 us here.\n\n\
         ## rustls' side of a handshake, through memory\n\n\
         `cargo bench -p cachet --bench handshake`: the router's TLS configuration (its\n\
         cipher order and key schedule, sessions in the shared cache, a self-signed ECDSA\n\
         P-256 certificate) against the load generator's client, the two talking through\n\
         memory; only the server's calls are timed (median per handshake). No socket, no\n\
         kernel, no runtime, caches warm: the least user time a handshake of that kind costs\n\
         a router on rustls. Added to the kernel's part of the comparison's CPU figures, it\n\
         tells a CPU target within the router's reach from one beyond it (the targets\n\
         above). The TLS 1.3 rows use the key exchange rustls offers first, the post-quantum\n\
         hybrid X25519MLKEM768; the last row is a client offering X25519 alone, which is what\n\
         the OpenSSL 3.0 servers of the comparison agree on.\n\n\
         {tls_table}\n\
         ## Handshakes per second of a running router\n\n\
         `cargo bench -p cachet-tests --bench handshakes`: a release `cachet` with the session\n\
         cache on and one HTTP backend; {connections} concurrent rustls clients for {secs} s per\n\
         row, each connection one handshake and one `GET /` through the router. Clients and\n\
         router share the {cores} cores, so these are floors; the comparison with nginx and\n\
         HAProxy comes with the load generator.\n\n\
         {handshakes}",
        connections = handshakes.1,
        secs = handshakes.2,
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        handshakes = handshakes.0,
    ))
}

/// The table of `target/bench-handshakes.json`, with the client count and
/// seconds per row.
fn handshake_table(root: &Path) -> Result<(String, u64, u64)> {
    let path = target_dir(root).join("bench-handshakes.json");
    let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let mut table = String::from(
        "| handshake | per second | full | resumed | errors |\n|---|---:|---:|---:|---:|\n",
    );
    for row in json["results"].as_array().into_iter().flatten() {
        writeln!(
            table,
            "| {} | {:.0} | {} | {} | {} |",
            row["name"].as_str().unwrap_or("?"),
            row["per_second"].as_f64().unwrap_or(0.0),
            row["full"],
            row["resumed"],
            row["errors"]
        )
        .expect("writing to a String");
    }
    table.push_str(
        "\nResumed handshakes per second with the router as a master over one and two worker\n\
         processes sharing the cache (same clients, same machine). The 8 clients run on the\n\
         same 2 cores, so a second worker competes with them for CPU rather than adding any:\n\
         this shows that sharing the cache across processes costs little, not how workers\n\
         scale on a machine with cores to spare.\n\n\
         | handshake | 1 worker | 2 workers | 2 / 1 |\n|---|---:|---:|---:|\n",
    );
    let scaling: Vec<&serde_json::Value> =
        json["scaling"].as_array().into_iter().flatten().collect();
    for name in ["TLS 1.2 resumed", "TLS 1.3 resumed"] {
        let rate = |workers: u64| {
            scaling
                .iter()
                .find(|r| r["name"] == name && r["workers"] == workers)
                .and_then(|r| r["per_second"].as_f64())
                .unwrap_or(0.0)
        };
        let (one, two) = (rate(1), rate(2));
        writeln!(
            table,
            "| {name} | {one:.0} | {two:.0} | {:.2}x |",
            if one > 0.0 { two / one } else { 0.0 }
        )
        .expect("writing to a String");
    }
    Ok((
        table,
        json["connections"].as_u64().unwrap_or(0),
        json["seconds_each"].as_u64().unwrap_or(0),
    ))
}

/// Criterion's median estimate, in nanoseconds.
fn median_ns(criterion: &Path, group: &str, function: &str) -> Result<f64> {
    let path = criterion
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    json["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("{}: no median.point_estimate", path.display()))
}

/// CPU model, core count and compiler, for the record.
fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {rustc}")
}
