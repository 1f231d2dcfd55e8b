//! Per-core link counters: plain integers bumped by the core's own tasks
//! (no atomics), read as a [`LinkCounters`] snapshot by whoever publishes
//! metrics (`LinkHandle::counters`).

use std::cell::Cell;

/// What one core's links have done since they started. Totals only grow;
/// `queue_*` and `links_up` are current values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames written by this core's outgoing links (keepalives included).
    pub frames_out: u64,
    /// Bytes written by this core's outgoing links.
    pub bytes_out: u64,
    /// Messages written by this core's outgoing links.
    pub messages_out: u64,
    /// Frames read on connections this core accepted.
    pub frames_in: u64,
    /// Bytes read on connections this core accepted (handshakes excluded).
    pub bytes_in: u64,
    /// Messages read on connections this core accepted.
    pub messages_in: u64,
    /// Of those, messages handed to another core's inbox.
    pub messages_forwarded: u64,
    /// Messages this core's inbox yielded to the layer above.
    pub messages_delivered: u64,
    /// Messages queued for all peers now.
    pub queue_messages: u64,
    /// Payload bytes queued for all peers now.
    pub queue_bytes: u64,
    /// Sends refused because a queue was at its bound.
    pub queue_full: u64,
    /// Outgoing links connected now.
    pub links_up: u64,
    /// Successful handshakes after a link's first (reconnections).
    pub reconnects: u64,
    /// Connection attempts that failed (connect, timeout, refusal, I/O).
    pub connect_failures: u64,
    /// Handshakes this core refused (wrong cluster, node, version, core,
    /// or not a link peer at all).
    pub refusals_sent: u64,
    /// Connections closed at accept because this core already served
    /// `LinkConfig::accepted_connections_max`.
    pub accept_over_limit: u64,
    /// Connections this core serves as the accepting side now.
    pub accepted_open: u64,
    /// Handshakes peers refused to this core.
    pub refusals_received: u64,
    /// Established connections that broke (either side).
    pub link_breaks: u64,
    /// Messages in writes that failed (certainly not all delivered). Any
    /// message written on a connection that broke may also be lost.
    pub messages_in_failed_writes: u64,
    /// Connections closed for a bad frame (checksum, length, source core).
    pub protocol_errors: u64,
    /// Messages dropped for a destination core the node does not have.
    pub misrouted: u64,
    /// Messages an inbox dropped because a newer connection from the same
    /// source core had already delivered (they arrived after a reconnect).
    pub stale_dropped: u64,
    /// Messages delivered from sources beyond the inbox's tracking bound.
    pub untracked_sources: u64,
    /// Times this core's link writers woke from waiting (for work, a
    /// keepalive or idle check, or the end of a reconnect delay). An idle
    /// link adds about one per keepalive interval.
    pub writer_wakeups: u64,
}

/// The cells behind [`LinkCounters`].
#[derive(Default)]
pub(crate) struct Counters {
    pub frames_out: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub messages_out: Cell<u64>,
    pub frames_in: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub messages_in: Cell<u64>,
    pub messages_forwarded: Cell<u64>,
    pub messages_delivered: Cell<u64>,
    pub queue_full: Cell<u64>,
    pub links_up: Cell<u64>,
    pub reconnects: Cell<u64>,
    pub connect_failures: Cell<u64>,
    pub refusals_sent: Cell<u64>,
    pub accept_over_limit: Cell<u64>,
    pub accepted_open: Cell<u64>,
    pub refusals_received: Cell<u64>,
    pub link_breaks: Cell<u64>,
    pub messages_in_failed_writes: Cell<u64>,
    pub protocol_errors: Cell<u64>,
    pub misrouted: Cell<u64>,
    pub stale_dropped: Cell<u64>,
    pub untracked_sources: Cell<u64>,
    pub writer_wakeups: Cell<u64>,
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

impl Counters {
    pub(crate) fn snapshot(&self, queue_messages: u64, queue_bytes: u64) -> LinkCounters {
        LinkCounters {
            frames_out: self.frames_out.get(),
            bytes_out: self.bytes_out.get(),
            messages_out: self.messages_out.get(),
            frames_in: self.frames_in.get(),
            bytes_in: self.bytes_in.get(),
            messages_in: self.messages_in.get(),
            messages_forwarded: self.messages_forwarded.get(),
            messages_delivered: self.messages_delivered.get(),
            queue_messages,
            queue_bytes,
            queue_full: self.queue_full.get(),
            links_up: self.links_up.get(),
            reconnects: self.reconnects.get(),
            connect_failures: self.connect_failures.get(),
            refusals_sent: self.refusals_sent.get(),
            accept_over_limit: self.accept_over_limit.get(),
            accepted_open: self.accepted_open.get(),
            refusals_received: self.refusals_received.get(),
            link_breaks: self.link_breaks.get(),
            messages_in_failed_writes: self.messages_in_failed_writes.get(),
            protocol_errors: self.protocol_errors.get(),
            misrouted: self.misrouted.get(),
            stale_dropped: self.stale_dropped.get(),
            untracked_sources: self.untracked_sources.get(),
            writer_wakeups: self.writer_wakeups.get(),
        }
    }
}
