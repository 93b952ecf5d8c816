//! The ClientHello, read off the socket by the router before rustls sees
//! it, for what the client offers to resume.
//!
//! A router of a cluster must be able to fetch a session it lacks from its
//! peers before rustls looks it up, so it has to know which session a
//! client offers first: [`read`] takes the records of the client's first
//! flight off the socket into one buffer (growing from [`FIRST_READ`] bytes
//! up to [`MAX_CLIENT_HELLO_READ`]) until they hold the whole ClientHello,
//! which `cachet_core::hello` reassembles and parses without copying (a
//! ClientHello fragmented over several records is joined at the end of the
//! same buffer). The caller hands rustls a `proxy::client_stream::ClientStream` stream
//! that replays those bytes, so rustls reads exactly what the client sent.
//!
//! What is kept is an [`Offer`]: the SNI name, the TLS 1.2 session id, the
//! TLS 1.3 PSK identities, whether TLS 1.3 is offered. A ClientHello that is
//! not one, is cut short by the client closing, or is longer than
//! [`MAX_CLIENT_HELLO`] is refused ([`HelloError`]): the connection is
//! closed, with a TLS alert when the client may still be listening, and the
//! refusal counted by [`Rejection`].

use std::io;

use cachet_core::hello::{self, ClientHello, Offered, Reassembly, MAX_SESSION_ID_LEN};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::hex::Hex;
use crate::limits::{MAX_CLIENT_HELLO, MAX_CLIENT_HELLO_READ};
use crate::metrics::{Metric, Outcome};

/// Bytes asked of the socket by the first read: every common client's
/// whole ClientHello, so it takes one system call.
pub const FIRST_READ: usize = 4096;

/// What a client offers in its ClientHello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// The SNI name as rustls reads it: lower case, `None` without a name
    /// or for an IP address (which RFC 6066 does not allow there).
    pub server_name: Option<String>,
    /// `legacy_session_id`.
    pub session_id: SessionId,
    /// Whether `supported_versions` lists TLS 1.3.
    pub tls13: bool,
    /// The `pre_shared_key` identities, in the client's order.
    pub psk_identities: Vec<Vec<u8>>,
    /// Whether a TLS 1.2 ticket is offered (`session_ticket`, RFC 5077):
    /// a server with stateless tickets resumes by it, never by the id.
    pub tls12_ticket: bool,
}

/// What a server speaking TLS 1.3 looks up to resume the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumption<'a> {
    /// Nothing: a full handshake.
    None,
    /// A TLS 1.2 session id.
    SessionId(&'a [u8]),
    /// TLS 1.3 tickets, in the client's order.
    Tickets(&'a [Vec<u8>]),
}

impl Offer {
    /// What the router will look up for this client. A client offering
    /// TLS 1.3 gets TLS 1.3 (every https socket serves it unless its cipher
    /// list names only TLS 1.2 suites), so its tickets count and its session
    /// id does not: it is random bytes for middlebox compatibility (RFC 8446
    /// D.4), or a TLS 1.2 session that will not be resumed.
    pub fn resumption(&self) -> Resumption<'_> {
        self.resumption_by(true)
    }

    /// What a server that serves TLS 1.3 or not (`tls13`) looks up: one
    /// that does not answers a TLS 1.3 client in TLS 1.2, by session id.
    pub fn resumption_by(&self, tls13: bool) -> Resumption<'_> {
        match (self.tls13 && tls13, self.session_id.as_bytes()) {
            (true, _) if !self.psk_identities.is_empty() => {
                Resumption::Tickets(&self.psk_identities)
            }
            (false, id) if !id.is_empty() => Resumption::SessionId(id),
            _ => Resumption::None,
        }
    }

    fn of(hello: &ClientHello<&[u8]>, offered: &Offered<'_>) -> Offer {
        let server_name = offered
            .server_name
            .and_then(|raw| match ServerName::try_from(raw) {
                Ok(ServerName::DnsName(name)) => Some(name.as_ref().to_ascii_lowercase()),
                _ => None,
            });
        Offer {
            server_name,
            session_id: SessionId::new(hello.session_id()),
            tls13: offered.tls13,
            psk_identities: offered
                .psk_identities()
                .map(|psk| psk.identity.to_vec())
                .collect(),
            tls12_ticket: offered.session_ticket.is_some(),
        }
    }
}

