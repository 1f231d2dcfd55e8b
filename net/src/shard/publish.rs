//! Metrics publishing: maps this shard's runtime state, its WAL's
//! counters and its core's metrics onto the [`crate::metrics::M`] counters,
//! and publishes them to the node-wide board for `/metrics`.
//!
//! It only reads: it must never change runtime, WAL or core state, and never
//! wait (it runs on every tick and on every `/metrics` request).

use super::ShardCtx;
use crate::metrics::M;

impl ShardCtx {
    /// `/metrics` text for the whole node.
    pub fn render_metrics(&self) -> String {
        self.publish();
        self.board.render(&[])
    }
    pub(super) fn publish(&self) {
        let mut c = self.counters.borrow_mut();
        c.set(M::connections_open, self.conns.borrow().len() as u64);
        c.set(M::outbox_bytes, self.outbox_total.get() as u64);
        c.set(
            M::peer_queue_depth,
            self.peer_out.iter().map(|q| q.borrow().len() as u64).sum(),
        );
        c.set(M::wal_durable_lsn, self.wal.durable_lsn().0);
        let w = self.wal.counters();
        c.set(M::wal_batches_total, w.batches);
        c.set(M::wal_batch_records_max, w.batch_records_max);
        c.set(M::wal_fsync_seconds_sum, w.fsync_ns_total);
        c.set(M::wal_fsync_seconds_max, w.fsync_ns_max);
        c.set(M::wal_queue_records, w.queue_records);
        c.set(M::wal_backpressure_total, w.backpressure_rejections);
        c.set(M::staged_records, self.staged.borrow().len() as u64);
        let core = self.core.borrow().metrics();
        c.set(M::core_messages_sequenced_total, core.messages_sequenced);
        c.set(M::core_sends_deduplicated_total, core.sends_deduplicated);
        c.set(M::core_rejects_total, core.rejects);
        c.set(M::core_fanout_messages_total, core.fanout_messages);
        // Cluster mode: the sessions are the edge's.
        let edge_sessions = self
            .edge
            .get()
            .map_or(0, |e| e.core.borrow().metrics().sessions);
        c.set(M::core_sessions, core.sessions + edge_sessions);
        c.set(M::notify_decided_total, core.notify_decided);
        c.set(M::notify_in_app_total, core.notify_in_app);
        let suppressed: u64 = core.notify_suppressed.iter().sum();
        c.set(M::notify_suppressed_total, suppressed);
        for (i, m) in [
            M::notify_suppressed_sender_total,
            M::notify_suppressed_read_total,
            M::notify_suppressed_level_total,
            M::notify_suppressed_muted_total,
            M::notify_suppressed_dnd_total,
            M::notify_suppressed_not_here_total,
            M::notify_suppressed_focused_total,
        ]
        .into_iter()
        .enumerate()
        {
            c.set(m, core.notify_suppressed[i]);
        }
        c.set(M::push_delayed_total, core.push_delayed);
        c.set(M::push_immediate_total, core.push_immediate);
        c.set(M::push_cancelled_total, core.push_cancelled);
        c.set(M::pushed_total, core.pushed);
        c.set(M::push_cleared_total, core.push_cleared);
        c.set(M::push_retried_total, core.push_retried);
        c.set(M::push_rejected_total, core.push_rejected);
        c.set(M::push_dropped_total, core.push_dropped);
        c.set(M::push_outbox_depth, core.outbox_depth);
        c.set(M::push_in_flight, core.push_in_flight);
        c.set(M::notify_all_subscribers, core.notify_all_subscribers);
        c.set(M::notify_all_capped_total, core.notify_all_capped);
        c.set(
            M::notify_handoffs_deferred_total,
            core.notify_handoffs_deferred,
        );
        c.set(
            M::notify_handoffs_redriven_total,
            core.notify_handoffs_redriven,
        );
        c.set(M::notify_handoffs_resent_total, core.notify_handoffs_resent);
        c.set(
            M::notify_handoffs_abandoned_total,
            core.notify_handoffs_abandoned,
        );
        self.board.publish(self.id.0, &c);
    }
}
