//! The [`Shard`]: construction, recovery (`restore`, `replay`, `start`),
//! the input dispatcher, and the persist-then-act machinery shared by every
//! role.
//!
//! Persist, then act: [`Shard::commit`] appends a record (an
//! `Effect::Append` numbered by the shard), applies it to the state at once,
//! and queues the [`Action`]s that depend on it (acks, fanout, messages to
//! other shards). `Input::Durable` runs the queued actions of every durable
//! record, in LSN order. Nothing a client or another shard learns about a
//! record leaves before the record is durable, except *restrictions*
//! (a removal cutting live delivery, a revocation closing sessions), which
//! act immediately because acting early only withholds.
//!
//! Failure contract: client mistakes become `Reject` values; a record that
//! does not apply on the live path, an LSN out of order from the runtime, or
//! `handle` before `start` are programmer errors and panic. After
//! `Input::StorageFailed` every write is refused with `Unavailable` (cause
//! `StorageFailed`) and nothing not durable is ever acknowledged.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::api::{
    ConnId, ConversationId, DeviceInfo, Effect, Event, Input, Lsn, Millis, PeerMsg, Reject, ReqId,
    Response, ShardId, UnavailableCause, UserId, WorkspaceId,
};
use crate::bitset::ShardSet;
use crate::constants::{
    LOCAL_STEPS_MAX, PENDING_COMMITS_MAX, PENDING_DM_OPENS_MAX, PENDING_GATHERS_MAX,
    PENDING_HELLOS_MAX, PENDING_READS_MAX, PENDING_WATCH_WAITERS_MAX, SHARD_COUNT_MAX,
};
use crate::hash::{HashState, Map};
use crate::ids::shard_of;
use crate::peer::{self, Origin, PeerBody, Ticket, Who};
use crate::pending::PendingTable;
use crate::record::{Record, RecordError};
use crate::snapshot::{self, RestoreError};
use crate::state::{ApplyError, DmKey, State};

/// Static configuration of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardConfig {
    /// This shard, in `0..shard_count`.
    pub shard: ShardId,
    /// Shards of the node (fixed for a data directory: placement depends on
    /// it; see [`crate::ids::shard_of`]). At most SHARD_COUNT_MAX.
    pub shard_count: u16,
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

fn check_notify_config(n: &NotifyConfig) {
    assert!(
        n.grace_ms <= crate::constants::PUSH_GRACE_MS_MAX,
        "grace window beyond PUSH_GRACE_MS_MAX"
    );
    assert!(
        n.broadcast_members_max <= crate::constants::BROADCAST_MEMBERS_MAX,
        "broadcast limit beyond BROADCAST_MEMBERS_MAX"
    );
}

/// Why a WAL record could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// `replay` after `start`.
    #[error("replay after start")]
    AfterStart,
    /// Records must be replayed in LSN order without gaps.
    #[error("replayed LSN {got} but expected {expected}")]
    OutOfOrder {
        /// The next LSN the shard expects.
        expected: u64,
        /// The LSN given.
        got: u64,
    },
    /// The record's bytes are invalid.
    #[error("record at LSN {lsn}: {source}")]
    Record {
        /// LSN.
        lsn: u64,
        /// Decoding error.
        source: RecordError,
    },
    /// The record does not fit the state (corrupt or foreign log).
    #[error("record at LSN {lsn} ({kind}): {source}")]
    Apply {
        /// LSN.
        lsn: u64,
        /// Kind name.
        kind: &'static str,
        /// Why.
        source: ApplyError,
    },
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

/// Work that waits until a record is durable.
#[derive(Debug)]
pub(crate) enum Action {
    /// Answer a client.
    Reply {
        /// Where.
        origin: Origin,
        /// What.
        result: Result<Response, Reject>,
    },
    /// Tell another shard.
    Peer {
        /// Destination.
        to: ShardId,
        /// Message.
        body: PeerBody,
    },
    /// Fan a conversation's event out to interested shards.
    Fanout {
        /// Conversation (owned here).
        conversation: ConversationId,
        /// Event.
        event: Arc<Event>,
    },
    /// Deliver an event to every device of a user homed here.
    DeliverUser {
        /// User.
        user: UserId,
        /// Event.
        event: Arc<Event>,
    },
}