impl std::fmt::Display for Offer {
    /// One line for the debug log: `sni=... session_id=HEX tls13=BOOL psk=HEX,HEX`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sni={} session_id={} tls13={} psk=",
            self.server_name.as_deref().unwrap_or("-"),
            Hex(self.session_id.as_bytes()),
            self.tls13
        )?;
        for (i, identity) in self.psk_identities.iter().enumerate() {
            write!(f, "{}{}", if i == 0 { "" } else { "," }, Hex(identity))?;
        }
        Ok(())
    }
}

/// A `legacy_session_id`, kept without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionId {
    len: u8,
    bytes: [u8; MAX_SESSION_ID_LEN],
}

impl SessionId {
    /// At most [`MAX_SESSION_ID_LEN`] bytes of `id` (a checked ClientHello's
    /// are never more).
    fn new(id: &[u8]) -> SessionId {
        let len = id.len().min(MAX_SESSION_ID_LEN);
        let mut bytes = [0; MAX_SESSION_ID_LEN];
        bytes[..len].copy_from_slice(&id[..len]);
        SessionId {
            len: len as u8,
            bytes,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Counted by what it offers to resume ([`Offer::resumption`]).
impl Outcome for Offer {
    fn metric(&self) -> Option<Metric> {
        match self.resumption() {
            Resumption::None => None,
            Resumption::SessionId(_) => Some(Metric::OfferedSessionIds),
            Resumption::Tickets(_) => Some(Metric::OfferedPsks),
        }
    }
}

/// Why a connection was refused for its ClientHello: the counters' reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a ClientHello, one that breaks the protocol's rules, or one cut
    /// short by the client closing.
    Malformed,
    /// Longer than [`MAX_CLIENT_HELLO`], or its records longer than
    /// [`MAX_CLIENT_HELLO_READ`].
    Oversized,
}

impl Outcome for Rejection {
    fn metric(&self) -> Option<Metric> {
        Some(match self {
            Rejection::Malformed => Metric::ClientHelloMalformed,
            Rejection::Oversized => Metric::ClientHelloOversized,
        })
    }
}

/// A ClientHello that could not be read, or is refused.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("the connection closed before sending a byte")]
    Closed,
    #[error("the connection closed after {0} bytes, before its ClientHello was whole")]
    Truncated(usize),
    #[error("reading the ClientHello after {read} bytes: {error}")]
    Io { read: usize, error: io::Error },
    #[error(
        "{0} bytes of records without a whole ClientHello, \
         more than the {MAX_CLIENT_HELLO_READ} accepted"
    )]
    TooManyRecordBytes(usize),
    #[error("refused ClientHello: {0}")]
    Invalid(hello::Error),
    #[error("refused ClientHello: pre_shared_key is not the last extension")]
    PskNotLast,
}

impl HelloError {
    /// The counter the refusal goes to; `None` for a connection that
    /// closed or failed before sending anything, which only counts as a
    /// failed handshake (a balancer's TCP health check does that).
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            HelloError::Closed | HelloError::Io { .. } => None,
            HelloError::TooManyRecordBytes(_)
            | HelloError::Invalid(hello::Error::Oversized { .. }) => Some(Rejection::Oversized),
            HelloError::Truncated(_) | HelloError::Invalid(_) | HelloError::PskNotLast => {
                Some(Rejection::Malformed)
            }
        }
    }

    /// The fatal alert record to send before closing, as rustls would for
    /// the same input; `None` when the client is gone.
    pub fn alert(&self) -> Option<[u8; 7]> {
        /// RFC 8446 6: `decode_error`, `illegal_parameter`.
        const DECODE_ERROR: u8 = 50;
        const ILLEGAL_PARAMETER: u8 = 47;
        let description = match self {
            HelloError::Closed | HelloError::Truncated(_) | HelloError::Io { .. } => return None,
            HelloError::TooManyRecordBytes(_) => DECODE_ERROR,
            HelloError::Invalid(error) => error.alert(),
            HelloError::PskNotLast => ILLEGAL_PARAMETER,
        };
        // A plaintext alert record: content type 21, TLS 1.2's version
        // (what rustls writes before a version is agreed), two bytes of
        // content: level fatal (2) and the description.
        Some([21, 3, 3, 0, 2, 2, description])
    }
}

