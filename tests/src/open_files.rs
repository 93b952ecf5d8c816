//! What a router leaves readable: every file its processes hold open (the
//! shared region's memfd included), read through `/proc/PID/fd`, so a test
//! can check that no secret is in any of them nor in the router's log.

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// The processes of the router whose main process is `pid`: it and its
/// workers (its children).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent pid is the second field after the parenthesised name.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(pid) {
            tree.push(child);
        }
    }
    tree
}

/// Every file (regular or memfd) the processes of the router `pid` hold
/// open, each read once through `/proc/PID/fd` (its processes share the
/// shared region's memfd).
pub fn open_files(pid: u32) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for process in process_tree(pid) {
        let dir = format!("/proc/{process}/fd");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let name = target.to_string_lossy().into_owned();
            // Sockets, pipes and anonymous inodes are not files.
            if !name.starts_with('/')
                || name.starts_with("/dev/")
                || files.iter().any(|(seen, _)| *seen == name)
            {
                continue;
            }
            if let Ok(bytes) = std::fs::read(entry.path()) {
                files.push((name, bytes));
            }
        }
    }
    files
}

/// Panics if any of `secrets` appears, raw or as lower-case hex, in a file
/// the router `pid` holds open (which must include the shared region's
/// memfd, else the check would prove little), or as hex in its `log`.
pub fn assert_secrets_absent(pid: u32, log: &str, secrets: &[&[u8]]) {
    let files = open_files(pid);
    assert!(
        files.iter().any(|(name, _)| name.starts_with("/memfd:")),
        "the shared region was not among the open files: {:?}",
        files.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    for secret in secrets {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        for (name, bytes) in &files {
            assert!(!contains(bytes, secret), "a raw secret is in {name}");
            assert!(
                !contains(bytes, hex.as_bytes()),
                "a secret's hex is in {name}"
            );
        }
        assert!(!log.contains(&hex), "a secret's hex is in the log");
    }
}

/// Panics if any 8-byte window of any of `secrets`, as hex, appears in
/// one of `texts` (stats documents, Prometheus text): what a router shows
/// names keys by fingerprint, never by content.
pub fn assert_secrets_not_shown(texts: &[String], secrets: &[&[u8]]) {
    for secret in secrets {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        for text in texts {
            for window in hex.as_bytes().chunks(16) {
                let window = std::str::from_utf8(window).expect("hex is ASCII");
                assert!(!text.contains(window), "key bytes shown:\n{text}");
            }
        }
    }
}
