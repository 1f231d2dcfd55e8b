//! Cluster mode of `courierd` (docs/CLUSTER.md): its flags and their
//! validation ([`ClusterArgs`] → [`ClusterSettings`]), joining the cluster
//! at start (`join`), and what every shard knows about the node's mode
//! ([`Mode`]: the admin token's hash, whether client sessions are refused,
//! and the `GET /admin/cluster` answer).
//!
//! Single-node mode is the default: without `--etcd` none of this runs and
//! nothing changes. With `--etcd`, the node joins the etcd control plane
//! (crate `courier-cluster`: identity, node registry, placement controller)
//! through a [`ClusterAgent`] on its own thread.
//!
//! What cluster mode must never do, until replication exists: acknowledge
//! anything held by one copy. So a cluster-mode node refuses every client
//! session (WebSocket `Hello`, user or admin) with close code
//! [`courier_proto::close::NOT_SERVING`]; its control plane, `/healthz`,
//! `/metrics` and `/admin/cluster` work.

mod join;
pub mod replicas;
pub mod view;

pub use join::{join, ClusterStartError, Joined};
pub use view::NodeView;

use courier_cluster::constants::{REPLICATION_FACTOR_MAX, SHARD_COUNT_MAX};
use courier_cluster::{ClusterAgent, ClusterStatus, NodeId};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// Replication factor of a cluster created without `--replication-factor`.
pub const REPLICATION_FACTOR_DEFAULT: u8 = 3;

/// Shards of a cluster created without `--cluster-shards`: many more than
/// the cores of a first cluster (3 nodes × 8 cores = 24), so shards can
/// later move between nodes and cores without re-sharding (the count is
/// fixed at creation); small enough that a status listing stays readable.
/// A fleet sizes it to ≥ 8 × its planned total cores (up to 65,536).
pub const CLUSTER_SHARDS_DEFAULT: u32 = 256;

/// Cluster name (etcd key prefix `/courier/<name>/`) without `--cluster`.
pub const CLUSTER_NAME_DEFAULT: &str = "courier";

/// Most etcd endpoints `--etcd` takes (an etcd cluster has 3, 5 or 7
/// members).
pub const ETCD_ENDPOINTS_MAX: usize = 16;

/// Cluster-mode flags as given (command line, environment or config file);
/// all unset means single-node mode.
#[derive(clap::Args, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterArgs {
    /// Cluster mode: etcd client URLs, comma-separated
    /// (`http://HOST:PORT[,…]`). Unset: single-node mode, no etcd.
    #[arg(long, env = "COURIER_ETCD", value_name = "URLS")]
    pub etcd: Option<String>,
    /// Cluster mode: this node's id (≥ 1), unique among live nodes and fixed
    /// for its data directory.
    #[arg(long, env = "COURIER_NODE_ID", value_name = "N")]
    pub node_id: Option<u32>,
    /// Cluster mode: the address other nodes reach this node on
    /// (`IP:PORT`, advertised in etcd; not port 0).
    #[arg(long, env = "COURIER_PEER_LISTEN", value_name = "IP:PORT")]
    pub peer_listen: Option<SocketAddr>,
    /// Cluster mode: replicas per shard, used when this node creates the
    /// cluster [default: 3].
    #[arg(long, env = "COURIER_REPLICATION_FACTOR", value_name = "R")]
    pub replication_factor: Option<u8>,
    /// Cluster mode: shards of the whole cluster, used when this node
    /// creates it [default: 256].
    #[arg(long, env = "COURIER_CLUSTER_SHARDS", value_name = "S")]
    pub cluster_shards: Option<u32>,
    /// Cluster mode: the cluster's name in etcd, so one etcd can hold
    /// several [default: courier].
    #[arg(long = "cluster", env = "COURIER_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
}

impl ClusterArgs {
    /// Each flag of `self` (command line, environment), else `file`'s.
    pub fn or(self, file: ClusterArgs) -> ClusterArgs {
        ClusterArgs {
            etcd: self.etcd.or(file.etcd),
            node_id: self.node_id.or(file.node_id),
            peer_listen: self.peer_listen.or(file.peer_listen),
            replication_factor: self.replication_factor.or(file.replication_factor),
            cluster_shards: self.cluster_shards.or(file.cluster_shards),
            cluster: self.cluster.or(file.cluster),
        }
    }
}

