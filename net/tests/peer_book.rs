//! The node links' peer book fed from the etcd registry, end to end: a
//! real etcd (`courier_tools::testkit::etcd`), two in-process cluster
//! agents and two nodes' links on glommio executors. Node 1 starts knowing
//! no peer (node 2 has not registered): its sends to node 2 are refused.
//! Node 2 then registers its links' address; `cluster::peers::follow`
//! puts it in node 1's book, node 1's links connect, and every message
//! sent from then on arrives in order. What a user would check: a node
//! that joins the cluster after this one started is reached without a
//! restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use courier_cluster::{AgentConfig, ClusterAgent, ClusterParams, NodeId, NodeSpec, Timing};
use courier_net::cluster::peers;
use courier_net::link::{self, CoreId, LinkConfig, NodeId as LinkNode, SendError};
use courier_tools::testkit::etcd::Etcd;
use glommio::{LocalExecutorBuilder, Placement};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LINK_CLUSTER: u128 = 0x5eed;
const MESSAGES: u64 = 100;

/// How long any wait of this test may take.
const DEADLINE: Duration = Duration::from_secs(60);

fn agent(etcd: &Etcd, id: u32, peer_addr: SocketAddr) -> ClusterAgent {
    ClusterAgent::start(AgentConfig {
        endpoints: etcd.endpoints(),
        cluster: "peerbook".into(),
        params: ClusterParams {
            shard_count: 4,
            replication_factor: 1,
            admin_token_sha256: [7; 32],
        },
        recorded_cluster_id: None,
        node: NodeSpec {
            node_id: NodeId(id),
            client_addr: format!("127.0.0.1:{}", 7000 + id),
            peer_addr: peer_addr.to_string(),
            cores: 1,
            instance: None,
        },
        timing: Timing {
            lease_ttl: Duration::from_secs(2),
            tick: Duration::from_millis(100),
            duplicate_wait: Duration::ZERO,
            start_timeout: Some(Duration::from_secs(30)),
            ..Timing::default()
        },
    })
    .unwrap()
}

fn config(node: u32, peers: Vec<link::PeerAddr>) -> LinkConfig {
    let mut c = LinkConfig::new(
        LINK_CLUSTER,
        LinkNode(node),
        1,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        peers,
    );
    c.backoff_initial = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c
}

#[test]
fn a_node_registered_after_start_is_reached_through_the_registry() {
    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
    let receiver = link::build(config(2, vec![])).unwrap();
    let receiver_addr = receiver.addr;
    let first = agent(&etcd, 1, SocketAddr::from(([127, 0, 0, 1], 9)));
    // Node 2 is not registered yet: node 1 starts knowing no peer.
    let known = peers::registered_peers(&first.status());
    assert!(known.is_empty(), "{known:?}");
    let sender = link::build(config(1, known)).unwrap();
    let follower = peers::follow(first.subscribe(), sender.book.clone()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));

    let receiving = {
        let core = receiver.cores.into_iter().next().unwrap();
        LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let (h, inbox) = core.start().unwrap();
                for seq in 0..MESSAGES {
                    let m = inbox.recv().await.unwrap();
                    assert_eq!(m.from_node, LinkNode(1));
                    assert_eq!(m.payload, Bytes::from(seq.to_le_bytes().to_vec()));
                }
                h.shutdown().await
            })
            .unwrap()
    };
    let sending = {
        let core = sender.cores.into_iter().next().unwrap();
        let (done, refused) = (done.clone(), refused.clone());
        LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let (h, _inbox) = core.start().unwrap();
                let started = Instant::now();
                let first = Bytes::from(0u64.to_le_bytes().to_vec());
                loop {
                    match h.send(LinkNode(2), CoreId(0), 7, first.clone()) {
                        Ok(()) => break,
                        Err(SendError::UnknownNode(_)) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("{e}"),
                    }
                    assert!(started.elapsed() < DEADLINE, "node 2 never learnt");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                for seq in 1..MESSAGES {
                    let p = Bytes::from(seq.to_le_bytes().to_vec());
                    h.send(LinkNode(2), CoreId(0), 7, p).unwrap();
                }
                let addr = h.status(LinkNode(2)).unwrap().addr;
                while !done.load(Ordering::SeqCst) {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
                (addr, h.shutdown().await)
            })
            .unwrap()
    };
    // Node 1's core is refused until node 2 registers.
    let started = Instant::now();
    while refused.load(Ordering::SeqCst) < 3 {
        assert!(started.elapsed() < DEADLINE, "node 1's core did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = agent(&etcd, 2, receiver_addr);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(receiving.join());
    });
    let left = rx
        .recv_timeout(DEADLINE)
        .expect("node 2 did not receive every message in time")
        .unwrap();
    assert_eq!(left, 0, "link tasks still running after shutdown");
    done.store(true, Ordering::SeqCst);
    let (addr, left) = sending.join().unwrap();
    assert_eq!(addr, receiver_addr, "the address registered in etcd");
    assert_eq!(left, 0);
    assert_eq!(sender.book.get(LinkNode(2)), Some(receiver_addr));
    assert_eq!(sender.book.get(LinkNode(1)), None, "a node skips itself");
    // The follower ends when the agent stops.
    drop(second);
    first.stop(courier_cluster::Departure::Leave);
    follower.join().unwrap();
}
