//! ClientHellos of real clients (`vectors/`, see its README), read whole,
//! cut at every byte, flipped at every bit and stretched; crafted ones for
//! every rule; arbitrary bytes.

use std::vec::Vec;

use proptest::prelude::*;

use super::*;

/// A captured first flight and what it offers.
struct Vector {
    name: &'static str,
    records: &'static [u8],
    server_name: &'static [u8],
    offers: Offers,
}

/// What a client offers to resume with, besides a fresh handshake.
enum Offers {
    /// A TLS 1.2 session: its id, exactly.
    Tls12Resume(&'static [u8]),
    /// Nothing: TLS 1.3 with a random 32-byte legacy session id.
    Tls13Fresh,
    /// A TLS 1.3 ticket, its only PSK identity (and a random session id).
    Tls13Resume(&'static [u8]),
}

/// The vector `name`, whose files in `vectors/` are named after it:
/// `NAME.bin` its records, `NAME.session_id` the TLS 1.2 session id it
/// resumes, `NAME.ticket` the TLS 1.3 ticket it offers.
macro_rules! vector {
    ($name:literal, $server_name:literal, Tls12Resume) => {
        vector!(@ $name, $server_name, Offers::Tls12Resume(vector!(@file $name, "session_id")))
    };
    ($name:literal, $server_name:literal, Tls13Fresh) => {
        vector!(@ $name, $server_name, Offers::Tls13Fresh)
    };
    ($name:literal, $server_name:literal, Tls13Resume) => {
        vector!(@ $name, $server_name, Offers::Tls13Resume(vector!(@file $name, "ticket")))
    };
    (@ $name:literal, $server_name:literal, $offers:expr) => {
        Vector {
            name: $name,
            records: vector!(@file $name, "bin"),
            server_name: $server_name,
            offers: $offers,
        }
    };
    (@file $name:literal, $extension:literal) => {
        include_bytes!(concat!("vectors/", $name, ".", $extension))
    };
}

const VECTORS: &[Vector] = &[
    // rustls sends the name as its caller spelled it.
    vector!("rustls_tls12_resume", b"LocalHost", Tls12Resume),
    vector!("rustls_tls13_fresh", b"localhost", Tls13Fresh),
    vector!("rustls_tls13_resume", b"localhost", Tls13Resume),
    vector!("openssl_default_fresh", b"localhost", Tls13Fresh),
    vector!("openssl_tls12_resume", b"localhost", Tls12Resume),
    vector!("openssl_tls13_resume", b"localhost", Tls13Resume),
];

/// A vector's ClientHello message (each is one record).
fn message(vector: &Vector) -> &'static [u8] {
    match reassemble(vector.records, usize::MAX) {
        Ok(Reassembly::Whole(message)) => message,
        other => panic!("{}: {other:?}", vector.name),
    }
}

/// Calls every accessor and checks the bounds they promise.
fn read_everything<T: AsRef<[u8]>>(hello: &ClientHello<T>) {
    assert!(hello.session_id().len() <= MAX_SESSION_ID_LEN);
    assert!(hello.random().len() == 32 || hello.random().is_empty());
    let _ = (
        hello.legacy_version(),
        hello.server_name(),
        hello.offers_tls13(),
    );
    let _ = hello.pre_shared_key_is_last();
    let _ = hello.cipher_suites().count();
    for extension in hello.extensions() {
        if extension.is_err() {
            break;
        }
    }
    assert!(hello.psk_identities().count() <= MAX_PSK_IDENTITIES);
    for psk in hello.psk_identities() {
        assert!(!psk.identity.is_empty());
    }
}

#[test]
fn real_client_hellos_offer_what_their_clients_hold() {
    for vector in VECTORS {
        let hello = ClientHello::new_checked(message(vector))
            .unwrap_or_else(|e| panic!("{}: {e}", vector.name));
        let name = vector.name;
        assert_eq!(hello.legacy_version(), 0x0303, "{name}");
        assert_eq!(hello.server_name(), Some(vector.server_name), "{name}");
        let (tls13, psk) = match vector.offers {
            Offers::Tls12Resume(id) => {
                assert_eq!(hello.session_id(), id, "{name}");
                (false, None)
            }
            Offers::Tls13Fresh => (true, None),
            Offers::Tls13Resume(ticket) => (true, Some(ticket)),
        };
        if tls13 {
            assert_eq!(hello.session_id().len(), 32, "{name}");
        }
        assert_eq!(hello.offers_tls13(), tls13, "{name}");
        let identities: Vec<_> = hello.psk_identities().collect();
        match psk {
            Some(ticket) => {
                assert_eq!(identities.len(), 1, "{name}");
                assert_eq!(identities[0].identity, ticket, "{name}");
                assert!(hello.pre_shared_key_is_last(), "{name}");
            }
            None => {
                assert!(identities.is_empty(), "{name}");
                assert!(!hello.pre_shared_key_is_last(), "{name}");
            }
        }
        assert!(hello.cipher_suites().count() > 0, "{name}");
        assert!(hello.extensions().all(|e| e.is_ok()), "{name}");
    }
}

/// Every vector in records of every size from 1 byte, cut at every byte:
/// never an error before the end, the same message at the end.
#[test]
fn real_client_hellos_reassemble_from_any_records() {
    for vector in VECTORS {
        let message = message(vector);
        for size in [1, 2, 3, 4, 5, 7, 64, 100, message.len() - 1] {
            let mut records = Vec::new();
            for chunk in message.chunks(size) {
                records.extend_from_slice(&[22, 3, 1]);
                records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
                records.extend_from_slice(chunk);
            }
            for cut in 0..records.len() {
                assert_eq!(
                    reassemble(&records[..cut], message.len()),
                    Ok(Reassembly::Incomplete),
                    "{} in records of {size}, cut at {cut}",
                    vector.name
                );
            }
            assert_eq!(
                reassemble(&records, message.len()),
                Ok(Reassembly::Fragmented { len: message.len() }),
                "{} in records of {size}",
                vector.name
            );
            let mut joined = std::vec![0; message.len()];
            assert_eq!(join(&records, &mut joined), Ok(message));
        }
        assert_eq!(
            reassemble(vector.records, message.len() - 1),
            Err(Error::Oversized {
                len: message.len(),
                max: message.len() - 1
            })
        );
    }
}

/// Cut at every byte, with the message's length left alone (it then runs
/// past the end) and set to the cut (so the cut lands inside a field):
/// never a panic, and a ClientHello only where the cut leaves one (after
/// the compression methods, a ClientHello without extensions is valid).
#[test]
fn truncations_at_every_byte_are_refused() {
    for vector in VECTORS {
        let message = message(vector);
        for cut in 0..message.len() {
            assert!(
                ClientHello::new_checked(&message[..cut]).is_err(),
                "{} cut at {cut}",
                vector.name
            );
            if cut < HANDSHAKE_HEADER_LEN {
                continue;
            }
            let mut shortened = message[..cut].to_vec();
            shortened[1..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes()[1..]);
            match ClientHello::new_checked(&shortened[..]) {
                Ok(hello) => {
                    read_everything(&hello);
                    assert!(hello.extensions().next().is_none(), "{}", vector.name);
                }
                Err(error) => {
                    read_everything(&ClientHello::new_unchecked(&shortened[..]));
                    assert!(
                        matches!(
                            error,
                            Error::Truncated(_)
                                | Error::TrailingBytes(_)
                                | Error::Empty(_)
                                | Error::OddLength(_)
                        ),
                        "{} cut at {cut}: {error}",
                        vector.name
                    );
                }
            }
        }
    }
}

/// Every bit of every vector flipped, and every byte set to 0x00 and
/// 0xff (lengths of nothing and lengths far past the end): never a panic,
/// and what passes the check keeps the accessors' promises.
#[test]
fn flipped_bits_and_stretched_lengths_never_panic() {
    for vector in VECTORS {
        let message = message(vector);
        let mut mutated = message.to_vec();
        // Accessors keep their promises whether or not the check passed.
        let check = |mutated: &[u8]| {
            let hello = ClientHello::new_unchecked(mutated);
            let _ = hello.check();
            read_everything(&hello);
        };
        for at in 0..message.len() {
            for bit in 0..8 {
                mutated[at] ^= 1 << bit;
                check(&mutated);
                mutated[at] ^= 1 << bit;
            }
            for value in [0x00, 0xff] {
                mutated[at] = value;
                check(&mutated);
            }
            mutated[at] = message[at];
        }
    }
}

/// A ClientHello message with this session id and these extensions;
/// `extensions: None` leaves the block out.
fn craft(session_id: &[u8], extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = std::vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(session_id.len() as u8);
    body.extend_from_slice(session_id);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    if let Some(extensions) = extensions {
        let mut block = Vec::new();
        for (kind, data) in extensions {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&(data.len() as u16).to_be_bytes());
            block.extend_from_slice(data);
        }
        body.extend_from_slice(&(block.len() as u16).to_be_bytes());
        body.extend_from_slice(&block);
    }
    let mut message = std::vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    message
}

