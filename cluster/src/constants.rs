//! Limits and default timings of the control plane, in one place.
//!
//! Every list the crate reads from etcd is bounded by one of these (a
//! corrupt or hostile etcd cannot make a node allocate without bound), and
//! every default timing is named here so docs/CLUSTER.md can quote it.

use std::time::Duration;

/// Most shards a cluster may be created with: shards are addressed by a
/// 16-bit `ShardId` in the core.
pub const SHARD_COUNT_MAX: u32 = 1 << 16;

/// Most replicas per shard. Raft groups larger than 7 buy nothing but
/// write amplification.
pub const REPLICATION_FACTOR_MAX: u8 = 7;

/// Most registered nodes a listing returns; more is treated as corrupt data.
pub const NODES_MAX: usize = 4096;

/// Longest cluster name (it is a path segment of every key).
pub const CLUSTER_NAME_BYTES_MAX: usize = 64;

/// Largest value the crate will parse from etcd (placement of 65,536 shards
/// × 7 replicas as JSON is ≈ 4 MiB; etcd's own request limit is 1.5 MiB by
/// default, so this is never the binding limit).
pub const VALUE_BYTES_MAX: usize = 8 << 20;

/// Capacity of the channel carrying node-registry watch events to a
/// consumer of [`crate::NodeWatch`]; the watch reads the next etcd response
/// only when the consumer asks, so nothing queues beyond etcd-client's own
/// bounded stream.
pub const WATCH_EVENTS_MAX: usize = 1024;

/// Default lease time-to-live of a node's registry key: a node killed with
/// `kill -9` disappears from the registry at most this long after.
pub const LEASE_TTL_DEFAULT: Duration = Duration::from_secs(5);

/// Default time the set of registered nodes must stay unchanged before the
/// controller computes the initial placement (a blip does not count).
pub const GRACE_DEFAULT: Duration = Duration::from_secs(2);

/// Default time a node of the placement must be missing from the registry
/// before the controller records a replacement for its replicas.
pub const REPLACE_AFTER_DEFAULT: Duration = Duration::from_secs(30);

/// Default period of the agent's status refresh and controller checks.
pub const TICK_DEFAULT: Duration = Duration::from_millis(500);

/// Default deadline of one unary etcd request.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);

/// First retry delay after an etcd failure; doubled up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest retry delay after repeated etcd failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

const _: () = assert!(BACKOFF_MIN.as_millis() < BACKOFF_MAX.as_millis());
const _: () = assert!(REPLICATION_FACTOR_MAX as u32 <= SHARD_COUNT_MAX);
