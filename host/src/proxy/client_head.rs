//! A client's request head as the proxy forwards it: the request line, and
//! the header fields in whichever form they came in.
//!
//! An HTTP/1.x request's fields are the lines the client sent, less those
//! that describe its connection ([`crate::field_lines`], kept by
//! [`super::request_head`]): the HTTP backend's head takes them as they
//! are. An HTTP/2 request's are hyper's header map. Both read the same way
//! here, name and value as bytes.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use http::{Method, Uri, Version};

use crate::field_lines::{self, FieldLines, Fields, Known};

/// A request head.
#[derive(Debug)]
pub struct ClientHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub fields: RequestFields,
}

impl ClientHead {
    /// An HTTP/2 request's head, from hyper, less any field that describes
    /// a connection (RFC 9110 section 7.6.1).
    pub fn from_hyper(parts: Parts) -> Self {
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            fields: RequestFields::Map(headers),
        }
    }
}

/// A request's header fields, none of them hop-by-hop.
#[derive(Debug)]
pub enum RequestFields {
    /// An HTTP/1.x request's, as the client sent them.
    Lines(FieldLines),
    /// An HTTP/2 request's.
    Map(HeaderMap),
}

impl RequestFields {
    /// Each field's name and value.
    pub fn iter(&self) -> FieldIter<'_> {
        match self {
            Self::Lines(lines) => FieldIter::Lines(lines.iter()),
            Self::Map(map) => FieldIter::Map(map.iter()),
        }
    }

    /// About how many bytes the fields take in an HTTP/1.1 head.
    pub fn size(&self) -> usize {
        match self {
            Self::Lines(lines) => lines.lines().len(),
            Self::Map(map) => map
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum(),
        }
    }

    /// The Host field's value.
    pub fn host(&self) -> Option<&[u8]> {
        match self {
            Self::Lines(lines) => lines.get(Known::Host),
            Self::Map(map) => map.get(header::HOST).map(|value| value.as_bytes()),
        }
    }

    /// The (first) Content-Length field's value.
    pub fn content_length(&self) -> Option<&[u8]> {
        match self {
            Self::Lines(lines) => lines.get(Known::ContentLength),
            Self::Map(map) => map
                .get(header::CONTENT_LENGTH)
                .map(|value| value.as_bytes()),
        }
    }

    /// The fields as a map, made for the occasion from lines.
    pub fn to_map(&self) -> Cow<'_, HeaderMap> {
        match self {
            Self::Lines(lines) => Cow::Owned(lines.to_header_map()),
            Self::Map(map) => Cow::Borrowed(map),
        }
    }
}

/// The fields of a [`RequestFields`]: name and value.
pub enum FieldIter<'a> {
    Lines(Fields<'a>),
    Map(header::Iter<'a, header::HeaderValue>),
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Lines(fields) => fields.next(),
            Self::Map(fields) => fields
                .next()
                .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
        }
    }
}

/// Removes hop-by-hop fields (RFC 9110 section 7.6.1), including any that
/// `Connection` names. HTTP/2 forbids them, but for `TE: trailers`, which
/// hyper lets through.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names finds that, with
    // nothing allocated.
    let mut gone: Vec<HeaderName> = Vec::new();
    for (name, value) in headers.iter() {
        let kind = field_lines::known(name.as_str().as_bytes());
        if !kind.is_hop_by_hop() {
            continue;
        }
        gone.push(name.clone());
        if kind == Known::Connection {
            // A token that is not a field name names nothing to remove.
            gone.extend(
                field_lines::tokens(value.as_bytes())
                    .filter_map(|token| HeaderName::from_bytes(token).ok()),
            );
        }
    }
    for name in gone {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn connection_named_headers_go_too() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));

        // Whichever comes first, the named header or `Connection`.
        let mut headers = HeaderMap::new();
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-private"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        headers.append(header::CONNECTION, HeaderValue::from_static("x-other"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");

        // Tokens in any case; one that is no header name removes nothing.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive, X-Private, no name, Close"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert(header::TRAILER, HeaderValue::from_static("x-sum"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(
            headers.keys().map(|name| name.as_str()).collect::<Vec<_>>(),
            ["x-kept"]
        );
    }
}
