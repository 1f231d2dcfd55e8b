//! The shard's history store at run time (`DATA/shard-K/history/`,
//! `courier_wal::history`): every message record the WAL made durable is
//! copied into it, keyed by (conversation, seq) with its LSN as `source`,
//! and history reads (`Effect::ReadHistory`) are served from it. The core
//! keeps no per-message index; the log can be truncated behind a snapshot
//! once the store holds everything before it (`journal::snapshot`).
//!
//! Order of events for one message: the core appends its record
//! (`note_message` queues a copy) → the WAL makes it durable → the
//! durability task moves it into the store (`feed`, staged) *before* it
//! tells the core `Durable` → the history task `sync`s the store (its own
//! group commit, off the ack path). So every message the core calls
//! durable is at least staged in the store, and a read that finds a page
//! short syncs once and reads again. Only durable records enter the
//! store, so after a crash the store is never ahead of the log; what it
//! lacks is re-added from the log at the next start (`boot`). (In cluster
//! mode "durable" is Raft's commit, and the log that is never behind the
//! store is the raft log: the store may hold records the state WAL lost
//! in a crash, which the restart re-applies from the raft log and the
//! store skips as duplicates; see `journal::durability_task`.)
//!
//! Bounds: the queue holds message records appended and not yet durable,
//! bounded like the WAL's own queue and `staged` (the gateway pauses reads
//! on backpressure); the store's staging is bounded by its options
//! (`staging_bytes_max`, 16 MiB: a full one is synced before more is
//! staged); one read returns at most [`HISTORY_READ_BYTES_MAX`].
//!
//! Failure policy: a history-store error is a storage failure like a WAL
//! error (`journal`): ENOSPC keeps the daemon up read-only, anything else
//! stops it with exit code 1; the log still has every record the store
//! missed.

use super::ShardCtx;
use crate::constants::{HISTORY_READ_BYTES_MAX, READ_BATCH_RECORDS_MAX};
use crate::metrics::M;
use bytes::Bytes;
use courier_core::api::{ConversationId, Input, ReadToken, Seq};
use courier_core::record::Record;
use courier_wal::history::Page;
use std::rc::Rc;

/// A message record waiting for its WAL durability: (LSN, conversation,
/// seq, payload).
pub(super) type QueuedMessage = (u64, u64, u64, Vec<u8>);

impl ShardCtx {
    /// Queues a copy of a message record the core appended (every other
    /// kind is ignored) until the WAL reports it durable.
    pub(super) fn note_message(&self, lsn: u64, kind: u8, payload: &[u8]) {
        if let Some((conversation, seq)) = Record::history_key(kind, payload) {
            self.history_queue
                .borrow_mut()
                .push_back((lsn, conversation, seq, payload.to_vec()));
        }
    }

    /// Moves the queued message records with LSN ≤ `durable` into the
    /// history store (staged; the history task makes them durable). A full
    /// staging buffer is synced first. A store failure is a storage
    /// failure; the queue is dropped (the next start re-adds from the log).
    pub(super) async fn feed_history(self: &Rc<Self>, durable: u64) {
        while let Some((lsn, conversation, seq, payload)) = self.pop_durable_message(durable) {
            let mut result = self.history.append(conversation, seq, lsn, &payload);
            if matches!(result, Err(courier_wal::Error::Backpressure { .. })) {
                result = match self.history.sync().await {
                    Ok(_) => self.history.append(conversation, seq, lsn, &payload),
                    Err(e) => Err(e),
                };
            }
            if let Err(e) = result {
                self.history_queue.borrow_mut().clear();
                tracing::error!(shard = self.id.0, lsn, error = %e, "history store append failed");
                self.storage_failed(&e, format!("history store failed: {e}"));
                return;
            }
        }
        if durable > self.history_fed.get() {
            self.history_fed.set(durable);
            self.history_wake.notify();
        }
    }

    fn pop_durable_message(&self, durable: u64) -> Option<QueuedMessage> {
        let mut queue = self.history_queue.borrow_mut();
        if queue.front().is_some_and(|m| m.0 <= durable) {
            queue.pop_front()
        } else {
            None
        }
    }

    /// Makes what was fed durable in the store; on success every message
    /// record with LSN ≤ the returned value is durably in the store.
    pub(super) async fn sync_history(self: &Rc<Self>) -> Option<u64> {
        let fed = self.history_fed.get();
        match self.history.sync().await {
            Ok(_) => {
                if fed > self.history_covered.get() {
                    self.history_covered.set(fed);
                }
                Some(self.history_covered.get())
            }
            Err(e) => {
                tracing::error!(shard = self.id.0, error = %e, "history store sync failed");
                self.storage_failed(&e, format!("history store failed: {e}"));
                None
            }
        }
    }

    /// Reads messages `from ..= to` of a conversation for the core and
    /// answers with `Input::HistoryRead` (fewer messages on failure: the
    /// core answers the request `Unavailable`).
    pub(super) fn read_history(
        self: &Rc<Self>,
        token: ReadToken,
        conversation: ConversationId,
        from: Seq,
        to: Seq,
    ) {
        let count = to.0.saturating_sub(from.0).saturating_add(1);
        assert!(
            from.0 >= 1 && count as usize <= READ_BATCH_RECORDS_MAX,
            "the core asked for messages {}..={} in one read (READ_BATCH_RECORDS_MAX {READ_BATCH_RECORDS_MAX})",
            from.0,
            to.0
        );
        let ctx = self.clone();
        glommio::spawn_local(async move {
            let mut messages = ctx.read_page(conversation.0, from.0, count).await;
            if (messages.len() as u64) < count {
                // The newest ones may still be staged: sync once, read again.
                ctx.sync_history().await;
                messages = ctx.read_page(conversation.0, from.0, count).await;
            }
            ctx.count(M::wal_reads_total, messages.len() as u64);
            ctx.submit(Input::HistoryRead { token, messages });
        })
        .detach();
    }

    async fn read_page(&self, conversation: u64, from: u64, count: u64) -> Vec<(Seq, Bytes)> {
        match self
            .history
            .read(conversation, from, count, HISTORY_READ_BYTES_MAX)
            .await
        {
            Ok(Page::Entries(entries)) => entries
                .into_iter()
                .map(|e| (Seq(e.seq), Bytes::copy_from_slice(&e.payload)))
                .collect(),
            Ok(Page::StartsAt { first_seq }) => {
                tracing::error!(
                    shard = self.id.0,
                    conversation,
                    from,
                    first_seq,
                    "history read below the store's start"
                );
                Vec::new()
            }
            Err(e) => {
                tracing::error!(shard = self.id.0, conversation, from, error = %e, "history read failed");
                Vec::new()
            }
        }
    }
}

/// Syncs the history store whenever the durability task fed it: the
/// store's group commit, off the ack path.
pub(super) async fn history_task(ctx: Rc<ShardCtx>) {
    loop {
        ctx.history_wake.wait().await;
        if ctx.storage_failed.borrow().is_some() {
            return;
        }
        if ctx.sync_history().await.is_none() {
            return;
        }
    }
}
