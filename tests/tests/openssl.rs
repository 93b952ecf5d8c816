//! Sessions resume for `openssl s_client -sess_out/-sess_in`, TLS 1.2 and
//! 1.3, and an SNI name's session does not resume under another
//! certificate; a handshake the router refuses ends with its alert.

use cachet_tests::backends;
use cachet_tests::openssl::{require_openssl, s_client, s_client_again, s_client_output, Session};
use cachet_tests::{cached_router_args, Pki, Router};

const RECONNECTIONS: usize = 10;

/// A router with a session cache before a uwsgi backend, serving
/// `localhost` and, on a certificate of its own, `alpha.test`. Every test
/// here talks to it with `openssl s_client`: that is required first.
fn start(pki: &Pki) -> (backends::OnOwnRuntime, Router) {
    require_openssl();
    let backend = backends::uwsgi_on_own_runtime("app");
    let default = pki.leaf("default", &["localhost"]);
    let alpha = pki.leaf("alpha", &["alpha.test"]);
    let sni = ["--sni", &alpha.sni("alpha.test")];
    let router = Router::start(&cached_router_args(&default, backend.uwsgi_to(), 100, &sni));
    (backend, router)
}

fn resumes(tls: &str, stats_key: &str) {
    let pki = Pki::new();
    let (_backend, router) = start(&pki);
    let session = pki.dir().join(format!("session{tls}.pem"));

    let (first, output) = s_client(router.addr(), tls, "localhost", &pki.ca_pem, None, &session);
    assert_eq!(first, Session::New, "{output}");
    assert!(output.contains("HTTP/1.1 200 OK"), "{output}");
    for i in 1..RECONNECTIONS {
        // TLS 1.3 tickets are single-use: each run saves the fresh ticket
        // it received for the next one.
        let (kind, output) = s_client_again(router.addr(), tls, &pki.ca_pem, &session);
        assert_eq!(
            kind,
            Session::Reused,
            "connection {i}:\n{output}\n{}",
            router.log()
        );
        assert!(output.contains("HTTP/1.1 200 OK"), "{output}");
    }
    let stats = router.stats();
    assert_eq!(
        stats["tls"]["handshakes"][stats_key]["full"], 1,
        "{stats:#}"
    );
    assert_eq!(
        stats["tls"]["handshakes"][stats_key]["resumed"],
        RECONNECTIONS as u64 - 1,
        "{stats:#}"
    );
}

#[test]
fn tls12_sessions_resume_with_openssl() {
    resumes("-tls1_2", "tls12");
}

#[test]
fn tls13_sessions_resume_with_openssl() {
    resumes("-tls1_3", "tls13");
}

#[test]
fn sni_session_does_not_resume_under_another_certificate() {
    let pki = Pki::new();
    let (_backend, router) = start(&pki);
    for tls in ["-tls1_2", "-tls1_3"] {
        let alpha = pki.dir().join(format!("alpha{tls}.pem"));
        let (kind, _) = s_client(router.addr(), tls, "alpha.test", &pki.ca_pem, None, &alpha);
        assert_eq!(kind, Session::New);
        let (kind, output) = s_client(
            router.addr(),
            tls,
            "alpha.test",
            &pki.ca_pem,
            Some(&alpha),
            &alpha,
        );
        assert_eq!(kind, Session::Reused, "{tls} alpha.test resumes:\n{output}");
        // Offer alpha.test's session while asking for the default certificate.
        let other = pki.dir().join(format!("other{tls}.pem"));
        let (kind, output) = s_client(
            router.addr(),
            tls,
            "localhost",
            &pki.ca_pem,
            Some(&alpha),
            &other,
        );
        assert_eq!(
            kind,
            Session::New,
            "{tls}: alpha.test's session resumed for localhost:\n{output}"
        );
    }
}

/// A handshake the router refuses ends with the alert that says why,
/// though the router keeps a handshake's writes until they are due
/// (`host/src/proxy/client_stream.rs`): s_client offering only a cipher
/// the router lacks, TLS 1.3 and 1.2, reads a handshake_failure alert
/// rather than a bare close.
#[test]
fn a_refused_handshake_ends_with_its_alert() {
    let pki = Pki::new();
    let (_backend, router) = start(&pki);
    for options in [
        ["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"],
        ["-tls1_2", "-cipher", "AES128-CCM"],
    ] {
        let output = s_client_output(router.addr(), &options, &pki.ca_pem);
        assert!(
            output.contains("alert handshake failure"),
            "{options:?}:\n{output}"
        );
    }
}
