//! Cluster mode, before the data path runs: the node's Raft voters and
//! the node links to them, handed to every core once known.
//!
//! The voters of every group (one group per core) are the replicas of
//! placement shard 0 in the first placement this node sees (the cluster
//! starts once `replication_factor` nodes registered). They are recorded
//! with their peer addresses in `DATA/raft/VOTERS` (written atomically
//! before any Raft group exists), so a restart uses the same set even if
//! the controller has since recorded another placement; a voter's address
//! is then taken from the registry when it is there, else from the record.
//! Membership changes are not built: the set never changes.
//!
//! A background thread waits for the placement and for every voter's peer
//! address, builds the node's [`crate::link`] links (and starts
//! `cluster::peers::follow`, which keeps their peer book in step with the
//! registry) and sends each core its part; the cores serve (and refuse sessions) meanwhile, so a node never
//! blocks its start on the others. A node that is not among the voters
//! (beyond the replication factor) records the set too and runs edges
//! only (`crate::shard::nonvoter`): it holds client connections.
//!
//! Must never: overwrite a recorded set, or wait on etcd on a core's
//! thread.

use crate::link::{self, CoreLinks, LinkConfig, PeerAddr};
use crate::shard::Stop;
use anyhow::Context;
use courier_cluster::ClusterStatus;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// The record's file name under `DATA/raft/`.
pub const VOTERS_FILE: &str = "VOTERS";

/// How often the setup thread looks at the agent's status.
const POLL: Duration = Duration::from_millis(100);

// A link to a restarted peer must be back well within the shortest election
// timeout, or a leader may lose a quorum it has (see `BACKOFF_MAX`).
const _: () = assert!(
    link::constants::BACKOFF_MAX.as_millis() * 4
        <= crate::shard::replica::RAFT_TICK.as_millis()
            * courier_raft::constants::ELECTION_TICKS_DEFAULT as u128
);

/// What one core needs to run its Raft group.
pub struct ReplicaStart {
    /// Raft voters (cluster node ids), the same on every node.
    pub voters: Vec<u64>,
    /// This core's part of the node links.
    pub links: CoreLinks,
}

/// A voter and where its peer port listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// Cluster node id.
    pub node: u32,
    /// Its peer address.
    pub addr: SocketAddr,
}

/// Renders the voters record: one `node_id peer_addr` line each.
pub fn render_voters(voters: &[Voter]) -> String {
    voters
        .iter()
        .map(|v| format!("{} {}\n", v.node, v.addr))
        .collect()
}

/// Parses the voters record (see [`render_voters`]).
pub fn parse_voters(text: &str) -> anyhow::Result<Vec<Voter>> {
    let mut voters = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (node, addr) = line
            .split_once(' ')
            .with_context(|| format!("voters record: bad line {line:?}"))?;
        voters.push(Voter {
            node: node
                .parse()
                .with_context(|| format!("voters record: bad node id in {line:?}"))?,
            addr: addr
                .trim()
                .parse()
                .with_context(|| format!("voters record: bad address in {line:?}"))?,
        });
    }
    anyhow::ensure!(!voters.is_empty(), "voters record is empty");
    Ok(voters)
}

/// The voters the status names, once the placement and every voter's
/// address are known (None before).
pub fn voters_from_status(status: &ClusterStatus) -> Option<Vec<Voter>> {
    let shard0 = status.placement.as_ref()?.shards.first()?;
    shard0
        .iter()
        .map(|id| {
            let info = status.nodes.iter().find(|n| n.node_id == *id)?;
            let addr = info.peer_addr.parse().ok()?;
            Some(Voter { node: id.0, addr })
        })
        .collect()
}

/// The recorded voters, with addresses refreshed from the registry.
fn refreshed(recorded: &[Voter], status: &ClusterStatus) -> Vec<Voter> {
    recorded
        .iter()
        .map(|v| {
            let live = status
                .nodes
                .iter()
                .find(|n| n.node_id.0 == v.node)
                .and_then(|n| n.peer_addr.parse().ok());
            Voter {
                node: v.node,
                addr: live.unwrap_or(v.addr),
            }
        })
        .collect()
}

/// Everything the setup thread needs.
pub struct Setup {
    /// The agent's status.
    pub status: tokio::sync::watch::Receiver<ClusterStatus>,
    /// This node.
    pub node: u32,
    /// Where this node listens for peers.
    pub peer_listen: SocketAddr,
    /// Cores (= groups).
    pub cores: u16,
    /// `DATA/raft`.
    pub dir: PathBuf,
    /// One sender per core.
    pub cores_tx: Vec<Sender<ReplicaStart>>,
    /// Stops the wait.
    pub stop: Arc<Stop>,
}

/// Starts the setup thread (see the module docs).
pub fn spawn(setup: Setup) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("replica-setup".into())
        .spawn(move || {
            if let Err(e) = run(setup) {
                tracing::error!(error = %format!("{e:#}"), "cluster: the replicated data path could not start");
            }
        })
        .context("starting the replica setup thread")?;
    Ok(())
}

