//! What the router answers a request with: a status, header fields and a
//! body, the fields kept in whichever form they came in.
//!
//! A backend's fields stay the lines it sent
//! ([`crate::field_lines`]), which an HTTP/1.x client's head takes as
//! they are ([`super::response_writer`]); the router's own answers (error
//! pages) have a header map. Only an HTTP/2 response, which hyper writes,
//! needs a map whatever the source ([`Answer::into_response`]).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::ext::ReasonPhrase;

use super::ProxyBody;
use crate::field_lines::FieldLines;

/// A response on its way to the client.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The reason phrase an HTTP/1.x client gets instead of the status's
    /// canonical one (a backend's own).
    pub reason: Option<ReasonPhrase>,
    pub headers: AnswerHeaders,
    pub body: ProxyBody,
}

/// An answer's header fields.
#[derive(Debug)]
pub enum AnswerHeaders {
    /// Made by the router.
    Map(HeaderMap),
    /// A backend's, as it sent them, less what described its connection.
    Relayed(FieldLines),
}

impl Answer {
    /// A plain-text answer of the router's own.
    pub fn plain(status: StatusCode, detail: &str) -> Self {
        let reason = status.canonical_reason().unwrap_or_default();
        let text = format!("{} {reason}\n\n{detail}\n", status.as_u16());
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Self {
            status,
            reason: None,
            headers: AnswerHeaders::Map(headers),
            body: Full::new(Bytes::from(text))
                .map_err(|never| match never {})
                .boxed_unsync(),
        }
    }

    /// The answer as hyper writes it (HTTP/2): the fields as a map. hyper
    /// adds the Content-Length of a body whose length is known.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = match self.headers {
            AnswerHeaders::Map(map) => map,
            AnswerHeaders::Relayed(fields) => fields.to_header_map(),
        };
        response
    }
}
