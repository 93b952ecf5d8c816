//! `cargo xtask fleet`: a fleet of routers sharing sessions through Redis,
//! on this machine.
//!
//! N routers (default 8, `--routers N`) with one `redis-server`, then the
//! same with a Redis Cluster of three masters. For each: a resumption load
//! round-robin over the routers (`cachet bench`, 16 clients, TLS 1.2 then
//! 1.3, at least 10,000 resumption attempts each: 7 in 8 of them on a router
//! that did not make the session), the ticket race (1000 tickets, each
//! offered to two or more routers at the same instant), and a table per
//! router (handshakes resumed, sessions fetched from Redis, memory). Then,
//! with one Redis: memory per router at 2 routers and at N under the same
//! load per router, and Redis killed and restarted under load (failed
//! handshakes, and resumption once it is back). `--quick` runs a tenth.
//! Prints what it measured; docs/FLEET.md holds a run's figures.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::cluster::read_stats;
use crate::compare::load::{self, Load, Pressure, Tls};
use crate::compare::{backend, certs, memory, servers};
use crate::processes::{release_cachet, require, Processes, Ready};

/// Clients of the load, as in `cargo xtask bench`'s cross-node runs.
const CLIENTS: usize = 16;
/// Bound on a handshake or request of the load.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a load that stops at its count of handshakes.
const LOAD_BOUND: Duration = Duration::from_secs(300);
/// Clients per router in the memory comparison, and their pace.
const CLIENTS_PER_ROUTER: usize = 2;
const RATE_PER_ROUTER: u32 = 300;
const MEMORY_LOAD: Duration = Duration::from_secs(10);

struct Plan {
    routers: usize,
    attempts: u64,
    races: u64,
    /// `cache-redis-timeout` of the routers, when not the default.
    redis_timeout: Option<u32>,
}

/// One running router of the fleet.
struct Router {
    pid: u32,
    https: SocketAddr,
    stats: SocketAddr,
}

/// Where the fleet's routers find Redis.
struct Tier {
    label: &'static str,
    url: String,
    /// Every server of the tier, for what it holds.
    servers: Vec<SocketAddr>,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut plan = Plan {
        routers: 8,
        attempts: 10_000,
        races: 1_000,
        redis_timeout: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--routers" => {
                plan.routers = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n >= 3)
                    .context("--routers takes a number, 3 or more")?;
            }
            "--redis-timeout" => {
                plan.redis_timeout = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .context("--redis-timeout takes milliseconds")?,
                );
            }
            "--quick" => {
                plan.attempts = 1_000;
                plan.races = 100;
            }
            other => return Err(anyhow!("fleet: unknown argument {other:?}")),
        }
    }
    require("redis-server", &["--version"])?;
    require("redis-cli", &["--version"])?;
    require("openssl", &["version"])?;
    let bin = release_cachet(root)?;
    let dir = std::env::temp_dir().join(format!("cachet-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    let result = fleet(&bin, &dir, &plan);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn fleet(bin: &Path, dir: &Path, plan: &Plan) -> Result<()> {
    let certificate = certs::make(dir, certs::KeyType::EcdsaP256)?;
    let key = dir.join("cluster.key");
    let generated = Command::new(bin)
        .arg("keygen")
        .output()
        .context("cachet keygen")?;
    std::fs::write(&key, &generated.stdout).with_context(|| format!("{}", key.display()))?;
    let backend = backend::start()?;
    let setup = Setup {
        redis_timeout: plan.redis_timeout,
        bin,
        dir,
        certificate: &certificate,
        key: &key,
        backend: backend.addr,
    };

    // One Redis.
    let mut redis = Processes::default();
    let single = start_redis(&mut redis, dir, "redis", None, false)?;
    let tier = Tier {
        label: "one redis-server",
        url: format!("redis://{single}"),
        servers: vec![single],
    };
    measure(&setup, &tier, plan)?;
    memory_by_fleet_size(&setup, &tier, plan.routers)?;
    redis_killed_under_load(&setup, &tier, plan.routers, &mut redis, single)?;
    drop(redis);

    // A Redis Cluster of three masters.
    let mut cluster = Processes::default();
    let nodes = (0..3)
        .map(|i| start_redis(&mut cluster, dir, &format!("redis-cluster-{i}"), None, true))
        .collect::<Result<Vec<_>, _>>()?;
    let mut create = Command::new("redis-cli");
    create.args(["--cluster", "create"]);
    create.args(nodes.iter().map(SocketAddr::to_string));
    create.args(["--cluster-replicas", "0", "--cluster-yes"]);
    let created = create.output().context("redis-cli --cluster create")?;
    if !created.status.success() {
        return Err(anyhow!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        ));
    }
    wait_for("the Redis Cluster to be ok", || {
        nodes
            .iter()
            .all(|node| redis_cli(*node, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    })?;
    let names: Vec<String> = nodes.iter().map(SocketAddr::to_string).collect();
    let tier = Tier {
        label: "a Redis Cluster of 3 masters",
        url: format!("redis+cluster://{}", names.join(",")),
        servers: nodes,
    };
    measure(&setup, &tier, plan)
}

struct Setup<'a> {
    redis_timeout: Option<u32>,
    bin: &'a Path,
    dir: &'a Path,
    certificate: &'a certs::Certificate,
    key: &'a Path,
    backend: SocketAddr,
}

/// Starts `redis-server` (on `port`, else a free one), without persistence;
/// returns its address.
fn start_redis(
    processes: &mut Processes,
    dir: &Path,
    name: &str,
    port: Option<SocketAddr>,
    cluster: bool,
) -> Result<SocketAddr> {
    let addr = match port {
        Some(addr) => addr,
        None => loop {
            let addr = servers::free_tcp_port()?;
            // A cluster node also takes port + 10000, its bus.
            if !cluster || addr.port() < 55_000 {
                break addr;
            }
        },
    };
    let data: PathBuf = dir.join(name);
    std::fs::create_dir_all(&data).with_context(|| format!("{}", data.display()))?;
    let mut command = Command::new("redis-server");
    command
        .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&data);
    if cluster {
        command.args(["--cluster-enabled", "yes"]);
    }
    processes.start(name, command, Ready::Accepts(addr))?;
    Ok(addr)
}

fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Starts `count` routers on `tier`, each one process, and waits until
/// every one's link to Redis is up.
fn start_fleet(
    processes: &mut Processes,
    setup: &Setup<'_>,
    tier: &Tier,
    count: usize,
) -> Result<Vec<Router>> {
    let cert = setup.certificate;
    let mut routers = Vec::new();
    for i in 0..count {
        let name = format!("router-{i}");
        let mut command = Command::new(setup.bin);
        command
            .arg("--https")
            .arg(format!(
                "127.0.0.1:0,{},{}",
                cert.cert.display(),
                cert.key.display()
            ))
            .args(["--http-to", &format!("http://{}", setup.backend)])
            .args(["--cache", "100000", "--ssl-sessions-use-cache"])
            .args(["--ssl-sessions-timeout", "600"])
            .args(["--https-session-context", "fleet"])
            .args(["--stats", "127.0.0.1:0"])
            .arg("--cluster-key")
            .arg(setup.key)
            .args(["--cache-redis", &tier.url]);
        if let Some(ms) = setup.redis_timeout {
            command.args(["--cache-redis-timeout", &ms.to_string()]);
        }
        let pid = processes.start_cachet(&name, command)?;
        let log = processes.log(&name);
        let listening = |what: &str| -> Result<SocketAddr> {
            let prefix = format!("cachet: listening {what} ");
            log.lines()
                .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
                .with_context(|| format!("{name} printed no `{prefix}ADDR` line:\n{log}"))
        };
        routers.push(Router {
            pid,
            https: listening("https")?,
            stats: listening("stats")?,
        });
    }
    wait_for("every router to reach Redis", || {
        routers
            .iter()
            .all(|r| stats(r).is_ok_and(|s| s["redis"]["connected"].as_u64() == Some(1)))
    })?;
    Ok(routers)
}

