//! The node links' peer book fed from the node registry (cluster mode):
//! [`follow`] runs a thread that applies every registry change the agent
//! reports (`ClusterStatus::nodes`, each with its advertised `peer_addr`)
//! to a [`PeerBook`], so the links reach a node that registered after this
//! one started, and follow a node that came back on another address.
//!
//! One plain thread per node, asleep on the agent's watch channel between
//! changes (it never polls and never touches etcd itself); it ends when the
//! agent stops. A node that leaves the registry keeps its last address in
//! the book (see `crate::link::book`). An address that does not resolve is
//! logged once per (node, value) and skipped; this node's own entry is
//! skipped.
//!
//! Must never: block a shard (the book's lock is held for a map update
//! only); remove a book entry.

use crate::link::{NodeId as LinkNode, PeerBook};
use courier_cluster::{ClusterStatus, NodeId};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use tokio::sync::watch;

/// Resolves port 0 of `--peer-listen` in `config` (cluster mode; nothing
/// otherwise) so that the port registered in etcd is the one the links
/// will listen on: binds it once (SO_REUSEPORT, never listening) and
/// writes the resolved address into `config`. Keep the returned socket
/// until the node links have bound the port (it holds the port meanwhile;
/// it receives no connections), then drop it.
pub fn reserve_peer_port(
    config: &mut crate::config::Config,
) -> Result<Option<socket2::Socket>, crate::link::LinkError> {
    let Some(settings) = config.cluster.as_mut() else {
        return Ok(None);
    };
    let (addr, holder) = crate::link::resolve_port(settings.peer_listen)?;
    settings.peer_listen = addr;
    Ok(holder)
}

/// The other nodes' registered peer addresses in `status` (the
/// `LinkConfig::peers` of a node starting now; [`follow`] keeps the book
/// current afterwards). Unusable addresses are skipped, as [`follow`]
/// does.
pub fn registered_peers(status: &ClusterStatus) -> Vec<crate::link::PeerAddr> {
    status
        .nodes
        .iter()
        .filter(|n| n.node_id != status.node_id)
        .filter_map(|n| {
            let addr = resolve(&n.peer_addr).ok()?;
            Some(crate::link::PeerAddr {
                node: LinkNode(n.node_id.0),
                addr,
            })
        })
        .collect()
}

/// Starts the thread that keeps `book` in step with the registry in
/// `status` (the agent's channel: `ClusterAgent::subscribe()`). The thread
/// applies the current status at once, then every change, and ends when
/// the agent is stopped (its channel closes). Fails only if the thread
/// cannot be spawned.
pub fn follow(
    mut status: watch::Receiver<ClusterStatus>,
    book: PeerBook,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("peer-book".into())
        .spawn(move || {
            let mut follower = Follower::default();
            loop {
                // Cloned so that name resolution does not hold the
                // channel's lock (the agent's next update would wait).
                let now = status.borrow_and_update().clone();
                follower.apply(&now, &book);
                if futures_lite::future::block_on(status.changed()).is_err() {
                    return;
                }
            }
        })
}

/// Applies registry snapshots to a book, remembering which bad addresses
/// it already reported.
#[derive(Debug, Default)]
pub struct Follower {
    /// The last unusable `peer_addr` reported per node (at most one per
    /// registered node, so bounded by the registry's `NODES_MAX`).
    reported: BTreeMap<NodeId, String>,
}

impl Follower {
    /// Sets every other node's peer address from `status` in `book`.
    /// Returns how many entries changed.
    pub fn apply(&mut self, status: &ClusterStatus, book: &PeerBook) -> usize {
        let mut changed = 0;
        for node in &status.nodes {
            if node.node_id == status.node_id {
                continue;
            }
            let addr = match resolve(&node.peer_addr) {
                Ok(addr) => addr,
                Err(reason) => {
                    if self.reported.get(&node.node_id) != Some(&node.peer_addr) {
                        tracing::warn!(node = %node.node_id, peer_addr = %node.peer_addr, %reason,
                            "node registry: unusable peer address; no links to this node until it registers a usable one");
                        self.reported.insert(node.node_id, node.peer_addr.clone());
                    }
                    continue;
                }
            };
            self.reported.remove(&node.node_id);
            match book.set(LinkNode(node.node_id.0), addr) {
                Ok(true) => {
                    changed += 1;
                    tracing::info!(node = %node.node_id, %addr, "node links: peer address learnt from the registry");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "node links: peer not added"),
            }
        }
        changed
    }
}

