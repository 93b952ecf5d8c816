//! A client request's header rules: which headers go on to a backend, and
//! whether the connection carries another request. (A backend response's
//! fields are read as lines, in [`crate::response_fields`].)

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message (RFC 9110 7.6.1);
/// a proxy must not forward them. HTTP/2 forbids them outright.
const HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const HOPS: usize = 7;

/// Where a header `name` (lower case) is in [`HOP_BY_HOP`]. A match on
/// the text: a standard name's is a table lookup, and the match tests
/// lengths before bytes, where comparing `HeaderName`s would compare each
/// custom name in full against each custom hop-by-hop one.
fn hop_by_hop_index(name: &[u8]) -> Option<usize> {
    match name {
        b"connection" => Some(0),
        b"keep-alive" => Some(1),
        b"proxy-connection" => Some(2),
        b"te" => Some(3),
        b"trailer" => Some(4),
        b"transfer-encoding" => Some(5),
        b"upgrade" => Some(6),
        _ => None,
    }
}

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none, or only `Connection` (`keep-alive` or
    // `close`): one pass over the names finds which are there, then each
    // one present costs a removal, rather than a lookup for each name
    // that might be.
    let mut present = [false; HOPS];
    for name in headers.keys() {
        if let Some(index) = hop_by_hop_index(name.as_str().as_bytes()) {
            present[index] = true;
        }
    }
    if present == [false; HOPS] {
        return;
    }
    // What `Connection` names, other than the hop-by-hop headers
    // themselves, goes too. Its values are kept (a reference count each)
    // so that the map can change under them.
    let mut connection = headers.get_all(header::CONNECTION).iter().cloned();
    let first = connection.next();
    let more: Vec<HeaderValue> = connection.collect();
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    for value in first.iter().chain(&more) {
        for token in tokens(value) {
            if hop_by_hop_index(token).is_some() {
                continue;
            }
            // A token that is not a header name names nothing to remove.
            if let Ok(token) = std::str::from_utf8(token) {
                headers.remove(token);
            }
        }
    }
}

/// The `Connection` header's tokens.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(header::CONNECTION).iter().flat_map(tokens)
}

/// The comma-separated tokens of one header value.
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&byte| byte == b',')
        .map(<[u8]>::trim_ascii)
}

/// Whether a request's connection carries another one after it (RFC 9112
/// section 9.3):
/// HTTP/1.1 unless `close`, HTTP/1.0 (`http10`) only with `keep-alive`.
pub fn persists(headers: &HeaderMap, http10: bool) -> bool {
    let mut tokens = connection_tokens(headers);
    if http10 {
        tokens.any(|token| token.eq_ignore_ascii_case(b"keep-alive"))
    } else {
        !tokens.any(|token| token.eq_ignore_ascii_case(b"close"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_match_and_the_list_agree() {
        for (index, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str().as_bytes()), Some(index));
        }
        assert_eq!(hop_by_hop_index(b"content-length"), None);
    }

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
