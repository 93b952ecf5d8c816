//! Timeouts and size limits. They bound what one slow or hostile peer can
//! hold on to; none of them is on the path of a well-behaved client.

use std::time::Duration;

/// From accepting a TCP connection to the end of the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest ClientHello accepted, its 4-byte handshake header included.
/// Real ones are 200 bytes to 2 KiB (a post-quantum key share is 1.2 KiB, a
/// TLS 1.3 ticket from this router 32 bytes); rustls itself would take up to
/// 64 KiB, which is memory a client could hold on to for nothing.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;
/// Most bytes read off a connection before its ClientHello is whole: the
/// message and the headers of the records that carry it, room for a client
/// that cuts it into records of a few bytes.
pub const MAX_CLIENT_HELLO_READ: usize = 2 * MAX_CLIENT_HELLO;
/// For an HTTP/1.1 request's headers to arrive once its first byte has.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A client connection with no request in flight is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an HTTP/2 connection is pinged, and how long a ping may take.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// For a backend to accept a TCP connection before it is marked down.
pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// For a backend to send its response head once the request is sent.
pub const BACKEND_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// An idle keep-alive connection to an HTTP backend is not reused after
/// this long: shorter than common backends' own keep-alive timeouts (nginx
/// 60-75 s, HAProxy's default `timeout http-keep-alive`), so the router is
/// usually the side that lets go.
pub const BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections kept per HTTP backend in each serving process.
pub const BACKEND_IDLE_PER_PROCESS: usize = 64;
/// For a request body's sender to finish once the response has ended,
/// before the connection is closed rather than parked: past it, the
/// backend answered early and is not reading the rest.
pub const BACKEND_SENDER_GRACE: Duration = Duration::from_secs(1);
/// First back-off of a failed backend; doubles with each failure in a row.
pub const BACKEND_RETRY_MIN: Duration = Duration::from_secs(1);
pub const BACKEND_RETRY_MAX: Duration = Duration::from_secs(30);
/// After SIGTERM, how long in-flight requests get to finish.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// For a closing HTTP/1.x connection's TLS close_notify to be written: a
/// client that stopped reading must not hold the connection open.
pub const CLOSE_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Client connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Largest HTTP/1.1 request head (and read buffer).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers in one HTTP/1.1 request.
pub const MAX_HEADERS: usize = 100;
/// Concurrent streams on one HTTP/2 connection.
pub const H2_MAX_STREAMS: u32 = 128;
/// Largest response head a backend may send.
pub const MAX_BACKEND_HEAD: usize = 64 * 1024;
/// The uwsgi protocol needs CONTENT_LENGTH up front; a request body of
/// unknown length (chunked, or HTTP/2 without content-length) is buffered up
/// to this size for uwsgi backends and refused with 413 beyond it.
pub const MAX_BUFFERED_BODY: usize = 8 * 1024 * 1024;

/// How often the session cache is swept for expired entries, and how many
/// slots one sweep step may look at (each step holds the cache lock).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
pub const SWEEP_BUDGET: u32 = 1024;
