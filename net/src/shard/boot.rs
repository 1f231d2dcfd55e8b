//! Opening a shard at start: the WAL (with recovery), the core restored
//! from the newest snapshot, and the replay of every record after it.
//!
//! It must never serve, append or snapshot: it only reads what is on disk
//! and hands back a core that has seen all of it, or an error that stops
//! the start (a record replay refuses is never skipped).

use crate::config::Config;
use courier_core::api::{Lsn, ShardId};
use courier_core::{Shard, ShardConfig};
use courier_wal::{Recovered, Wal};
use std::path::Path;
use std::time::Instant;

/// What the start recovered from disk.
pub(super) struct Booted {
    /// The open WAL.
    pub(super) wal: Wal,
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
    let mut entropy = [0u8; 32];
    getrandom::getrandom(&mut entropy)
        .map_err(|e| anyhow::anyhow!("shard {}: reading OS randomness: {e}", id.0))?;
    let core_config = || ShardConfig {
        shard: id,
        shard_count: shards,
        admin_token_hash,
        entropy,
        notify: config.notify,
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
    let mut replayed = 0u64;
    let mut replay_error = None;
    wal.replay(from, |record| {
        replayed += 1;
        match core.replay(Lsn(record.lsn.0), record.kind, record.payload) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                replay_error = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("shard {}: reading the WAL for replay: {e}", id.0))?;
    if let Some(e) = replay_error {
        anyhow::bail!("shard {}: replay refused a record: {e}", id.0);
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
        core,
        last_lsn: last,
        snapshot_lsn: from.0 - 1,
    })
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
