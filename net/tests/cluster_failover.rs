//! Failures of a replicated 3-node cluster with real processes
//! (`courier_tools::testkit::cluster`: a private etcd and three cluster-mode
//! `courierd`s, two cores each, on loopback), checked by the ledger
//! (`courier_tools::ledger`) exactly like the single-node crash test: four
//! writers send unique messages with client message ids through the client
//! library given every node (`ws://a/,ws://b/,ws://c/`), which fails over
//! to the node that serves; unknown outcomes are retried with the same id;
//! observers record live deliveries; at the end every conversation is read
//! from seq 1 on the serving node and the ledger must be clean — every
//! acknowledged message present exactly once, at its acknowledged seq, no
//! gap or reorder among acknowledged ones, nothing unexpected.
//!
//! - `kill -9` cycles: each cycle kills the primary (every fourth cycle a
//!   follower instead) under load and restarts it; after the failover
//!   every writer re-sends the last message it had acknowledged before the
//!   kill, which must get the first ack back (the dedup window is
//!   replicated).
//!   `COURIER_CLUSTER_CYCLES=N` (default 3; the long run is 50)
//!   and `COURIER_CLUSTER_SEED=S`.
//! - partition: the primary's peer links are blackholed; it stops serving
//!   within a bound, the other two elect a new primary, the load goes on;
//!   healed, the old primary serves no clients (a follower) and catches
//!   up; nothing acknowledged is lost.
//! - every node killed at once and restarted: everything acknowledged is
//!   there.
//! - etcd killed under load: acknowledgements continue (Raft commits
//!   without etcd), the status says etcd is disconnected, and reconnected
//!   once etcd is back.
//!
//! After the kill cycles, the partition and the restart of all nodes,
//! every follower must follow the primary on every core and have applied
//! everything it applied (`GET /admin/cluster`'s per-core rows): the
//! standbys are hot again. A node that exits by itself (a deposed primary
//! exits on purpose) is restarted by the test kit's supervisor
//! (`Cluster::wait_primary`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::load::{
    check, env_u64, fixture_at, last_acked, resend, runtime, Fixture, Load, LoadOptions, Rng,
};
use courier_tools::admin_http::{cluster_status, ClusterReport, ClusterView};
use courier_tools::ledger::Ledger;
use courier_tools::testkit::cluster::{Cluster, ClusterOptions, Probe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the first primary may take (three daemons starting on two
/// shared cores, etcd, the first elections).
const FIRST_PRIMARY: Duration = Duration::from_secs(60);

/// How long a failover may take, from the kill (or cut) to a single
/// serving node.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// How long a primary cut off from its peers may go on serving.
const CUT_BOUND: Duration = Duration::from_secs(10);

/// Writers: sends keep retrying over a failover for this long.
const RETRY_DEADLINE: Duration = Duration::from_secs(30);

fn start(proxies: bool) -> Cluster {
    let options = ClusterOptions {
        proxies,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_courierd"))),
        ..ClusterOptions::default()
    };
    Cluster::start(options).unwrap_or_else(|e| panic!("the cluster did not start: {e}"))
}

fn primary(cluster: &mut Cluster, within: Duration, what: &str) -> usize {
    cluster
        .wait_primary(within)
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", cluster.logs(30)))
}

fn load_options() -> LoadOptions {
    LoadOptions {
        retry_deadline: RETRY_DEADLINE,
        resend_acked_pct: 5,
        // ≈ 100 sends/s per writer: a 2-core machine runs three nodes and
        // etcd, and a re-send across a failover stays inside the dedup
        // window (see the kill -9 test).
        pace_ms_max: 20,
    }
}

fn new_fixture(cluster: &Cluster, ledger: &Arc<Mutex<Ledger>>, at: usize, name: &str) -> Fixture {
    let addr = cluster.node(at).process().addr();
    fixture_at(
        addr,
        cluster.admin_credential().unwrap(),
        ledger.clone(),
        name,
    )
}

fn acked(ledger: &Arc<Mutex<Ledger>>) -> u64 {
    ledger.lock().unwrap().totals().0
}

/// Waits up to `within` until the ledger holds more than `than` acks.
fn acks_grow(ledger: &Arc<Mutex<Ledger>>, than: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if acked(ledger) > than {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Stops the load, asserts no member was refused, and checks the ledger
/// against a full read through the cluster's server list.
fn stop_and_check(
    cluster: &Cluster,
    rt: &tokio::runtime::Runtime,
    load: Load,
    fx: &Fixture,
    what: &str,
) {
    let (errors, _) = load.stop(rt);
    assert!(
        errors.is_empty(),
        "{what}: {} members' sends refused, first: {:?}\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        cluster.logs(30)
    );
    let report = check(rt, cluster.servers(), &[fx]);
    assert!(report.is_clean(), "{what}: {report}\n{}", cluster.logs(30));
}

#[test]
fn kill_9_of_the_primary_under_load_loses_nothing_acknowledged() {
    let seed = env_u64("COURIER_CLUSTER_SEED", 0xc105_7e55);
    let cycles = env_u64("COURIER_CLUSTER_CYCLES", 3);
    eprintln!("cluster kill -9: seed {seed} (COURIER_CLUSTER_SEED), {cycles} cycles (COURIER_CLUSTER_CYCLES)");
    let started = Instant::now();
    let mut cluster = start(false);
    let mut p = primary(&mut cluster, FIRST_PRIMARY, "first primary");
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::new(seed)));
    let fx = new_fixture(&cluster, &ledger, p, "kill9");
    let mut rng = Rng::new(seed);
    let (mut primaries_killed, mut followers_killed) = (0u64, 0u64);
    let mut failovers: Vec<Duration> = Vec::new();
    for cycle in 0..cycles {
        let what = format!("seed {seed} cycle {cycle}");
        let load = Load::start(&rt, cluster.servers(), &fx, load_options(), seed ^ cycle);
        let before = acked(&ledger);
        assert!(
            acks_grow(&ledger, before, FAILOVER_BOUND),
            "{what}: no ack before the kill\n{}",
            cluster.logs(30)
        );
        std::thread::sleep(Duration::from_millis(200 + rng.below(400)));
        // The primary, but every fourth cycle a follower.
        let victim = if cycle % 4 == 3 {
            followers_killed += 1;
            (p + 1 + rng.below(2) as usize) % 3
        } else {
            primaries_killed += 1;
            p
        };
        // Acknowledged by the node about to die (or just before it): a
        // re-send after the failover must get these acks back. It is sent
        // as soon as a node serves again, while few messages followed them
        // (the dedup window is the last DEDUP_WINDOW_PER_CONVERSATION = 512
        // messages of a conversation).
        let before_kill = last_acked(&fx);
        let killed_at = Instant::now();
        cluster.kill9(victim);
        let at_kill = acked(&ledger);
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        p = primary(&mut cluster, FAILOVER_BOUND, &what);
        failovers.push(killed_at.elapsed());
        let resent = resend(&rt, cluster.servers(), &fx, &before_kill);
        assert_eq!(
            resent,
            before_kill.len() as u64,
            "{what}: a re-send of a message acknowledged before the kill was not acknowledged"
        );
        cluster
            .restart(victim)
            .unwrap_or_else(|e| panic!("{what}: restart of node {}: {e}", victim + 1));
        assert!(
            acks_grow(&ledger, at_kill, FAILOVER_BOUND),
            "{what}: nothing acknowledged after node {} was killed\n{}",
            victim + 1,
            cluster.logs(30)
        );
        let (errors, _) = load.stop(&rt);
        assert!(
            errors.is_empty(),
            "{what}: {} members' sends refused, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        let report = check(&rt, cluster.servers(), &[&fx]);
        assert!(report.is_clean(), "{what}: {report}\n{}", cluster.logs(30));
    }
    if cycles > 0 {
        assert_caught_up(&cluster, p, &format!("seed {seed} after {cycles} cycles"));
    }
    let (acked_total, unknown, refused) = ledger.lock().unwrap().totals();
    failovers.sort();
    eprintln!(
        "cluster kill -9: {cycles} cycles ({primaries_killed} primaries, {followers_killed} \
         followers) in {:.1} s; seed {seed}; {acked_total} acknowledged, {unknown} unknown, \
         {refused} refused; kill to single serving node: median {:?}, max {:?}; {} exits seen by \
         the supervisor",
        started.elapsed().as_secs_f64(),
        failovers
            .get(failovers.len() / 2)
            .copied()
            .unwrap_or_default(),
        failovers.last().copied().unwrap_or_default(),
        cluster.exits().len()
    );
    assert!(
        cycles == 0 || acked_total > cycles,
        "the load hardly ran: {acked_total} acks"
    );
}

/// Waits up to `within` until node `index` does not serve (it refuses
/// sessions, is down, or exited); how long that took.
fn stops_serving(cluster: &Cluster, index: usize, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if cluster.probe(index) != Probe::Serving {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_primary_cut_off_from_its_peers_stops_serving_and_rejoins_as_a_follower() {
    let mut cluster = start(true);
    let old = primary(&mut cluster, FIRST_PRIMARY, "first primary");
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::new(0xc07)));
    let fx = new_fixture(&cluster, &ledger, old, "cut");
    let load = Load::start(&rt, cluster.servers(), &fx, load_options(), 0xc07);
    assert!(
        acks_grow(&ledger, 0, FAILOVER_BOUND),
        "no ack before the cut"
    );
    cluster.cut(old).unwrap();
    let cut_at = Instant::now();
    let stopped = stops_serving(&cluster, old, CUT_BOUND);
    assert!(
        stopped.is_some(),
        "node {} still serves {CUT_BOUND:?} after it was cut off\n{}",
        old + 1,
        cluster.logs(30)
    );
    let new = primary(&mut cluster, FAILOVER_BOUND, "a new primary during the cut");
    assert_ne!(new, old, "the cut-off node cannot be the primary");
    let at_new = acked(&ledger);
    assert!(
        acks_grow(&ledger, at_new, FAILOVER_BOUND),
        "nothing acknowledged by the new primary\n{}",
        cluster.logs(30)
    );
    eprintln!(
        "cut: node {} stopped serving after {:?}; node {} serves {:?} after the cut; \
         exits seen by the supervisor: {:?}",
        old + 1,
        stopped.unwrap_or_default(),
        new + 1,
        cut_at.elapsed(),
        cluster
            .exits()
            .iter()
            .map(|e| (e.node + 1, e.status.code()))
            .collect::<Vec<_>>()
    );
    cluster.heal(old).unwrap();
    // Healed: the old primary runs (restarted if it exited) and refuses
    // clients as a follower; the new one keeps serving.
    std::thread::sleep(Duration::from_secs(2));
    let after = primary(&mut cluster, FAILOVER_BOUND, "a primary after the heal");
    assert_ne!(after, old, "a rejoining node must not take over");
    let rejoined = Instant::now();
    loop {
        match cluster.probe(old) {
            Probe::NotServing(_) => break,
            other => assert!(
                rejoined.elapsed() < FAILOVER_BOUND,
                "node {} did not come back as a follower: {other:?}\n{}",
                old + 1,
                cluster.logs(30)
            ),
        }
        cluster.supervise().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_and_check(&cluster, &rt, load, &fx, "cut and heal");
    assert_caught_up(&cluster, after, "cut and heal");
}

#[test]
fn every_node_killed_at_once_and_restarted_keeps_everything_acknowledged() {
    let mut cluster = start(false);
    let p = primary(&mut cluster, FIRST_PRIMARY, "first primary");
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::new(0xa11)));
    let fx = new_fixture(&cluster, &ledger, p, "all");
    let load = Load::start(&rt, cluster.servers(), &fx, load_options(), 0xa11);
    assert!(
        acks_grow(&ledger, 0, FAILOVER_BOUND),
        "no ack before the kill"
    );
    std::thread::sleep(Duration::from_millis(500));
    cluster.kill_all();
    let at_kill = acked(&ledger);
    cluster
        .restart_all()
        .unwrap_or_else(|e| panic!("restart of all nodes: {e}\n{}", cluster.logs(30)));
    let p = primary(&mut cluster, FIRST_PRIMARY, "a primary after all restarted");
    assert!(
        acks_grow(&ledger, at_kill, FAILOVER_BOUND),
        "nothing acknowledged after the restart\n{}",
        cluster.logs(30)
    );
    stop_and_check(&cluster, &rt, load, &fx, "all killed");
    assert_caught_up(&cluster, p, "all killed");
}

fn view(cluster: &Cluster, index: usize) -> Option<ClusterView> {
    let token = cluster.admin_token().ok()?;
    let url = cluster.node(index).process().url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    match rt.block_on(cluster_status(&url, &token, Duration::from_secs(3))) {
        Ok(ClusterReport::Cluster(view)) => Some(*view),
        _ => None,
    }
}

fn wait_status(
    cluster: &Cluster,
    index: usize,
    what: &str,
    pred: impl Fn(&ClusterView) -> bool,
) -> ClusterView {
    let deadline = Instant::now() + FAILOVER_BOUND;
    loop {
        if let Some(v) = view(cluster, index).filter(|v| pred(v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "node {}: {what} not seen within {FAILOVER_BOUND:?}: last status {:?}",
            index + 1,
            view(cluster, index)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every other node follows `primary` on every core and has
/// applied everything the primary had applied when this was called (call
/// it with the load stopped): the followers are hot standbys again.
fn assert_caught_up(cluster: &Cluster, primary: usize, what: &str) {
    let led = view(cluster, primary)
        .unwrap_or_else(|| panic!("{what}: no status from the primary"))
        .cores;
    assert!(
        !led.is_empty(),
        "{what}: the primary reports no Raft groups"
    );
    let id = primary as u64 + 1;
    for index in (0..cluster.nodes().len()).filter(|i| *i != primary) {
        wait_status(cluster, index, &format!("{what}: caught up"), |v| {
            v.cores.len() == led.len()
                && v.cores
                    .iter()
                    .zip(&led)
                    .all(|(mine, theirs)| mine.leader == Some(id) && mine.applied >= theirs.applied)
        });
    }
}

#[test]
fn killing_etcd_under_load_does_not_stop_the_serving_path() {
    let mut cluster = start(false);
    let p = primary(&mut cluster, FIRST_PRIMARY, "first primary");
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::new(0xe7c))); // etcd
    let fx = new_fixture(&cluster, &ledger, p, "etcd");
    let load = Load::start(&rt, cluster.servers(), &fx, load_options(), 0xe7c);
    assert!(
        acks_grow(&ledger, 0, FAILOVER_BOUND),
        "no ack before etcd died"
    );
    cluster.etcd_mut().kill();
    let down = wait_status(&cluster, p, "etcd disconnected", |v| !v.etcd_connected);
    assert!(down.etcd_error.is_some(), "{down:?}");
    // Raft commits without etcd: acknowledgements go on, on the same node.
    let at = acked(&ledger);
    assert!(
        acks_grow(&ledger, at + 20, Duration::from_secs(10)),
        "acknowledgements stopped with etcd\n{}",
        cluster.logs(30)
    );
    assert_eq!(cluster.probe(p), Probe::Serving, "the primary stays");
    cluster.etcd_mut().launch().unwrap();
    for index in 0..3 {
        wait_status(&cluster, index, "etcd reconnected and registered", |v| {
            v.etcd_connected && v.registered
        });
    }
    stop_and_check(&cluster, &rt, load, &fx, "etcd killed");
}
