//! Joining the cluster at start, in cluster mode: the data directory's
//! cluster record, the cluster-wide admin token, and the [`ClusterAgent`].
//!
//! Order (a crash between any two steps leaves a directory the next start
//! handles):
//! 1. the directory is locked and read (`LockedDir`); a used single-node
//!    directory, or one recorded for another node id or cluster name, is
//!    refused before etcd is asked anything;
//! 2. a fresh directory gets `admin.token` (mode 0600) if it has none: its
//!    hash is what etcd records if this node creates the cluster, so the
//!    token is on disk before etcd can hold its hash;
//! 3. the agent joins (retrying with a warning per attempt while etcd is
//!    unreachable): etcd refuses a recorded cluster id it does not hold,
//!    and a node id a live node holds;
//! 4. a fresh directory records the cluster (`CLUSTER`, written
//!    atomically and fsynced) before anything else is created in it;
//! 5. if this node did not create the cluster, an `admin.token` that is not
//!    the cluster's is removed (it would not be accepted anywhere): the
//!    cluster's token is the one in the creating node's data directory.

use super::ClusterSettings;
use crate::datadir::{ClusterRecord, LockedDir};
use courier_cluster::{
    AgentConfig, ClusterAgent, ClusterId, ClusterParams, NodeId, NodeSpec, Timing,
};
use std::net::SocketAddr;

/// Why a cluster-mode start was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    /// The directory was used by a single-node start.
    #[error(
        "{dir} holds a single-node data directory (a MANIFEST and no CLUSTER record): its data \
         has one copy and no cluster knows it, so cluster mode refuses it. Start cluster nodes \
         on a fresh --data-dir (or run this one without --etcd)"
    )]
    SingleNodeDir {
        /// The data directory.
        dir: String,
    },
    /// The directory belongs to another node id.
    #[error(
        "{dir} belongs to node {recorded} of cluster `{cluster}` (cluster id {cluster_id}), but \
         --node-id is {given}; start it with --node-id {recorded}, or give node {given} its own \
         --data-dir"
    )]
    NodeIdMismatch {
        /// The data directory.
        dir: String,
        /// Node id recorded.
        recorded: NodeId,
        /// `--node-id`.
        given: NodeId,
        /// Cluster recorded.
        cluster: String,
        /// Its id.
        cluster_id: ClusterId,
    },
    /// The directory belongs to a cluster of another name.
    #[error(
        "{dir} belongs to cluster `{recorded}` (cluster id {cluster_id}), but --cluster is \
         `{given}`; start it with --cluster {recorded}, or use another --data-dir"
    )]
    NameMismatch {
        /// The data directory.
        dir: String,
        /// Name recorded.
        recorded: String,
        /// `--cluster`.
        given: String,
        /// Id recorded.
        cluster_id: ClusterId,
    },
    /// The control plane refused or failed the join (another cluster's
    /// data directory, a cluster missing from etcd, a duplicate live node
    /// id…; the crate's error says which, naming both ids).
    #[error("data directory {dir}: {error}")]
    Join {
        /// The data directory.
        dir: String,
        /// The control plane's error (shown in the message, so not a
        /// `source`: the chain would say it twice).
        error: courier_cluster::Error,
    },
    /// etcd holds a config whose admin hash does not parse.
    #[error("the cluster's config in etcd is unusable: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The peer address to register still has port 0 (the caller did not
    /// resolve `--peer-listen` with `peers::reserve_peer_port`).
    #[error("peer address {addr} has port 0: --peer-listen must be resolved before joining")]
    PeerPortUnresolved {
        /// The address.
        addr: SocketAddr,
    },
    /// Reading or writing the data directory failed.
    #[error("{0:#}")]
    Disk(anyhow::Error),
}

/// A joined cluster.
pub struct Joined {
    /// The running agent (dropping it leaves the cluster).
    pub agent: ClusterAgent,
    /// sha256 of the cluster-wide admin token (from etcd).
    pub admin_token_hash: [u8; 32],
    /// Whether this node created the cluster.
    pub created: bool,
}

