//! Cluster mode: catching a follower up from a peer's shard snapshot and
//! history store when the committed records it lacks are gone from the
//! peers' state WALs (they truncate it behind their snapshots and their
//! history stores, like single-node mode). The decisions and the wire
//! formats are `courier_raft::replica::catchup`'s (sans-IO); this module
//! serves the peers' side and runs the follower's (docs/CLUSTER.md,
//! "Catching up from a snapshot").
//!
//! Follower, once a fetch reply said [`fetch::Reply::Gone`]: make its own
//! state WAL durable and its history store cover it; download the peer's
//! newest shard snapshot (state LSN `s`) into memory; copy the peer's
//! history entries above what its store holds up to `s` into its store
//! (synced); write the snapshot as its state WAL's install file
//! (`courier_wal::Wal::write_install`) and exit with [`EXIT_INSTALLED`]:
//! the restart opens the state WAL at `s + 1`, restores the core from the
//! snapshot and fetches the records after `s` from the peers' state WALs.
//! A crash anywhere before the install file exists leaves the state WAL as
//! it was and a store holding a prefix of the peer's entries (by source),
//! which the next round or the records re-fed skip as duplicates.
//!
//! Peer: answers snapshot and history requests from its state WAL's kept
//! snapshots and its history store (durable entries only), one chunk per
//! request, at most `FETCHES_SERVED_MAX` requests of any kind at once.
//!
//! Bounds: one reply waits in [`CatchUpSlot`] (a newer one replaces it);
//! the snapshot being downloaded ≤ [`catchup::SNAPSHOT_BYTES_MAX`]; a reply
//! ≤ one chunk ([`catchup::SNAPSHOT_CHUNK_BYTES`],
//! [`catchup::HISTORY_CHUNK_BYTES`] plus one entry).
//!
//! Must never: write the install file before every history entry up to
//! `s` is durable in the store; install a snapshot whose checksum does not
//! match; serve a history entry that is not durable.

