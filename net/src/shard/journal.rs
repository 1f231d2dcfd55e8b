//! The shard's journal: appending what the core asks to the WAL in LSN
//! order, staging records the WAL has no room for yet, reporting
//! durability back to the core (the durability task, which first moves
//! durable message records into the history store), moving staged
//! records in as room appears (the staging task), snapshots and the log
//! truncation behind them, and the storage-failure policy (ENOSPC keeps the daemon up read-only; any other
//! storage error stops it with exit code 1; a write refused because
//! shutdown closed the WAL is no failure).
//!
//! It must never tell the core a record is durable before the WAL says so
//! (except under the `ack_before_fsync` failpoint, broken on purpose),
//! never reorder LSNs, never let `staged` grow while client reads go on
//! (the gateway pauses reads on backpressure), and never write a snapshot
//! that covers records not yet durable.

use super::ShardCtx;
use crate::constants::SNAPSHOT_BUSY_POLL;
use crate::metrics::M;
use courier_core::api::{Input, Lsn};
use std::rc::Rc;
use std::time::Instant;

impl ShardCtx {
    /// Appends in the core's order. When the WAL queue is full the record
    /// waits in `staged` (and so does every later one, to keep LSNs in
    /// order) until the staging task finds room; client reads pause
    /// meanwhile (see `backpressure`), which bounds `staged`.
    pub(super) fn append(self: &Rc<Self>, lsn: Lsn, kind: u8, payload: Vec<u8>) {
        if self.storage_failed.borrow().is_some() {
            // The core was told and refuses writes; anything it still asks
            // for is never acknowledged, which is the safe outcome.
            return;
        }
        self.note_message(lsn.0, kind, &payload);
        #[cfg(feature = "failpoints")]
        if crate::failpoints::get().ack_before_fsync {
            // Broken on purpose: the core hears "durable" now, the record
            // reaches the WAL only after the staging task's delay.
            self.staged.borrow_mut().push_back((lsn, kind, payload));
            self.staged_wake.notify();
            self.submit(Input::Durable { lsn });
            return;
        }
        if !self.staged.borrow().is_empty() {
            self.staged.borrow_mut().push_back((lsn, kind, payload));
            return;
        }
        match self.wal.append(kind, &payload) {
            Ok(got) => self.appended_ok(lsn, got),
            Err(courier_wal::Error::Backpressure { .. }) => {
                self.staged.borrow_mut().push_back((lsn, kind, payload));
                self.staged_wake.notify();
            }
            Err(e) => self.storage_error(lsn, e),
        }
    }

    fn appended_ok(&self, want: Lsn, got: courier_wal::Lsn) {
        assert_eq!(got.0, want.0, "core and WAL disagree on LSN numbering");
        self.appended.set(want.0);
        self.count(M::wal_appends_total, 1);
        self.durable_wake.notify();
    }

    fn storage_error(self: &Rc<Self>, lsn: Lsn, e: courier_wal::Error) {
        if self.closed_for_shutdown(&e) {
            tracing::info!(
                shard = self.id.0,
                lsn = lsn.0,
                "write refused: WAL closed for shutdown"
            );
            return;
        }
        tracing::error!(shard = self.id.0, lsn = lsn.0, error = %e, "WAL append failed");
        self.storage_failed(&e, format!("WAL append failed: {e}"));
    }

    /// Shutdown closes the WAL after its snapshot, while a request that was
    /// still in flight (typically a peer shard's forwarded send or cursor
    /// advance: peers stop on their own schedule) may still ask for a write.
    /// That is not a storage failure: nothing is acknowledged for it (the
    /// client retries after the restart under the same idempotency key), the
    /// core is told to refuse further writes, and the exit code stays 0.
    fn closed_for_shutdown(self: &Rc<Self>, error: &courier_wal::Error) -> bool {
        if !(matches!(error, courier_wal::Error::Closed) && self.stop.is_requested()) {
            return false;
        }
        if self.storage_failed.borrow().is_none() {
            let reason = "shutting down".to_string();
            *self.storage_failed.borrow_mut() = Some(reason.clone());
            self.submit(Input::StorageFailed { reason });
        }
        true
    }

