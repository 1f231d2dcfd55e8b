//! Cluster mode of `courierd` (docs/CLUSTER.md): its flags and their
//! validation ([`ClusterArgs`] → [`ClusterSettings`]), joining the cluster
//! at start (`join`), and what every shard knows about the node's mode
//! ([`Mode`]: the admin token's hash, the node's replication view, and the
//! `GET /admin/cluster` answer).
//!
//! Single-node mode is the default: without `--etcd` none of this runs and
//! nothing changes. With `--etcd`, the node joins the etcd control plane
//! (crate `courier-cluster`: identity, node registry, placement controller)
//! through a [`ClusterAgent`] on its own thread.
//!
//! What cluster mode must never do: acknowledge anything not committed on
//! a quorum (`crate::shard::replica`). Every node accepts client sessions
//! once it knows its cluster's voters (each core's edge,
//! `crate::shard::edge`, routes them to the primary); before, a `Hello`
//! is closed with [`courier_proto::close::NOT_SERVING`]. The control
//! plane, `/healthz`, `/metrics` and `/admin/cluster` always work.

mod join;
pub mod peers;
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
    /// Cluster mode: the address this node listens on for other nodes
    /// (`IP:PORT`; port 0 picks a free port at start).
    #[arg(long, env = "COURIER_PEER_LISTEN", value_name = "IP:PORT")]
    pub peer_listen: Option<SocketAddr>,
    /// Cluster mode: the client address other nodes and clients are told
    /// (registered in etcd, shown by `cluster status`) [default: the
    /// --listen address, its port resolved; required if that is 0.0.0.0
    /// or ::].
    #[arg(long, env = "COURIER_ADVERTISE", value_name = "IP:PORT")]
    pub advertise: Option<SocketAddr>,
    /// Cluster mode: the peer address other nodes connect to (registered
    /// in etcd; e.g. a proxy in front of --peer-listen) [default: the
    /// --peer-listen address, its port resolved; required if that is
    /// 0.0.0.0 or ::].
    #[arg(long, env = "COURIER_PEER_ADVERTISE", value_name = "IP:PORT")]
    pub peer_advertise: Option<SocketAddr>,
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
            advertise: self.advertise.or(file.advertise),
            peer_advertise: self.peer_advertise.or(file.peer_advertise),
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
    /// Peer listen address (port 0 until [`peers::reserve_peer_port`]
    /// resolved it at start).
    pub peer_listen: SocketAddr,
    /// `--advertise`: the client address to register, if not the listen
    /// address.
    pub advertise: Option<SocketAddr>,
    /// `--peer-advertise`: the peer address to register, if not the peer
    /// listen address.
    pub peer_advertise: Option<SocketAddr>,
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
    /// A listen address on every interface (`0.0.0.0`, `::`) without an
    /// address to advertise in its place.
    #[error(
        "{flag} {addr} listens on every interface, so it names no address other nodes and \
         clients can use; give {advertise} IP:PORT (the address they should connect to)"
    )]
    NeedsAdvertise {
        /// The listen flag.
        flag: &'static str,
        /// Its value.
        addr: SocketAddr,
        /// The advertise flag that would fix it.
        advertise: &'static str,
    },
    /// An advertised address that nobody can connect to.
    #[error("{flag} {addr}: an advertised address needs a specific IP and a port other than 0")]
    BadAdvertise {
        /// The flag.
        flag: &'static str,
        /// Its value.
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
                ("--advertise", args.advertise.is_some()),
                ("--peer-advertise", args.peer_advertise.is_some()),
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
        if peer_listen == listen && listen.port() != 0 {
            return Err(ClusterFlagError::PeerIsListen { addr: peer_listen });
        }
        check_advertise(("--listen", listen), ("--advertise", args.advertise))?;
        check_advertise(
            ("--peer-listen", peer_listen),
            ("--peer-advertise", args.peer_advertise),
        )?;
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
            advertise: args.advertise,
            peer_advertise: args.peer_advertise,
            replication_factor,
            shard_count,
        }))
    }
}

impl ClusterSettings {
    /// The client address this node registers: `--advertise`, else the
    /// listen address `listen` (its port resolved).
    pub fn client_addr(&self, listen: SocketAddr) -> SocketAddr {
        self.advertise.unwrap_or(listen)
    }

    /// The peer address this node registers: `--peer-advertise`, else the
    /// peer listen address (resolved at start).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_advertise.unwrap_or(self.peer_listen)
    }
}

