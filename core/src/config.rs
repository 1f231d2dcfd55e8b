//! A shard's configuration ([`ShardConfig`], [`NotifyConfig`]) and its
//! counters ([`Metrics`]): plain types shared by the shard, the commit
//! machinery and the roles.

use crate::types::ShardId;

/// Static configuration of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardConfig {
    /// This shard, in `0..shard_count`.
    pub shard: ShardId,
    /// Shards of the node (fixed for a data directory: placement depends on
    /// it; see [`crate::ids::shard_of`]). At most SHARD_COUNT_MAX.
    pub shard_count: u16,
    /// Edge shards after the state shards (cluster mode; 0 in single-node
    /// mode): ids `shard_count .. shard_count + edges` are connection-only
    /// shards that hold client sockets and own nothing (see
    /// [`ShardConfig::is_edge`]). `shard_count + edges` is at most
    /// SHARD_COUNT_MAX.
    pub edges: u16,
    /// sha256 of the admin secret; `Credential::Admin` is checked against
    /// it in constant time.
    pub admin_token_hash: [u8; 32],
    /// 32 bytes from the OS random source, fresh at every start (the
    /// simulation passes seeded bytes). Keys the shard's hash maps and the
    /// generator of token secrets: reusing the same bytes across starts
    /// could repeat a secret.
    pub entropy: [u8; 32],
    /// Notification settings.
    pub notify: NotifyConfig,
    /// How long after posting a message its author (or an admin) may edit
    /// it, ms (issue 17; default EDIT_WINDOW_MS_DEFAULT).
    pub edit_window_ms: u64,
}

impl ShardConfig {
    /// Whether this shard is an **edge**: a connection-only shard (cluster
    /// mode). An edge runs only the connection role — sessions, local
    /// subscriptions, delivery — for the sockets its node accepted, and
    /// forwards everything else to the state shards `0..shard_count`,
    /// wherever they are. It owns no id, writes no record and has no
    /// snapshot; restarting it loses only its connections.
    pub fn is_edge(&self) -> bool {
        self.shard.0 >= self.shard_count
    }

    /// Every addressable shard: the state shards and then the edges.
    pub fn addresses(&self) -> u16 {
        self.shard_count + self.edges
    }
}

/// Whether pushes are queued at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMode {
    /// No push gateway: notifications are in-app only; nothing is queued.
    Off,
    /// A push gateway is configured: pushes go through the durable outbox
    /// (`Effect::Push`).
    Gateway,
}

/// Notification settings of a shard (see docs/NOTIFICATIONS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Push mode.
    pub push: PushMode,
    /// Delay between the in-app notification and the push when the user is
    /// active on another conversation (at most PUSH_GRACE_MS_MAX).
    pub grace_ms: u64,
    /// `@channel`/`@here` notify only in conversations with at most this
    /// many members (at most BROADCAST_MEMBERS_MAX).
    pub broadcast_members_max: u32,
}

impl NotifyConfig {
    /// The documented defaults with the given push mode.
    pub fn with_push(push: PushMode) -> NotifyConfig {
        NotifyConfig {
            push,
            grace_ms: crate::constants::PUSH_GRACE_MS_DEFAULT,
            broadcast_members_max: crate::constants::BROADCAST_MEMBERS_DEFAULT,
        }
    }
}

pub(crate) fn check_notify_config(n: &NotifyConfig) {
    assert!(
        n.grace_ms <= crate::constants::PUSH_GRACE_MS_MAX,
        "grace window beyond PUSH_GRACE_MS_MAX"
    );
    assert!(
        n.broadcast_members_max <= crate::constants::BROADCAST_MEMBERS_MAX,
        "broadcast limit beyond BROADCAST_MEMBERS_MAX"
    );
}

