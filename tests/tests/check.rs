//! `cachet --check` validates a configuration and every file it names
//! without serving, and every configuration error is reported at once.

use cachet_tests::{assert_contains_all, exit_code_and_stderr, temp_file, Pki};

#[test]
fn a_good_configuration_passes_without_binding() {
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let other = pki.leaf("other", &["other.test"]);
    // The address is taken: a check must not bind (the router being
    // checked usually runs and holds its sockets).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let log = pki.dir().join("access.log");
    let (code, stderr) = exit_code_and_stderr(&[
        "--check",
        "--https",
        &leaf.https(&addr),
        "--sni",
        &other.sni("other.test"),
        "--http-to",
        "127.0.0.1:3031",
        "--access-log",
        log.to_str().unwrap(),
        "--cache",
        "100",
        "--ssl-sessions-use-cache",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("configuration ok"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn files_that_do_not_load_fail_the_check_each_named() {
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let other = pki.leaf("other", &["other.test"]);
    let not_pem = pki.dir().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "this is not PEM\n").unwrap();
    // A certificate with another certificate's key.
    let mismatched = format!("127.0.0.1:0,{},{}", leaf.crt.display(), other.key.display());
    let garbage = format!("127.0.0.1:0,{},{}", not_pem.display(), leaf.key.display());
    let (code, stderr) = exit_code_and_stderr(&[
        "--check",
        "--https",
        &mismatched,
        "--https",
        &garbage,
        "--access-log",
        "/nonexistent-dir/access.log",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert_contains_all(
        &stderr,
        &[
            "3 problems",
            "not-a-certificate.pem",
            "other",
            "/nonexistent-dir/access.log",
        ],
    );
}

#[test]
fn every_bad_option_is_reported_at_once() {
    let (_dir, ini) = temp_file(
        "router.ini",
        "[uwsgi]\nhttps = 127.0.0.1:0\ncache = lots\nhttp-too = 127.0.0.1:1\nstats = nowhere\n",
    );
    let ini = ini.to_str().unwrap();
    for check in [false, true] {
        let mut args = vec![
            "--ini",
            ini,
            "--access-log-format",
            "xml",
            "--access-log",
            "stderr",
        ];
        if check {
            args.push("--check");
        }
        let (code, stderr) = exit_code_and_stderr(&args);
        // Like `nginx -t`, a check exits 1; starting exits 2 (usage).
        assert_eq!(code, if check { 1 } else { 2 }, "{stderr}");
        for needle in [
            "4 problems",
            "`cache` = `lots`",
            "router.ini line 3",
            "`http-too`",
            "router.ini line 4",
            "`stats` = `nowhere`",
            "`access-log-format` = `xml`",
        ] {
            assert!(
                stderr.contains(needle),
                "{needle:?} missing from:\n{stderr}"
            );
        }
    }
}
