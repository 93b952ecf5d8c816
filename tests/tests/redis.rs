//! The Redis tier against real `redis-server` processes: one server, and a
//! Redis Cluster of three masters. Routers share nothing but Redis (no
//! mesh) unless a test says so; every router runs two worker processes,
//! each with its own connection.
//!
//! * sessions made on any router resume on every other (rustls and
//!   `openssl s_client`, TLS 1.2 and 1.3), and TLS 1.3 tickets never sit
//!   in a router's cache;
//! * a used ticket resumes nowhere, and a ticket offered to two routers at
//!   the same instant resumes at most once (the issuer included);
//! * Redis killed, stopped and restarted under load: no handshake fails,
//!   and resumption comes back with Redis;
//! * nothing read from Redis tells a session id or a secret;
//! * the mesh and Redis together: with Redis gone, the mesh still serves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use cachet_tests::client::Tls;
use cachet_tests::cluster::{
    fifo_config, mesh_of, resumes, start_node, ticket_race, without, Harness, NAME, SETTLE,
};
use cachet_tests::openssl::{require_openssl, s_client, saved_session, Session};
use cachet_tests::redis_server::{RedisCluster, RedisServer};
use cachet_tests::{counter, wait_until, Router};
use serde_json::Value;

/// `cache-redis-timeout` of the routers: Redis answers on loopback in
/// microseconds, but a loaded test machine must not turn a slow answer
/// into a miss the test would count.
const REDIS_TIMEOUT_MS: &str = "2000";
/// Worker processes per router.
const WORKERS: u64 = 2;

/// The arguments of a router that shares sessions through `redis` only.
fn redis_args(h: &Harness, redis: &str, timeout_ms: &str) -> Vec<String> {
    let unused = SocketAddr::from(([127, 0, 0, 1], 9));
    let args = h.args(unused, &[], &h.key);
    let args = without(args, "--cache-udp-server");
    let args = without(args, "--cache-udp-pull-timeout");
    let mut args = without(args, "--cache-udp-key");
    for (option, value) in [
        ("--cluster-key", h.key.display().to_string()),
        ("--cache-redis", redis.to_owned()),
        ("--cache-redis-timeout", timeout_ms.to_owned()),
        ("--http-processes", WORKERS.to_string()),
        ("--stats-http", "127.0.0.1:0".to_owned()),
    ] {
        args.extend([option.to_owned(), value]);
    }
    args
}

/// `count` routers on `redis`, each with every worker connected.
async fn routers(h: &Harness, redis: &str, count: usize, timeout_ms: &str) -> Vec<Router> {
    let routers: Vec<Router> = (0..count)
        .map(|_| start_node(&redis_args(h, redis, timeout_ms)))
        .collect();
    for router in &routers {
        wait_connected(router, WORKERS).await;
    }
    routers
}

/// What most tests here start from: a harness, one Redis server and
/// `count` routers sharing it, each with every worker connected.
async fn one_redis(count: usize, timeout_ms: &str) -> (Harness, RedisServer, Vec<Router>) {
    let h = Harness::new().await;
    let redis = RedisServer::start(h.pki.dir());
    let routers = routers(&h, &redis.url(), count, timeout_ms).await;
    (h, redis, routers)
}

fn redis_stats(router: &Router) -> Value {
    let stats = router.stats();
    assert!(stats["redis"].is_object(), "no redis stats: {stats:#}");
    stats["redis"].clone()
}

async fn wait_connected(router: &Router, processes: u64) {
    let connected = wait_until(SETTLE, || {
        counter(&redis_stats(router), "connected") == processes
    })
    .await;
    assert!(
        connected,
        "{processes} processes never connected: {:#}\n{}",
        redis_stats(router),
        router.log()
    );
}

/// Every ordered pair of routers, `rounds` times: a fresh client's full
/// handshake on one, then its resumption on the other. Returns how many
/// resumed, of how many tried.
async fn cross_resumption(
    h: &Harness,
    routers: &[Router],
    version: Tls,
    rounds: usize,
) -> (usize, usize) {
    let (mut resumed, mut tried) = (0, 0);
    for _ in 0..rounds {
        for (i, issuer) in routers.iter().enumerate() {
            for (j, other) in routers.iter().enumerate() {
                if i == j {
                    continue;
                }
                let config = fifo_config(&h.pki, version);
                assert!(
                    !resumes(&config, issuer.addr()).await,
                    "a new client resumed"
                );
                tried += 1;
                resumed += usize::from(resumes(&config, other.addr()).await);
            }
        }
    }
    (resumed, tried)
}

