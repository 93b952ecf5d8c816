//! What `cargo xtask ci` needs that cargo does not bring, installed before
//! anything runs, so that the README's one command passes on a fresh
//! machine: the embedded targets, cargo-fuzz, and the Debian packages
//! whose programs the tests run. This is the one list of them (`.ci/run`
//! only runs `cargo xtask ci`).
//!
//! Debian packages are installed with `apt-get` when running as root; any
//! other user gets the exact `sudo apt-get install` line to run, before a
//! minute is spent building.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context, Result};

/// Debian packages the checks need, and what needs them.
pub(crate) const DEBIAN_PACKAGES: [(&str, &str); 14] = [
    (
        "openssl",
        "s_client and s_time in the tests and the bench smoke run",
    ),
    ("curl", "HTTP clients in the end-to-end tests"),
    (
        "qemu-system-arm",
        "cachet-core's self-checks on an emulated Cortex-M3",
    ),
    (
        "uwsgi-core",
        "a real uWSGI application server behind the router",
    ),
    (
        "uwsgi-plugin-python3",
        "the WSGI application that uWSGI runs",
    ),
    (
        "haproxy",
        "a TCP balancer with PROXY protocol in front of the router",
    ),
    ("nginx", "the comparison in `cargo xtask bench`"),
    (
        "nghttp2-client",
        "h2load, many HTTP/2 streams per connection",
    ),
    (
        "redis-server",
        "Redis servers and a Redis Cluster behind the Redis tier's tests",
    ),
    (
        "redis-tools",
        "redis-cli, which makes the tests' Redis Cluster",
    ),
    (
        "systemd",
        "systemd-analyze, which checks the example unit file",
    ),
    ("stress", "keeping both cores busy in `cargo xtask soak`"),
    (
        "faketime",
        "a router whose wall clock runs ahead (libfaketime), in the replay and ticket key tests",
    ),
    ("procps", "kill, which the tests signal processes with"),
];

/// The targets of the no_std builds (`thumbv7em-none-eabihf`: the core, the
/// appliance and its firmware) and of the emulated self-checks.
pub(crate) const TARGETS: [&str; 2] = [crate::EMBEDDED_TARGET, crate::qemu::TARGET];

/// Installs whatever of the above is missing, or says how.
pub(crate) fn run() -> Result<()> {
    debian_packages()?;
    targets()?;
    cargo_fuzz()
}

fn debian_packages() -> Result<()> {
    let names: Vec<&str> = DEBIAN_PACKAGES.iter().map(|(name, _)| *name).collect();
    if !succeeds("dpkg-query", &["--version"]) {
        eprintln!(
            "xtask: not a Debian system (no dpkg-query): make sure these are installed, \
             under whatever names your system gives them: {}",
            names.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() {
        return Err(anyhow!(
            "these Debian packages are missing: {}\nrun this, then `cargo xtask ci` again:\n\n    \
             sudo apt-get update && sudo {install}\n\n{}",
            missing.join(", "),
            why(&missing)
        ));
    }
    eprintln!(
        "xtask: installing {}:\n{}",
        missing.join(", "),
        why(&missing)
    );
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        crate::run_command(command)
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    match missing.iter().find(|name| !installed(name)) {
        Some(name) => Err(anyhow!("`{install}` left {name} uninstalled")),
        None => Ok(()),
    }
}

/// One line per package: what it is for.
fn why(packages: &[&str]) -> String {
    DEBIAN_PACKAGES
        .iter()
        .filter(|(name, _)| packages.contains(name))
        .map(|(name, purpose)| format!("  {name}: {purpose}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether dpkg knows `package` as installed.
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${db:Status-Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success() && output.stdout == b"installed")
}

fn is_root() -> bool {
    // The real uid, from the kernel: no libc call, no `id` process.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().next())
            == Some("0")
    })
}

fn targets() -> Result<()> {
    let sysroot = sysroot()?;
    let missing: Vec<&str> = TARGETS
        .into_iter()
        .filter(|target| !target_installed(&sysroot, target))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !succeeds("rustup", &["--version"]) {
        return Err(anyhow!(
            "the Rust targets {} are missing and rustup is not there to add them; \
             install them for the toolchain in {}",
            missing.join(", "),
            sysroot.display()
        ));
    }
    crate::run(
        Path::new("."),
        "rustup",
        &[&["target", "add"], &missing[..]].concat(),
    )
}

/// The toolchain's directory, where each target's standard library is.
pub(crate) fn sysroot() -> Result<PathBuf> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot start rustc")?;
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    ))
}

/// Whether the standard library for `target` is in the toolchain.
pub(crate) fn target_installed(sysroot: &Path, target: &str) -> bool {
    sysroot.join("lib/rustlib").join(target).is_dir()
}

fn cargo_fuzz() -> Result<()> {
    if succeeds("cargo", &["fuzz", "--version"]) {
        return Ok(());
    }
    crate::run(
        Path::new("."),
        "cargo",
        &["install", "cargo-fuzz", "--locked"],
    )
}

/// Whether `program ARGS` runs and exits 0.
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_once_with_a_reason() {
        let mut names: Vec<&str> = DEBIAN_PACKAGES.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEBIAN_PACKAGES.len());
        assert!(DEBIAN_PACKAGES.iter().all(|(_, why)| !why.is_empty()));
    }

    #[test]
    fn reasons_name_only_the_packages_asked_for() {
        let text = why(&["stress", "curl"]);
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("  curl: ") && text.contains("  stress: "));
    }
}
