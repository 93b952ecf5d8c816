//! The uwsgi binary protocol, as uWSGI's HTTP router speaks it to its
//! `http-to` nodes, and the HTTP/1.x response those nodes send back.
//!
//! Request: a 4-byte header (`modifier1`, datasize as u16 little-endian,
//! `modifier2`), then `datasize` bytes of variables, each `u16 LE key length,
//! key, u16 LE value length, value`, then the request body (CONTENT_LENGTH
//! bytes). Response: raw `status line, headers, body`, the body delimited
//! by Content-Length, chunked encoding or the end of the stream. The status
//! line's version is whatever the backend makes of SERVER_PROTOCOL
//! (`HTTP/2.0` included, see [`crate::status_line`]); a CGI-style head
//! without one (uWSGI's `cgi-mode`) carries its status in a `Status:` header.
//!
//! Everything here is pure and synchronous so it can be fuzzed.

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use hyper::ext::ReasonPhrase;

use crate::field_lines::{self, ConnectionOptions, Field, FieldLines, Known};
use crate::status_line::{self, Parsed, StatusLineError};

/// modifier1 0: a WSGI/CGI-style request (what uWSGI's router sends).
pub const MODIFIER1_WSGI: u8 = 0;
/// Most bytes of variables one packet can carry (datasize is 16 bits).
pub const MAX_VARS: usize = u16::MAX as usize;
/// Most headers accepted in a backend's response.
const MAX_RESPONSE_HEADERS: usize = 128;
/// Headers a response head is first parsed for.
const FEW_RESPONSE_HEADERS: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UwsgiError {
    #[error("request variables exceed the uwsgi protocol's {MAX_VARS}-byte limit")]
    VarsTooLarge,
    #[error("uwsgi packet truncated")]
    Truncated,
    #[error("backend response head is malformed: {0}")]
    BadResponse(String),
    #[error("backend response status line: {0}")]
    StatusLine(#[from] StatusLineError),
    #[error("backend response Status header: {0}")]
    StatusHeader(StatusLineError),
    #[error("backend response body: bad chunked encoding: {0}")]
    BadChunk(&'static str),
}

/// Request variables being encoded.
#[derive(Debug, Default)]
pub struct Vars {
    encoded: Vec<u8>,
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one variable; fails once the packet would outgrow 64 KiB.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), UwsgiError> {
        let key_len = u16::try_from(key.len()).map_err(|_| UwsgiError::VarsTooLarge)?;
        let value_len = u16::try_from(value.len()).map_err(|_| UwsgiError::VarsTooLarge)?;
        if self.encoded.len() + 4 + key.len() + value.len() > MAX_VARS {
            return Err(UwsgiError::VarsTooLarge);
        }
        self.encoded.extend_from_slice(&key_len.to_le_bytes());
        self.encoded.extend_from_slice(key);
        self.encoded.extend_from_slice(&value_len.to_le_bytes());
        self.encoded.extend_from_slice(value);
        Ok(())
    }

    /// The packet: header followed by the variables.
    pub fn into_packet(self) -> Vec<u8> {
        let size = u16::try_from(self.encoded.len()).expect("push keeps vars within u16");
        let mut packet = Vec::with_capacity(4 + self.encoded.len());
        packet.push(MODIFIER1_WSGI);
        packet.extend_from_slice(&size.to_le_bytes());
        packet.push(0);
        packet.extend_from_slice(&self.encoded);
        packet
    }
}

/// Splits a packet's header: (modifier1, datasize, modifier2).
pub fn decode_header(header: [u8; 4]) -> (u8, u16, u8) {
    (
        header[0],
        u16::from_le_bytes([header[1], header[2]]),
        header[3],
    )
}

/// One decoded variable: (key, value).
pub type Var<'a> = (&'a [u8], &'a [u8]);

/// Decodes a variables block (the `datasize` bytes after the header).
pub fn decode_vars(mut block: &[u8]) -> Result<Vec<Var<'_>>, UwsgiError> {
    fn field<'a>(block: &mut &'a [u8]) -> Result<&'a [u8], UwsgiError> {
        let (len, rest) = block.split_at_checked(2).ok_or(UwsgiError::Truncated)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let (value, rest) = rest.split_at_checked(len).ok_or(UwsgiError::Truncated)?;
        *block = rest;
        Ok(value)
    }
    let mut vars = Vec::new();
    while !block.is_empty() {
        let key = field(&mut block)?;
        let value = field(&mut block)?;
        vars.push((key, value));
    }
    Ok(vars)
}

