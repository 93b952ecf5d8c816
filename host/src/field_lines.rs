//! Header fields kept as the lines a peer sent, for requests and responses
//! alike.
//!
//! A head read off an HTTP/1.x connection is not taken apart into a header
//! map. The router acts on a few fields (the framing, persistence, an
//! expectation, a CGI status, the fields that describe the connection and
//! go no further); their parsers read those from httparse's fields on the
//! way ([`Known`] tells them apart by name, in any case), and [`keep`]
//! copies every field that goes on once, as a `name: value` line with the
//! name as the peer wrote it (nginx passes names on that way too). The next
//! hop's head is then those lines, as they are, beside what the router
//! writes itself: no map built, hashed, filtered and walked again for each
//! message. Where a map is needed (hyper writes HTTP/2 responses; a uwsgi
//! request groups repeated fields), [`FieldLines::to_header_map`] makes one.
//!
//! Pure and synchronous, like the rest of the codec.

use bytes::{BufMut, Bytes};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The fields the router acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Known {
    ContentLength,
    TransferEncoding,
    Connection,
    /// One of the other fields that describe a connection, not the message
    /// (RFC 9110 section 7.6.1): Keep-Alive, Proxy-Connection, TE, Trailer,
    /// Upgrade.
    HopByHop,
    Date,
    Expect,
    Host,
    Location,
    /// A CGI head's status (a field like any other after a status line).
    Status,
    XForwardedFor,
    XForwardedProto,
    Other,
}

impl Known {
    /// Whether the field describes the connection it came on, so goes no
    /// further than it.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Self::Connection | Self::HopByHop | Self::TransferEncoding
        )
    }

    fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// A field's kind, by its name in any case: lengths first, so most names
/// are told apart without comparing a byte.
pub fn known(name: &[u8]) -> Known {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    match name.len() {
        2 if is("te") => Known::HopByHop,
        4 if is("date") => Known::Date,
        4 if is("host") => Known::Host,
        6 if is("expect") => Known::Expect,
        6 if is("status") => Known::Status,
        7 if is("trailer") || is("upgrade") => Known::HopByHop,
        8 if is("location") => Known::Location,
        10 if is("connection") => Known::Connection,
        10 if is("keep-alive") => Known::HopByHop,
        14 if is("content-length") => Known::ContentLength,
        15 if is("x-forwarded-for") => Known::XForwardedFor,
        16 if is("proxy-connection") => Known::HopByHop,
        17 if is("transfer-encoding") => Known::TransferEncoding,
        17 if is("x-forwarded-proto") => Known::XForwardedProto,
        _ => Known::Other,
    }
}

/// The comma-separated tokens of a field value.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii)
}

/// What a Connection field's tokens say (RFC 9112 section 9.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    /// Other fields are named, which go no further than the connection.
    pub names_fields: bool,
}

impl ConnectionOptions {
    /// Adds what one Connection field's `value` says.
    pub fn add(&mut self, value: &[u8]) {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !token.is_empty() {
                self.names_fields = true;
            }
        }
    }

    /// Whether the connection carries another message after this one:
    /// HTTP/1.1 unless `close`, HTTP/1.0 (`http10`) only with `keep-alive`.
    pub fn persists(self, http10: bool) -> bool {
        if http10 {
            self.keep_alive
        } else {
            !self.close
        }
    }
}

/// Fields kept to go on, one `name: value\r\n` line each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldLines {
    lines: Bytes,
    /// Which [`Known`] kinds are among them, a bit each.
    present: u16,
}

/// A field as the parsers hand it on: its kind, name and value (as
/// httparse checked them).
pub type Field<'h> = (Known, &'h [u8], &'h [u8]);

/// Copies the `fields` that go on: all but the hop-by-hop ones, those that
/// `connection` names, and those `dropped` says.
pub fn keep<'h, F>(
    fields: F,
    connection: ConnectionOptions,
    dropped: impl Fn(Known) -> bool,
) -> FieldLines
where
    F: Iterator<Item = Field<'h>> + Clone,
{
    let all = fields.clone();
    let dropped = &dropped;
    let kept = fields.filter(move |&(kind, name, _)| {
        !(kind.is_hop_by_hop()
            || dropped(kind)
            || (connection.names_fields && named_by_connection(all.clone(), name)))
    });
    // Exactly the room the lines take: a buffer filled to its capacity
    // becomes `Bytes` as it is, with no shared header allocated beside it.
    let size: usize = kept
        .clone()
        .map(|(_, name, value)| name.len() + value.len() + 4)
        .sum();
    let mut lines = Vec::with_capacity(size);
    let mut present = 0;
    for (kind, name, value) in kept {
        present |= kind.bit();
        put_line(&mut lines, name, value);
    }
    FieldLines {
        lines: Bytes::from(lines),
        present,
    }
}

