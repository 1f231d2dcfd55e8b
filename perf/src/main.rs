//! `courier-bench`: Courier's benchmark harnesses, one subcommand per scenario
//! (`courier-bench wal ...`). Each scenario lives in its own module, prints
//! p50/p99/p999/max latencies from hdrhistogram and, with `--json`, ends with
//! one machine-readable JSON line.

use clap::{Parser, Subcommand};

mod wal;

#[derive(Parser)]
#[command(name = "courier-bench", about = "Courier benchmark harnesses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Durable append throughput and latency of one WAL shard, and the raw
    /// pwrite+fdatasync limit of the same device for comparison.
    Wal(wal::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Wal(args) => wal::run(args),
    }
}
