//! The comparison as Markdown tables, the verdict on each target, and the
//! bars of the chart.

use std::fmt::{self, Write as _};

use anyhow::{anyhow, Context, Result};

use super::chart::Bar;
use super::load::{Load, Tls};
use super::pulls::{self, Pulls};
use super::servers::{Kind, PEERS};
use super::{pace_label, KeyType, Plan, Results};

/// The issues' targets: cachet / peer at least this, against nginx and
/// HAProxy. Against every peer (hitch and Sozu too), no row below 1.0x
/// ([`verdicts`]).
fn target(load: Load) -> f64 {
    match load {
        Load::Resumed(Tls::V12) => 1.5,
        Load::Resumed(Tls::V13) => 1.3,
        Load::Proxied => 1.1,
        Load::New(_) => 1.0,
    }
}

/// Issue #16's targets for the server's CPU per operation: cachet / nginx
/// at most this.
fn cpu_target(load: Load) -> Option<f64> {
    match load {
        Load::Resumed(_) => Some(0.6),
        Load::Proxied => Some(0.8),
        Load::New(_) => None,
    }
}

const KEY_TYPES: [KeyType; 2] = [KeyType::EcdsaP256, KeyType::Rsa2048];

/// The comparison sections of `docs/BENCHMARKS.md`.
pub(crate) fn markdown(results: &Results, plan: &Plan) -> Result<String> {
    let mut doc = String::new();
    write_markdown(&mut doc, results, plan).context("formatting the comparison's markdown")?;
    Ok(doc)
}

