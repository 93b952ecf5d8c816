//! The comparison as Markdown tables, the verdict on each target, and the
//! bars of the chart.

use std::fmt::Write as _;

use super::chart::Bar;
use super::load::{Load, Tls};
use super::servers::{Kind, PEERS};
use super::{pace_label, KeyType, Plan, Results};

/// The targets: cachet / peer at least this, against nginx and
/// HAProxy. hitch is measured but not a target.
fn target(load: Load) -> f64 {
    match load {
        Load::Resumed(_) => 1.5,
        Load::New(_) | Load::Proxied => 1.0,
    }
}

/// Cross-node resumption cachet's cluster must reach.
const CROSS_NODE_TARGET: f64 = 0.99;

const KEY_TYPES: [KeyType; 2] = [KeyType::EcdsaP256, KeyType::Rsa2048];

/// The comparison sections of `docs/BENCHMARKS.md`.
pub(crate) fn markdown(results: &Results, plan: &Plan) -> String {
    let mut doc = String::new();
    let w = &mut doc;
    let peers: Vec<Kind> = results.compared().filter(|k| *k != Kind::Cachet).collect();

    writeln!(w, "## Side by side with nginx, HAProxy and hitch\n").unwrap();
    writeln!(
        w,
        "Servers, each with {} workers (processes or threads):\n",
        plan.workers
    )
    .unwrap();
    for (_, version) in &results.servers {
        writeln!(w, "- {version}").unwrap();
    }
    for kind in &results.missing {
        writeln!(
            w,
            "- {} is not installed (`cargo xtask bench --install` installs it)",
            kind.name()
        )
        .unwrap();
    }
    writeln!(
        w,
        "\nLoad: `cachet bench --json --insecure --connections {c} --duration {d}` per run, \
         {r} rounds, each round running every load against every server in turn; the \
         tables quote the median of the rounds. Ratios are cachet / peer: above 1, \
         cachet is ahead. How the servers are configured and why: `docs/BENCH.md`.\n",
        c = plan.connections,
        d = plan.run.as_secs_f64(),
        r = plan.rounds,
    )
    .unwrap();

    for key_type in KEY_TYPES {
        writeln!(w, "### {}\n", key_type.label()).unwrap();
        let mut header = String::from("| figure | cachet |");
        let mut rule = String::from("|---|---:|");
        for peer in &peers {
            write!(header, " {} | cachet / {} |", peer.name(), peer.name()).unwrap();
            rule.push_str("---:|---:|");
        }
        writeln!(w, "{header}\n{rule}").unwrap();
        for load in Load::ALL {
            let Some(ours) = results.median(key_type, load, Kind::Cachet) else {
                continue;
            };
            let mut row = format!("| {} | {ours:.0} |", load.label());
            for peer in &peers {
                match results.median(key_type, load, *peer) {
                    Some(theirs) if theirs > 0.0 => {
                        write!(row, " {theirs:.0} | {:.2}x |", ours / theirs).unwrap()
                    }
                    Some(_) => row.push_str(" 0 | n/a |"),
                    None => row.push_str(" — | — |"),
                }
            }
            writeln!(w, "{row}").unwrap();
        }
        writeln!(w).unwrap();
        let errors: Vec<String> = results
            .throughput
            .iter()
            .filter(|t| t.key_type == key_type && t.errors > 0)
            .map(|t| format!("{} {}: {}", t.kind.name(), t.load.label(), t.errors))
            .collect();
        if !errors.is_empty() {
            writeln!(w, "Client errors counted: {}.\n", errors.join("; ")).unwrap();
        }
        let weak: Vec<String> = results
            .throughput
            .iter()
            .filter(|t| t.key_type == key_type && matches!(t.load, Load::Resumed(_)))
            .filter(|t| t.resumption_ratio < 0.9)
            .map(|t| {
                format!(
                    "{} resumed only {:.0}% of {}",
                    t.kind.name(),
                    100.0 * t.resumption_ratio,
                    t.load.label().replace(" handshakes/s", " handshakes")
                )
            })
            .collect();
        if !weak.is_empty() {
            writeln!(w, "Resumption that did not happen: {}.\n", weak.join("; ")).unwrap();
        }
    }

    writeln!(
        w,
        "### Cross-node resumption, three nodes behind round-robin\n"
    )
    .unwrap();
    writeln!(
        w,
        "Each node one worker; {c} clients, each connection going to the next node \
         and offering the session or ticket the previous one issued. Back to back, a \
         client reconnects the moment its last connection closed, which races the \
         replication of a TLS 1.3 ticket issued at the very end of that connection; \
         paced, each client comes back after some 20 ms (still far sooner than a \
         browser's next connection). cachet's three routers replicate over the \
         encrypted UDP sync; the others are independent instances, which cannot share \
         sessions: back to back a client lands on the node it last used about one \
         time in three, and paced, when the clients take the round-robin in turn, \
         almost never.\n",
        c = plan.connections
    )
    .unwrap();
    writeln!(
        w,
        "| nodes | clients reconnect | TLS 1.2 resumed | TLS 1.3 resumed | handshakes | errors |"
    )
    .unwrap();
    writeln!(w, "|---|---|---:|---:|---:|---:|").unwrap();
    for kind in results.compared() {
        for pace in paces(results) {
            let of = |tls: Tls| {
                results
                    .cross_node
                    .iter()
                    .find(|c| c.kind == kind && c.tls == tls && c.pace == pace)
            };
            let (Some(v12), Some(v13)) = (of(Tls::V12), of(Tls::V13)) else {
                continue;
            };
            writeln!(
                w,
                "| 3 × {} | {} | {:.1}% | {:.1}% | {} | {} |",
                kind.name(),
                pace_label(pace),
                100.0 * v12.ratio,
                100.0 * v13.ratio,
                v12.handshakes + v13.handshakes,
                v12.errors + v13.errors
            )
            .unwrap();
        }
    }

    writeln!(w, "\n### Memory with {} cached sessions\n", plan.sessions).unwrap();
    writeln!(
        w,
        "The whole process tree of each server, freshly started, then after that many \
         full TLS 1.2 handshakes (each stores one session). PSS counts a shared page once \
         (shared among the processes that map it); RSS counts it in every process.\n"
    )
    .unwrap();
    writeln!(
        w,
        "| server | processes | PSS idle (MiB) | PSS loaded (MiB) | PSS growth (MiB) | RSS loaded (MiB) | sessions made |"
    )
    .unwrap();
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|").unwrap();
    for m in &results.memory {
        let mib = |kib: u64| kib as f64 / 1024.0;
        writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            m.kind.name(),
            m.loaded.processes,
            mib(m.idle.pss_kib),
            mib(m.loaded.pss_kib),
            mib(m.loaded.pss_kib.saturating_sub(m.idle.pss_kib)),
            mib(m.loaded.rss_kib),
            m.sessions
        )
        .unwrap();
    }

    writeln!(w, "\n### Cross-check with `openssl s_time` (ECDSA P-256)\n").unwrap();
    writeln!(
        w,
        "One OpenSSL client, one connection at a time, {} s per row: a different client \
         and a different concurrency, so compare the ratios, not the absolute rates.\n",
        plan.s_time_seconds
    )
    .unwrap();
    let mut header = String::from("| connections/s | cachet |");
    let mut rule = String::from("|---|---:|");
    for peer in &peers {
        write!(header, " {} | cachet / {} |", peer.name(), peer.name()).unwrap();
        rule.push_str("---:|---:|");
    }
    writeln!(w, "{header}\n{rule}").unwrap();
    for (label, _) in super::load::S_TIME_LOADS {
        let of = |kind: Kind| {
            results
                .s_time
                .iter()
                .find(|s| s.kind == kind && s.load == label)
                .map(|s| s.per_second)
        };
        let Some(ours) = of(Kind::Cachet) else {
            continue;
        };
        let mut row = format!("| {label} | {ours:.0} |");
        for peer in &peers {
            match of(*peer) {
                Some(theirs) if theirs > 0.0 => {
                    write!(row, " {theirs:.0} | {:.2}x |", ours / theirs).unwrap()
                }
                _ => row.push_str(" — | — |"),
            }
        }
        writeln!(w, "{row}").unwrap();
    }

    writeln!(w, "\n### Targets\n").unwrap();
    for line in verdicts(results) {
        writeln!(w, "- {line}").unwrap();
    }
    if !results.failures.is_empty() {
        writeln!(w, "\n### Problems seen during the run\n").unwrap();
        for failure in &results.failures {
            let line: String = failure.replace('\n', " ").chars().take(600).collect();
            writeln!(w, "- {line}").unwrap();
        }
    }
    if !results.notes.is_empty() {
        writeln!(w, "\n### What the servers logged\n").unwrap();
        for note in &results.notes {
            writeln!(w, "- {note}").unwrap();
        }
    }
    doc
}