/// `HOST:PORT` (an IP address, or a name resolved now) to the first
/// address it names.
fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = text.to_socket_addrs().map_err(|e| e.to_string())?;
    addrs
        .next()
        .ok_or_else(|| "the name resolves to no address".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_cluster::{ClusterConfig, ClusterId, NodeInfo};
    use std::time::{Duration, Instant};

    fn info(id: u32, peer_addr: &str) -> NodeInfo {
        NodeInfo {
            node_id: NodeId(id),
            client_addr: format!("127.0.0.1:70{id}0"),
            peer_addr: peer_addr.to_owned(),
            cores: 2,
            started_at_ms: 1,
            instance: None,
        }
    }

    fn status(nodes: Vec<NodeInfo>) -> ClusterStatus {
        ClusterStatus {
            cluster: "t".into(),
            config: ClusterConfig {
                cluster_id: ClusterId(1),
                shard_count: 4,
                replication_factor: 3,
                created_at_ms: 1,
                admin_token_sha256: "00".repeat(32),
            },
            node_id: NodeId(1),
            etcd_connected: true,
            etcd_error: None,
            registered: true,
            controller: None,
            nodes,
            placement: None,
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn apply_skips_this_node_and_bad_addresses_and_follows_moves() {
        let book = PeerBook::new();
        let mut f = Follower::default();
        let s = status(vec![
            info(1, "127.0.0.1:9001"),
            info(2, "127.0.0.1:9002"),
            info(3, "not an address"),
        ]);
        let at_start: Vec<u32> = registered_peers(&s).iter().map(|p| p.node.0).collect();
        assert_eq!(at_start, vec![2]);
        assert_eq!(f.apply(&s, &book), 1);
        assert_eq!(book.get(LinkNode(1)), None);
        assert_eq!(book.get(LinkNode(2)), Some(addr("127.0.0.1:9002")));
        assert_eq!(book.get(LinkNode(3)), None);
        assert_eq!(f.apply(&s, &book), 0);
        // Node 3 fixes its address, node 2 moves, node 4 joins.
        let s = status(vec![
            info(2, "127.0.0.1:9102"),
            info(3, "localhost:9003"),
            info(4, "[::1]:9004"),
        ]);
        assert_eq!(f.apply(&s, &book), 3);
        assert_eq!(book.get(LinkNode(2)), Some(addr("127.0.0.1:9102")));
        assert_eq!(book.get(LinkNode(3)).map(|a| a.port()), Some(9003));
        assert_eq!(book.get(LinkNode(4)), Some(addr("[::1]:9004")));
        // A node that left keeps its last address.
        assert_eq!(f.apply(&status(vec![]), &book), 0);
        assert_eq!(book.get(LinkNode(2)), Some(addr("127.0.0.1:9102")));
        assert!(f.reported.is_empty());
    }

    #[test]
    fn follow_applies_each_change_and_ends_with_the_agent() {
        let (tx, rx) = watch::channel(status(vec![info(2, "127.0.0.1:9002")]));
        let book = PeerBook::new();
        let thread = follow(rx, book.clone()).unwrap();
        let wait_for = |node: u32, want: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while book.get(LinkNode(node)) != Some(addr(want)) {
                assert!(Instant::now() < deadline, "node {node} never became {want}");
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        wait_for(2, "127.0.0.1:9002");
        tx.send(status(vec![
            info(2, "127.0.0.1:9202"),
            info(3, "127.0.0.1:9003"),
        ]))
        .unwrap();
        wait_for(2, "127.0.0.1:9202");
        wait_for(3, "127.0.0.1:9003");
        drop(tx);
        thread.join().unwrap();
    }
}