use super::replica::{fatal, fetch, Replica, EXIT_DIVERGED};
use super::ShardCtx;
use crate::link::{self, CoreId};
use crate::sync::Signal;
use courier_raft::replica::catchup::{
    self, Copied, Downloaded, HistoryCopy, HistoryItem, HistoryReply, SnapshotDownload,
    SnapshotReply,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// Exit code of a follower that installed a peer's snapshot as its state
/// WAL's new start: the restart opens the state WAL after it.
pub const EXIT_INSTALLED: i32 = 77;
/// Environment variable that, set to `1`, keeps the state WAL whole in
/// cluster mode (no truncation behind snapshots: every record stays
/// fetchable, and disk grows with history, as before the catch-up from
/// snapshots existed).
pub const KEEP_STATE_WAL_ENV: &str = "COURIER_CLUSTER_KEEP_STATE_WAL";

/// Whether [`KEEP_STATE_WAL_ENV`] asks to keep the state WAL whole.
pub(super) fn keep_state_wal() -> bool {
    std::env::var(KEEP_STATE_WAL_ENV).is_ok_and(|v| v == "1")
}

/// How long the follower waits for a catch-up reply before asking again
/// (the next voter, in turn).
const CATCHUP_RETRY: Duration = Duration::from_secs(1);
/// How long the follower waits before asking again a peer whose history
/// store does not cover the snapshot yet.
const HISTORY_WAIT: Duration = Duration::from_millis(100);
/// Waits for one peer's history store before asking the next voter (5 s).
const HISTORY_WAITS_PER_PEER: u32 = 50;

const _: () = assert!(
    (catchup::SNAPSHOT_CHUNK_BYTES as usize) * 2 < crate::link::constants::PAYLOAD_BYTES_MAX
);
const _: () = assert!(
    ((catchup::HISTORY_CHUNK_BYTES as usize)
        + (catchup::HISTORY_ENTRY_BYTES_MAX as usize)
        + 28 * (catchup::HISTORY_CHUNK_ENTRIES as usize))
        < crate::link::constants::PAYLOAD_BYTES_MAX
);
// Every link kind a core receives is distinct.
const _: () = {
    let kinds = [
        super::replica::LINK_KIND_RAFT,
        fetch::LINK_KIND_FETCH_REQUEST,
        fetch::LINK_KIND_FETCH_REPLY,
        super::edge::LINK_KIND_PEER,
        catchup::LINK_KIND_SNAPSHOT_REQUEST,
        catchup::LINK_KIND_SNAPSHOT_REPLY,
        catchup::LINK_KIND_HISTORY_REQUEST,
        catchup::LINK_KIND_HISTORY_REPLY,
    ];
    let mut i = 0;
    while i < kinds.len() {
        let mut j = i + 1;
        while j < kinds.len() {
            assert!(kinds[i] != kinds[j]);
            j += 1;
        }
        i += 1;
    }
};

/// The follower's side: whether a catch-up runs, and the latest reply
/// (kind, bytes) waiting for it (one: a newer one replaces it).
#[derive(Default)]
pub(super) struct CatchUpSlot {
    running: Cell<bool>,
    reply: RefCell<Option<(u8, bytes::Bytes)>>,
    wake: Signal,
}

impl CatchUpSlot {
    /// A catch-up is running (the fetcher waits meanwhile).
    pub(super) fn running(&self) -> bool {
        self.running.get()
    }

    /// A snapshot or history reply from a peer.
    pub(super) fn deliver(&self, kind: u8, payload: bytes::Bytes) {
        if self.running.get() {
            *self.reply.borrow_mut() = Some((kind, payload));
            self.wake.notify();
        }
    }

    /// Waits up to [`CATCHUP_RETRY`] for a reply of `kind`.
    async fn wait(&self, kind: u8) -> Option<bytes::Bytes> {
        let deadline = std::time::Instant::now() + CATCHUP_RETRY;
        loop {
            let taken = self.reply.borrow_mut().take();
            if let Some((k, bytes)) = taken {
                if k == kind {
                    return Some(bytes);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = crate::sync::with_timeout(left, self.wake.wait()).await;
        }
    }
}

/// Starts the catch-up after a `Gone` from `peer` (once).
pub(super) fn start(ctx: &Rc<ShardCtx>, r: &Rc<Replica>, peer: link::NodeId, first_lsn: u64) {
    if r.catchup.running.replace(true) {
        return;
    }
    tracing::info!(
        shard = ctx.id.0,
        peer = %peer,
        peer_first_lsn = first_lsn,
        state_lsn = ctx.appended.get(),
        "replica: the records are gone from the peer's state WAL; catching up from its snapshot and history store"
    );
    let (ctx, r) = (ctx.clone(), r.clone());
    glommio::spawn_local(async move {
        run(&ctx, &r, peer).await;
        r.catchup.running.set(false);
    })
    .detach();
}

/// The peers to ask in turn: the one that answered `Gone` first, then the
/// fetch's order (leader, other voters).
fn peer_at(r: &Replica, first: link::NodeId, turn: usize) -> link::NodeId {
    if turn == 0 {
        return first;
    }
    match r.machine.borrow().fetch_request(turn - 1) {
        Some((peer, _)) => link::NodeId(peer as u32),
        None => first,
    }
}

fn send(ctx: &ShardCtx, r: &Replica, peer: link::NodeId, kind: u8, bytes: Vec<u8>) {
    let dest = CoreId(r.group.0 as u16);
    if let Err(e) = r.links.send(peer, dest, kind, bytes.into()) {
        tracing::debug!(shard = ctx.id.0, error = %e, "replica: catch-up request not queued");
    }
}

async fn run(ctx: &Rc<ShardCtx>, r: &Rc<Replica>, first: link::NodeId) {
    // Everything of the state WAL durable and in the history store first:
    // the install replaces the state WAL.
    // (`reported` does not wait for the state WAL in cluster mode: see
    // `journal::durability_task`.)
    while ctx.reported.get() < ctx.appended.get() && !ctx.stop.is_requested() {
        glommio::timer::sleep(HISTORY_WAIT).await;
    }
    if let Err(e) = ctx
        .wal
        .wait_durable(courier_wal::Lsn(ctx.appended.get()))
        .await
    {
        tracing::error!(shard = ctx.id.0, error = %e, "catch-up: the state WAL failed");
        return;
    }
    if ctx.sync_history().await.is_none() {
        return;
    }
    let state_lsn = ctx.appended.get();
    let after = ctx.history_covered.get().max(ctx.history.durable_source());
    let mut turn = 0usize;
    let Some((lsn, bytes)) = download(ctx, r, first, &mut turn).await else {
        return;
    };
    if lsn <= state_lsn {
        tracing::info!(
            shard = ctx.id.0,
            lsn,
            state_lsn,
            "replica: the peer's snapshot is not ahead of the state WAL; fetching records again"
        );
        return;
    }
    let Some(copied) = copy_history(ctx, r, first, &mut turn, HistoryCopy::new(after, lsn)).await
    else {
        return;
    };
    if let Err(e) = ctx.history.sync().await {
        tracing::error!(shard = ctx.id.0, error = %e, "replica: history store sync failed during a catch-up");
        ctx.storage_failed(&e, format!("history store failed: {e}"));
        return;
    }
    if let Err(e) = ctx.wal.write_install(courier_wal::Lsn(lsn), &bytes).await {
        tracing::error!(shard = ctx.id.0, lsn, error = %e, "replica: writing the install file failed");
        return;
    }
    // Not `fatal`: an expected exit, logged at info level.
    tracing::info!(
        shard = ctx.id.0,
        lsn,
        snapshot_bytes = bytes.len(),
        history_entries = copied,
        state_lsn,
        code = EXIT_INSTALLED,
        "replica: installed a peer's snapshot; exiting to open the state WAL after it"
    );
    eprintln!(
        "courierd: shard {}: replica: installed a peer's snapshot at LSN {lsn} ({} bytes, {copied} history entries copied; the state WAL ended at {state_lsn}); exiting with {EXIT_INSTALLED} to open the state WAL after it",
        ctx.id.0,
        bytes.len()
    );
    std::process::exit(EXIT_INSTALLED)
}

/// Downloads a peer's newest snapshot: (LSN, body), checked.
async fn download(
    ctx: &Rc<ShardCtx>,
    r: &Rc<Replica>,
    first: link::NodeId,
    turn: &mut usize,
) -> Option<(u64, Vec<u8>)> {
    let mut d = SnapshotDownload::default();
    while !ctx.stop.is_requested() {
        let peer = peer_at(r, first, *turn);
        let held = d.held();
        let request = catchup::encode_snapshot_request(d.request());
        send(ctx, r, peer, catchup::LINK_KIND_SNAPSHOT_REQUEST, request);
        let Some(bytes) = r.catchup.wait(catchup::LINK_KIND_SNAPSHOT_REPLY).await else {
            *turn += 1;
            continue;
        };
        let reply = match catchup::decode_snapshot_reply(&bytes) {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "replica: undecodable snapshot reply");
                *turn += 1;
                continue;
            }
        };
        match d.on_reply(reply) {
            Ok(Downloaded::Done { lsn, bytes }) => return Some((lsn, bytes)),
            Ok(Downloaded::More) if d.held() > held => {}
            Ok(Downloaded::More) => *turn += 1,
            Ok(Downloaded::NoSnapshot) => *turn += 1,
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "replica: snapshot download");
                *turn += 1;
            }
        }
    }
    None
}