fn failures(router: &Router) -> u64 {
    let tls = &router.stats()["tls"];
    counter(tls, "failures") + counter(tls, "timeouts")
}

/// Sessions made on any of three routers resume on every other through
/// Redis alone; TLS 1.3 tickets stay out of the routers' caches; a used
/// ticket does not resume again. rustls and `openssl s_client`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_on_every_router_through_redis() {
    require_openssl();
    let (h, redis, routers) = one_redis(3, REDIS_TIMEOUT_MS).await;

    let (resumed, tried) = cross_resumption(&h, &routers, Tls::V13, 5).await;
    assert_eq!(resumed, tried, "TLS 1.3: {resumed} of {tried} resumed");
    for router in &routers {
        assert_eq!(router.cache_items(), 0, "a ticket sits in a router's cache");
    }
    assert!(redis.dbsize() > 0, "Redis holds no ticket");
    let (resumed, tried) = cross_resumption(&h, &routers, Tls::V12, 5).await;
    assert_eq!(resumed, tried, "TLS 1.2: {resumed} of {tried} resumed");

    // openssl s_client: made on one router, resumed on the next; a used
    // TLS 1.3 ticket then resumes nowhere.
    let dir = h.pki.dir();
    for tls in ["-tls1_2", "-tls1_3"] {
        let (made, used, again) = (
            dir.join("made.pem"),
            dir.join("used.pem"),
            dir.join("again.pem"),
        );
        let (kind, _) = s_client(routers[0].addr(), tls, NAME, &h.pki.ca_pem, None, &made);
        assert_eq!(kind, Session::New);
        let (kind, _) = s_client(
            routers[1].addr(),
            tls,
            NAME,
            &h.pki.ca_pem,
            Some(&made),
            &used,
        );
        assert_eq!(
            kind,
            Session::Reused,
            "{tls} did not resume on another router"
        );
        if tls == "-tls1_3" {
            for router in [&routers[0], &routers[2]] {
                let (kind, _) =
                    s_client(router.addr(), tls, NAME, &h.pki.ca_pem, Some(&made), &again);
                assert_eq!(kind, Session::New, "a used ticket resumed again");
            }
        }
    }

    let figures: Vec<Value> = routers.iter().map(redis_stats).collect();
    let sum = |field: &str| figures.iter().map(|f| counter(f, field)).sum::<u64>();
    assert!(
        sum("take_hits") >= 30 && sum("get_hits") >= 30,
        "{figures:#?}"
    );
    for field in [
        "errors_timeout",
        "errors_connection",
        "errors_full",
        "errors_reply",
        "bad_values",
    ] {
        assert_eq!(sum(field), 0, "{field}: {figures:#?}");
    }
    let metrics = routers[0].metrics();
    assert!(
        metrics.contains("cachet_redis_hits_total{command=\"take\"}")
            && metrics.contains("cachet_redis_connected_processes 2")
            && metrics.contains("cachet_redis_command_seconds_bucket"),
        "{metrics}"
    );
}

/// A used TLS 1.3 ticket offered to every other router resumes nowhere;
/// a fresh ticket offered to two routers at the same instant (half the
/// time its issuer and another) resumes at most once, over 1000 tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_resumes_once_in_the_whole_fleet() {
    const USED: usize = 500;
    const RACES: usize = 1000;
    require_openssl();
    let (h, _redis, routers) = one_redis(3, REDIS_TIMEOUT_MS).await;
    let addrs: Vec<SocketAddr> = routers.iter().map(Router::addr).collect();
    let dir = h.pki.dir();

    let mut resurrected = 0;
    for round in 0..USED {
        let issuer = round % 3;
        let (ticket, used, again) = (
            dir.join(format!("used{round}.pem")),
            dir.join(format!("used{round}-1.pem")),
            dir.join(format!("used{round}-2.pem")),
        );
        assert_eq!(h.s_client13(addrs[issuer], None, &ticket), Session::New);
        let user = (issuer + 1) % 3;
        assert_eq!(
            h.s_client13(addrs[user], Some(&ticket), &used),
            Session::Reused
        );
        for other in (0..3).filter(|&r| r != user) {
            if h.s_client13(addrs[other], Some(&ticket), &again) == Session::Reused {
                resurrected += 1;
            }
        }
    }
    assert_eq!(
        resurrected,
        0,
        "used tickets resumed again: {resurrected} of {}",
        2 * USED
    );

    ticket_race(&h, &addrs, RACES).assert_once_each("through Redis");
}

