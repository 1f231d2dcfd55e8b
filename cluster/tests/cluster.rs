//! The control plane against a real etcd (one private etcd per test, see
//! `support`): cluster creation races, identity checks, the node registry
//! with leases, the controller election and its failover, placement
//! compare-and-swap, and etcd lost and restarted under running agents.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use courier_cluster::{
    ClusterAgent, ClusterId, ControlPlane, Departure, Error, Joined, NodeEvent, NodeId, Placement,
};
use support::{agent_config, init_logs, params, runtime, wait_for, Etcd};

const SECOND: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A control plane for `cluster` on the test's etcd.
fn connect(rt: &tokio::runtime::Runtime, etcd: &Etcd, cluster: &str) -> ControlPlane {
    rt.block_on(ControlPlane::connect(
        &etcd.endpoints(),
        cluster,
        REQUEST_TIMEOUT,
    ))
    .expect("connect to the test's etcd")
}

#[test]
fn concurrent_creators_agree_on_one_cluster() {
    init_logs();
    let etcd = Etcd::start();
    runtime().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let cp = ControlPlane::connect(&etcd.endpoints(), "race", REQUEST_TIMEOUT)
                .await
                .unwrap();
            // Each contender asks for different parameters: the winner's hold for all.
            tasks.push(tokio::spawn(async move {
                cp.create_or_join(&params(8 + i, 3), None).await
            }));
        }
        let mut configs = Vec::new();
        let mut created = 0;
        for task in tasks {
            let (config, joined) = task.await.unwrap().unwrap();
            created += usize::from(joined == Joined::Created);
            configs.push(config);
        }
        assert_eq!(created, 1, "exactly one contender creates the cluster");
        assert!(
            configs.iter().all(|c| *c == configs[0]),
            "all see the same config: {configs:?}"
        );
        let cp = ControlPlane::connect(&etcd.endpoints(), "race", REQUEST_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(cp.config().await.unwrap().as_ref(), Some(&configs[0]));
        assert_eq!(configs[0].replication_factor, 3);
    });
}

#[test]
fn a_data_dir_from_another_cluster_is_refused() {
    init_logs();
    let etcd = Etcd::start();
    let rt = runtime();
    let cp = connect(&rt, &etcd, "ident");
    let (config, _) = rt.block_on(cp.create_or_join(&params(8, 3), None)).unwrap();
    let id = config.cluster_id;

    // The right recorded id joins.
    let (again, joined) = rt
        .block_on(cp.create_or_join(&params(8, 3), Some(id)))
        .unwrap();
    assert_eq!((again.cluster_id, joined), (id, Joined::Existing));

    // Another id is refused, through the agent too.
    let wrong = ClusterId(id.0 ^ 1);
    let mut config = agent_config(&etcd, "ident", 1, params(8, 3));
    config.recorded_cluster_id = Some(wrong);
    match ClusterAgent::start(config) {
        Err(Error::ClusterIdMismatch {
            recorded, found, ..
        }) => assert_eq!((recorded, found), (wrong, id)),
        other => panic!(
            "expected ClusterIdMismatch, got {:?}",
            other.map(|a| a.status())
        ),
    }

    // A recorded id with no cluster in etcd is refused, not re-created.
    let other = connect(&rt, &etcd, "elsewhere");
    let err = rt
        .block_on(other.create_or_join(&params(8, 3), Some(id)))
        .unwrap_err();
    assert!(
        matches!(err, Error::ClusterMissing { recorded, .. } if recorded == id),
        "{err}"
    );
    assert_eq!(
        rt.block_on(other.config()).unwrap(),
        None,
        "nothing was created"
    );
}

#[test]
fn a_duplicate_node_id_is_refused_while_alive_and_accepted_after_its_lease_expires() {
    init_logs();
    let etcd = Etcd::start();
    let first = ClusterAgent::start(agent_config(&etcd, "dup", 1, params(4, 1))).unwrap();
    let mut second = agent_config(&etcd, "dup", 1, params(4, 1));
    second.node.client_addr = "127.0.0.1:9999".into();

    match ClusterAgent::start(second.clone()) {
        Err(Error::DuplicateNode { node_id, holder }) => {
            assert_eq!(node_id, NodeId(1));
            assert_eq!(
                holder.client_addr, "127.0.0.1:7001",
                "the error names the live holder"
            );
        }
        other => panic!(
            "expected DuplicateNode, got {:?}",
            other.map(|a| a.status())
        ),
    }

    // The first node dies without a word (kill -9): its lease runs out.
    first.stop(Departure::Vanish);
    second.timing.duplicate_wait = 5 * SECOND;
    let started = Instant::now();
    let replacement = ClusterAgent::start(second).unwrap();
    let waited = started.elapsed();
    assert!(
        waited < 5 * SECOND,
        "accepted once the 1 s lease expired (waited {waited:?})"
    );
    let nodes = wait_for("the new registration", 5 * SECOND, || {
        let s = replacement.status();
        (!s.nodes.is_empty()).then_some(s.nodes)
    });
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].client_addr, "127.0.0.1:9999");
}

