//! Smoke test of every `courier-bench` scenario: each runs with tiny
//! parameters against a real `courierd` (started by the harness on a
//! temporary data directory; `failover` and `fanout --cluster 3` start a
//! 3-node cluster with its own etcd) and must exit 0 and print its JSON record as
//! the last line. No thresholds: figures from a CI machine mean nothing;
//! this only proves that every scenario still runs end to end. Baselines run
//! when `nats-server` / `redis-server` are installed; otherwise the harness
//! skips them and says why, which this test prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::process::Command;
use std::time::Instant;

fn bench(args: &[&str]) -> Value {
    bench_with(args, &["--json", "--shards", "2", "--client-threads", "2"])
}

/// Runs `courier-bench ARGS COMMON` and returns its JSON record.
fn bench_with(args: &[&str], common: &[&str]) -> Value {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_courier-bench"))
        .args(args)
        .args(common)
        .env("COURIER_LOG", "warn")
        .output()
        .expect("running courier-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "courier-bench {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for line in stdout.lines().filter(|l| l.contains("skipped")) {
        println!("{}: {line}", args[0]);
    }
    let last = stdout.lines().last().expect("some output");
    let json: Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(json["scenario"], args[0]);
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    println!(
        "{} ran in {:.1} s",
        args[0],
        started.elapsed().as_secs_f64()
    );
    json
}

fn skipped_or_measured(results: &Value, peer: &str) {
    let v = &results[peer];
    if v["skipped"].is_string() {
        println!("baseline {peer} skipped: {}", v["skipped"]);
    } else {
        assert!(v.is_object(), "no {peer} result: {results}");
    }
}

#[test]
fn send_runs_with_baselines() {
    let j = bench(&[
        "send",
        "--connections",
        "4",
        "--conversations",
        "2",
        "--window",
        "4",
        "--secs",
        "1",
        "--warmup-secs",
        "0.2",
        "--against",
        "redis,nats",
    ]);
    let r = &j["results"];
    assert!(r["courier"]["acks"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["courier"]["errors"], 0);
    skipped_or_measured(r, "redis");
    skipped_or_measured(r, "nats");
}

#[test]
fn e2e_sweeps_with_baselines() {
    let j = bench(&[
        "e2e",
        "--conversations",
        "4",
        "--members",
        "3",
        "--rate-start",
        "100",
        "--steps-max",
        "2",
        "--step-secs",
        "0.5",
        "--final-secs",
        "0.5",
        "--slo-p99-ms",
        "1000",
        "--against",
        "redis,nats",
    ]);
    let r = &j["results"];
    assert!(!r["courier"]["sweep"].as_array().unwrap().is_empty(), "{r}");
    skipped_or_measured(r, "redis");
    skipped_or_measured(r, "nats");
}

/// `--cluster 3`: the same send and e2e against a 3-node cluster from the
/// test kit (needs etcd, as every cluster test), next to the single node;
/// CPU is summed over the three nodes and every node's WAL holds the
/// messages.
#[test]
fn send_and_e2e_run_against_a_cluster_next_to_a_single_node() {
    let j = bench(&[
        "send",
        "--cluster",
        "3",
        "--connections",
        "4",
        "--conversations",
        "2",
        "--window",
        "4",
        "--secs",
        "1",
        "--warmup-secs",
        "0.2",
    ]);
    let r = &j["results"];
    let cluster = &r["courier_cluster"];
    assert!(r["courier"]["acks"].as_u64().unwrap() > 0, "{r}");
    assert!(cluster["acks"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(cluster["errors"], 0, "{r}");
    assert!(r["ratio_cluster_over_single"].as_f64().unwrap() > 0.0);
    let per_node = cluster["usage"]["server_cpu_cores_per_process"]
        .as_array()
        .unwrap();
    assert_eq!(per_node.len(), 3, "{r}");
    let nodes = cluster["disk"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{r}");
    for node in nodes {
        assert!(node["messages"].as_u64().unwrap() > 0, "{r}");
        assert!(node["state_bytes_per_message"].as_f64().unwrap() > 100.0);
    }
    let j = bench(&[
        "e2e",
        "--cluster",
        "3",
        "--conversations",
        "2",
        "--members",
        "3",
        "--rate",
        "50",
        "--final-secs",
        "0.5",
    ]);
    let r = &j["results"];
    let fin = &r["courier_cluster"]["final"];
    assert!(fin["delivered"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(fin["delivered"], fin["expected"], "{r}");
}

#[test]
fn fanout_runs() {
    let j = bench(&[
        "fanout",
        "--members",
        "50",
        "--connected",
        "20",
        "--rate",
        "20",
        "--messages",
        "5",
        "--settle-secs",
        "0.2",
    ]);
    assert_eq!(j["results"]["missing"], 0, "{}", j["results"]);
    assert_eq!(j["results"]["delivered"], 19 * 5);
    // Reported (/proc counts CPU in clock ticks: a run this short may show 0).
    assert!(
        j["results"]["server_cpu_us_per_delivery"]
            .as_f64()
            .is_some(),
        "{}",
        j["results"]
    );
}

/// `hot`: every member (senders included) receives every acked message.
#[test]
fn hot_runs() {
    let j = bench(&[
        "hot",
        "--members",
        "30",
        "--senders",
        "4",
        "--window",
        "2",
        "--warmup-secs",
        "0.3",
        "--secs",
        "1",
    ]);
    let r = &j["results"];
    assert!(r["acks"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["acked_total"].as_u64().unwrap() >= r["acks"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["deliveries_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["server_cpu_us_per_send"].as_f64().is_some(), "{r}");
}

/// `fanout --cluster 3`: members spread over three nodes and three
/// loader processes, every delivery counted once.
#[test]
fn fanout_over_a_cluster_runs() {
    let j = bench_with(
        &[
            "fanout",
            "--cluster",
            "4",
            "--members",
            "40",
            "--connected",
            "31",
            "--rate",
            "20",
            "--messages",
            "4",
            "--settle-secs",
            "0.2",
        ],
        &["--json", "--shards", "1"],
    );
    let r = &j["results"];
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(r["delivered"], 30 * 4, "{r}");
    assert_eq!(r["acked"], 4, "{r}");
    // Four nodes, replication factor 3: node 4 is beyond the voters and
    // holds a quarter of the members (docs/CLUSTER.md, "Nodes beyond the
    // voters").
    assert_eq!(j["params"]["fanout"]["replication_factor"], 3);
    assert_eq!(j["params"]["fanout"]["loaders"], 4);
    let nodes = r["nodes"]["connected_idle"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{r}");
    assert!(
        nodes.iter().all(|n| n["rss_kib"].as_u64().unwrap() > 0),
        "{r}"
    );
}

#[test]
fn catchup_runs() {
    let j = bench(&[
        "catchup",
        "--missed",
        "50",
        "--conversations",
        "5",
        "--rounds",
        "2",
    ]);
    assert!(j["results"]["round_trips_max"].as_u64().unwrap() >= 1);
}

#[test]
fn history_runs() {
    let j = bench(&[
        "history",
        "--conversations",
        "2",
        "--messages",
        "300",
        "--reads",
        "10",
    ]);
    let r = &j["results"];
    assert_eq!(r["messages"], 600);
    assert_eq!(r["old_page"]["count"], 10, "{r}");
    assert_eq!(r["old_page_after_restart"]["count"], 10, "{r}");
    let shards = r["files"].as_array().unwrap();
    assert!(
        shards
            .iter()
            .all(|s| s["history_bytes"].as_u64().unwrap() > 0),
        "every shard has a history store: {r}"
    );
}

#[test]
fn soak_runs_rounds_until_enough_is_stored() {
    let j = bench(&[
        "soak",
        "--connections",
        "4",
        "--conversations",
        "4",
        "--window",
        "4",
        "--secs",
        "0.5",
        "--warmup-secs",
        "0",
        "--messages",
        "1000",
        "--max-secs",
        "30",
    ]);
    let rounds = j["results"]["rounds"].as_array().unwrap();
    let last = rounds.last().unwrap();
    assert!(
        last["messages_stored"].as_u64().unwrap() >= 1000
            || last["elapsed_s"].as_f64().unwrap() >= 30.0,
        "{last}"
    );
    assert!(
        rounds
            .iter()
            .all(|r| r["server_rss_kib"].as_u64().unwrap() > 0),
        "{j}"
    );
}

#[test]
fn boot_runs() {
    let j = bench(&[
        "boot",
        "--conversations",
        "20",
        "--messages",
        "1",
        "--repeats",
        "5",
    ]);
    assert_eq!(j["results"]["conversations_total"], 20);
}

#[test]
fn fairness_runs_with_and_without_limits() {
    let j = bench(&[
        "fairness",
        "--quiet-conversations",
        "2",
        "--quiet-rate",
        "50",
        "--noisy-connections",
        "4",
        "--noisy-conversations",
        "2",
        "--noisy-window",
        "4",
        "--warmup-secs",
        "0.2",
        "--secs",
        "0.5",
    ]);
    let r = &j["results"];
    for limits in ["off", "default"] {
        for phase in ["alone", "with_noisy"] {
            let p = &r[limits][phase];
            assert!(
                p["quiet_acked"].as_u64().unwrap() > 0,
                "{limits} {phase}: {r}"
            );
            assert_eq!(p["errors"], 0, "{limits} {phase}: {r}");
        }
        assert!(
            r[limits]["with_noisy"]["noisy_acked_per_s"]
                .as_f64()
                .unwrap()
                > 0.0,
            "{r}"
        );
        assert!(r[limits]["ratio_quiet_ack_p99"].is_number(), "{r}");
    }
}

#[test]
fn restart_runs() {
    let j = bench(&[
        "restart",
        "--wal-gib",
        "0.002",
        "--conversations",
        "2",
        "--restarts",
        "1",
    ]);
    assert!(j["results"]["messages"].as_u64().unwrap() > 0);
}

#[test]
fn wal_runs() {
    // The WAL scenario drives courier-wal directly (no courierd, no
    // client threads), so it takes its own arguments.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_courier-bench"))
        .args(["wal", "--appenders", "16", "--seconds", "0.5"])
        .args([
            "--rounds",
            "1",
            "--warmup-seconds",
            "0.1",
            "--segment-mib",
            "8",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .output()
        .expect("running courier-bench wal");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "courier-bench wal failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_str(stdout.lines().last().expect("output")).unwrap();
    assert_eq!(json["bench"], "wal");
    assert!(json["records_per_sec"].as_f64().unwrap() > 0.0, "{json}");
    assert!(json["cores"].as_u64().unwrap() >= 1);
}

#[test]
fn failover_runs() {
    // A 3-node cluster (its own etcd): one kill of the primary, short
    // windows. The scenario has no --client-threads (its writers run on
    // the client library's runtime).
    let j = bench_with(
        &[
            "failover",
            "--kills",
            "1",
            "--writers",
            "2",
            "--window-secs",
            "0.5",
        ],
        &["--json", "--shards", "2"],
    );
    let r = &j["results"];
    assert_eq!(r["kills"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["kill_to_first_ack"]["count"], 1, "{r}");
    assert!(r["acked"].as_u64().unwrap() > 0, "{r}");
}