/// Plain integer counters of a shard ("probes"), for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Records appended by the live path.
    pub records_appended: u64,
    /// Records applied by replay.
    pub records_replayed: u64,
    /// Highest LSN known durable.
    pub durable_lsn: u64,
    /// Messages sequenced (appended) here as owner.
    pub messages_sequenced: u64,
    /// Sends answered from the dedup window.
    pub sends_deduplicated: u64,
    /// Requests answered with a `Reject`.
    pub rejects: u64,
    /// Replies emitted on this shard's connections.
    pub replies: u64,
    /// `Effect::Deliver`s emitted.
    pub deliveries: u64,
    /// Connections reached by those deliveries.
    pub delivered_conns: u64,
    /// Fanout messages sent to interested shards.
    pub fanout_messages: u64,
    /// Cross-shard messages sent (including to itself).
    pub peer_messages: u64,
    /// Messages an edge received for a role it does not play (dropped;
    /// a routing bug if ever non-zero).
    pub peer_misrouted: u64,
    /// WAL reads requested.
    pub wal_reads: u64,
    /// Records that failed to decode in WAL reads.
    pub wal_read_errors: u64,
    /// Open connections.
    pub connections: u64,
    /// Authenticated user sessions on this shard.
    pub sessions: u64,
    /// Local subscription entries (conversation, connection).
    pub subscriptions: u64,
    /// Workspaces placed here.
    pub workspaces: u64,
    /// Users homed here.
    pub users: u64,
    /// Conversations owned here.
    pub conversations: u64,
    /// Actions waiting for durability.
    pub pending_commits: u64,
    /// Outstanding WAL reads.
    pub pending_reads: u64,
    /// Outstanding scatter-gathers.
    pub pending_gathers: u64,
    /// Bytes (estimated) in the recent-message cache.
    pub cache_bytes: u64,
    /// 1 once storage failed.
    pub storage_failed: u64,
    /// 1 once every owner's membership round arrived since start.
    pub ready: u64,
    /// Notification candidates decided on this (home) shard.
    pub notify_decided: u64,
    /// Suppressed notifications, by [`crate::notify::Suppressed::ALL`] order.
    pub notify_suppressed: [u64; 7],
    /// In-app notification events sent.
    pub notify_in_app: u64,
    /// Pushes queued with a grace delay.
    pub push_delayed: u64,
    /// Pushes queued to go at once.
    pub push_immediate: u64,
    /// Delayed pushes cancelled because the message was read in time.
    pub push_cancelled: u64,
    /// Pushes the gateway accepted (2xx), clears excluded.
    pub pushed: u64,
    /// Clears the gateway accepted.
    pub push_cleared: u64,
    /// Failed POSTs scheduled for a retry.
    pub push_retried: u64,
    /// Pushes the gateway refused for good.
    pub push_rejected: u64,
    /// Pushes not queued because the outbox was full or the shard not
    /// writable.
    pub push_dropped: u64,
    /// Entries in the outbox.
    pub outbox_depth: u64,
    /// Owner role: `all`-subscribers in this shard's channels (gauge).
    pub notify_all_subscribers: u64,
    /// Owner role: `all` levels not mirrored because the channel's set was
    /// full (a re-added member or a restart round beyond
    /// NOTIFY_ALL_PER_CONVERSATION_MAX; new requests are refused instead).
    pub notify_all_capped: u64,
    /// Owner role: messages whose hand-off waited for the home shards'
    /// rounds after a start.
    pub notify_handoffs_deferred: u64,
    /// Owner role: messages after the durable hand-off watermark handed off
    /// again at a start.
    pub notify_handoffs_redriven: u64,
    /// Owner role: unconfirmed hand-offs sent again to a restarted home.
    pub notify_handoffs_resent: u64,
    /// Owner role: hand-offs no longer tracked (beyond NOTIFY_HANDOFFS_MAX,
    /// or not in the cache at a start): a crash may lose their
    /// notifications.
    pub notify_handoffs_abandoned: u64,
    /// Pushes handed to the delivery thread, unanswered.
    pub push_in_flight: u64,
}