/// Writes one field as a head's line, `name: value` and CRLF: the lines
/// kept here, and every field the router writes itself.
pub fn put_line(out: &mut impl BufMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Whether a Connection field among `fields` names the field `name`.
fn named_by_connection<'h>(fields: impl Iterator<Item = Field<'h>>, name: &[u8]) -> bool {
    fields
        .filter(|&(kind, _, _)| kind == Known::Connection)
        .flat_map(|(_, _, value)| tokens(value))
        .any(|token| token.eq_ignore_ascii_case(name))
}

/// httparse's `fields` with their kinds, each told once into `kinds` (as
/// long as `fields` at least).
pub fn classify<'h>(
    fields: &'h [httparse::Header<'h>],
    kinds: &'h mut [Known],
) -> impl Iterator<Item = Field<'h>> + Clone {
    for (kind, field) in kinds.iter_mut().zip(fields) {
        *kind = known(field.name.as_bytes());
    }
    kinds
        .iter()
        .zip(fields)
        .map(|(&kind, field)| (kind, field.name.as_bytes(), field.value))
}

impl FieldLines {
    /// The lines, each ending in CRLF, as they go into an HTTP/1.x head.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Whether a field of this kind is among them.
    pub fn has(&self, kind: Known) -> bool {
        self.present & kind.bit() != 0
    }

    /// Each field's name (as the peer wrote it) and value.
    pub fn iter(&self) -> Fields<'_> {
        Fields(Spans {
            lines: &self.lines,
            at: 0,
        })
    }

    /// The first value of a field of this kind.
    pub fn get(&self, kind: Known) -> Option<&[u8]> {
        if !self.has(kind) {
            return None;
        }
        self.iter()
            .find(|(name, _)| known(name) == kind)
            .map(|(_, value)| value)
    }

    /// The fields (names in lower case, values sharing the lines' buffer).
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.lines.len() / 24);
        let spans = Spans {
            lines: &self.lines,
            at: 0,
        };
        for (name, value) in spans {
            // `keep` wrote each line from parts httparse checked.
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&self.lines[name]),
                HeaderValue::from_maybe_shared(self.lines.slice(value)),
            ) else {
                continue;
            };
            map.append(name, value);
        }
        map
    }
}

/// Calls `check` with every truncation of `head` and with `head` with
/// every byte value at every position: how the parsers that keep lines
/// are shaken.
#[cfg(test)]
pub(crate) fn each_mutation(head: &[u8], mut check: impl FnMut(&[u8])) {
    for position in 0..head.len() {
        check(&head[..position]);
        let mut mutated = head.to_vec();
        for byte in 0..=u8::MAX {
            mutated[position] = byte;
            check(&mutated);
        }
    }
}

#[cfg(test)]
impl FieldLines {
    /// Panics unless the lines keep their promises, whatever head they were
    /// kept from: whole `name: value` lines, no field that describes a
    /// connection, the kinds noted as they are, every field in the map.
    pub(crate) fn assert_well_formed(&self) {
        assert!(self.lines.is_empty() || self.lines.ends_with(b"\r\n"));
        let mut present = 0;
        let mut count = 0;
        for (name, value) in self.iter() {
            assert!(
                !name.is_empty()
                    && name
                        .iter()
                        .all(|&byte| byte.is_ascii_graphic() && byte != b':')
            );
            assert!(!value.contains(&b'\n') && !value.contains(&b'\r'));
            let kind = known(name);
            assert!(!kind.is_hop_by_hop(), "{:?}", String::from_utf8_lossy(name));
            present |= kind.bit();
            count += 1;
        }
        assert_eq!(present, self.present);
        assert_eq!(
            self.iter()
                .map(|(name, value)| name.len() + value.len() + 4)
                .sum::<usize>(),
            self.lines.len()
        );
        assert_eq!(self.to_header_map().len(), count);
    }
}

/// The fields of a [`FieldLines`]: name and value.
#[derive(Clone, Debug)]
pub struct Fields<'a>(Spans<'a>);

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let lines = self.0.lines;
        self.0
            .next()
            .map(|(name, value)| (&lines[name], &lines[value]))
    }
}

/// Where each name and value lie in lines that `keep` wrote as
/// `name: value\r\n`.
#[derive(Clone, Debug)]
struct Spans<'a> {
    lines: &'a [u8],
    at: usize,
}

