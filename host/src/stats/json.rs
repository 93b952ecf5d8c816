//! The JSON document: uWSGI 2.0's shape first, cachet's additions after.

use serde_json::{json, Value};

use super::{CacheFigures, Snapshot};
use crate::metrics::pulls::PullFigures;
use crate::metrics::redis::RedisFigures;
use crate::metrics::Metric;
use crate::sync::ticket_keys::TicketKeyFigures;

/// Name of the one cache, as uWSGI names its default cache.
const CACHE_NAME: &str = "default";

/// Renders the stats document served on `stats` and at `stats-http` `/`.
pub fn render_json(snapshot: &Snapshot) -> String {
    let totals = snapshot.totals();
    let mut document = json!({
        "version": snapshot.version,
        "pid": snapshot.pid,
        "started_at": snapshot.started_at,
        "caches": snapshot.cache.iter().map(uwsgi_cache).collect::<Vec<_>>(),
        "sessions": sessions(snapshot),
        "workers": snapshot.workers.iter().map(|worker| json!({
            "id": worker.id,
            "pid": worker.pid,
            "requests": worker.metrics.get(Metric::Requests),
            "handshakes": worker.metrics.handshakes(),
            "connections": worker.metrics.get(Metric::Connections),
            "open_connections": worker.metrics.get(Metric::OpenConnections),
            "restarts": worker.restarts,
        })).collect::<Vec<_>>(),
        "backends": snapshot.backends.iter().map(|backend| json!({
            "name": backend.name,
            "protocol": backend.protocol,
            "requests": backend.requests,
            "failures": backend.failures,
            "down": backend.down,
            "idle": backend.idle,
        })).collect::<Vec<_>>(),
        "sync": sync(snapshot),
    });
    for (line, count) in totals.lines() {
        if let Some(path) = line.json {
            let place = path
                .split('.')
                .fold(&mut document, |value, key| &mut value[key]);
            *place = json!(count);
        }
    }
    document["proxy_protocol"]["headers"] = json!(totals.proxy_headers());
    if let Some(target) = &snapshot.redis {
        document["redis"] = redis(target, &totals.redis);
    }
    // The seed document's single `cache` object, for tools written against it.
    if let Some(cache) = &snapshot.cache {
        document["cache"] = json!({
            "max_items": cache.max_items,
            "blocksize": cache.blocksize,
            "items": cache.items,
            "hits": cache.hits,
            "miss": cache.miss,
            "full": cache.full,
        });
    }
    let mut text = serde_json::to_string_pretty(&document).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// The Redis tier: the target, how many processes are connected, every
/// event counted, and the command latency.
fn redis(target: &str, figures: &RedisFigures) -> Value {
    let mut object = json!({
        "target": target,
        "connected": figures.connected,
        "latency_p50_us": figures.latency.quantile_us(0.5),
        "latency_p99_us": figures.latency.quantile_us(0.99),
        "latency_sum_us": figures.latency.sum_us,
        "latency_buckets": figures.latency.json_buckets(),
    });
    for (event, count) in figures.events() {
        object[event.name()] = json!(count);
    }
    object
}

fn uwsgi_cache(cache: &CacheFigures) -> Value {
    json!({
        "name": CACHE_NAME,
        "hash": "siphash",
        "hashsize": cache.max_items,
        "keysize": cache.keysize,
        "max_items": cache.max_items,
        "blocks": cache.blocks,
        "blocksize": cache.blocksize,
        "items": cache.items,
        "hits": cache.hits,
        "miss": cache.miss,
        "full": cache.full,
        "last_modified_at": cache.last_modified_at,
    })
}

fn sync(snapshot: &Snapshot) -> Value {
    let Some(sync) = &snapshot.sync else {
        return json!({ "enabled": false });
    };
    let n = &sync.inbound.node;
    let mut object = json!({
        "enabled": true,
        "sender": format!("{:016x}", sync.inbound.sender),
        "received_datagrams": n.received_datagrams,
        "received_bytes": n.received_bytes,
        "applied_sets": n.applied_sets,
        "applied_deletes": n.applied_deletes,
        "duplicate_records": n.duplicate_records,
        "stale_records": n.stale_records,
        "tombstoned_sets": n.tombstoned_sets,
        "expired_sets": n.expired_sets,
        "refused_sets": n.refused_sets,
        "control_records": n.control_records,
        "challenges_sent": n.challenges_sent,
        "challenges_answered": n.challenges_answered,
        "senders_verified": n.senders_verified,
        "stale_vouches": n.stale_vouches,
        "rejected": n.rejected.total(),
        "skipped": snapshot.totals().get(Metric::SyncSkipped),
        "bootstrap_entries_sent": sync.inbound.bootstrap_entries_sent,
        "bootstrap_requests_answered": sync.inbound.bootstrap_requests_answered,
        "bootstrap_entries_received": sync.inbound.bootstrap_entries_received,
        "received_from": sync.inbound.received_from.iter().map(|s| json!({
            "ip": s.ip.to_string(),
            "datagrams": s.datagrams,
            "bytes": s.bytes,
        })).collect::<Vec<_>>(),
        "peers": sync.peers.iter().map(|p| json!({
            "addr": p.addr.to_string(),
            "sent_datagrams": p.sent_datagrams,
            "sent_bytes": p.sent_bytes,
            "send_errors": p.send_errors,
            "received_datagrams": p.received_datagrams,
            "received_bytes": p.received_bytes,
            "pulls_sent": p.pulls_sent,
            "pull_answers": p.pull_answers,
            "pull_timeouts": p.pull_timeouts,
            "pulls_skipped": p.pulls_skipped,
            "silent": p.silent,
        })).collect::<Vec<_>>(),
        "pulls": pulls(&snapshot.totals().pulls, n),
        // Fingerprints only, never a key (see `cachet_core::wire::Fingerprint`).
        "sealing_key": sync.keyrings.first().and_then(|ring| ring.keys.first()).map(|fp| fp.to_string()),
        "keyrings": sync.keyrings.iter().map(|ring| json!({
            "keys": ring.keys.iter().map(|fp| fp.to_string()).collect::<Vec<_>>(),
            "processes": ring.processes,
        })).collect::<Vec<_>>(),
        "keys": sync.keys.iter().map(|key| json!({
            "fingerprint": key.fingerprint.to_string(),
            "sealed": key.sealed,
            "opened": key.opened,
        })).collect::<Vec<_>>(),
        "ticket_keys": sync.inbound.ticket_keys.as_ref().map(ticket_keys),
    });
    for (reason, count) in n.rejected.iter() {
        object[format!("rejected_{reason}")] = json!(count);
    }
    object
}

/// The ticket keys' epoch: periods and key ids (public: every ticket
/// carries its key's id), never a key.
fn ticket_keys(figures: &TicketKeyFigures) -> Value {
    json!({
        "rotate_s": figures.rotate_secs,
        "period": figures.period,
        "sealing": figures.sealing.map(|id| id.fingerprint().to_string()),
        "keys": figures.keys.iter().map(|(period, id)| json!({
            "period": period,
            "fingerprint": id.fingerprint().to_string(),
        })).collect::<Vec<_>>(),
        "proposed": figures.proposed,
        "received": figures.received,
        "rotations": figures.rotations,
        "too_early": figures.too_early,
        "ready": figures.ready,
    })
}

/// The pulls this router's processes made, and those it answered.
fn pulls(made: &PullFigures, node: &cachet_core::sync::SyncCounters) -> Value {
    let mut object = json!({
        "asked": made.asked,
        "answered": node.pull_requests_found + node.pull_requests_none,
        "answered_found": node.pull_requests_found,
        "answered_none": node.pull_requests_none,
        "answers_dropped": node.pull_answers_dropped,
        "wait_p50_us": made.wait.quantile_us(0.5),
        "wait_p99_us": made.wait.quantile_us(0.99),
        "wait_sum_us": made.wait.sum_us,
        "wait_buckets": made.wait.json_buckets(),
    });
    for (outcome, count) in made.outcomes() {
        object[outcome] = json!(count);
    }
    object
}

fn sessions(snapshot: &Snapshot) -> Value {
    let storage = if snapshot.sessions_in_cache {
        "cache"
    } else {
        "rustls-memory"
    };
    match (&snapshot.cache, snapshot.sessions_in_cache) {
        (Some(cache), true) => json!({
            "storage": storage,
            "sets": cache.sets,
            "deletes": cache.deletes,
            "evictions": cache.evictions,
            "expired": cache.expired,
            "refused": { "too_large": cache.refused_too_large, "full": cache.refused_full },
        }),
        _ => json!({ "storage": storage }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsSnapshot;

    #[test]
    fn document_has_uwsgi_and_cachet_fields() {
        let cache = CacheFigures {
            max_items: 10,
            hits: 3,
            ..CacheFigures::default()
        };
        let metrics = MetricsSnapshot::default()
            .with(Metric::Tls13Resumed, 2)
            .with(Metric::Tls12Full, 1)
            .with(Metric::ProxyHeadersClient, 3)
            .with(Metric::ProxyHeadersLocal, 1)
            .with(Metric::ProxyMalformed, 2)
            .with(Metric::OfferedSessionIds, 5)
            .with(Metric::OfferedPsks, 6)
            .with(Metric::ClientHelloOversized, 7);
        let snapshot = Snapshot::of_one_process(cache, metrics);
        let value: Value = serde_json::from_str(&render_json(&snapshot)).unwrap();
        assert_eq!(value["caches"][0]["hits"], 3);
        assert_eq!(value["caches"][0]["items"], 0);
        assert_eq!(value["cache"]["max_items"], 10);
        assert_eq!(value["tls"]["handshakes"]["tls13"]["resumed"], 2);
        assert_eq!(value["workers"][0]["handshakes"], 3);
        assert_eq!(value["sessions"]["refused"]["too_large"], 0);
        assert!(value["sync"].is_object());
        assert_eq!(value["proxy_protocol"]["headers"], 4);
        assert_eq!(value["proxy_protocol"]["local"], 1);
        assert_eq!(value["proxy_protocol"]["rejected"]["malformed"], 2);
        assert_eq!(value["proxy_protocol"]["rejected"]["missing"], 0);
        assert_eq!(value["proxy_protocol"]["rejected"]["timeout"], 0);
        assert_eq!(value["tls"]["offered"]["tls12_session_id"], 5);
        assert_eq!(value["tls"]["offered"]["tls13_psk"], 6);
        assert_eq!(value["tls"]["client_hello_rejected"]["oversized"], 7);
        assert_eq!(value["tls"]["client_hello_rejected"]["malformed"], 0);
    }
}
