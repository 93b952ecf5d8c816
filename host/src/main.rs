//! `cachet`: parse options, set up logging, bind, run the router.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use cachet::config::{options, Config, Invocation};
use cachet::listen::Listeners;
use cachet::{router, shutdown};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let raw = match Config::from_args(std::env::args_os().skip(1)) {
        Ok(Invocation::Run(raw)) => raw,
        Ok(Invocation::Help) => {
            print!("{}", options::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("cachet {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => return usage_error(&error),
    };
    let config = match Config::from_raw(&raw) {
        Ok(config) => config,
        Err(error) => return usage_error(&error),
    };

    // RUST_LOG overrides; `info` shows startup, backend health and shutdown.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    for note in config.not_yet_served() {
        warn!("{note}");
    }

    match serve(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cachet: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("cachet: error: {error}\n(see `cachet --help`)");
    ExitCode::from(2)
}

fn serve(config: &Config) -> anyhow::Result<()> {
    // Bound before the runtime starts: the place a master will hand sockets
    // to its workers.
    let listeners = Listeners::bind(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cachet")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (trigger, shutdown) = shutdown::channel();
        tokio::spawn(async move {
            match shutdown::termination_signal().await {
                Ok(signal) => info!(signal, "termination requested"),
                Err(error) => warn!(%error, "cannot watch for signals; stopping"),
            }
            trigger.trigger();
        });
        router::run(config, listeners, shutdown).await
    })
}
