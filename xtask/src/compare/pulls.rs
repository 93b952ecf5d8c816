//! What a cachet cluster's nodes pulled from each other: sessions a client
//! offered that the node did not hold, asked of its peers before the
//! handshake, and the pulls it answered for them, from the `sync.pulls`
//! object of each node's stats document.

use serde_json::Value;

use anyhow::{anyhow, Context, Result};

/// One node's pull counters. The waits are from asking to the answer (or
/// the deadline), each the upper bound of the histogram bucket holding
/// the percentile: `None` without pulls, or beyond the last bucket's
/// bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pulls {
    pub asked: u64,
    pub found: u64,
    pub not_found: u64,
    pub timed_out: u64,
    pub dropped: u64,
    /// Pulls this node answered for its peers.
    pub answered: u64,
    pub wait_p50_us: Option<u64>,
    pub wait_p99_us: Option<u64>,
}

/// The answer the target asks for: a pull answered within 1 ms at p99.
pub(crate) const WAIT_P99_TARGET_US: u64 = 1_000;

/// A node's pull counters from its stats document: `None` when it has no
/// `sync.pulls` (a router from before pulls), an error when the object is
/// there but lacks a counter.
pub(crate) fn from_stats(stats: &Value) -> Result<Option<Pulls>> {
    let Some(pulls) = stats.get("sync").and_then(|sync| sync.get("pulls")) else {
        return Ok(None);
    };
    let count = |name: &str| {
        pulls
            .get(name)
            .and_then(Value::as_u64)
            .with_context(|| format!("sync.pulls has no count `{name}`: {pulls}"))
    };
    // A percentile is null when there is none to tell.
    let wait = |name: &str| match pulls.get(name) {
        Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .with_context(|| format!("sync.pulls `{name}` is not a count: {value}")),
        None => Err(anyhow!("sync.pulls has no `{name}`: {pulls}")),
    };
    Ok(Some(Pulls {
        asked: count("asked")?,
        found: count("found")?,
        not_found: count("not_found")?,
        timed_out: count("timed_out")?,
        dropped: count("dropped")?,
        answered: count("answered")?,
        wait_p50_us: wait("wait_p50_us")?,
        wait_p99_us: wait("wait_p99_us")?,
    }))
}

/// The slowest p99 wait over the nodes that asked anything: `None` when
/// none did (no wait was measured), `u64::MAX` when one lies beyond the
/// histogram's last bound.
pub(crate) fn worst_p99_us(nodes: &[Pulls]) -> Option<u64> {
    nodes
        .iter()
        .filter(|pulls| pulls.asked > 0)
        .map(|pulls| pulls.wait_p99_us.unwrap_or(u64::MAX))
        .max()
}

/// The verdict on the target, with the figure it rests on. A bucket's
/// upper bound is all a percentile says, so a bucket up to 1024 us does
/// not show a wait under 1 ms.
pub(crate) fn verdict(nodes: &[Pulls]) -> String {
    match worst_p99_us(nodes) {
        Some(p99) if p99 <= WAIT_P99_TARGET_US => format!("yes (p99 at most {p99} us)"),
        Some(u64::MAX) => "no (p99 beyond the wait histogram's last bound)".to_owned(),
        Some(p99) => format!("no (p99 up to {p99} us)"),
        None if nodes.is_empty() => "no pull figures".to_owned(),
        None => "no pull was asked".to_owned(),
    }
}

/// A percentile for a table: `—` without pulls, `beyond` past the last
/// bound.
pub(crate) fn wait_cell(pulls: &Pulls, wait: Option<u64>) -> String {
    match (wait, pulls.asked) {
        (Some(us), _) => us.to_string(),
        (None, 0) => "—".to_owned(),
        (None, _) => "beyond".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(asked: u64, p99: Option<u64>) -> Pulls {
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
            "answered": 98, "answered_found": 90, "answered_none": 8, "answers_dropped": 0,
            "wait_p50_us": 128, "wait_p99_us": 512, "wait_sum_us": 20000,
            "wait_buckets": [{"le_us": 64, "count": 3}]}}});
        assert_eq!(
            from_stats(&stats).unwrap(),
            Some(Pulls {
                asked: 120,
                found: 117,
                not_found: 2,
                timed_out: 1,
                dropped: 0,
                answered: 98,
                wait_p50_us: Some(128),
                wait_p99_us: Some(512),
            })
        );
        // No pull yet: no percentile.
        let stats = json!({"sync": {"pulls": {
            "asked": 0, "found": 0, "not_found": 0, "timed_out": 0, "dropped": 0,
            "answered": 4, "wait_p50_us": null, "wait_p99_us": null}}});
        let pulls = from_stats(&stats).unwrap().unwrap();
        assert_eq!((pulls.wait_p50_us, pulls.wait_p99_us), (None, None));
        assert_eq!(wait_cell(&pulls, pulls.wait_p99_us), "—");
        assert_eq!(wait_cell(&node(3, None), None), "beyond");
    }

    #[test]
    fn an_older_router_has_none_and_a_torn_object_is_named() {
        assert_eq!(
            from_stats(&json!({"sync": {"enabled": true}})).unwrap(),
            None
        );
        assert_eq!(
            from_stats(&json!({"sync": {"enabled": false}})).unwrap(),
            None
        );
        assert_eq!(from_stats(&json!({})).unwrap(), None);
        let error = from_stats(&json!({"sync": {"pulls": {"asked": 1}}}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`found`"), "{error}");
        let error = from_stats(&json!({"sync": {"pulls": {"asked": -1}}}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`asked`"), "{error}");
        let counts = json!({"asked": 1, "found": 1, "not_found": 0, "timed_out": 0,
                            "dropped": 0, "answered": 0, "wait_p50_us": "fast"});
        let error = from_stats(&json!({"sync": {"pulls": counts}}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`wait_p50_us` is not a count"), "{error}");
    }

    #[test]
    fn the_worst_p99_counts_nodes_that_asked() {
        let nodes = [node(5, Some(256)), node(9, Some(512)), node(0, None)];
        assert_eq!(worst_p99_us(&nodes), Some(512));
        assert_eq!(verdict(&nodes), "yes (p99 at most 512 us)");
        let nodes = [node(5, Some(256)), node(9, Some(1024))];
        assert_eq!(verdict(&nodes), "no (p99 up to 1024 us)");
        let nodes = [node(5, Some(256)), node(1, None)];
        assert_eq!(worst_p99_us(&nodes), Some(u64::MAX));
        assert!(verdict(&nodes).starts_with("no (p99 beyond"));
        assert_eq!(worst_p99_us(&[node(0, None), node(0, None)]), None);
        assert_eq!(verdict(&[node(0, None)]), "no pull was asked");
        assert_eq!(verdict(&[]), "no pull figures");
    }
}
