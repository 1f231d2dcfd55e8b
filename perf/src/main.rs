//! `courier-bench`: the benchmark harness of Courier. A load generator that
//! is itself thread-per-core (one tokio current-thread runtime per core, see
//! `pool.rs`) and cheap per connection (`ws.rs`), driving a real `courierd`
//! — started here on a temporary data directory, or an external one with
//! `--server` — and, for `send` and `e2e`, the same workloads on NATS
//! JetStream and Redis Streams (`--against`) and on a replicated cluster
//! from the test kit (`--cluster 3`).
//!
//! Every scenario prints the machine, a human table, and with `--json` one
//! JSON object as the last line of stdout. Latency is always hdrhistogram
//! p50/p90/p99/p999/max. docs/PERFORMANCE.md has the commands and figures.
//!
//! # Layout
//! One module per scenario (`send`, `e2e`, `hot`, `fanout` — over a cluster in
//! `fanout_cluster`, with load-generator processes from `loader` —,
//! `catchup`, `history`, `boot`, `fairness`, `restart`, `failover`, `wal`,
//! `soak`), plus the shared pieces:
//! `clock` (one monotonic clock, precise sleeps), `ws` + `client` (the lean
//! WebSocket client), `pool` (load threads), `setup` (building worlds with
//! the client library), `server` (the server under test, /proc and
//! /metrics), `report` (tables, JSON, machine facts), `payload`, and
//! `baseline/` (the peers).
#![deny(clippy::unwrap_used)]

mod baseline;
mod boot;
mod catchup;
mod client;
mod clock;
mod e2e;
mod failover;
mod fairness;
mod fanout;
mod fanout_cluster;
mod history;
mod hot;
mod loader;
mod payload;
mod pool;
mod report;
mod restart;
mod send;
mod server;
mod setup;
mod soak;
mod wal;
mod ws;

use clap::{Parser, Subcommand};

/// Courier benchmark harness.
#[derive(Parser, Debug)]
#[command(name = "courier-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Closed-loop durable sends: acked sends/s, ack latency, server CPU.
    Send(send::Cmd),
    /// Open-loop end-to-end delivery latency over a rate sweep.
    E2e(e2e::Cmd),
    /// One big channel: delivery spread after each ack, memory per connection.
    Fanout(fanout::Cmd),
    /// One hot conversation: many senders, every member connected and
    /// receiving every message; acked sends/s, deliveries/s, CPU per send.
    Hot(hot::Cmd),
    /// Reconnect after missing messages: round trips, bytes, time to repaired.
    Catchup(catchup::Cmd),
    /// History as it grows: old-page latency, RSS, snapshot size, restart.
    History(history::Cmd),
    /// Cold start of a user in many conversations: Boot time and payload.
    Boot(boot::Cmd),
    /// A quiet workspace's latency alone and next to a noisy one, with the
    /// abuse limits off and at their defaults.
    Fairness(fairness::Cmd),
    /// Restart with a large WAL: time to serve a sync and all history.
    Restart(restart::Cmd),
    /// A 3-node cluster under steady sends, its primary killed with kill -9
    /// N times: kill → first ack on the new primary, acked/s before and after.
    Failover(failover::Cmd),
    /// Sends in rounds until N messages are stored (or a time limit):
    /// server RSS, ack p99/max, snapshot time and acked/s against
    /// messages stored.
    Soak(soak::Cmd),
    /// Durable append throughput and latency of one WAL shard, and the raw
    /// pwrite+fdatasync limit of the same device for comparison.
    Wal(wal::Args),
    /// One load-generator process of `fanout --cluster` (started by it;
    /// reads credentials on stdin, reports arrivals on stdout).
    #[command(hide = true)]
    FanoutLoader(loader::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.scenario {
        Scenario::Send(cmd) => send::run(cmd),
        Scenario::E2e(cmd) => e2e::run(cmd),
        Scenario::Fanout(cmd) if cmd.cluster > 0 => fanout_cluster::run(cmd),
        Scenario::Fanout(cmd) => fanout::run(cmd),
        Scenario::Hot(cmd) => hot::run(cmd),
        Scenario::Catchup(cmd) => catchup::run(cmd),
        Scenario::History(cmd) => history::run(cmd),
        Scenario::Soak(cmd) => soak::run(cmd),
        Scenario::Boot(cmd) => boot::run(cmd),
        Scenario::Fairness(cmd) => fairness::run(cmd),
        Scenario::Restart(cmd) => restart::run(cmd),
        Scenario::Failover(cmd) => failover::run(cmd),
        Scenario::Wal(args) => wal::run(args.clone()),
        Scenario::FanoutLoader(args) => loader::run(args),
    }
}