/// One line per target: met, or short by how much.
pub(crate) fn verdicts(results: &Results) -> Vec<String> {
    let mut lines = Vec::new();
    for key_type in KEY_TYPES {
        for load in Load::ALL {
            let Some(ours) = results.median(key_type, load, Kind::Cachet) else {
                continue;
            };
            for peer in [Kind::Nginx, Kind::Haproxy] {
                let Some(theirs) = results.median(key_type, load, peer).filter(|t| *t > 0.0) else {
                    continue;
                };
                let ratio = ours / theirs;
                let wanted = target(load);
                let verdict = if ratio >= wanted { "met" } else { "**short**" };
                lines.push(format!(
                    "{} {}: cachet / {} = {ratio:.2}x, target {wanted:.1}x: {verdict}",
                    key_type.label(),
                    load.label(),
                    peer.name()
                ));
            }
        }
    }
    for c in results.cross_node.iter().filter(|c| c.kind == Kind::Cachet) {
        let verdict = if c.ratio >= CROSS_NODE_TARGET {
            "met"
        } else {
            "**short**"
        };
        lines.push(format!(
            "cross-node resumption, TLS {}, {}: cachet {:.1}%, target {:.0}%: {verdict}",
            c.tls.as_str(),
            pace_label(c.pace),
            100.0 * c.ratio,
            100.0 * CROSS_NODE_TARGET
        ));
    }
    lines
}

