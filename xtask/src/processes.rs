//! Servers started by a task, and stopped with it.
//!
//! `cargo xtask cluster` and `cargo xtask bench` start routers, HAProxy,
//! nginx and hitch in the foreground, wait until each is ready, read their
//! logs on failure and must never leave one running: [`Processes`] stops
//! every process it started when it is dropped, also on an early return.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};

/// Bound on a server's start.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A started process: its name, the child and its stderr so far.
struct Started {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

/// The processes started so far; all stopped on drop (SIGTERM, then
/// SIGKILL after 5 s). A router's master takes its workers with it, as do
/// nginx's, HAProxy's and hitch's masters in the foreground.
#[derive(Default)]
pub(crate) struct Processes {
    children: Vec<Started>,
}

/// What tells that a process is ready to serve.
pub(crate) enum Ready<'a> {
    /// It printed this line on stderr (`cachet: ready`).
    Line(&'a str),
    /// It accepts TCP connections on this address.
    Accepts(SocketAddr),
}

impl Processes {
    /// Starts `cachet --ini INI` and waits (bounded) for `cachet: ready`.
    pub(crate) fn start_router(&mut self, bin: &Path, ini: &Path) -> Result<u32> {
        let mut command = Command::new(bin);
        command.arg("--ini").arg(ini);
        let name = ini
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        self.start_cachet(&name, command)
    }

    /// Starts a `cachet` command line (quiet unless `RUST_LOG` says
    /// otherwise) and waits (bounded) for `cachet: ready`.
    pub(crate) fn start_cachet(&mut self, name: &str, mut command: Command) -> Result<u32> {
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        self.start(name, command, Ready::Line("cachet: ready"))
    }

    /// Starts `command` with stderr collected and waits until it is ready.
    /// Returns its pid.
    pub(crate) fn start(
        &mut self,
        name: &str,
        mut command: Command,
        ready: Ready<'_>,
    ) -> Result<u32> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            let line_wanted = match ready {
                Ready::Line(line) => Some(line.to_owned()),
                Ready::Accepts(_) => None,
            };
            // Reads for the process's whole life, so its stderr never fills.
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    if line_wanted.as_deref() == Some(line.as_str()) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            });
        }
        self.children.push(Started {
            name: name.to_owned(),
            child,
            log: Arc::clone(&log),
        });
        let ready = match ready {
            Ready::Line(_) => rx.recv_timeout(START_TIMEOUT).is_ok(),
            Ready::Accepts(addr) => self.wait_accepting(name, addr),
        };
        if !ready {
            return Err(anyhow!(
                "{name} exited or did not become ready within {START_TIMEOUT:?}:\n{}",
                log.lock().unwrap()
            ));
        }
        Ok(pid)
    }

    /// Whether `addr` accepts before [`START_TIMEOUT`] while `name` runs.
    fn wait_accepting(&mut self, name: &str, addr: SocketAddr) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = self
                .children
                .iter_mut()
                .find(|s| s.name == name)
                .is_none_or(|s| s.child.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Kills `name` at once (SIGKILL), as a crash would, and reaps it.
    pub(crate) fn kill(&mut self, name: &str) {
        if let Some(at) = self.children.iter().position(|s| s.name == name) {
            let mut started = self.children.remove(at);
            let _ = started.child.kill();
            let _ = started.child.wait();
        }
    }

    /// What `name` printed on stderr so far.
    pub(crate) fn log(&self, name: &str) -> String {
        self.children
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.log.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        stop_all(std::mem::take(&mut self.children));
    }
}

fn stop_all(mut children: Vec<Started>) {
    for started in &children {
        let _ = Command::new("kill")
            .args(["-TERM", &started.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for Started { name, child, .. } in &mut children {
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().ok().flatten().is_none() {
            eprintln!("xtask: {name} ignored SIGTERM; killing it");
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// A child in a process group of its own, killed with the whole group
/// (SIGKILL) when dropped: for programs that start children of their own
/// (`stress` and its hogs, `cargo run` and qemu), none of which may outlive
/// the task.
pub(crate) struct Group {
    pub(crate) child: Child,
}

impl Group {
    pub(crate) fn spawn(mut command: Command) -> Result<Group> {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        Ok(Group { child })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The group's id is the leader's pid.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails unless `program ARGS` runs and succeeds.
pub(crate) fn require(program: &str, args: &[&str]) -> Result<()> {
    ensure!(
        cachet_tests::tools::installed(program, args),
        "`{program}` is needed and not installed"
    );
    Ok(())
}

/// Where cargo puts its output: `CARGO_TARGET_DIR` or `target/`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into)
}

/// Builds `cachet` in release; the binary's path.
pub(crate) fn release_cachet(root: &Path) -> Result<PathBuf> {
    build_cachet(root, "release", &["--release"])
}

/// Builds `cachet` in the dev profile (what the tests build too).
pub(crate) fn debug_cachet(root: &Path) -> Result<PathBuf> {
    build_cachet(root, "debug", &[])
}

fn build_cachet(root: &Path, profile_dir: &str, flags: &[&str]) -> Result<PathBuf> {
    crate::run(root, "cargo", &[&["build", "-p", "cachet"], flags].concat())?;
    let bin = target_dir(root).join(profile_dir).join("cachet");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(anyhow!("no cachet binary at {}", bin.display()))
    }
}
