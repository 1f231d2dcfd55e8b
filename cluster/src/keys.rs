//! The etcd key layout of one cluster, all under `/courier/<cluster>/`:
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `config` | [`crate::ClusterConfig`] JSON | the creating node, once (create-if-absent txn) |
//! | `nodes/<node_id>` | [`crate::NodeInfo`] JSON, under the node's lease | each node, create-if-absent |
//! | `placement` | [`crate::Placement`] JSON | the controller, compare-and-swap |
//! | `controller/<lease hex>` | node id (decimal) | etcd's election API (`campaign`) |

use crate::constants::CLUSTER_NAME_BYTES_MAX;
use crate::types::NodeId;

/// The keys of one named cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys for cluster `name`: 1..=64 bytes of `[a-z0-9_-]`, so it is one
    /// path segment and cannot reach another cluster's keys.
    pub fn new(name: &str) -> Result<Keys, String> {
        let valid = !name.is_empty()
            && name.len() <= CLUSTER_NAME_BYTES_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(format!(
                "cluster name {name:?} must be 1..={CLUSTER_NAME_BYTES_MAX} characters of [a-z0-9_-]"
            ));
        }
        Ok(Keys {
            prefix: format!("/courier/{name}/"),
        })
    }

    /// `/courier/<cluster>/config`.
    pub fn config(&self) -> String {
        format!("{}config", self.prefix)
    }

    /// `/courier/<cluster>/nodes/` (prefix of every node key).
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    /// `/courier/<cluster>/nodes/<node_id>`.
    pub fn node(&self, node_id: NodeId) -> String {
        format!("{}nodes/{}", self.prefix, node_id.0)
    }

    /// `/courier/<cluster>/placement`.
    pub fn placement(&self) -> String {
        format!("{}placement", self.prefix)
    }

    /// `/courier/<cluster>/controller`: the election name.
    pub fn controller(&self) -> String {
        format!("{}controller", self.prefix)
    }

    /// The node id at the end of a node key, if `key` is one.
    pub fn node_id_of(&self, key: &[u8]) -> Option<NodeId> {
        let rest = key.strip_prefix(self.nodes().as_bytes())?;
        std::str::from_utf8(rest).ok()?.parse().ok().map(NodeId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_path_segment() {
        assert!(Keys::new("prod-eu_1").is_ok());
        for bad in ["", "a/b", "A", "..", &"x".repeat(65)] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
        let keys = Keys::new("t").unwrap();
        assert_eq!(keys.node(NodeId(7)), "/courier/t/nodes/7");
        assert_eq!(keys.node_id_of(b"/courier/t/nodes/7"), Some(NodeId(7)));
        assert_eq!(keys.node_id_of(b"/courier/u/nodes/7"), None);
        assert_eq!(keys.node_id_of(b"/courier/t/nodes/x"), None);
    }
}