/// Copies the peer's history entries into the store; how many, once done
/// (`None`: stopped or failed).
async fn copy_history(
    ctx: &Rc<ShardCtx>,
    r: &Rc<Replica>,
    first: link::NodeId,
    turn: &mut usize,
    mut copy: HistoryCopy,
) -> Option<u64> {
    let mut waits = 0u32;
    let mut copied = 0u64;
    while !ctx.stop.is_requested() {
        let peer = peer_at(r, first, *turn);
        let request = catchup::encode_history_request(copy.request());
        send(ctx, r, peer, catchup::LINK_KIND_HISTORY_REQUEST, request);
        let Some(bytes) = r.catchup.wait(catchup::LINK_KIND_HISTORY_REPLY).await else {
            *turn += 1;
            continue;
        };
        let reply = match catchup::decode_history_reply(&bytes) {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "replica: undecodable history reply");
                *turn += 1;
                continue;
            }
        };
        match copy.on_reply(reply) {
            Copied::Append { entries, done } => {
                copied += entries.len() as u64;
                if !append_all(ctx, entries).await {
                    return None;
                }
                if done {
                    return Some(copied);
                }
            }
            Copied::Stale => {}
            Copied::Wait => {
                waits += 1;
                if waits % HISTORY_WAITS_PER_PEER == 0 {
                    *turn += 1;
                }
                glommio::timer::sleep(HISTORY_WAIT).await;
            }
        }
    }
    None
}

/// Appends copied entries to the store (syncing when its staging is
/// full). A refused entry means the replicas disagree: exit (diverged).
async fn append_all(ctx: &Rc<ShardCtx>, entries: Vec<HistoryItem>) -> bool {
    for e in entries {
        let mut result = ctx
            .history
            .append(e.conversation, e.seq, e.source, &e.payload);
        if matches!(result, Err(courier_wal::Error::Backpressure { .. })) {
            result = match ctx.history.sync().await {
                Ok(_) => ctx
                    .history
                    .append(e.conversation, e.seq, e.source, &e.payload),
                Err(err) => Err(err),
            };
        }
        match result {
            Ok(_) => {}
            Err(err @ courier_wal::Error::HistoryRejected { .. }) => fatal(
                ctx.id.0,
                EXIT_DIVERGED,
                &format!(
                    "a peer's history entry (source {}) refused: {err}",
                    e.source
                ),
            ),
            Err(err) => {
                tracing::error!(shard = ctx.id.0, error = %err, "replica: history store append failed during a catch-up");
                ctx.storage_failed(&err, format!("history store failed: {err}"));
                return false;
            }
        }
    }
    true
}

