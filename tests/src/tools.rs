//! Third-party programs the tests drive: checking that one is installed
//! (a missing one fails the test, naming the Debian package, rather than
//! letting it pass by not running) and running one to completion within a
//! time limit.

use std::io::{self, Read, Write};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Panics unless `program ARGS` runs and exits 0, naming the Debian
/// package that provides it.
pub fn require(program: &str, args: &[&str], package: &str) {
    assert!(
        installed(program, args),
        "`{program}` is not installed; these tests need it (apt-get install {package})"
    );
}

/// Whether `program ARGS` (a version query) runs and exits 0.
pub fn installed(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Why [`try_run_bounded`] got no output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("starting {program}: {source}")]
    Start { program: String, source: io::Error },
    #[error("waiting for {program}: {source}")]
    Wait { program: String, source: io::Error },
    #[error("{program} did not finish within {timeout:?}; stderr:\n{stderr}")]
    Timeout {
        program: String,
        timeout: Duration,
        stderr: String,
    },
}

/// Runs `command` with `input` on its standard input and returns its
/// output. A program still running after `timeout` is killed and the test
/// fails with what it wrote to stderr.
pub fn run_bounded(command: &mut Command, input: &[u8], timeout: Duration) -> Output {
    try_run_bounded(command, input, timeout).unwrap_or_else(|error| panic!("{error}"))
}

/// [`run_bounded`] for callers that carry on after a failure (xtask): a
/// program still running after `timeout` is killed and is an error.
pub fn try_run_bounded(
    command: &mut Command,
    input: &[u8],
    timeout: Duration,
) -> Result<Output, RunError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = match command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(source) => return Err(RunError::Start { program, source }),
    };
    // Each pipe has its own thread, so a program that writes a lot before
    // reading all its input cannot deadlock with the test.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        // A program may exit without reading everything; that is its call.
        let _ = stdin.write_all(&input);
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => return Err(RunError::Wait { program, source }),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            return Err(RunError::Timeout {
                program,
                timeout,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