fn sni(names: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    (extension::SERVER_NAME, data)
}

fn versions(list: &[u8]) -> (u16, Vec<u8>) {
    let mut data = std::vec![list.len() as u8];
    data.extend_from_slice(list);
    (extension::SUPPORTED_VERSIONS, data)
}

/// `pre_shared_key` with these identities and binders of `binder_len`.
fn psk(identities: &[&[u8]], binders: usize, binder_len: u8) -> (u16, Vec<u8>) {
    let mut ids = Vec::new();
    for identity in identities {
        ids.extend_from_slice(&(identity.len() as u16).to_be_bytes());
        ids.extend_from_slice(identity);
        ids.extend_from_slice(&[0, 0, 0, 1]);
    }
    let mut list = Vec::new();
    for _ in 0..binders {
        list.push(binder_len);
        list.extend(core::iter::repeat_n(0xbb, usize::from(binder_len)));
    }
    let mut data = (ids.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&ids);
    data.extend_from_slice(&(list.len() as u16).to_be_bytes());
    data.extend_from_slice(&list);
    (extension::PRE_SHARED_KEY, data)
}

fn check(message: &[u8]) -> Result<(), Error> {
    ClientHello::new_checked(message).map(|_| ())
}

#[test]
fn crafted_client_hellos_follow_the_rules() {
    // No extensions block at all: an old TLS 1.2 client.
    let bare = craft(&[9; 32], None);
    let hello = ClientHello::new_checked(&bare[..]).unwrap();
    assert_eq!(hello.session_id(), &[9; 32]);
    assert_eq!(hello.server_name(), None);
    assert!(!hello.offers_tls13());
    assert_eq!(hello.psk_identities().count(), 0);
    assert_eq!(hello.session_ticket(), None);
    assert_eq!(hello.cipher_suites().collect::<Vec<_>>(), [0x1301]);
    // A TLS 1.2 client that takes tickets (empty) and one offering one.
    let wants = craft(&[9; 32], Some(&[(extension::SESSION_TICKET, Vec::new())]));
    assert_eq!(
        ClientHello::new_checked(&wants[..])
            .unwrap()
            .session_ticket(),
        None
    );
    let offers = craft(
        &[9; 32],
        Some(&[(extension::SESSION_TICKET, std::vec![5; 80])]),
    );
    assert_eq!(
        ClientHello::new_checked(&offers[..])
            .unwrap()
            .session_ticket(),
        Some(&[5u8; 80][..])
    );
    // An empty block is allowed too.
    check(&craft(&[], Some(&[]))).unwrap();

    let ok = craft(
        &[],
        Some(&[
            sni(&[(0, b"a.example")]),
            (0xfe0d, std::vec![1, 2, 3]),
            versions(&[0x7a, 0x7a, 3, 4, 3, 3]),
            psk(&[b"ticket-1", b"ticket-2"], 2, 32),
        ]),
    );
    let hello = ClientHello::new_checked(&ok[..]).unwrap();
    assert_eq!(hello.server_name(), Some(&b"a.example"[..]));
    assert!(hello.offers_tls13());
    let ids: Vec<_> = hello.psk_identities().map(|p| p.identity).collect();
    assert_eq!(ids, [&b"ticket-1"[..], b"ticket-2"]);
    assert_eq!(
        hello.psk_identities().next().unwrap().obfuscated_ticket_age,
        1
    );
    assert!(hello.pre_shared_key_is_last());
    assert_eq!(hello.extensions().count(), 4);

    // Reported, for the caller to refuse.
    let psk_first = craft(&[], Some(&[psk(&[b"t"], 1, 32), sni(&[(0, b"x")])]));
    assert!(!ClientHello::new_checked(&psk_first[..])
        .unwrap()
        .pre_shared_key_is_last());

    // A name of an unknown type ends the list, as in rustls.
    let unknown_type = craft(
        &[],
        Some(&[sni(&[(0, b"first"), (7, b"?"), (0, b"third")])]),
    );
    let hello = ClientHello::new_checked(&unknown_type[..]).unwrap();
    assert_eq!(hello.server_name(), Some(&b"first"[..]));
    let only_unknown = craft(&[], Some(&[sni(&[(7, b"?")])]));
    assert_eq!(
        ClientHello::new_checked(&only_unknown[..])
            .unwrap()
            .server_name(),
        None
    );
    let no_tls13 = craft(&[], Some(&[versions(&[3, 3, 3, 2])]));
    assert!(!ClientHello::new_checked(&no_tls13[..])
        .unwrap()
        .offers_tls13());
    // Exactly the most identities accepted.
    let ids = [&b"id"[..]; MAX_PSK_IDENTITIES];
    let most = craft(&[], Some(&[psk(&ids, MAX_PSK_IDENTITIES, 32)]));
    assert_eq!(
        ClientHello::new_checked(&most[..])
            .unwrap()
            .psk_identities()
            .count(),
        MAX_PSK_IDENTITIES
    );
}

