//! Opening a shard at start: the WAL (with recovery), the history store
//! (with its own recovery, in `shard-K/history/`), the core restored from
//! the newest snapshot, and the replay of the log: every record after the
//! snapshot into the core, and every message record from the store's
//! `durable_source` on into the store (which may be behind or ahead of the
//! snapshot after a crash: entries it has are skipped as duplicates, the
//! rest are re-added; the store is never ahead of the log — in cluster
//! mode, of the raft log: see `history`).
//! Recovery = snapshot + history store + the log's tail.
//!
//! It must never serve, append or snapshot: it only reads what is on disk
//! and hands back a core that has seen all of it, or an error that stops
//! the start (a record replay refuses is never skipped).

use crate::config::Config;
use courier_core::api::{Lsn, ShardId};
use courier_core::record::Record;
use courier_core::{Shard, ShardConfig};
use courier_wal::history::{HistoryOptions, HistoryRecovered, HistoryStore};
use courier_wal::{Recovered, Wal};
use std::path::Path;
use std::time::Instant;

/// What the start recovered from disk.
pub(super) struct Booted {
    /// The open WAL.
    pub(super) wal: Wal,
    /// The open history store, durable through `last_lsn` (unless
    /// `history_full`).
    pub(super) history: HistoryStore,
    /// The disk was full while the store caught up with the log: the shard
    /// starts read-only (the store serves what it has; the log keeps the
    /// rest until a restart with free space).
    pub(super) history_full: Option<courier_wal::Error>,
    /// The core, restored and replayed up to `last_lsn`.
    pub(super) core: Shard,
    /// The last LSN in the log.
    pub(super) last_lsn: u64,
    /// The LSN the loaded snapshot covers (0 without one).
    pub(super) snapshot_lsn: u64,
}