impl Iterator for Spans<'_> {
    type Item = (std::ops::Range<usize>, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at;
        let line = self.lines.get(at..)?;
        let end = line.iter().position(|&byte| byte == b'\n')?;
        let colon = line[..end].iter().position(|&byte| byte == b':')?;
        self.at += end + 1;
        Some((at..at + colon, at + colon + 2..at + end - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `head`'s fields and keeps them as a response's would be kept
    /// (`dropped`: Content-Length).
    fn kept(head: &str, dropped: impl Fn(Known) -> bool) -> FieldLines {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let httparse::Status::Complete((_, fields)) =
            httparse::parse_headers(head.as_bytes(), &mut fields).unwrap()
        else {
            panic!("a whole head");
        };
        let mut connection = ConnectionOptions::default();
        for field in fields.iter() {
            if known(field.name.as_bytes()) == Known::Connection {
                connection.add(field.value);
            }
        }
        let mut kinds = [Known::Other; 32];
        keep(classify(fields, &mut kinds), connection, dropped)
    }

    fn text(fields: &FieldLines) -> &str {
        std::str::from_utf8(fields.lines()).unwrap()
    }

    #[test]
    fn fields_go_on_as_the_peer_wrote_them() {
        let fields = kept(
            "Content-Type: text/plain\r\nX-Multi: a\r\nX-Multi:b \r\nx-empty:\r\n\
             Content-Length: 5\r\n\r\n",
            |kind| kind == Known::ContentLength,
        );
        assert_eq!(
            text(&fields),
            "Content-Type: text/plain\r\nX-Multi: a\r\nX-Multi: b\r\nx-empty: \r\n"
        );
        assert!(!fields.has(Known::Date) && !fields.has(Known::ContentLength));
        let pairs: Vec<_> = fields.iter().collect();
        assert_eq!(pairs[1], (&b"X-Multi"[..], &b"a"[..]));
        assert_eq!(pairs[3], (&b"x-empty"[..], &b""[..]));
        let map = fields.to_header_map();
        assert_eq!(map.len(), 4);
        assert_eq!(map["content-type"], "text/plain");
        let multi: Vec<_> = map.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        let fields = kept("DATE: x\r\nContent-Length: 5\r\nHost: h\r\n\r\n", |_| false);
        assert_eq!(text(&fields), "DATE: x\r\nContent-Length: 5\r\nHost: h\r\n");
        assert!(fields.has(Known::Date));
        assert_eq!(fields.get(Known::Host), Some(&b"h"[..]));
        assert_eq!(fields.get(Known::Expect), None);
        assert_eq!(fields.to_header_map()["content-length"], "5");
    }

    #[test]
    fn what_describes_the_connection_goes_no_further() {
        let head = "Connection: Keep-Alive, X-Private, no name\r\nKeep-Alive: timeout=5\r\n\
                    x-private: 1\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: close\r\n\
                    Trailer: x-sum\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n";
        assert_eq!(text(&kept(head, |_| false)), "X-Kept: 1\r\n");
        // Whichever comes first, the named field or Connection.
        let fields = kept(
            "Date: x\r\nConnection: date\r\nX-Other: 1\r\nConnection: close\r\n\r\n",
            |_| false,
        );
        assert_eq!(text(&fields), "X-Other: 1\r\n");
        assert!(!fields.has(Known::Date), "a date that went no further");
    }

    #[test]
    fn connection_options_decide_persistence() {
        let options = |values: &[&str]| {
            let mut options = ConnectionOptions::default();
            for value in values {
                options.add(value.as_bytes());
            }
            options
        };
        assert!(options(&[]).persists(false));
        assert!(!options(&["x, Close"]).persists(false));
        assert!(!options(&[]).persists(true));
        assert!(options(&["upgrade", "Keep-Alive"]).persists(true));
        assert!(!options(&["close, keep-alive"]).names_fields);
        assert!(options(&["x-private"]).names_fields);
    }

    #[test]
    fn the_kinds_are_told_apart_in_any_case() {
        for (name, kind) in [
            ("content-length", Known::ContentLength),
            ("Transfer-Encoding", Known::TransferEncoding),
            ("CONNECTION", Known::Connection),
            ("te", Known::HopByHop),
            ("Trailer", Known::HopByHop),
            ("upgrade", Known::HopByHop),
            ("Keep-Alive", Known::HopByHop),
            ("proxy-connection", Known::HopByHop),
            ("Date", Known::Date),
            ("expect", Known::Expect),
            ("HOST", Known::Host),
            ("location", Known::Location),
            ("Status", Known::Status),
            ("X-Forwarded-For", Known::XForwardedFor),
            ("x-forwarded-proto", Known::XForwardedProto),
            ("x-forwarded-host", Known::Other),
            ("hosts", Known::Other),
        ] {
            assert_eq!(known(name.as_bytes()), kind, "{name}");
        }
    }
}
