//! In-process backends that answer every request with what they received,
//! as JSON, so tests can check what the router sent.
//!
//! The uwsgi backend decodes the protocol with [`crate::uwsgi`] (not the
//! router's code), so the two implementations check each other.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::uwsgi;

/// A running test backend.
#[derive(Clone, Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub served: Arc<AtomicUsize>,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Backend {
    pub fn served(&self) -> usize {
        self.served.load(Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// `--http-to` value for a uwsgi backend.
    pub fn uwsgi_to(&self) -> String {
        self.addr.to_string()
    }

    /// `--http-to` value for an HTTP backend.
    pub fn http_to(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What both backends report about a body.
fn body_summary(body: &[u8]) -> Value {
    json!({
        "body_len": body.len(),
        "body_sum": body.iter().map(|&b| u64::from(b)).sum::<u64>(),
        "body": if body.len() <= 1024 { String::from_utf8_lossy(body).into_owned() } else { String::new() },
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// A backend serving on a runtime of its own, for a `#[test]` that runs
/// none: it serves as long as this lives.
pub struct OnOwnRuntime {
    backend: Backend,
    _runtime: tokio::runtime::Runtime,
}

impl std::ops::Deref for OnOwnRuntime {
    type Target = Backend;

    fn deref(&self) -> &Backend {
        &self.backend
    }
}

/// A [`uwsgi`] backend on a runtime of its own.
pub fn uwsgi_on_own_runtime(name: &str) -> OnOwnRuntime {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    OnOwnRuntime {
        backend: runtime.block_on(uwsgi(name)),
        _runtime: runtime,
    }
}

/// A uwsgi-protocol backend. PATH_INFO `/chunked` answers with a chunked
/// body, `/close` with a body delimited by closing the connection; anything
/// else with Content-Length.
pub async fn uwsgi(name: &str) -> Backend {
    let name: Arc<str> = name.into();
    serve_each(move |stream, served| {
        let name = Arc::clone(&name);
        async move {
            if let Err(error) = uwsgi_exchange(stream, &name, &served).await {
                eprintln!("test uwsgi backend {name}: {error}");
            }
        }
    })
    .await
}

/// A backend on a free loopback port that runs `handle` for each
/// connection it accepts, in a task of its own, with the served-requests
/// counter; connections are counted here.
async fn serve_each<F, Fut>(handle: F) -> Backend
where
    F: Fn(TcpStream, Arc<AtomicUsize>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = Backend {
        addr: listener.local_addr().unwrap(),
        served: Arc::default(),
        connections: Arc::default(),
    };
    let served = Arc::clone(&backend.served);
    let connections = Arc::clone(&backend.connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Relaxed);
            tokio::spawn(handle(stream, Arc::clone(&served)));
        }
    });
    backend
}

async fn uwsgi_exchange(
    mut stream: TcpStream,
    name: &str,
    served: &AtomicUsize,
) -> std::io::Result<()> {
    let mut header = [0u8; uwsgi::HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let mut block = vec![0u8; uwsgi::block_len(header).map_err(io::Error::other)?];
    stream.read_exact(&mut block).await?;
    let vars = uwsgi::var_map(&block).map_err(io::Error::other)?;
    let length = uwsgi::content_length(&vars)
        .and_then(|length| usize::try_from(length).ok())
        .ok_or_else(|| io::Error::other(format!("CONTENT_LENGTH {:?}", vars["CONTENT_LENGTH"])))?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    served.fetch_add(1, Relaxed);

    let document = merge(
        json!({ "backend": name, "vars": vars }),
        body_summary(&body),
    );
    let document = serde_json::to_vec(&document).unwrap();
    let response = match vars.get("PATH_INFO").map(String::as_str) {
        Some("/chunked") => {
            let mut out =
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            for piece in document.chunks(7) {
                out.extend_from_slice(format!("{:x};x=y\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
            out
        }
        Some("/close") => {
            let mut out = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n".to_vec();
            out.extend_from_slice(&document);
            out
        }
        _ => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n",
                document.len()
            )
            .into_bytes();
            out.extend_from_slice(&document);
            out
        }
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// An HTTP/1.1 backend.
pub async fn http(name: &str) -> Backend {
    let name: Arc<str> = name.into();
    serve_each(move |stream, served| {
        let name = Arc::clone(&name);
        async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (served, name) = (Arc::clone(&served), Arc::clone(&name));
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    served.fetch_add(1, Relaxed);
                    let mut headers = BTreeMap::<String, Vec<String>>::new();
                    for (key, value) in &parts.headers {
                        headers
                            .entry(key.as_str().to_owned())
                            .or_default()
                            .push(value.to_str().unwrap_or("<binary>").to_owned());
                    }
                    let document = merge(
                        json!({
                            "backend": &*name,
                            "method": parts.method.as_str(),
                            "uri": parts.uri.to_string(),
                            "version": format!("{:?}", parts.version),
                            "headers": headers,
                        }),
                        body_summary(&body),
                    );
                    let response = Response::builder()
                        .header("content-type", "application/json")
                        .header("x-backend", &*name)
                        .body(Full::new(Bytes::from(
                            serde_json::to_vec(&document).unwrap(),
                        )))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await
}

/// Lets the requests a [`held_http`] backend holds be answered.
#[derive(Debug)]
pub struct Hold(tokio::sync::watch::Sender<bool>);

impl Hold {
    /// Every request held so far, and every later one, is answered.
    pub fn release(&self) {
        self.0.send_replace(true);
    }
}

/// An HTTP/1.1 backend that counts each request as it arrives and answers
/// `200 held` only once the test calls [`Hold::release`]: a request in
/// flight for exactly as long as a test needs (draining, for one).
pub async fn held_http() -> (Backend, Hold) {
    let (release, released) = tokio::sync::watch::channel(false);
    let backend = serve_each(move |mut stream, served| {
        let mut released = released.clone();
        async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            served.fetch_add(1, Relaxed);
            if released.wait_for(|released| *released).await.is_err() {
                return;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld")
                .await;
        }
    })
    .await;
    (backend, Hold(release))
}
