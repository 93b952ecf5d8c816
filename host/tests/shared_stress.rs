//! Several processes hammer one shared cache at once, one of them is killed
//! mid-run, and the cache must come out consistent, with every value read
//! back belonging to the key it was read under.
//!
//! The child processes are this test binary again, started with the region's
//! descriptor in `STRESS_FD`; `stress_child` does nothing when run normally.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

use cachet::shared::{CacheGeometry, SharedRegion};
use cachet::sys::fd::inheritable;
use cachet_core::{Duration, Instant};

const FD_ENV: &str = "STRESS_FD";
const SEED_ENV: &str = "STRESS_SEED";
const OPS: u64 = 20_000;
/// A child prints this line once it is this far into its run: the victim
/// is killed after it, so it dies in the middle of its work (and quite
/// possibly holding the lock) however slowly processes start.
const RUNNING: &str = "STRESS running";
const RUNNING_AFTER: u64 = 1_000;
/// Bound on a child's run, and on the victim reaching `RUNNING`.
const CHILD_TIMEOUT: StdDuration = StdDuration::from_secs(120);

/// The value stored under key `k`: its length and bytes derive from `k`,
/// so a reader can tell a value that belongs to another key.
fn value_for(k: u64) -> Vec<u8> {
    let len = 1 + (k * 37 % 590) as usize;
    (0..len).map(|i| (k as usize * 31 + i) as u8).collect()
}

fn now() -> Instant {
    cachet::clock::now()
}

#[test]
fn stress_child() {
    let Ok(fd) = std::env::var(FD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    // SAFETY: the parent passed this inherited descriptor to this process.
    let fd = unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) };
    let region = SharedRegion::open(fd, 0).unwrap();
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut puts = 0u64;
    let mut out = vec![0u8; 600];
    for op in 0..OPS {
        if op == RUNNING_AFTER {
            println!("{RUNNING}");
        }
        let r = next();
        let k = r % 1000;
        let key = k.to_le_bytes();
        region
            .with_cache(|cache| match (r >> 32) % 10 {
                0..=3 => {
                    if cache
                        .put(
                            now(),
                            &key,
                            &value_for(k),
                            Duration::from_millis(1 + (r >> 40) % 500),
                        )
                        .is_ok()
                    {
                        puts += 1;
                    }
                }
                4..=6 => {
                    if let Some(v) = cache.get(now(), &key, &mut out).unwrap() {
                        assert_eq!(v, &value_for(k)[..], "key {k} read another key's value");
                    }
                }
                7 => {
                    if let Some(v) = cache.take(now(), &key, &mut out).unwrap() {
                        assert_eq!(v, &value_for(k)[..], "key {k} took another key's value");
                    }
                }
                8 => {
                    cache.delete(now(), &key);
                }
                _ => {
                    cache.sweep(now(), 16);
                }
            })
            .unwrap();
    }
    println!("STRESS puts={puts}");
}

#[test]
fn several_processes_hammer_one_cache() {
    let region = SharedRegion::create(Some(CacheGeometry {
        capacity: 256,
        block_size: 600,
    }))
    .unwrap();
    inheritable(region.fd()).unwrap();
    let fd = region.fd().as_raw_fd().to_string();
    let spawn = |seed: u64| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "stress_child", "--nocapture", "--test-threads=1"])
            .env(FD_ENV, &fd)
            .env(SEED_ENV, seed.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let workers: Vec<_> = (1..=4).map(|seed| spawn(seed * 7919)).collect();
    // One more process dies by SIGKILL in the middle of its run, quite
    // possibly while it holds the lock.
    let mut victim = spawn(424_242);
    let stdout = victim.stdout.take().expect("piped stdout");
    let (running, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let lines = std::io::BufReader::new(stdout).lines();
        // libtest prints the test's name on the same line.
        if lines
            .map_while(Result::ok)
            .any(|line| line.contains(RUNNING))
        {
            let _ = running.send(());
        }
    });
    let in_the_middle = started.recv_timeout(CHILD_TIMEOUT).is_ok();
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert!(
        in_the_middle,
        "the victim never got {RUNNING_AFTER} operations far"
    );

    let mut puts = 0;
    for mut child in workers {
        // Bounded: a process stuck on the lock fails the test, not CI.
        let deadline = std::time::Instant::now() + CHILD_TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("a stress process did not finish within {CHILD_TIMEOUT:?}");
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "a stress process failed:\n{stdout}"
        );
        puts += stdout
            .lines()
            // libtest prints the test's name on the same line.
            .find_map(|l| l.split("STRESS puts=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no tally in:\n{stdout}"))
            .parse::<u64>()
            .unwrap();
    }
    let (verified, counters) = region
        .with_cache(|cache| (cache.verify(), cache.counters()))
        .unwrap();
    assert_eq!(verified, Ok(()));
    assert!(counters.items <= 256);
    assert!(
        counters.sets >= puts,
        "every successful put was counted: {} < {puts}",
        counters.sets
    );
    assert!(
        counters.evictions > 0,
        "the cache was kept full: {counters:?}"
    );
}
