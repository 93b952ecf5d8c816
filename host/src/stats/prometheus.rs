//! Prometheus text exposition (format 0.0.4) of the same snapshot.

use super::exposition::{Exposition, PerItem};
use super::{BackendFigures, Snapshot, WorkerFigures};
use crate::metrics::pulls::PullFigures;
use crate::metrics::redis::{Event, RedisFigures};
use crate::shared::peers::PeerFigures;
use crate::sync::inbound::SourceFigures;

/// Renders the snapshot served at `stats-http` `/metrics`.
pub fn render_prometheus(snapshot: &Snapshot) -> String {
    let totals = snapshot.totals();
    let mut out = Exposition::default();

    out.table(&totals);

    if let Some(cache) = &snapshot.cache {
        out.single(
            "cachet_cache_max_items",
            "gauge",
            "Capacity of the session cache.",
            cache.max_items,
        );
        out.single(
            "cachet_cache_items",
            "gauge",
            "Sessions in the cache.",
            cache.items,
        );
        for (name, help, value) in [
            ("hits", "Lookups that found a live session.", cache.hits),
            ("misses", "Lookups that found no live session.", cache.miss),
            ("sets", "Sessions stored.", cache.sets),
            ("deletes", "Sessions removed on request.", cache.deletes),
            ("expired", "Sessions that timed out.", cache.expired),
        ] {
            out.single(
                &format!("cachet_cache_{name}_total"),
                "counter",
                help,
                value,
            );
        }
        out.single(
            "cachet_cache_evictions_total",
            "counter",
            "Sessions pushed out to make room.",
            cache.evictions,
        );
        out.counter_by(
            "cachet_cache_refused_total",
            "Sessions the cache refused to store, by reason.",
            "reason",
            [
                ("too_large", cache.refused_too_large),
                ("full", cache.refused_full),
            ],
        );
    }

    let worker_families: [PerItem<WorkerFigures>; 2] = [
        (
            "cachet_worker_requests_total",
            "counter",
            "HTTP requests per router process.",
            |worker| worker.metrics.get(crate::metrics::Metric::Requests),
        ),
        (
            "cachet_worker_restarts_total",
            "counter",
            "Times each router process was replaced.",
            |worker| worker.restarts,
        ),
    ];
    out.per_item(&worker_families, &snapshot.workers, "worker", |worker| {
        worker.id.to_string()
    });
    let backend_families: [PerItem<BackendFigures>; 4] = [
        (
            "cachet_backend_requests_total",
            "counter",
            "Requests sent to each backend.",
            |backend| backend.requests,
        ),
        (
            "cachet_backend_failures_total",
            "counter",
            "Connection failures per backend.",
            |backend| backend.failures,
        ),
        (
            "cachet_backend_up",
            "gauge",
            "1 when the backend is in rotation, 0 while it backs off.",
            |backend| u64::from(!backend.down),
        ),
        (
            "cachet_backend_idle_connections",
            "gauge",
            "Keep-alive connections to each backend parked for the next request.",
            |backend| backend.idle,
        ),
    ];
    out.per_item(
        &backend_families,
        &snapshot.backends,
        "backend",
        |backend| backend.name.clone(),
    );
    if let Some(sync) = &snapshot.sync {
        sync_families(&mut out, sync);
        pull_families(&mut out, sync, &totals.pulls);
    }
    if snapshot.redis.is_some() {
        redis_families(&mut out, &totals.redis);
    }
    out.text
}

