//! The values the control plane stores in etcd (as JSON) and reports:
//! cluster identity, node registrations, the placement map, and the
//! [`ClusterStatus`] snapshot.
//!
//! JSON because operators read these keys with `etcdctl get`; every value is
//! validated after parsing ([`ClusterConfig::validate`],
//! [`Placement::validate`]) so a hand-edited key is reported, not trusted.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::constants::{REPLICATION_FACTOR_MAX, SHARD_COUNT_MAX};

/// A cluster's identity: random, chosen once by the node that creates the
/// cluster, recorded in every node's data directory. Stored as a decimal
/// string (JSON numbers cannot hold 128 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(pub u128);

impl ClusterId {
    /// A fresh random id from the OS's random source.
    pub fn random() -> Result<ClusterId, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes)?;
        Ok(ClusterId(u128::from_le_bytes(bytes)))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<String> for ClusterId {
    type Error = std::num::ParseIntError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(ClusterId)
    }
}

impl From<ClusterId> for String {
    fn from(id: ClusterId) -> String {
        id.0.to_string()
    }
}

/// A node's id, chosen by the operator (`--node-id`), unique among live
/// nodes of a cluster (enforced by the registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the node creating a cluster fixes for its lifetime. Nodes joining
/// an existing cluster pass theirs too; they are ignored (with a warning
/// when they differ) in favour of what etcd holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterParams {
    /// Number of shards, fixed at creation (1..=[`SHARD_COUNT_MAX`]).
    pub shard_count: u32,
    /// Replicas per shard, fixed at creation (1..=[`REPLICATION_FACTOR_MAX`]).
    pub replication_factor: u8,
    /// sha256 of the cluster-wide admin token. The creating node generates
    /// the token and writes it to its data directory; etcd holds only the
    /// hash, so reading etcd does not grant admin rights, and every node
    /// can check the token.
    pub admin_token_sha256: [u8; 32],
}

impl ClusterParams {
    /// Checks the ranges; the error says which parameter is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.shard_count == 0 || self.shard_count > SHARD_COUNT_MAX {
            return Err(format!(
                "shard_count {} is not in 1..={SHARD_COUNT_MAX}",
                self.shard_count
            ));
        }
        if self.replication_factor == 0 || self.replication_factor > REPLICATION_FACTOR_MAX {
            return Err(format!(
                "replication_factor {} is not in 1..={REPLICATION_FACTOR_MAX}",
                self.replication_factor
            ));
        }
        if self.shard_count < u32::from(self.replication_factor) {
            // Not a correctness problem, but almost certainly a typo.
            return Err(format!(
                "shard_count {} is smaller than replication_factor {}",
                self.shard_count, self.replication_factor
            ));
        }
        Ok(())
    }
}

/// The value of `/courier/<cluster>/config`: written once, by the node that
/// creates the cluster, with a create-if-absent transaction; never changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// The cluster's identity.
    pub cluster_id: ClusterId,
    /// Number of shards.
    pub shard_count: u32,
    /// Replicas per shard.
    pub replication_factor: u8,
    /// Creation time, milliseconds since the Unix epoch (informational).
    pub created_at_ms: u64,
    /// Lower-case hex sha256 of the admin token (see
    /// [`ClusterParams::admin_token_sha256`]).
    pub admin_token_sha256: String,
}

impl ClusterConfig {
    /// Checks a config read from etcd.
    pub fn validate(&self) -> Result<(), String> {
        self.params().map(|_| ())
    }

    /// The fixed parameters, validated.
    pub fn params(&self) -> Result<ClusterParams, String> {
        let hash = hex_decode_32(&self.admin_token_sha256)
            .ok_or_else(|| "admin_token_sha256 is not 64 hex digits".to_string())?;
        let params = ClusterParams {
            shard_count: self.shard_count,
            replication_factor: self.replication_factor,
            admin_token_sha256: hash,
        };
        params.validate()?;
        Ok(params)
    }
}

/// The value of `/courier/<cluster>/nodes/<node_id>`: one live node, under
/// the node's lease (it disappears when the node stops renewing it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id (also the key's last segment).
    pub node_id: NodeId,
    /// Where clients connect (`HOST:PORT`).
    pub client_addr: String,
    /// Where other nodes connect (`HOST:PORT`).
    pub peer_addr: String,
    /// Shard cores the node runs.
    pub cores: u16,
    /// When this registration was made, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// The identity of the node's data directory (random, made once; None
    /// from nodes that do not send one). A registration of the same id and
    /// instance is a previous run of the very directory whose lock the
    /// registering process holds — dead — and is taken over at once
    /// instead of waited out (`ControlPlane::register`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// The value of `/courier/<cluster>/placement`: which nodes hold each
