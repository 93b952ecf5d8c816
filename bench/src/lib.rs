//! `cachet bench`: a resumption-aware HTTPS load generator.
//!
//! Many clients in one process, each a tokio task with its own TLS session
//! store, open connection after connection for a duration against one or
//! more targets taken round-robin. The report tells full from resumed
//! handshakes, so it measures what a shared session cache is for: how many
//! handshakes a router avoids, on whichever node a balancer picks.
//!
//! - [`options`]: the command line.
//! - [`tls`]: the rustls client configuration.
//! - [`race`]: `--ticket-race`, one TLS 1.3 ticket offered to several
//!   targets at once.
//! - [`client`]: one client's loop, connections and requests.
//! - [`http`]: the minimal HTTP/1.1 exchange.
//! - [`stats`]: counts and latency histograms.
//! - [`progress`]: the live bar on a terminal.
//! - [`report`]: the JSON and text reports.
//!
//! It runs as `cachet bench`, a subcommand of the router's one binary, which
//! hands its arguments to [`main`]; it shares no code with the router.

#![forbid(unsafe_code)]

#[macro_use]
mod say;

pub mod client;
pub mod http;
pub mod options;
pub mod progress;
pub mod race;
pub mod report;
pub mod stats;
pub mod tls;

pub use report::Report;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use self::client::Run;
use self::options::{Options, Parsed};
use self::progress::{Live, Progress};
use self::stats::Stats;

/// `cachet bench ARGS`: parses, runs, prints the report.
pub fn main(args: &[OsString]) -> ExitCode {
    let options = match options::parse(args) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{}", options::HELP);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            say!("cachet bench: error: {error}\n(see `cachet bench --help`)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cachet-bench")
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("cachet bench: error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(rounds) = options.settings.ticket_race {
        return match runtime.block_on(race::run(&options, rounds)) {
            Ok(race) => race.print(&options),
            Err(error) => {
                say!("cachet bench: error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (stats, elapsed) = match runtime.block_on(run(&options)) {
        Ok(done) => done,
        Err(error) => {
            say!("cachet bench: error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let report = Report::new(&options, &stats, elapsed);
    if options.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if stats.full + stats.resumed == 0 {
        say!("cachet bench: no handshake succeeded");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs every client to the deadline; returns the merged stats and how
/// long the run took.
pub async fn run(options: &Options) -> Result<(Stats, Duration)> {
    let targets = resolve(&options.settings.targets).await?;
    let base = tls::base_config(options)?;
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let run = Arc::new(Run::new(
        targets,
        options,
        started + options.settings.duration,
        Arc::clone(&live),
    )?);
    // Only for a person watching: never into a pipe or next to JSON.
    let progress = (!options.json && std::io::stderr().is_terminal())
        .then(|| Progress::start(Arc::clone(&live), options.settings.duration));
    let clients: Vec<_> = (0..options.settings.connections)
        .map(|_| {
            let config = tls::client_config(&base, options.settings.resume);
            tokio::spawn(client::client(Arc::clone(&run), config))
        })
        .collect();
    let mut stats = Stats::new(options.settings.targets.len());
    let mut failure = None;
    for client in clients {
        match client.await {
            Ok(client_stats) => stats.merge(&client_stats),
            // A client task only ends this way if it panicked, which is a
            // bug; the others' results are still worth reporting after it.
            Err(error) => failure = Some(error),
        }
    }
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.finish().await;
    }
    if let Some(error) = failure {
        return Err(anyhow!("a client task failed: {error}"));
    }
    Ok((stats, elapsed))
}

/// Resolves each `host:port` once, before the clock starts, so DNS is not
/// measured as connect time.
async fn resolve(targets: &[String]) -> Result<Vec<SocketAddr>> {
    let mut resolved = Vec::with_capacity(targets.len());
    for target in targets {
        let addr = tokio::net::lookup_host(target.as_str())
            .await
            .with_context(|| format!("resolving target `{target}`"))?
            .next()
            .ok_or_else(|| anyhow!("target `{target}` resolves to no address"))?;
        resolved.push(addr);
    }
    Ok(resolved)
}
