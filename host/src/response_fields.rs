//! A backend response's header fields as the client gets them: the lines
//! the backend sent, less those that describe its connection.
//!
//! A response head is not taken apart into a header map. The router acts
//! on a few fields (the framing, the backend connection's persistence, a
//! CGI status, the fields that go no further than the backend's
//! connection); [`Scan`] reads those on the way, and [`Scan::keep`] copies
//! every other field once, as a `name: value` line with the name as the
//! backend wrote it (nginx passes names on that way too). An HTTP/1.x
//! client's response head is then a status line, those lines as they are
//! and the framing the router chose: no map built, hashed, filtered and
//! walked again for each response. Only an HTTP/2 client's response, which
//! hyper writes, gets a header map, made from the lines
//! ([`ResponseFields::to_header_map`]).
//!
//! Pure and synchronous, like the rest of the codec.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The fields of a response that go on to the client, one
/// `name: value\r\n` line each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseFields {
    lines: Bytes,
    date: bool,
}

impl ResponseFields {
    /// The lines, each ending in CRLF, as they go into an HTTP/1.x head.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Whether the backend dated the response (else the router does).
    pub fn has_date(&self) -> bool {
        self.date
    }

    /// The fields (names in lower case, values sharing the lines' buffer),
    /// for a response that hyper writes.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.lines.len() / 24);
        let mut at = 0;
        for line in self.lines.split(|&byte| byte == b'\n') {
            let start = at;
            at += line.len() + 1;
            let Some(colon) = line.iter().position(|&byte| byte == b':') else {
                continue;
            };
            // `keep` wrote each line from checked parts: a name of token
            // characters, then ": ", the value and CRLF.
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_maybe_shared(
                    self.lines.slice(start + colon + 2..start + line.len() - 1),
                ),
            ) else {
                continue;
            };
            map.append(name, value);
        }
        map
    }
}

/// The fields the router acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Describes the connection, goes no further (RFC 9110 section 7.6.1).
    HopByHop,
    Date,
    /// A CGI head's status (only in a head without a status line).
    Status,
    Location,
    Other,
}

/// A field's kind, by its name in any case: lengths first, so most names
/// are told apart without comparing a byte.
fn kind(name: &[u8], cgi: bool) -> Kind {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    match name.len() {
        2 if is("te") => Kind::HopByHop,
        4 if is("date") => Kind::Date,
        6 if cgi && is("status") => Kind::Status,
        7 if is("trailer") || is("upgrade") => Kind::HopByHop,
        8 if is("location") => Kind::Location,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::HopByHop,
        14 if is("content-length") => Kind::ContentLength,
        16 if is("proxy-connection") => Kind::HopByHop,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        _ => Kind::Other,
    }
}

/// What a response head's fields say to the router, read in one pass.
#[derive(Debug)]
pub struct Scan<'h> {
    fields: &'h [httparse::Header<'h>],
    cgi: bool,
    /// The first Content-Length value.
    pub content_length: Option<&'h [u8]>,
    /// Whether another Content-Length differs from the first.
    pub conflicting_lengths: bool,
    /// The last Transfer-Encoding value (its last coding decides).
    pub transfer_encoding: Option<&'h [u8]>,
    /// A CGI head's Status values: the first, and how many there are.
    pub status: Option<&'h [u8]>,
    pub statuses: usize,
    pub location: bool,
    /// `Connection: close` / `keep-alive` (RFC 9112 section 9.3).
    pub close: bool,
    pub keep_alive: bool,
    /// Whether Connection names other fields, which go no further.
    names_fields: bool,
}

