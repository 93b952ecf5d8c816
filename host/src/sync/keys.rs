//! The cluster keys each process seals and opens with, how a SIGHUP
//! reaches every sync node, and the keys' figures across processes.
//!
//! Every process reads the key file itself (at start, and on SIGHUP: the
//! master forwards the signal to its workers), so no key ever travels
//! between processes or lives in the shared region. A process holds its
//! ring in one [`Keys`], a `tokio::sync::watch` that every sync task of the
//! process follows ([`KeyFollower`]): the task switches its node at the
//! next turn of its loop, keeping sender id and sequence numbers.
//!
//! What every process holds and what each key did lives in the shared
//! [`KeyTable`], for stats: by fingerprint, never by key.

use std::sync::Arc;

use cachet_core::wire::{Fingerprint, Keyring};
use tokio::sync::watch;

use super::RouterNode;
use crate::config::key_file::ClusterKeys;
use crate::shared::key_table::KeyTable;

/// One process's cluster keys: the ring its sync nodes follow.
#[derive(Debug)]
pub struct Keys {
    ring: watch::Sender<Keyring>,
    table: &'static KeyTable,
    process: usize,
}

impl Keys {
    /// The keys of process slot `process`, to be counted in `table`.
    pub fn new(keys: &ClusterKeys, table: &'static KeyTable, process: usize) -> Arc<Keys> {
        let ring = keys.keyring();
        table.set_ring(process, &ring);
        Arc::new(Keys {
            ring: watch::Sender::new(ring),
            table,
            process,
        })
    }

    /// Switches every sync node of the process to `keys`; returns the
    /// sealing key's fingerprint. Nodes switch at their next turn.
    pub fn replace(&self, keys: &ClusterKeys) -> Fingerprint {
        let ring = keys.keyring();
        let sealing = ring.sealing().fingerprint();
        self.ring.send_replace(ring);
        sealing
    }

    /// Applies the keys of a re-read configuration, and says so: the
    /// fingerprints in force, or why the running keys stay (the option
    /// was removed, which takes a restart). Returns the sealing key's
    /// fingerprint when the keys were applied.
    pub fn reload_and_log(&self, keys: Option<&ClusterKeys>) -> Option<Fingerprint> {
        let Some(keys) = keys else {
            tracing::warn!(
                "reload: option `cluster-key` (`cache-udp-key`) removed, which takes a restart; \
                 keeping the running keys"
            );
            return None;
        };
        let sealing = self.replace(keys);
        tracing::info!(
            sealing = %sealing,
            keys = ?keys,
            "cluster keys re-read: the first seals, all open"
        );
        Some(sealing)
    }

    /// The ring now in force, for a node made now (a bootstrap answer's).
    pub fn current(&self) -> Keyring {
        self.ring.borrow().clone()
    }

    /// The process slot these keys are counted under.
    pub fn process(&self) -> usize {
        self.process
    }

    /// A handle for one long-lived sync task.
    pub fn follow(&self) -> KeyFollower {
        KeyFollower {
            ring: self.ring.subscribe(),
            unapplied: false,
            counts: KeyCounts::new(self.table),
            process: self.process,
        }
    }

    /// Counts what a node that is done with (a bootstrap answer's) sealed
    /// and opened.
    pub fn count_finished(&self, node: &RouterNode) {
        KeyCounts::new(self.table).publish(node.keyring());
    }
}

/// What a node's keys counted and this process already added to the
/// table, so that only the difference is added.
#[derive(Debug)]
struct KeyCounts {
    table: &'static KeyTable,
    published: Vec<(Fingerprint, u64, u64)>,
}

impl KeyCounts {
    fn new(table: &'static KeyTable) -> KeyCounts {
        KeyCounts {
            table,
            published: Vec::new(),
        }
    }

    fn publish(&mut self, ring: &Keyring) {
        for used in ring.uses() {
            let index = match self
                .published
                .iter()
                .position(|(fp, ..)| *fp == used.fingerprint)
            {
                Some(index) => index,
                None => {
                    self.published.push((used.fingerprint, 0, 0));
                    self.published.len() - 1
                }
            };
            let (_, sealed, opened) = &mut self.published[index];
            // Counts only grow between two `reset`s.
            let (new_sealed, new_opened) = (
                used.sealed.saturating_sub(*sealed),
                used.opened.saturating_sub(*opened),
            );
            if new_sealed > 0 || new_opened > 0 {
                self.table.count(used.fingerprint, new_sealed, new_opened);
            }
            (*sealed, *opened) = (used.sealed, used.opened);
        }
    }