/// The cross-node paces measured, in the order first run.
fn paces(results: &Results) -> Vec<Option<u32>> {
    let mut paces = Vec::new();
    for c in &results.cross_node {
        if !paces.contains(&c.pace) {
            paces.push(c.pace);
        }
    }
    paces
}

/// The chart's bars: every figure against every peer measured.
pub(crate) fn bars(results: &Results) -> Vec<Bar> {
    let mut bars = Vec::new();
    for key_type in KEY_TYPES {
        let tag = match key_type {
            KeyType::EcdsaP256 => "ECDSA",
            KeyType::Rsa2048 => "RSA",
        };
        for load in Load::ALL {
            let Some(ours) = results.median(key_type, load, Kind::Cachet) else {
                continue;
            };
            for peer in PEERS {
                if let Some(theirs) = results.median(key_type, load, peer).filter(|t| *t > 0.0) {
                    bars.push(Bar {
                        label: format!("{} ({tag})", load.short()),
                        peer,
                        ratio: ours / theirs,
                    });
                }
            }
        }
    }
    // Back to back only: paced, the independent peers resume almost nothing
    // and the ratio says no more than the table.
    for (pace, tls) in [(None, Tls::V12), (None, Tls::V13)] {
        let of = |kind: Kind| {
            results
                .cross_node
                .iter()
                .find(|c| c.kind == kind && c.tls == tls && c.pace == pace)
                .map(|c| c.ratio)
        };
        let Some(ours) = of(Kind::Cachet) else {
            continue;
        };
        for peer in PEERS {
            if let Some(theirs) = of(peer).filter(|t| *t > 0.0) {
                bars.push(Bar {
                    label: format!("cross-node resumed {}", tls.as_str()),
                    peer,
                    ratio: ours / theirs,
                });
            }
        }
    }
    bars
}

/// What a smoke run must show: every load measured on cachet with both
/// key types and no client errors, the memory and `s_time` figures, TLS 1.2
/// sessions resuming across a cluster, and no server problems.
pub(crate) fn check_smoke(results: &Results) -> Result<(), String> {
    let mut missing = Vec::new();
    for key_type in KEY_TYPES {
        for load in Load::ALL {
            let measured = results
                .throughput
                .iter()
                .find(|t| t.key_type == key_type && t.load == load && t.kind == Kind::Cachet);
            match measured {
                Some(t) if t.median() > 0.0 && t.errors == 0 => {}
                Some(t) => missing.push(format!(
                    "{} {}: {:.0} with {} errors",
                    key_type.label(),
                    load.label(),
                    t.median(),
                    t.errors
                )),
                None => missing.push(format!("{} {}: not run", key_type.label(), load.label())),
            }
        }
    }
    if !results
        .memory
        .iter()
        .any(|m| m.kind == Kind::Cachet && m.loaded.pss_kib > 0)
    {
        missing.push("memory: not measured".to_owned());
    }
    if results
        .s_time
        .iter()
        .filter(|s| s.kind == Kind::Cachet)
        .count()
        < super::load::S_TIME_LOADS.len()
    {
        missing.push("openssl s_time: not every row measured".to_owned());
    }
    // Measured, not judged: how many reconnections to another node resume
    // depends on that node's master winning a race for a CPU, which the
    // smoke run on a busy machine does not control (the full run reports
    // the ratios).
    for c in results.cross_node.iter().filter(|c| c.kind == Kind::Cachet) {
        if c.handshakes == 0 || c.errors > 0 {
            missing.push(format!(
                "cross-node TLS {}, {}: {} handshakes, {} errors",
                c.tls.as_str(),
                pace_label(c.pace),
                c.handshakes,
                c.errors
            ));
        }
    }
    if results.cross_node.iter().all(|c| c.kind != Kind::Cachet) {
        missing.push("cross-node: not run".to_owned());
    }
    missing.extend(results.failures.iter().cloned());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "bench smoke run incomplete:\n  {}",
            missing.join("\n  ")
        ))
    }
}
