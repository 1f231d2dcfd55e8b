//! The [`Shard`]: the composition root. It owns the commit machinery
//! ([`Ctx`], commit.rs) and one state struct per role, and does
//! construction, recovery (`restore`, `replay`, `start`), input dispatch
//! (`on_peer` picks the receiving role and calls its `handle`), ticks, and
//! the run of durable actions. Roles never import this module: each gets
//! the `Ctx` and, where it needs another role's state, that role explicitly.
//!
//! Persist, then act: [`Ctx::commit`] appends a record (an
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

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

use crate::api::{Effect, Input};
use crate::bitset::ShardSet;
use crate::commit::{Action, Ctx};
use crate::config::{check_notify_config, Metrics, ShardConfig};
use crate::conn::{ConnRole, Session};
use crate::constants::{LOCAL_STEPS_MAX, SHARD_COUNT_MAX};
use crate::directory::WorkspaceRole;
use crate::gather::GatherRole;
use crate::hash::HashState;
use crate::home::HomeRole;
use crate::notifier::NotifierRole;
use crate::owner::OwnerRole;
use crate::peer::PeerBody;
use crate::record::{Record, RecordError};
use crate::snapshot::{self, RestoreError};
use crate::state::{ApplyError, State};
use crate::types::{Lsn, Millis, ShardId};

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

/// One shard's deterministic state machine. See the crate docs.
///
/// Composes the commit machinery (`Ctx`, commit.rs) and the state of each role;
/// the roles' handlers live in their modules.
#[derive(Debug)]
pub struct Shard {
    /// Commit machinery, persistent state, clock, configuration, counters.
    pub(crate) cx: Ctx,
    /// `start` was called (no more replay; `handle` accepted).
    pub(crate) started: bool,
    /// Connection role.
    pub(crate) conn: ConnRole,
    /// Owner role.
    pub(crate) owner: OwnerRole,
    /// Home role.
    pub(crate) home: HomeRole,
    /// Workspace role.
    pub(crate) workspace: WorkspaceRole,
    /// Scatter-gathers (home shard).
    pub(crate) gather: GatherRole,
    /// Notifications (owner and home sides).
    pub(crate) notifier: NotifierRole,
}