fn sync_families(out: &mut Exposition, sync: &super::SyncFigures) {
    key_families(out, sync);
    if let Some(tickets) = &sync.inbound.ticket_keys {
        ticket_key_families(out, tickets);
    }
    let n = &sync.inbound.node;
    out.single(
        "cachet_sync_received_datagrams_total",
        "counter",
        "Sync datagrams accepted from peers.",
        n.received_datagrams,
    );
    out.counter_by(
        "cachet_sync_applied_total",
        "Replicated changes applied to the cache.",
        "op",
        [("set", n.applied_sets), ("delete", n.applied_deletes)],
    );
    out.counter_by(
        "cachet_sync_rejected_total",
        "Sync datagrams rejected, by reason.",
        "reason",
        n.rejected
            .iter()
            .map(|(reason, count)| (reason.as_str(), count)),
    );
    out.counter_by(
        "cachet_sync_challenges_total",
        "Challenges to peers' senders sent, and peers' challenges answered.",
        "op",
        [
            ("sent", n.challenges_sent),
            ("answered", n.challenges_answered),
        ],
    );
    out.single(
        "cachet_sync_senders_verified_total",
        "counter",
        "Peers' senders admitted by a vouch under a fresh challenge.",
        n.senders_verified,
    );
    out.single(
        "cachet_sync_stale_vouches_total",
        "counter",
        "Vouches ignored: under a challenge not ours, or too old (replayed).",
        n.stale_vouches,
    );
    let sources = &sync.inbound.received_from;
    let ips: Vec<String> = sources.iter().map(|source| source.ip.to_string()).collect();
    let by_ip = |count: fn(&SourceFigures) -> u64| {
        ips.iter()
            .map(String::as_str)
            .zip(sources.iter().map(count))
    };
    out.counter_by(
        "cachet_sync_received_from_datagrams_total",
        "Sync datagrams received, by source IP.",
        "ip",
        by_ip(|source| source.datagrams),
    );
    out.counter_by(
        "cachet_sync_received_from_bytes_total",
        "Sync bytes received, by source IP.",
        "ip",
        by_ip(|source| source.bytes),
    );
    let peer_families: [PerItem<PeerFigures>; 10] = [
        (
            "cachet_sync_peer_sent_datagrams_total",
            "counter",
            "Datagrams sent to each peer.",
            |p| p.sent_datagrams,
        ),
        (
            "cachet_sync_peer_sent_bytes_total",
            "counter",
            "Bytes sent to each peer.",
            |p| p.sent_bytes,
        ),
        (
            "cachet_sync_peer_send_errors_total",
            "counter",
            "Sends to each peer that failed.",
            |p| p.send_errors,
        ),
        (
            "cachet_sync_peer_received_datagrams_total",
            "counter",
            "Datagrams received from each peer.",
            |p| p.received_datagrams,
        ),
        (
            "cachet_sync_peer_received_bytes_total",
            "counter",
            "Bytes received from each peer.",
            |p| p.received_bytes,
        ),
        (
            "cachet_sync_peer_pulls_sent_total",
            "counter",
            "Pulls sent to each peer.",
            |p| p.pulls_sent,
        ),
        (
            "cachet_sync_peer_pull_answers_total",
            "counter",
            "Answers to pulls received from each peer.",
            |p| p.pull_answers,
        ),
        (
            "cachet_sync_peer_pull_timeouts_total",
            "counter",
            "Pulls whose deadline each peer let pass.",
            |p| p.pull_timeouts,
        ),
        (
            "cachet_sync_peer_pulls_skipped_total",
            "counter",
            "Pulls not sent to each peer: silent, or too many in flight to it.",
            |p| p.pulls_skipped,
        ),
        (
            "cachet_sync_peer_silent",
            "gauge",
            "1 while pulls skip the peer (it let a deadline pass and was not heard from since).",
            |p| u64::from(p.silent),
        ),
    ];
    out.per_item(&peer_families, &sync.peers, "peer", |peer| {
        peer.addr.to_string()
    });
}

/// Pulls made and answered, and the wait as a histogram.
/// The cluster keys, by fingerprint: what each sealed and opened, and how
/// many processes seal or only open with it now.
fn key_families(out: &mut Exposition, sync: &super::SyncFigures) {
    out.family(
        "cachet_sync_key_datagrams_total",
        "counter",
        "Sync datagrams sealed and opened (authenticated), by cluster key fingerprint.",
    );
    for key in &sync.keys {
        let fp = key.fingerprint.to_string();
        for (op, count) in [("sealed", key.sealed), ("opened", key.opened)] {
            out.sample(
                "cachet_sync_key_datagrams_total",
                &[("key", &fp), ("op", op)],
                count,
            );
        }
    }
    out.family(
        "cachet_sync_key_processes",
        "gauge",
        "Processes holding a cluster key, by fingerprint and role (sealing: the first of \
         their keys; opening: another).",
    );
    let mut held: Vec<(String, &str, u64)> = Vec::new();
    for ring in &sync.keyrings {
        for (i, fp) in ring.keys.iter().enumerate() {
            let role = if i == 0 { "sealing" } else { "opening" };
            let fp = fp.to_string();
            match held.iter_mut().find(|(f, r, _)| *f == fp && *r == role) {
                Some((_, _, n)) => *n += ring.processes,
                None => held.push((fp, role, ring.processes)),
            }
        }
    }
    for (fp, role, processes) in held {
        out.sample(
            "cachet_sync_key_processes",
            &[("key", &fp), ("role", role)],
            processes,
        );
    }
}

/// The ticket keys' epoch: the period, the sealing key's fingerprint as
/// a label of an info-style gauge, and the keys held.
fn ticket_key_families(out: &mut Exposition, tickets: &crate::sync::ticket_keys::TicketKeyFigures) {
    out.single(
        "cachet_ticket_key_period",
        "gauge",
        "The current ticket key period (Unix time / ssl-session-ticket-rotate).",
        tickets.period,
    );
    out.family(
        "cachet_ticket_key_sealing",
        "gauge",
        "1 for the key (by fingerprint) this period's tickets are sealed under.",
    );
    if let Some(id) = tickets.sealing {
        out.sample(
            "cachet_ticket_key_sealing",
            &[("key", &id.fingerprint().to_string())],
            1,
        );
    }
    out.single(
        "cachet_ticket_keys",
        "gauge",
        "Ticket keys held (proposals for the previous, current and next periods).",
        tickets.keys.len() as u64,
    );
    out.counter_by(
        "cachet_ticket_keys_total",
        "Ticket keys this router proposed, and keys from peers it took.",
        "source",
        [
            ("proposed", tickets.proposed),
            ("received", tickets.received),
        ],
    );
    out.single(
        "cachet_ticket_key_rotations_total",
        "counter",
        "Times the sealing ticket key changed.",
        tickets.rotations,
    );
}