#[test]
fn crafted_client_hellos_breaking_the_rules_say_which() {
    let too_many = [&b"id"[..]; MAX_PSK_IDENTITIES + 1];
    let empty: &[u8] = &[];
    let cases: [(Vec<u8>, Error); 17] = [
        (craft(&[0; 33], None), Error::SessionIdTooLong(33)),
        (
            craft(&[], Some(&[sni(&[(0, b"a")]), sni(&[(0, b"b")])])),
            Error::DuplicateExtension(extension::SERVER_NAME),
        ),
        (
            craft(&[], Some(&[versions(&[3, 4]), versions(&[3, 4])])),
            Error::DuplicateExtension(extension::SUPPORTED_VERSIONS),
        ),
        (
            craft(&[], Some(&[psk(&[b"t"], 1, 32), psk(&[b"t"], 1, 32)])),
            Error::DuplicateExtension(extension::PRE_SHARED_KEY),
        ),
        (
            craft(&[], Some(&[sni(&[(0, b"a"), (0, b"b")])])),
            Error::DuplicateHostName,
        ),
        (
            craft(&[], Some(&[sni(&[(0, empty)])])),
            Error::Empty(Field::HostName),
        ),
        (
            craft(&[], Some(&[sni(&[])])),
            Error::Empty(Field::ServerName),
        ),
        (
            craft(&[], Some(&[(extension::SERVER_NAME, std::vec![])])),
            Error::Truncated(Field::ServerName),
        ),
        (
            craft(&[], Some(&[versions(&[3, 4, 3])])),
            Error::OddLength(Field::SupportedVersions),
        ),
        (
            craft(&[], Some(&[versions(&[])])),
            Error::Empty(Field::SupportedVersions),
        ),
        (
            craft(&[], Some(&[psk(&too_many, too_many.len(), 32)])),
            Error::TooManyPskIdentities,
        ),
        (
            craft(&[], Some(&[psk(&[b"a", b"b"], 1, 32)])),
            Error::PskBinderCount {
                identities: 2,
                binders: 1,
            },
        ),
        (
            craft(&[], Some(&[psk(&[empty], 1, 32)])),
            Error::Empty(Field::PskIdentity),
        ),
        (
            craft(&[], Some(&[psk(&[], 1, 32)])),
            Error::Empty(Field::PskIdentities),
        ),
        (
            craft(&[], Some(&[psk(&[b"t"], 1, 0)])),
            Error::Empty(Field::PskBinder),
        ),
        (
            craft(&[], Some(&[psk(&[b"t"], 0, 32)])),
            Error::Empty(Field::PskBinders),
        ),
        (
            {
                let mut data = sni(&[(0, b"a")]);
                data.1.push(0);
                craft(&[], Some(&[data]))
            },
            Error::TrailingBytes(Field::ServerName),
        ),
    ];
    for (message, error) in cases {
        assert_eq!(check(&message), Err(error), "{error}");
    }

    // The fixed fields.
    let mut bad = craft(&[], None);
    bad[0] = 2;
    assert_eq!(check(&bad), Err(Error::NotClientHello(2)));
    let good = craft(&[], None);
    let suites_at = HANDSHAKE_HEADER_LEN + 34 + 1;
    let mut odd = good.clone();
    odd[suites_at + 1] = 3;
    odd.insert(suites_at + 2, 0);
    odd[3] += 1;
    assert_eq!(check(&odd), Err(Error::OddLength(Field::CipherSuites)));
    let mut none = good.clone();
    none[suites_at + 1] = 0;
    none.drain(suites_at + 2..suites_at + 4);
    none[3] -= 2;
    assert_eq!(check(&none), Err(Error::Empty(Field::CipherSuites)));
    let mut no_compression = good.clone();
    no_compression.truncate(no_compression.len() - 1);
    *no_compression.last_mut().unwrap() = 0;
    no_compression[3] -= 1;
    assert_eq!(
        check(&no_compression),
        Err(Error::Empty(Field::CompressionMethods))
    );
    // A byte after the extensions block, counted in the message's length.
    let mut trailing = craft(&[], Some(&[]));
    trailing.push(0);
    trailing[3] += 1;
    assert_eq!(
        check(&trailing),
        Err(Error::TrailingBytes(Field::Handshake))
    );
    // A byte after the message's length.
    let mut beyond = craft(&[], None);
    beyond.push(0);
    assert_eq!(check(&beyond), Err(Error::TrailingBytes(Field::Handshake)));
    // An extension longer than the block.
    let mut long = craft(&[], Some(&[(0xaaaa, std::vec![1, 2])]));
    let at = long.len() - 3;
    long[at] = 3;
    assert_eq!(check(&long), Err(Error::Truncated(Field::Extension)));
}

