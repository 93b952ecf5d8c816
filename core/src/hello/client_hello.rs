//! The zero-copy ClientHello view.
//!
//! ```text
//! struct {
//!     HandshakeType msg_type = client_hello(1);   uint24 length;
//!     ProtocolVersion legacy_version;             opaque random[32];
//!     opaque legacy_session_id<0..32>;
//!     CipherSuite cipher_suites<2..2^16-2>;
//!     opaque legacy_compression_methods<1..2^8-1>;
//!     Extension extensions<0..2^16-1>;            -- absent in old TLS 1.2 clients
//! } ClientHello;                                  -- RFC 8446 4.1.2, RFC 5246 7.4.1.2
//! ```

use super::reader::Reader;
use super::{
    extension, Error, Field, HANDSHAKE_CLIENT_HELLO, MAX_PSK_IDENTITIES, MAX_SESSION_ID_LEN, TLS13,
};

/// Bytes of `legacy_version` and `random`.
const FIXED_LEN: usize = 2 + 32;

/// A ClientHello handshake message (its 4-byte header included) in a
/// buffer.
#[derive(Debug, Clone)]
pub struct ClientHello<T: AsRef<[u8]>> {
    buffer: T,
}

/// Where the variable-length fields lie.
#[derive(Debug, Clone, Copy)]
struct Layout<'a> {
    fixed: &'a [u8],
    session_id: &'a [u8],
    cipher_suites: &'a [u8],
    /// The extensions' bytes, without the block's length; empty when the
    /// block is absent.
    extensions: &'a [u8],
}

impl<'a> Layout<'a> {
    fn parse(message: &'a [u8]) -> Result<Layout<'a>, Error> {
        let mut handshake = Reader::new(message, Field::Handshake);
        let kind = handshake.u8()?;
        if kind != HANDSHAKE_CLIENT_HELLO {
            return Err(Error::NotClientHello(kind));
        }
        let len = handshake.u24()? as usize;
        let mut body = Reader::new(handshake.take(len)?, Field::Handshake);
        handshake.finish()?;

        let fixed = body
            .take(FIXED_LEN)
            .map_err(|_| Error::Truncated(Field::Fixed))?;
        let session_id = body.vec8(Field::SessionId)?.rest();
        if session_id.len() > MAX_SESSION_ID_LEN {
            return Err(Error::SessionIdTooLong(session_id.len() as u8));
        }
        let cipher_suites = body.vec16(Field::CipherSuites)?.non_empty()?.rest();
        if cipher_suites.len() % 2 != 0 {
            return Err(Error::OddLength(Field::CipherSuites));
        }
        body.vec8(Field::CompressionMethods)?.non_empty()?;
        let extensions = if body.is_empty() {
            &[]
        } else {
            body.vec16(Field::Extensions)?.rest()
        };
        body.finish()?;
        Ok(Layout {
            fixed,
            session_id,
            cipher_suites,
            extensions,
        })
    }
}

impl<T: AsRef<[u8]>> ClientHello<T> {
    /// Wraps a buffer without checking it. The accessors never panic, but
    /// on a buffer that is not a valid ClientHello they report nothing
    /// offered; use [`ClientHello::new_checked`] on anything from the
    /// network.
    pub const fn new_unchecked(buffer: T) -> ClientHello<T> {
        ClientHello { buffer }
    }

    /// Wraps a buffer after [`ClientHello::check`].
    pub fn new_checked(buffer: T) -> Result<ClientHello<T>, Error> {
        let hello = ClientHello::new_unchecked(buffer);
        hello.check()?;
        Ok(hello)
    }

    /// Checks the framing of every field and extension, exactly to the end
    /// of the message, and the content of the extensions this view reads.
    pub fn check(&self) -> Result<(), Error> {
        let layout = Layout::parse(self.buffer.as_ref())?;
        let mut seen = [false; 3];
        for extension in Extensions::new(layout.extensions) {
            let extension = extension?;
            let index = match extension.kind {
                extension::SERVER_NAME => {
                    server_name_in(extension.data)?;
                    0
                }
                extension::SUPPORTED_VERSIONS => {
                    offers_tls13(extension.data)?;
                    1
                }
                extension::PRE_SHARED_KEY => {
                    check_pre_shared_key(extension.data)?;
                    2
                }
                _ => continue,
            };
            if core::mem::replace(&mut seen[index], true) {
                return Err(Error::DuplicateExtension(extension.kind));
            }
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn layout(&self) -> Option<Layout<'_>> {
        Layout::parse(self.buffer.as_ref()).ok()
    }

    /// `legacy_version`: 0x0303 (TLS 1.2) from any client that speaks
    /// TLS 1.2 or 1.3; the versions a TLS 1.3 client offers are in
    /// `supported_versions` ([`ClientHello::offers_tls13`]).
    pub fn legacy_version(&self) -> u16 {
        self.layout()
            .map_or(0, |l| u16::from_be_bytes([l.fixed[0], l.fixed[1]]))
    }

    /// The client's 32 random bytes.
    pub fn random(&self) -> &[u8] {
        self.layout().map_or(&[], |l| &l.fixed[2..])
    }

    /// `legacy_session_id`, 0 to 32 bytes: the session a TLS 1.2 client
    /// asks to resume, or (from a client offering TLS 1.3) random bytes for
    /// middlebox compatibility, or empty.
    pub fn session_id(&self) -> &[u8] {
        self.layout().map_or(&[], |l| l.session_id)
    }

    /// The cipher suites offered, in the client's order of preference.
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + '_ {
        self.layout()
            .map_or(&[][..], |l| l.cipher_suites)
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    }