fn pull_families(out: &mut Exposition, sync: &super::SyncFigures, made: &PullFigures) {
    out.counter_by(
        "cachet_sync_pulls_total",
        "Sessions offered by clients and missing here, pulled from the peers, by outcome \
         (dropped: not asked, at the bound on pulls in flight or with no peer answering).",
        "outcome",
        made.outcomes(),
    );
    let n = &sync.inbound.node;
    out.counter_by(
        "cachet_sync_pull_requests_total",
        "Peers' pulls this router answered, by answer (dropped: left unanswered).",
        "answer",
        [
            ("found", n.pull_requests_found),
            ("none", n.pull_requests_none),
            ("dropped", n.pull_answers_dropped),
        ],
    );
    out.histogram(
        "cachet_sync_pull_wait_seconds",
        "How long handshakes waited for a pull to end.",
        &made.wait,
    );
}

/// The Redis tier: commands by outcome, failures by kind, the link and
/// the latency.
fn redis_families(out: &mut Exposition, redis: &RedisFigures) {
    out.counter_by(
        "cachet_redis_commands_total",
        "Commands sent to Redis for handshakes, by command and outcome (get/take: hit or \
         miss; set: sent).",
        "command",
        [
            ("get", redis.get(Event::Get)),
            ("take", redis.get(Event::Take)),
            ("set", redis.get(Event::Set)),
        ],
    );
    out.counter_by(
        "cachet_redis_hits_total",
        "Lookups in Redis that found the session, by command (a take resumes the ticket here \
         and nowhere else).",
        "command",
        [
            ("get", redis.get(Event::GetHit)),
            ("take", redis.get(Event::TakeHit)),
        ],
    );
    out.counter_by(
        "cachet_redis_errors_total",
        "Redis commands that failed, by kind; the handshake went on without Redis.",
        "kind",
        Event::ALL
            .into_iter()
            .filter_map(|event| Some((event.error_kind()?, redis.get(event)))),
    );
    out.single(
        "cachet_redis_skipped_total",
        "counter",
        "Lookups and writes not tried because Redis was down (the local cache served).",
        redis.get(Event::SkippedDown),
    );
    out.single(
        "cachet_redis_connects_total",
        "counter",
        "Times a process's link to Redis came up (at start and after each outage).",
        redis.get(Event::Connected),
    );
    out.single(
        "cachet_redis_connected_processes",
        "gauge",
        "Worker processes whose link to Redis is up.",
        redis.connected,
    );
    out.histogram(
        "cachet_redis_command_seconds",
        "How long Redis commands took, answered or timed out.",
        &redis.latency,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metric, MetricsSnapshot};
    use crate::stats::CacheFigures;

    #[test]
    fn families_and_labels() {
        let cache = CacheFigures {
            hits: 5,
            ..CacheFigures::default()
        };
        let metrics = MetricsSnapshot::default()
            .with(Metric::ProxyHeadersClient, 3)
            .with(Metric::ProxyHeadersLocal, 2)
            .with(Metric::ProxyTimeouts, 1)
            .with(Metric::OfferedPsks, 3)
            .with(Metric::ClientHelloMalformed, 4);
        let snapshot = Snapshot {
            backends: vec![BackendFigures {
                name: "a\"b".into(),
                protocol: "uwsgi",
                requests: 2,
                failures: 0,
                down: false,
                idle: 2,
            }],
            ..Snapshot::of_one_process(cache, metrics)
        };
        let text = render_prometheus(&snapshot);
        assert!(text.contains("cachet_cache_hits_total 5\n"), "{text}");
        assert!(text.contains("cachet_tls_handshakes_total{version=\"1.3\",kind=\"resumed\"} 0\n"));
        assert!(text.contains("cachet_backend_requests_total{backend=\"a\\\"b\"} 2\n"));
        assert!(text.contains("cachet_backend_idle_connections{backend=\"a\\\"b\"} 2\n"));
        assert_eq!(text.matches("# TYPE cachet_cache_refused_total").count(), 1);
        for line in [
            "cachet_proxy_protocol_headers_total{source=\"client\"} 3\n",
            "cachet_proxy_protocol_headers_total{source=\"local\"} 2\n",
            "cachet_proxy_protocol_rejected_total{reason=\"timeout\"} 1\n",
            "cachet_proxy_protocol_rejected_total{reason=\"missing\"} 0\n",
            "cachet_tls_resumption_offered_total{kind=\"tls13_psk\"} 3\n",
            "cachet_tls_resumption_offered_total{kind=\"tls12_session_id\"} 0\n",
            "cachet_tls_client_hello_rejected_total{reason=\"malformed\"} 4\n",
            "cachet_tls_client_hello_rejected_total{reason=\"oversized\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