    /// Marks storage as failed for good: the core stops accepting writes,
    /// `/healthz` reports it, and the daemon exits non-zero after draining.
    ///
    /// A full disk (`ENOSPC`) keeps the daemon up: writes are refused, reads
    /// go on, and a restart after freeing space recovers. Any other storage
    /// error (EIO from fsync, …) stops the daemon with exit code 1: after a
    /// failed fsync the page cache may have dropped data, and only a restart
    /// that reads the log back is safe.
    pub(super) fn storage_failed(self: &Rc<Self>, error: &courier_wal::Error, reason: String) {
        if self.closed_for_shutdown(error) {
            return;
        }
        #[cfg(feature = "failpoints")]
        crate::failpoints::get().on_storage_error(&reason);
        if self.storage_failed.borrow().is_some() {
            return;
        }
        *self.storage_failed.borrow_mut() = Some(reason.clone());
        let _ = self
            .stop
            .storage_failure
            .set(format!("storage failed on shard {}: {reason}", self.id.0));
        if !error.is_no_space() {
            self.stop.request(1);
        }
        self.submit(Input::StorageFailed { reason });
    }
}

/// Starts a snapshot in its own task unless one is being taken (the tick
/// task never waits for one: ticks, timeouts and pushes go on meanwhile).
pub(super) fn snapshot_in_background(ctx: &Rc<ShardCtx>) {
    if ctx.snapshot_busy.get() {
        return;
    }
    let ctx = ctx.clone();
    glommio::spawn_local(async move { snapshot(&ctx).await }).detach();
}

/// Writes a snapshot of the core's state once every record it covers is
/// durable; waits first for one being taken. At most one per shard at a
/// time (`snapshot_busy`).
///
/// Only the capture — a detached copy of the state between two inputs,
/// consistent as of one LSN — runs on the shard's thread; the encoding
/// (most of the cost) runs on a thread of its own, and the write is
/// asynchronous I/O. The log is truncated only after the snapshot file,
/// its rename and its directory are synced (`Wal::write_snapshot`).
pub(super) async fn snapshot(ctx: &Rc<ShardCtx>) {
    let _lock = lock_snapshots(ctx).await;
    snapshot_locked(ctx).await;
}

/// Waits until no snapshot is being taken and takes the snapshot lock:
/// while it is held no snapshot, snapshot pruning or log truncation runs.
pub(super) async fn lock_snapshots(ctx: &ShardCtx) -> SnapshotLock<'_> {
    while ctx.snapshot_busy.get() {
        glommio::timer::sleep(SNAPSHOT_BUSY_POLL).await;
    }
    ctx.snapshot_busy.set(true);
    SnapshotLock(ctx)
}

/// [`snapshot`] with the lock held by the caller.
pub(super) async fn snapshot_locked(ctx: &Rc<ShardCtx>) {
    let started = Instant::now();
    let capture = ctx.core.borrow().snapshot_capture();
    let capture_us = started.elapsed().as_micros() as u64;
    let lsn = capture.lsn();
    if lsn.0 <= ctx.snapshot_lsn.get() {
        return;
    }
    let encode_started = Instant::now();
    let bytes = encode_off_thread(ctx.id.0, capture).await;
    let encode_ms = encode_started.elapsed().as_millis() as u64;
    // Never let a snapshot claim state whose records are not on disk.
    if ctx.wal.wait_durable(courier_wal::Lsn(lsn.0)).await.is_err() {
        return;
    }
    match ctx
        .wal
        .write_snapshot(courier_wal::Lsn(lsn.0), &bytes)
        .await
    {
        Ok(()) => {
            ctx.snapshot_lsn.set(lsn.0);
            let total_us = started.elapsed().as_micros() as u64;
            {
                let mut counters = ctx.counters.borrow_mut();
                counters.add(M::snapshots_total, 1);
                counters.set(M::snapshot_bytes, bytes.len() as u64);
                counters.set(M::snapshot_capture_us_last, capture_us);
                let max = counters.get(M::snapshot_capture_us_max).max(capture_us);
                counters.set(M::snapshot_capture_us_max, max);
                counters.set(M::snapshot_us_last, total_us);
            }
            tracing::info!(
                shard = ctx.id.0,
                lsn = lsn.0,
                bytes = bytes.len(),
                capture_us,
                encode_ms,
                ms = total_us / 1000,
                "snapshot written"
            );
            truncate_log(ctx, lsn.0).await;
        }
        Err(e) => {
            #[cfg(feature = "failpoints")]
            crate::failpoints::get().on_storage_error(&format!("snapshot failed: {e}"));
            tracing::warn!(shard = ctx.id.0, error = %e, "snapshot failed (the log still has everything)")
        }
    }
}