/// Opens the WAL, restores the core from its snapshot and replays the rest.
pub(super) async fn open_and_replay(
    id: ShardId,
    shards: u16,
    config: &Config,
    dir: &Path,
    admin_token_hash: [u8; 32],
    started: Instant,
) -> anyhow::Result<Booted> {
    let (wal, recovered, open_ms) = open_wal(id, config, dir, started).await?;
    let (history, history_recovered) = open_history(id, dir).await?;
    let mut entropy = [0u8; 32];
    getrandom::getrandom(&mut entropy)
        .map_err(|e| anyhow::anyhow!("shard {}: reading OS randomness: {e}", id.0))?;
    let core_config = || ShardConfig {
        shard: id,
        shard_count: shards,
        edges: 0,
        admin_token_hash,
        entropy,
        notify: config.notify,
        edit_window_ms: config.edit_window_ms,
    };
    let restore_started = Instant::now();
    let mut core = match &recovered.snapshot {
        Some(snap) => Shard::restore(core_config(), &snap.bytes).map_err(|e| {
            anyhow::anyhow!(
                "shard {}: restoring snapshot at LSN {}: {e}",
                id.0,
                snap.lsn.0
            )
        })?,
        None => Shard::new(core_config()),
    };
    let restore_ms = restore_started.elapsed().as_millis() as u64;
    let replay_started = Instant::now();
    let from = recovered.replay_from();
    let (replayed, mut history_full) =
        replay(id, &wal, &history, &history_recovered, &mut core, from).await?;
    if history_full.is_none() {
        history_full = full_or_fail(id, history.sync().await)?;
    }
    let last = recovered.next_lsn.0.saturating_sub(1);
    tracing::info!(
        shard = id.0,
        snapshot_lsn = from.0 - 1,
        snapshot_bytes = recovered.snapshot.as_ref().map_or(0, |s| s.bytes.len()),
        replayed,
        last_lsn = last,
        wal_open_ms = open_ms,
        restore_ms,
        replay_ms = replay_started.elapsed().as_millis() as u64,
        ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    Ok(Booted {
        wal,
        history,
        history_full,
        core,
        last_lsn: last,
        snapshot_lsn: from.0 - 1,
    })
}

/// Replays the log: records from `core_from` into the core, message
/// records from the store's durable source (or the log's first record, if
/// the log was truncated past it: everything before is in the store) into
/// the store. Returns the records the core replayed, and the store's
/// failure if the disk was full (the core's replay goes on without it). A
/// full store staging buffer stops the pass, is synced, and the pass
/// resumes where it stopped.
async fn replay(
    id: ShardId,
    wal: &Wal,
    history: &HistoryStore,
    history_recovered: &HistoryRecovered,
    core: &mut Shard,
    core_from: courier_wal::Lsn,
) -> anyhow::Result<(u64, Option<courier_wal::Error>)> {
    let store_from = history_recovered.durable_source.max(wal.first_lsn().0);
    let mut from = core_from.0.min(store_from).max(1);
    let mut replayed = 0u64;
    let mut full = None;
    loop {
        let feed = full.is_none();
        let mut error: Option<anyhow::Error> = None;
        let mut resume = None;
        wal.replay(courier_wal::Lsn(from), |record| {
            let lsn = record.lsn.0;
            if feed && lsn >= store_from {
                if let Some((conversation, seq)) = Record::history_key(record.kind, record.payload)
                {
                    match history.append(conversation, seq, lsn, record.payload) {
                        Ok(_) => {}
                        Err(courier_wal::Error::Backpressure { .. }) => {
                            resume = Some(lsn);
                            return std::ops::ControlFlow::Break(());
                        }
                        Err(e) => {
                            error = Some(anyhow::anyhow!(
                                "shard {}: adding LSN {lsn} to the history store: {e}",
                                id.0
                            ));
                            return std::ops::ControlFlow::Break(());
                        }
                    }
                }
            }
            if lsn >= core_from.0 {
                replayed += 1;
                if let Err(e) = core.replay(Lsn(lsn), record.kind, record.payload) {
                    error = Some(anyhow::anyhow!(
                        "shard {}: replay refused a record: {e}",
                        id.0
                    ));
                    return std::ops::ControlFlow::Break(());
                }
            }
            std::ops::ControlFlow::Continue(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("shard {}: reading the WAL for replay: {e}", id.0))?;
        if let Some(e) = error {
            return Err(e);
        }
        let Some(lsn) = resume else {
            return Ok((replayed, full));
        };
        full = full_or_fail(id, history.sync().await)?;
        from = lsn;
    }
}

/// A history-store sync at start: a full disk is returned (the shard then
/// starts read-only, as after an ENOSPC at run time); any other failure
/// stops the start.
fn full_or_fail(
    id: ShardId,
    synced: courier_wal::Result<u64>,
) -> anyhow::Result<Option<courier_wal::Error>> {
    match synced {
        Ok(_) => Ok(None),
        Err(e) if e.is_no_space() => {
            tracing::error!(shard = id.0, error = %e, "history store: disk full at start; serving read-only");
            Ok(Some(e))
        }
        Err(e) => Err(anyhow::anyhow!(
            "shard {}: syncing the history store: {e}",
            id.0
        )),
    }
}

/// Opens (and recovers) the history store in `DIR/history`.
async fn open_history(id: ShardId, dir: &Path) -> anyhow::Result<(HistoryStore, HistoryRecovered)> {
    let path = dir.join("history");
    let (history, recovered) = HistoryStore::open(&path, id.0, HistoryOptions::recommended())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "shard {}: opening the history store in {}: {e}",
                id.0,
                path.display()
            )
        })?;
    tracing::info!(
        shard = id.0,
        durable_source = recovered.durable_source,
        segments = recovered.segments,
        conversations = recovered.conversations,
        truncated_tail = recovered.truncated_tail.is_some(),
        "history store opened"
    );
    Ok((history, recovered))
}

/// Opens (and recovers) the WAL; also returns how long that took, in ms.
async fn open_wal(
    id: ShardId,
    config: &Config,
    dir: &Path,
    started: Instant,
) -> anyhow::Result<(Wal, Recovered, u64)> {
    let mut options = courier_wal::WalOptions::recommended();
    options.segment_bytes = config.segment_bytes;
    #[cfg(feature = "failpoints")]
    {
        options.faults = crate::failpoints::get().wal_faults();
    }
    let (wal, recovered) = Wal::open(dir, id.0, options)
        .await
        .map_err(|e| anyhow::anyhow!("shard {}: opening WAL in {}: {e}", id.0, dir.display()))?;
    let open_ms = started.elapsed().as_millis() as u64;
    let stats = recovered.stats;
    tracing::info!(
        shard = id.0,
        ms = open_ms,
        snapshot_load_ms = stats.snapshot_load.as_millis() as u64,
        segment_scan_ms = stats.segment_scan.as_millis() as u64,
        segments = stats.segments,
        segments_scanned = stats.segments_scanned,
        segments_deferred = stats.segments_deferred,
        records_verified = stats.records_verified,
        "write-ahead log opened"
    );
    Ok((wal, recovered, open_ms))
}