/// A connection's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Session {
    /// Connected, no `Hello` yet (or it failed).
    Anonymous,
    /// `Hello` forwarded to the home shard.
    Authenticating {
        /// The hello's request id (its deadline is in the pending hellos).
        req: ReqId,
    },
    /// Admin session.
    Admin,
    /// User session.
    User {
        /// The user.
        who: Who,
        /// The token used.
        token: u64,
    },
}

/// A connection held by this shard.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) session: Session,
    pub(crate) device: Option<DeviceInfo>,
    /// Conversations this connection is subscribed to (pending or active).
    pub(crate) subs: BTreeSet<ConversationId>,
}

/// A connection's subscription to a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubConn {
    /// The watch batch that covers it.
    pub(crate) nonce: u64,
    /// Confirmed by the owner: live events are delivered.
    pub(crate) active: bool,
}

/// The local subscribers of one conversation.
#[derive(Debug, Default)]
pub(crate) struct LocalSub {
    pub(crate) conns: BTreeMap<(UserId, ConnId), SubConn>,
    /// The owner has this shard in its interest set (as far as we know).
    pub(crate) registered: bool,
    /// Watch items sent and not yet answered.
    pub(crate) outstanding: u32,
}

/// What to do when watch verdicts are in.
#[derive(Debug)]
pub(crate) enum WaiterAction {
    /// Reply `Welcome` to a hello.
    Welcome { origin: Origin, who: Who },
    /// Deliver `Event::Joined` and answer the join.
    Joined {
        user: UserId,
        conns: Vec<ConnId>,
        event: Option<Arc<Event>>,
        reply: Option<(Origin, Result<Response, Reject>)>,
    },
}

/// Replies waiting for watch verdicts.
#[derive(Debug)]
pub(crate) struct Waiter {
    /// Watch batches not yet answered.
    pub(crate) remaining: u32,
    /// The batches' nonces (keys of `nonce_waiters`), forgotten with the
    /// waiter when it expires.
    pub(crate) nonces: Vec<u64>,
    /// What to do once every batch is answered (or at the deadline).
    pub(crate) action: WaiterAction,
}

/// A history page waiting for WAL reads.
#[derive(Debug)]
pub(crate) struct PendingRead {
    pub(crate) origin: Origin,
    pub(crate) who: Who,
    pub(crate) conversation: ConversationId,
    /// The page's seq range, inclusive.
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    /// Keep the newest messages when the byte budget cuts the page.
    pub(crate) newest_first: bool,
    pub(crate) head: u64,
    /// LSNs asked for, in seq order from `lo`.
    pub(crate) lsns: Vec<Lsn>,
}

/// A DM creation waiting for its members' home shards.
#[derive(Debug)]
pub(crate) struct DmOpen {
    pub(crate) key: DmKey,
    pub(crate) waiters: Vec<(Origin, UserId)>,
    pub(crate) unverified: BTreeSet<UserId>,
}

