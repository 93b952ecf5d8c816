//! The access log: one line per request, off unless `access-log` is set.
//!
//! A line says who asked (client address, SNI name, TLS version, whether the
//! session was resumed), what (method, path, HTTP version), what came of it
//! (status, response body bytes, the backend that answered) and how long it
//! took, from the request's arrival to the last byte of its response. It is
//! written when the response body is finished or abandoned, so the byte
//! count is what was actually sent.
//!
//! Two formats: `plain`, one space-separated line meant for people and
//! `grep`, and `json`, one JSON object per line for log shippers.
//!
//! Lines are gathered in a buffer per process and written in batches (when
//! the buffer fills, and by a flusher a few times a second), so logging
//! costs a format and a short lock per request, not a system call. Every
//! write holds whole lines: worker processes append to the same file
//! (`O_APPEND`) or pipe and never split each other's lines. Writes to a pipe
//! (stderr under a supervisor) are cut at line boundaries into pieces of at
//! most `PIPE_BUF` bytes, the size the kernel writes atomically.
//!
//! A write that fails (a full disk, a closed pipe) drops that batch and is
//! warned about (with the lines lost) once until writing works again: the
//! router keeps serving whatever becomes of its log.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stderr,
    /// Appended to; created (mode 0640) if missing.
    File(PathBuf),
}

/// How each line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Plain,
    Json,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Json => "json",
        }
    }
}

/// The access log options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: Target,
    pub format: Format,
}

/// Buffered lines are written once they pass this size...
const FLUSH_BYTES: usize = 32 * 1024;
/// ...or at the latest after this long.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// The largest write a pipe takes atomically (POSIX `PIPE_BUF` on Linux).
const PIPE_BUF: usize = 4096;

/// An opened log destination.
#[derive(Debug)]
pub enum Sink {
    Stderr,
    File(File),
}

impl Sink {
    /// Opens `target` for appending.
    pub fn open(target: &Target) -> anyhow::Result<Sink> {
        match target {
            Target::Stderr => Ok(Sink::Stderr),
            Target::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(path)
                    .with_context(|| format!("cannot open `{}` for appending", path.display()))?;
                Ok(Sink::File(file))
            }
        }
    }

    /// Writes `lines` (whole lines only) so that no other process's write
    /// can land inside one of them.
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            // O_APPEND: each write lands whole at the end of the file.
            Sink::File(file) => file.write_all(lines),
            Sink::Stderr => {
                let mut stderr = io::stderr().lock();
                for piece in pipe_pieces(lines) {
                    stderr.write_all(piece)?;
                }
                Ok(())
            }
        }
    }
}

/// Splits whole lines into runs of at most [`PIPE_BUF`] bytes, each ending
/// at a line's end (a single longer line stays whole).
fn pipe_pieces(mut lines: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if lines.is_empty() {
            return None;
        }
        let window = &lines[..lines.len().min(PIPE_BUF)];
        let end = if window.len() == lines.len() {
            lines.len()
        } else {
            match window.iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None => lines
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(lines.len(), |newline| newline + 1),
            }
        };
        let (piece, rest) = lines.split_at(end);
        lines = rest;
        Some(piece)
    })
}

/// One process's access log.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    target: Target,
    sink: Sink,
    buffer: Vec<u8>,
    stamp: Stamp,
    /// Whether the last write failed (warn once per run of failures).
    failing: bool,
}

/// What is known of a request when it arrives.
#[derive(Debug)]
pub struct Request {
    pub started: Instant,
    pub method: http::Method,
    /// Path and query, as the client sent them.
    pub target: http::uri::PathAndQuery,
    pub version: http::Version,
}

/// How the client's TLS connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// Whether the handshake resumed a session.
    pub resumed: bool,
}

impl TlsInfo {
    pub fn of(connection: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo {
            version: match connection.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "TLS?",
            },
            resumed: connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }
}

