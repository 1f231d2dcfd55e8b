//! Per-shard counters and their Prometheus rendering.
//!
//! Each shard counts in plain integers on its own thread ([`Counters`]) and
//! publishes a copy into its row of [`Board`] once per tick; `/metrics` on any
//! shard reads every row. So the data plane never touches a shared cache line:
//! the only cross-thread traffic is one store per metric per tick.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

macro_rules! metrics {
    ($( $name:ident : $kind:literal, $help:literal; )*) => {
        /// Every metric a shard exports.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(non_camel_case_types, missing_docs)]
        #[repr(usize)]
        pub enum M { $( $name, )* }

        const NAMES: &[(&str, &str, &str)] = &[ $( (stringify!($name), $kind, $help), )* ];
    };
}

metrics! {
    connections_open: "gauge", "WebSocket connections currently open";
    connections_accepted_total: "counter", "connections accepted";
    connections_refused_total: "counter", "connections refused at the per-shard limit";
    frames_in_total: "counter", "frames received from clients";
    frames_out_total: "counter", "frames queued to clients";
    bytes_out_total: "counter", "bytes queued to clients";
    bad_frames_total: "counter", "undecodable client frames";
    rate_limited_total: "counter", "requests refused by a rate limit";
    workspace_paced_total: "counter", "requests that waited for their workspace's rate (per-workspace pacing)";
    slow_consumer_cutoffs_total: "counter", "connections cut off for not reading";
    outbox_bytes: "gauge", "bytes queued in all socket outboxes";
    events_encoded_total: "counter", "events encoded (once per shard per event)";
    deliveries_total: "counter", "event frames queued to sockets";
    peer_sent_total: "counter", "messages sent to other shards";
    peer_received_total: "counter", "messages received from other shards";
    peer_queue_depth: "gauge", "messages waiting for room on cross-shard channels";
    peer_link_sent_total: "counter", "cluster mode: peer messages sent to shards on other nodes";
    peer_link_received_total: "counter", "cluster mode: peer messages received from shards on other nodes";
    peer_link_dropped_total: "counter", "cluster mode: peer messages dropped (no known leader, link queue full, undecodable, misrouted)";
    requests_failed_over_total: "counter", "cluster mode: requests in flight answered Unavailable because the primary changed";
    peer_resets_total: "counter", "cluster mode: Restarted handed to a shard on a peer's behalf (link session, link break, leader change)";
    wal_appends_total: "counter", "WAL records appended";
    wal_durable_lsn: "gauge", "highest durable LSN";
    wal_batches_total: "counter", "WAL group commits (one write + one fdatasync each)";
    wal_fsync_seconds_sum: "counter", "time spent in fdatasync (seconds)";
    wal_fsync_seconds_max: "gauge", "longest single fdatasync (seconds)";
    wal_batch_records_max: "gauge", "most records in one group commit";
    wal_queue_records: "gauge", "records appended but not yet durable";
    wal_backpressure_total: "counter", "appends refused for a full WAL queue";
    staged_records: "gauge", "records waiting for room in the WAL queue";
    core_messages_sequenced_total: "counter", "messages sequenced by conversations owned here";
    core_sends_deduplicated_total: "counter", "retried sends answered from the dedup window";
    core_rejects_total: "counter", "requests refused (any reason)";
    core_fanout_messages_total: "counter", "fanout hops to interested shards";
    core_sessions: "gauge", "authenticated sessions on this shard";
    wal_reads_total: "counter", "WAL records read back for history";
    snapshots_total: "counter", "snapshots written";
    snapshot_bytes: "gauge", "size of the newest snapshot (bytes)";
    snapshot_capture_us_last: "gauge", "the newest snapshot's capture: time the shard's thread spent copying its state (us)";
    snapshot_capture_us_max: "gauge", "longest snapshot capture since start (us)";
    snapshot_us_last: "gauge", "the newest snapshot from capture to durable file (us)";
    http_requests_total: "counter", "plain HTTP requests (healthz, metrics)";
    core_inputs_total: "counter", "inputs handled by the core state machine";
    notify_decided_total: "counter", "notification candidates decided on their home shard";
    notify_in_app_total: "counter", "in-app notification events sent";
    notify_suppressed_total: "counter", "notifications suppressed (all reasons)";
    notify_suppressed_sender_total: "counter", "suppressed: the recipient sent it";
    notify_suppressed_read_total: "counter", "suppressed: already read";
    notify_suppressed_level_total: "counter", "suppressed: notification level";
    notify_suppressed_muted_total: "counter", "suppressed: conversation muted";
    notify_suppressed_dnd_total: "counter", "suppressed: do not disturb";
    notify_suppressed_not_here_total: "counter", "suppressed: @here and no device connected";
    notify_suppressed_focused_total: "counter", "suppressed: conversation focused on an active device";
    push_delayed_total: "counter", "pushes queued behind the grace window";
    push_immediate_total: "counter", "pushes queued to go at once";
    push_cancelled_total: "counter", "delayed pushes cancelled (read in time)";
    pushed_total: "counter", "pushes the gateway accepted (2xx)";
    push_cleared_total: "counter", "clears the gateway accepted";
    push_retried_total: "counter", "failed POSTs scheduled for a retry";
    push_rejected_total: "counter", "pushes the gateway refused for good";
    push_dropped_total: "counter", "pushes not queued (outbox full or storage failed)";
    push_outbox_depth: "gauge", "entries in the durable push outbox";
    push_in_flight: "gauge", "pushes handed to the delivery thread, unanswered";
    notify_all_subscribers: "gauge", "channel members with notification level all, in channels owned here";
    notify_all_capped_total: "counter", "level-all users not mirrored: the channel's set was full";
    notify_handoffs_deferred_total: "counter", "hand-offs that waited for the home shards' rounds after a start";
    notify_handoffs_redriven_total: "counter", "messages after the durable hand-off watermark handed off again at a start";
    notify_handoffs_resent_total: "counter", "unconfirmed hand-offs sent again to a restarted home shard";
    notify_handoffs_abandoned_total: "counter", "hand-offs no longer tracked (bound or cache): a crash may lose their notification";
}