/// One shard's deterministic state machine. See the crate docs.
#[derive(Debug)]
pub struct Shard {
    pub(crate) config: ShardConfig,
    pub(crate) state: State,
    /// The LSN the next appended record gets.
    pub(crate) next_lsn: Lsn,
    pub(crate) durable: Lsn,
    pub(crate) started: bool,
    pub(crate) storage_failed: Option<String>,
    pub(crate) now: Millis,
    pub(crate) local: VecDeque<PeerBody>,
    pub(crate) commits: VecDeque<(Lsn, Action)>,
    pub(crate) metrics: Metrics,
    pub(crate) secret_counter: u64,
    /// Distinguishes this start from earlier ones (see `Origin`).
    pub(crate) incarnation: u64,
    pub(crate) placement_counter: u64,
    // Connection shard.
    pub(crate) conns: Map<ConnId, Conn>,
    pub(crate) subs: Map<ConversationId, LocalSub>,
    pub(crate) next_nonce: u64,
    pub(crate) nonce_waiters: Map<u64, u64>,
    /// Connection role: replies waiting for watch verdicts (at most
    /// PENDING_WATCH_WAITERS_MAX).
    pub(crate) waiters: PendingTable<Waiter>,
    /// Connection role: hellos waiting for the home shard, by connection,
    /// with their request id (at most PENDING_HELLOS_MAX).
    pub(crate) hellos: PendingTable<ReqId, ConnId>,
    // Owner shard.
    /// Owner role: history pages waiting for WAL reads, by read token (at
    /// most PENDING_READS_MAX).
    pub(crate) reads: PendingTable<PendingRead>,
    /// Owner role: DM creations waiting for their members' home shards
    /// (at most PENDING_DM_OPENS_MAX).
    pub(crate) dm_opens: PendingTable<DmOpen>,
    pub(crate) dm_open_keys: Map<DmKey, u64>,
    // Home shard.
    /// Home role: scatter-gathers waiting for the owners (at most
    /// PENDING_GATHERS_MAX).
    pub(crate) gathers: PendingTable<crate::gather::Gather>,
    pub(crate) rounds: BTreeMap<ShardId, Vec<(UserId, ConversationId, Millis)>>,
    /// Home role (memory, derived): last activity of every conversation in
    /// a derived list here, with how many users of this shard list it; at
    /// most one entry per conversation listed (bounded by
    /// CONVERSATIONS_PER_USER_MAX per user). Orders `Boot` pages without
    /// asking the owners about every conversation.
    pub(crate) activity: Map<ConversationId, crate::home::Activity>,
    pub(crate) rounds_done: ShardSet,
    /// Home role: cursor moves not yet durable (see `PendingCursors`).
    pub(crate) pending_cursors: crate::home::PendingCursors,
    /// Owner role: restarted home shards owed a membership round.
    pub(crate) rounds_due: ShardSet,
    /// Owner role: per channel, the members whose level is `all` (memory,
    /// derived from the home shards' rounds and messages).
    pub(crate) all_subscribers: crate::notifier::AllSubscribers,
    /// Owner role: notification hand-offs awaiting confirmation or the
    /// rounds (memory; the durable part is the state's watermark).
    pub(crate) handoffs: crate::notifier::Handoffs,
    /// Home role: outbox ids by the time they are due (memory, rebuilt from
    /// the outbox at start; retries move entries later).
    pub(crate) push_due: BTreeSet<(Millis, u64)>,
    /// Home role: pushes handed to the runtime, with their attempt count.
    pub(crate) push_in_flight: BTreeMap<u64, u32>,
    /// Home role: failed attempts of entries waiting for a retry.
    pub(crate) push_attempts: BTreeMap<u64, u32>,
    // Workspace shard.
    pub(crate) next_claim_retry: Millis,
}

impl Shard {
    /// A fresh, empty shard (a new data directory). Call [`Shard::start`]
    /// next.
    pub fn new(config: ShardConfig) -> Shard {
        assert!(
            config.shard_count >= 1 && config.shard_count <= SHARD_COUNT_MAX,
            "shard_count out of range"
        );
        assert!(config.shard.0 < config.shard_count, "shard out of range");
        check_notify_config(&config.notify);
        let hash = HashState::new(&config.entropy);
        let state = State::new(config.shard, config.shard_count, hash);
        Shard::with_state(config, state, Lsn(0))
    }

    fn with_state(config: ShardConfig, state: State, last: Lsn) -> Shard {
        let hash = state.hash;
        let incarnation = {
            let digest = Sha256::new()
                .chain_update(b"courier-incarnation")
                .chain_update(config.entropy)
                .finalize();
            let mut b = [0u8; 8];
            b.copy_from_slice(&digest[..8]);
            u64::from_le_bytes(b)
        };
        Shard {
            config,
            state,
            next_lsn: Lsn(last.0 + 1),
            durable: last,
            started: false,
            storage_failed: None,
            now: Millis(0),
            local: VecDeque::new(),
            commits: VecDeque::new(),
            metrics: Metrics::default(),
            secret_counter: 0,
            incarnation,
            placement_counter: 0,
            conns: hash.map(),
            subs: hash.map(),
            next_nonce: 1,
            nonce_waiters: hash.map(),
            waiters: PendingTable::new(PENDING_WATCH_WAITERS_MAX, incarnation),
            hellos: PendingTable::new(PENDING_HELLOS_MAX, incarnation),
            reads: PendingTable::new(PENDING_READS_MAX, incarnation),
            dm_opens: PendingTable::new(PENDING_DM_OPENS_MAX, incarnation),
            dm_open_keys: hash.map(),
            gathers: PendingTable::new(PENDING_GATHERS_MAX, incarnation),
            rounds: BTreeMap::new(),
            activity: hash.map(),
            rounds_done: ShardSet::new(),
            pending_cursors: crate::home::PendingCursors::default(),
            rounds_due: ShardSet::new(),
            next_claim_retry: Millis(0),
            all_subscribers: Default::default(),
            handoffs: Default::default(),
            push_due: BTreeSet::new(),
            push_in_flight: BTreeMap::new(),
            push_attempts: BTreeMap::new(),
        }
    }