/// A load of clients hopping between two routers while Redis is killed,
/// restarted empty, then stopped (SIGSTOP) and continued: no handshake
/// fails (they become full handshakes), and once Redis is back,
/// resumption across routers is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_or_stopped_under_load_fails_no_handshake() {
    // A Redis timeout shorter than elsewhere, so that the stopped Redis
    // costs the load little, and still far above what a loaded machine
    // takes to answer.
    let (h, mut redis, routers) = one_redis(2, "500").await;
    let (h, routers) = (Arc::new(h), Arc::new(routers));

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let load = {
        let (h, routers, stop, rounds) = (h.clone(), routers.clone(), stop.clone(), rounds.clone());
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let config = fifo_config(
                    &h.pki,
                    if rounds.load(Relaxed) % 2 == 0 {
                        Tls::V12
                    } else {
                        Tls::V13
                    },
                );
                // `resumes` fails the load (and the test) on any error.
                resumes(&config, routers[0].addr()).await;
                resumes(&config, routers[1].addr()).await;
                rounds.fetch_add(1, Relaxed);
            }
        })
    };
    let more_rounds = |n: u64| {
        let rounds = rounds.clone();
        let target = rounds.load(Relaxed) + n;
        async move {
            assert!(
                wait_until(SETTLE, || rounds.load(Relaxed) >= target).await,
                "the load stalled"
            )
        }
    };
    let all_down = |routers: &[Router]| {
        routers
            .iter()
            .all(|r| counter(&redis_stats(r), "connected") == 0)
    };

    more_rounds(20).await;
    redis.kill();
    assert!(
        wait_until(SETTLE, || all_down(&routers)).await,
        "Redis's death went unnoticed"
    );
    more_rounds(20).await;

    let restarted = Instant::now();
    redis.restart();
    for router in routers.iter() {
        wait_connected(router, WORKERS).await;
    }
    eprintln!(
        "Redis restarted: every worker connected after {:?}",
        restarted.elapsed()
    );
    more_rounds(20).await;

    redis.signal("STOP");
    assert!(
        wait_until(SETTLE, || all_down(&routers)).await,
        "a stopped Redis went unnoticed"
    );
    more_rounds(20).await;
    redis.signal("CONT");
    for router in routers.iter() {
        wait_connected(router, WORKERS).await;
    }
    more_rounds(10).await;
    stop.store(true, Relaxed);
    load.await.expect("a handshake of the load failed");

    for router in routers.iter() {
        assert_eq!(
            failures(router),
            0,
            "failed handshakes: {:#}",
            router.stats()["tls"]
        );
    }
    let figures: Vec<Value> = routers.iter().map(redis_stats).collect();
    let sum = |field: &str| figures.iter().map(|f| counter(f, field)).sum::<u64>();
    assert!(
        sum("errors_connection") + sum("skipped_down") > 0,
        "{figures:#?}"
    );
    assert!(sum("connects") >= 3 * WORKERS, "{figures:#?}");

    // Back: resumption across routers, as before Redis went away.
    let (resumed, tried) = cross_resumption(&h, &routers, Tls::V13, 10).await;
    assert_eq!(
        resumed, tried,
        "after Redis came back: {resumed} of {tried} resumed"
    );
}

/// Whoever reads Redis learns neither which session ids exist nor any
/// secret: every key and value is read back and searched for every
/// session id, ticket and master key the clients saw, raw and in hex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_in_redis_tells_session_ids_or_secrets() {
    require_openssl();
    let (h, redis, routers) = one_redis(2, REDIS_TIMEOUT_MS).await;
    let dir = h.pki.dir();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for round in 0..20 {
        for tls in ["-tls1_2", "-tls1_3"] {
            let out = dir.join(format!("secret{round}{tls}.pem"));
            let (kind, _) = s_client(
                routers[round % 2].addr(),
                tls,
                NAME,
                &h.pki.ca_pem,
                None,
                &out,
            );
            assert_eq!(kind, Session::New);
            let saved = saved_session(&out);
            assert!(
                saved.master_key.len() >= 32,
                "no secret in {}",
                out.display()
            );
            for found in [saved.session_id, saved.ticket, saved.master_key] {
                if found.len() >= 16 {
                    secrets.push(found);
                }
            }
        }
    }
    let entries = redis.entries();
    assert!(entries.len() >= 20, "Redis holds {} entries", entries.len());
    let hex = |bytes: &[u8], upper: bool| -> Vec<u8> {
        bytes
            .iter()
            .flat_map(|b| {
                if upper {
                    format!("{b:02X}")
                } else {
                    format!("{b:02x}")
                }
                .into_bytes()
            })
            .collect()
    };
    for (key, value) in &entries {
        assert!(
            key.starts_with(b"cachet:") && key.len() == 7 + 32,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
        for secret in &secrets {
            // Any 16 bytes of a secret would do to tell it.
            let probe = &secret[..16];
            for form in [probe.to_vec(), hex(probe, false), hex(probe, true)] {
                for field in [key, value] {
                    assert!(
                        !field.windows(form.len()).any(|w| w == form.as_slice()),
                        "a session id or secret is readable in Redis"
                    );
                }
            }
        }
    }
}

