//! Cluster mode of `courierd` with real processes: each test starts its own
//! etcd on ephemeral ports (`courier_tools::testkit::etcd`) and real
//! daemons (`courier_tools::testkit::ServerProcess`), and reads the cluster
//! through `courier_tools::admin_http::cluster_status`, the function
//! `courier admin cluster status` calls.
//!
//! What a user would check: three nodes join one cluster and every node
//! shows all three alive and a placement of R replicas per shard; the admin
//! token the creating node wrote is accepted by every node (and no other
//! is); a killed node shows as not alive after its lease TTL and is back
//! after a restart (also right after `kill -9`); `/healthz` answers; client
//! sessions are refused with the documented close code; a data directory
//! from another cluster, a duplicate live node id, and data directories of
//! the other mode are refused with clear errors and a non-zero exit; a node
//! started before etcd waits for it; a node that loses etcd says so and
//! keeps answering from the last state it saw, and heals when etcd returns. Single-node mode is covered by the
//! other tests of this crate, which run with no etcd at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use courier_tools::admin_http::{cluster_status, ClusterReport, ClusterView};
use courier_tools::testkit::etcd::{free_port, Etcd};
use courier_tools::testkit::{Launch, ServerProcess, TestkitError};
use courier_tools::{ClientError, ConnectOptions, Connection};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Lease TTL of a node's registration (courier-cluster's default, which
/// `courierd` uses).
const LEASE_TTL: Duration = courier_cluster::constants::LEASE_TTL_DEFAULT;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn etcd() -> Etcd {
    Etcd::start().unwrap_or_else(|e| panic!("{e}"))
}

fn test_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("courierd-cluster-tests");
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// How node `id` of a cluster on `etcd` is launched (one shard, a fresh
/// peer port); `extra` flags are appended.
fn node_launch(etcd: &Etcd, dir: &Path, id: u32, extra: &[&str]) -> Launch {
    let mut launch = Launch::new(&dir.join(format!("node{id}")), 1);
    launch.binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_courierd")));
    launch.args = vec![
        "--etcd".into(),
        etcd.url(),
        "--node-id".into(),
        id.to_string(),
        "--peer-listen".into(),
        format!("127.0.0.1:{}", free_port().unwrap()),
    ];
    launch.args.extend(extra.iter().map(|s| s.to_string()));
    launch
}