    /// Every extension, in order.
    pub fn extensions(&self) -> Extensions<'_> {
        Extensions::new(self.layout().map_or(&[], |l| l.extensions))
    }

    /// What the client offers that a server looks at before its handshake,
    /// found in one pass over the extensions (the accessors below each
    /// make that pass; a caller wanting several asks once here). The first
    /// extension of each type counts.
    pub fn offered(&self) -> Offered<'_> {
        let (mut server_name, mut versions, mut ticket, mut pre_shared_key) =
            (None, None, None, None);
        for extension in self.extensions().map_while(Result::ok) {
            let slot = match extension.kind {
                extension::SERVER_NAME => &mut server_name,
                extension::SUPPORTED_VERSIONS => &mut versions,
                extension::SESSION_TICKET => &mut ticket,
                extension::PRE_SHARED_KEY => &mut pre_shared_key,
                _ => continue,
            };
            slot.get_or_insert(extension);
        }
        Offered {
            server_name: server_name.and_then(|e| server_name_in(e.data).ok().flatten()),
            tls13: versions.is_some_and(|e| offers_tls13(e.data) == Ok(true)),
            session_ticket: ticket.map(|e| e.data).filter(|ticket| !ticket.is_empty()),
            pre_shared_key,
        }
    }

    /// The `host_name` of the `server_name` extension (SNI), as sent: ASCII
    /// by the RFC, but not checked to be a DNS name, nor lowercased.
    pub fn server_name(&self) -> Option<&[u8]> {
        self.offered().server_name
    }

    /// Whether `supported_versions` lists TLS 1.3.
    pub fn offers_tls13(&self) -> bool {
        self.offered().tls13
    }

    /// The ticket of the `session_ticket` extension (RFC 5077), when it
    /// holds one: a TLS 1.2 client resuming by ticket (an empty extension
    /// only says it would take one). A server that opens tickets resumes
    /// by it and never looks the session id up.
    pub fn session_ticket(&self) -> Option<&[u8]> {
        self.offered().session_ticket
    }

    /// The identities of the `pre_shared_key` extension, in the client's
    /// order (none without the extension): a TLS 1.3 client resuming offers
    /// its tickets here.
    pub fn psk_identities(&self) -> PskIdentities<'_> {
        self.offered().psk_identities()
    }

    /// Whether the `pre_shared_key` extension is present and the last one,
    /// as RFC 8446 4.2.11 requires; a server must refuse the handshake when
    /// it is present elsewhere.
    pub fn pre_shared_key_is_last(&self) -> bool {
        self.offered().pre_shared_key_is_last()
    }
}

/// What a ClientHello offers that a server acts on before its handshake
/// ([`ClientHello::offered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered<'a> {
    /// The `host_name` of the `server_name` extension, as sent.
    pub server_name: Option<&'a [u8]>,
    /// Whether `supported_versions` lists TLS 1.3.
    pub tls13: bool,
    /// A non-empty `session_ticket` extension's ticket.
    pub session_ticket: Option<&'a [u8]>,
    /// The `pre_shared_key` extension.
    pre_shared_key: Option<Extension<'a>>,
}

impl<'a> Offered<'a> {
    /// The identities of the `pre_shared_key` extension, in the client's
    /// order (none without the extension).
    pub fn psk_identities(&self) -> PskIdentities<'a> {
        let identities = self.pre_shared_key.and_then(|extension| {
            Reader::new(extension.data, Field::PreSharedKey)
                .vec16(Field::PskIdentities)
                .ok()
        });
        PskIdentities {
            reader: identities.unwrap_or(Reader::new(&[], Field::PskIdentities)),
            yielded: 0,
        }
    }

    /// Whether the `pre_shared_key` extension is present and the last one
    /// (RFC 8446 4.2.11).
    pub fn pre_shared_key_is_last(&self) -> bool {
        self.pre_shared_key.is_some_and(|extension| extension.last)
    }
}

