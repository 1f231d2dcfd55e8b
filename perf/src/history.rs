//! `history`: the cost of history as it grows. One user posts M messages
//! to each of C channels (N = C·M in all), then reads R pages of *old*
//! history (`History Before(s)`, 100 messages, `s` uniform over everything
//! older than the recent caches), one request at a time: the page latency
//! p50/p99/max. Reported with the server's RSS after the fill, and after a
//! clean stop (which writes every shard's snapshot) the snapshot size per
//! shard and the bytes of the WAL and history-store directories; then the
//! server starts again (time to ready) and the same reads are measured
//! once more (RSS after them too).
//!
//! Back of the envelope: an old page used to be 100 reads of one WAL record
//! each by LSN, one after another (each a direct-I/O read of ≈ 4 KiB:
//! ≈ 100 × 50–100 µs on this virtio disk); from the history store it is one
//! directory block (cached after the first), one positions read and one
//! merged read of the page's entries (≈ 3 reads). Memory used to grow by
//! 8 bytes per message (the seq → LSN index), in RAM and in every
//! snapshot; with the store it grows by a row per conversation.

use crate::client::Session;
use crate::pool;
use crate::report::{self, histogram, latency_json, latency_row, record_ns};
use crate::server::{dir_bytes, Common, Target};
use crate::setup;
use anyhow::{bail, Context};
use clap::Args;
use courier_core::api::{ConversationId, Credential, HistoryAnchor, Request, Response, Seq};
use serde_json::{json, Value};
use std::path::Path;

/// `courier-bench history`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// Channels written to (C).
    #[arg(long, default_value_t = 16)]
    pub conversations: usize,
    /// Messages posted to each channel (M).
    #[arg(long, default_value_t = 25_000)]
    pub messages: usize,
    /// Old pages read (R), one at a time, before and after the restart.
    #[arg(long, default_value_t = 2_000)]
    pub reads: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    #[command(flatten)]
    pub common: Common,
}

/// Messages per page read.
const PAGE: u32 = 100;

/// Pages start at least this far below the head (the recent cache holds
/// the newest 64 of each conversation).
const OLD_MARGIN: u64 = 200;

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    if cmd.common.server.is_some() {
        bail!("history stops and starts the server itself: drop --server");
    }
    let mut target = Target::start(&cmd.common)?;
    let data_dir = target.data_dir().context("no data directory")?.to_owned();
    let machine = report::machine(&data_dir);
    report::print_machine(&machine);
    let c = cmd.conversations.max(1);
    let m = cmd.messages.max(OLD_MARGIN as usize + 1);
    let fill_start = std::time::Instant::now();
    let (credential, conversations) = pool::block_on(async {
        let (_, users) = setup::workspace_with_users(&target, "bench-history", "u", 1).await?;
        let conn = setup::connect(&target, &users[0].credential).await?;
        let conversations = setup::channels(&conn, "history-", c).await?;
        setup::post(&conn, &conversations, m, cmd.body_bytes).await?;
        conn.close().await;
        Ok((users[0].credential.clone(), conversations))
    })?;
    let fill_s = fill_start.elapsed().as_secs_f64();
    let n = (c * m) as u64;
    let rss_fill = target.probe().rss_kib();
    println!(
        "filled: {n} messages in {fill_s:.1} s; server RSS {} MiB",
        mib(rss_fill)
    );
    let before = read_pages(&target, &credential, &conversations, m as u64, cmd.reads)?;
    target.stop()?;
    let files = footprint(&data_dir);
    println!("after a clean stop: {files}");
    let started = target.restart()?;
    println!(
        "restarted: ready after {:.0} ms",
        started.ready_ns as f64 / 1e6
    );
    let after = read_pages(&target, &credential, &conversations, m as u64, cmd.reads)?;
    let rss_restarted = target.probe().rss_kib();
    report::table(
        &format!(
            "history: {n} messages over {c} channels, {} old pages of {PAGE}",
            cmd.reads
        ),
        report::LATENCY_HEADER,
        &[
            latency_row("old page (after the fill)", &before),
            latency_row("old page (after a restart)", &after),
        ],
    );
    println!(
        "server RSS: {} MiB after the fill, {} MiB after the restart and the reads",
        mib(rss_fill),
        mib(rss_restarted)
    );
    let mut params = cmd.common.params();
    params["history"] = json!({
        "conversations": c, "messages_per_conversation": m, "reads": cmd.reads,
        "body_bytes": cmd.body_bytes,
    });
    let results = json!({
        "messages": n,
        "fill_s": fill_s,
        "rss_kib_after_fill": rss_fill,
        "rss_kib_after_restart": rss_restarted,
        "old_page": latency_json(&before),
        "old_page_after_restart": latency_json(&after),
        "files": files,
        "restart_ready_ms": started.ready_ns as f64 / 1e6,
    });
    report::emit(
        cmd.common.json,
        &report::envelope("history", machine, params, results),
    );
    Ok(())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// Reads `reads` old pages, one at a time, from seeded positions.
fn read_pages(
    target: &Target,
    credential: &Credential,
    conversations: &[ConversationId],
    head: u64,
    reads: usize,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    pool::block_on(async {
        let mut session = Session::login(target.addr, None, credential).await?;
        let mut h = histogram();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..reads {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let conversation = conversations[(seed % conversations.len() as u64) as usize];
            // Before(s) with s in 2 ..= head - OLD_MARGIN.
            let before = 2 + (seed >> 20) % (head - OLD_MARGIN - 1);
            let called = session
                .call(Request::History {
                    conversation,
                    anchor: HistoryAnchor::Before(Seq(before)),
                    limit: PAGE,
                })
                .await?;
            let Response::History { messages, .. } = called.response else {
                bail!("History answered something else");
            };
            let want = (before - 1).min(u64::from(PAGE));
            if messages.len() as u64 != want || messages.iter().any(|m| m.seq.0 >= before) {
                bail!(
                    "History Before({before}) of {conversation:?}: {} messages, {want} expected",
                    messages.len()
                );
            }
            record_ns(&mut h, called.rtt_ns);
        }
        session.conn.close().await;
        Ok(h)
    })
}

/// Per shard: snapshot bytes (newest), WAL and history-store bytes.
fn footprint(data_dir: &Path) -> Value {
    let mut shards = Vec::new();
    for k in 0.. {
        let dir = data_dir.join(format!("shard-{k}"));
        if !dir.is_dir() {
            break;
        }
        let mut snapshot = 0u64;
        let mut wal = 0u64;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let len = e.metadata().map_or(0, |m| m.len());
                if name.starts_with("snap-") && name.ends_with(".snap") {
                    snapshot = snapshot.max(len);
                } else if name.starts_with("wal-") {
                    wal += len;
                }
            }
        }
        let history = dir.join("history");
        shards.push(json!({
            "shard": k,
            "snapshot_bytes": snapshot,
            "wal_bytes": wal,
            "history_bytes": if history.is_dir() { dir_bytes(&history) } else { 0 },
        }));
    }
    Value::Array(shards)
}