/// Validated cluster-mode settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// Cluster name.
    pub name: String,
    /// This node.
    pub node_id: NodeId,
    /// Advertised peer address.
    pub peer_listen: SocketAddr,
    /// Replicas per shard if this node creates the cluster.
    pub replication_factor: u8,
    /// Shards if this node creates the cluster.
    pub shard_count: u32,
}

/// A cluster-mode flag that is missing, misplaced or out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterFlagError {
    /// A cluster-only flag without `--etcd`.
    #[error(
        "{flag} only applies in cluster mode, which --etcd turns on; without --etcd courierd runs \
         as a single node and needs none of the cluster flags"
    )]
    NeedsEtcd {
        /// The flag given.
        flag: &'static str,
    },
    /// `--etcd` without a flag cluster mode needs.
    #[error("cluster mode (--etcd) needs {flag}")]
    Missing {
        /// The missing flag.
        flag: &'static str,
    },
    /// An `--etcd` entry that is not `http://HOST:PORT`.
    #[error("--etcd: {endpoint:?} is not an etcd client URL http://HOST:PORT ({reason})")]
    BadEndpoint {
        /// The entry.
        endpoint: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Too many `--etcd` entries.
    #[error("--etcd lists {count} endpoints; at most {ETCD_ENDPOINTS_MAX}")]
    TooManyEndpoints {
        /// Entries given.
        count: usize,
    },
    /// `--node-id 0`.
    #[error("--node-id must be at least 1")]
    NodeIdZero,
    /// `--peer-listen` with port 0 (it is advertised, so it must be fixed).
    #[error("--peer-listen {addr}: the peer port is advertised to other nodes, so it cannot be 0")]
    PeerPortZero {
        /// The address given.
        addr: SocketAddr,
    },
    /// `--peer-listen` equal to `--listen`.
    #[error("--peer-listen {addr} is also --listen; nodes and clients need separate ports")]
    PeerIsListen {
        /// The address given.
        addr: SocketAddr,
    },
    /// `--replication-factor` out of range.
    #[error("--replication-factor {value} is not in 1..={REPLICATION_FACTOR_MAX}")]
    ReplicationFactor {
        /// The value given.
        value: u8,
    },
    /// `--cluster-shards` out of range or below the replication factor.
    #[error(
        "--cluster-shards {value} is not in {min}..={SHARD_COUNT_MAX} (at least the replication \
         factor)"
    )]
    ClusterShards {
        /// The value given.
        value: u32,
        /// The least allowed (the replication factor).
        min: u32,
    },
    /// `--cluster` is not a valid name.
    #[error("--cluster: {reason}")]
    Name {
        /// What is wrong.
        reason: String,
    },
}

impl ClusterSettings {
    /// Validates merged flags against the client `listen` address: `None`
    /// for single-node mode (no `--etcd` and no cluster flag), settings for
    /// cluster mode, or the first problem found.
    pub fn from_args(
        args: ClusterArgs,
        listen: SocketAddr,
    ) -> Result<Option<ClusterSettings>, ClusterFlagError> {
        let Some(etcd) = args.etcd else {
            let given = [
                ("--node-id", args.node_id.is_some()),
                ("--peer-listen", args.peer_listen.is_some()),
                ("--replication-factor", args.replication_factor.is_some()),
                ("--cluster-shards", args.cluster_shards.is_some()),
                ("--cluster", args.cluster.is_some()),
            ];
            return match given.iter().find(|(_, set)| *set) {
                Some((flag, _)) => Err(ClusterFlagError::NeedsEtcd { flag }),
                None => Ok(None),
            };
        };
        let endpoints = parse_endpoints(&etcd)?;
        let node_id = args.node_id.ok_or(ClusterFlagError::Missing {
            flag: "--node-id N",
        })?;
        if node_id == 0 {
            return Err(ClusterFlagError::NodeIdZero);
        }
        let peer_listen = args.peer_listen.ok_or(ClusterFlagError::Missing {
            flag: "--peer-listen IP:PORT",
        })?;
        if peer_listen.port() == 0 {
            return Err(ClusterFlagError::PeerPortZero { addr: peer_listen });
        }
        if peer_listen == listen {
            return Err(ClusterFlagError::PeerIsListen { addr: peer_listen });
        }
        let replication_factor = args
            .replication_factor
            .unwrap_or(REPLICATION_FACTOR_DEFAULT);
        if replication_factor == 0 || replication_factor > REPLICATION_FACTOR_MAX {
            return Err(ClusterFlagError::ReplicationFactor {
                value: replication_factor,
            });
        }
        let shard_count = args.cluster_shards.unwrap_or(CLUSTER_SHARDS_DEFAULT);
        let min = u32::from(replication_factor);
        if shard_count < min || shard_count > SHARD_COUNT_MAX {
            return Err(ClusterFlagError::ClusterShards {
                value: shard_count,
                min,
            });
        }
        let name = args
            .cluster
            .unwrap_or_else(|| CLUSTER_NAME_DEFAULT.to_owned());
        courier_cluster::keys::Keys::new(&name)
            .map_err(|reason| ClusterFlagError::Name { reason })?;
        Ok(Some(ClusterSettings {
            endpoints,
            name,
            node_id: NodeId(node_id),
            peer_listen,
            replication_factor,
            shard_count,
        }))
    }
}

