//! The two stats listeners.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::{render_json, render_prometheus, SnapshotSource};
use crate::limits;
use crate::shutdown::Shutdown;

/// `stats = addr`: every connection gets one JSON document, then is closed,
/// as uWSGI does (so `nc host port` or `telnet` shows the figures).
pub async fn serve_tcp(listener: TcpListener, source: SnapshotSource, mut shutdown: Shutdown) {
    while let Some((mut stream, peer)) = accept(&listener, &mut shutdown).await {
        let document = render_json(&source());
        tokio::spawn(async move {
            let written = tokio::time::timeout(limits::HEADER_READ_TIMEOUT, async {
                stream.write_all(document.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                debug!(%peer, "stats: client went away before reading the document");
            }
        });
    }
}

/// `stats-http = addr`: JSON at `/`, Prometheus text at `/metrics`.
pub async fn serve_http(listener: TcpListener, source: SnapshotSource, mut shutdown: Shutdown) {
    while let Some((stream, peer)) = accept(&listener, &mut shutdown).await {
        let source = source.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(respond(&request, &source)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                debug!(%peer, %error, "stats-http: connection ended with an error");
            }
        });
    }
}

/// The next connection, or `None` once shutdown is requested.
async fn accept(
    listener: &TcpListener,
    shutdown: &mut Shutdown,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) => {
                    debug!(%error, "stats: accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = shutdown.requested() => return None,
        }
    }
}

fn respond(request: &Request<Incoming>, source: &SnapshotSource) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => {
            (StatusCode::OK, "application/json", render_json(&source()))
        }
        (&Method::GET | &Method::HEAD, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_prometheus(&source()),
        ),
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try / (JSON) or /metrics (Prometheus)\n".to_owned(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
