//! The first line of a backend's response head, read as leniently as nginx
//! reads its upstreams' (`ngx_http_parse_status_line`), plus the bare major
//! version HTTP/2 uses.
//!
//! A uwsgi backend is not an HTTP/1.1 server: uWSGI writes its status line
//! with whatever `SERVER_PROTOCOL` it was given, so the same application
//! answers `HTTP/1.0 200 OK`, `HTTP/1.1 200 OK` or `HTTP/2.0 200 OK`
//! depending on the client. What the line means does not depend on the
//! version (the connection carries one response, and the body's framing
//! comes from the headers), so any `HTTP/<major>[.<minor>]` is accepted.
//!
//! Accepted: `HTTP/`, a major version of 1 to 3 digits not starting with 0,
//! optionally `.` and a minor version of 1 to 3 digits, one or more spaces,
//! a three-digit status code (100..=999), then either the end of the line or
//! a space and a reason phrase. Lines end with CRLF or a bare LF, as nginx
//! allows. A reason phrase is any bytes up to the end of the line (whether
//! it can be passed on to a client is the proxy's call).
//!
//! Pure and synchronous, like the rest of the codec.

use http::StatusCode;

/// What a response head starts with.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete status line, and its length including the line end.
    Line(StatusLine<'a>, usize),
    /// The bytes so far are the start of a status line (or too few to tell).
    Partial,
    /// The head does not start with `HTTP/`: a CGI-style head, whose status
    /// (if any) is in a `Status:` header.
    NotAStatusLine,
}

/// A parsed status line.
#[derive(Debug, PartialEq, Eq)]
pub struct StatusLine<'a> {
    pub status: StatusCode,
    /// The reason phrase, unless it is empty.
    pub reason: Option<&'a [u8]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusLineError {
    #[error("the status line's HTTP version is malformed (expected HTTP/<major>[.<minor>])")]
    BadVersion,
    #[error("the status line's HTTP version is not followed by a space")]
    NoSpaceAfterVersion,
    #[error("the status code is not three digits")]
    BadCode,
    #[error("status code {0:03} is out of range (100 to 999)")]
    CodeOutOfRange(u16),
    #[error("the status code is followed by {0:?} instead of a space or the end of the line")]
    AfterCode(char),
    #[error("a carriage return in the status line is not followed by a line feed")]
    BareCarriageReturn,
}

const PREFIX: &[u8] = b"HTTP/";
/// Longest major or minor version, as nginx allows (up to 999).
const MAX_VERSION_DIGITS: usize = 3;

/// Reads the status line at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, StatusLineError> {
    let Some(rest) = buf.strip_prefix(PREFIX) else {
        return Ok(if PREFIX.starts_with(buf) {
            Parsed::Partial
        } else {
            Parsed::NotAStatusLine
        });
    };
    // Everything below looks at whole lines only, so a partial line is
    // told apart before any of it is judged.
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(Parsed::Partial);
    };
    let line = match rest[..end].strip_suffix(b"\r") {
        Some(line) => line,
        None => &rest[..end],
    };
    if line.contains(&b'\r') {
        return Err(StatusLineError::BareCarriageReturn);
    }
    let after_version = version(line)?;
    let spaces = after_version.iter().take_while(|&&b| b == b' ').count();
    let after_spaces = &after_version[spaces..];
    if spaces == 0 {
        return Err(StatusLineError::NoSpaceAfterVersion);
    }
    let (status, reason) = status_and_reason(after_spaces)?;
    Ok(Parsed::Line(
        StatusLine { status, reason },
        PREFIX.len() + end + 1,
    ))
}

/// Reads `NNN[ reason]`: what follows the version in a status line, and
/// the value of a CGI-style `Status:` header.
pub fn status_and_reason(text: &[u8]) -> Result<(StatusCode, Option<&[u8]>), StatusLineError> {
    let (code, after_code) = text
        .split_first_chunk::<3>()
        .filter(|(code, _)| code.iter().all(u8::is_ascii_digit))
        .ok_or(StatusLineError::BadCode)?;
    let code = code
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    let status = StatusCode::from_u16(code).map_err(|_| StatusLineError::CodeOutOfRange(code))?;
    let reason = match after_code.split_first() {
        None => None,
        Some((b' ', reason)) => Some(reason).filter(|reason| !reason.is_empty()),
        Some((&other, _)) => return Err(StatusLineError::AfterCode(char::from(other))),
    };
    Ok((status, reason))
}