/// Splits `--etcd` at commas and checks each entry is `http://HOST:PORT`.
fn parse_endpoints(text: &str) -> Result<Vec<String>, ClusterFlagError> {
    let mut endpoints = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let bad = |reason| ClusterFlagError::BadEndpoint {
            endpoint: entry.to_owned(),
            reason,
        };
        if entry.starts_with("https://") {
            return Err(bad("TLS to etcd is not supported yet; use http://"));
        }
        let Some(authority) = entry.strip_prefix("http://") else {
            return Err(bad("it must start with http://"));
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(bad("no :PORT"));
        };
        if host.is_empty() || authority.contains('/') {
            return Err(bad("expected HOST:PORT after http://"));
        }
        if !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
            return Err(bad("the port is not 1..=65535"));
        }
        endpoints.push(format!("http://{authority}"));
    }
    if endpoints.len() > ETCD_ENDPOINTS_MAX {
        return Err(ClusterFlagError::TooManyEndpoints {
            count: endpoints.len(),
        });
    }
    Ok(endpoints)
}

/// What every shard knows about the node's mode, shared by all of them
/// (an `Arc`): the admin token's hash (cluster-wide in cluster mode) and,
/// in cluster mode, the agent's status.
#[derive(Debug)]
pub struct Mode {
    admin_token_hash: [u8; 32],
    /// The agent's status channel (latest value only; reading it never
    /// waits on etcd).
    cluster: Option<tokio::sync::watch::Receiver<ClusterStatus>>,
    /// The node's replication view (cluster mode).
    view: Option<std::sync::Arc<NodeView>>,
}

impl Mode {
    /// Single-node mode.
    pub fn single(admin_token_hash: [u8; 32]) -> Mode {
        Mode {
            admin_token_hash,
            cluster: None,
            view: None,
        }
    }

    /// Cluster mode, reading `agent`'s status.
    pub fn cluster(
        admin_token_hash: [u8; 32],
        agent: &ClusterAgent,
        view: std::sync::Arc<NodeView>,
    ) -> Mode {
        Mode {
            admin_token_hash,
            cluster: Some(agent.subscribe()),
            view: Some(view),
        }
    }

    /// The node's replication view (cluster mode only).
    pub fn view(&self) -> Option<&std::sync::Arc<NodeView>> {
        self.view.as_ref()
    }

    /// Whether client sessions are refused: in cluster mode, while this
    /// node is not the serving primary (see [`NodeView`]).
    pub fn refuses_sessions(&self) -> bool {
        self.view.as_ref().is_some_and(|v| !v.serving())
    }