/// shard's replicas. Written only by the controller, each write one epoch
/// higher than the one it replaces (compare-and-swap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// 1 for the first placement, +1 for each change.
    pub epoch: u64,
    /// `shards[s]` = the replica nodes of shard `s`; the first is the
    /// preferred leader. Exactly `replication_factor` distinct nodes each.
    pub shards: Vec<Vec<NodeId>>,
}

impl Placement {
    /// Checks the shape against the cluster's parameters: one entry per
    /// shard, `replication_factor` distinct nodes each, epoch ≥ 1.
    pub fn validate(&self, shard_count: u32, replication_factor: u8) -> Result<(), String> {
        if self.epoch == 0 {
            return Err("epoch 0".to_string());
        }
        if self.shards.len() != shard_count as usize {
            return Err(format!(
                "{} shards, the cluster has {shard_count}",
                self.shards.len()
            ));
        }
        for (shard, replicas) in self.shards.iter().enumerate() {
            if replicas.len() != usize::from(replication_factor) {
                return Err(format!(
                    "shard {shard} has {} replicas, replication factor is {replication_factor}",
                    replicas.len()
                ));
            }
            for (i, node) in replicas.iter().enumerate() {
                if replicas[..i].contains(node) {
                    return Err(format!("shard {shard} has two replicas on node {node}"));
                }
            }
        }
        Ok(())
    }

    /// The nodes that hold at least one replica, ascending.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.shards.iter().flatten().copied().collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

/// A snapshot of what this node knows about the cluster, for
/// `courier admin cluster status` and for the caller's decisions. It is the
/// last state read from etcd: when etcd is unreachable, `etcd_connected` is
/// false and the rest is what was last seen (the placement stays valid;
/// the caller keeps serving it). Serializes to JSON for
/// `courier admin cluster status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// Cluster name (etcd key prefix).
    pub cluster: String,
    /// Cluster identity and fixed parameters.
    pub config: ClusterConfig,
    /// This node.
    pub node_id: NodeId,
    /// Whether the last etcd request succeeded.
    pub etcd_connected: bool,
    /// The last etcd error, while disconnected.
    pub etcd_error: Option<String>,
    /// Whether this node's registry key is live (under a live lease).
    pub registered: bool,
    /// The node currently holding the controller election, if any.
    pub controller: Option<NodeId>,
    /// Live nodes, ascending by id, with their addresses.
    pub nodes: Vec<NodeInfo>,
    /// The placement (None until the controller wrote the first one: the
    /// cluster starts once `replication_factor` nodes are registered).
    pub placement: Option<Placement>,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Lower-case hex of 32 bytes.
pub(crate) fn hex_encode_32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_round_trips_as_a_decimal_string() {
        let id = ClusterId(u128::MAX - 5);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", u128::MAX - 5));
        assert_eq!(serde_json::from_str::<ClusterId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ClusterId>("\"12x\"").is_err());
    }

    #[test]
    fn admin_hash_round_trips_through_hex() {
        let hash = [0xabu8; 32];
        let config = ClusterConfig {
            cluster_id: ClusterId(1),
            shard_count: 8,
            replication_factor: 3,
            created_at_ms: 0,
            admin_token_sha256: hex_encode_32(&hash),
        };
        assert_eq!(config.params().unwrap().admin_token_sha256, hash);
        let bad = ClusterConfig {
            admin_token_sha256: "zz".into(),
            ..config
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn status_serializes_with_readable_ids() {
        let status = ClusterStatus {
            cluster: "prod".into(),
            config: ClusterConfig {
                cluster_id: ClusterId(42),
                shard_count: 1,
                replication_factor: 1,
                created_at_ms: 5,
                admin_token_sha256: hex_encode_32(&[0; 32]),
            },
            node_id: NodeId(3),
            etcd_connected: false,
            etcd_error: Some("down".into()),
            registered: true,
            controller: Some(NodeId(3)),
            nodes: vec![],
            placement: Some(Placement {
                epoch: 2,
                shards: vec![vec![NodeId(3)]],
            }),
        };
        let json: serde_json::Value = serde_json::to_value(&status).unwrap();
        assert_eq!(json["config"]["cluster_id"], "42");
        assert_eq!(json["node_id"], 3);
        assert_eq!(json["etcd_connected"], false);
        assert_eq!(json["placement"]["shards"][0][0], 3);
    }

    #[test]
    fn placement_validation_rejects_two_replicas_on_a_node() {
        let p = Placement {
            epoch: 1,
            shards: vec![vec![NodeId(1), NodeId(1)]],
        };
        assert_eq!(
            p.validate(1, 2),
            Err("shard 0 has two replicas on node 1".to_string())
        );
        let p = Placement {
            epoch: 1,
            shards: vec![vec![NodeId(1), NodeId(2)]],
        };
        assert_eq!(p.validate(1, 2), Ok(()));
        assert!(p.validate(2, 2).is_err());
        assert!(p.validate(1, 3).is_err());
    }
}