fn start_node(etcd: &Etcd, dir: &Path, id: u32, extra: &[&str]) -> ServerProcess {
    let launch = node_launch(etcd, dir, id, extra);
    let log = launch.log.clone();
    ServerProcess::launch(launch).unwrap_or_else(|e| {
        panic!(
            "node {id} did not start: {e}\nlog:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// Launches a node that must be refused; returns the error text (which
/// holds the daemon's exit status and the end of its log).
fn refused(launch: Launch) -> String {
    match ServerProcess::launch(launch) {
        Ok(mut server) => {
            server.kill9();
            panic!("the node started; it should have been refused")
        }
        Err(e @ TestkitError::Process { .. }) => e.to_string(),
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

fn status(server: &ServerProcess, token: &str) -> Result<ClusterReport, ClientError> {
    runtime().block_on(cluster_status(&server.url(), token, Duration::from_secs(5)))
}

fn cluster_view(server: &ServerProcess, token: &str) -> ClusterView {
    match status(server, token) {
        Ok(ClusterReport::Cluster(view)) => *view,
        other => panic!(
            "expected a cluster status from {}, got {other:?}\nits log ends with:\n{}",
            server.addr(),
            server.log_tail(40)
        ),
    }
}

/// What a supervisor (systemd's `Restart=on-failure`, dist/) does: starts
/// again a node that ended itself with the documented demotion exit (a
/// primary that lost its quorum, docs/CLUSTER.md); any other exit fails the
/// test with the node's log.
fn supervise(nodes: &mut [ServerProcess]) {
    for node in nodes {
        if node.pid().is_none() {
            continue; // killed by the test
        }
        if let Some(status) = node.wait_exit(Duration::ZERO).unwrap() {
            assert_eq!(
                status.code(),
                Some(courier_net::shard::EXIT_DEMOTED),
                "node at {} exited: {status}\nits log ends with:\n{}",
                node.addr(),
                node.log_tail(40)
            );
            node.start_again().unwrap();
        }
    }
}

/// Polls `probe` every 100 ms until it returns Some, or panics after
/// `timeout` naming what was awaited.
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive(view: &ClusterView) -> BTreeSet<u32> {
    view.nodes
        .iter()
        .filter(|n| n.alive)
        .map(|n| n.node_id)
        .collect()
}

#[test]
fn three_nodes_form_a_cluster_that_every_node_reports_and_a_killed_node_leaves() {
    let etcd = etcd();
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let shards = ["--replication-factor", "3", "--cluster-shards", "12"];
    let mut nodes = vec![start_node(&etcd, dir.path(), 1, &shards)];
    let token = nodes[0].admin_token().unwrap();
    for id in [2, 3] {
        nodes.push(start_node(&etcd, dir.path(), id, &shards));
    }
    // Only the creating node holds the admin token; it works everywhere.
    assert!(token.starts_with("ca1_"));
    for node in &nodes[1..] {
        assert!(
            !node.data_dir().join("admin.token").exists(),
            "a joining node must not keep a token of its own"
        );
    }
    for node in &nodes {
        let view = wait_for(
            "3 alive nodes and a placement",
            Duration::from_secs(30),
            || {
                let view = cluster_view(node, &token);
                (alive(&view) == BTreeSet::from([1, 2, 3]) && view.placement.is_some())
                    .then_some(view)
            },
        );
        assert_eq!((view.shard_count, view.replication_factor), (12, 3));
        assert!(view.etcd_connected && view.registered);
        let placement = view.placement.unwrap();
        assert_eq!(placement.shards.len(), 12);
        for shard in &placement.shards {
            let replicas: BTreeSet<u32> = shard.replicas.iter().copied().collect();
            assert_eq!(replicas, BTreeSet::from([1, 2, 3]), "shard {}", shard.shard);
            assert_eq!(
                (shard.leader, shard.term, shard.commit_lag),
                (None, None, None)
            );
        }
        let controllers = view.nodes.iter().filter(|n| n.controller).count();
        assert_eq!(controllers, 1, "one controller: {:?}", view.nodes);
        for n in &view.nodes {
            let want = nodes[n.node_id as usize - 1].addr().to_string();
            assert_eq!(n.client_addr.as_deref(), Some(want.as_str()));
        }
    }
    let placement_epoch = cluster_view(&nodes[0], &token).placement.unwrap().epoch;
    for node in &nodes {
        assert_eq!(health(node), "HTTP/1.1 200 OK");
    }
    // Another admin token (or a user token) is refused by every node.
    let stranger = courier_proto::token::format_admin(&[9; 32]);
    for node in &nodes {
        assert!(matches!(
            status(node, &stranger),
            Err(ClientError::Rejected(
                courier_core::api::Reject::Unauthenticated
            ))
        ));
    }
    // Every node accepts client sessions once it joined its cluster
    // (clients on any node; tests/cluster_replication.rs covers what they
    // do); before, it refuses them with the documented close code.
    let credential = courier_tools::token::parse(&token).unwrap();
    for node in &nodes {
        let options = ConnectOptions::new(node.url(), credential.clone());
        match runtime().block_on(Connection::connect(&options)) {
            Err(ClientError::Closed { code, .. }) => {
                assert_eq!(code, Some(courier_proto::close::NOT_SERVING))
            }
            Err(e) => panic!("expected a Welcome or a close with NOT_SERVING, got {e}"),
            Ok(_) => {}
        }
    }
    let serving = nodes
        .iter()
        .filter(|n| cluster_view(n, &token).serving_clients)
        .count();
    assert!(serving <= 1, "{serving} nodes say they serve clients");
    // kill -9 node 3: it shows as not alive once its lease expired, and
    // keeps its replicas in the placement (no replacement before 30 s).
    let killed = Instant::now();
    nodes[2].kill9();
    let view = wait_for("node 3 not alive", LEASE_TTL * 3, || {
        supervise(&mut nodes);
        let view = cluster_view(&nodes[0], &token);
        (alive(&view) == BTreeSet::from([1, 2])).then_some(view)
    });
    assert!(
        killed.elapsed() >= LEASE_TTL / 2,
        "node 3 left after {:?}, sooner than its lease could expire",
        killed.elapsed()
    );
    let row = view.nodes.iter().find(|n| n.node_id == 3).unwrap();
    assert!(!row.alive && row.client_addr.is_none());
    // Node 3 restarts on its data directory and is back; node 2, restarted
    // right after a kill -9, first waits for its own stale registration to
    // expire, then is back too. The placement did not change.
    nodes[2].start_again().unwrap();
    wait_for("node 3 alive again", LEASE_TTL * 3, || {
        supervise(&mut nodes);
        let view = cluster_view(&nodes[0], &token);
        alive(&view).contains(&3).then_some(())
    });
    nodes[1].kill9();
    nodes[1].start_again().unwrap();
    let back = wait_for("3 alive nodes again", Duration::from_secs(30), || {
        supervise(&mut nodes);
        let view = cluster_view(&nodes[0], &token);
        (alive(&view) == BTreeSet::from([1, 2, 3])).then_some(view)
    });
    assert_eq!(back.placement.unwrap().epoch, placement_epoch);
}

/// `GET /healthz` on `server`: the status line.
fn health(server: &ServerProcess) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_data_dir_from_another_cluster_is_refused_naming_both_ids() {
    let (etcd_a, etcd_b) = (etcd(), etcd());
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let small = ["--replication-factor", "1", "--cluster-shards", "4"];
    let mut a = start_node(&etcd_a, dir.path(), 1, &small);
    assert_eq!(a.stop().unwrap(), Some(0));
    let record_a = std::fs::read_to_string(a.data_dir().join("CLUSTER")).unwrap();
    let id_a = record_a
        .lines()
        .find_map(|l| l.strip_prefix("cluster_id = "))
        .unwrap()
        .to_owned();

    // etcd B has no cluster: a used data dir never creates one.
    let mut launch = node_launch(&etcd_b, dir.path(), 1, &small);
    launch.data_dir = a.data_dir().to_owned();
    let text = refused(launch.clone());
    assert!(text.contains("exited with exit status: 1"), "{text}");
    assert!(
        text.contains(&format!(
            "belongs to cluster id {id_a}, but etcd has no cluster"
        )),
        "{text}"
    );

    // etcd B gets its own cluster: now both ids are named.
    let b = start_node(&etcd_b, dir.path(), 2, &small);
    let token_b = b.admin_token().unwrap();
    let ClusterReport::Cluster(view_b) = status(&b, &token_b).unwrap() else {
        panic!("node 2 is not a cluster node");
    };
    let text = refused(launch);
    assert!(text.contains("exited with exit status: 1"), "{text}");
    assert!(
        text.contains(&format!(
            "belongs to cluster id {id_a}, but etcd holds cluster id {}",
            view_b.cluster_id
        )),
        "{text}"
    );
    // The refused directory is untouched and still starts in its own cluster.
    a.start_again().unwrap();
    assert!(matches!(
        status(&a, &a.admin_token().unwrap()),
        Ok(ClusterReport::Cluster(v)) if v.cluster_id == id_a
    ));
}

#[test]
fn a_duplicate_live_node_id_is_refused() {
    let etcd = etcd();
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let small = ["--replication-factor", "1", "--cluster-shards", "4"];
    let first = start_node(&etcd, dir.path(), 7, &small);
    let mut launch = node_launch(&etcd, dir.path(), 7, &small);
    launch.data_dir = dir.path().join("another");
    launch.log = dir.path().join("another.log");
    let text = refused(launch);
    assert!(text.contains("exited with exit status: 1"), "{text}");
    assert!(
        text.contains(&format!(
            "node id 7 is already registered by a live node (client address {}",
            first.addr()
        )),
        "{text}"
    );
}

#[test]
fn single_node_and_cluster_data_dirs_do_not_mix() {
    let etcd = etcd();
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    // A single-node data directory (no etcd) is refused in cluster mode…
    let mut single = Launch::new(&dir.path().join("single"), 1);
    single.binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_courierd")));
    let mut server = ServerProcess::launch(single.clone()).unwrap();
    assert!(matches!(
        status(&server, &server.admin_token().unwrap()),
        Ok(ClusterReport::SingleNode)
    ));
    server.stop().unwrap();
    let mut launch = node_launch(&etcd, dir.path(), 1, &[]);
    launch.data_dir = single.data_dir.clone();
    let text = refused(launch);
    assert!(
        text.contains("holds a single-node data directory"),
        "{text}"
    );
    // …and a cluster node's directory is refused without --etcd.
    let mut node = start_node(&etcd, dir.path(), 2, &["--replication-factor", "1"]);
    node.stop().unwrap();
    let mut alone = single;
    alone.data_dir = node.data_dir().to_owned();
    let text = refused(alone);
    assert!(text.contains("belongs to cluster `courier`"), "{text}");
    assert!(text.contains("--node-id 2"), "{text}");
    // A directory restarted under another node id is refused too.
    let mut launch = node_launch(&etcd, dir.path(), 3, &[]);
    launch.data_dir = node.data_dir().to_owned();
    let text = refused(launch);
    assert!(text.contains("belongs to node 2"), "{text}");
}

#[test]
fn cluster_flags_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    for (args, says) in [
        (
            vec!["--node-id", "1"],
            "--node-id only applies in cluster mode",
        ),
        (
            vec![
                "--etcd",
                "http://127.0.0.1:1",
                "--peer-listen",
                "127.0.0.1:9",
            ],
            "needs --node-id",
        ),
        (
            vec!["--etcd", "127.0.0.1:2379", "--node-id", "1"],
            "must start with http://",
        ),
        (
            vec![
                "--etcd",
                "http://127.0.0.1:1",
                "--node-id",
                "1",
                "--listen",
                "0.0.0.0:0",
                "--peer-listen",
                "127.0.0.1:0",
            ],
            "--listen 0.0.0.0:0 listens on every interface, so it names no address other nodes \
             and clients can use; give --advertise IP:PORT",
        ),
        (
            vec!["--advertise", "127.0.0.1:7070"],
            "--advertise only applies in cluster mode",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_courierd"))
            .arg("--data-dir")
            .arg(dir.path().join("never"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!dir.path().join("never").exists(), "nothing is created");
    }
}

#[test]
fn a_node_started_before_etcd_waits_for_it() {
    let mut etcd = Etcd::reserve().unwrap();
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let launch = node_launch(&etcd, dir.path(), 1, &["--replication-factor", "1"]);
    let log = launch.log.clone();
    let starting = std::thread::spawn(move || ServerProcess::launch(launch));
    wait_for("a retry logged", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("etcd unreachable while joining; retrying")
            .then_some(())
    });
    etcd.launch().unwrap();
    let node = starting.join().unwrap().unwrap();
    let token = node.admin_token().unwrap();
    assert!(alive(&cluster_view(&node, &token)).contains(&1));
}

#[test]
fn losing_etcd_is_reported_with_the_last_state_and_healed_when_it_returns() {
    let mut etcd = etcd();
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let node = start_node(
        &etcd,
        dir.path(),
        1,
        &["--replication-factor", "1", "--cluster-shards", "4"],
    );
    let token = node.admin_token().unwrap();
    let before = wait_for("a placement", Duration::from_secs(30), || {
        let view = cluster_view(&node, &token);
        view.placement.is_some().then_some(view)
    });
    etcd.kill();
    // The node still answers, from the last state it saw.
    let lost = wait_for("etcd reported lost", Duration::from_secs(30), || {
        let view = cluster_view(&node, &token);
        (!view.etcd_connected).then_some(view)
    });
    assert!(lost.etcd_error.is_some());
    assert_eq!(lost.placement, before.placement);
    assert_eq!(alive(&lost), BTreeSet::from([1]));
    assert_eq!(health(&node), "HTTP/1.1 200 OK");
    etcd.launch().unwrap();
    wait_for("etcd connected again", Duration::from_secs(30), || {
        let view = cluster_view(&node, &token);
        (view.etcd_connected && view.registered && view.placement == before.placement).then_some(())
    });
}

/// The registry holds what a node advertises: by default its listen
/// addresses with port 0 resolved (`--peer-listen 127.0.0.1:0` registers
/// the port picked at start, never 0), else `--advertise` and
/// `--peer-advertise` as given.
#[test]
fn nodes_register_their_advertised_addresses() {
    let etcd = etcd();
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let mut launch = node_launch(&etcd, dir.path(), 1, &["--replication-factor", "1"]);
    let at = launch
        .args
        .iter()
        .position(|a| a == "--peer-listen")
        .unwrap();
    launch.args[at + 1] = "127.0.0.1:0".into();
    let log = launch.log.clone();
    let first = ServerProcess::launch(launch)
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(log).unwrap_or_default()));
    let token = first.admin_token().unwrap();
    let second = start_node(
        &etcd,
        dir.path(),
        2,
        &[
            "--advertise",
            "127.0.0.2:5555",
            "--peer-advertise",
            "127.0.0.3:6666",
        ],
    );
    let view = wait_for("2 alive nodes", Duration::from_secs(30), || {
        let view = cluster_view(&first, &token);
        (alive(&view) == BTreeSet::from([1, 2])).then_some(view)
    });
    let row = |id: u32| view.nodes.iter().find(|n| n.node_id == id).unwrap();
    assert_eq!(
        row(1).client_addr.as_deref(),
        Some(first.addr().to_string().as_str())
    );
    let peer: std::net::SocketAddr = row(1).peer_addr.as_deref().unwrap().parse().unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.1");
    assert_ne!(peer.port(), 0, "the resolved peer port is registered");
    assert_eq!(row(2).client_addr.as_deref(), Some("127.0.0.2:5555"));
    assert_eq!(row(2).peer_addr.as_deref(), Some("127.0.0.3:6666"));
    drop(second);
}

/// A client given [a cluster node that has not joined its cluster, a
/// serving server] is refused by the node with 4011 and moves to the next
/// server in the same round, with no backoff pause (the failover of
/// docs/CLI.md). The cluster node is alone in a cluster of replication
/// factor 3, so it never learns its voters; the serving server is a
/// single-node `courierd`.
#[test]
fn a_client_moves_past_a_refusing_node_to_a_serving_server_at_once() {
    use std::sync::{Arc, Mutex};
    let etcd = etcd();
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let node = start_node(&etcd, dir.path(), 1, &["--replication-factor", "3"]);
    let mut launch = Launch::new(&dir.path().join("single"), 1);
    launch.binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_courierd")));
    let single = ServerProcess::launch(launch).unwrap();
    let credential = courier_tools::token::parse(&single.admin_token().unwrap()).unwrap();
    let urls = format!("{},{}", node.url(), single.url());
    let mut options = courier_tools::ClientOptions::new(ConnectOptions::new(urls, credential));
    options.backoff = courier_tools::Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
    let mut client = courier_tools::Client::new(options);
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    client.on_notice(move |n| {
        let line = match n {
            courier_tools::Notice::Connected { server, .. } => format!("connected {server}"),
            courier_tools::Notice::Retrying { error, .. } => format!("retrying after {error}"),
        };
        seen.lock().unwrap().push(line);
    });
    let started = Instant::now();
    runtime().block_on(client.connect()).unwrap();
    let want = courier_tools::connection::normalize_url(&single.url()).unwrap();
    assert_eq!(*notices.lock().unwrap(), vec![format!("connected {want}")]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no backoff pause"
    );
}