    /// The answer to `GET /admin/cluster` with this `Authorization` header
    /// value: (HTTP status, JSON body). 401 without a valid admin token;
    /// else 200 with [`status_document`] or, in single-node mode,
    /// `{"mode":"single-node"}`.
    pub fn status_reply(&self, authorization: Option<&str>) -> (u16, String) {
        if !self.admin_authorized(authorization) {
            let body = json!({
                "error": "unauthenticated: send `Authorization: Bearer ca1_…` with the admin token",
            });
            return (401, format!("{body}\n"));
        }
        let document = match &self.cluster {
            None => json!({ "mode": "single-node" }),
            Some(status) => status_document(&status.borrow(), self.view.as_deref()),
        };
        (200, format!("{document}\n"))
    }

    fn admin_authorized(&self, authorization: Option<&str>) -> bool {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token);
        let Some(token) = token else {
            return false;
        };
        match courier_proto::token::parse(token.trim()) {
            Ok(courier_core::api::Credential::Admin(secret)) => {
                let hash: [u8; 32] = Sha256::digest(secret).into();
                subtle::ConstantTimeEq::ct_eq(&hash[..], &self.admin_token_hash[..]).into()
            }
            _ => false,
        }
    }
}

/// The JSON document of `GET /admin/cluster` in cluster mode (field names
/// are an interface: docs/OPERATIONS.md "Cluster status" lists them).
/// `nodes` are the live nodes plus placement nodes missing from the
/// registry (`alive: false`, addresses null); per shard, `leader`, `term`
/// and `commit_lag` are null (the data path runs one Raft group per core,
/// not per placement shard: `cores` lists this node's view of each).
pub fn status_document(status: &ClusterStatus, view: Option<&NodeView>) -> Value {
    let mut nodes: Vec<Value> = status
        .nodes
        .iter()
        .map(|n| {
            json!({
                "node_id": n.node_id.0,
                "alive": true,
                "client_addr": n.client_addr,
                "peer_addr": n.peer_addr,
                "cores": n.cores,
                "started_at_ms": n.started_at_ms,
                "controller": status.controller == Some(n.node_id),
            })
        })
        .collect();
    let placed = status
        .placement
        .as_ref()
        .map(|p| p.nodes())
        .unwrap_or_default();
    for id in placed {
        if !status.nodes.iter().any(|n| n.node_id == id) {
            nodes.push(json!({
                "node_id": id.0, "alive": false, "client_addr": null, "peer_addr": null,
                "cores": null, "started_at_ms": null, "controller": false,
            }));
        }
    }
    nodes.sort_by_key(|n| n["node_id"].as_u64());
    let placement = status.placement.as_ref().map(|p| {
        let shards: Vec<Value> = p
            .shards
            .iter()
            .enumerate()
            .map(|(shard, replicas)| {
                json!({
                    "shard": shard,
                    "replicas": replicas.iter().map(|r| r.0).collect::<Vec<_>>(),
                    "leader": null,
                    "term": null,
                    "commit_lag": null,
                })
            })
            .collect();
        json!({ "epoch": p.epoch, "shards": shards })
    });
    json!({
        "mode": "cluster",
        "cluster": status.cluster,
        "cluster_id": status.config.cluster_id.to_string(),
        "shard_count": status.config.shard_count,
        "replication_factor": status.config.replication_factor,
        "created_at_ms": status.config.created_at_ms,
        "answered_by": status.node_id.0,
        "etcd_connected": status.etcd_connected,
        "etcd_error": status.etcd_error,
        "registered": status.registered,
        "controller": status.controller.map(|c| c.0),
        "serving_clients": view.is_some_and(|v| v.serving()),
        "replication": "raft: one group per core, one primary serves",
        "cores": view.map(cores_document).unwrap_or_default(),
        "nodes": nodes,
        "placement": placement,
    })
}