    /// A shard restored from a snapshot taken by [`Shard::snapshot`]. Replay
    /// the WAL records after the snapshot's LSN next, then start.
    pub fn restore(config: ShardConfig, snapshot_bytes: &[u8]) -> Result<Shard, RestoreError> {
        assert!(
            config.shard_count >= 1 && config.shard_count <= SHARD_COUNT_MAX,
            "shard_count out of range"
        );
        check_notify_config(&config.notify);
        let hash = HashState::new(&config.entropy);
        let (state, last) =
            snapshot::restore(config.shard, config.shard_count, hash, snapshot_bytes)?;
        Ok(Shard::with_state(config, state, last))
    }

    /// Re-applies one WAL record written after the snapshot (or from the
    /// start of a fresh log), in LSN order. Applies exactly what the live
    /// path applied.
    pub fn replay(&mut self, lsn: Lsn, kind: u8, payload: &[u8]) -> Result<(), ReplayError> {
        if self.started {
            return Err(ReplayError::AfterStart);
        }
        if lsn != self.next_lsn {
            return Err(ReplayError::OutOfOrder {
                expected: self.next_lsn.0,
                got: lsn.0,
            });
        }
        let record = Record::decode(kind, payload)
            .map_err(|source| ReplayError::Record { lsn: lsn.0, source })?;
        self.state
            .apply(lsn, &record)
            .map_err(|source| ReplayError::Apply {
                lsn: lsn.0,
                kind: crate::record::kind_name(kind).unwrap_or("?"),
                source,
            })?;
        self.next_lsn = Lsn(lsn.0 + 1);
        self.durable = lsn;
        self.metrics.records_replayed += 1;
        Ok(())
    }

    /// Ends recovery and begins startup reconciliation: tells every other
    /// shard this one restarted (they re-send subscriptions, sessions and
    /// membership rounds) and sends every home shard the memberships of its
    /// users in this shard's conversations. The shard serves
    /// `Hello`/`Sync`/`Boot`/lists once every owner's round has arrived
    /// (`Unavailable` before).
    pub fn start(&mut self, now: Millis, out: &mut Vec<Effect>) {
        assert!(!self.started, "Shard::start called twice");
        self.started = true;
        self.advance_clock(now);
        // The outbox survived (snapshot + replay); its timers did not.
        for (id, e) in &self.state.outbox {
            self.push_due.insert((e.due, *id));
        }
        self.next_claim_retry = self.now;
        // Hand-offs not confirmed durable before the stop go again.
        self.collect_redrive();
        for s in 0..self.config.shard_count {
            let to = ShardId(s);
            if to != self.config.shard {
                self.send_peer(to, PeerBody::Restarted, out);
            }
        }
        let mut all = ShardSet::new();
        for s in 0..self.config.shard_count {
            all.insert(ShardId(s));
        }
        self.send_membership_rounds(&all, out);
        self.send_notify_all_rounds(&all, out);
        self.drain_local(out);
    }

    /// Handles one input; appends the resulting effects to `out` in the
    /// order the runtime must execute them.
    pub fn handle(&mut self, now: Millis, input: Input, out: &mut Vec<Effect>) {
        assert!(self.started, "Shard::handle before Shard::start");
        self.advance_clock(now);
        match input {
            Input::Connected { conn } => self.on_connected(conn, out),
            Input::Hello {
                conn,
                req,
                credential,
                device,
            } => self.on_hello(conn, req, credential, device, out),
            Input::Request { conn, req, request } => self.on_request(conn, req, request, out),
            Input::Disconnected { conn } => self.on_disconnected(conn, out),
            Input::Peer { from, msg } => self.on_peer(from, msg.0, out),
            Input::Durable { lsn } => self.on_durable(lsn, out),
            Input::StorageFailed { reason } => {
                if self.storage_failed.is_none() {
                    self.storage_failed = Some(reason);
                }
            }
            Input::RecordsRead { token, records } => self.on_records_read(token, records, out),
            Input::Tick => self.on_tick(out),
            Input::PushResult { id, outcome } => self.on_push_result(id, outcome, out),
        }
        self.drain_local(out);
    }

