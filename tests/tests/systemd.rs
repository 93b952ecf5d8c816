//! systemd's notification protocol, as a `Type=notify` (or
//! `Type=notify-reload`) unit sees it: the router says `READY=1` once it
//! serves, `RELOADING=1` then `READY=1` around a SIGHUP reload, and
//! `STOPPING=1` when asked to stop. The test plays systemd's part: it binds
//! the datagram socket and names it in `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use cachet_tests::{cachet_bin, repo_root, temp_file, Router};

/// Generous: a reload rebuilds certificates on a slow, shared machine.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

struct FakeSystemd {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(NOTIFY_TIMEOUT)).unwrap();
        FakeSystemd {
            socket,
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    /// The next notification, as `KEY=VALUE` lines.
    fn next(&self, router: &Router) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).unwrap_or_else(|error| {
            panic!(
                "no notification within {NOTIFY_TIMEOUT:?} ({error}); log:\n{}",
                router.log()
            )
        });
        String::from_utf8(buf[..n].to_vec())
            .expect("notifications are text")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Nothing more arrived (the router has exited).
    fn assert_silent(&self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => panic!(
                "unexpected notification {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
}

fn lifecycle(extra: &[&str]) {
    let systemd = FakeSystemd::new();
    let mut args = vec!["--https", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let router = Router::start_with_env(&args, &[("NOTIFY_SOCKET", &systemd.path)]);

    let ready = systemd.next(&router);
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");

    router.signal("HUP");
    let reloading = systemd.next(&router);
    assert!(
        reloading.contains(&"RELOADING=1".to_owned()),
        "{reloading:?}"
    );
    // Type=notify-reload needs the reload's start on CLOCK_MONOTONIC.
    let usec: u64 = reloading
        .iter()
        .find_map(|line| line.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(usec > 0);
    let ready_again = systemd.next(&router);
    assert!(
        ready_again.contains(&"READY=1".to_owned()),
        "{ready_again:?}"
    );

    router.signal("TERM");
    let stopping = systemd.next(&router);
    assert!(stopping.contains(&"STOPPING=1".to_owned()), "{stopping:?}");
    let status = router.wait_for_exit();
    assert!(status.success(), "{status:?}");
    // Workers never speak to systemd: only the main process may.
    systemd.assert_silent();
}

#[test]
fn a_lone_router_notifies_ready_reloading_and_stopping() {
    lifecycle(&[]);
}

#[test]
fn a_master_notifies_and_its_workers_stay_silent() {
    lifecycle(&["--http-processes", "2"]);
}

#[test]
fn without_notify_socket_nothing_changes() {
    // The tests' harness starts routers without NOTIFY_SOCKET all the time;
    // a relative name (not a socket systemd would give) must not stop one.
    let router = Router::start_with_env(
        &["--https", "127.0.0.1:0"],
        &[("NOTIFY_SOCKET", "not/absolute")],
    );
    assert!(
        router.wait_for_log("cannot notify systemd", NOTIFY_TIMEOUT),
        "{}",
        router.log()
    );
    let status = router.terminate();
    assert!(status.success(), "{status:?}");
}

/// The example unit file is one systemd accepts: `systemd-analyze verify`
/// (Debian's `systemd`) checks every directive and that the commands exist.
#[test]
fn the_example_unit_verifies() {
    let unit = std::fs::read_to_string(repo_root().join("examples/systemd/cachet.service"))
        .expect("examples/systemd/cachet.service");
    let (dir, ini) = temp_file("router.ini", "[cachet]\nhttps = 127.0.0.1:0\n");
    let unit = unit
        .replace("/usr/local/bin/cachet", cachet_bin().to_str().unwrap())
        .replace("/etc/cachet/router.ini", ini.to_str().unwrap());
    let path = dir.path().join("cachet.service");
    std::fs::write(&path, unit).unwrap();
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package `systemd`) must be installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains("cachet.service"),
        "systemd-analyze has remarks on the unit:\n{stderr}"
    );

    // The unit's ExecStartPre: the check the unit runs passes on this file.
    let check = cachet_tests::run_to_exit(&["--check", "--ini", ini.to_str().unwrap()]);
    assert!(check.status.success(), "{check:?}");
}
