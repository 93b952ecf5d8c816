//! `openssl s_client` as an independent TLS client, with session files.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bound on one s_client exchange: far above what a loaded machine needs.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Panics with a clear message when openssl is missing: these tests must
/// not pass by not running.
pub fn require_openssl() {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`openssl` is not installed; these tests need it (apt-get install openssl)"
    );
}

/// How s_client's session summary line read.
#[derive(Debug, PartialEq, Eq)]
pub enum Session {
    New,
    Reused,
}

/// Runs one `openssl s_client` exchange: handshake, a GET, and the whole
/// response (`-ign_eof` keeps reading until the router closes, so TLS 1.3
/// tickets arrive before `-sess_out` is written).
pub fn s_client(
    addr: SocketAddr,
    tls: &str,
    server_name: &str,
    ca: &Path,
    sess_in: Option<&Path>,
    sess_out: &Path,
) -> (Session, String) {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string(), tls])
        .args(["-servername", server_name, "-ign_eof"])
        .arg("-CAfile")
        .arg(ca)
        .arg("-sess_out")
        .arg(sess_out);
    if let Some(sess_in) = sess_in {
        command.arg("-sess_in").arg(sess_in);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    // Bounded: the router closes after its response.
    let waiter = std::thread::spawn(move || child.wait_with_output());
    assert!(
        crate::wait_until_blocking(EXCHANGE_TIMEOUT, || waiter.is_finished()),
        "openssl s_client did not finish within {EXCHANGE_TIMEOUT:?}"
    );
    let output = waiter.join().unwrap().expect("openssl s_client output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let session = if stdout.lines().any(|line| line.starts_with("Reused,")) {
        Session::Reused
    } else if stdout.lines().any(|line| line.starts_with("New,")) {
        Session::New
    } else {
        panic!(
            "no New/Reused line from s_client; stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    (session, stdout)
}