fn write_markdown(w: &mut String, results: &Results, plan: &Plan) -> fmt::Result {
    let peers: Vec<Kind> = results.compared().filter(|k| *k != Kind::Cachet).collect();

    writeln!(w, "## Side by side with nginx, HAProxy, hitch and Sozu\n")?;
    writeln!(
        w,
        "Servers, each with {} workers (processes or threads):\n",
        plan.workers
    )?;
    for (_, version) in &results.servers {
        writeln!(w, "- {version}")?;
    }
    for kind in &results.missing {
        writeln!(
            w,
            "- {} is not installed (`cargo xtask bench --install` installs it)",
            kind.name()
        )?;
    }
    writeln!(
        w,
        "\nLoad: `cachet bench --json --insecure --connections {c} --duration {d}` per run, \
         {r} rounds, each round running every load against every server in turn; the \
         tables quote the median of the rounds. Ratios are cachet / peer: above 1, \
         cachet is ahead. Below each rate, ↳ is what one operation cost the server \
         itself: the user + system time of its whole process tree (master, workers, \
         every thread) over the run, read from /proc, divided by the handshakes or \
         requests completed, in microseconds. Lower is better, so there a ratio below 1 \
         means cachet spends less; unlike the rates, it does not depend on how much of \
         the shared cores the load generator took. The second ↳ is the system part of \
         that time, spent in the kernel: on loopback mostly TCP (a send also runs the \
         receiving socket's processing), which every server needs for the same \
         connections and requests, so it bounds how far below a peer's CPU a server can \
         go by its own work. \
         How the servers are configured and why: `docs/BENCH.md`.\n",
        c = plan.connections,
        d = plan.run.as_secs_f64(),
        r = plan.rounds,
    )?;

    for key_type in KEY_TYPES {
        writeln!(w, "### {}\n", key_type.label())?;
        table_head(w, "figure", &peers)?;
        for load in Load::ALL {
            let Some(ours) = results.median(key_type, load, Kind::Cachet) else {
                continue;
            };
            let mut row = format!("| {} | {ours:.0} |", load.label());
            for peer in &peers {
                match results.median(key_type, load, *peer) {
                    Some(theirs) if theirs > 0.0 => {
                        write!(row, " {theirs:.0} | {:.2}x |", ours / theirs)?
                    }
                    Some(_) => row.push_str(" 0 | n/a |"),
                    None => row.push_str(" — | — |"),
                }
            }
            writeln!(w, "{row}")?;
            let server_cpu = format!("↳ server CPU per {} (us)", load.operation());
            let cpu = |kind| results.cpu_median(key_type, load, kind);
            if let Some(row) = cost_row(&server_cpu, cpu, &peers) {
                writeln!(w, "{row}")?;
            }
            let system = |kind| results.system_median(key_type, load, kind);
            if let Some(row) = cost_row("↳ of it in the kernel (us)", system, &peers) {
                writeln!(w, "{row}")?;
            }
        }
        writeln!(w)?;
        let errors: Vec<String> = results
            .throughput
            .iter()
            .filter(|t| t.key_type == key_type && t.errors > 0)
            .map(|t| format!("{} {}: {}", t.kind.name(), t.load.label(), t.errors))
            .collect();
        if !errors.is_empty() {
            writeln!(w, "Client errors counted: {}.\n", errors.join("; "))?;
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
            writeln!(w, "Resumption that did not happen: {}.\n", weak.join("; "))?;
        }
    }

    cross_node_section(w, results, plan)?;
    race_section(w, results, plan)?;
    pull_section(w, results)?;
    writeln!(w, "\n### Memory with {} cached sessions\n", plan.sessions)?;
    writeln!(
        w,
        "The whole process tree of each server, freshly started, then after that many \
         full TLS 1.2 handshakes (each stores one session). PSS counts a shared page once \
         (shared among the processes that map it); RSS counts it in every process.\n"
    )?;
    writeln!(
        w,
        "| server | processes | PSS idle (MiB) | PSS loaded (MiB) | PSS growth (MiB) | RSS loaded (MiB) | sessions made |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|")?;
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
        )?;
    }

    writeln!(w, "\n### Cross-check with `openssl s_time` (ECDSA P-256)\n")?;
    writeln!(
        w,
        "One OpenSSL client, one connection at a time, {} s per row: a different client \
         and a different concurrency, so compare the ratios, not the absolute rates.\n",
        plan.s_time_seconds
    )?;
    table_head(w, "connections/s", &peers)?;
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
                    write!(row, " {theirs:.0} | {:.2}x |", ours / theirs)?
                }
                _ => row.push_str(" — | — |"),
            }
        }
        writeln!(w, "{row}")?;
    }

    if !results.syscalls.is_empty() {
        writeln!(w, "\n### System calls per proxied request (ECDSA P-256)\n")?;
        writeln!(
            w,
            "Every thread of each server under `strace -f -c` for one proxied run (the \
             same load as above; strace slows the servers down, so only the count \
             means something): calls made / requests completed. On loopback a send \
             also runs the receiver's TCP processing, so calls are most of a proxied \
             request's system time.\n"
        )?;
        writeln!(w, "| server | system calls per request |")?;
        writeln!(w, "|---|---:|")?;
        for (kind, calls) in &results.syscalls {
            writeln!(w, "| {} | {calls:.2} |", kind.name())?;
        }
    }

    writeln!(w, "\n### Targets\n")?;
    for line in verdicts(results, plan) {
        writeln!(w, "- {line}")?;
    }
    if !results.failures.is_empty() {
        writeln!(w, "\n### Problems seen during the run\n")?;
        for failure in &results.failures {
            let line: String = failure.replace('\n', " ").chars().take(600).collect();
            writeln!(w, "- {line}")?;
        }
    }
    if !results.notes.is_empty() {
        writeln!(w, "\n### What the servers logged\n")?;
        for note in &results.notes {
            writeln!(w, "- {note}")?;
        }
    }
    Ok(())
}

/// The head of a table of cachet's figures beside each peer's and the
/// ratio: `first` names the row labels.
fn table_head(w: &mut String, first: &str, peers: &[Kind]) -> fmt::Result {
    write!(w, "| {first} | cachet |")?;
    for peer in peers {
        write!(w, " {} | cachet / {} |", peer.name(), peer.name())?;
    }
    write!(w, "\n|---|---:|")?;
    for _ in peers {
        w.push_str("---:|---:|");
    }
    writeln!(w)
}

