//! A shard's part of a backup while serving (`crate::backup` has the
//! design): the `POST /admin/backup` request on whichever shard took it,
//! and on every shard, once per tick, taking its part of a posted backup —
//! under the snapshot lock, a fresh snapshot, then the copy of its
//! directory on a thread of its own (the shard keeps serving meanwhile).
//!
//! It must never copy the history store after the log (see
//! `crate::backup`), never let the log be truncated while its files are
//! listed and linked (the snapshot lock), and never report a backup done
//! before every copied file and directory is synced.

use super::journal::{lock_snapshots, snapshot_locked};
use super::ShardCtx;
use crate::backup::{self, BackupError, LiveEnd, ShardCopy, BACKUP_POLL, BACKUP_TIMEOUT};
use serde_json::json;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

/// Answers `POST /admin/backup` (already authorized): (status, JSON body).
pub(crate) async fn http_backup(ctx: &Rc<ShardCtx>, dir: Option<String>) -> (u16, String) {
    let started = Instant::now();
    let reply = |code: u16, error: String| (code, format!("{}\n", json!({ "error": error })));
    if ctx.mode.view().is_some() {
        return reply(
            409,
            "backup is for single-node mode; a cluster keeps replicas".into(),
        );
    }
    let Some(dir) = dir.map(PathBuf::from) else {
        return reply(
            400,
            "name the directory in the X-Courier-Backup-Dir header".into(),
        );
    };
    let shards = ctx.peer_out.len() as u16;
    let data_dir = ctx.config.data_dir.clone();
    let prepare_dir = dir.clone();
    let prepared = off_thread(move || backup::prepare_dir(&data_dir, &prepare_dir, shards)).await;
    if let Err(e) = prepared.and_then(|r| r) {
        return reply(400, e.to_string());
    }
    let id = match ctx.stop.backups.begin(dir.clone(), shards) {
        Ok(id) => id,
        Err(e) => return reply(409, e.to_string()),
    };
    tracing::info!(shard = ctx.id.0, dir = %dir.display(), "backup: started");
    take_part(ctx);
    let outcome = loop {
        if let Some(outcome) = ctx.stop.backups.outcome(id) {
            break outcome;
        }
        if started.elapsed() > BACKUP_TIMEOUT {
            ctx.stop.backups.abandon(id);
            return reply(504, BackupError::Timeout(BACKUP_TIMEOUT).to_string());
        }
        glommio::timer::sleep(BACKUP_POLL).await;
    };
    let mut rows = Vec::new();
    for (k, result) in outcome.into_iter().enumerate() {
        match result {
            Ok(copy) => rows.push(copy.json(k as u16)),
            Err(reason) => {
                let e = BackupError::Shard {
                    shard: k as u16,
                    reason,
                };
                tracing::error!(error = %e, "backup failed");
                return reply(500, e.to_string());
            }
        }
    }
    let report = json!({
        "dir": dir.display().to_string(),
        "shards": rows,
        "ms": started.elapsed().as_millis() as u64,
    });
    let report_dir = dir.clone();
    let written_report = report.clone();
    let written = off_thread(move || backup::write_report(&report_dir, &written_report)).await;
    if let Err(e) = written.and_then(|r| r) {
        return reply(500, e.to_string());
    }
    tracing::info!(dir = %dir.display(), ms = started.elapsed().as_millis() as u64, "backup: done");
    (200, format!("{report}\n"))
}

/// Takes this shard's part of a posted backup, if there is one it has not
/// taken (called every tick and by the request's shard at once).
pub(super) fn take_part(ctx: &Rc<ShardCtx>) {
    let Some((id, dir)) = ctx.stop.backups.take(ctx.id.0) else {
        return;
    };
    let ctx = ctx.clone();
    glommio::spawn_local(async move {
        let outcome = copy_part(&ctx, dir).await.map_err(|e| e.to_string());
        if let Err(reason) = &outcome {
            tracing::error!(shard = ctx.id.0, %reason, "backup: this shard's copy failed");
        }
        ctx.stop.backups.finish(id, ctx.id.0, outcome);
    })
    .detach();
}

/// Under the snapshot lock: a snapshot, then the copy of this shard's
/// directory into `DIR/shard-K` on a thread of its own.
async fn copy_part(ctx: &Rc<ShardCtx>, dir: PathBuf) -> Result<ShardCopy, BackupError> {
    let _lock = lock_snapshots(ctx).await;
    if ctx.storage_failed.borrow().is_none() {
        snapshot_locked(ctx).await;
    }
    // What the store holds must be on disk before it is copied.
    if ctx.sync_history().await.is_none() {
        return Err(BackupError::Shard {
            shard: ctx.id.0,
            reason: "the history store cannot be synced".into(),
        });
    }
    // Where the live segments' bytes are final: the store's durable end
    // (synced just above), and the log's last placed record once durable.
    let (number, offset) = ctx.history.active_end();
    let history = LiveEnd { number, offset };
    let log = match ctx.wal.active_end() {
        Some((number, offset, lsn)) => {
            ctx.wal
                .wait_durable(lsn)
                .await
                .map_err(|e| BackupError::Shard {
                    shard: ctx.id.0,
                    reason: format!("the log failed: {e}"),
                })?;
            Some(LiveEnd { number, offset })
        }
        None => None,
    };
    let snapshot_lsn = ctx.snapshot_lsn.get();
    let durable_lsn = ctx.wal.durable_lsn().0;
    let src = ctx.dir.clone();
    let dst = dir.join(format!("shard-{}", ctx.id.0));
    let mut copy = off_thread(move || backup::copy_shard(&src, &dst, history, log)).await??;
    copy.snapshot_lsn = snapshot_lsn;
    copy.durable_lsn = durable_lsn;
    Ok(copy)
}

/// Runs blocking file work on a short-lived thread of its own (not
/// glommio's blocking pool: the WAL's renames and removals queue there)
/// and awaits its result.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackupError> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("courier-backup".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| BackupError::Io {
            op: "starting a thread for",
            path: PathBuf::from("the backup"),
            source: e,
        })?;
    rx.await.map_err(|_| BackupError::Shard {
        shard: u16::MAX,
        reason: "the backup thread ended without an answer".into(),
    })
}