/// Checks `<major>[.<minor>]` at the start of `line`; returns what follows.
fn version(line: &[u8]) -> Result<&[u8], StatusLineError> {
    let (major, rest) = digits(line);
    if major.is_empty() || major.len() > MAX_VERSION_DIGITS || major[0] == b'0' {
        return Err(StatusLineError::BadVersion);
    }
    let Some(rest) = rest.strip_prefix(b".") else {
        return Ok(rest);
    };
    let (minor, rest) = digits(rest);
    if minor.is_empty() || minor.len() > MAX_VERSION_DIGITS {
        return Err(StatusLineError::BadVersion);
    }
    Ok(rest)
}

/// Splits the leading ASCII digits off `bytes`.
fn digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    let count = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    bytes.split_at(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &[u8]) -> (StatusLine<'_>, usize) {
        match parse(text) {
            Ok(Parsed::Line(line, length)) => (line, length),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn every_version_a_uwsgi_backend_echoes() {
        for version in ["1.0", "1.1", "2", "2.0", "3", "3.0"] {
            let text = format!("HTTP/{version} 201 Created\r\nX: y\r\n\r\n");
            let (parsed, length) = line(text.as_bytes());
            assert_eq!(parsed.status, StatusCode::CREATED, "{version}");
            assert_eq!(parsed.reason, Some(&b"Created"[..]), "{version}");
            assert_eq!(&text.as_bytes()[length..], b"X: y\r\n\r\n", "{version}");
        }
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(line(b"HTTP/1.1 200\r\n").0.reason, None);
        assert_eq!(line(b"HTTP/1.1 200 \r\n").0.reason, None);
        assert_eq!(
            line(b"HTTP/1.1 299 Fine, thanks\r\n").0.reason,
            Some(&b"Fine, thanks"[..])
        );
        assert_eq!(
            line(b"HTTP/1.1 200 caf\xc3\xa9\tok\r\n").0.reason,
            Some(&b"caf\xc3\xa9\tok"[..])
        );
        let (parsed, _) = line(b"HTTP/1.1 404 Not\x01Found\r\n");
        assert_eq!(parsed.status, StatusCode::NOT_FOUND);
        assert_eq!(parsed.reason, Some(&b"Not\x01Found"[..]));
    }

    #[test]
    fn leniencies_nginx_shares() {
        // Bare LF line end, several spaces before the code.
        let (parsed, length) = line(b"HTTP/1.0   503 Busy\nRetry-After: 1\n\n");
        assert_eq!(parsed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(length, 20);
        assert_eq!(line(b"HTTP/10.99 200 OK\r\n").0.status, StatusCode::OK);
    }

    #[test]
    fn partial_lines_wait_for_more() {
        let text = b"HTTP/1.1 200 OK\r\n";
        for end in 0..text.len() {
            assert_eq!(parse(&text[..end]), Ok(Parsed::Partial), "{end} bytes");
        }
        assert!(matches!(parse(text), Ok(Parsed::Line(..))));
    }

    #[test]
    fn heads_without_a_status_line() {
        for text in [
            &b"Status: 404 Not Found\r\n\r\n"[..],
            b"\r\n",
            b"Content-Type: x\r\n",
        ] {
            assert_eq!(parse(text), Ok(Parsed::NotAStatusLine));
        }
        // "HTT" could still become "HTTP/", "HTTX" cannot.
        assert_eq!(parse(b"HTT"), Ok(Parsed::Partial));
        assert_eq!(parse(b"HTTX"), Ok(Parsed::NotAStatusLine));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        use StatusLineError::*;
        for (text, error) in [
            (&b"HTTP/ 200 OK\r\n"[..], BadVersion),
            (b"HTTP/0.9 200 OK\r\n", BadVersion),
            (b"HTTP/1. 200 OK\r\n", BadVersion),
            (b"HTTP/1000 200 OK\r\n", BadVersion),
            (b"HTTP/1.1000 200 OK\r\n", BadVersion),
            (b"HTTP/x 200 OK\r\n", BadVersion),
            (b"HTTP/1.1x 200 OK\r\n", NoSpaceAfterVersion),
            (b"HTTP/1.1\r\n", NoSpaceAfterVersion),
            (b"HTTP/1.1\t200 OK\r\n", NoSpaceAfterVersion),
            (b"HTTP/1.1 20\r\n", BadCode),
            (b"HTTP/1.1 2x0 OK\r\n", BadCode),
            (b"HTTP/1.1 099 Early\r\n", CodeOutOfRange(99)),
            (b"HTTP/1.1 2000 OK\r\n", AfterCode('0')),
            (b"HTTP/1.1 200.1 OK\r\n", AfterCode('.')),
            (b"HTTP/1.1 200 O\rK\r\n", BareCarriageReturn),
        ] {
            assert_eq!(
                parse(text),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
