//! `soak`: does the server stay flat as history grows? Rounds of the `send`
//! workload (closed loop, `--secs` measured per round; one workspace of K
//! users and C channels, set up once, so that only history grows) against
//! one `courierd` until
//! `--messages` are stored or `--max-secs` passed. After each round: the
//! messages stored (the shards' sequenced-message counters), server RSS,
//! the round's ack p99 and max and acked/s, the newest snapshot's time
//! (capture to durable file, mean over shards), the longest capture on a
//! shard's thread so far, and the snapshot and disk sizes.
//!
//! Back of the envelope: with nothing per message in memory (the seq → LSN
//! index is gone, the recent cache and dedup windows are bounded per
//! conversation) RSS and snapshots should stop growing once the C
//! conversations' windows and caches are full (a few hundred thousand
//! messages), a snapshot should cost the shard only its capture, and
//! acked/s and p99 should stay where `send` puts them.

use crate::report;
use crate::send::{run_load, setup_world, SendArgs};
use crate::server::{Common, Target};
use clap::Args;
use serde_json::{json, Value};
use std::time::Instant;

/// `courier-bench soak`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// The load of each round (`--secs`: seconds measured per round).
    #[command(flatten)]
    pub send: SendArgs,
    /// Stop once this many messages are stored.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: u64,
    /// Stop after this many seconds in all (whatever is stored by then).
    #[arg(long, default_value_t = 1800.0)]
    pub max_secs: f64,
    #[command(flatten)]
    pub common: Common,
}

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    crate::server::raise_nofile(65_536)?;
    let target = Target::start(&cmd.common)?;
    let machine = report::machine(
        &target
            .data_dir()
            .map_or_else(|| cmd.common.data_root(), |p| p.to_owned()),
    );
    report::print_machine(&machine);
    let probe = target.probe();
    let shards = f64::from(cmd.common.shards.unwrap_or(2).max(1));
    let started = Instant::now();
    let mut args = cmd.send.clone();
    args.warmup_secs = args.warmup_secs.min(1.0);
    let world = setup_world(&target, &args, "soak")?;
    let mut rounds: Vec<Value> = Vec::new();
    let mut rows = Vec::new();
    for round in 0.. {
        let v = run_load(&target, &args, &cmd.common, &world)?;
        let m = probe.metrics().unwrap_or_default();
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        let stored = get("core_messages_sequenced_total") as u64;
        let row = json!({
            "round": round,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "messages_stored": stored,
            "server_rss_kib": probe.rss_kib(),
            "acked_per_s": v["acked_per_s"],
            "ack_p99_ms": v["ack_latency"]["p99_ms"],
            "ack_max_ms": v["ack_latency"]["max_ms"],
            "snapshot_ms_last_mean": get("snapshot_us_last") / shards / 1e3,
            "snapshot_capture_ms_max": get("snapshot_capture_us_max") / 1e3,
            "snapshot_bytes_total": get("snapshot_bytes"),
            "snapshots": get("snapshots_total"),
            "errors": v["errors"],
            "disk": v["disk"],
        });
        let f = |x: &Value, d: usize| x.as_f64().map_or("-".to_owned(), |x| format!("{x:.d$}"));
        rows.push(vec![
            format!("{:.2}M", stored as f64 / 1e6),
            row["server_rss_kib"]
                .as_u64()
                .map_or("-".into(), |k| format!("{}", k / 1024)),
            f(&row["ack_p99_ms"], 1),
            f(&row["ack_max_ms"], 1),
            f(&row["snapshot_ms_last_mean"], 1),
            f(&row["snapshot_capture_ms_max"], 1),
            format!(
                "{:.1}",
                row["snapshot_bytes_total"].as_f64().unwrap_or(0.0) / shards / 1e6
            ),
            f(&row["acked_per_s"], 0),
        ]);
        rounds.push(row);
        if stored >= cmd.messages || started.elapsed().as_secs_f64() >= cmd.max_secs {
            break;
        }
    }
    report::table(
        &format!(
            "soak: rounds of send (K={} connections, C={} conversations, W={} in flight, {} B bodies, {} s each)",
            args.connections, args.conversations, args.window, args.body_bytes, args.secs
        ),
        &[
            "stored", "RSS MiB", "p99 ms", "max ms", "snapshot ms", "capture ms max",
            "snapshot MB/shard", "acked/s",
        ],
        &rows,
    );
    let mut params = cmd.common.params();
    params["soak"] = json!({
        "connections": args.connections, "conversations": args.conversations,
        "window": args.window, "body_bytes": args.body_bytes, "round_secs": args.secs,
        "messages": cmd.messages, "max_secs": cmd.max_secs,
    });
    report::emit(
        cmd.common.json,
        &report::envelope("soak", machine, params, json!({ "rounds": rounds })),
    );
    Ok(())
}