/// Reads the records of the client's first flight until they hold its
/// whole ClientHello; returns what it offers and every byte read, for
/// rustls. Unbounded in time: the caller applies the handshake deadline.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Offer, Vec<u8>), HelloError> {
    // Read into spare capacity: the socket fills it without the buffer
    // being zeroed first. It doubles up to the bound.
    let mut buffer = Vec::with_capacity(FIRST_READ);
    loop {
        let filled = buffer.len();
        if filled >= MAX_CLIENT_HELLO_READ {
            return Err(HelloError::TooManyRecordBytes(filled));
        }
        if filled == buffer.capacity() {
            buffer.reserve_exact(filled.min(MAX_CLIENT_HELLO_READ - filled));
        }
        let n = stream
            .read_buf(&mut buffer)
            .await
            .map_err(|error| HelloError::Io {
                read: filled,
                error,
            })?;
        if n == 0 {
            return Err(match filled {
                0 => HelloError::Closed,
                read => HelloError::Truncated(read),
            });
        }
        let filled = buffer.len();
        if let Some(offer) = parse(&mut buffer, filled)? {
            buffer.truncate(filled);
            return Ok((offer, buffer));
        }
    }
}

/// The offer of the ClientHello in `buffer[..filled]`, `None` while it is
/// not whole. A fragmented ClientHello is joined after `filled`.
fn parse(buffer: &mut Vec<u8>, filled: usize) -> Result<Option<Offer>, HelloError> {
    let len = match hello::reassemble(&buffer[..filled], MAX_CLIENT_HELLO) {
        Ok(Reassembly::Incomplete) => return Ok(None),
        Ok(Reassembly::Whole(message)) => return offer(message).map(Some),
        Ok(Reassembly::Fragmented { len }) => len,
        Err(error) => return Err(HelloError::Invalid(error)),
    };
    buffer.resize(filled + len, 0);
    let (records, out) = buffer.split_at_mut(filled);
    let message = hello::join(records, out).map_err(HelloError::Invalid)?;
    offer(message).map(Some)
}