/// One line per target: met, or short by how much.
pub(crate) fn verdicts(results: &Results, plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    let met = |ok: bool| if ok { "met" } else { "**short**" };
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
                lines.push(format!(
                    "{} {}: cachet / {} = {ratio:.2}x, target {wanted:.1}x: {}",
                    key_type.label(),
                    load.label(),
                    peer.name(),
                    met(ratio >= wanted)
                ));
            }
            let (Some(wanted), Some(ours), Some(theirs)) = (
                cpu_target(load),
                results.cpu_median(key_type, load, Kind::Cachet),
                results
                    .cpu_median(key_type, load, Kind::Nginx)
                    .filter(|t| *t > 0.0),
            ) else {
                continue;
            };
            let ratio = ours / theirs;
            let kernel = results.system_median(key_type, load, Kind::Cachet);
            let tls_alone = results
                .tls_alone
                .iter()
                .find(|(measured, _)| *measured == load)
                .map(|(_, us)| *us);
            let room = kernel
                .filter(|_| ratio > wanted)
                .map(|kernel| kernel_room(ours, kernel, tls_alone, wanted * theirs))
                .unwrap_or_default();
            lines.push(format!(
                "{} server CPU per {} ({}): cachet / nginx = {ratio:.2}x, target at most \
                 {wanted:.1}x: {}{room}",
                key_type.label(),
                load.operation(),
                load.short(),
                met(ratio <= wanted)
            ));
        }
    }
    let behind: Vec<String> = KEY_TYPES
        .into_iter()
        .flat_map(|key_type| Load::ALL.into_iter().map(move |load| (key_type, load)))
        .flat_map(|(key_type, load)| PEERS.into_iter().map(move |peer| (key_type, load, peer)))
        .filter_map(|(key_type, load, peer)| {
            let ours = results.median(key_type, load, Kind::Cachet)?;
            let theirs = results.median(key_type, load, peer).filter(|t| *t > 0.0)?;
            (ours < theirs).then(|| {
                format!(
                    "{} {} vs {}: {:.2}x",
                    key_type.label(),
                    load.label(),
                    peer.name(),
                    ours / theirs
                )
            })
        })
        .collect();
    lines.push(format!(
        "no row below 1.0x against any peer: {}",
        if behind.is_empty() {
            "met".to_owned()
        } else {
            format!("**short** ({})", behind.join("; "))
        }
    ));
    for c in results.cross_node.iter().filter(|c| c.kind == Kind::Cachet) {
        lines.push(format!(
            "cross-node resumption, TLS {}, {}: cachet resumed {} of {} attempts ({}), \
             target 100.0% of at least {}: {}",
            c.tls.as_str(),
            pace_label(c.pace),
            c.resumed,
            c.attempts,
            percent(c.resumed, c.attempts),
            plan.cross_node_attempts,
            met(c.resumed == c.attempts && c.attempts >= plan.cross_node_attempts)
        ));
    }
    for r in results.races.iter().filter(|r| r.kind == Kind::Cachet) {
        lines.push(format!(
            "single use under a race: double resumptions: {} of {}, target 0: {}",
            r.race.counts.double_resumptions,
            r.race.counts.rounds,
            met(r.race.counts.double_resumptions == 0 && r.race.counts.rounds > 0)
        ));
    }
    if results.compared().any(|kind| kind == Kind::Cachet) && !results.cross_node.is_empty() {
        lines.push(format!(
            "pull answered in under 1 ms at p99, one client at a time: {}",
            pulls::verdict(&results.pulls_one_client)
        ));
        lines.push(format!(
            "pull answered in under 1 ms at p99, under the cross-node load: {}",
            pulls::verdict(&results.pulls)
        ));
    }
    lines
}