/// Joins the cluster as `settings` say, registering `--advertise` (else
/// `client_addr`, the resolved listen address) for clients and
/// `--peer-advertise` (else the resolved peer listen address) for nodes;
/// `cores` is the node's shard count. Blocks until joined (see
/// the module docs for the order of steps and what is refused).
pub fn join(
    settings: &ClusterSettings,
    dir: &mut LockedDir,
    client_addr: SocketAddr,
    cores: u16,
) -> Result<Joined, ClusterStartError> {
    let shown = dir.root().display().to_string();
    let client_addr = settings.client_addr(client_addr);
    let peer_addr = settings.peer_addr();
    if peer_addr.port() == 0 {
        // `reserve_peer_port` resolves it before the join; a caller that
        // skipped it would register a port nobody listens on.
        return Err(ClusterStartError::PeerPortUnresolved { addr: peer_addr });
    }
    let recorded = check_record(settings, dir)?;
    // Step 2: a fresh node's candidate admin token, durable before etcd can
    // record its hash.
    let candidate = match recorded {
        Some(_) => None,
        None => Some(dir.admin_token().map_err(ClusterStartError::Disk)?),
    };
    let config = AgentConfig {
        endpoints: settings.endpoints.clone(),
        cluster: settings.name.clone(),
        params: ClusterParams {
            shard_count: settings.shard_count,
            replication_factor: settings.replication_factor,
            admin_token_sha256: candidate.map_or([0; 32], |(hash, _)| hash),
        },
        recorded_cluster_id: recorded,
        node: NodeSpec {
            node_id: settings.node_id,
            client_addr: client_addr.to_string(),
            peer_addr: peer_addr.to_string(),
            cores,
            instance: Some(dir.instance().map_err(ClusterStartError::Disk)?),
        },
        timing: Timing::default(),
    };
    tracing::info!(cluster = %settings.name, etcd = ?settings.endpoints, node_id = %settings.node_id,
        recorded_cluster_id = ?recorded.map(|id| id.to_string()),
        "start: joining the cluster (retrying while etcd is unreachable)");
    let agent = ClusterAgent::start(config).map_err(|error| ClusterStartError::Join {
        dir: shown.clone(),
        error,
    })?;
    let status = agent.status();
    let created = agent.joined() == courier_cluster::Joined::Created;
    let admin_token_hash = status
        .config
        .params()
        .map_err(|reason| ClusterStartError::Config { reason })?
        .admin_token_sha256;
    if recorded.is_none() {
        dir.record_cluster(ClusterRecord {
            cluster: settings.name.clone(),
            cluster_id: status.config.cluster_id,
            node_id: settings.node_id,
        })
        .map_err(ClusterStartError::Disk)?;
    }
    settle_admin_token(dir, candidate.map(|(hash, _)| hash), admin_token_hash)?;
    tracing::info!(
        cluster = %settings.name,
        cluster_id = %status.config.cluster_id,
        node_id = %settings.node_id,
        created,
        shard_count = status.config.shard_count,
        replication_factor = status.config.replication_factor,
        client_addr = %client_addr,
        %peer_addr,
        peer_listen = %settings.peer_listen,
        "start: joined the cluster"
    );
    if created {
        tracing::info!(path = %dir.admin_token_path().display(),
            "this node created the cluster: its admin token (mode 0600) is the cluster's, accepted by every node");
    }
    Ok(Joined {
        agent,
        admin_token_hash,
        created,
    })
}

/// Step 1: the directory's record against the flags. Returns the recorded
/// cluster id (None for a fresh directory).
fn check_record(
    settings: &ClusterSettings,
    dir: &LockedDir,
) -> Result<Option<ClusterId>, ClusterStartError> {
    let shown = dir.root().display().to_string();
    let Some(record) = dir.cluster() else {
        if dir.is_used() {
            return Err(ClusterStartError::SingleNodeDir { dir: shown });
        }
        return Ok(None);
    };
    if record.node_id != settings.node_id {
        return Err(ClusterStartError::NodeIdMismatch {
            dir: shown,
            recorded: record.node_id,
            given: settings.node_id,
            cluster: record.cluster.clone(),
            cluster_id: record.cluster_id,
        });
    }
    if record.cluster != settings.name {
        return Err(ClusterStartError::NameMismatch {
            dir: shown,
            recorded: record.cluster.clone(),
            given: settings.name.clone(),
            cluster_id: record.cluster_id,
        });
    }
    Ok(Some(record.cluster_id))
}

/// Step 5: keeps `admin.token` only if it is the cluster's.
fn settle_admin_token(
    dir: &LockedDir,
    candidate: Option<[u8; 32]>,
    cluster_hash: [u8; 32],
) -> Result<(), ClusterStartError> {
    let on_disk = match candidate {
        Some(hash) => Some(hash),
        None => dir
            .existing_admin_token()
            .map_err(ClusterStartError::Disk)?,
    };
    match on_disk {
        Some(hash) if hash != cluster_hash => {
            dir.remove_admin_token().map_err(ClusterStartError::Disk)?;
            tracing::info!(path = %dir.admin_token_path().display(),
                "removed this node's admin.token: it is not the cluster's; the cluster's admin token is in the data directory of the node that created the cluster");
        }
        Some(_) => {}
        None => tracing::info!(
            "no admin.token here: the cluster's admin token is in the data directory of the node that created the cluster"
        ),
    }
    Ok(())
}
