//! The crate's error type: one enum whose variants carry what an operator
//! needs to act (which key, which ids, which etcd request).
//!
//! Two kinds matter to callers: *transient* errors ([`Error::is_transient`]:
//! etcd unreachable, a request timed out) are retried by the agent with
//! backoff; every other error is a decision ("this data dir belongs to
//! another cluster", "node id 3 is taken") that retrying cannot change.

use std::time::Duration;

use crate::types::{ClusterId, NodeId, NodeInfo};

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to, or deciding with, the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An etcd request failed (transport error or gRPC status).
    #[error("etcd request `{op}` failed: {source}")]
    Etcd {
        /// The request, e.g. `"get config"`.
        op: &'static str,
        /// etcd-client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// An etcd request got no answer in time (etcd down or partitioned).
    #[error("etcd request `{op}` timed out after {timeout:?}")]
    Timeout {
        /// The request.
        op: &'static str,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The node's data directory records another cluster than the one etcd
    /// holds under this name: joining would mix two clusters' data.
    #[error(
        "refusing to join cluster `{cluster}`: this node's data directory belongs to cluster id \
         {recorded}, but etcd holds cluster id {found} under that name \
         (wrong --etcd/--cluster, or a data directory from another cluster)"
    )]
    ClusterIdMismatch {
        /// Cluster name (etcd key prefix).
        cluster: String,
        /// Id recorded in the data directory.
        recorded: ClusterId,
        /// Id found in etcd.
        found: ClusterId,
    },
    /// The node's data directory records a cluster id but etcd has no
    /// cluster under this name (wrong etcd, or etcd's data was lost):
    /// creating a new cluster would orphan the node's data.
    #[error(
        "refusing to start: this node's data directory belongs to cluster id {recorded}, but etcd \
         has no cluster `{cluster}` (wrong --etcd/--cluster, or etcd's data was lost)"
    )]
    ClusterMissing {
        /// Cluster name.
        cluster: String,
        /// Id recorded in the data directory.
        recorded: ClusterId,
    },
    /// Another live node holds this node id in the registry.
    #[error(
        "node id {node_id} is already registered by a live node (client address {}, peer address \
         {}, started at {} ms since the epoch); pick another --node-id or stop that node",
        holder.client_addr, holder.peer_addr, holder.started_at_ms
    )]
    DuplicateNode {
        /// The contested id.
        node_id: NodeId,
        /// The registration that holds it.
        holder: Box<NodeInfo>,
    },
    /// A value read from etcd does not parse or breaks an invariant.
    #[error("etcd key `{key}` holds an invalid value: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Parameters given by the caller are out of range.
    #[error("invalid cluster parameters: {reason}")]
    InvalidParams {
        /// What is wrong.
        reason: String,
    },
    /// A placement write lost a compare-and-swap: someone else wrote a
    /// placement since it was read.
    #[error("placement write conflict: expected to replace epoch {expected:?}, etcd has epoch {found:?}")]
    PlacementConflict {
        /// Epoch the writer read (None: no placement).
        expected: Option<u64>,
        /// Epoch in etcd now (None: no placement).
        found: Option<u64>,
    },
    /// A controller-only write was fenced off: the writer's election key is
    /// gone, so another node may be controller now.
    #[error("not the controller any more: election key `{key}` is gone")]
    NotController {
        /// The election key that no longer exists.
        key: String,
    },
    /// The lease keeping this node registered expired or was revoked.
    #[error("lease {lease:x} of node {node_id} expired or was revoked")]
    LeaseLost {
        /// This node.
        node_id: NodeId,
        /// The lease id.
        lease: i64,
    },
    /// No placement can satisfy the parameters with the nodes alive.
    #[error("cannot place {shard_count} shards × {replication_factor} replicas on {nodes} nodes: {reason}")]
    Placement {
        /// Shards to place.
        shard_count: u32,
        /// Replicas per shard.
        replication_factor: u8,
        /// Nodes available.
        nodes: usize,
        /// Why not.
        reason: &'static str,
    },
    /// The agent did not join the cluster before the caller's deadline.
    #[error("did not join cluster `{cluster}` within {timeout:?} (last error: {last_error})")]
    StartTimeout {
        /// Cluster name.
        cluster: String,
        /// The deadline.
        timeout: Duration,
        /// The last transient error seen.
        last_error: String,
    },
    /// The agent's thread could not be started or has stopped.
    #[error("cluster agent thread: {reason}")]
    Agent {
        /// What happened.
        reason: String,
    },
}

impl Error {
    /// True for errors that retrying later can fix (etcd unreachable or
    /// slow). The agent retries these with backoff; all others are reported.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Etcd { .. } | Error::Timeout { .. })
    }
}