/// What a CPU target still short leaves to the router's own work: the
/// kernel's part of an operation (its TCP work, which every server needs
/// for the same connections) mostly stays whatever the router does, and so
/// does rustls' side of a handshake (`tls_alone`, measured through memory,
/// when known and below the router's own part), so a target is met by
/// cutting the rest to `allowed` minus those. Said so that a short verdict
/// tells a target within reach of the router's code from one that the
/// kernel and the TLS library alone exceed.
fn kernel_room(ours: f64, kernel: f64, tls_alone: Option<f64>, allowed: f64) -> String {
    let own = ours - kernel;
    let own_allowed = allowed - kernel;
    if own_allowed <= 0.0 {
        return format!(
            " (the kernel's part alone, {kernel:.1} us, is over the {allowed:.1} us the \
             target allows)"
        );
    }
    match tls_alone.filter(|tls| *tls < own) {
        Some(tls) if kernel + tls >= allowed => format!(
            " (the kernel's part, {kernel:.1} us, and rustls' side of the handshake \
             alone, {tls:.1} us through memory, make {:.1} us, over the {allowed:.1} us \
             the target allows: out of the router's reach on this machine)",
            kernel + tls
        ),
        Some(tls) => format!(
            " (with the kernel's part, {kernel:.1} us, and rustls' side of the handshake, \
             {tls:.1} us through memory, as they are: the rest of the router's work, \
             {:.1} us, down to {:.1}, {:.0}% less)",
            own - tls,
            own_allowed - tls,
            100.0 * (1.0 - (own_allowed - tls) / (own - tls))
        ),
        None => format!(
            " (with the kernel's part, {kernel:.1} us, as it is: the router's own \
             {own:.1} us down to {own_allowed:.1}, {:.0}% less)",
            100.0 * (1.0 - own_allowed / own)
        ),
    }
}

/// `part` of `whole` as a percentage with one decimal; never rounded up to
/// 100.0% while one is missing.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "n/a".to_owned();
    }
    let tenths = (part as f64 * 1000.0 / whole as f64).floor();
    format!("{:.1}%", tenths / 10.0)
}

/// A ↳ row under a throughput row: what an operation cost each server, by
/// `cost` (all its CPU, or the kernel's part).
fn cost_row(label: &str, cost: impl Fn(Kind) -> Option<f64>, peers: &[Kind]) -> Option<String> {
    let ours = cost(Kind::Cachet)?;
    let mut row = format!("| {label} | {ours:.1} |");
    for peer in peers {
        match cost(*peer) {
            Some(theirs) if theirs > 0.0 => {
                row.push_str(&format!(" {theirs:.1} | {:.2}x |", ours / theirs));
            }
            Some(_) => row.push_str(" 0 | n/a |"),
            None => row.push_str(" — | — |"),
        }
    }
    Some(row)
}

fn cross_node_section(w: &mut String, results: &Results, plan: &Plan) -> fmt::Result {
    writeln!(
        w,
        "### Cross-node resumption, three nodes behind round-robin\n"
    )?;
    writeln!(
        w,
        "Each node one worker; {c} clients, each connection going to the next node \
         and offering the session or ticket the previous one issued, closed right after \
         the handshake; each run makes {a} resumption attempts (handshakes that offered \
         something) per TLS version. Back to back, a client reconnects the moment its \
         last connection closed, which races the replication of what that connection \
         issued; paced, each client comes back after some 20 ms (still far sooner than \
         a browser's next connection). cachet's three routers share sessions over the \
         encrypted UDP sync: pushed as they are made, and pulled from the peers before \
         the handshake when a client offers one the router does not hold (see the pull \
         figures below). The others are independent instances, which cannot share \
         sessions: back to back a client lands on the node it last used about one time \
         in three, and paced less often, the more so the more the clients take the \
         round-robin in turn (which a busy machine upsets). Server CPU: the three nodes' \
         process trees over the run, per handshake.\n",
        c = plan.connections,
        a = plan.cross_node_attempts,
    )?;
    writeln!(
        w,
        "| nodes | clients reconnect | TLS 1.2 resumed | TLS 1.2 attempts | TLS 1.3 resumed | \
         TLS 1.3 attempts | errors | server CPU per handshake, 1.2 / 1.3 (us) |"
    )?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|")?;
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
            let cpu = |us: Option<f64>| us.map_or_else(|| "—".to_owned(), |us| format!("{us:.0}"));
            writeln!(
                w,
                "| 3 × {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                kind.name(),
                pace_label(pace),
                percent(v12.resumed, v12.attempts),
                v12.attempts,
                percent(v13.resumed, v13.attempts),
                v13.attempts,
                v12.errors + v13.errors,
                cpu(v12.cpu_us),
                cpu(v13.cpu_us)
            )?;
        }
    }
    Ok(())
}

