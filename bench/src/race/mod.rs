//! `cachet bench --ticket-race N`: is a TLS 1.3 ticket resumed at most
//! once, however its offers are timed?
//!
//! Each of N rounds: a fresh client makes a full TLS 1.3 handshake on the
//! next target (round-robin), closes at once and keeps the tickets it was
//! given; then the same ticket (the newest) is offered to every other
//! target at the same instant: one connection per target, each opened
//! first, their ClientHellos leaving together behind a barrier. The round
//! counts how many of them resumed. A cluster that honours single use lets
//! at most one do so; independent servers, none.
//!
//! - [`seeded`]: randomness a client can replay.
//! - [`twins`]: clients that hold one ticket between them.
//! - [`tally`]: the rounds, by resumptions.

pub mod seeded;
pub mod tally;
pub mod twins;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;
use tokio::time::{timeout, timeout_at};
use tokio_rustls::TlsConnector;

use self::tally::Tally;
use self::twins::{TwinError, Twins};
use super::client;
use super::options::Options;
use super::report::Report;
use super::stats::{ErrorKind, Stats};

/// What a race measured.
pub struct Race {
    pub tally: Tally,
    /// Every handshake and error, per target: the first handshake of each
    /// round counts as a full one, each offer as a handshake after the
    /// first (so `offered` counts the offers).
    pub stats: Stats,
    pub elapsed: Duration,
}

impl Race {
    /// Prints the report; the exit status: failure when no round raced.
    pub fn print(&self, options: &Options) -> ExitCode {
        let mut report = Report::new(options, &self.stats, self.elapsed);
        let ticket_race = self.tally.report();
        if options.json {
            report.ticket_race = Some(ticket_race);
            println!("{}", report.to_json());
        } else {
            print!(
                "cachet bench: ticket race over {} targets, TLS 1.3, {:.1} s\n{}{}",
                options.settings.targets.len(),
                self.elapsed.as_secs_f64(),
                report.figures_text(),
                ticket_race.to_text()
            );
        }
        if self.tally.rounds() == 0 {
            say!("cachet bench: no round got a ticket to race");
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    }
}

/// Runs `rounds` rounds over `options.settings.targets` (at least two).
pub async fn run(options: &Options, rounds: u64) -> Result<Race> {
    let targets = super::resolve(&options.settings.targets).await?;
    let rivals = targets
        .len()
        .checked_sub(1)
        .filter(|n| *n > 0)
        .ok_or_else(|| anyhow!("a ticket race needs two targets or more"))?;
    let (provider, random) = seeded::provider();
    let base = super::tls::config_with_provider(options, provider)?;
    let name = ServerName::try_from(options.settings.server_name.clone()).with_context(|| {
        format!(
            "`{}` is not a DNS name or IP address",
            options.settings.server_name
        )
    })?;
    let mut race = Race {
        tally: Tally::new(rivals),
        stats: Stats::new(targets.len()),
        elapsed: Duration::ZERO,
    };
    let started = Instant::now();
    for round in 0..rounds {
        let home = usize::try_from(round % targets.len() as u64).expect("below the target count");
        let (configs, shelves) = twins::configs(&base, rivals);
        let mut twins = Twins::new(&configs, &name, random).context("starting a round")?;
        match issue(&mut twins, targets[home], options.timeout).await {
            Ok(took) => race.stats.handshake(home, twins.resumed(), false, took),
            Err(Failure::Twins(error @ TwinError::Diverged { .. })) => {
                bail!("round {}: {error}", round + 1)
            }
            Err(failure) => {
                let (kind, message) = failure.describe();
                race.stats
                    .error(home, kind, || format!("{}: {message}", targets[home]));
                race.tally.no_ticket();
                continue;
            }
        }
        let held = shelves[0].len();
        if held == 0 {
            race.tally.no_ticket();
            continue;
        }
        if shelves.iter().any(|shelf| shelf.len() != held) {
            bail!(
                "round {}: the twin clients were given different tickets",
                round + 1
            );
        }
        let resumed = offer_at_once(&mut race.stats, &targets, home, configs, &name, options)
            .await
            .with_context(|| format!("round {}", round + 1))?;
        race.tally.raced(resumed);
    }
    race.elapsed = started.elapsed();
    Ok(race)
}

/// Why a round's first handshake gave no ticket.
#[derive(Debug)]
enum Failure {
    Connect(std::io::Error),
    Io(std::io::Error),
    Twins(TwinError),
    ClosedEarly,
    Timeout(Duration),
}

impl From<TwinError> for Failure {
    fn from(error: TwinError) -> Failure {
        Failure::Twins(error)
    }
}

impl Failure {
    fn describe(&self) -> (ErrorKind, String) {
        match self {
            Failure::Connect(e) => (ErrorKind::Connect, e.to_string()),
            Failure::Io(e) => (ErrorKind::Other, e.to_string()),
            Failure::Twins(TwinError::Tls(e)) => (ErrorKind::Tls, e.to_string()),
            Failure::Twins(e) => (ErrorKind::Other, e.to_string()),
            Failure::ClosedEarly => (
                ErrorKind::Tls,
                "the server closed the connection during the handshake".to_owned(),
            ),
            Failure::Timeout(bound) => (
                ErrorKind::Timeout,
                format!("connect + handshake took over {bound:?}"),
            ),
        }
    }
}

/// The round's first connection: the twins' full handshake with `addr`,
/// closed at once, then read until the server closes (or `bound`, or
/// after the handshake [`client::CLOSE_WAIT`], runs out), which is when
/// its tickets have come. How long the handshake took.
async fn issue(twins: &mut Twins, addr: SocketAddr, bound: Duration) -> Result<Duration, Failure> {
    let mut deadline = tokio::time::Instant::now() + bound;
    let started = Instant::now();
    let mut tcp = match timeout_at(deadline, client::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err((ErrorKind::Connect, e))) => return Err(Failure::Connect(e)),
        Ok(Err((_, e))) => return Err(Failure::Io(e)),
        Err(_) => return Err(Failure::Timeout(bound)),
    };
    let mut took = None;
    let mut half_closed = false;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let out = twins.output()?;
        if !out.is_empty() {
            match timeout_at(deadline, tcp.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Failure::Io(e)),
                Err(_) => return Err(Failure::Timeout(bound)),
            }
        }
        if took.is_some() && !half_closed {
            // The close_notify is out: end the sending side too, as a
            // handshake-only client's TLS shutdown does. A server that
            // waits for the TCP close rather than close_notify (Sozu)
            // closes now instead of holding the round until CLOSE_WAIT.
            half_closed = true;
            let _ = timeout_at(deadline, tcp.shutdown()).await;
        }
        if took.is_none() && !twins.is_handshaking() {
            took = Some(started.elapsed());
            // As a handshake-only client does; the tickets and the
            // server's close follow.
            twins.send_close_notify();
            // A server that closes neither way must not hold the round
            // for the whole bound: the wait for its tickets and close is
            // the polite close's.
            deadline = deadline.min(tokio::time::Instant::now() + client::CLOSE_WAIT);
            continue;
        }
        match timeout_at(deadline, tcp.read(&mut buffer)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => twins.input(&buffer[..n])?,
            // After the handshake, a reset or a slow close only ends the
            // wait for tickets; whatever came is kept.
            Ok(Err(_)) | Err(_) if took.is_some() => break,
            Ok(Err(e)) => return Err(Failure::Io(e)),
            Err(_) => return Err(Failure::Timeout(bound)),
        }
    }
    took.ok_or(Failure::ClosedEarly)
}

