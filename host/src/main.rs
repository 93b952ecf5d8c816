//! `cachet`: parse options, set up logging, bind, run the router.

use std::io::IsTerminal;
use std::process::ExitCode;

use cachet::config::{options, Config, Invocation};
use cachet::lines::Whole;
use cachet::listen::Listeners;
use cachet::{master, router, shutdown, worker};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // First, so that a panic anywhere, in any process, leaves whole.
    cachet::lines::install_panic_hook();
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "keygen") {
        return keygen(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "bench") {
        return cachet::bench::main(&args[1..]);
    }
    let raw = match Config::from_args(args.iter().cloned()) {
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
    // Each event leaves in one write: workers share the master's stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(Whole(std::io::stderr))
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(id) = worker::number() {
        return match worker::run(config, id) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                cachet::say!("cachet: worker {id}: error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }

    match serve(&config, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            cachet::say!("cachet: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cachet keygen`: a fresh cluster key for `cache-udp-key`, as 64 hex
/// characters on standard output.
fn keygen(rest: &[std::ffi::OsString]) -> ExitCode {
    if let Some(extra) = rest.first() {
        return usage_error(&format!(
            "`keygen` takes no arguments, got `{}`",
            extra.to_string_lossy()
        ));
    }
    match cachet::sync::generate_key_hex() {
        Ok(key) => {
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            cachet::say!("cachet: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(error: &dyn std::fmt::Display) -> ExitCode {
    cachet::say!("cachet: error: {error}\n(see `cachet --help`)");
    ExitCode::from(2)
}

fn serve(config: &Config, args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    // SIGHUP reloads, once the router watches for it; until then its default
    // action would kill the process. Workers inherit the setting.
    shutdown::ignore_hangups_for_now();
    // Bound before any runtime or worker exists, so that a master hands the
    // same sockets to all its workers.
    let under_master = config.master || config.http_processes > 1;
    let listeners = Listeners::bind(config, under_master && config.reuse_port)?;
    if under_master {
        return master::run(config, listeners, args);
    }
    shutdown::runtime("cachet")?.block_on(async {
        let shutdown = shutdown::on_termination_signal();
        router::run(config, listeners, shutdown).await
    })
}