/// What the connection knows: who the client is and how it connected.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub addr: SocketAddr,
    pub server_name: Option<&'a str>,
    pub tls: TlsInfo,
}

/// One finished request.
#[derive(Debug)]
pub struct Entry<'a> {
    pub client: Client<'a>,
    pub request: &'a Request,
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// The backend that answered, if one was reached.
    pub backend: Option<&'a str>,
}

impl AccessLog {
    pub fn open(config: &AccessLogConfig) -> anyhow::Result<AccessLog> {
        Ok(AccessLog {
            format: config.format,
            state: Mutex::new(State {
                target: config.target.clone(),
                sink: Sink::open(&config.target)?,
                buffer: Vec::with_capacity(FLUSH_BYTES + 1024),
                stamp: Stamp::default(),
                failing: false,
            }),
        })
    }

    /// Adds the line for `entry`; writes the batch once it is large enough.
    /// The line is formatted straight into the batch: workers are
    /// single-threaded, so the lock is never contended there.
    pub fn record(&self, entry: &Entry<'_>) {
        let now = SystemTime::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { buffer, stamp, .. } = &mut *state;
        match self.format {
            Format::Plain => plain_line(buffer, entry, now, stamp),
            Format::Json => json_line(buffer, entry, now, stamp),
        }
        if state.buffer.len() >= FLUSH_BYTES {
            self.flush_locked(&mut state);
        }
    }

    /// Writes whatever is buffered.
    pub fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.flush_locked(&mut state);
    }

    fn flush_locked(&self, state: &mut State) {
        if state.buffer.is_empty() {
            return;
        }
        let State {
            sink,
            buffer,
            failing,
            target,
            ..
        } = state;
        match sink.write_lines(buffer) {
            Ok(()) => *failing = false,
            Err(error) => {
                if !*failing {
                    let lines = buffer.iter().filter(|&&b| b == b'\n').count();
                    tracing::warn!(?target, %error, lines, "access log lines lost");
                }
                *failing = true;
            }
        }
        buffer.clear();
    }

    /// Writes what is buffered and opens the log's file anew, for log
    /// rotation (`logrotate` moves the file, then sends SIGHUP). On error
    /// the old file stays in use.
    pub fn reopen(&self) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.flush_locked(&mut state);
        state.sink = Sink::open(&state.target)?;
        Ok(())
    }

    /// Flushes every [`FLUSH_INTERVAL`] for as long as the runtime runs:
    /// connections draining after a termination signal still log, and the
    /// last lines are written when the log is dropped.
    pub fn spawn_flusher(self: &Arc<Self>) {
        let log = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match log.upgrade() {
                    Some(log) => log.flush(),
                    None => return,
                }
            }
        });
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

fn http_version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// One field of a line. Both formats write the same fields, in the order
/// [`fields`] gives them; each names, separates and escapes them its own
/// way. The names are the JSON keys.
enum Field<'a> {
    /// When the line is written.
    Time,
    /// The client's address and port.
    Client(SocketAddr),
    /// Text the client chose (or a backend's name), escaped; `None`: unknown.
    Text(&'static str, Option<&'a str>),
    /// Text the router chose (a TLS version), written as it is.
    Word(&'static str, &'static str),
    /// Whether the TLS session was resumed.
    Resumed(bool),
    /// The request line: method, target (escaped) and HTTP version.
    Request(&'a str, &'a str, &'static str),
    Number(&'static str, u64),
    /// A duration in milliseconds.
    Millis(&'static str, Duration),
}

impl Field<'_> {
    /// The field's JSON key (the first, for a field that JSON splits:
    /// the client's port and the request line's parts follow it).
    fn key(&self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::Client(_) => "client",
            Field::Resumed(_) => "resumed",
            Field::Request(..) => "method",
            Field::Text(key, _)
            | Field::Word(key, _)
            | Field::Number(key, _)
            | Field::Millis(key, _) => key,
        }
    }
}

