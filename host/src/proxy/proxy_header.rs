//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a TCP
//! balancer sends first on a connection to say whose connection it is.
//!
//! With `enable-proxy-protocol`, every https connection must start with one,
//! before the TLS ClientHello. [`read`] takes exactly the header's bytes off
//! the socket and never one byte of what follows, which belongs to rustls:
//! it peeks at what has arrived, a [`Framer`] decides from the signatures
//! and lengths alone how much of it is header, only that much is read, and
//! the complete header is parsed by the `ppp` crate. A v1 header is one line
//! ending in CRLF, 107 bytes at most; a v2 header is a 16-byte fixed part
//! whose last two bytes give the length of the rest, accepted up to
//! [`V2_MAX`] bytes in all.
//!
//! What is trusted: the source address and port of a header that is
//! complete and valid to its last byte. `PROXY UNKNOWN` (v1), the v2 `LOCAL`
//! command (the balancer's own connections, such as health checks) and v2
//! address families that carry no IP address (UNSPEC, UNIX) keep the
//! connection's real peer, as HAProxy and nginx do. v2 TLVs must be well
//! framed and are otherwise ignored.
//!
//! The caller bounds the whole read with the handshake deadline: a header
//! that trickles in slower than that is a [`Rejection::Timeout`].

use std::io;
use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::metrics::{Metric, Outcome};

/// Longest v1 header, CRLF included (the protocol's own limit).
pub const V1_MAX: usize = 107;
/// Longest v2 header accepted, fixed part included: room for every address
/// family and the TLVs balancers send (AWS, GCP and Azure add a few dozen
/// bytes; HAProxy's SSL TLVs a few hundred).
pub const V2_MAX: usize = 4096;

/// How a v1 header starts.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// How a v2 header starts.
const V2_SIGNATURE: &[u8] = ppp::v2::PROTOCOL_PREFIX;
/// The v2 fixed part: signature, version and command, family and
/// transport, and the big-endian length of what follows.
const V2_FIXED: usize = 16;
/// Bytes peeked at once: a v1 header, or a v2 one with IPv6 addresses and
/// a few TLVs, arrives in one step; a longer one takes a few.
const PEEK_SIZE: usize = 512;

/// Whose connection it is, by a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client's address and port, as the balancer saw them.
    Client(SocketAddr),
    /// No client address: the balancer's own connection (v2 `LOCAL`) or one
    /// whose address it could not express (v1 `UNKNOWN`, v2 UNSPEC or UNIX).
    /// The connection's real peer stands.
    Local,
}

impl Outcome for Source {
    fn metric(&self) -> Option<Metric> {
        Some(match self {
            Source::Local => Metric::ProxyHeadersLocal,
            Source::Client(_) => Metric::ProxyHeadersClient,
        })
    }
}

/// Why a connection was refused for its header: the counters' reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The connection did not start with a PROXY signature (a client that
    /// skipped the balancer), or closed before sending anything.
    Missing,
    /// A PROXY signature followed by something invalid, too long, or cut
    /// short.
    Malformed,
    /// The header was not complete by the handshake deadline.
    Timeout,
}

impl Outcome for Rejection {
    fn metric(&self) -> Option<Metric> {
        Some(match self {
            Rejection::Missing => Metric::ProxyMissing,
            Rejection::Malformed => Metric::ProxyMalformed,
            Rejection::Timeout => Metric::ProxyTimeouts,
        })
    }
}

/// A header that could not be read or is not valid. Never trusted: the
/// connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("the connection closed before sending a PROXY protocol header")]
    Closed,
    #[error(
        "the connection does not start with a PROXY protocol header \
         (byte {offset} is {byte:#04x})"
    )]
    NoSignature { offset: usize, byte: u8 },
    #[error("the connection closed after {0} bytes of a PROXY protocol header")]
    Truncated(usize),
    #[error("reading a PROXY protocol header after {taken} bytes: {error}")]
    Io { taken: usize, error: io::Error },
    #[error("PROXY v1 header without CRLF in its first {V1_MAX} bytes")]
    V1TooLong,
    #[error("PROXY v1 header line does not end with CRLF or holds a stray CR")]
    V1LineEnd,
    #[error("malformed PROXY v1 header: {0}")]
    V1(ppp::v1::BinaryParseError),
    #[error("PROXY v2 header of {0} bytes, more than the {V2_MAX} accepted")]
    V2TooLong(usize),
    #[error("malformed PROXY v2 header: {0}")]
    V2(ppp::v2::ParseError),
    #[error("malformed PROXY v2 header TLV: {0}")]
    V2Tlv(ppp::v2::ParseError),
}