/// A restart after `kill -9` registers the same data directory's instance:
/// it takes the previous run's registration over at once (its lease is
/// still alive), while another directory with the same id is refused.
#[test]
fn a_restart_of_the_same_data_directory_takes_its_registration_over_at_once() {
    init_logs();
    let etcd = Etcd::start();
    let mut config = agent_config(&etcd, "inst", 1, params(4, 1));
    config.node.instance = Some("0123456789abcdef0123456789abcdef".into());
    // A long lease, so only the take-over can explain a quick start.
    config.timing.lease_ttl = 30 * SECOND;
    let first = ClusterAgent::start(config.clone()).unwrap();
    first.stop(Departure::Vanish);

    // Another directory, same node id: refused at once (no waiting).
    let mut other = config.clone();
    other.node.instance = Some("fedcba9876543210fedcba9876543210".into());
    other.timing.duplicate_wait = Duration::ZERO;
    match ClusterAgent::start(other) {
        Err(Error::DuplicateNode { holder, .. }) => {
            assert_eq!(holder.instance, config.node.instance, "{holder:?}");
        }
        other => panic!(
            "expected DuplicateNode, got {:?}",
            other.map(|a| a.status())
        ),
    }

    // The same directory: taken over, though the old lease has ~30 s left
    // and the restart may not wait at all.
    let mut again = config.clone();
    again.node.client_addr = "127.0.0.1:9998".into();
    again.timing.duplicate_wait = Duration::ZERO;
    let restarted = ClusterAgent::start(again).unwrap();
    let nodes = wait_for("the new registration", 5 * SECOND, || {
        let s = restarted.status();
        (!s.nodes.is_empty()).then_some(s.nodes)
    });
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].client_addr, "127.0.0.1:9998");
}