/// A Redis Cluster of three masters: sessions resume across routers, and
/// spread over the masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_sessions() {
    require_openssl();
    let h = Harness::new().await;
    let cluster = RedisCluster::start(h.pki.dir());
    let routers = routers(&h, &cluster.url(), 3, REDIS_TIMEOUT_MS).await;
    for version in [Tls::V12, Tls::V13] {
        let (resumed, tried) = cross_resumption(&h, &routers, version, 4).await;
        assert_eq!(resumed, tried, "{version:?}: {resumed} of {tried} resumed");
    }
    let held: Vec<u64> = cluster.nodes.iter().map(RedisServer::dbsize).collect();
    assert!(
        held.iter().filter(|&&n| n > 0).count() >= 2,
        "sessions on one master only: {held:?}"
    );
    let addrs: Vec<SocketAddr> = routers.iter().map(Router::addr).collect();
    ticket_race(&h, &addrs, 100).assert_once_each("through a Redis Cluster");
}

/// The mesh and Redis together: sessions resume across routers with
/// Redis, and still do once Redis is gone, through the mesh (TLS 1.2
/// sessions pushed, TLS 1.3 tickets pulled from the router that issued
/// them while Redis was down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_serves_when_redis_is_gone() {
    let h = Harness::new().await;
    let mut redis = RedisServer::start(h.pki.dir());
    let url = redis.url();
    let (routers, _) = mesh_of(2, |_, addr, peers| {
        let mut args = h.args(addr, peers, &h.key);
        args.extend([
            "--cache-redis".to_owned(),
            url.clone(),
            "--cache-redis-timeout".to_owned(),
            REDIS_TIMEOUT_MS.to_owned(),
        ]);
        args
    });
    for router in &routers {
        wait_connected(router, 1).await;
    }
    for version in [Tls::V12, Tls::V13] {
        let (resumed, tried) = cross_resumption(&h, &routers, version, 5).await;
        assert_eq!(
            resumed, tried,
            "{version:?} with Redis: {resumed} of {tried}"
        );
    }
    let hits: u64 = routers
        .iter()
        .map(|r| counter(&redis_stats(r), "take_hits"))
        .sum();
    assert!(hits >= 10, "tickets did not come from Redis");
    redis.kill();
    assert!(
        wait_until(SETTLE, || routers
            .iter()
            .all(|r| counter(&redis_stats(r), "connected") == 0))
        .await,
        "Redis's death went unnoticed"
    );
    for version in [Tls::V12, Tls::V13] {
        let (resumed, tried) = cross_resumption(&h, &routers, version, 5).await;
        assert_eq!(
            resumed, tried,
            "{version:?} without Redis: {resumed} of {tried}"
        );
    }
}

/// Redis full (`maxmemory` reached, `noeviction`): writes are refused and
/// counted, no handshake fails, and a ticket Redis refused stays with the
/// router that issued it, which still resumes it once. With room again,
/// sessions resume across routers as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_costs_no_handshake() {
    let (h, redis, routers) = one_redis(2, REDIS_TIMEOUT_MS).await;
    let _: String = redis.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let _: String = redis.command(&["CONFIG", "SET", "maxmemory", "1"]);

    for _ in 0..10 {
        let config = fifo_config(&h.pki, Tls::V13);
        assert!(!resumes(&config, routers[0].addr()).await);
        assert!(
            resumes(&config, routers[0].addr()).await,
            "a ticket Redis refused did not resume on its issuer"
        );
    }
    let full: u64 = routers
        .iter()
        .map(|r| counter(&redis_stats(r), "errors_full"))
        .sum();
    assert!(full >= 10, "{:#}", redis_stats(&routers[0]));
    for router in &routers {
        assert_eq!(failures(router), 0, "{:#}", router.stats()["tls"]);
    }

    let _: String = redis.command(&["CONFIG", "SET", "maxmemory", "0"]);
    let (resumed, tried) = cross_resumption(&h, &routers, Tls::V13, 5).await;
    assert_eq!(resumed, tried, "with room again: {resumed} of {tried}");
}
