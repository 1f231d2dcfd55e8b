//! What the cores of one cluster-mode node know about their replication,
//! shared by every core and the HTTP/status code (an `Arc`, atomics only:
//! reading it never waits).
//!
//! Each core of a cluster-mode node hosts one Raft group (the replica of
//! its shard). The node **serves** (its state shards run) only while it
//! leads every group and every core has started its state machine on top
//! of the committed log (the *primary*). Client sessions are accepted by
//! every node: each core's edge (`crate::shard::edge`) routes them to each
//! group's leader as this view knows it. The replica runtime
//! (`crate::shard::replica`) writes this view; the edges and
//! `GET /admin/cluster` read it.
//!
//! Must never: block, or claim `serving` before every core started.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One core's group as its runtime last saw it.
#[derive(Debug, Default)]
pub struct CoreGroupView {
    /// Raft node id of the group's leader as known here (0: unknown).
    pub leader: AtomicU64,
    /// The group's current term.
    pub term: AtomicU64,
    /// Highest Raft index applied here.
    pub applied: AtomicU64,
    /// Highest Raft index known committed here.
    pub committed: AtomicU64,
    /// Last state-machine LSN applied here (the core's record number).
    pub applied_lsn: AtomicU64,
    /// This node leads the group and has applied everything before its
    /// term's first entry: its core may start serving.
    pub ready: AtomicBool,
    /// The core started its state machine (it serves as the group's
    /// leader from now on; losing leadership ends the process).
    pub started: AtomicBool,
    /// A node beyond the voters (`shard::nonvoter`): the leader itself
    /// named itself in a hint of this term, so it knows this node's
    /// address and its replies reach this node's edges.
    pub leader_confirmed: AtomicBool,
}

/// The node's replication view (see the module docs).
#[derive(Debug)]
pub struct NodeView {
    /// This node's Raft id (the cluster node id).
    pub node: u64,
    /// Per core (index = core = group).
    pub cores: Vec<CoreGroupView>,
    /// Every core started its state machine as the primary: sessions are
    /// accepted.
    serving: AtomicBool,
}

impl NodeView {
    /// A view for `cores` cores of node `node`, not serving.
    pub fn new(node: u64, cores: u16) -> NodeView {
        NodeView {
            node,
            cores: (0..cores).map(|_| CoreGroupView::default()).collect(),
            serving: AtomicBool::new(false),
        }
    }

    /// Whether client sessions are accepted here now.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// Sets whether sessions are accepted (the replica runtime only).
    pub fn set_serving(&self, on: bool) {
        self.serving.store(on, Ordering::SeqCst);
    }

    /// The node leading group 0, which the other groups follow: the
    /// primary, or the node about to become it (None while unknown).
    pub fn primary(&self) -> Option<u64> {
        match self.cores.first().map(|c| c.leader.load(Ordering::SeqCst)) {
            Some(0) | None => None,
            Some(n) => Some(n),
        }
    }

    /// Whether every core is `ready` (leads its group, caught up).
    pub fn all_ready(&self) -> bool {
        self.cores.iter().all(|c| c.ready.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_is_group_zeros_leader_and_serving_starts_off() {
        let v = NodeView::new(7, 2);
        assert!(!v.serving());
        assert_eq!(v.primary(), None);
        v.cores[0].leader.store(3, Ordering::SeqCst);
        assert_eq!(v.primary(), Some(3));
        assert!(!v.all_ready());
        for c in &v.cores {
            c.ready.store(true, Ordering::SeqCst);
        }
        assert!(v.all_ready());
        v.set_serving(true);
        assert!(v.serving());
    }
}