#[test]
fn the_registry_reports_joins_and_drops_dead_nodes_when_their_lease_expires() {
    init_logs();
    let etcd = Etcd::start();
    let rt = runtime();
    let cp = connect(&rt, &etcd, "reg");
    let mut watch = rt.block_on(cp.watch_nodes()).unwrap();
    let next = |watch: &mut courier_cluster::NodeWatch| {
        rt.block_on(async { tokio::time::timeout(10 * SECOND, watch.next()).await })
            .expect("a registry event within 10 s")
            .unwrap()
    };

    let agents: Vec<ClusterAgent> = (1..=3)
        .map(|id| ClusterAgent::start(agent_config(&etcd, "reg", id, params(6, 3))).unwrap())
        .collect();
    let mut joined = BTreeSet::new();
    while joined.len() < 3 {
        match next(&mut watch) {
            NodeEvent::Joined(info) => {
                assert_eq!(
                    info.client_addr,
                    format!("127.0.0.1:{}", 7000 + info.node_id.0)
                );
                joined.insert(info.node_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let listed: Vec<NodeId> = rt
        .block_on(cp.nodes())
        .unwrap()
        .iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(listed, vec![NodeId(1), NodeId(2), NodeId(3)]);

    // Killed: gone after the lease TTL (1 s) plus etcd's expiry check.
    let mut agents = agents.into_iter();
    let (a1, a2, a3) = (
        agents.next().unwrap(),
        agents.next().unwrap(),
        agents.next().unwrap(),
    );
    let killed_at = Instant::now();
    a2.stop(Departure::Vanish);
    assert_eq!(next(&mut watch), NodeEvent::Left(NodeId(2)));
    let gone_after = killed_at.elapsed();
    assert!(
        gone_after < 4 * SECOND,
        "dead node dropped {gone_after:?} after it stopped renewing"
    );

    // Leaving cleanly is immediate (lease revoked).
    let left_at = Instant::now();
    a3.stop(Departure::Leave);
    assert_eq!(next(&mut watch), NodeEvent::Left(NodeId(3)));
    assert!(
        left_at.elapsed() < SECOND,
        "a clean leave took {:?}",
        left_at.elapsed()
    );

    let alive = wait_for("node 1's status to show only itself", 5 * SECOND, || {
        let s = a1.status();
        (s.nodes.len() == 1).then_some(s.nodes)
    });
    assert_eq!(alive[0].node_id, NodeId(1));
}

#[test]
fn the_controller_fails_over_when_its_lease_is_revoked() {
    init_logs();
    let etcd = Etcd::start();
    let rt = runtime();
    let a = ClusterAgent::start(agent_config(&etcd, "elect", 1, params(4, 2))).unwrap();
    let b = ClusterAgent::start(agent_config(&etcd, "elect", 2, params(4, 2))).unwrap();
    let first = wait_for("a controller seen by both", 10 * SECOND, || {
        let (sa, sb) = (a.status(), b.status());
        (sa.controller.is_some() && sa.controller == sb.controller)
            .then_some(sa.controller)
            .flatten()
    });
    let cp = connect(&rt, &etcd, "elect");
    let (controller, lease) = rt.block_on(cp.controller()).unwrap().unwrap();
    assert_eq!(controller, first);

    rt.block_on(cp.revoke_lease(lease)).unwrap();
    let other = if first == NodeId(1) {
        NodeId(2)
    } else {
        NodeId(1)
    };
    wait_for("the other node to take over", 10 * SECOND, || {
        (a.status().controller == Some(other) && b.status().controller == Some(other)).then_some(())
    });
    // The deposed node lost its registration with the lease and comes back
    // with a new one, as a candidate.
    wait_for("the deposed node to register again", 10 * SECOND, || {
        let listed = rt.block_on(cp.nodes()).ok()?;
        (listed.len() == 2).then_some(())
    });
    let new_lease = rt.block_on(cp.node_lease(first)).unwrap().unwrap();
    assert_ne!(new_lease, lease);
}

#[test]
fn placement_writes_are_compare_and_swap_and_fenced_by_the_election() {
    init_logs();
    let etcd = Etcd::start();
    runtime().block_on(async {
        let cp = ControlPlane::connect(&etcd.endpoints(), "cas", REQUEST_TIMEOUT)
            .await
            .unwrap();
        cp.create_or_join(&params(2, 2), None).await.unwrap();
        let lease1 = cp.grant_lease(5 * SECOND).await.unwrap();
        let fence1 = cp.campaign(NodeId(1), lease1).await.unwrap();
        let shards = |a: u32, b: u32| vec![vec![NodeId(a), NodeId(b)], vec![NodeId(b), NodeId(a)]];

        let v1 = cp
            .write_placement(
                &fence1,
                None,
                &Placement {
                    epoch: 1,
                    shards: shards(1, 2),
                },
            )
            .await
            .unwrap();
        let err = cp
            .write_placement(
                &fence1,
                None,
                &Placement {
                    epoch: 1,
                    shards: shards(2, 1),
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::PlacementConflict {
                    expected: None,
                    found: Some(1)
                }
            ),
            "{err}"
        );

        let v2 = cp
            .write_placement(
                &fence1,
                Some(&v1),
                &Placement {
                    epoch: 2,
                    shards: shards(1, 3),
                },
            )
            .await
            .unwrap();
        let stale = cp
            .write_placement(
                &fence1,
                Some(&v1),
                &Placement {
                    epoch: 2,
                    shards: shards(3, 1),
                },
            )
            .await;
        assert!(
            matches!(
                stale,
                Err(Error::PlacementConflict {
                    expected: Some(1),
                    found: Some(2)
                })
            ),
            "a writer that read epoch 1 cannot overwrite epoch 2: {stale:?}"
        );
        let skip = cp
            .write_placement(
                &fence1,
                Some(&v2),
                &Placement {
                    epoch: 5,
                    shards: shards(1, 2),
                },
            )
            .await;
        assert!(matches!(skip, Err(Error::InvalidParams { .. })), "{skip:?}");

        // A second candidate waits; revoking the first's lease elects it,
        // and the first's fence no longer writes.
        let lease2 = cp.grant_lease(5 * SECOND).await.unwrap();
        let cp2 = cp.clone();
        let candidate = tokio::spawn(async move { cp2.campaign(NodeId(2), lease2).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !candidate.is_finished(),
            "the second candidate waits while the first leads"
        );
        cp.revoke_lease(lease1).await.unwrap();
        let fence2 = tokio::time::timeout(5 * SECOND, candidate)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let next = Placement {
            epoch: 3,
            shards: shards(2, 3),
        };
        let deposed = cp.write_placement(&fence1, Some(&v2), &next).await;
        assert!(
            matches!(deposed, Err(Error::NotController { .. })),
            "{deposed:?}"
        );
        cp.write_placement(&fence2, Some(&v2), &next).await.unwrap();
        assert_eq!(cp.placement().await.unwrap().unwrap().value, next);
    });
}

#[test]
fn the_cluster_is_placed_once_enough_nodes_joined_and_a_dead_node_is_replaced_after_the_timeout() {
    init_logs();
    let etcd = Etcd::start();
    let start = |id| ClusterAgent::start(agent_config(&etcd, "place", id, params(8, 3))).unwrap();
    let mut agents = std::collections::BTreeMap::new();
    agents.insert(NodeId(1), start(1));
    agents.insert(NodeId(2), start(2));
    std::thread::sleep(SECOND); // > grace: two nodes are not enough for three replicas
    assert_eq!(
        agents[&NodeId(1)].status().placement,
        None,
        "no placement with fewer nodes than the replication factor"
    );
    agents.insert(NodeId(3), start(3));
    agents.insert(NodeId(4), start(4));
    let placed = wait_for("placement epoch 1 on every node", 10 * SECOND, || {
        let first = agents[&NodeId(1)].status().placement?;
        agents
            .values()
            .all(|a| a.status().placement.as_ref() == Some(&first))
            .then_some(first)
    });
    assert_eq!(placed.epoch, 1);
    placed.validate(8, 3).unwrap();

    // Kill a node that is not the controller; after lease expiry + 2 s it is replaced.
    let controller = agents[&NodeId(1)].status().controller.unwrap();
    let victim_id = [NodeId(2), NodeId(3)]
        .into_iter()
        .find(|n| *n != controller)
        .unwrap();
    let killed_at = Instant::now();
    agents.remove(&victim_id).unwrap().stop(Departure::Vanish);
    let keep: Vec<&ClusterAgent> = agents.values().collect();
    let replaced = wait_for("placement epoch 2", 15 * SECOND, || {
        keep[0].status().placement.filter(|p| p.epoch == 2)
    });
    let after = killed_at.elapsed();
    assert!(
        after >= 2 * SECOND,
        "replaced {after:?} after the kill: sooner than replace_after"
    );
    replaced.validate(8, 3).unwrap();
    assert!(!replaced.nodes().contains(&victim_id));
    for (old, new) in placed.shards.iter().zip(&replaced.shards) {
        for node in old.iter().filter(|n| **n != victim_id) {
            assert!(
                new.contains(node),
                "a live replica moved: {old:?} -> {new:?}"
            );
        }
    }
    wait_for("every survivor to see epoch 2", 5 * SECOND, || {
        keep.iter()
            .all(|a| a.status().placement.as_ref() == Some(&replaced))
            .then_some(())
    });
}

#[test]
fn losing_etcd_keeps_the_last_placement_and_the_nodes_come_back_when_it_returns() {
    init_logs();
    let mut etcd = Etcd::start();
    let agents: Vec<ClusterAgent> = (1..=3)
        .map(|id| ClusterAgent::start(agent_config(&etcd, "lost", id, params(6, 3))).unwrap())
        .collect();
    let placed = wait_for("placement on every node", 10 * SECOND, || {
        let first = agents[0].status().placement?;
        agents
            .iter()
            .all(|a| a.status().placement.as_ref() == Some(&first))
            .then_some(first)
    });

    etcd.kill();
    wait_for("every node to report etcd lost", 10 * SECOND, || {
        agents
            .iter()
            .all(|a| !a.status().etcd_connected)
            .then_some(())
    });
    std::thread::sleep(2 * SECOND); // longer than the lease TTL
    for agent in &agents {
        let status = agent.status();
        assert_eq!(
            status.placement.as_ref(),
            Some(&placed),
            "node {} kept its placement",
            status.node_id
        );
        assert!(status.etcd_error.is_some());
        assert_eq!(
            status.nodes.len(),
            3,
            "the last known nodes are still reported"
        );
    }

    etcd.launch();
    wait_for("every node reconnected and registered", 15 * SECOND, || {
        agents
            .iter()
            .all(|a| {
                let s = a.status();
                s.etcd_connected && s.registered && s.nodes.len() == 3 && s.controller.is_some()
            })
            .then_some(())
    });
    // Still registered two lease TTLs later: keep-alives resumed.
    std::thread::sleep(2 * SECOND);
    for agent in &agents {
        let status = agent.status();
        assert!(status.etcd_connected, "{status:?}");
        assert_eq!(status.nodes.len(), 3, "{status:?}");
        assert_eq!(
            status.placement.as_ref(),
            Some(&placed),
            "no placement change from an etcd restart"
        );
    }
}

#[test]
fn start_retries_until_etcd_is_reachable_and_gives_up_at_its_deadline() {
    init_logs();
    let mut etcd = Etcd::reserve();
    let mut impatient = agent_config(&etcd, "late", 1, params(4, 1));
    impatient.timing.start_timeout = Some(SECOND);
    match ClusterAgent::start(impatient) {
        Err(Error::StartTimeout { last_error, .. }) => assert!(!last_error.is_empty()),
        other => panic!("expected StartTimeout, got {:?}", other.map(|a| a.status())),
    }

    let config = agent_config(&etcd, "late", 1, params(4, 1));
    let starter = std::thread::spawn(move || ClusterAgent::start(config));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!starter.is_finished(), "start waits for etcd");
    etcd.launch();
    let agent = starter.join().unwrap().unwrap();
    assert_eq!(agent.joined(), Joined::Created);
    wait_for("the node in its own status", 5 * SECOND, || {
        (agent.status().nodes.len() == 1).then_some(())
    });
}