/// How a backend's response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer encoding.
    Chunked,
    /// Everything until the backend closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The reason phrase for an HTTP/1.x client, when it is not the
    /// status's canonical one (see [`own_reason`]).
    pub reason: Option<ReasonPhrase>,
    /// The fields that go on to the client.
    pub fields: FieldLines,
    pub framing: Framing,
    /// What the backend's Connection fields said.
    pub connection: ConnectionOptions,
}

/// What a response head's fields say to the router, read in one pass.
#[derive(Debug, Default)]
struct Scan<'h> {
    /// The first Content-Length value, and whether another differs.
    content_length: Option<&'h [u8]>,
    conflicting_lengths: bool,
    /// The last Transfer-Encoding value (its last coding decides).
    transfer_encoding: Option<&'h [u8]>,
    /// A CGI head's Status values: the first, and how many there are.
    status: Option<&'h [u8]>,
    statuses: usize,
    location: bool,
    connection: ConnectionOptions,
}

impl<'h> Scan<'h> {
    /// `cgi`: the head has no status line, so a Status field carries the
    /// status.
    fn new(fields: impl Iterator<Item = Field<'h>>, cgi: bool) -> Self {
        let mut scan = Self::default();
        for (kind, _, value) in fields {
            match kind {
                Known::ContentLength => match scan.content_length {
                    None => scan.content_length = Some(value),
                    Some(first) => scan.conflicting_lengths |= first != value,
                },
                Known::TransferEncoding => scan.transfer_encoding = Some(value),
                Known::Connection => scan.connection.add(value),
                Known::Status if cgi => {
                    scan.status = scan.status.or(Some(value));
                    scan.statuses += 1;
                }
                Known::Location => scan.location = true,
                _ => {}
            }
        }
        scan
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)` means more
/// bytes are needed; on success also returns the head's length.
pub fn parse_response_head(
    buf: &[u8],
    request_was_head: bool,
) -> Result<Option<(ResponseHead, usize)>, UwsgiError> {
    let (line, line_length) = match status_line::parse(buf)? {
        Parsed::Partial => return Ok(None),
        Parsed::Line(line, length) => (Some(line), length),
        Parsed::NotAStatusLine => (None, 0),
    };
    // Most responses have a dozen headers: room for a few dozen is set up
    // first, and for the most allowed only for a head that needs it.
    let fields = &buf[line_length..];
    let mut few = [httparse::EMPTY_HEADER; FEW_RESPONSE_HEADERS];
    let mut many;
    let parsed = match httparse::parse_headers(fields, &mut few) {
        Err(httparse::Error::TooManyHeaders) => {
            many = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            httparse::parse_headers(fields, &mut many)
        }
        parsed => parsed,
    };
    let (headers_length, parsed) = match parsed {
        Ok(httparse::Status::Complete(complete)) => complete,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(UwsgiError::BadResponse(error.to_string())),
    };
    let cgi = line.is_none();
    let mut kinds = [Known::Other; MAX_RESPONSE_HEADERS];
    let fields = field_lines::classify(parsed, &mut kinds);
    let scan = Scan::new(fields.clone(), cgi);
    let (status, reason) = match line {
        Some(line) => (line.status, line.reason),
        None => cgi_status(&scan)?,
    };
    let framing = framing(status, &scan, request_was_head)?;
    // A HEAD or 304 response keeps the backend's length (the size the body
    // would have); a body the router frames gets its own.
    let fields = field_lines::keep(fields, scan.connection, |kind| {
        (kind == Known::ContentLength && framing != Framing::Empty)
            || (kind == Known::Status && cgi)
    });
    Ok(Some((
        ResponseHead {
            status,
            reason: own_reason(status, reason),
            fields,
            framing,
            connection: scan.connection,
        },
        line_length + headers_length,
    )))
}

/// The status of a CGI-style head, which is not a field of the response:
/// its `Status:` field, else 302 with a Location, else 200 (as nginx and
/// RFC 3875 section 6.3 have it).
fn cgi_status<'h>(scan: &Scan<'h>) -> Result<(StatusCode, Option<&'h [u8]>), UwsgiError> {
    match (scan.status, scan.statuses) {
        (None, _) if scan.location => Ok((StatusCode::FOUND, None)),
        (None, _) => Ok((StatusCode::OK, None)),
        (Some(value), 1) => status_line::status_and_reason(value).map_err(UwsgiError::StatusHeader),
        (Some(_), _) => Err(UwsgiError::BadResponse(
            "more than one Status header".to_owned(),
        )),
    }
}

/// The reason phrase to send an HTTP/1.x client for a backend's `reason`
/// (`None`: the backend gave none): the backend's own, as nginx passes it
/// on. None when the writer's own choice is the same: the canonical phrase
/// for a status that has one. A status without a canonical phrase gets the
/// backend's, or an empty one. HTTP/2 has no reason phrases.
pub fn own_reason(status: StatusCode, reason: Option<&[u8]>) -> Option<ReasonPhrase> {
    let reason = reason.unwrap_or_default();
    let canonical = status.canonical_reason().map(str::as_bytes);
    if canonical.is_some() && (reason.is_empty() || Some(reason) == canonical) {
        return None;
    }
    // A phrase that cannot be written safely (a control character) is
    // replaced like a missing one.
    ReasonPhrase::try_from(reason)
        .ok()
        .or_else(|| canonical.is_none().then(|| ReasonPhrase::from_static(b"")))
}

/// RFC 9112 section 6.3, for responses.
fn framing(
    status: StatusCode,
    scan: &Scan<'_>,
    request_was_head: bool,
) -> Result<Framing, UwsgiError> {
    if request_was_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(encoding) = scan.transfer_encoding {
        let chunked = encoding
            .rsplit(|&byte| byte == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let Some(length) = scan.content_length else {
        return Ok(Framing::UntilClose);
    };
    let length = std::str::from_utf8(length)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .ok_or_else(|| UwsgiError::BadResponse("bad Content-Length".to_owned()))?;
    if scan.conflicting_lengths {
        return Err(UwsgiError::BadResponse(
            "conflicting Content-Length headers".to_owned(),
        ));
    }
    Ok(Framing::Length(length))
}

/// Incremental decoder of a chunked body. Trailers are read and dropped.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// What the decoder made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    NeedMore,
    Done,
}

/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;

impl ChunkedDecoder {
    /// Consumes what it can from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, UwsgiError> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(Decoded::Done),
                ChunkState::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if !line.is_empty() {
                        return Err(UwsgiError::BadChunk("chunk data longer than its size"));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// The size at the start of a chunk-size line (RFC 9112 section 7.1):
/// hexadecimal digits only (no sign, no spaces before them: lenient
/// parsers that disagree here are how request bodies get smuggled), then
/// optional whitespace and extensions, which are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, UwsgiError> {
    let digits = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    let after = line[digits..].trim_ascii_start();
    if digits == 0 || !(after.is_empty() || after[0] == b';') {
        return Err(UwsgiError::BadChunk("chunk size is not hexadecimal"));
    }
    if digits > 16 {
        return Err(UwsgiError::BadChunk("chunk size too large"));
    }
    let digits = std::str::from_utf8(&line[..digits]).expect("hexadecimal digits are ASCII");
    u64::from_str_radix(digits, 16).map_err(|_| UwsgiError::BadChunk("chunk size too large"))
}

/// Takes one CRLF-terminated line (without the CRLF) off the front of `buf`.
fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, UwsgiError> {
    match buf.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => {
            let line = buf.split_to(end).freeze();
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_CHUNK_LINE => Err(UwsgiError::BadChunk("line too long")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_layout() {
        let mut vars = Vars::new();
        vars.push(b"REQUEST_METHOD", b"GET").unwrap();
        vars.push(b"X", b"").unwrap();
        let packet = vars.into_packet();
        let (modifier1, size, modifier2) = decode_header(packet[..4].try_into().unwrap());
        assert_eq!((modifier1, modifier2), (0, 0));
        assert_eq!(usize::from(size), packet.len() - 4);
        assert_eq!(&packet[4..6], &14u16.to_le_bytes());
        assert_eq!(&packet[6..20], b"REQUEST_METHOD");
        assert_eq!(&packet[20..22], &3u16.to_le_bytes());
        let decoded = decode_vars(&packet[4..]).unwrap();
        assert_eq!(
            decoded,
            [(&b"REQUEST_METHOD"[..], &b"GET"[..]), (&b"X"[..], &b""[..])]
        );
    }

    #[test]
    fn vars_are_limited_to_64k() {
        let mut vars = Vars::new();
        let big = vec![b'a'; 30_000];
        vars.push(b"A", &big).unwrap();
        vars.push(b"B", &big).unwrap();
        assert_eq!(vars.push(b"C", &big), Err(UwsgiError::VarsTooLarge));
        assert_eq!(
            Vars::new().push(b"K", &vec![0; 70_000]),
            Err(UwsgiError::VarsTooLarge)
        );
    }

    #[test]
    fn truncated_vars_are_rejected() {
        assert_eq!(decode_vars(&[5, 0, b'a']), Err(UwsgiError::Truncated));
        assert_eq!(decode_vars(&[1, 0, b'a', 9]), Err(UwsgiError::Truncated));
    }

    #[test]
    fn response_heads_and_framing() {
        let text = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
        let (head, length) = parse_response_head(text, false).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(&text[length..], b"hello");
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\n", false)
            .unwrap()
            .is_none());
        let (head, _) = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::UntilClose);
        let (head, _) = parse_response_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let (head, _) = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Empty);
        assert!(parse_response_head(b"garbage\r\n\r\n", false).is_err());
        assert!(parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
    }

    #[test]
    fn heads_of_up_to_the_most_headers_parse() {
        let head_with = |count: usize| {
            let fields: String = (0..count).map(|n| format!("X-{n}: {n}\r\n")).collect();
            format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 0\r\n\r\n")
        };
        for count in [1, FEW_RESPONSE_HEADERS, MAX_RESPONSE_HEADERS - 1] {
            let (head, _) = parse_response_head(head_with(count).as_bytes(), false)
                .unwrap()
                .expect("a whole head");
            let fields = head.fields.to_header_map();
            assert_eq!(fields.len(), count, "the length is the router's to write");
            assert_eq!(fields["x-0"], "0");
        }
        // Partial, past the first attempt's room: more bytes are needed.
        let partial = head_with(MAX_RESPONSE_HEADERS - 1);
        let partial = &partial.as_bytes()[..partial.len() - 4];
        assert!(parse_response_head(partial, false).unwrap().is_none());
        assert!(matches!(
            parse_response_head(head_with(MAX_RESPONSE_HEADERS).as_bytes(), false),
            Err(UwsgiError::BadResponse(_))
        ));
    }

    #[test]
    fn heads_from_every_server_protocol() {
        // uWSGI echoes SERVER_PROTOCOL as its status line's version.
        for version in ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0"] {
            let text = format!("{version} 200 OK\r\nContent-Type: text/plain\r\n\r\nbody");
            let (head, length) = parse_response_head(text.as_bytes(), false)
                .unwrap()
                .unwrap();
            assert_eq!(head.status, StatusCode::OK, "{version}");
            assert_eq!(head.fields.lines(), b"Content-Type: text/plain\r\n");
            assert_eq!(head.framing, Framing::UntilClose);
            assert_eq!(&text.as_bytes()[length..], b"body", "{version}");
        }
        let (head, _) = parse_response_head(b"HTTP/2.0 204\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::NO_CONTENT);
        assert_eq!(head.reason, None);
        assert_eq!(head.framing, Framing::Empty);
        let (head, _) = parse_response_head(b"HTTP/1.1 299 All Good\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.reason.unwrap().as_bytes(), b"All Good");
        // A head cut anywhere, status line included, waits for more.
        let text = b"HTTP/2.0 200 OK\r\nX-A: 1\r\n\r\n";
        for end in 0..text.len() {
            assert!(parse_response_head(&text[..end], false).unwrap().is_none());
        }
        assert_eq!(
            parse_response_head(b"HTTP/1.1 2x0 OK\r\n\r\n", false).unwrap_err(),
            UwsgiError::StatusLine(StatusLineError::BadCode)
        );
    }

    #[test]
    fn cgi_style_heads() {
        let text = b"Status: 404 Gone Fishing\r\nContent-Length: 2\r\n\r\nno";
        let (head, length) = parse_response_head(text, false).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::NOT_FOUND);
        assert_eq!(head.reason.unwrap().as_bytes(), b"Gone Fishing");
        assert_eq!(
            head.fields.lines(),
            b"",
            "neither the status nor the length"
        );
        assert_eq!(head.framing, Framing::Length(2));
        assert_eq!(&text[length..], b"no");
        let (head, _) = parse_response_head(b"Location: /x\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::FOUND);
        assert_eq!(head.fields.lines(), b"Location: /x\r\n");
        let (head, _) = parse_response_head(b"Content-Type: text/plain\n\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(
            parse_response_head(b"Status: OK\r\n\r\n", false).unwrap_err(),
            UwsgiError::StatusHeader(StatusLineError::BadCode)
        );
        assert!(matches!(
            parse_response_head(b"Status: 200\r\nStatus: 404\r\n\r\n", false),
            Err(UwsgiError::BadResponse(_))
        ));
        assert!(parse_response_head(b"Status: 200\r\n", false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn only_an_own_reason_phrase_is_kept() {
        let phrase = |status: u16, reason: Option<&[u8]>| {
            own_reason(StatusCode::from_u16(status).unwrap(), reason)
                .map(|phrase| String::from_utf8(phrase.as_bytes().to_vec()).unwrap())
        };
        assert_eq!(phrase(200, Some(b"Fine")).as_deref(), Some("Fine"));
        assert_eq!(phrase(200, Some(b"OK")), None);
        assert_eq!(phrase(200, Some(b"")), None);
        assert_eq!(phrase(200, None), None);
        assert_eq!(phrase(200, Some(b"bad\r\nX-Injected: 1")), None);
        assert_eq!(phrase(299, Some(b"Custom")).as_deref(), Some("Custom"));
        assert_eq!(phrase(299, None).as_deref(), Some(""));
        assert_eq!(phrase(299, Some(b"bad\x01")).as_deref(), Some(""));
    }

    #[test]
    fn no_head_makes_the_parser_panic() {
        // Every byte value at every position of a few heads, and every
        // truncation: errors or partial results, never a panic.
        // What parses keeps its fields well formed.
        let check = |head: &[u8]| {
            if let Ok(Some((parsed, length))) = parse_response_head(head, false) {
                assert!(length <= head.len());
                parsed.fields.assert_well_formed();
            }
        };
        for head in [
            &b"HTTP/2.0 299 Fine\r\nContent-Length: 3\r\n\r\n"[..],
            b"Status: 404 Gone\nLocation: /x\n\n",
            b"HTTP/1.1 200 OK\r\nConnection: x-a, close\r\nX-A: 1\r\nDate: d\r\n\
              Transfer-Encoding: chunked\r\nKeep-Alive: 5\r\n\r\n",
        ] {
            field_lines::each_mutation(head, check);
        }
    }

    #[test]
    fn chunked_bodies_decode_across_splits() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut buf = BytesMut::new();
            let mut body = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                while let Decoded::Data(data) = decoder.decode(&mut buf).unwrap() {
                    body.extend_from_slice(&data);
                }
            }
            assert_eq!(
                decoder.decode(&mut buf).unwrap(),
                Decoded::Done,
                "split {split}"
            );
            assert_eq!(body, b"hello world");
        }
    }

    #[test]
    fn bad_chunks_are_errors() {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(decoder.decode(&mut buf).is_err());
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"1\r\nab\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"a"))
        );
        assert!(decoder.decode(&mut buf).is_err());
    }

    #[test]
    fn chunk_sizes_are_bare_hexadecimal() {
        assert_eq!(chunk_size(b"1aF").unwrap(), 0x1af);
        assert_eq!(chunk_size(b"5 ; name=value").unwrap(), 5);
        assert_eq!(chunk_size(b"ffffffffffffffff").unwrap(), u64::MAX);
        for bad in [
            &b"+5"[..],
            b" 5",
            b"-1",
            b"5 x",
            b"",
            b"0x5",
            b"10000000000000000",
        ] {
            assert!(chunk_size(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
