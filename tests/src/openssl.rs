//! `openssl s_client` as an independent TLS client, with session files and
//! ALPN.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::tools;

/// Bound on one s_client run: far above what a loaded machine needs.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Panics with a clear message when openssl is missing: these tests must
/// not pass by not running.
pub fn require_openssl() {
    tools::require("openssl", &["version"], "openssl");
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
    let mut command = s_client_command(addr, server_name, ca);
    command.arg(tls).arg("-sess_out").arg(sess_out);
    if let Some(sess_in) = sess_in {
        command.arg("-sess_in").arg(sess_in);
    }
    let request = format!("GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
    // Bounded: the router closes after its response.
    let output = tools::run_bounded(&mut command, request.as_bytes(), TIMEOUT);
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

/// Offers the ALPN protocols `alpn` (comma-separated, preferred first),
/// sends `request` and returns what s_client printed, stdout then stderr:
/// the handshake summary (`ALPN protocol: NAME` or `No ALPN negotiated`)
/// and the response. The request must make the router close the
/// connection (HTTP/1.0, or `Connection: close`). s_client's exit status
/// is not judged: it fails when the router closes without close_notify,
/// as it does on an HTTP/2 connection that got HTTP/1 bytes.
pub fn s_client_alpn(
    addr: SocketAddr,
    server_name: &str,
    ca: &Path,
    alpn: &str,
    request: &str,
) -> String {
    let mut command = s_client_command(addr, server_name, ca);
    command.args(["-alpn", alpn]);
    let output = tools::run_bounded(&mut command, request.as_bytes(), TIMEOUT);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// s_client trusting `ca`, asking for `server_name`, reading until the
/// router closes.
fn s_client_command(addr: SocketAddr, server_name: &str, ca: &Path) -> Command {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", server_name, "-ign_eof"])
        .arg("-CAfile")
        .arg(ca);
    command
}
