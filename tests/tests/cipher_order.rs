//! The router chooses the cipher suite (AES-128-GCM first, ChaCha20 for a
//! client that lists it first) and sends two TLS 1.3 tickets after a full
//! handshake, one after a resumption, as OpenSSL does: checked with
//! `openssl s_client`, which lists AES-256-GCM first by default.

use cachet_tests::backends;
use cachet_tests::openssl::{require_openssl, s_client_with, Session};
use cachet_tests::{cached_router_args, Pki, Router};

struct Running {
    router: Router,
    pki: Pki,
    _backend: backends::OnOwnRuntime,
}

fn running() -> Running {
    require_openssl();
    let backend = backends::uwsgi_on_own_runtime("app");
    let pki = Pki::new();
    let leaf = pki.leaf("default", &["localhost"]);
    let router = Router::start(&cached_router_args(&leaf, backend.uwsgi_to(), 100, &[]));
    Running {
        router,
        pki,
        _backend: backend,
    }
}

/// The suite s_client reports for a handshake offering `options`.
fn negotiated(running: &Running, options: &[&str]) -> String {
    let session = running.pki.dir().join("suite.pem");
    let (kind, output) = s_client_with(
        running.router.addr(),
        options,
        &running.pki.ca_pem,
        None,
        &session,
    );
    assert_eq!(kind, Session::New, "{output}");
    output
        .lines()
        .find_map(|line| {
            line.split_once("Cipher is ")
                .map(|(_, suite)| suite.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no cipher line in:\n{output}"))
}

#[test]
fn the_router_prefers_aes_128_unless_the_client_puts_chacha_first() {
    let running = running();
    // (version, option naming the client's list, the list, the suite chosen)
    for (tls, option, offered, chosen) in [
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        // A client offering AES-256 only still gets it.
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
             ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ] {
        assert_eq!(
            negotiated(&running, &[tls, option, offered]),
            chosen,
            "{tls} offering {offered}"
        );
    }
}

#[test]
fn two_tickets_after_a_full_handshake_one_after_a_resumption() {
    let running = running();
    let session = running.pki.dir().join("tickets.pem");
    let tickets = |output: &str| {
        output
            .matches("Post-Handshake New Session Ticket arrived")
            .count()
    };
    let addr = running.router.addr();
    let ca = &running.pki.ca_pem;
    let (kind, output) = s_client_with(addr, &["-tls1_3"], ca, None, &session);
    assert_eq!(kind, Session::New, "{output}");
    assert_eq!(tickets(&output), 2, "{output}");
    for _ in 0..3 {
        let (kind, output) = s_client_with(addr, &["-tls1_3"], ca, Some(&session), &session);
        assert_eq!(kind, Session::Reused, "{output}");
        assert_eq!(tickets(&output), 1, "{output}");
    }
}

/// A socket with a client CA (`https = ADDR,CRT,KEY,,CA`): both of a
/// site's configurations (router's order, ChaCha20 first) verify clients
/// against it, and a client without a certificate is refused.
#[test]
fn both_configurations_ask_for_a_client_certificate() {
    require_openssl();
    let backend = backends::uwsgi_on_own_runtime("app");
    let pki = Pki::new();
    let leaf = pki.leaf("default", &["localhost"]);
    let client = pki.leaf("client", &["client.test"]);
    let https = format!("{},,{}", leaf.https("127.0.0.1:0"), pki.ca_pem.display());
    let router = Router::start(&["--https", &https, "--http-to", &backend.uwsgi_to()]);
    let session = pki.dir().join("client.pem");
    let (crt, key) = (client.crt.to_str().unwrap(), client.key.to_str().unwrap());
    for suites in [
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
    ] {
        let options = [
            "-tls1_3",
            "-ciphersuites",
            suites,
            "-cert",
            crt,
            "-key",
            key,
        ];
        let (kind, output) = s_client_with(router.addr(), &options, &pki.ca_pem, None, &session);
        assert_eq!(kind, Session::New, "{output}");
        assert!(output.contains("HTTP/1.1 200 OK"), "{suites}:\n{output}");
        let (_, output) = s_client_with(
            router.addr(),
            &["-tls1_3", "-ciphersuites", suites],
            &pki.ca_pem,
            None,
            &session,
        );
        assert!(
            !output.contains("HTTP/1.1 200 OK"),
            "{suites}: served without a client certificate:\n{output}"
        );
    }
}
