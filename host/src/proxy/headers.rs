//! Response-head rules shared by both backend protocols: which headers go
//! on, and which reason phrase.

use http::header::{self, HeaderMap, HeaderName};
use http::StatusCode;
use hyper::ext::ReasonPhrase;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1);
/// a proxy must not forward them. HTTP/2 forbids them outright.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The reason phrase to send an HTTP/1.x client for a backend's
/// `reason`: the backend's own, as nginx passes it on, unless it is empty
/// or the canonical one (hyper writes that itself) or could not be written
/// safely. HTTP/2 has no reason phrases; hyper ignores it there.
pub fn own_reason(status: StatusCode, reason: &[u8]) -> Option<ReasonPhrase> {
    let canonical = status.canonical_reason().map(str::as_bytes);
    if reason.is_empty() || Some(reason) == canonical {
        return None;
    }
    ReasonPhrase::try_from(reason).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_an_own_reason_phrase_is_kept() {
        let own = own_reason(StatusCode::OK, b"Fine").unwrap();
        assert_eq!(own.as_bytes(), b"Fine");
        assert!(own_reason(StatusCode::OK, b"OK").is_none());
        assert!(own_reason(StatusCode::OK, b"").is_none());
        assert!(own_reason(StatusCode::OK, b"bad\r\nX-Injected: 1").is_none());
        let unknown = StatusCode::from_u16(299).unwrap();
        assert_eq!(
            own_reason(unknown, b"Custom").unwrap().as_bytes(),
            b"Custom"
        );
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
    }
}