/// Answers a peer's snapshot request with a piece of the snapshot it
/// names (or the newest kept, from its start, when that one is no longer
/// kept), on its own task.
pub(super) fn serve_snapshot(ctx: &Rc<ShardCtx>, r: &Rc<Replica>, m: &link::Inbound) {
    let request = match catchup::decode_snapshot_request(&m.payload) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(shard = ctx.id.0, from = %m.from_node, error = %e, "replica: undecodable snapshot request");
            return;
        }
    };
    serve(ctx, r, m, move |ctx| async move {
        let kept = ctx.wal.snapshot_lsns();
        let newest = kept.last().copied();
        let (lsn, offset) = match kept.iter().find(|l| l.0 == request.lsn) {
            Some(&lsn) => (lsn, request.offset),
            None => match newest {
                Some(lsn) => (lsn, 0),
                None => return catchup::encode_snapshot_reply(&SnapshotReply::None),
            },
        };
        let max = catchup::SNAPSHOT_CHUNK_BYTES;
        let reply = match ctx.wal.read_snapshot_range(lsn, offset, max).await {
            Ok(p) => SnapshotReply::Piece {
                lsn: p.lsn.0,
                body_len: p.body_len,
                body_crc: p.body_crc,
                offset,
                bytes: p.bytes,
            },
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, lsn = lsn.0, error = %e, "replica: reading a snapshot for a peer");
                SnapshotReply::None
            }
        };
        catchup::encode_snapshot_reply(&reply)
    });
}

/// Answers a peer's history request from the store (durable entries), on
/// its own task.
pub(super) fn serve_history(ctx: &Rc<ShardCtx>, r: &Rc<Replica>, m: &link::Inbound) {
    let request = match catchup::decode_history_request(&m.payload) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(shard = ctx.id.0, from = %m.from_node, error = %e, "replica: undecodable history request");
            return;
        }
    };
    serve(ctx, r, m, move |ctx| async move {
        // What the store covers before the scan: the scan sees at least that.
        let covered = ctx.history_covered.get();
        let scanned = ctx
            .history
            .scan(
                request.after,
                u64::from(catchup::HISTORY_CHUNK_ENTRIES),
                catchup::HISTORY_CHUNK_BYTES,
            )
            .await;
        let entries = match scanned {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "replica: reading history for a peer");
                return catchup::encode_history_reply(&HistoryReply {
                    after: request.after,
                    covered: 0,
                    entries: Vec::new(),
                });
            }
        };
        let entries = entries
            .into_iter()
            .map(|e| HistoryItem {
                conversation: e.conversation,
                seq: e.seq,
                source: e.source,
                payload: e.payload,
            })
            .collect();
        catchup::encode_history_reply(&HistoryReply {
            after: request.after,
            covered,
            entries,
        })
    });
}

/// Runs `answer` on its own task and sends what it returns back to the
/// requesting core with the reply kind for `m`'s kind; at most
/// `FETCHES_SERVED_MAX` requests (of any kind) at once, more are dropped
/// (the peer asks again).
fn serve<F, Fut>(ctx: &Rc<ShardCtx>, r: &Rc<Replica>, m: &link::Inbound, answer: F)
where
    F: FnOnce(Rc<ShardCtx>) -> Fut + 'static,
    Fut: std::future::Future<Output = Vec<u8>> + 'static,
{
    let kind = match m.kind {
        catchup::LINK_KIND_SNAPSHOT_REQUEST => catchup::LINK_KIND_SNAPSHOT_REPLY,
        _ => catchup::LINK_KIND_HISTORY_REPLY,
    };
    if !r.take_serve_slot() {
        return;
    }
    let (ctx, r, to, core) = (ctx.clone(), r.clone(), m.from_node, m.from_core);
    glommio::spawn_local(async move {
        let reply = answer(ctx.clone()).await;
        if let Err(e) = r.links.send(to, core, kind, reply.into()) {
            tracing::debug!(shard = ctx.id.0, error = %e, "replica: catch-up reply not queued");
        }
        r.release_serve_slot();
    })
    .detach();
}

/// A fetch reply: records for the machine, or `Gone` (start a catch-up).
pub(super) fn on_fetch_reply(ctx: &Rc<ShardCtx>, r: &Rc<Replica>, m: &link::Inbound) {
    match fetch::decode_reply(&m.payload) {
        Ok(fetch::Reply::Records(records)) => r.on_fetch_records(ctx, records),
        Ok(fetch::Reply::Gone { first_lsn }) => start(ctx, r, m.from_node, first_lsn),
        Err(e) => {
            tracing::warn!(shard = ctx.id.0, error = %e, "replica: undecodable fetch reply");
        }
    }
}