    /// After a change of ring: what the node's ring now counts is what
    /// was published (the ring carried its kept keys' counts over, and a
    /// new key starts at zero).
    fn reset(&mut self, ring: &Keyring) {
        self.published = ring
            .uses()
            .map(|u| (u.fingerprint, u.sealed, u.opened))
            .collect();
    }
}

/// A sync task's view of its process's keys.
#[derive(Debug)]
pub struct KeyFollower {
    ring: watch::Receiver<Keyring>,
    /// A change [`KeyFollower::changed`] saw and `apply` has not made.
    unapplied: bool,
    counts: KeyCounts,
    process: usize,
}

impl KeyFollower {
    /// Resolves when the process's keys changed (never, once the process
    /// dropped its [`Keys`]); [`KeyFollower::apply`] then switches.
    pub async fn changed(&mut self) {
        if self.ring.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        // `changed` marked the new ring seen: remember it is not applied.
        self.unapplied = true;
    }

    /// The ring for the task's node at start.
    pub fn initial(&mut self) -> Keyring {
        self.ring.borrow_and_update().clone()
    }

    /// Switches `node` to the process's current keys, if they changed.
    pub fn apply(&mut self, node: &mut RouterNode) {
        if !self.unapplied && !self.ring.has_changed().unwrap_or(false) {
            return;
        }
        self.unapplied = false;
        // What the old ring counted goes to the table first.
        self.counts.publish(node.keyring());
        let ring = self.ring.borrow_and_update().clone();
        node.set_keyring(ring);
        self.counts.reset(node.keyring());
        self.counts.table.set_ring(self.process, node.keyring());
    }

    /// Adds what `node` sealed and opened since the last call.
    pub fn publish(&mut self, node: &RouterNode) {
        self.counts.publish(node.keyring());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::key_table::{KeyFigures, RingFigures};

    fn table() -> &'static KeyTable {
        Box::leak(Box::default())
    }

    fn keys(lines: &[u8]) -> ClusterKeys {
        let text: String = lines
            .iter()
            .map(|b| format!("{b:02x}").repeat(32) + "\n")
            .collect();
        ClusterKeys::parse(&text).unwrap()
    }

    /// Runs `future` to completion on a runtime of its own.
    fn block_on(future: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future);
    }

    fn node(keys: &Keys) -> RouterNode {
        super::super::new_node(keys.current()).unwrap()
    }

    /// Has `node` seal one datagram (a hello), counted under its sealing key.
    fn seal_one(node: &mut RouterNode) {
        let mut buf = [0u8; 1400];
        node.transmit_control(
            cachet_core::Instant::ZERO,
            cachet_core::sync::ControlKind::Hello,
            &mut buf,
        )
        .unwrap();
    }

    #[test]
    fn nodes_follow_a_change_and_counts_add_up_across_it() {
        let table = table();
        let (old, both) = (keys(&[1]), keys(&[2, 1]));
        let process = Keys::new(&old, table, 3);
        let mut follower = process.follow();
        let mut a = node(&process);
        a.set_keyring(follower.initial());
        seal_one(&mut a);
        follower.publish(&a);
        follower.publish(&a);

        let sealing = process.replace(&both);
        assert_eq!(sealing, both.fingerprints()[0]);
        // A task waits for the change, then applies it.
        block_on(follower.changed());
        follower.apply(&mut a);
        assert_eq!(a.keyring().sealing().fingerprint(), sealing);
        seal_one(&mut a);
        follower.publish(&a);
        // Applying again without a change does nothing.
        follower.apply(&mut a);

        let (new_fp, old_fp) = (both.fingerprints()[0], old.fingerprints()[0]);
        let figures = table.figures();
        assert_eq!(
            figures,
            vec![
                KeyFigures {
                    fingerprint: old_fp,
                    sealed: 1,
                    opened: 0
                },
                KeyFigures {
                    fingerprint: new_fp,
                    sealed: 1,
                    opened: 0
                },
            ]
        );
        assert_eq!(
            table.rings(),
            vec![RingFigures {
                keys: vec![new_fp, old_fp],
                processes: 1
            }]
        );

        // A finished node's counts are added once.
        let mut b = node(&process);
        seal_one(&mut b);
        process.count_finished(&b);
        assert_eq!(table.figures()[1].sealed, 2);
    }

    #[test]
    fn rings_are_grouped_by_content() {
        let table = table();
        let _a = Keys::new(&keys(&[1, 2]), table, 0);
        let _b = Keys::new(&keys(&[1, 2]), table, 1);
        let _c = Keys::new(&keys(&[2]), table, 2);
        let rings = table.rings();
        assert_eq!(rings.len(), 2);
        assert_eq!((rings[0].keys.len(), rings[0].processes), (2, 2));
        assert_eq!((rings[1].keys.len(), rings[1].processes), (1, 1));
    }
}