/// What a line says of `entry`, in order.
fn fields<'a>(entry: &'a Entry<'a>) -> [Field<'a>; 10] {
    let request = entry.request;
    let client = entry.client;
    [
        Field::Time,
        Field::Client(client.addr),
        Field::Text("sni", client.server_name),
        Field::Word("tls", client.tls.version),
        Field::Resumed(client.tls.resumed),
        Field::Request(
            request.method.as_str(),
            request.target.as_str(),
            http_version_name(request.version),
        ),
        Field::Number("status", u64::from(entry.status)),
        Field::Number("bytes", entry.bytes),
        Field::Text("backend", entry.backend),
        Field::Millis("duration_ms", request.started.elapsed()),
    ]
}

/// `TIME CLIENT SNI TLS RESUMED "METHOD TARGET VERSION" STATUS BYTES BACKEND MS`,
/// with `-` for what is unknown; quoted and text fields escaped so that a
/// client cannot forge a line or a field. Written byte by byte rather than
/// through `format!`: this runs once per request.
fn plain_line(out: &mut Vec<u8>, entry: &Entry<'_>, now: SystemTime, stamp: &mut Stamp) {
    for (index, field) in fields(entry).into_iter().enumerate() {
        if index > 0 {
            out.push(b' ');
        }
        match field {
            Field::Time => stamp.write(out, now),
            Field::Client(addr) => {
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{addr}");
            }
            Field::Text(_, text) => escape_plain(out, text.unwrap_or("-")),
            Field::Word(_, word) => out.extend_from_slice(word.as_bytes()),
            Field::Resumed(resumed) => {
                out.extend_from_slice(if resumed { b"resumed" } else { b"full" });
            }
            Field::Request(method, target, version) => {
                out.push(b'"');
                escape_plain(out, method);
                out.push(b' ');
                escape_plain(out, target);
                out.push(b' ');
                out.extend_from_slice(version.as_bytes());
                out.push(b'"');
            }
            Field::Number(_, n) => push_decimal(out, n),
            Field::Millis(_, elapsed) => push_millis(out, elapsed),
        }
    }
    out.push(b'\n');
}

/// One JSON object per line, written field by field (no intermediate
/// value: this runs once per request).
fn json_line(out: &mut Vec<u8>, entry: &Entry<'_>, now: SystemTime, stamp: &mut Stamp) {
    out.push(b'{');
    for (index, field) in fields(entry).into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        json_key(out, field.key());
        match field {
            Field::Time => {
                out.push(b'"');
                stamp.write(out, now);
                out.push(b'"');
            }
            Field::Client(addr) => {
                let _ = write!(out, "\"{}\",\"client_port\":", addr.ip());
                push_decimal(out, u64::from(addr.port()));
            }
            Field::Text(_, text) => json_string_or_null(out, text),
            Field::Word(_, word) => json_word(out, word),
            Field::Resumed(resumed) => {
                out.extend_from_slice(if resumed { b"true" } else { b"false" });
            }
            Field::Request(method, target, version) => {
                json_string(out, method);
                out.push(b',');
                json_key(out, "path");
                json_string(out, target);
                out.push(b',');
                json_key(out, "protocol");
                json_word(out, version);
            }
            Field::Number(_, n) => push_decimal(out, n),
            Field::Millis(_, elapsed) => push_millis(out, elapsed),
        }
    }
    out.extend_from_slice(b"}\n");
}

/// A word the router chose (a TLS or HTTP version) as a JSON string: it
/// needs no escaping.
fn json_word(out: &mut Vec<u8>, word: &str) {
    out.push(b'"');
    out.extend_from_slice(word.as_bytes());
    out.push(b'"');
}

/// `"key":`, for a key of this module's own (nothing to escape).
fn json_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_string_or_null(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => json_string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// `text` as a JSON string (RFC 8259: quote, backslash and control
/// characters escaped).
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_runs(
        out,
        text,
        |byte| byte >= 0x20 && byte != 0x7f && byte != b'"' && byte != b'\\',
        |out, byte| match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        },
    );
    out.push(b'"');
}

