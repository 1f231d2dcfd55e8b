//! The commit machinery every role shares: [`Ctx`] holds the persistent
//! [`State`], the LSN counters and the queue of [`Action`]s waiting for
//! durability, the shard's clock, configuration and counters, and the
//! queue of messages the shard sends itself.
//!
//! Persist, then act: [`Ctx::commit`] appends a record (an
//! `Effect::Append` numbered by the shard), applies it to the state at once,
//! and queues the [`Action`]s that depend on it (acks, fanout, messages to
//! other shards); they run when `Input::Durable` covers the record.
//! [`Ctx::writable`] says whether a write is accepted now (storage failed,
//! or PENDING_COMMITS_MAX actions waiting: `Unavailable`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::api::{Effect, PeerMsg};
use crate::bitset::ShardSet;
use crate::config::{Metrics, ShardConfig};
use crate::constants::PENDING_COMMITS_MAX;
use crate::ids::shard_of;
use crate::peer::{self, Origin, PeerBody, Ticket};
use crate::record::Record;
use crate::state::State;
use crate::types::{
    ConnId, ConversationId, Event, Lsn, Millis, Reject, ReqId, Response, ShardId, UnavailableCause,
    UserId, WorkspaceId,
};

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
        /// The message record's LSN (the notifier's hand-off key).
        lsn: Lsn,
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

impl Action {
    /// A fanout of `event`, whose record is at `lsn`.
    pub(crate) fn fanout(conversation: ConversationId, lsn: Lsn, event: Event) -> Action {
        Action::Fanout {
            conversation,
            lsn,
            event: Arc::new(event),
        }
    }
}

/// The commit machinery and what every role shares (see the module doc).
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Static configuration.
    pub(crate) config: ShardConfig,
    /// The persistent state (snapshot + WAL), applied live and on replay.
    pub(crate) state: State,
    /// The LSN the next appended record gets.
    pub(crate) next_lsn: Lsn,
    /// The highest LSN known durable.
    pub(crate) durable: Lsn,
    /// Why storage failed, once it did (every write is refused after).
    pub(crate) storage_failed: Option<String>,
    /// The input time (never moves backwards).
    pub(crate) now: Millis,
    /// Messages this shard sent itself, handled before the current input
    /// returns (at most LOCAL_STEPS_MAX per input).
    pub(crate) local: VecDeque<PeerBody>,
    /// Actions waiting for their record's durability, in LSN order (at most
    /// PENDING_COMMITS_MAX: `writable` refuses beyond).
    pub(crate) commits: VecDeque<(Lsn, Action)>,
    /// Counters for `/metrics`.
    pub(crate) metrics: Metrics,
    /// Token secrets generated in this incarnation (see `new_secret`).
    pub(crate) secret_counter: u64,
    /// Distinguishes this start from earlier ones (see `Origin`, `Ticket`).
    pub(crate) incarnation: u64,
    /// Owners whose membership round arrived since start (the home role's
    /// derived lists are complete once all did: `is_ready`).
    pub(crate) rounds_done: ShardSet,
    /// Fanouts found due at once inside a handler (see `run_action`); the
    /// shard runs them when the handler returns. At most one per action a
    /// handler runs.
    pub(crate) due: VecDeque<Action>,
}

impl Ctx {
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
        assert!(to.0 < self.config.addresses(), "peer shard out of range");
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
    /// durable. The caller checked [`Ctx::writable`].
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

    /// Runs an action now. A fanout needs the owner and notifier roles: it
    /// is queued in `due`, which the shard runs as soon as the current
    /// handler returns (fanouts are queued by `commit`, so in practice they
    /// only run from `Input::Durable`).
    pub(crate) fn run_action(&mut self, action: Action, out: &mut Vec<Effect>) {
        match action {
            Action::Reply { origin, result } => self.reply(origin, result, out),
            Action::Peer { to, body } => self.send_peer(to, body, out),
            Action::DeliverUser { user, event } => self.deliver_to_user(user, event, out),
            fanout @ Action::Fanout { .. } => self.due.push_back(fanout),
        }
    }

    /// Pops the next action whose record is durable through `lsn`.
    pub(crate) fn pop_durable(&mut self, lsn: Lsn) -> Option<Action> {
        if self.commits.front().is_some_and(|(l, _)| *l <= lsn) {
            self.commits.pop_front().map(|(_, action)| action)
        } else {
            None
        }
    }

    /// Groups a user's devices by the shard (and its incarnation) holding
    /// them.
    pub(crate) fn devices_by_shard(&self, user: UserId) -> BTreeMap<(ShardId, u64), Vec<ConnId>> {
        let mut by_shard: BTreeMap<(ShardId, u64), Vec<ConnId>> = BTreeMap::new();
        if let Some(u) = self.state.users.get(&user) {
            for (conn, d) in &u.devices {
                by_shard
                    .entry((conn.shard(), d.incarnation))
                    .or_default()
                    .push(*conn);
            }
        }
        by_shard
    }

    /// Delivers an event to every connected device of a user homed here.
    pub(crate) fn deliver_to_user(
        &mut self,
        user: UserId,
        event: Arc<Event>,
        out: &mut Vec<Effect>,
    ) {
        for ((shard, incarnation), conns) in self.devices_by_shard(user) {
            let body = peer::conn::DeliverToConns {
                user,
                conns,
                incarnation,
                event: event.clone(),
            };
            self.send_peer(shard, body, out);
        }
    }
}