fn race_section(w: &mut String, results: &Results, plan: &Plan) -> fmt::Result {
    if results.races.is_empty() {
        return Ok(());
    }
    writeln!(w, "\n### Single use under a race\n")?;
    writeln!(
        w,
        "The same three nodes of each; {} rounds (`cachet bench --ticket-race`). Each \
         round, a fresh client makes a full TLS 1.3 handshake on one node (round-robin), \
         closes at once and keeps its tickets; then the same ticket is offered to both \
         other nodes at the same instant (connections opened first, the ClientHellos \
         released together behind a barrier). A ticket must resume at most once in a \
         cluster: a round in which both resumed is a double resumption. Independent \
         nodes know only their own tickets and resume none.\n",
        plan.race_rounds
    )?;
    writeln!(
        w,
        "| nodes | rounds | resumed nowhere | resumed once | double resumptions | \
         rounds without a ticket | errors |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|")?;
    for r in &results.races {
        writeln!(
            w,
            "| 3 × {} | {} | {} | {} | {} | {} | {} |",
            r.kind.name(),
            r.race.counts.rounds,
            r.race.counts.resumed_nowhere,
            r.race.counts.resumed_once,
            r.race.counts.double_resumptions,
            r.race.counts.no_ticket,
            r.race.errors
        )?;
    }
    Ok(())
}