fn stats(router: &Router) -> Result<serde_json::Value> {
    read_stats(&router.stats.to_string())
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        if Instant::now() > deadline {
            return Err(anyhow!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The resumption loads, the ticket race and the table per router.
fn measure(setup: &Setup<'_>, tier: &Tier, plan: &Plan) -> Result<()> {
    let mut processes = Processes::default();
    let routers = start_fleet(&mut processes, setup, tier, plan.routers)?;
    let addrs: Vec<SocketAddr> = routers.iter().map(|r| r.https).collect();
    println!(
        "\n{} routers, {}; {CLIENTS} clients round-robin; cache-redis-timeout {}",
        plan.routers,
        tier.label,
        plan.redis_timeout
            .map_or_else(|| "default".to_owned(), |ms| format!("{ms} ms"))
    );
    for tls in [Tls::V12, Tls::V13] {
        let pressure = Pressure {
            connections: CLIENTS,
            duration: LOAD_BOUND,
            rate: None,
            handshakes: Some(plan.attempts + CLIENTS as u64),
            timeout: TIMEOUT,
        };
        let outcome = load::run(setup.bin, &addrs, Load::Resumed(tls), pressure)?;
        println!(
            "  TLS {}: {} of {} attempts resumed ({:.2}%), {} errors, {:.0} handshakes/s",
            tls.as_str(),
            outcome.handshakes.offered_resumed,
            outcome.handshakes.offered,
            100.0 * outcome.handshakes.resumption_ratio.unwrap_or(0.0),
            outcome.errors.total,
            outcome.handshakes.per_s
        );
    }
    let race = load::ticket_race(setup.bin, &addrs, plan.races, TIMEOUT)?;
    println!(
        "  ticket race: {} tickets each offered to {} routers at once: {} resumed once, \
         {} nowhere, {} twice or more ({} errors)",
        race.counts.rounds,
        plan.routers - 1,
        race.counts.resumed_once,
        race.counts.resumed_nowhere,
        race.counts.double_resumptions,
        race.errors
    );
    let mut table = String::new();
    writeln!(
        table,
        "  {:<7} {:>8} {:>8} {:>10} {:>10} {:>9} {:>13} {:>9}",
        "router", "full", "resumed", "redis get", "redis take", "sets", "down/t/c/o", "RSS MiB"
    )
    .expect("writing to a String");
    for (i, router) in routers.iter().enumerate() {
        let s = stats(router)?;
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let h = &s["tls"]["handshakes"];
        let r = &s["redis"];
        let errors = format!(
            "{}/{}/{}/{}",
            n(&r["skipped_down"]),
            n(&r["errors_timeout"]),
            n(&r["errors_connection"]),
            n(&r["errors_full"]) + n(&r["errors_reply"]) + n(&r["bad_values"])
        );
        let footprint = memory::of_tree(router.pid)?;
        writeln!(
            table,
            "  {:<7} {:>8} {:>8} {:>10} {:>10} {:>9} {:>13} {:>9.1}",
            i + 1,
            n(&h["tls12"]["full"]) + n(&h["tls13"]["full"]),
            n(&h["tls12"]["resumed"]) + n(&h["tls13"]["resumed"]),
            format!("{}/{}", n(&r["get_hits"]), n(&r["gets"])),
            format!("{}/{}", n(&r["take_hits"]), n(&r["takes"])),
            n(&r["sets"]),
            errors,
            footprint.rss_kib as f64 / 1024.0
        )
        .expect("writing to a String");
    }
    print!("{table}");
    println!(
        "  redis get, take: hits/commands; down/t/c/o: lookups and writes skipped while the \
         link was down, commands timed out, connection errors, other errors"
    );
    if let Some(router) = routers.first() {
        let r = &stats(router)?["redis"];
        println!(
            "  router 1's Redis commands: p50 <= {} us, p99 <= {} us",
            r["latency_p50_us"], r["latency_p99_us"]
        );
    }
    let (mut keys, mut bytes) = (0u64, 0u64);
    for server in &tier.servers {
        keys += redis_cli(*server, &["DBSIZE"])
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        bytes += redis_cli(*server, &["INFO", "memory"])
            .lines()
            .find_map(|line| {
                line.strip_prefix("used_memory:")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
    }
    let sample = tier.servers.iter().find_map(|server| {
        let key = redis_cli(*server, &["RANDOMKEY"]).trim().to_owned();
        (!key.is_empty()).then(|| {
            let field = |args: &[&str]| redis_cli(*server, args).trim().parse::<u64>().unwrap_or(0);
            (field(&["STRLEN", &key]), field(&["MEMORY", "USAGE", &key]))
        })
    });
    println!(
        "  Redis holds {keys} sessions in {:.1} MiB in all{}",
        bytes as f64 / (1024.0 * 1024.0),
        sample.map_or_else(String::new, |(value, usage)| format!(
            "; one sampled: a {value}-byte sealed value, {usage} bytes with its key and Redis's overhead"
        ))
    );
    Ok(())
}

/// Memory per router at 2 routers and at `routers`, each router under the
/// same load: with Redis, what a router holds does not grow with the fleet.
fn memory_by_fleet_size(setup: &Setup<'_>, tier: &Tier, routers: usize) -> Result<()> {
    println!(
        "\nmemory per router, {CLIENTS_PER_ROUTER} clients and {RATE_PER_ROUTER} new sessions/s \
         per router for {MEMORY_LOAD:?}:"
    );
    let mut per_router = Vec::new();
    for count in [2, routers] {
        let mut processes = Processes::default();
        let fleet = start_fleet(&mut processes, setup, tier, count)?;
        let addrs: Vec<SocketAddr> = fleet.iter().map(|r| r.https).collect();
        let pressure = Pressure {
            connections: CLIENTS_PER_ROUTER * count,
            duration: MEMORY_LOAD,
            rate: Some(RATE_PER_ROUTER * count as u32),
            handshakes: None,
            timeout: TIMEOUT,
        };
        let outcome = load::run(setup.bin, &addrs, Load::New(Tls::V12), pressure)?;
        // RSS, not PSS: PSS divides the binary's shared pages among the
        // routers, so it would fall with the fleet's size for no reason of
        // cachet's.
        let rss: Vec<f64> = fleet
            .iter()
            .map(|r| memory::of_tree(r.pid).map(|f| f.rss_kib as f64 / 1024.0))
            .collect::<Result<_, _>>()?;
        let items: u64 = fleet
            .iter()
            .map(|r| stats(r).map(|s| s["cache"]["items"].as_u64().unwrap_or(0)))
            .sum::<Result<u64>>()?;
        let mean = rss.iter().sum::<f64>() / rss.len() as f64;
        println!(
            "  {count} routers: {:.0} new TLS 1.2 sessions/s in all; RSS per router {mean:.1} MiB \
             (min {:.1}, max {:.1}); sessions in each router's cache {}",
            outcome.handshakes.per_s,
            rss.iter().copied().fold(f64::MAX, f64::min),
            rss.iter().copied().fold(0.0, f64::max),
            items / count as u64
        );
        per_router.push(mean);
    }
    println!(
        "  {routers} routers vs 2: {:+.1}% memory per router",
        100.0 * (per_router[1] / per_router[0] - 1.0)
    );
    Ok(())
}

/// Redis killed (SIGKILL) in the middle of a load and restarted (empty)
/// on the same port. The figures come from the routers' own counters,
/// read while the load still runs (the load generator drops what is in
/// flight when it stops, which the routers would count as failures):
/// failed handshakes, how long until every router is back on Redis, and
/// resumption by half second after Redis returned.
fn redis_killed_under_load(
    setup: &Setup<'_>,
    tier: &Tier,
    routers: usize,
    redis: &mut Processes,
    addr: SocketAddr,
) -> Result<()> {
    const LOAD: Duration = Duration::from_secs(11);
    const KILL_AT: Duration = Duration::from_secs(3);
    const BACK_AT: Duration = Duration::from_secs(6);
    const WINDOW: Duration = Duration::from_millis(500);
    const WINDOWS: usize = 8;
    let mut processes = Processes::default();
    let fleet = start_fleet(&mut processes, setup, tier, routers)?;
    let addrs: Vec<SocketAddr> = fleet.iter().map(|r| r.https).collect();
    let pressure = Pressure {
        connections: CLIENTS,
        duration: LOAD,
        rate: None,
        handshakes: None,
        timeout: TIMEOUT,
    };
    // (failed, full, resumed) summed over the fleet.
    let handshakes = || -> Result<(u64, u64, u64)> {
        let mut sum = (0, 0, 0);
        for router in &fleet {
            let s = stats(router)?;
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            let (tls, h) = (&s["tls"], &s["tls"]["handshakes"]);
            sum.0 += n(&tls["failures"]) + n(&tls["timeouts"]);
            sum.1 += n(&h["tls12"]["full"]) + n(&h["tls13"]["full"]);
            sum.2 += n(&h["tls12"]["resumed"]) + n(&h["tls13"]["resumed"]);
        }
        Ok(sum)
    };
    let started = Instant::now();
    let (series, failed, reconnected) = std::thread::scope(|scope| -> Result<_> {
        let load = scope.spawn(|| load::run(setup.bin, &addrs, Load::Resumed(Tls::V13), pressure));
        std::thread::sleep(KILL_AT);
        redis.kill("redis");
        std::thread::sleep(BACK_AT - KILL_AT);
        *redis = Processes::default();
        start_redis(redis, setup.dir, "redis", Some(addr), false)?;
        let back = Instant::now();
        let mut series = Vec::new();
        let mut last = handshakes()?;
        let mut reconnected = None;
        for window in 1..=WINDOWS {
            while back.elapsed() < WINDOW * window as u32 {
                if reconnected.is_none()
                    && fleet.iter().all(|r| {
                        stats(r).is_ok_and(|s| s["redis"]["connected"].as_u64() == Some(1))
                    })
                {
                    reconnected = Some(back.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let now = handshakes()?;
            let (full, resumed) = (now.1 - last.1, now.2 - last.2);
            series.push(100.0 * resumed as f64 / (full + resumed).max(1) as f64);
            last = now;
        }
        let failed = handshakes()?.0;
        load.join().map_err(|_| anyhow!("the load panicked"))??;
        Ok((series, failed, reconnected))
    })?;
    let series: Vec<String> = series.iter().map(|r| format!("{r:.1}%")).collect();
    println!(
        "\nRedis killed under load ({routers} routers, TLS 1.3, {CLIENTS} clients; killed at {KILL_AT:?}, \
         back at {BACK_AT:?}; load of {LOAD:?} read at {:?}):\n  \
         {failed} failed handshakes at the routers; every router back on Redis {} after it returned\n  \
         resumed, by half second after Redis returned: {}",
        started.elapsed(),
        reconnected.map_or_else(|| "never".to_owned(), |d| format!("{} ms", d.as_millis())),
        series.join(", ")
    );
    Ok(())
}