/// The snapshot lock ([`lock_snapshots`]); clears `snapshot_busy` however
/// its holder ends.
pub(super) struct SnapshotLock<'a>(&'a ShardCtx);

impl Drop for SnapshotLock<'_> {
    fn drop(&mut self) {
        self.0.snapshot_busy.set(false);
    }
}

/// Encodes a capture on a short-lived thread of its own (not glommio's
/// blocking pool: the WAL's renames and removals queue there) and awaits
/// the bytes. If no thread can be started, encodes here (a stall, logged,
/// rather than no snapshot).
async fn encode_off_thread(shard: u16, capture: courier_core::snapshot::Capture) -> Vec<u8> {
    let (tx, rx) = futures::channel::oneshot::channel();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Some(capture)));
    let given = held.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("courier-snap-{shard}"))
        .spawn(move || {
            let taken = given.lock().ok().and_then(|mut c| c.take());
            if let Some(capture) = taken {
                // The receiver is gone only if the shard stopped: nothing to do.
                let _ = tx.send(capture.encode());
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(shard, error = %e, "no thread for the snapshot encoding; encoding on the shard");
    } else if let Ok(bytes) = rx.await {
        return bytes;
    }
    let taken = held.lock().ok().and_then(|mut c| c.take());
    match taken {
        Some(capture) => capture.encode(),
        None => panic!("snapshot encoding thread ended without an answer"),
    }
}

/// Deletes the log's sealed segments behind the snapshot at `lsn` whose
/// message records are all durable in the history store (single-node mode,
/// and cluster mode: a follower behind it catches up from a snapshot,
/// `catchup`; the WAL itself never deletes what its oldest kept snapshot needs
/// for replay). Nothing is deleted when the store cannot be synced.
async fn truncate_log(ctx: &Rc<ShardCtx>, lsn: u64) {
    if !ctx.truncate_log {
        return;
    }
    let Some(covered) = ctx.sync_history().await else {
        return;
    };
    let below = covered.min(lsn).saturating_add(1);
    let first_before = ctx.wal.first_lsn().0;
    match ctx
        .wal
        .delete_segments_before(courier_wal::Lsn(below))
        .await
    {
        Ok(first) if first.0 > first_before => tracing::info!(
            shard = ctx.id.0,
            first_lsn = first.0,
            history_covered = covered,
            "log truncated behind the snapshot"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::error!(shard = ctx.id.0, error = %e, "deleting log segments failed");
            ctx.storage_failed(&e, format!("log truncation failed: {e}"));
        }
    }
}

/// Reports durability to the core: waits for the WAL to make the highest
/// appended LSN durable, moves the message records it covers into the
/// history store, then feeds `Input::Durable`.
///
/// Cluster mode does not wait for the state WAL: only records Raft
/// committed — durable in the raft WAL of a quorum — are appended to it
/// (`replica`), so they are durable when appended, and the state WAL is
/// this node's materialized copy, made durable off the ack path (a crash
/// before its fsync re-applies them from the raft log at the next start,
/// which is never compacted past what the state WAL holds durably). The
/// ack then waits for one fsync (the raft WAL's, on a quorum), not two.
/// The history store may then hold records the state WAL lost in a
/// crash; the re-applied records find them there (`Appended::Duplicate`).
pub(super) async fn durability_task(ctx: Rc<ShardCtx>) {
    let committed_is_durable = ctx.mode.view().is_some();
    if committed_is_durable {
        glommio::spawn_local(watch_state_wal(ctx.clone())).detach();
    }
    // From what the boot found durable, not from `appended`: records the
    // core appended during `start` (before this task runs) must be
    // reported too, or every answer waiting on them hangs until the next
    // write.
    let mut reported = ctx.reported.get();
    loop {
        if ctx.appended.get() <= reported {
            ctx.durable_wake.wait().await;
            continue;
        }
        let target = ctx.appended.get();
        let durable = if committed_is_durable {
            Ok(())
        } else {
            ctx.wal.wait_durable(courier_wal::Lsn(target)).await
        };
        match durable {
            Ok(()) => {
                #[cfg(feature = "failpoints")]
                crate::failpoints::get().on_durable_report();
                ctx.feed_history(target).await;
                reported = target;
                ctx.submit(Input::Durable { lsn: Lsn(target) });
                ctx.reported.set(reported);
                ctx.reported_wake.notify();
            }
            Err(e) => {
                // Batches before the failed one were fsync'ed: report them
                // so their acks and deliveries go out (and reads see them)
                // rather than leaving them invisible until a restart.
                let durable = ctx.wal.durable_lsn().0;
                if durable > reported {
                    ctx.feed_history(durable).await;
                    reported = durable;
                    ctx.submit(Input::Durable { lsn: Lsn(durable) });
                }
                tracing::error!(shard = ctx.id.0, durable_lsn = reported, error = %e, "WAL failed; refusing writes");
                let reason = format!("WAL failed: {e}");
                ctx.storage_failed(&e, reason);
                ctx.reported.set(reported);
                ctx.reported_wake.notify();
                return;
            }
        }
    }
}

/// How often [`watch_state_wal`] looks for records not yet durable.
const STATE_WAL_WATCH: std::time::Duration = std::time::Duration::from_millis(50);

/// Cluster mode: nothing on the ack path waits for the state WAL's fsyncs
/// (see [`durability_task`]), so this task does, to turn a failed one into
/// a storage failure (the node stops; its restart re-applies the lost tail
/// from the raft WAL) instead of noticing only at the next append.
async fn watch_state_wal(ctx: Rc<ShardCtx>) {
    while !ctx.stop.is_requested() && ctx.storage_failed.borrow().is_none() {
        let target = ctx.appended.get();
        if target <= ctx.wal.durable_lsn().0 {
            glommio::timer::sleep(STATE_WAL_WATCH).await;
            continue;
        }
        if let Err(e) = ctx.wal.wait_durable(courier_wal::Lsn(target)).await {
            tracing::error!(shard = ctx.id.0, error = %e, "state WAL failed; refusing writes");
            ctx.storage_failed(&e, format!("state WAL failed: {e}"));
            return;
        }
    }
}

/// Moves staged records into the WAL as room appears.
pub(super) async fn staging_task(ctx: Rc<ShardCtx>) {
    loop {
        let front = ctx.staged.borrow().front().map(|(_, _, p)| p.len() as u64);
        let Some(len) = front else {
            ctx.staged_wake.wait().await;
            continue;
        };
        #[cfg(feature = "failpoints")]
        if crate::failpoints::get().ack_before_fsync {
            glommio::timer::sleep(crate::failpoints::ACK_BEFORE_FSYNC_DELAY).await;
        }
        if let Err(e) = ctx.wal.wait_for_room(1, len).await {
            let lsn = ctx.staged.borrow().front().map_or(Lsn(0), |r| r.0);
            ctx.staged.borrow_mut().clear();
            ctx.storage_error(lsn, e);
            continue;
        }
        // Append as many as fit without awaiting, keeping LSN order.
        loop {
            let Some((lsn, kind, payload)) = ctx.staged.borrow_mut().pop_front() else {
                break;
            };
            match ctx.wal.append(kind, &payload) {
                Ok(got) => ctx.appended_ok(lsn, got),
                Err(courier_wal::Error::Backpressure { .. }) => {
                    ctx.staged.borrow_mut().push_front((lsn, kind, payload));
                    break;
                }
                Err(e) => {
                    ctx.staged.borrow_mut().clear();
                    ctx.storage_error(lsn, e);
                    break;
                }
            }
        }
    }
}

/// Records between snapshots: `snapshot_every_records` in the config (a
/// failpoint may lower it for tests).
pub(super) fn snapshot_every_records(config: &crate::config::Config) -> u64 {
    #[cfg(feature = "failpoints")]
    if let Some(n) = crate::failpoints::get().snapshot_every {
        return n;
    }
    config.snapshot_every_records
}