/// One extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// Its type.
    pub kind: u16,
    /// Its data.
    pub data: &'a [u8],
    /// Whether it is the last extension of the block.
    pub last: bool,
}

/// The extensions of a block, in order; after a framing error, none.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    reader: Reader<'a>,
}

impl<'a> Extensions<'a> {
    fn new(block: &'a [u8]) -> Extensions<'a> {
        Extensions {
            reader: Reader::new(block, Field::Extension),
        }
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Result<Extension<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_empty() {
            return None;
        }
        let next = self
            .reader
            .u16()
            .and_then(|kind| Ok((kind, self.reader.vec16(Field::Extension)?.rest())));
        Some(match next {
            Ok((kind, data)) => Ok(Extension {
                kind,
                data,
                last: self.reader.is_empty(),
            }),
            Err(error) => {
                // Nothing after a framing error can be trusted.
                self.reader.rest();
                Err(error)
            }
        })
    }
}

/// One PSK identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PskIdentity<'a> {
    /// The identity: a ticket, or a label for an external PSK.
    pub identity: &'a [u8],
    /// The ticket's age in milliseconds plus its `ticket_age_add`.
    pub obfuscated_ticket_age: u32,
}

/// The PSK identities of a ClientHello: at most [`MAX_PSK_IDENTITIES`].
#[derive(Debug, Clone)]
pub struct PskIdentities<'a> {
    reader: Reader<'a>,
    yielded: usize,
}

impl<'a> Iterator for PskIdentities<'a> {
    type Item = PskIdentity<'a>;

    fn next(&mut self) -> Option<PskIdentity<'a>> {
        if self.yielded == MAX_PSK_IDENTITIES {
            return None;
        }
        let next = psk_identity(&mut self.reader);
        match next {
            Ok(Some(identity)) => {
                self.yielded += 1;
                Some(identity)
            }
            Ok(None) | Err(_) => None,
        }
    }
}

/// The next identity of a list, `None` at its end.
fn psk_identity<'a>(list: &mut Reader<'a>) -> Result<Option<PskIdentity<'a>>, Error> {
    if list.is_empty() {
        return Ok(None);
    }
    let identity = list.vec16(Field::PskIdentity)?.non_empty()?.rest();
    let obfuscated_ticket_age = list.u32()?;
    Ok(Some(PskIdentity {
        identity,
        obfuscated_ticket_age,
    }))
}

/// `ServerNameList`'s host name (RFC 6066 3). As in rustls, a name of
/// another type ends the list: its encoding is unknown, so nothing after it
/// can be read.
fn server_name_in(data: &[u8]) -> Result<Option<&[u8]>, Error> {
    let mut extension = Reader::new(data, Field::ServerName);
    let mut list = extension.vec16(Field::ServerName)?.non_empty()?;
    extension.finish()?;
    let mut found = None;
    while !list.is_empty() {
        const HOST_NAME: u8 = 0;
        if list.u8()? != HOST_NAME {
            break;
        }
        let name = list.vec16(Field::HostName)?.non_empty()?.rest();
        if found.replace(name).is_some() {
            return Err(Error::DuplicateHostName);
        }
    }
    Ok(found)
}

/// Whether `supported_versions` (RFC 8446 4.2.1) lists TLS 1.3.
fn offers_tls13(data: &[u8]) -> Result<bool, Error> {
    let mut extension = Reader::new(data, Field::SupportedVersions);
    let versions = extension
        .vec8(Field::SupportedVersions)?
        .non_empty()?
        .rest();
    extension.finish()?;
    if versions.len() % 2 != 0 {
        return Err(Error::OddLength(Field::SupportedVersions));
    }
    Ok(versions
        .chunks_exact(2)
        .any(|pair| u16::from_be_bytes([pair[0], pair[1]]) == TLS13))
}

/// `OfferedPsks` (RFC 8446 4.2.11): identities, and as many binders.
fn check_pre_shared_key(data: &[u8]) -> Result<(), Error> {
    let mut extension = Reader::new(data, Field::PreSharedKey);
    let mut identities = extension.vec16(Field::PskIdentities)?.non_empty()?;
    let mut binders = extension.vec16(Field::PskBinders)?.non_empty()?;
    extension.finish()?;
    let mut identity_count = 0u16;
    while psk_identity(&mut identities)?.is_some() {
        identity_count += 1;
        if usize::from(identity_count) > MAX_PSK_IDENTITIES {
            return Err(Error::TooManyPskIdentities);
        }
    }
    // Each binder takes at least two bytes: at most 2^15 of them.
    let mut binder_count = 0u16;
    while !binders.is_empty() {
        binders.vec8(Field::PskBinder)?.non_empty()?;
        binder_count += 1;
    }
    if binder_count != identity_count {
        return Err(Error::PskBinderCount {
            identities: identity_count,
            binders: binder_count,
        });
    }
    Ok(())
}