#[test]
fn errors_name_the_alert_rustls_would_send() {
    assert_eq!(Error::NotHandshakeRecord(23).alert(), 10);
    assert_eq!(Error::RecordOverflow(20000).alert(), 22);
    assert_eq!(Error::DuplicateExtension(0).alert(), 47);
    assert_eq!(Error::Truncated(Field::Extensions).alert(), 50);
    // Each message says what went wrong, and where.
    let text = std::format!("{}", Error::Truncated(Field::PskIdentities));
    assert_eq!(
        text,
        "the identities of pre_shared_key runs past the end of its enclosing data"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes, as records and as a message: never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        match reassemble(&bytes, 1 << 16) {
            Ok(Reassembly::Whole(message)) => {
                let _ = ClientHello::new_checked(message);
            }
            Ok(Reassembly::Fragmented { len }) => {
                let mut out = std::vec![0; len];
                let message = join(&bytes, &mut out).unwrap();
                prop_assert_eq!(message.len(), len);
                let _ = ClientHello::new_checked(message);
            }
            Ok(Reassembly::Incomplete) | Err(_) => {}
        }
        let hello = ClientHello::new_unchecked(&bytes[..]);
        let _ = hello.check();
        read_everything(&hello);
    }

    /// Arbitrary bytes after a real ClientHello's fixed fields, as its
    /// extensions: never a panic, and the promises kept when accepted.
    #[test]
    fn arbitrary_extensions_never_panic(
        vector in 0..VECTORS.len(),
        extensions in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let hello = ClientHello::new_checked(message(&VECTORS[vector])).unwrap();
        let mut body = std::vec![3, 3];
        body.extend_from_slice(hello.random());
        body.push(hello.session_id().len() as u8);
        body.extend_from_slice(hello.session_id());
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut message = std::vec![1];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        let hello = ClientHello::new_unchecked(&message[..]);
        if hello.check().is_ok() {
            read_everything(&hello);
        }
    }

    /// A real ClientHello in records of arbitrary sizes comes out whole.
    #[test]
    fn any_record_sizes_reassemble(
        vector in 0..VECTORS.len(),
        sizes in proptest::collection::vec(1usize..300, 1..64),
    ) {
        let message = message(&VECTORS[vector]);
        let mut records = Vec::new();
        let mut rest = message;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
            records.extend_from_slice(&[22, 3, 3]);
            records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            records.extend_from_slice(chunk);
            rest = tail;
        }
        let mut out = std::vec![0; message.len()];
        let joined = match reassemble(&records, MAX_FRAGMENT_LEN).unwrap() {
            Reassembly::Whole(whole) => whole,
            Reassembly::Fragmented { len } => join(&records, &mut out[..len]).unwrap(),
            Reassembly::Incomplete => panic!("incomplete"),
        };
        prop_assert_eq!(joined, message);
    }
}