/// Text for a plain line: bytes outside printable ASCII, spaces, quotes and
/// backslashes become `\xHH`, so every field stays one token.
fn escape_plain(out: &mut Vec<u8>, text: &str) {
    escape_runs(
        out,
        text,
        |byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\',
        |out, byte| {
            let _ = write!(out, "\\x{byte:02x}");
        },
    );
}

/// Copies `text` to `out` in runs of bytes that `keep` accepts, writing
/// the others with `escape`.
fn escape_runs(
    out: &mut Vec<u8>,
    text: &str,
    keep: impl Fn(u8) -> bool,
    escape: impl Fn(&mut Vec<u8>, u8),
) {
    let mut rest = text.as_bytes();
    while let Some(at) = rest.iter().position(|&byte| !keep(byte)) {
        out.extend_from_slice(&rest[..at]);
        escape(out, rest[at]);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `elapsed` in milliseconds with three decimals (microseconds).
fn push_millis(out: &mut Vec<u8>, elapsed: std::time::Duration) {
    let micros = elapsed.as_micros() as u64;
    push_decimal(out, micros / 1000);
    out.push(b'.');
    let fraction = micros % 1000;
    out.extend_from_slice(&[
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

/// Writes times as `2026-11-28T07:38:47.123Z`, the date and time of day
/// worked out once per second (lines come thousands a second).
#[derive(Debug, Default)]
struct Stamp {
    secs: Option<u64>,
    text: [u8; 19],
}

impl Stamp {
    fn write(&mut self, out: &mut Vec<u8>, time: SystemTime) {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        if self.secs != Some(secs) {
            let (days, rest) = (secs / 86_400, secs % 86_400);
            let (year, month, day) = civil_from_days(days as i64);
            let mut text = Vec::with_capacity(19);
            let _ = write!(
                text,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                rest / 3600,
                rest / 60 % 60,
                rest % 60,
            );
            if let Ok(text) = text.try_into() {
                self.text = text;
                self.secs = Some(secs);
            }
        }
        out.extend_from_slice(&self.text);
        let millis = since.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ]);
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POST with a quote in its target, arrived now.
    fn request() -> Request {
        Request {
            started: Instant::now(),
            method: http::Method::POST,
            target: http::uri::PathAndQuery::from_static("/a%20b\"c?x=1"),
            version: http::Version::HTTP_2,
        }
    }

    /// `request` from a resumed TLS 1.3 client, answered so.
    fn entry<'a>(
        request: &'a Request,
        status: u16,
        bytes: u64,
        backend: Option<&'static str>,
    ) -> Entry<'a> {
        const RESUMED_TLS13: TlsInfo = TlsInfo {
            version: "TLSv1.3",
            resumed: true,
        };
        Entry {
            client: Client {
                addr: "127.0.0.2:40000".parse().unwrap(),
                server_name: Some("example.test"),
                tls: RESUMED_TLS13,
            },
            request,
            status,
            bytes,
            backend,
        }
    }

    type WriteLine = fn(&mut Vec<u8>, &Entry<'_>, SystemTime, &mut Stamp);

    /// The line `write_line` writes for `entry` at the epoch.
    fn line_at_epoch(write_line: WriteLine, entry: &Entry<'_>) -> String {
        let mut line = Vec::new();
        write_line(&mut line, entry, UNIX_EPOCH, &mut Stamp::default());
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn dates() {
        let rfc3339 = |t| {
            let mut out = Vec::new();
            Stamp::default().write(&mut out, t);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_851_527_123);
        assert_eq!(rfc3339(t), "2026-11-28T07:38:47.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn plain_lines_escape_what_could_split_a_field() {
        let request = request();
        let entry = entry(&request, 200, 1234, Some("127.0.0.1:3031"));
        let line = line_at_epoch(plain_line, &entry);
        let fields: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(
            &fields[..11],
            [
                "1970-01-01T00:00:00.000Z",
                "127.0.0.2:40000",
                "example.test",
                "TLSv1.3",
                "resumed",
                "\"POST",
                "/a%20b\\x22c?x=1",
                "HTTP/2.0\"",
                "200",
                "1234",
                "127.0.0.1:3031",
            ],
            "{line}"
        );
        assert!(fields[11].parse::<f64>().is_ok(), "{line}");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    }

    #[test]
    fn json_lines_parse() {
        let request = request();
        let entry = entry(&request, 502, 0, None);
        let value: serde_json::Value =
            serde_json::from_str(&line_at_epoch(json_line, &entry)).unwrap();
        assert_eq!(value["client"], "127.0.0.2");
        assert_eq!(value["client_port"], 40000);
        assert_eq!(value["path"], "/a%20b\"c?x=1");
        assert_eq!(value["sni"], "example.test");
        assert_eq!(value["tls"], "TLSv1.3");
        assert_eq!(value["method"], "POST");
        assert_eq!(value["protocol"], "HTTP/2.0");
        assert!(value["duration_ms"].as_f64().unwrap() >= 0.0);
        let mut escaped = Vec::new();
        json_string(&mut escaped, "a\"b\\c\u{1}d\u{e9}");
        let back: String = serde_json::from_slice(&escaped).unwrap();
        assert_eq!(back, "a\"b\\c\u{1}d\u{e9}");
        assert_eq!(value["resumed"], true);
        assert_eq!(value["backend"], serde_json::Value::Null);
        assert_eq!(value["status"], 502);
    }

    /// Both formats, byte for byte up to the duration (which the clock
    /// decides): the field order and every separator.
    #[test]
    fn lines_are_exactly_the_documented_fields() {
        let request = request();
        let entry = entry(&request, 200, 5, None);
        let cases: [(WriteLine, &str); 2] = [
            (
                plain_line,
                "1970-01-01T00:00:00.000Z 127.0.0.2:40000 example.test TLSv1.3 resumed \
                 \"POST /a%20b\\x22c?x=1 HTTP/2.0\" 200 5 - ",
            ),
            (
                json_line,
                "{\"time\":\"1970-01-01T00:00:00.000Z\",\"client\":\"127.0.0.2\",\
                 \"client_port\":40000,\"sni\":\"example.test\",\"tls\":\"TLSv1.3\",\
                 \"resumed\":true,\"method\":\"POST\",\"path\":\"/a%20b\\\"c?x=1\",\
                 \"protocol\":\"HTTP/2.0\",\"status\":200,\"bytes\":5,\"backend\":null,\
                 \"duration_ms\":",
            ),
        ];
        for (write_line, expected) in cases {
            let line = line_at_epoch(write_line, &entry);
            assert!(line.starts_with(expected), "{line}\nis not\n{expected}…");
        }
    }

    #[test]
    fn pipe_pieces_keep_lines_whole() {
        let line = |n: usize| format!("{}\n", "x".repeat(n));
        let text: String = (0..50).map(|i| line(100 + i * 7)).collect();
        let pieces: Vec<&[u8]> = pipe_pieces(text.as_bytes()).collect();
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), text.as_bytes());
        for piece in &pieces {
            assert!(piece.len() <= PIPE_BUF);
            assert_eq!(piece.last(), Some(&b'\n'));
        }
        let long = line(3 * PIPE_BUF);
        let text = format!("a\n{long}b\n");
        let pieces: Vec<&[u8]> = pipe_pieces(text.as_bytes()).collect();
        assert_eq!(pieces, [b"a\n".as_slice(), long.as_bytes(), b"b\n"]);
    }

    #[test]
    fn file_lines_arrive_on_flush_and_reopen_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&AccessLogConfig {
            target: Target::File(path.clone()),
            format: Format::Json,
        })
        .unwrap();
        let request = request();
        let entry = entry(&request, 200, 1, None);
        log.record(&entry);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.record(&entry);
        log.reopen().unwrap();
        log.record(&entry);
        log.flush();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            2
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