    /// The persistent state as of the last applied LSN, in the versioned
    /// snapshot encoding. Usable for recovery once that LSN is durable.
    pub fn snapshot(&self) -> (Lsn, Vec<u8>) {
        let last = Lsn(self.next_lsn.0 - 1);
        (last, snapshot::encode(&self.state, last))
    }

    /// Current counters.
    pub fn metrics(&self) -> Metrics {
        let mut m = self.metrics;
        m.durable_lsn = self.durable.0;
        m.connections = self.conns.len() as u64;
        m.sessions = self
            .conns
            .values()
            .filter(|c| matches!(c.session, Session::User { .. }))
            .count() as u64;
        m.subscriptions = self.subs.values().map(|s| s.conns.len() as u64).sum();
        m.workspaces = self.state.workspaces.len() as u64;
        m.users = self.state.users.len() as u64;
        m.conversations = self.state.conversations.len() as u64;
        m.pending_commits = self.commits.len() as u64;
        m.pending_reads = self.reads.len() as u64;
        m.pending_gathers = self.gathers.len() as u64;
        m.cache_bytes = self.state.cache.bytes() as u64;
        m.storage_failed = u64::from(self.storage_failed.is_some());
        m.ready = u64::from(self.is_ready());
        m.outbox_depth = self.state.outbox.len() as u64;
        m.notify_all_subscribers = self.all_subscribers.total() as u64;
        m.push_in_flight = self.push_in_flight.len() as u64;
        m
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.config.shard
    }

