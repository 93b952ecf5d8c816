//! What an appliance counts, for whatever stats the firmware exports.

use cachet_core::sync::SyncCounters;

/// Everything an [`Appliance`](crate::Appliance) has counted since it
/// started. The replication itself (sets and deletes applied, datagrams
/// rejected by reason, duplicates) is the sync node's [`SyncCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ApplianceCounters {
    /// Datagrams read from the socket, accepted or not.
    pub received_datagrams: u64,
    /// Datagrams handed to the socket.
    pub sent_datagrams: u64,
    /// Datagrams the socket refused for good (bad address, unbound) and
    /// were dropped; a full socket only delays a datagram.
    pub send_errors: u64,
    /// Hello and bootstrap request pairs sent to configured peers.
    pub greetings_sent: u64,
    /// Configured peers that answered our bootstrap request to the end.
    pub peers_bootstrapped: u64,
    /// Configured peers that never answered and are no longer asked.
    pub peers_given_up: u64,
    /// Sets received from configured peers: their answers to our
    /// bootstrap requests (a router's workers push from other ports).
    pub bootstrap_entries_received: u64,
    /// Bootstrap requests answered to the end.
    pub bootstrap_requests_answered: u64,
    /// Bootstrap requests dropped because too many requesters waited.
    pub bootstrap_requests_dropped: u64,
    /// Entries sent in those answers.
    pub bootstrap_entries_sent: u64,
    /// Expired entries freed by the sweeper.
    pub swept: u64,
    /// Datagrams answering routers' pulls handed to the socket (each
    /// answer goes in two copies).
    pub pull_answers_sent: u64,
    /// Copies of pull answers dropped because the socket was full.
    pub pull_answers_unsent: u64,
    /// The sync node's counters.
    pub sync: SyncCounters,
}