impl HeaderError {
    /// The counter this error goes to.
    pub fn rejection(&self) -> Rejection {
        match self {
            HeaderError::Closed | HeaderError::NoSignature { .. } => Rejection::Missing,
            HeaderError::Io { taken: 0, .. } => Rejection::Missing,
            _ => Rejection::Malformed,
        }
    }
}

/// Reads the PROXY header at the start of `stream`, leaving every byte
/// after it unread. Unbounded in time: the caller applies its deadline.
pub async fn read(stream: &mut TcpStream) -> Result<Source, HeaderError> {
    let mut framer = Framer::default();
    let mut scratch = [0u8; PEEK_SIZE];
    let io = |framer: &Framer, error| HeaderError::Io {
        taken: framer.taken(),
        error,
    };
    loop {
        let waiting = stream
            .peek(&mut scratch)
            .await
            .map_err(|e| io(&framer, e))?;
        if waiting == 0 {
            return Err(match framer.taken() {
                0 => HeaderError::Closed,
                taken => HeaderError::Truncated(taken),
            });
        }
        let step = framer.step(&scratch[..waiting])?;
        // These bytes were peeked: reading them cannot block.
        let n = step.len();
        stream
            .read_exact(&mut scratch[..n])
            .await
            .map_err(|e| io(&framer, e))?;
        framer.take(&scratch[..n]);
        if let Step::Last(_) = step {
            return framer.parse();
        }
    }
}

/// How many of the bytes waiting on the socket belong to the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// This many, and the header goes on.
    More(usize),
    /// This many, and they complete the header.
    Last(usize),
}

impl Step {
    fn len(self) -> usize {
        match self {
            Step::More(n) | Step::Last(n) => n,
        }
    }
}

/// The header's bytes taken so far, and the rules for where it ends. Pure,
/// so every way bytes can arrive is testable without a socket.
#[derive(Debug, Default)]
struct Framer {
    taken: Vec<u8>,
}

impl Framer {
    fn taken(&self) -> usize {
        self.taken.len()
    }

    fn take(&mut self, bytes: &[u8]) {
        self.taken.extend_from_slice(bytes);
    }

    /// Decides about `waiting` (not empty), the bytes that arrived after
    /// those taken. The signature is checked as it arrives, so a client
    /// speaking TLS (or anything else) straight to the socket is turned
    /// away on its first byte.
    fn step(&self, waiting: &[u8]) -> Result<Step, HeaderError> {
        let taken = self.taken.len();
        let at = |i: usize| {
            if i < taken {
                self.taken[i]
            } else {
                waiting[i - taken]
            }
        };
        let available = taken + waiting.len();
        let signature = match at(0) {
            b'P' => V1_SIGNATURE,
            b'\r' => V2_SIGNATURE,
            byte => return Err(HeaderError::NoSignature { offset: 0, byte }),
        };
        for (offset, &expected) in signature.iter().enumerate().take(available).skip(taken) {
            let byte = at(offset);
            if byte != expected {
                return Err(HeaderError::NoSignature { offset, byte });
            }
        }
        if signature == V1_SIGNATURE {
            // The line ends at the first LF; everything before it is header.
            match waiting.iter().position(|&b| b == b'\n') {
                Some(lf) if taken + lf < V1_MAX => Ok(Step::Last(lf + 1)),
                Some(_) => Err(HeaderError::V1TooLong),
                None if available >= V1_MAX => Err(HeaderError::V1TooLong),
                None => Ok(Step::More(waiting.len())),
            }
        } else {
            if available < V2_FIXED {
                // All of it is still the fixed part.
                return Ok(Step::More(waiting.len()));
            }
            let rest = usize::from(u16::from_be_bytes([at(V2_FIXED - 2), at(V2_FIXED - 1)]));
            let total = V2_FIXED + rest;
            if total > V2_MAX {
                return Err(HeaderError::V2TooLong(total));
            }
            let missing = total - taken;
            if waiting.len() >= missing {
                Ok(Step::Last(missing))
            } else {
                Ok(Step::More(waiting.len()))
            }
        }
    }

