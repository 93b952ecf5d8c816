//! `cachet`: parse options, set up logging, bind, run the router.

use std::io::IsTerminal;
use std::process::ExitCode;

use cachet::config::{options, Command, Config};
use cachet::lines::Whole;
use cachet::mode::{self, worker};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // First, so that a panic anywhere, in any process, leaves whole.
    cachet::lines::install_panic_hook();
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "keygen") {
        return keygen(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "bench") {
        return cachet_bench::main(&args[1..]);
    }
    let config = match Config::load(args.iter().cloned()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Check(config)) => return check(&config),
        Ok(Command::Help) => {
            print!("{}", options::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("cachet {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        // `--check` exits 1 for a bad configuration, like `nginx -t`.
        Err(errors) if args.iter().any(|arg| arg == "--check") => {
            cachet::say!("cachet: error: {errors}");
            return ExitCode::FAILURE;
        }
        Err(errors) => return usage_error(&errors),
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

    match mode::run(&config, &args) {
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

/// `cachet --check` of a valid configuration: 0 when every file it names
/// is good too, 1 with every problem listed when not.
fn check(config: &Config) -> ExitCode {
    let problems = cachet::check::problems(config);
    if problems.is_empty() {
        cachet::say!(
            "cachet: configuration ok ({} https socket(s), {} sni certificate(s), {} backend(s))",
            config.https.len(),
            config.sni.len(),
            config.backends.len()
        );
        ExitCode::SUCCESS
    } else {
        cachet::say!("cachet: error: {}", cachet::check::report(&problems));
        ExitCode::FAILURE
    }
}

fn usage_error(error: &dyn std::fmt::Display) -> ExitCode {
    cachet::say!("cachet: error: {error}\n(see `cachet --help`)");
    ExitCode::from(2)
}