/// Number of metrics.
pub const METRICS: usize = NAMES.len();

/// One shard's counters, owned by that shard's thread.
#[derive(Clone, Debug)]
pub struct Counters(pub [u64; METRICS]);

impl Default for Counters {
    fn default() -> Self {
        Counters([0; METRICS])
    }
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(&mut self, m: M, n: u64) {
        self.0[m as usize] += n;
    }

    /// Sets a gauge.
    pub fn set(&mut self, m: M, v: u64) {
        self.0[m as usize] = v;
    }

    /// Reads a value.
    pub fn get(&self, m: M) -> u64 {
        self.0[m as usize]
    }
}

/// Published copies of every shard's counters.
pub struct Board {
    rows: Vec<[AtomicU64; METRICS]>,
}

impl Board {
    /// A board for `shards` shards.
    pub fn new(shards: u16) -> Arc<Board> {
        Arc::new(Board {
            rows: (0..shards)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        })
    }

    /// Publishes shard `k`'s counters.
    pub fn publish(&self, k: u16, counters: &Counters) {
        for (slot, v) in self.rows[usize::from(k)].iter().zip(counters.0.iter()) {
            slot.store(*v, Ordering::Relaxed);
        }
    }

    /// Prometheus text exposition of every shard.
    pub fn render(&self, extra: &[(String, u64)]) -> String {
        let mut out = String::with_capacity(8 * 1024);
        for (i, (name, kind, help)) in NAMES.iter().enumerate() {
            let scale = if name.ends_with("_seconds_sum") || name.ends_with("_seconds_max") {
                1e-9
            } else {
                1.0
            };
            let _ = writeln!(out, "# HELP courier_{name} {help}");
            let _ = writeln!(out, "# TYPE courier_{name} {kind}");
            for (k, row) in self.rows.iter().enumerate() {
                let v = row[i].load(Ordering::Relaxed);
                if scale == 1.0 {
                    let _ = writeln!(out, "courier_{name}{{shard=\"{k}\"}} {v}");
                } else {
                    let _ = writeln!(
                        out,
                        "courier_{name}{{shard=\"{k}\"}} {:.6}",
                        v as f64 * scale
                    );
                }
            }
        }
        for (name, v) in extra {
            let _ = writeln!(out, "{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_shard() {
        let board = Board::new(2);
        let mut c = Counters::default();
        c.add(M::frames_in_total, 3);
        c.add(M::wal_fsync_seconds_sum, 1_500_000_000);
        board.publish(1, &c);
        let text = board.render(&[]);
        assert!(
            text.contains("courier_frames_in_total{shard=\"1\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("courier_frames_in_total{shard=\"0\"} 0\n"));
        assert!(text.contains("courier_wal_fsync_seconds_sum{shard=\"1\"} 1.500000\n"));
        assert!(text.contains("# TYPE courier_connections_open gauge"));
    }
}