/// A listen address must name an interface others can reach unless an
/// advertise address is given; an advertise address must be specific.
fn check_advertise(
    (flag, listen): (&'static str, SocketAddr),
    (advertise_flag, advertise): (&'static str, Option<SocketAddr>),
) -> Result<(), ClusterFlagError> {
    match advertise {
        Some(addr) if addr.ip().is_unspecified() || addr.port() == 0 => {
            Err(ClusterFlagError::BadAdvertise {
                flag: advertise_flag,
                addr,
            })
        }
        Some(_) => Ok(()),
        None if listen.ip().is_unspecified() => Err(ClusterFlagError::NeedsAdvertise {
            flag,
            addr: listen,
            advertise: advertise_flag,
        }),
        None => Ok(()),
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

    /// sha256 of the admin token every shard of this node accepts.
    pub fn admin_token_hash(&self) -> &[u8; 32] {
        &self.admin_token_hash
    }

    /// The node's replication view (cluster mode).
    pub fn view(&self) -> Option<&std::sync::Arc<NodeView>> {
        self.view.as_ref()
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

    /// Whether `authorization` (`Bearer ca1_…`) carries the admin token.
    pub(crate) fn admin_authorized(&self, authorization: Option<&str>) -> bool {
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
/// registry (`alive: false`, addresses null); each says whether it is the
/// primary as this node knows it, and `serving` for this node (null for
/// the others: ask them). `cores` is this node's Raft group per core
/// (`view`); per placement shard, `leader`, `term` and `commit_lag` stay
/// null (the groups are per core, shown in `cores`).
pub fn status_document(status: &ClusterStatus, view: Option<&NodeView>) -> Value {
    let primary = view.and_then(NodeView::primary);
    let is_primary = |id: NodeId| primary == Some(u64::from(id.0));
    let serving = |id: NodeId| view.filter(|_| id == status.node_id).map(NodeView::serving);
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
                "primary": is_primary(n.node_id),
                "serving": serving(n.node_id),
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
                "primary": is_primary(id), "serving": null,
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
        "serving_clients": view.is_some_and(NodeView::serving),
        "replication": if view.is_some() { "raft" } else { "not built" },
        "primary": primary,
        "primary_client_addr": primary.and_then(|p| {
            status
                .nodes
                .iter()
                .find(|n| u64::from(n.node_id.0) == p)
                .map(|n| n.client_addr.clone())
        }),
        "cores": view.map_or_else(Vec::new, core_rows),
        "nodes": nodes,
        "placement": placement,
    })
}

/// One row per core of `view`: its group's leader (null while unknown),
/// term, committed and applied Raft index, and whether it is ready.
fn core_rows(view: &NodeView) -> Vec<Value> {
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
                "committed": c.committed.load(SeqCst),
                "applied": c.applied.load(SeqCst),
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
    fn advertised_addresses_default_to_the_listen_addresses_and_must_be_specific() {
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        let any6: SocketAddr = "[::]:7071".parse().unwrap();
        let public: SocketAddr = "10.0.0.1:7070".parse().unwrap();
        let public_peer: SocketAddr = "10.0.0.1:7071".parse().unwrap();
        // Defaults: the listen addresses; a peer port 0 is allowed (it is
        // resolved at start, before the node registers).
        let zero_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let s = check(ClusterArgs {
            peer_listen: Some(zero_port),
            ..cluster_args()
        })
        .unwrap()
        .unwrap();
        assert_eq!(s.client_addr(listen()), listen());
        assert_eq!(s.peer_addr(), zero_port);
        // Listening everywhere needs an advertise address.
        let err = ClusterSettings::from_args(cluster_args(), any).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--listen 0.0.0.0:7070 listens on every interface, so it names no address other \
             nodes and clients can use; give --advertise IP:PORT (the address they should \
             connect to)"
        );
        let err = check(ClusterArgs {
            peer_listen: Some(any6),
            ..cluster_args()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--peer-listen [::]:7071 listens on every")
                && err.to_string().contains("--peer-advertise"),
            "{err}"
        );
        let s = ClusterSettings::from_args(
            ClusterArgs {
                peer_listen: Some(any6),
                advertise: Some(public),
                peer_advertise: Some(public_peer),
                ..cluster_args()
            },
            any,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.client_addr(any), public);
        assert_eq!(s.peer_addr(), public_peer);
        // An advertised address must be one others can connect to.
        for (args, flag) in [
            (
                ClusterArgs {
                    advertise: Some(any),
                    ..cluster_args()
                },
                "--advertise",
            ),
            (
                ClusterArgs {
                    peer_advertise: Some(SocketAddr::from(([10, 0, 0, 1], 0))),
                    ..cluster_args()
                },
                "--peer-advertise",
            ),
        ] {
            let err = check(args).unwrap_err();
            assert!(
                matches!(err, ClusterFlagError::BadAdvertise { flag: f, .. } if f == flag),
                "{err}"
            );
        }
        // Both without --etcd are refused by name.
        for (args, flag) in [
            (
                ClusterArgs {
                    advertise: Some(public),
                    ..ClusterArgs::default()
                },
                "--advertise",
            ),
            (
                ClusterArgs {
                    peer_advertise: Some(public),
                    ..ClusterArgs::default()
                },
                "--peer-advertise",
            ),
        ] {
            assert_eq!(check(args), Err(ClusterFlagError::NeedsEtcd { flag }));
        }
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
            instance: None,
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
    fn status_document_shows_the_primary_and_each_cores_group() {
        use std::sync::atomic::Ordering::SeqCst;
        let view = NodeView::new(1, 2);
        let doc = status_document(&status(), Some(&view));
        assert_eq!(doc["serving_clients"], false);
        assert!(doc["primary"].is_null() && doc["primary_client_addr"].is_null());
        assert_eq!(doc["cores"][1]["leader"], Value::Null);
        view.cores[0].leader.store(2, SeqCst);
        for (k, c) in view.cores.iter().enumerate() {
            c.term.store(3, SeqCst);
            c.committed.store(10 + k as u64, SeqCst);
            c.applied.store(9 + k as u64, SeqCst);
        }
        let doc = status_document(&status(), Some(&view));
        assert_eq!(doc["primary"], 2);
        assert_eq!(doc["primary_client_addr"], "127.0.0.1:7020");
        assert_eq!(
            doc["cores"][1],
            json!({"core": 1, "leader": null, "term": 3, "committed": 11, "applied": 10,
                "applied_lsn": 0, "ready": false, "started": false})
        );
        let nodes = doc["nodes"].as_array().unwrap();
        assert_eq!(nodes[1]["primary"], true);
        assert_eq!(nodes[0]["primary"], false);
        // `serving` is known for the answering node only.
        assert_eq!(nodes[0]["serving"], false);
        assert!(nodes[1]["serving"].is_null());
        view.set_serving(true);
        let doc = status_document(&status(), Some(&view));
        assert_eq!(
            (
                doc["serving_clients"].clone(),
                doc["nodes"][0]["serving"].clone()
            ),
            (json!(true), json!(true))
        );
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
    }
}