/// This node's view of each core's Raft group (`NodeView`).
fn cores_document(view: &NodeView) -> Vec<Value> {
    use std::sync::atomic::Ordering::SeqCst;
    view.cores
        .iter()
        .enumerate()
        .map(|(core, c)| {
            let leader = c.leader.load(SeqCst);
            json!({
                "core": core,
                "leader": (leader != 0).then_some(leader),
                "term": c.term.load(SeqCst),
                "applied": c.applied.load(SeqCst),
                "committed": c.committed.load(SeqCst),
                "applied_lsn": c.applied_lsn.load(SeqCst),
                "ready": c.ready.load(SeqCst),
                "started": c.started.load(SeqCst),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_cluster::{ClusterConfig, ClusterId, NodeInfo, Placement};

    fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7070))
    }

    fn cluster_args() -> ClusterArgs {
        ClusterArgs {
            etcd: Some("http://127.0.0.1:2379".into()),
            node_id: Some(1),
            peer_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7071))),
            ..ClusterArgs::default()
        }
    }

    fn check(args: ClusterArgs) -> Result<Option<ClusterSettings>, ClusterFlagError> {
        ClusterSettings::from_args(args, listen())
    }

    #[test]
    fn no_flags_is_single_node_and_defaults_fill_cluster_mode() {
        assert_eq!(check(ClusterArgs::default()), Ok(None));
        let settings = check(cluster_args()).unwrap().unwrap();
        assert_eq!(settings.endpoints, vec!["http://127.0.0.1:2379"]);
        assert_eq!(settings.node_id, NodeId(1));
        assert_eq!(settings.replication_factor, REPLICATION_FACTOR_DEFAULT);
        assert_eq!(settings.shard_count, CLUSTER_SHARDS_DEFAULT);
        assert_eq!(settings.name, CLUSTER_NAME_DEFAULT);
        let several = check(ClusterArgs {
            etcd: Some("http://a:1, http://b:2/,http://[::1]:3".into()),
            ..cluster_args()
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            several.endpoints,
            vec!["http://a:1", "http://b:2", "http://[::1]:3"]
        );
    }

    #[test]
    fn cluster_flags_without_etcd_are_refused_by_name() {
        let cases = [
            (
                ClusterArgs {
                    node_id: Some(2),
                    ..ClusterArgs::default()
                },
                "--node-id",
            ),
            (
                ClusterArgs {
                    peer_listen: Some(listen()),
                    ..ClusterArgs::default()
                },
                "--peer-listen",
            ),
            (
                ClusterArgs {
                    replication_factor: Some(3),
                    ..ClusterArgs::default()
                },
                "--replication-factor",
            ),
            (
                ClusterArgs {
                    cluster_shards: Some(64),
                    ..ClusterArgs::default()
                },
                "--cluster-shards",
            ),
            (
                ClusterArgs {
                    cluster: Some("x".into()),
                    ..ClusterArgs::default()
                },
                "--cluster",
            ),
        ];
        for (args, flag) in cases {
            let err = check(args).unwrap_err();
            assert_eq!(err, ClusterFlagError::NeedsEtcd { flag });
            assert!(err.to_string().starts_with(flag), "{err}");
            assert!(err.to_string().contains("--etcd"), "{err}");
        }
    }

    #[test]
    fn cluster_mode_needs_node_id_and_peer_listen() {
        let err = check(ClusterArgs {
            node_id: None,
            ..cluster_args()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "cluster mode (--etcd) needs --node-id N");
        let err = check(ClusterArgs {
            peer_listen: None,
            ..cluster_args()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--peer-listen"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |args: ClusterArgs| check(args).unwrap_err().to_string();
        for (etcd, says) in [
            ("127.0.0.1:2379", "must start with http://"),
            ("https://a:2379", "TLS"),
            ("http://a", "no :PORT"),
            ("http://a:0", "port"),
            ("http://a:99999", "port"),
            ("http://:2379", "HOST:PORT"),
            ("http://a:1,", "\"\""),
        ] {
            let text = bad(ClusterArgs {
                etcd: Some(etcd.into()),
                ..cluster_args()
            });
            assert!(text.contains(says), "{etcd}: {text}");
        }
        let many = vec!["http://a:1"; ETCD_ENDPOINTS_MAX + 1].join(",");
        assert!(bad(ClusterArgs {
            etcd: Some(many),
            ..cluster_args()
        })
        .contains("at most 16"));
        assert_eq!(
            check(ClusterArgs {
                node_id: Some(0),
                ..cluster_args()
            }),
            Err(ClusterFlagError::NodeIdZero)
        );
        let zero_port = SocketAddr::from(([127, 0, 0, 1], 0));
        assert!(bad(ClusterArgs {
            peer_listen: Some(zero_port),
            ..cluster_args()
        })
        .contains("cannot be 0"));
        assert!(bad(ClusterArgs {
            peer_listen: Some(listen()),
            ..cluster_args()
        })
        .contains("separate ports"));
        for r in [0, 8] {
            assert!(bad(ClusterArgs {
                replication_factor: Some(r),
                ..cluster_args()
            })
            .contains("--replication-factor"));
        }
        for s in [0, 2, SHARD_COUNT_MAX + 1] {
            assert!(bad(ClusterArgs {
                cluster_shards: Some(s),
                ..cluster_args()
            })
            .contains("--cluster-shards"));
        }
        assert!(bad(ClusterArgs {
            cluster: Some("Prod/1".into()),
            ..cluster_args()
        })
        .contains("[a-z0-9_-]"));
    }

    #[test]
    fn command_line_wins_over_the_file() {
        let merged = ClusterArgs {
            node_id: Some(5),
            ..ClusterArgs::default()
        }
        .or(cluster_args());
        assert_eq!(merged.node_id, Some(5));
        assert_eq!(merged.etcd, cluster_args().etcd);
    }

    fn status() -> ClusterStatus {
        let node = |id: u32| NodeInfo {
            node_id: NodeId(id),
            client_addr: format!("127.0.0.1:70{id}0"),
            peer_addr: format!("127.0.0.1:70{id}1"),
            cores: 2,
            started_at_ms: 9,
        };
        ClusterStatus {
            cluster: "t".into(),
            config: ClusterConfig {
                cluster_id: ClusterId(u128::MAX),
                shard_count: 2,
                replication_factor: 2,
                created_at_ms: 1,
                admin_token_sha256: "00".repeat(32),
            },
            node_id: NodeId(1),
            etcd_connected: true,
            etcd_error: None,
            registered: true,
            controller: Some(NodeId(2)),
            nodes: vec![node(1), node(2)],
            placement: Some(Placement {
                epoch: 4,
                shards: vec![vec![NodeId(1), NodeId(3)], vec![NodeId(2), NodeId(1)]],
            }),
        }
    }

    #[test]
    fn status_document_marks_missing_placement_nodes_dead() {
        let doc = status_document(&status(), None);
        assert_eq!(doc["serving_clients"], false);
        assert_eq!(doc["cores"], json!([]));
        let view = NodeView::new(1, 2);
        view.cores[1]
            .leader
            .store(3, std::sync::atomic::Ordering::SeqCst);
        view.set_serving(true);
        let served = status_document(&status(), Some(&view));
        assert_eq!(served["serving_clients"], true);
        assert_eq!(served["cores"][0]["leader"], Value::Null);
        assert_eq!(served["cores"][1]["leader"], 3);
        assert_eq!(doc["mode"], "cluster");
        assert_eq!(doc["cluster_id"], u128::MAX.to_string());
        let nodes = doc["nodes"].as_array().unwrap();
        let ids: Vec<u64> = nodes.iter().filter_map(|n| n["node_id"].as_u64()).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(nodes[1]["controller"], true);
        assert_eq!(nodes[2]["alive"], false);
        assert!(nodes[2]["client_addr"].is_null());
        assert_eq!(doc["placement"]["epoch"], 4);
        let shard = &doc["placement"]["shards"][0];
        assert_eq!(shard["replicas"], json!([1, 3]));
        assert!(shard["leader"].is_null() && shard["term"].is_null());
    }

    #[test]
    fn status_reply_needs_the_admin_token() {
        let secret = [5u8; 32];
        let token = courier_proto::token::format_admin(&secret);
        let mode = Mode::single(Sha256::digest(secret).into());
        assert_eq!(mode.status_reply(None).0, 401);
        assert_eq!(mode.status_reply(Some("Bearer nonsense")).0, 401);
        let other = courier_proto::token::format_admin(&[6u8; 32]);
        assert_eq!(mode.status_reply(Some(&format!("Bearer {other}"))).0, 401);
        let (code, body) = mode.status_reply(Some(&format!("Bearer {token}")));
        assert_eq!((code, body.trim()), (200, "{\"mode\":\"single-node\"}"));
        assert_eq!(mode.status_reply(Some(&format!("bearer {token}"))).0, 200);
        assert_eq!(mode.status_reply(Some(&format!("Basic {token}"))).0, 401);
        assert!(!mode.refuses_sessions());
    }
}