/// Each twin's newest ticket (the same one) offered to another target,
/// all at once; how many resumed.
async fn offer_at_once(
    stats: &mut Stats,
    targets: &[SocketAddr],
    home: usize,
    configs: Vec<Arc<ClientConfig>>,
    name: &ServerName<'static>,
    options: &Options,
) -> Result<usize> {
    let barrier = Arc::new(Barrier::new(configs.len()));
    let racers: Vec<_> = configs
        .into_iter()
        .enumerate()
        .map(|(i, config)| {
            let target = (home + 1 + i) % targets.len();
            let racer = offer(
                TlsConnector::from(config),
                targets[target],
                name.clone(),
                Arc::clone(&barrier),
                options.timeout,
            );
            (target, tokio::spawn(racer))
        })
        .collect();
    let mut resumed = 0;
    for (target, racer) in racers {
        match racer
            .await
            .map_err(|e| anyhow!("a racing client failed: {e}"))?
        {
            Ok((was_resumed, took)) => {
                stats.handshake(target, was_resumed, true, took);
                resumed += usize::from(was_resumed);
            }
            Err((kind, message)) => {
                stats.error(target, kind, || format!("{}: {message}", targets[target]))
            }
        }
    }
    Ok(resumed)
}

/// One offer: connect, wait for the others, handshake. Whether it resumed
/// and how long the handshake took.
async fn offer(
    connector: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    barrier: Arc<Barrier>,
    bound: Duration,
) -> Result<(bool, Duration), (ErrorKind, String)> {
    let tcp = timeout(bound, client::connect(addr)).await;
    // Every racer reaches the barrier, connected or not, so that none waits
    // for one that failed.
    barrier.wait().await;
    let tcp = match tcp {
        Ok(Ok(tcp)) => tcp,
        Ok(Err((kind, e))) => return Err((kind, e.to_string())),
        Err(_) => return Err((ErrorKind::Timeout, format!("connect took over {bound:?}"))),
    };
    let started = Instant::now();
    let tls = match timeout(bound, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err((ErrorKind::Tls, e.to_string())),
        Err(_) => return Err((ErrorKind::Timeout, format!("handshake took over {bound:?}"))),
    };
    let took = started.elapsed();
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    client::close(tls, false).await;
    Ok((resumed, took))
}