fn pull_section(w: &mut String, results: &Results) -> fmt::Result {
    if !results.compared().any(|k| k == Kind::Cachet) || results.cross_node.is_empty() {
        return Ok(());
    }
    writeln!(w, "\n### Pulls in the cachet cluster\n")?;
    if results.pulls.is_empty() {
        writeln!(
            w,
            "No pull figures: this cachet publishes no `sync.pulls` in its stats."
        )?;
        return Ok(());
    }
    writeln!(
        w,
        "Each node's `sync.pulls` stats after the cross-node runs and the race: the \
         sessions and tickets it asked its peers for (a client offered one it did not \
         hold), how that ended, and the pulls it answered for its peers. The wait runs \
         from asking to the answer (or the deadline), as the upper bound of the histogram \
         bucket holding the percentile.\n"
    )?;
    writeln!(
        w,
        "A second, fresh cluster then takes TLS 1.3 resumptions from one client, one \
         connection at a time, round-robin (so nearly every attempt is a pull): the wait \
         a pull costs when the load generator and the other nodes do not saturate this \
         machine's cores.\n"
    )?;
    writeln!(
        w,
        "| run | node | asked | found | not found | timed out | dropped | answered | \
         wait p50 (us) | wait p99 (us) |"
    )?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let runs = [
        ("cross-node load", &results.pulls),
        ("one client", &results.pulls_one_client),
    ];
    for (run, p, i) in runs
        .iter()
        .flat_map(|(run, figures)| figures.iter().enumerate().map(move |(i, p)| (run, p, i)))
    {
        let Pulls {
            asked,
            found,
            not_found,
            timed_out,
            dropped,
            answered,
            wait_p50_us,
            wait_p99_us,
        } = p;
        writeln!(
            w,
            "| {run} | {} | {asked} | {found} | {not_found} | {timed_out} | {dropped} | \
             {answered} | {} | {} |",
            i + 1,
            pulls::wait_cell(p, *wait_p50_us),
            pulls::wait_cell(p, *wait_p99_us),
        )?;
    }
    Ok(())
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
pub(crate) fn check_smoke(results: &Results) -> Result<()> {
    let mut missing = Vec::new();
    for key_type in KEY_TYPES {
        for load in Load::ALL {
            let measured = results
                .throughput
                .iter()
                .find(|t| t.key_type == key_type && t.load == load && t.kind == Kind::Cachet);
            match measured {
                Some(t) if t.cpu_us.len() != t.samples.len() => missing.push(format!(
                    "{} {}: server CPU not measured",
                    key_type.label(),
                    load.label()
                )),
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
    // Also measured, not judged: the full run reports double resumptions.
    match results.races.iter().find(|r| r.kind == Kind::Cachet) {
        Some(r) if r.race.counts.rounds > 0 && r.race.errors == 0 => {}
        Some(r) => missing.push(format!(
            "ticket race: {} rounds raced, {} without a ticket, {} errors",
            r.race.counts.rounds, r.race.counts.no_ticket, r.race.errors
        )),
        None => missing.push("ticket race: not run".to_owned()),
    }
    missing.extend(results.failures.iter().cloned());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "bench smoke run incomplete:\n  {}",
            missing.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use cachet_bench::report::TicketRace;

    use super::*;
    use crate::compare::{load, CrossNode, RaceFigure, Throughput};

    #[test]
    fn a_percentage_is_never_rounded_up_to_all() {
        assert_eq!(percent(9_999, 10_000), "99.9%");
        assert_eq!(percent(10_000, 10_000), "100.0%");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(0, 0), "n/a");
    }

    #[test]
    fn cluster_verdicts() {
        let plan = Plan::full();
        let mut results = Results::default();
        results.servers.push((Kind::Cachet, "cachet".to_owned()));
        for (tls, resumed) in [(Tls::V12, 10_016), (Tls::V13, 10_015)] {
            results.cross_node.push(CrossNode {
                kind: Kind::Cachet,
                tls,
                pace: None,
                ratio: resumed as f64 / 10_016.0,
                attempts: 10_016,
                resumed,
                handshakes: 10_032,
                errors: 0,
                cpu_us: Some(150.0),
            });
        }
        results.races.push(RaceFigure {
            kind: Kind::Cachet,
            race: load::Race {
                counts: TicketRace {
                    rounds: 1000,
                    resumed_once: 998,
                    double_resumptions: 2,
                    ..TicketRace::default()
                },
                errors: 0,
            },
        });
        let lines = verdicts(&results, &plan).join("\n");
        assert!(
            lines.contains("TLS 1.2, back to back: cachet resumed 10016 of 10016 attempts (100.0%), target 100.0% of at least 10000: met"),
            "{lines}"
        );
        assert!(lines.contains("10015 of 10016 attempts (99.9%)"), "{lines}");
        assert!(
            lines.contains("double resumptions: 2 of 1000, target 0: **short**"),
            "{lines}"
        );
        assert!(
            lines.contains("under 1 ms at p99, one client at a time: no pull figures"),
            "{lines}"
        );

        results.pulls = vec![
            Pulls {
                asked: 10,
                wait_p50_us: Some(128),
                wait_p99_us: Some(512),
                ..Pulls::default()
            },
            Pulls::default(),
        ];
        results.pulls_one_client = vec![Pulls {
            asked: 5,
            wait_p50_us: Some(250),
            wait_p99_us: Some(2_500),
            ..Pulls::default()
        }];
        let lines = verdicts(&results, &plan).join("\n");
        assert!(
            lines.contains("under the cross-node load: yes (p99 at most 512 us)"),
            "{lines}"
        );
        assert!(
            lines.contains("one client at a time: no (p99 up to 2500 us)"),
            "{lines}"
        );
        let doc = markdown(&results, &plan).unwrap();
        assert!(
            doc.contains(
                "| 3 × cachet | back to back | 100.0% | 10016 | 99.9% | 10016 | 0 | 150 / 150 |"
            ),
            "{doc}"
        );
        assert!(
            doc.contains("| 3 × cachet | 1000 | 0 | 998 | 2 | 0 | 0 |"),
            "{doc}"
        );
        assert!(
            doc.contains("| cross-node load | 1 | 10 | 0 | 0 | 0 | 0 | 0 | 128 | 512 |")
                && doc.contains("| one client | 1 | 5 | 0 | 0 | 0 | 0 | 0 | 250 | 2500 |"),
            "{doc}"
        );
        assert!(
            doc.contains("| 2 | 0 | 0 | 0 | 0 | 0 | 0 | — | — |"),
            "{doc}"
        );
    }

    /// Resumed TLS 1.2 on cachet and nginx: (rate, CPU, kernel part) each.
    fn resumed_tls12(cachet: (f64, f64, f64), nginx: (f64, f64, f64)) -> Results {
        let mut results = Results::default();
        for (kind, (rate, cpu, system)) in [(Kind::Cachet, cachet), (Kind::Nginx, nginx)] {
            results.servers.push((kind, kind.name().to_owned()));
            results.throughput.push(Throughput {
                key_type: KeyType::EcdsaP256,
                load: Load::Resumed(Tls::V12),
                kind,
                samples: vec![rate],
                cpu_us: vec![cpu],
                system_us: vec![system],
                errors: 0,
                resumption_ratio: 1.0,
            });
        }
        results
    }

    #[test]
    fn each_rate_carries_its_cpu_and_kernel_rows() {
        let results = resumed_tls12((15_000.0, 48.0, 33.0), (14_000.0, 60.0, 30.0));
        let doc = markdown(&results, &Plan::full()).unwrap();
        assert!(
            doc.contains("| resumed TLS 1.2 handshakes/s | 15000 | 14000 | 1.07x |"),
            "{doc}"
        );
        assert!(
            doc.contains("| ↳ server CPU per handshake (us) | 48.0 | 60.0 | 0.80x |"),
            "{doc}"
        );
        assert!(
            doc.contains("| ↳ of it in the kernel (us) | 33.0 | 30.0 | 1.10x |"),
            "{doc}"
        );
    }

    #[test]
    fn a_short_cpu_verdict_says_what_the_kernel_leaves_to_the_router() {
        let verdict = |results: &Results| {
            verdicts(results, &Plan::full())
                .into_iter()
                .find(|line| line.contains("server CPU per handshake"))
                .unwrap()
        };
        let within_reach = resumed_tls12((15_000.0, 48.0, 30.0), (14_000.0, 60.0, 30.0));
        assert_eq!(
            verdict(&within_reach),
            "ECDSA P-256 server CPU per handshake (resumed 1.2): cachet / nginx = 0.80x, \
             target at most 0.6x: **short** (with the kernel's part, 30.0 us, as it is: \
             the router's own 18.0 us down to 6.0, 67% less)"
        );
        let beyond = resumed_tls12((15_000.0, 48.0, 40.0), (14_000.0, 60.0, 30.0));
        assert!(
            verdict(&beyond).ends_with(
                "**short** (the kernel's part alone, 40.0 us, is over the 36.0 us the \
                 target allows)"
            ),
            "{}",
            verdict(&beyond)
        );
        // With rustls' side measured: 30 us of kernel and 5 of TLS leave
        // 1 us of the 36 allowed; 30 and 7 leave none.
        let mut with_tls = resumed_tls12((15_000.0, 48.0, 30.0), (14_000.0, 60.0, 30.0));
        with_tls.tls_alone = vec![(Load::Resumed(Tls::V12), 5.0)];
        assert!(
            verdict(&with_tls).ends_with(
                "(with the kernel's part, 30.0 us, and rustls' side of the handshake, 5.0 us \
                 through memory, as they are: the rest of the router's work, 13.0 us, down \
                 to 1.0, 92% less)"
            ),
            "{}",
            verdict(&with_tls)
        );
        with_tls.tls_alone = vec![
            (Load::Resumed(Tls::V13), 1.0),
            (Load::Resumed(Tls::V12), 7.0),
        ];
        assert!(
            verdict(&with_tls).ends_with(
                "**short** (the kernel's part, 30.0 us, and rustls' side of the handshake \
                 alone, 7.0 us through memory, make 37.0 us, over the 36.0 us the target \
                 allows: out of the router's reach on this machine)"
            ),
            "{}",
            verdict(&with_tls)
        );
        let met = resumed_tls12((15_000.0, 34.0, 30.0), (14_000.0, 60.0, 30.0));
        assert!(
            verdict(&met).ends_with("target at most 0.6x: met"),
            "{}",
            verdict(&met)
        );
    }
}
