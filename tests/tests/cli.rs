//! Option handling of the real binary: errors name the option and value,
//! --help and --version work, and the example ini files run as they are.

use cachet_tests::{
    assert_contains_all, exit_code_and_stderr, repo_root, run_to_exit, temp_file, Router,
};

#[test]
fn unknown_option_fails_with_its_name() {
    let (code, stderr) =
        exit_code_and_stderr(&["--https", "127.0.0.1:0", "--ssl-session-use-cache"]);
    assert_ne!(code, 0);
    assert_contains_all(
        &stderr,
        &[
            "`ssl-session-use-cache`",
            "did you mean `ssl-sessions-use-cache`",
        ],
    );
}

#[test]
fn unknown_ini_key_fails_with_its_name_and_line() {
    let (_dir, ini) = temp_file(
        "bad.ini",
        "[uwsgi]\nhttps = 127.0.0.1:0\nhttp-too = 127.0.0.1:1\n",
    );
    let (code, stderr) = exit_code_and_stderr(&["--ini", ini.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("`http-too`") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn bad_values_name_option_and_value() {
    for (args, needle) in [
        (
            &[
                "--https",
                "127.0.0.1:0,/nonexistent/c.pem,/nonexistent/k.pem",
            ][..],
            "/nonexistent/c.pem",
        ),
        (
            &["--https", "not-an-address"][..],
            "`https` = `not-an-address`",
        ),
        (
            &["--https", "127.0.0.1:0", "--stats", "127.0.0.1:99999"][..],
            "`stats` = `127.0.0.1:99999`",
        ),
        (
            &["--ini", "/nonexistent/router.ini"][..],
            "/nonexistent/router.ini",
        ),
    ] {
        let (code, stderr) = exit_code_and_stderr(args);
        assert_ne!(code, 0, "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn address_in_use_is_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = exit_code_and_stderr(&["--https", &addr]);
    assert_ne!(code, 0);
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn help_and_version() {
    let output = run_to_exit(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--https",
        "--http-to",
        "--ssl-sessions-use-cache",
        "--stats-http",
    ] {
        assert!(help.contains(option), "{help}");
    }
    let output = run_to_exit(&["--version"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("cachet "));
}

/// The example files run unchanged except for their ports, which become 0
/// so the test cannot collide with anything else on the machine.
fn run_example(name: &str) -> (Router, tempfile::TempDir) {
    let source = repo_root().join("examples").join(name);
    let text = std::fs::read_to_string(&source).unwrap();
    let mut rewritten = String::new();
    for line in text.lines() {
        let line = if line.trim_start().starts_with(';') {
            line.to_owned()
        } else {
            zero_ports(line)
        };
        rewritten.push_str(&line);
        rewritten.push('\n');
    }
    // Relative certificate paths are resolved next to the ini file: bring
    // the example certificates along.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|ext| ext == "crt" || ext == "key")
        {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let copy = dir.path().join(name);
    std::fs::write(&copy, rewritten).unwrap();
    let router = Router::start(&["--ini", copy.to_str().unwrap()]);
    (router, dir)
}

/// `127.0.0.1:8443` -> `127.0.0.1:0`, for listening options only.
fn zero_ports(line: &str) -> String {
    let Some((key, value)) = line.split_once('=') else {
        return line.to_owned();
    };
    if !matches!(key.trim(), "https" | "stats" | "stats-http") {
        return line.to_owned();
    }
    let mut fields: Vec<String> = value.split(',').map(str::to_owned).collect();
    if let Some((host, _port)) = fields[0].rsplit_once(':') {
        fields[0] = format!("{host}:0");
    }
    format!("{key}={}", fields.join(","))
}

#[test]
fn setup1_example_runs() {
    let (router, _dir) = run_example("setup1.ini");
    assert_eq!(router.https.len(), 1);
    let stats = router.stats();
    assert_eq!(stats["cache"]["max_items"], 20000, "{stats:#}");
    assert_eq!(stats["cache"]["blocksize"], 4096);
    assert_eq!(stats["sessions"]["storage"], "cache");
    assert_eq!(stats["backends"].as_array().unwrap().len(), 3);
    // `http-processes = 8` under a master.
    assert_eq!(stats["workers"].as_array().unwrap().len(), 8, "{stats:#}");
    assert_eq!(router.worker_pids().len(), 8);
    assert_eq!(router.terminate().code(), Some(0));
}

#[test]
fn minimal_example_runs() {
    let (router, _dir) = run_example("minimal.ini");
    assert!(router.log().contains("self-signed"));
    assert_eq!(router.terminate().code(), Some(0));
}