fn run(setup: Setup) -> anyhow::Result<()> {
    let voters = loop {
        if setup.stop.is_requested() {
            return Ok(());
        }
        if let Some(v) = known_voters(&setup)? {
            break v;
        }
        std::thread::sleep(POLL);
    };
    let voter = voters.iter().any(|v| v.node == setup.node);
    let cluster_id = setup.status.borrow().config.cluster_id.0;
    let peers = voters
        .iter()
        .filter(|v| v.node != setup.node)
        .map(|v| PeerAddr {
            node: link::NodeId(v.node),
            addr: v.addr,
        })
        .collect();
    let config = LinkConfig::new(
        cluster_id,
        link::NodeId(setup.node),
        setup.cores,
        setup.peer_listen,
        peers,
    );
    let node = link::build(config).context("building the node links")?;
    // From now on the registry keeps the voters' addresses current (a
    // voter restarted on another address is followed).
    crate::cluster::peers::follow(setup.status.clone(), node.book.clone())
        .context("starting the peer book follower")?;
    if voter {
        tracing::info!(voters = ?voters, peer_listen = %node.addr, "cluster: voters known; starting the replicated data path");
    } else {
        tracing::info!(voters = ?voters, peer_listen = %node.addr,
            "cluster: voters known; this node is not one of them: it holds client connections only");
    }
    let ids: Vec<u64> = voters.iter().map(|v| u64::from(v.node)).collect();
    for (links, tx) in node.cores.into_iter().zip(&setup.cores_tx) {
        let start = ReplicaStart {
            voters: ids.clone(),
            links,
        };
        if tx.send(start).is_err() {
            anyhow::bail!("a core stopped before its replica started");
        }
    }
    Ok(())
}

/// The voters: the record if there is one (addresses refreshed), else the
/// status's (then recorded), else None (not known yet).
fn known_voters(setup: &Setup) -> anyhow::Result<Option<Vec<Voter>>> {
    let path = setup.dir.join(VOTERS_FILE);
    let status = setup.status.borrow().clone();
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok(Some(refreshed(&parse_voters(&text)?, &status)));
    }
    let Some(voters) = voters_from_status(&status) else {
        return Ok(None);
    };
    record(&setup.dir, &voters)?;
    Ok(Some(voters))
}

fn record(dir: &Path, voters: &[Voter]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::datadir::write_atomically(dir, VOTERS_FILE, render_voters(voters).as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_cluster::{ClusterConfig, ClusterId, NodeId, NodeInfo, Placement};

    fn status(placement: bool, nodes: &[u32]) -> ClusterStatus {
        ClusterStatus {
            cluster: "t".into(),
            config: ClusterConfig {
                cluster_id: ClusterId(7),
                shard_count: 2,
                replication_factor: 3,
                created_at_ms: 1,
                admin_token_sha256: "00".repeat(32),
            },
            node_id: NodeId(1),
            etcd_connected: true,
            etcd_error: None,
            registered: true,
            controller: Some(NodeId(1)),
            nodes: nodes
                .iter()
                .map(|&id| NodeInfo {
                    node_id: NodeId(id),
                    client_addr: format!("127.0.0.1:70{id}0"),
                    peer_addr: format!("127.0.0.1:70{id}1"),
                    cores: 2,
                    started_at_ms: 9,
                    instance: None,
                })
                .collect(),
            placement: placement.then(|| Placement {
                epoch: 1,
                shards: vec![
                    vec![NodeId(2), NodeId(1), NodeId(3)],
                    vec![NodeId(1), NodeId(3), NodeId(2)],
                ],
            }),
        }
    }

    #[test]
    fn voters_need_the_placement_and_every_address() {
        assert_eq!(voters_from_status(&status(false, &[1, 2, 3])), None);
        assert_eq!(voters_from_status(&status(true, &[1, 2])), None);
        let v = voters_from_status(&status(true, &[1, 2, 3])).unwrap();
        let ids: Vec<u32> = v.iter().map(|v| v.node).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        assert_eq!(v[0].addr, "127.0.0.1:7021".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn the_record_round_trips_and_addresses_refresh_from_the_registry() {
        let v = voters_from_status(&status(true, &[1, 2, 3])).unwrap();
        let text = render_voters(&v);
        assert_eq!(parse_voters(&text).unwrap(), v);
        assert!(parse_voters("").is_err());
        assert!(parse_voters("x 127.0.0.1:1\n").is_err());
        assert!(parse_voters("1 nowhere\n").is_err());
        let mut moved = status(true, &[1, 2]);
        moved.nodes[1].peer_addr = "127.0.0.1:9999".into();
        let r = refreshed(&v, &moved);
        assert_eq!(r[0].addr, "127.0.0.1:9999".parse::<SocketAddr>().unwrap());
        assert_eq!(
            r[2].addr, v[2].addr,
            "a dead voter keeps its recorded address"
        );
    }

    #[test]
    fn the_record_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let v = voters_from_status(&status(true, &[1, 2, 3])).unwrap();
        record(dir.path(), &v).unwrap();
        let text = std::fs::read_to_string(dir.path().join(VOTERS_FILE)).unwrap();
        assert_eq!(parse_voters(&text).unwrap(), v);
    }
}