fn offer(message: &[u8]) -> Result<Offer, HelloError> {
    let hello = ClientHello::new_checked(message).map_err(HelloError::Invalid)?;
    let offered = hello.offered();
    if offered.psk_identities().next().is_some() && !offered.pre_shared_key_is_last() {
        return Err(HelloError::PskNotLast);
    }
    Ok(Offer::of(&hello, &offered))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use rustls::client::Resumption as ClientResumption;
    use rustls::server::{Acceptor, StoresServerSessions};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A server session store that remembers every key it was given.
    #[derive(Debug, Default)]
    struct Recording {
        sessions: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
        keys: Mutex<Vec<Vec<u8>>>,
    }

    impl StoresServerSessions for Recording {
        fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
            self.keys.lock().unwrap().push(key.clone());
            self.sessions.lock().unwrap().insert(key, value);
            true
        }
        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.sessions.lock().unwrap().get(key).cloned()
        }
        fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.sessions.lock().unwrap().remove(key)
        }
        fn can_cache(&self) -> bool {
            true
        }
    }

    /// A rustls server with a recording store, and client configurations
    /// trusting it, each with its own session memory.
    struct Rustls {
        server: Arc<ServerConfig>,
        store: Arc<Recording>,
        roots: RootCertStore,
    }

    impl Rustls {
        fn new() -> Rustls {
            let identity =
                crate::tls::certs::self_signed("127.0.0.1:443".parse().unwrap()).unwrap();
            let mut roots = RootCertStore::empty();
            roots.add(identity.chain[0].clone()).unwrap();
            let store = Arc::new(Recording::default());
            let mut server = ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(identity.chain, identity.key)
                .unwrap();
            server.session_storage = store.clone();
            Rustls {
                server: Arc::new(server),
                store,
                roots,
            }
        }

        fn client(
            &self,
            versions: &[&'static rustls::SupportedProtocolVersion],
        ) -> Arc<ClientConfig> {
            let mut config = ClientConfig::builder_with_protocol_versions(versions)
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth();
            config.resumption = ClientResumption::in_memory_sessions(8);
            Arc::new(config)
        }

        /// A full exchange, tickets included; returns the client's first
        /// flight (its ClientHello's records).
        fn connect(&self, client: &Arc<ClientConfig>, name: &str) -> Vec<u8> {
            let name = ServerName::try_from(name.to_owned()).unwrap();
            let mut client = ClientConnection::new(Arc::clone(client), name).unwrap();
            let mut server = ServerConnection::new(Arc::clone(&self.server)).unwrap();
            let mut first_flight = Vec::new();
            client.write_tls(&mut first_flight).unwrap();
            let mut to_server = first_flight.clone();
            for _ in 0..10 {
                server.read_tls(&mut &to_server[..]).unwrap();
                server.process_new_packets().unwrap();
                let mut to_client = Vec::new();
                while server.wants_write() {
                    server.write_tls(&mut to_client).unwrap();
                }
                client.read_tls(&mut &to_client[..]).unwrap();
                client.process_new_packets().unwrap();
                to_server.clear();
                while client.wants_write() {
                    client.write_tls(&mut to_server).unwrap();
                }
                if !client.is_handshaking() && !server.is_handshaking() && to_server.is_empty() {
                    return first_flight;
                }
            }
            panic!("no handshake in 10 rounds");
        }

        fn keys(&self) -> Vec<Vec<u8>> {
            self.store.keys.lock().unwrap().clone()
        }
    }

    async fn read_all(bytes: &[u8]) -> Result<(Offer, Vec<u8>), HelloError> {
        read(&mut &bytes[..]).await
    }

    /// The SNI name rustls itself reads from `records`.
    fn rustls_server_name(records: &[u8]) -> Option<String> {
        let mut acceptor = Acceptor::default();
        acceptor.read_tls(&mut &records[..]).unwrap();
        let accepted = acceptor.accept().unwrap().expect("a whole ClientHello");
        accepted.client_hello().server_name().map(str::to_owned)
    }

    /// The ClientHellos of resuming rustls clients carry exactly the
    /// session id and ticket the server stored; the SNI name reads as
    /// rustls reads it. With `CACHET_WRITE_HELLO_VECTORS=DIR` the records,
    /// and the session id and ticket the server stored, are written to DIR
    /// for `cachet-core`'s test vectors.
    #[tokio::test]
    async fn rustls_clients_offer_what_the_server_stored() {
        let rustls = Rustls::new();
        let save = |name: &str, bytes: &[u8]| {
            if let Some(dir) = std::env::var_os("CACHET_WRITE_HELLO_VECTORS") {
                std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
            }
        };

        let tls12 = rustls.client(&[&rustls::version::TLS12]);
        let fresh = rustls.connect(&tls12, "localhost");
        let (offer, replay) = read_all(&fresh).await.unwrap();
        assert_eq!(replay, fresh);
        assert_eq!(offer.resumption(), Resumption::None, "{offer}");
        let stored = rustls.keys();
        assert_eq!(stored.len(), 1, "one TLS 1.2 session");
        let resuming = rustls.connect(&tls12, "LocalHost");
        save("rustls_tls12_resume.bin", &resuming);
        let (offer, _) = read_all(&resuming).await.unwrap();
        assert_eq!(
            offer.resumption(),
            Resumption::SessionId(&stored[0]),
            "{offer}"
        );
        save("rustls_tls12_resume.session_id", &stored[0]);
        assert!(!offer.tls13);
        assert_eq!(offer.server_name.as_deref(), Some("localhost"));
        assert_eq!(offer.server_name, rustls_server_name(&resuming));

        let tls13 = rustls.client(&[&rustls::version::TLS13]);
        let fresh = rustls.connect(&tls13, "localhost");
        save("rustls_tls13_fresh.bin", &fresh);
        let (offer, _) = read_all(&fresh).await.unwrap();
        assert!(offer.tls13);
        // A random id for middlebox compatibility, not a session.
        assert_eq!(offer.session_id.as_bytes().len(), 32);
        assert_eq!(offer.resumption(), Resumption::None, "{offer}");
        let tickets = rustls.keys().split_off(1);
        assert_eq!(tickets.len(), 2, "two TLS 1.3 tickets");
        let resuming = rustls.connect(&tls13, "localhost");
        save("rustls_tls13_resume.bin", &resuming);
        let (offer, _) = read_all(&resuming).await.unwrap();
        let Resumption::Tickets(offered) = offer.resumption() else {
            panic!("no tickets offered: {offer}");
        };
        assert_eq!(offered.len(), 1);
        assert!(tickets.contains(&offered[0]), "{offer}");
        // A socket serving TLS 1.2 only answers this client in TLS 1.2,
        // by its session id.
        assert_eq!(
            offer.resumption_by(false),
            Resumption::SessionId(offer.session_id.as_bytes()),
            "{offer}"
        );
        save("rustls_tls13_resume.ticket", &offered[0]);
        assert_eq!(offer.server_name, rustls_server_name(&resuming));

        // An IP address is no SNI name, for rustls as here.
        let by_address = rustls.connect(&tls13, "127.0.0.1");
        let (offer, _) = read_all(&by_address).await.unwrap();
        assert_eq!(offer.server_name, None);
        assert_eq!(rustls_server_name(&by_address), None);
    }

    /// A ClientHello of `len` bytes (header included) in one record,
    /// framed well enough for the reassembly to measure it.
    fn declared(len: usize) -> Vec<u8> {
        let body = (len - 4) as u32;
        let mut records = vec![22, 3, 1, 0x40, 0x00, 1];
        records.extend_from_slice(&body.to_be_bytes()[1..]);
        records
    }

    /// `message` in records of `size` bytes.
    fn records_of(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// A rustls client's ClientHello message, without its record header.
    fn rustls_message() -> Vec<u8> {
        let rustls = Rustls::new();
        let flight = rustls.connect(&rustls.client(rustls::DEFAULT_VERSIONS), "localhost");
        assert_eq!(
            flight.len(),
            5 + usize::from(u16::from_be_bytes([flight[3], flight[4]]))
        );
        flight[5..].to_vec()
    }

    #[tokio::test]
    async fn tiny_records_in_tiny_writes_are_read_whole_and_replayed_exactly() {
        let message = rustls_message();
        let one_record = records_of(&message, 16384);
        let (expected, _) = read_all(&one_record).await.unwrap();
        for (record_size, write_size) in [(7, 3), (1, 64), (500, 1)] {
            let records = records_of(&message, record_size);
            let mut sent = records.clone();
            // Early data or the next flight: kept for rustls too.
            sent.extend_from_slice(&[23, 3, 3, 0, 1, 9]);
            let (mut client, mut server) = tokio::io::duplex(16);
            let writer = tokio::spawn(async move {
                for piece in sent.chunks(write_size) {
                    client.write_all(piece).await.unwrap();
                }
                client
            });
            let (offer, replay) = read(&mut server).await.unwrap();
            assert_eq!(offer, expected, "records of {record_size}");
            assert!(replay.starts_with(&records), "records of {record_size}");
            let _client = writer.await.unwrap();
        }
    }

    #[tokio::test]
    async fn refusals_say_why_and_are_counted_by_reason() {
        let message = rustls_message();
        let records = records_of(&message, 16384);
        for cut in 1..records.len() {
            let error = read_all(&records[..cut]).await.unwrap_err();
            assert!(
                matches!(error, HelloError::Truncated(n) if n == cut),
                "{error}"
            );
            assert_eq!(error.rejection(), Some(Rejection::Malformed));
            assert_eq!(error.alert(), None, "nobody to tell");
        }
        let error = read_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                HelloError::Invalid(hello::Error::NotHandshakeRecord(b'G'))
            ),
            "{error}"
        );
        assert_eq!(error.rejection(), Some(Rejection::Malformed));
        assert_eq!(error.alert(), Some([21, 3, 3, 0, 2, 2, 10]));

        // Refused on the length its header gives, before the rest arrives.
        let error = read_all(&declared(MAX_CLIENT_HELLO + 1)).await.unwrap_err();
        assert!(
            matches!(error, HelloError::Invalid(hello::Error::Oversized { .. })),
            "{error}"
        );
        assert_eq!(error.rejection(), Some(Rejection::Oversized));
        assert!(read_all(&declared(MAX_CLIENT_HELLO))
            .await
            .is_err_and(|e| matches!(e, HelloError::Truncated(_))));

        // A ClientHello of acceptable length in 1-byte records: more bytes
        // of record headers than are read for one.
        let mut long = message.clone();
        long.resize(MAX_CLIENT_HELLO / 2, 0);
        let body = (long.len() - 4) as u32;
        long[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
        let error = read_all(&records_of(&long, 1)).await.unwrap_err();
        assert!(
            matches!(error, HelloError::TooManyRecordBytes(MAX_CLIENT_HELLO_READ)),
            "{error}"
        );
        assert_eq!(error.rejection(), Some(Rejection::Oversized));

        let error = read_all(&[]).await.unwrap_err();
        assert!(matches!(error, HelloError::Closed));
        assert_eq!(error.rejection(), None);
    }

    #[tokio::test]
    async fn a_pre_shared_key_before_another_extension_is_refused() {
        let rustls = Rustls::new();
        let tls13 = rustls.client(&[&rustls::version::TLS13]);
        rustls.connect(&tls13, "localhost");
        let resuming = rustls.connect(&tls13, "localhost");
        let mut message = resuming[5..].to_vec();
        let hello = ClientHello::new_checked(&message[..]).unwrap();
        assert!(hello.pre_shared_key_is_last());
        let extensions_len: usize = hello.extensions().map(|e| e.unwrap().data.len() + 4).sum();
        // Append an empty extension after pre_shared_key, and make room
        // for it in the extensions' and the message's lengths.
        let at = message.len() - extensions_len - 2;
        message.extend_from_slice(&[0xff, 0x01, 0, 0]);
        message[at..at + 2].copy_from_slice(&(extensions_len as u16 + 4).to_be_bytes());
        let body = (message.len() - 4) as u32;
        message[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
        assert!(!ClientHello::new_checked(&message[..])
            .unwrap()
            .pre_shared_key_is_last());
        let error = read_all(&records_of(&message, 16384)).await.unwrap_err();
        assert!(matches!(error, HelloError::PskNotLast), "{error}");
        assert_eq!(error.rejection(), Some(Rejection::Malformed));
        assert_eq!(error.alert(), Some([21, 3, 3, 0, 2, 2, 47]));
    }

    #[test]
    fn the_debug_line_shows_the_offer() {
        let offer = Offer {
            server_name: Some("example.com".into()),
            session_id: SessionId::new(&[0xab, 0x01]),
            tls13: true,
            psk_identities: vec![vec![1, 2], vec![0xff]],
            tls12_ticket: false,
        };
        assert_eq!(
            offer.to_string(),
            "sni=example.com session_id=ab01 tls13=true psk=0102,ff"
        );
        assert_eq!(
            Offer::default().to_string(),
            "sni=- session_id= tls13=false psk="
        );
    }
}