    /// The last LSN applied (live or replayed).
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.next_lsn.0 - 1)
    }

    // ----- Helpers shared by the roles ---------------------------------------

    fn advance_clock(&mut self, now: Millis) {
        // Time is an input; it never moves backwards inside the shard.
        self.now = self.now.max(now);
    }

    /// A ticket for a cross-shard round trip issued by this incarnation.
    pub(crate) fn ticket(&self, id: u64) -> Ticket {
        Ticket {
            incarnation: self.incarnation,
            id,
        }
    }

    /// The origin of a request on a local connection.
    pub(crate) fn origin(&self, conn: ConnId, req: ReqId) -> Origin {
        Origin {
            conn,
            req,
            incarnation: self.incarnation,
        }
    }

    pub(crate) fn shard_count(&self) -> u16 {
        self.config.shard_count
    }

    pub(crate) fn me(&self) -> ShardId {
        self.config.shard
    }

    pub(crate) fn home_of(&self, user: UserId) -> ShardId {
        shard_of(user, self.config.shard_count)
    }

    pub(crate) fn owner_of(&self, conv: ConversationId) -> ShardId {
        shard_of(conv, self.config.shard_count)
    }

    pub(crate) fn workspace_shard(&self, ws: WorkspaceId) -> ShardId {
        shard_of(ws, self.config.shard_count)
    }

    /// Whether every owner's membership round arrived since start: the
    /// derived conversation lists are complete.
    pub(crate) fn is_ready(&self) -> bool {
        self.rounds_done.len() == usize::from(self.config.shard_count)
    }

    /// Sends a cross-shard message; to itself it is queued and handled
    /// before the current input's handling returns.
    pub(crate) fn send_peer(
        &mut self,
        to: ShardId,
        body: impl Into<PeerBody>,
        out: &mut Vec<Effect>,
    ) {
        let body = body.into();
        assert!(to.0 < self.config.shard_count, "peer shard out of range");
        self.metrics.peer_messages += 1;
        if to == self.config.shard {
            self.local.push_back(body);
        } else {
            out.push(Effect::ToShard {
                shard: to,
                msg: PeerMsg(body),
            });
        }
    }

    fn drain_local(&mut self, out: &mut Vec<Effect>) {
        let mut steps = 0usize;
        while let Some(body) = self.local.pop_front() {
            steps += 1;
            assert!(
                steps < LOCAL_STEPS_MAX,
                "shard sends itself messages in a cycle"
            );
            let me = self.config.shard;
            self.on_peer(me, body, out);
        }
    }

    /// Answers a client request wherever its connection lives. The answer
    /// travels as a message to the connection's shard even when that is this
    /// shard, so it stays in order with everything else this role sent the
    /// connection (events, subscriptions) before it.
    pub(crate) fn reply(
        &mut self,
        origin: Origin,
        result: Result<Response, Reject>,
        out: &mut Vec<Effect>,
    ) {
        self.send_peer(
            origin.conn.shard(),
            peer::conn::Reply { origin, result },
            out,
        );
    }

    /// Emits the answer on a local connection (the connection role).
    pub(crate) fn emit_reply(
        &mut self,
        origin: Origin,
        result: Result<Response, Reject>,
        out: &mut Vec<Effect>,
    ) {
        assert_eq!(
            origin.conn.shard(),
            self.config.shard,
            "reply on a foreign connection"
        );
        if origin.incarnation != self.incarnation || !self.conns.contains_key(&origin.conn) {
            return; // The connection is gone; so is the reply.
        }
        if result.is_err() {
            self.metrics.rejects += 1;
        }
        self.metrics.replies += 1;
        out.push(Effect::Reply {
            conn: origin.conn,
            req: origin.req,
            result,
        });
    }

    /// `Ok` if the shard accepts a write now.
    pub(crate) fn writable(&self) -> Result<(), Reject> {
        if let Some(reason) = &self.storage_failed {
            return Err(Reject::unavailable(
                UnavailableCause::StorageFailed,
                format!("storage failed: {reason}"),
            ));
        }
        if self.commits.len() >= PENDING_COMMITS_MAX {
            return Err(Reject::unavailable(
                UnavailableCause::Overloaded,
                "write queue full (PENDING_COMMITS_MAX)",
            ));
        }
        Ok(())
    }

    /// Appends `record`, applies it, and queues `actions` until it is
    /// durable. The caller checked [`Shard::writable`].
    pub(crate) fn commit(
        &mut self,
        record: Record,
        actions: Vec<Action>,
        out: &mut Vec<Effect>,
    ) -> Lsn {
        assert!(
            self.storage_failed.is_none(),
            "commit after storage failure"
        );
        let lsn = self.next_lsn;
        self.next_lsn = Lsn(lsn.0 + 1);
        out.push(Effect::Append {
            lsn,
            kind: record.kind(),
            payload: record.encode(),
        });
        if let Err(e) = self.state.apply(lsn, &record) {
            panic!("live record at LSN {} does not apply: {e}", lsn.0);
        }
        self.metrics.records_appended += 1;
        for action in actions {
            self.commits.push_back((lsn, action));
        }
        lsn
    }

    /// Runs `action` once everything appended so far is durable (at once if
    /// it already is). Used when an answer depends on state some earlier,
    /// maybe not yet durable, record produced.
    ///
    /// After a storage failure the records not yet durable never will be
    /// (in this incarnation): a client's answer becomes `Unavailable` naming
    /// the failure, cause `NotDurable` (the record may still survive the
    /// restart: an unknown outcome). So an idempotent retry on a shard whose
    /// disk filled up is refused, not left hanging; reads that gather —
    /// `Sync`, `Boot`, lists — answer at once instead, see `gather_reply`;
    /// anything else is dropped, and the restart's reconciliation repairs
    /// what the other shards missed.
    pub(crate) fn after_durable(&mut self, action: Action, out: &mut Vec<Effect>) {
        let last = Lsn(self.next_lsn.0 - 1);
        if last <= self.durable {
            self.run_action(action, out);
        } else if let Some(reason) = &self.storage_failed {
            if let Action::Reply { origin, .. } = action {
                let r = Reject::unavailable(
                    UnavailableCause::NotDurable,
                    format!("storage failed: {reason}"),
                );
                self.reply(origin, Err(r), out);
            }
        } else {
            self.commits.push_back((last, action));
        }
    }

    fn on_durable(&mut self, lsn: Lsn, out: &mut Vec<Effect>) {
        assert!(
            lsn < self.next_lsn,
            "durable LSN {} beyond the last appended {}",
            lsn.0,
            self.next_lsn.0 - 1
        );
        if lsn <= self.durable {
            return;
        }
        self.durable = lsn;
        self.pending_cursors.durable_through(lsn);
        while self.commits.front().is_some_and(|(l, _)| *l <= lsn) {
            if let Some((_, action)) = self.commits.pop_front() {
                self.run_action(action, out);
            }
        }
    }

    pub(crate) fn run_action(&mut self, action: Action, out: &mut Vec<Effect>) {
        match action {
            Action::Reply { origin, result } => self.reply(origin, result, out),
            Action::Peer { to, body } => self.send_peer(to, body, out),
            Action::Fanout {
                conversation,
                event,
            } => self.fanout(conversation, event, out),
            Action::DeliverUser { user, event } => self.deliver_to_user(user, event, out),
        }
    }

    /// A fresh token secret: sha256 over the start's entropy, this shard,
    /// the next LSN and a counter. Unpredictable without the entropy.
    pub(crate) fn new_secret(&mut self) -> [u8; 32] {
        self.secret_counter += 1;
        let mut h = Sha256::new();
        h.update(b"courier-token-secret");
        h.update(self.config.entropy);
        h.update(self.config.shard.0.to_le_bytes());
        h.update(self.next_lsn.0.to_le_bytes());
        h.update(self.secret_counter.to_le_bytes());
        h.finalize().into()
    }

    fn on_tick(&mut self, out: &mut Vec<Effect>) {
        if !self.rounds_due.is_empty() {
            let due = std::mem::take(&mut self.rounds_due);
            self.send_membership_rounds(&due, out);
            self.send_notify_all_rounds(&due, out);
        }
        self.expire_hellos(out);
        self.expire_waiters(out);
        self.expire_gathers(out);
        self.expire_dm_opens(out);
        self.retry_claims(out);
        self.pump_pushes(out);
        self.persist_handoff_watermark(out);
    }

    fn on_peer(&mut self, from: ShardId, body: PeerBody, out: &mut Vec<Effect>) {
        match body {
            PeerBody::Restarted => self.on_restarted(from, out),
            PeerBody::Conn(msg) => self.on_conn_msg(from, msg, out),
            PeerBody::Owner(msg) => self.on_owner_msg(from, msg, out),
            PeerBody::Home(msg) => self.on_home_msg(from, msg, out),
            PeerBody::Workspace(msg) => self.on_workspace_msg(from, msg, out),
            PeerBody::Gather(msg) => self.on_gather_msg(from, msg, out),
            PeerBody::Notifier(msg) => self.on_notifier_msg(from, msg, out),
        }
    }

    /// Another shard restarted (or this one, at start, for itself: nothing
    /// to do then). Forget what we knew of its memory, and send it what it
    /// needs to rebuild: our subscriptions to its conversations, our
    /// sessions of its users, and the memberships of its users in our
    /// conversations.
    fn on_restarted(&mut self, from: ShardId, out: &mut Vec<Effect>) {
        if from == self.config.shard {
            return;
        }
        self.forget_shard_connections(from);
        self.clear_interest_of(from);
        self.rewatch_owner(from, out);
        self.register_devices_with(from, out);
        self.redrive_handoffs_to(from, out);
        // Its membership round (and our users' `all` levels in its
        // channels) goes out at the next tick, with those of any other
        // shard restarting meanwhile: one scan for a whole-node start.
        self.rounds_due.insert(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    /// The runtime moves shards onto executors and messages between cores.
    #[test]
    fn runtime_types_are_send() {
        assert_send::<Shard>();
        assert_send::<PeerMsg>();
        assert_send::<Input>();
        assert_send::<Effect>();
    }

    /// Cross-core channels carry messages by value: keep them small.
    #[test]
    fn message_sizes() {
        let sizes = [
            ("PeerBody", std::mem::size_of::<PeerBody>()),
            ("Input", std::mem::size_of::<Input>()),
            ("Effect", std::mem::size_of::<Effect>()),
        ];
        for (name, size) in sizes {
            assert!(size <= 256, "{name} is {size} bytes");
        }
    }
}