    /// Parses the complete header taken.
    fn parse(&self) -> Result<Source, HeaderError> {
        let bytes = self.taken.as_slice();
        if bytes.starts_with(V1_SIGNATURE) {
            parse_v1(bytes)
        } else {
            parse_v2(bytes)
        }
    }
}

fn parse_v1(line: &[u8]) -> Result<Source, HeaderError> {
    use ppp::v1::{Addresses, Header};
    if !line.ends_with(b"\r\n") {
        return Err(HeaderError::V1LineEnd);
    }
    let header = Header::try_from(line).map_err(HeaderError::V1)?;
    // ppp stops at the first CR: one inside the line would leave bytes of
    // it unparsed.
    if header.header.len() != line.len() {
        return Err(HeaderError::V1LineEnd);
    }
    Ok(match header.addresses {
        Addresses::Tcp4(ip) => Source::Client((ip.source_address, ip.source_port).into()),
        Addresses::Tcp6(ip) => Source::Client((ip.source_address, ip.source_port).into()),
        Addresses::Unknown => Source::Local,
    })
}

fn parse_v2(bytes: &[u8]) -> Result<Source, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(HeaderError::V2)?;
    if let Some(Err(error)) = header.tlvs().find(Result::is_err) {
        return Err(HeaderError::V2Tlv(error));
    }
    Ok(match (header.command, header.addresses) {
        (Command::Proxy, Addresses::IPv4(ip)) => {
            Source::Client((ip.source_address, ip.source_port).into())
        }
        (Command::Proxy, Addresses::IPv6(ip)) => {
            Source::Client((ip.source_address, ip.source_port).into())
        }
        (Command::Local, _) | (_, Addresses::Unspecified | Addresses::Unix(_)) => Source::Local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const V1_TCP4: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n";
    const V1_TCP6: &[u8] = b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n";

    /// A v2 header: `command` (0 LOCAL, 1 PROXY), `family_transport` byte,
    /// then `rest` (addresses and TLVs) with its length.
    fn v2(command: u8, family_transport: u8, rest: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family_transport);
        header.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        header.extend_from_slice(rest);
        header
    }

    fn v2_tcp4(tlvs: &[u8]) -> Vec<u8> {
        let mut rest = vec![192, 0, 2, 7, 198, 51, 100, 1];
        rest.extend_from_slice(&5555u16.to_be_bytes());
        rest.extend_from_slice(&443u16.to_be_bytes());
        rest.extend_from_slice(tlvs);
        v2(1, 0x11, &rest)
    }

    fn v2_tcp6() -> Vec<u8> {
        let source: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
        let destination: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut rest = source.octets().to_vec();
        rest.extend_from_slice(&destination.octets());
        rest.extend_from_slice(&5555u16.to_be_bytes());
        rest.extend_from_slice(&443u16.to_be_bytes());
        v2(1, 0x21, &rest)
    }

    /// Frames `input` delivered in pieces of at most `chunk` bytes (as the
    /// socket would hand them over); returns the parse result and how many
    /// bytes were taken.
    fn frame(input: &[u8], chunk: usize) -> (Result<Source, HeaderError>, usize) {
        let mut framer = Framer::default();
        let mut offset = 0;
        loop {
            let end = input.len().min(offset + chunk);
            if offset == end {
                return (Err(HeaderError::Truncated(framer.taken())), framer.taken());
            }
            let step = match framer.step(&input[offset..end]) {
                Ok(step) => step,
                Err(error) => return (Err(error), framer.taken()),
            };
            framer.take(&input[offset..offset + step.len()]);
            offset += step.len();
            if let Step::Last(_) = step {
                return (framer.parse(), framer.taken());
            }
        }
    }

    fn client(ip: &str, port: u16) -> Source {
        Source::Client(SocketAddr::new(ip.parse().unwrap(), port))
    }

    /// Every header is found whole whatever the pieces it arrives in, and
    /// not one byte of what follows it is taken.
    #[test]
    fn headers_in_any_pieces_stop_at_their_end() {
        let cases = [
            (V1_TCP4.to_vec(), client("192.0.2.7", 5555)),
            (V1_TCP6.to_vec(), client("2001:db8::7", 5555)),
            (b"PROXY UNKNOWN\r\n".to_vec(), Source::Local),
            (
                b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\n".to_vec(),
                Source::Local,
            ),
            (v2_tcp4(&[]), client("192.0.2.7", 5555)),
            (v2_tcp6(), client("2001:db8::7", 5555)),
            (v2(0, 0x00, &[]), Source::Local),
            // LOCAL with addresses: still the real peer.
            (
                {
                    let mut local = v2_tcp4(&[]);
                    local[12] = 0x20;
                    local
                },
                Source::Local,
            ),
            (v2(1, 0x00, &[]), Source::Local),
            (v2(1, 0x31, &[0; 216]), Source::Local),
        ];
        // A TLS ClientHello's first bytes, which must stay unread.
        let after = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
        for (header, expected) in cases {
            for chunk in [1, 2, 7, 16, 17, 200] {
                let mut input = header.clone();
                input.extend_from_slice(&after);
                let (parsed, taken) = frame(&input, chunk);
                assert_eq!(
                    parsed.unwrap_or_else(|e| panic!("{e}: {header:?} by {chunk}")),
                    expected
                );
                assert_eq!(taken, header.len(), "{header:?} by {chunk}");
            }
        }
    }

    #[test]
    fn tlvs_are_ignored_but_must_be_well_framed() {
        // PP2_TYPE_AUTHORITY "example.com", PP2_TYPE_NOOP of 3 bytes.
        let mut tlvs = vec![0x02, 0, 11];
        tlvs.extend_from_slice(b"example.com");
        tlvs.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]);
        assert_eq!(
            frame(&v2_tcp4(&tlvs), 5).0.unwrap(),
            client("192.0.2.7", 5555)
        );
        // A TLV claiming more bytes than the header holds.
        let error = frame(&v2_tcp4(&[0x02, 0, 40, b'x']), 64).0.unwrap_err();
        assert!(matches!(error, HeaderError::V2Tlv(_)), "{error}");
        assert_eq!(error.rejection(), Rejection::Malformed);
    }

    #[test]
    fn no_signature_is_missing_at_the_first_wrong_byte() {
        for (input, offset) in [
            (&[0x16, 0x03, 0x01][..], 0),
            (b"GET / HTTP/1.1\r\n", 0),
            (b"PUT / HTTP/1.1\r\n", 1),
            (b"PROXY\r\n", 5),
            (b"\r\n\r\nX", 4),
        ] {
            let error = frame(input, 1).0.unwrap_err();
            match error {
                HeaderError::NoSignature { offset: at, .. } => {
                    assert_eq!(at, offset, "{input:?}")
                }
                other => panic!("{input:?}: {other}"),
            }
            assert_eq!(error.rejection(), Rejection::Missing);
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let malformed: [&[u8]; 9] = [
            b"PROXY TCP4 999.0.2.7 198.51.100.1 5555 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 70000 443\r\n",
            b"PROXY TCP4 2001:db8::7 2001:db8::1 5555 443\r\n",
            b"PROXY TCP6 192.0.2.7 198.51.100.1 5555 443\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 5555 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 5555\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\n",
            b"PROXY TCP4 192.0.2.7\r198.51.100.1 5555 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443 x\r\n",
        ];
        for input in malformed {
            let error = frame(input, 200).0.unwrap_err();
            assert_eq!(
                error.rejection(),
                Rejection::Malformed,
                "{}: {error}",
                String::from_utf8_lossy(input)
            );
        }
        // v2: version 1, command 2, family 4, transport 3, an IPv4 header
        // too short for its addresses.
        let mut bad_version = v2_tcp4(&[]);
        bad_version[12] = 0x11;
        let mut bad_command = v2_tcp4(&[]);
        bad_command[12] = 0x22;
        let mut bad_family = v2_tcp4(&[]);
        bad_family[13] = 0x41;
        let mut bad_transport = v2_tcp4(&[]);
        bad_transport[13] = 0x13;
        for input in [
            bad_version,
            bad_command,
            bad_family,
            bad_transport,
            v2(1, 0x11, &[1, 2, 3, 4]),
        ] {
            let error = frame(&input, 200).0.unwrap_err();
            assert!(matches!(error, HeaderError::V2(_)), "{error}");
            assert_eq!(error.rejection(), Rejection::Malformed);
        }
    }

    #[test]
    fn oversize_headers_are_refused_without_reading_on() {
        let mut long_v1 = b"PROXY UNKNOWN ".to_vec();
        long_v1.resize(300, b'x');
        let (error, taken) = frame(&long_v1, 40);
        assert!(matches!(error, Err(HeaderError::V1TooLong)), "{error:?}");
        assert!(taken < V1_MAX, "took {taken}");
        // 108 bytes with the CRLF: one too many.
        let mut just_over = b"PROXY UNKNOWN ".to_vec();
        just_over.resize(V1_MAX - 1, b'x');
        just_over.extend_from_slice(b"\r\n");
        assert!(matches!(
            frame(&just_over, 200).0,
            Err(HeaderError::V1TooLong)
        ));
        let mut at_limit = b"PROXY UNKNOWN ".to_vec();
        at_limit.resize(V1_MAX - 2, b'x');
        at_limit.extend_from_slice(b"\r\n");
        assert_eq!(frame(&at_limit, 200).0.unwrap(), Source::Local);

        // A v2 length field of 65535: refused on the fixed part alone.
        let mut huge = v2(1, 0x11, &[]);
        huge[14] = 0xff;
        huge[15] = 0xff;
        let (error, taken) = frame(&huge, 1);
        assert!(
            matches!(error, Err(HeaderError::V2TooLong(65551))),
            "{error:?}"
        );
        assert!(taken < V2_FIXED);
        let at_limit = v2(1, 0x00, &vec![0; V2_MAX - V2_FIXED]);
        assert_eq!(frame(&at_limit, 300).0.unwrap(), Source::Local);
    }

    #[test]
    fn cut_short_is_truncated() {
        let header = v2_tcp6();
        for cut in [1, 12, 15, 16, 30, header.len() - 1] {
            let (error, taken) = frame(&header[..cut], 7);
            assert!(matches!(error, Err(HeaderError::Truncated(_))));
            assert_eq!(taken, cut);
        }
        assert_eq!(HeaderError::Truncated(3).rejection(), Rejection::Malformed);
        assert_eq!(HeaderError::Closed.rejection(), Rejection::Missing);
    }

    /// Over a real socket: the header is read, the ClientHello's bytes stay
    /// for whoever reads next, and a close mid-header is reported as such.
    #[tokio::test]
    async fn reads_from_a_socket_only_the_header() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let header = v2_tcp4(&[]);
        let sender = tokio::spawn(async move {
            let mut first = TcpStream::connect(addr).await.unwrap();
            // Two writes: the reader may see the header whole or in parts.
            first.write_all(&header[..10]).await.unwrap();
            let mut rest = header[10..].to_vec();
            rest.extend_from_slice(b"\x16\x03\x01hello");
            first.write_all(&rest).await.unwrap();
            first.shutdown().await.unwrap();
            let mut second = TcpStream::connect(addr).await.unwrap();
            second.write_all(&V1_TCP4[..20]).await.unwrap();
            second.shutdown().await.unwrap();
            (first, second)
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        assert_eq!(read(&mut stream).await.unwrap(), client("192.0.2.7", 5555));
        let mut after = Vec::new();
        stream.read_to_end(&mut after).await.unwrap();
        assert_eq!(after, b"\x16\x03\x01hello");

        let (mut stream, _) = listener.accept().await.unwrap();
        let error = read(&mut stream).await.unwrap_err();
        assert!(matches!(error, HeaderError::Truncated(20)), "{error}");
        let _connections = sender.await.unwrap();
    }
}