impl Shard {
    /// A fresh, empty shard (a new data directory). Call [`Shard::start`]
    /// next.
    pub fn new(config: ShardConfig) -> Shard {
        assert!(
            config.shard_count >= 1
                && u32::from(config.shard_count) + u32::from(config.edges)
                    <= u32::from(SHARD_COUNT_MAX),
            "shard_count + edges out of range"
        );
        assert!(config.shard.0 < config.addresses(), "shard out of range");
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
            cx: Ctx {
                config,
                state,
                next_lsn: Lsn(last.0 + 1),
                durable: last,
                storage_failed: None,
                now: Millis(0),
                local: VecDeque::new(),
                commits: VecDeque::new(),
                metrics: Metrics::default(),
                secret_counter: 0,
                incarnation,
                rounds_done: ShardSet::new(),
                due: VecDeque::new(),
            },
            started: false,
            conn: ConnRole::new(hash, incarnation),
            owner: OwnerRole::new(hash, incarnation),
            home: HomeRole::new(hash),
            workspace: WorkspaceRole {
                next_claim_retry: Millis(0),
                roles_due: ShardSet::new(),
            },
            gather: GatherRole::new(incarnation),
            notifier: NotifierRole::default(),
        }
    }

    /// A shard restored from a snapshot taken by [`Shard::snapshot`]. Replay
    /// the WAL records after the snapshot's LSN next, then start.
    pub fn restore(config: ShardConfig, snapshot_bytes: &[u8]) -> Result<Shard, RestoreError> {
        assert!(
            config.shard_count >= 1
                && u32::from(config.shard_count) + u32::from(config.edges)
                    <= u32::from(SHARD_COUNT_MAX),
            "shard_count + edges out of range"
        );
        assert!(!config.is_edge(), "an edge shard has no snapshot");
        check_notify_config(&config.notify);
        let hash = HashState::new(&config.entropy);
        let (state, last) =
            snapshot::restore(config.shard, config.shard_count, hash, snapshot_bytes)?;
        Ok(Shard::with_state(config, state, last))
    }

    /// Sets how many edge shards follow the state shards (cluster mode:
    /// learnt when the cluster's voters are known, before the shard
    /// starts). A started shard already told its peers it restarted.
    pub fn set_edges(&mut self, edges: u16) {
        assert!(!self.started, "set_edges after start");
        assert!(
            u32::from(self.cx.config.shard_count) + u32::from(edges) <= u32::from(SHARD_COUNT_MAX),
            "shard_count + edges out of range"
        );
        self.cx.config.edges = edges;
    }

    /// Re-applies one WAL record written after the snapshot (or from the
    /// start of a fresh log), in LSN order. Applies exactly what the live
    /// path applied.
    pub fn replay(&mut self, lsn: Lsn, kind: u8, payload: &[u8]) -> Result<(), ReplayError> {
        if self.started {
            return Err(ReplayError::AfterStart);
        }
        if lsn != self.cx.next_lsn {
            return Err(ReplayError::OutOfOrder {
                expected: self.cx.next_lsn.0,
                got: lsn.0,
            });
        }
        let record = Record::decode(kind, payload)
            .map_err(|source| ReplayError::Record { lsn: lsn.0, source })?;
        self.cx
            .state
            .apply(lsn, &record)
            .map_err(|source| ReplayError::Apply {
                lsn: lsn.0,
                kind: crate::record::kind_name(kind).unwrap_or("?"),
                source,
            })?;
        if let Record::ProfileSet { user, version, .. } = &record {
            let held = self
                .home
                .replayed_profiles
                .entry(crate::types::UserId(*user))
                .or_default();
            *held = (*held).max(*version);
        }
        self.cx.next_lsn = Lsn(lsn.0 + 1);
        self.cx.durable = lsn;
        self.cx.state.settle(lsn);
        self.cx.metrics.records_replayed += 1;
        Ok(())
    }

    /// Ends recovery and begins startup reconciliation: tells every other
    /// shard this one restarted (they re-send subscriptions, sessions and
    /// membership rounds) and sends every home shard the memberships of its
    /// users in this shard's conversations. The shard serves
    /// `Hello`/`Sync`/`Boot`/lists once every owner's round has arrived
    /// (`Unavailable` before).
    ///
    /// An edge ([`ShardConfig::is_edge`]) only tells the state shards it
    /// restarted: it owns nothing, so it has no rounds to send.
    pub fn start(&mut self, now: Millis, out: &mut Vec<Effect>) {
        assert!(!self.started, "Shard::start called twice");
        self.started = true;
        self.advance_clock(now);
        if self.cx.config.is_edge() {
            assert!(
                self.cx.next_lsn == Lsn(1),
                "an edge shard was given records"
            );
            for s in 0..self.cx.config.shard_count {
                self.cx.send_peer(ShardId(s), PeerBody::Restarted, out);
            }
            return;
        }
        // The outbox survived (snapshot + replay); its timers did not.
        for (id, e) in &self.cx.state.outbox {
            self.notifier.push_due.insert((e.due, *id));
        }
        self.workspace.next_claim_retry = self.cx.now;
        // Hand-offs not confirmed durable before the stop go again.
        self.notifier.collect_redrive(&mut self.cx);
        // Every address, edges included: they hold subscriptions to our
        // conversations and sessions of our users.
        for s in 0..self.cx.config.addresses() {
            let to = ShardId(s);
            if to != self.cx.config.shard {
                self.cx.send_peer(to, PeerBody::Restarted, out);
            }
        }
        let mut all = ShardSet::new();
        for s in 0..self.cx.config.shard_count {
            all.insert(ShardId(s));
        }
        self.owner.send_membership_rounds(&mut self.cx, &all, out);
        self.notifier
            .send_notify_all_rounds(&mut self.cx, &all, out);
        // At the first tick, not here: a workspace shard may write what it
        // hears, and nothing is appended during start (the runtime reports
        // durability only for records appended after it).
        self.home.directory_round_due = true;
        // Every role this workspace shard holds goes to the home shards at
        // the first tick (repairs a `RoleChanged` a crash lost).
        self.workspace.roles_due = all.clone();
        self.drain_local(out);
    }

    /// Handles one input; appends the resulting effects to `out` in the
    /// order the runtime must execute them.
    pub fn handle(&mut self, now: Millis, input: Input, out: &mut Vec<Effect>) {
        assert!(self.started, "Shard::handle before Shard::start");
        self.advance_clock(now);
        match input {
            Input::Connected { conn } => self.conn.on_connected(&mut self.cx, conn, out),
            Input::Hello {
                conn,
                req,
                credential,
                device,
            } => self
                .conn
                .on_hello(&mut self.cx, conn, req, credential, device, out),
            Input::Request { conn, req, request } => {
                self.conn.on_request(&mut self.cx, conn, req, request, out)
            }
            Input::Disconnected { conn } => self.conn.on_disconnected(&mut self.cx, conn, out),
            Input::Peer { from, msg } => self.on_peer(from, msg.0, out),
            Input::Durable { lsn } => self.on_durable(lsn, out),
            Input::StorageFailed { reason } => {
                if self.cx.storage_failed.is_none() {
                    self.cx.storage_failed = Some(reason);
                }
            }
            Input::HistoryRead { token, messages } => {
                self.owner
                    .on_history_read(&mut self.cx, token, messages, out)
            }
            Input::Tick => self.on_tick(out),
            Input::PushResult { id, outcome } => {
                self.notifier.on_push_result(&mut self.cx, id, outcome, out)
            }
        }
        self.run_due(out);
        self.drain_local(out);
    }

    /// The persistent state as of the last applied LSN, in the versioned
    /// snapshot encoding. Usable for recovery once that LSN is durable.
    pub fn snapshot(&self) -> (Lsn, Vec<u8>) {
        let last = Lsn(self.cx.next_lsn.0 - 1);
        (last, snapshot::encode(&self.cx.state, last))
    }

    /// The first half of [`Shard::snapshot`]: a detached copy of the
    /// persistent state as of the last applied LSN (cost: a clone of the
    /// state), whose [`snapshot::Capture::encode`] gives the same bytes on
    /// any thread while the shard goes on.
    pub fn snapshot_capture(&self) -> snapshot::Capture {
        snapshot::capture(&self.cx.state, Lsn(self.cx.next_lsn.0 - 1))
    }

    /// Current counters.
    pub fn metrics(&self) -> Metrics {
        let mut m = self.cx.metrics;
        m.durable_lsn = self.cx.durable.0;
        m.connections = self.conn.conns.len() as u64;
        m.sessions = self
            .conn
            .conns
            .values()
            .filter(|c| matches!(c.session, Session::User { .. }))
            .count() as u64;
        m.subscriptions = self.conn.subs.values().map(|s| s.conns.len() as u64).sum();
        m.workspaces = self.cx.state.workspaces.len() as u64;
        m.users = self.cx.state.users.len() as u64;
        m.conversations = self.cx.state.conversations.len() as u64;
        m.pending_commits = self.cx.commits.len() as u64;
        m.pending_reads = self.owner.reads.len() as u64;
        m.pending_gathers = self.gather.gathers.len() as u64;
        m.cache_bytes = self.cx.state.cache.bytes() as u64;
        m.storage_failed = u64::from(self.cx.storage_failed.is_some());
        m.ready = u64::from(self.cx.is_ready());
        m.outbox_depth = self.cx.state.outbox.len() as u64;
        m.notify_all_subscribers = self.notifier.all_subscribers.total() as u64;
        m.push_in_flight = self.notifier.push_in_flight.len() as u64;
        m
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.cx.config.shard
    }

    /// The last LSN applied (live or replayed).
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.cx.next_lsn.0 - 1)
    }

    // ----- Helpers shared by the roles ---------------------------------------

    fn advance_clock(&mut self, now: Millis) {
        // Time is an input; it never moves backwards inside the shard.
        self.cx.now = self.cx.now.max(now);
    }

    fn drain_local(&mut self, out: &mut Vec<Effect>) {
        let mut steps = 0usize;
        while let Some(body) = self.cx.local.pop_front() {
            steps += 1;
            assert!(
                steps < LOCAL_STEPS_MAX,
                "shard sends itself messages in a cycle"
            );
            let me = self.cx.config.shard;
            self.on_peer(me, body, out);
            self.run_due(out);
        }
    }

    fn on_durable(&mut self, lsn: Lsn, out: &mut Vec<Effect>) {
        assert!(
            lsn < self.cx.next_lsn,
            "durable LSN {} beyond the last appended {}",
            lsn.0,
            self.cx.next_lsn.0 - 1
        );
        if lsn <= self.cx.durable {
            return;
        }
        self.cx.durable = lsn;
        self.cx.state.settle(lsn);
        self.home.pending_cursors.durable_through(lsn);
        while let Some(action) = self.cx.pop_durable(lsn) {
            self.run_action(action, out);
        }
    }

    /// Runs an action: fanout here (it needs the owner and notifier
    /// roles), the rest in the commit context; then any fanout that became
    /// due meanwhile.
    fn run_action(&mut self, action: Action, out: &mut Vec<Effect>) {
        match action {
            Action::Fanout {
                conversation,
                lsn,
                event,
            } => {
                self.owner
                    .fanout(&mut self.cx, conversation, event.clone(), out);
                // The commit point of the notifier: the message is durable.
                self.notifier
                    .notify_handoff(&mut self.cx, conversation, lsn, &event, out);
            }
            other => self.cx.run_action(other, out),
        }
        self.run_due(out);
    }

    /// Runs the role actions a handler found due at once (see `Ctx::due`).
    fn run_due(&mut self, out: &mut Vec<Effect>) {
        while let Some(action) = self.cx.due.pop_front() {
            self.run_action(action, out);
        }
    }

    fn on_tick(&mut self, out: &mut Vec<Effect>) {
        if self.cx.config.is_edge() {
            self.conn.expire_hellos(&mut self.cx, out);
            self.conn.expire_waiters(&mut self.cx, out);
            return;
        }
        if !self.owner.rounds_due.is_empty() {
            let due = std::mem::take(&mut self.owner.rounds_due);
            self.owner.send_membership_rounds(&mut self.cx, &due, out);
            self.notifier
                .send_notify_all_rounds(&mut self.cx, &due, out);
        }
        if std::mem::take(&mut self.home.directory_round_due) {
            self.home.send_directory_names(&mut self.cx, out);
            self.home.announce_replayed_profiles(&mut self.cx, out);
        }
        if !self.workspace.roles_due.is_empty() {
            let due = std::mem::take(&mut self.workspace.roles_due);
            self.workspace.send_role_rounds(&mut self.cx, &due, out);
        }
        if std::mem::take(&mut self.home.evict_due) {
            self.home.evict_deactivated(&mut self.cx, out);
        }
        self.conn.expire_hellos(&mut self.cx, out);
        self.conn.expire_waiters(&mut self.cx, out);
        self.gather.expire_gathers(&mut self.cx, out);
        self.owner.expire_dm_opens(&mut self.cx, out);
        self.workspace.retry_claims(&mut self.cx, out);
        self.notifier.pump_pushes(&mut self.cx, out);
        self.notifier.persist_handoff_watermark(&mut self.cx, out);
    }

    fn on_peer(&mut self, from: ShardId, body: PeerBody, out: &mut Vec<Effect>) {
        assert!(from.0 < self.cx.config.addresses(), "peer out of range");
        if self.cx.config.is_edge() && !matches!(body, PeerBody::Restarted | PeerBody::Conn(_)) {
            // Only the connection role lives on an edge; the runtime routes
            // by the destination's role, so this is a misrouted message
            // (never from a client). Counted and dropped.
            self.cx.metrics.peer_misrouted += 1;
            return;
        }
        match body {
            PeerBody::Restarted => self.on_restarted(from, out),
            PeerBody::Conn(msg) => self.conn.handle(&mut self.cx, from, msg, out),
            PeerBody::Owner(msg) => {
                self.owner
                    .handle(&mut self.cx, &mut self.notifier, from, msg, out)
            }
            PeerBody::Home(msg) => {
                self.home
                    .handle(&mut self.cx, &mut self.notifier, from, msg, out)
            }
            PeerBody::Workspace(msg) => self.workspace.handle(&mut self.cx, from, msg, out),
            PeerBody::Gather(msg) => self.gather.handle(&mut self.cx, &self.home, from, msg, out),
            PeerBody::Notifier(msg) => self.notifier.handle(&mut self.cx, from, msg, out),
        }
    }

    /// Another shard restarted (or this one, at start, for itself: nothing
    /// to do then). Forget what we knew of its memory, and send it what it
    /// needs to rebuild: our subscriptions to its conversations, our
    /// sessions of its users, and the memberships of its users in our
    /// conversations.
    ///
    /// With edges (cluster mode) a `Restarted` also stands for "messages
    /// between us may have been lost" (the runtime injects one when a node
    /// link broke or a group's leader moved; docs/CLUSTER.md, "Clients on
    /// any node"): an edge hearing it from a state shard re-sends its
    /// subscriptions and sessions (it holds nothing else of the sender); a
    /// state shard hearing it from an edge forgets that edge's sessions
    /// and interest (an edge holds nothing of ours to rebuild).
    fn on_restarted(&mut self, from: ShardId, out: &mut Vec<Effect>) {
        if from == self.cx.config.shard {
            return;
        }
        let from_edge = from.0 >= self.cx.config.shard_count;
        if self.cx.config.is_edge() {
            if !from_edge {
                self.conn.rewatch_owner(&mut self.cx, from, out);
                self.conn.rewatch_presence(&mut self.cx, from, out);
                self.conn.register_devices_with(&mut self.cx, from, out);
            }
            return;
        }
        if from_edge {
            self.home.forget_shard_connections(&mut self.cx, from);
            self.home.presence_forget_shard(&mut self.cx, from, out);
            self.owner.clear_interest_of(&mut self.cx, from);
            return;
        }
        self.home.forget_shard_connections(&mut self.cx, from);
        self.home.presence_forget_shard(&mut self.cx, from, out);
        self.owner.clear_interest_of(&mut self.cx, from);
        self.conn.rewatch_owner(&mut self.cx, from, out);
        self.conn.rewatch_presence(&mut self.cx, from, out);
        self.conn.register_devices_with(&mut self.cx, from, out);
        self.notifier.redrive_handoffs_to(&mut self.cx, from, out);
        // Its membership round (and our users' `all` levels in its
        // channels) goes out at the next tick, with those of any other
        // shard restarting meanwhile: one scan for a whole-node start.
        self.owner.rounds_due.insert(from);
        self.workspace.roles_due.insert(from);
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
        assert_send::<crate::api::PeerMsg>();
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
