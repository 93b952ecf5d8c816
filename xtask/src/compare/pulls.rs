//! What a cachet cluster's nodes pulled from each other: sessions a client
//! offered that the node did not hold, asked of its peers before the
//! handshake, and the pulls it answered for them, from the `sync.pulls`
//! object of each node's stats document.

use serde_json::Value;

/// One node's pull counters. The waits are from asking to the answer (or
/// the deadline), each the upper bound of the histogram bucket holding
/// the percentile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pulls {
    pub asked: u64,
    pub found: u64,
    pub not_found: u64,
    pub timed_out: u64,
    pub dropped: u64,
    /// Pulls this node answered for its peers.
    pub answered: u64,
    pub wait_p50_us: u64,
    pub wait_p99_us: u64,
}

/// The answer the target asks for: a pull answered within 1 ms at p99.
pub(crate) const WAIT_P99_TARGET_US: u64 = 1_000;

/// A node's pull counters from its stats document: `None` when it has no
/// `sync.pulls` (a router from before pulls), an error when the object is
/// there but lacks a counter.
pub(crate) fn from_stats(stats: &Value) -> Result<Option<Pulls>, String> {
    let Some(pulls) = stats.get("sync").and_then(|sync| sync.get("pulls")) else {
        return Ok(None);
    };
    let field = |name: &str| {
        pulls
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("sync.pulls has no count `{name}`: {pulls}"))
    };
    Ok(Some(Pulls {
        asked: field("asked")?,
        found: field("found")?,
        not_found: field("not_found")?,
        timed_out: field("timed_out")?,
        dropped: field("dropped")?,
        answered: field("answered")?,
        wait_p50_us: field("wait_p50_us")?,
        wait_p99_us: field("wait_p99_us")?,
    }))
}

/// The slowest p99 wait over the nodes that asked anything; `None` when
/// none did (no wait was measured).
pub(crate) fn worst_p99_us(nodes: &[Pulls]) -> Option<u64> {
    nodes
        .iter()
        .filter(|pulls| pulls.asked > 0)
        .map(|pulls| pulls.wait_p99_us)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(asked: u64, p99: u64) -> Pulls {
        Pulls {
            asked,
            wait_p99_us: p99,
            ..Pulls::default()
        }
    }

    #[test]
    fn reads_the_pull_counters() {
        let stats = json!({"sync": {"enabled": true, "pulls": {
            "asked": 120, "found": 117, "not_found": 2, "timed_out": 1, "dropped": 0,
            "answered": 98, "wait_p50_us": 128, "wait_p99_us": 512, "per_peer": []}}});
        assert_eq!(
            from_stats(&stats),
            Ok(Some(Pulls {
                asked: 120,
                found: 117,
                not_found: 2,
                timed_out: 1,
                dropped: 0,
                answered: 98,
                wait_p50_us: 128,
                wait_p99_us: 512,
            }))
        );
    }

    #[test]
    fn an_older_router_has_none_and_a_torn_object_is_named() {
        assert_eq!(from_stats(&json!({"sync": {"enabled": true}})), Ok(None));
        assert_eq!(from_stats(&json!({"sync": {"enabled": false}})), Ok(None));
        assert_eq!(from_stats(&json!({})), Ok(None));
        let error = from_stats(&json!({"sync": {"pulls": {"asked": 1}}})).unwrap_err();
        assert!(error.contains("`found`"), "{error}");
        let error = from_stats(&json!({"sync": {"pulls": {"asked": -1}}})).unwrap_err();
        assert!(error.contains("`asked`"), "{error}");
    }

    #[test]
    fn the_worst_p99_counts_nodes_that_asked() {
        assert_eq!(
            worst_p99_us(&[node(5, 300), node(9, 900), node(0, 50_000)]),
            Some(900)
        );
        assert_eq!(worst_p99_us(&[node(0, 0), node(0, 0)]), None);
        assert_eq!(worst_p99_us(&[]), None);
    }
}
