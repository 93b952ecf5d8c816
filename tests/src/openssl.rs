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

/// Why [`try_s_client`] could not tell a session.
#[derive(Debug, thiserror::Error)]
pub enum SClientError {
    #[error(transparent)]
    Run(#[from] tools::RunError),
    #[error("no New/Reused line from s_client to {addr}; stdout:\n{stdout}\nstderr:\n{stderr}")]
    NoSession {
        addr: SocketAddr,
        stdout: String,
        stderr: String,
    },
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
    try_s_client(addr, &[tls], server_name, ca, sess_in, sess_out)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// [`s_client`] to `localhost` offering the session saved in `session`,
/// and saving what replaces it there (TLS 1.3 tickets are single use).
pub fn s_client_again(addr: SocketAddr, tls: &str, ca: &Path, session: &Path) -> (Session, String) {
    s_client(addr, tls, "localhost", ca, Some(session), session)
}

/// [`s_client`] with more options than the version (`-ciphersuites`,
/// `-cipher`, ...), to `localhost`.
pub fn s_client_with(
    addr: SocketAddr,
    options: &[&str],
    ca: &Path,
    sess_in: Option<&Path>,
    sess_out: &Path,
) -> (Session, String) {
    try_s_client(addr, options, "localhost", ca, sess_in, sess_out)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// [`s_client`] for callers that carry on after a failure (xtask), with
/// any options (the version first): the session and what s_client printed
/// on stdout.
pub fn try_s_client(
    addr: SocketAddr,
    options: &[&str],
    server_name: &str,
    ca: &Path,
    sess_in: Option<&Path>,
    sess_out: &Path,
) -> Result<(Session, String), SClientError> {
    let mut command = s_client_command(addr, server_name, ca);
    command.args(options).arg("-sess_out").arg(sess_out);
    if let Some(sess_in) = sess_in {
        command.arg("-sess_in").arg(sess_in);
    }
    let request = format!("GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
    // Bounded: the router closes after its response.
    let output = tools::try_run_bounded(&mut command, request.as_bytes(), TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let session = if stdout.lines().any(|line| line.starts_with("Reused,")) {
        Session::Reused
    } else if stdout.lines().any(|line| line.starts_with("New,")) {
        Session::New
    } else {
        return Err(SClientError::NoSession {
            addr,
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    };
    Ok((session, stdout))
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

/// Runs `openssl s_client` to `localhost` with `options` and no request:
/// what it printed, stdout then stderr (a refused handshake's alert is
/// reported on stderr). Its exit status is not judged.
pub fn s_client_output(addr: SocketAddr, options: &[&str], ca: &Path) -> String {
    let mut command = s_client_command(addr, "localhost", ca);
    command.args(options);
    let output = tools::run_bounded(&mut command, b"", TIMEOUT);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What an `s_client -sess_out` file offers when given back with
/// `-sess_in`, as `openssl sess_id -text` prints it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SavedSession {
    /// `Session-ID`: what a TLS 1.2 ClientHello offers.
    pub session_id: Vec<u8>,
    /// `TLS session ticket`: what a TLS 1.3 ClientHello offers as its PSK
    /// identity (empty without one).
    pub ticket: Vec<u8>,
    /// The session's secret: TLS 1.2's `Master-Key`, TLS 1.3's
    /// `Resumption PSK`.
    pub master_key: Vec<u8>,
}

/// Reads an `s_client -sess_out` file with `openssl sess_id`.
pub fn saved_session(path: &Path) -> SavedSession {
    let mut command = Command::new("openssl");
    command
        .args(["sess_id", "-noout", "-text", "-in"])
        .arg(path);
    let output = tools::run_bounded(&mut command, b"", TIMEOUT);
    assert!(
        output.status.success(),
        "openssl sess_id {}",
        path.display()
    );
    parse_saved_session(&String::from_utf8_lossy(&output.stdout))
}

/// `sess_id -text`'s `Session-ID: HEX` line and the hex dump under `TLS
/// session ticket:` (lines `0000 - a3 44 ... d6-8d ...   ASCII`).
fn parse_saved_session(text: &str) -> SavedSession {
    let byte = |pair: &str| {
        u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("{pair:?} is not hex in:\n{text}"))
    };
    let mut session = SavedSession::default();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let hex_line = |value: &str| -> Vec<u8> {
            let value = value.trim();
            (0..value.len() / 2)
                .map(|i| byte(&value[2 * i..2 * i + 2]))
                .collect()
        };
        if let Some(id) = line.strip_prefix("Session-ID:") {
            session.session_id = hex_line(id);
        }
        if let Some(key) = line
            .strip_prefix("Master-Key:")
            .or_else(|| line.strip_prefix("Resumption PSK:"))
        {
            session.master_key = hex_line(key);
        }
        if line != "TLS session ticket:" {
            continue;
        }
        for dump in lines.by_ref() {
            let Some((offset, rest)) = dump.split_once(" - ") else {
                break;
            };
            if offset.len() != 4 || !offset.bytes().all(|b| b.is_ascii_hexdigit()) {
                break;
            }
            // 16 bytes take 47 characters; the ASCII column follows.
            let hex = &rest[..rest.len().min(47)];
            session.ticket.extend(
                hex.split([' ', '-'])
                    .filter(|pair| !pair.is_empty())
                    .map(byte),
            );
        }
    }
    session
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_id_and_the_ticket_sess_id_prints() {
        let text = "SSL-Session:
    Protocol  : TLSv1.3
    Session-ID: 01D2E96EC02B4158E02CD2885FC461C3D8E52BD7FD3D28D09FC7AC84B49B6276
    Session-ID-ctx: 
    TLS session ticket lifetime hint: 7200 (seconds)
    TLS session ticket:
    0000 - a3 44 c1 d6 7d 15 dd 8f-8d bc 75 b8 cc 87 db f3   .D..}.....u.....
    0010 - 62 49 8a                                          bI.

    Start Time: 1795855017
";
        let session = parse_saved_session(text);
        assert_eq!(session.session_id.len(), 32);
        assert_eq!(session.session_id[..3], [0x01, 0xd2, 0xe9]);
        assert_eq!(
            session.ticket,
            [
                0xa3, 0x44, 0xc1, 0xd6, 0x7d, 0x15, 0xdd, 0x8f, 0x8d, 0xbc, 0x75, 0xb8, 0xcc, 0x87,
                0xdb, 0xf3, 0x62, 0x49, 0x8a
            ]
        );
        assert_eq!(
            parse_saved_session("    Session-ID: \n"),
            SavedSession::default()
        );
    }
}