impl<'h> Scan<'h> {
    /// Reads `fields` (as httparse checked them); `cgi`: the head has no
    /// status line, so a `Status` field carries the status.
    pub fn new(fields: &'h [httparse::Header<'h>], cgi: bool) -> Self {
        let mut scan = Self {
            fields,
            cgi,
            content_length: None,
            conflicting_lengths: false,
            transfer_encoding: None,
            status: None,
            statuses: 0,
            location: false,
            close: false,
            keep_alive: false,
            names_fields: false,
        };
        for field in fields {
            match kind(field.name.as_bytes(), cgi) {
                Kind::ContentLength => match scan.content_length {
                    None => scan.content_length = Some(field.value),
                    Some(first) => scan.conflicting_lengths |= first != field.value,
                },
                Kind::TransferEncoding => scan.transfer_encoding = Some(field.value),
                Kind::Connection => {
                    for token in tokens(field.value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            scan.close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            scan.keep_alive = true;
                        } else if !token.is_empty() {
                            scan.names_fields = true;
                        }
                    }
                }
                Kind::Status => {
                    scan.status = scan.status.or(Some(field.value));
                    scan.statuses += 1;
                }
                Kind::Location => scan.location = true,
                Kind::HopByHop | Kind::Date | Kind::Other => {}
            }
        }
        scan
    }

    /// The fields that go on to the client: all but those that describe
    /// the backend's connection (the hop-by-hop fields and any that
    /// Connection names), a CGI status, and Content-Length unless
    /// `keep_length` (a body the router frames gets its own).
    pub fn keep(&self, keep_length: bool) -> ResponseFields {
        let size: usize = self
            .fields
            .iter()
            .map(|field| field.name.len() + field.value.len() + 4)
            .sum();
        let mut lines = BytesMut::with_capacity(size);
        let mut date = false;
        for field in self.fields {
            let name = field.name.as_bytes();
            match kind(name, self.cgi) {
                Kind::Connection | Kind::HopByHop | Kind::TransferEncoding | Kind::Status => {
                    continue
                }
                Kind::ContentLength if !keep_length => continue,
                _ if self.names_fields && self.named_by_connection(name) => continue,
                Kind::Date => date = true,
                Kind::ContentLength | Kind::Location | Kind::Other => {}
            }
            lines.put_slice(name);
            lines.put_slice(b": ");
            lines.put_slice(field.value);
            lines.put_slice(b"\r\n");
        }
        ResponseFields {
            lines: lines.freeze(),
            date,
        }
    }

    fn named_by_connection(&self, name: &[u8]) -> bool {
        self.fields
            .iter()
            .filter(|field| kind(field.name.as_bytes(), self.cgi) == Kind::Connection)
            .flat_map(|field| tokens(field.value))
            .any(|token| token.eq_ignore_ascii_case(name))
    }
}

/// The comma-separated tokens of a field value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(head: &str, cgi: bool, keep_length: bool) -> (String, ResponseFields) {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let httparse::Status::Complete((_, fields)) =
            httparse::parse_headers(head.as_bytes(), &mut fields).unwrap()
        else {
            panic!("a whole head");
        };
        let kept = Scan::new(fields, cgi).keep(keep_length);
        (String::from_utf8(kept.lines().to_vec()).unwrap(), kept)
    }

    #[test]
    fn fields_go_on_as_the_backend_wrote_them() {
        let (lines, fields) = kept(
            "Content-Type: text/plain\r\nX-Multi: a\r\nX-Multi:b \r\nContent-Length: 5\r\n\r\n",
            false,
            false,
        );
        assert_eq!(
            lines,
            "Content-Type: text/plain\r\nX-Multi: a\r\nX-Multi: b\r\n"
        );
        assert!(!fields.has_date());
        let map = fields.to_header_map();
        assert_eq!(map.len(), 3);
        assert_eq!(map["content-type"], "text/plain");
        let multi: Vec<_> = map.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        let (lines, fields) = kept("DATE: x\r\nContent-Length: 5\r\n\r\n", false, true);
        assert_eq!(lines, "DATE: x\r\nContent-Length: 5\r\n");
        assert!(fields.has_date());
        assert_eq!(fields.to_header_map()["content-length"], "5");
    }

    #[test]
    fn what_describes_the_connection_goes_no_further() {
        let head = "Connection: Keep-Alive, X-Private, no name\r\nKeep-Alive: timeout=5\r\n\
                    x-private: 1\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: close\r\n\
                    Trailer: x-sum\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n";
        let (lines, _) = kept(head, false, false);
        assert_eq!(lines, "X-Kept: 1\r\n");
        // Whichever comes first, the named field or Connection.
        let (lines, fields) = kept(
            "Date: x\r\nConnection: date\r\nX-Other: 1\r\nConnection: close\r\n\r\n",
            false,
            false,
        );
        assert_eq!(lines, "X-Other: 1\r\n");
        assert!(!fields.has_date(), "a date that went no further");
    }

    #[test]
    fn what_the_router_acts_on_is_read() {
        let head = "Content-Length: 5\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\nStatus: 404\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let httparse::Status::Complete((_, fields)) =
            httparse::parse_headers(head.as_bytes(), &mut fields).unwrap()
        else {
            panic!("a whole head");
        };
        let scan = Scan::new(fields, false);
        assert_eq!(scan.content_length, Some(&b"5"[..]));
        assert!(!scan.conflicting_lengths);
        assert_eq!(scan.transfer_encoding, Some(&b"chunked"[..]));
        assert!(scan.close && !scan.keep_alive);
        // Status is a field like any other after a status line.
        assert_eq!(scan.status, None);
        assert!(scan.keep(false).lines().ends_with(b"Status: 404\r\n"));
        let scan = Scan::new(fields, true);
        assert_eq!((scan.status, scan.statuses), (Some(&b"404"[..]), 1));
        assert!(!scan.keep(false).lines().windows(6).any(|w| w == b"Status"));
    }
}
