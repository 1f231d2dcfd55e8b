//! The notifier: the hand-off of a committed message from its owner to the
//! candidates' home shards, the decision there, and the durable push outbox.
//!
//! Flow, all after durability:
//!
//! 1. Owner, at the commit point (right after `OwnerRole::fanout`, run
//!    when the message's record is durable): [`crate::notify::candidates`] in O(mentions +
//!    all-subscribers) (DM members; mentions; the channel's members whose
//!    level is `all`, from [`AllSubscribers`]; every member only for an
//!    honored `@channel` / `@here`), grouped by home shard, one
//!    `peer::notifier::Notify` per shard. The owner tracks the hand-off
//!    ([`Handoffs`]) until each home confirms (`NotifyDone`) that its
//!    decisions are durable, and appends the watermark of confirmed
//!    hand-offs (`NotifyHandedOff`) at most once per tick.
//! 2. Home: [`crate::notify::decide`] per candidate. `Delay` and `PushNow`
//!    send `Event::Notify` to the user's connected devices; with a push
//!    gateway they append `PushQueued` (due now, or after the grace window).
//! 3. Home, every tick: durable, due entries whose message is still unread
//!    become `Effect::Push` (at most PUSH_IN_FLIGHT_MAX in flight); an entry
//!    whose message was read meanwhile is settled as cancelled instead.
//! 4. `Input::PushResult`: 2xx → `PushSettled{delivered}` (never sent again);
//!    retry → due again after a doubling backoff (memory only: a restart
//!    retries at once); refused → settled, dropped.
//! 5. A read cursor passing a delivered push queues a `clear` entry, which
//!    travels the same way.
//!
//! Failure contract: a push is never lost once its `PushQueued` is durable,
//! and never re-sent once its `PushSettled{delivered}` is durable. Between
//! the gateway's 2xx and that record a crash re-sends it with the same
//! idempotency key, which the gateway uses to drop the repeat. A crash
//! between the hand-off and the durable decision loses nothing: the owner
//! re-sends unconfirmed hand-offs to a restarted home, and at its own start
//! hands off again every message after its durable watermark (the home
//! drops candidates already queued, delivered or read). So decisions are
//! at least once: after a crash, about one tick of messages may be decided
//! again (docs/NOTIFICATIONS.md, "The hand-off"). Beyond NOTIFY_HANDOFFS_MAX
//! unconfirmed hand-offs, or for a message no longer cached at a start, the
//! hand-off is abandoned and counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::api::{Effect, Push, PushAction, PushId, PushOutcome};
use crate::bitset::ShardSet;
use crate::commit::Action;
use crate::commit::Ctx;
use crate::config::PushMode;
use crate::constants::{
    NOTIFY_ALL_PER_CONVERSATION_MAX, NOTIFY_HANDOFFS_MAX, OUTBOX_ENTRIES_MAX, PEER_BATCH_MAX,
    PUSH_IN_FLIGHT_MAX, PUSH_RETRY_BASE_MS, PUSH_RETRY_MAX_MS, PUSH_STARTS_PER_TICK_MAX,
};
use crate::notify::{self, Candidate, Decision, DeviceView, Posted, Situation, Suppressed};
use crate::peer::{self};
use crate::record::{Record, StoredReason};
use crate::text::preview;
use crate::types::{
    ConversationId, ConversationKind, Event, Lsn, Millis, NotifyLevel, Reject, Seq, ShardId, UserId,
};

/// The notifier's state (memory; the outbox and the hand-off watermark are
/// in the persistent state).
#[derive(Debug, Default)]
pub(crate) struct NotifierRole {
    /// Owner side: per channel, the members whose level is `all` (derived
    /// from the home shards' rounds and messages).
    pub(crate) all_subscribers: AllSubscribers,
    /// Owner side: notification hand-offs awaiting confirmation or the
    /// rounds (the durable part is the state's watermark).
    pub(crate) handoffs: Handoffs,
    /// Home side: outbox ids by the time they are due (rebuilt from the
    /// outbox at start; retries move entries later; one per outbox entry).
    pub(crate) push_due: BTreeSet<(Millis, u64)>,
    /// Home side: pushes handed to the runtime, with their attempt count
    /// (outbox entries only).
    pub(crate) push_in_flight: BTreeMap<u64, u32>,
    /// Home side: failed attempts of entries waiting for a retry (outbox
    /// entries only).
    pub(crate) push_attempts: BTreeMap<u64, u32>,
}

/// Owner role: per channel, the members whose notification level is `all`.
///
/// Derived, memory only, never a source of truth: the level lives in the
/// user's home shard (`NotifySet`). The home tells the owner after the
/// record is durable (`peer::notifier::NotifyAll`), again when such a user is
/// re-added to the channel, and sends a full round of its users' `all`
/// levels (`peer::notifier::NotifyAllRound`) at its own start and whenever the
/// owner restarts; a round replaces that home's entries. So the set heals
/// from any crash the way the user → conversations index does, and no
/// second durable copy can disagree with the first.
///
/// It may briefly hold a user whose level is no longer `all` (a reserved
/// slot whose write failed, a change on its way): harmless, because the
/// home decides with its own level (`Suppressed::Level`). It never lacks a
/// durable `all` level for longer than a message in flight, except above
/// the cap (see `capped`). Each set holds at most
/// NOTIFY_ALL_PER_CONVERSATION_MAX users who are members.
#[derive(Debug, Default)]
pub(crate) struct AllSubscribers {
    /// Channel → subscribers.
    by_conversation: BTreeMap<ConversationId, BTreeSet<UserId>>,
    /// Home shards whose round arrived since this start.
    rounds_done: ShardSet,
    /// Rounds being received, per home shard (one round per home at a
    /// time, at most the home's `all` levels in this shard's channels).
    rounds: BTreeMap<ShardId, Vec<(UserId, ConversationId)>>,
}

/// Owner role: hand-offs whose homes have not confirmed them durable, and
/// the messages waiting to be handed off (memory; the durable part is the
/// `NotifyHandedOff` watermark).
#[derive(Debug, Default)]
pub(crate) struct Handoffs {
    /// Message LSN → who still owes a confirmation (at most
    /// NOTIFY_HANDOFFS_MAX; typically one group commit's worth).
    pending: BTreeMap<u64, PendingHandoff>,
    /// Highest message LSN handed off (or owed from before this start).
    last: u64,
    /// (LSN, conversation, message) waiting for the rounds after a start,
    /// in LSN order (at most NOTIFY_HANDOFFS_MAX).
    backlog: VecDeque<(u64, ConversationId, Arc<Event>)>,
}

/// One message's hand-off awaiting confirmations.
#[derive(Debug)]
struct PendingHandoff {
    conversation: ConversationId,
    event: Arc<Event>,
    /// Home shards that have not confirmed.
    homes: BTreeSet<ShardId>,
}

impl AllSubscribers {
    /// The subscribers of a channel, sorted.
    fn of(&self, conversation: ConversationId) -> Vec<UserId> {
        self.by_conversation
            .get(&conversation)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Adds `user` unless the channel's set is full; `false` if it is.
    fn add(&mut self, conversation: ConversationId, user: UserId) -> bool {
        let set = self.by_conversation.entry(conversation).or_default();
        if set.contains(&user) {
            return true;
        }
        if set.len() >= NOTIFY_ALL_PER_CONVERSATION_MAX {
            return false;
        }
        set.insert(user);
        true
    }

    /// Removes `user` from a channel's set.
    pub(crate) fn remove(&mut self, conversation: ConversationId, user: UserId) {
        if let Some(set) = self.by_conversation.get_mut(&conversation) {
            set.remove(&user);
            if set.is_empty() {
                self.by_conversation.remove(&conversation);
            }
        }
    }

    /// Every home shard's round arrived since start.
    fn complete(&self, shard_count: u16) -> bool {
        self.rounds_done.len() == usize::from(shard_count)
    }

    /// Subscribers in all channels (gauge).
    pub(crate) fn total(&self) -> usize {
        self.by_conversation.values().map(BTreeSet::len).sum()
    }
}

fn all_full() -> Reject {
    Reject::TooLarge(format!(
        "notification level all: more than NOTIFY_ALL_PER_CONVERSATION_MAX \
         ({NOTIFY_ALL_PER_CONVERSATION_MAX}) members of the channel have it"
    ))
}

/// The idempotency key of a push or clear: stable across retries and
/// restarts, distinct per (user, message, action).
pub fn idempotency_key(action: PushAction, user: UserId, conv: ConversationId, seq: Seq) -> String {
    let tag = match action {
        PushAction::Notify => "push",
        PushAction::Clear => "clear",
    };
    format!("{tag}-{}-{}-{}", user.0, conv.0, seq.0)
}

/// Retry delay after `attempts` failures.
fn backoff_ms(attempts: u32) -> u64 {
    let shift = attempts.saturating_sub(1).min(16);
    (PUSH_RETRY_BASE_MS << shift).min(PUSH_RETRY_MAX_MS)
}

impl NotifierRole {
    /// Owner role, at the commit point: hands a durable message to the home
    /// shards of its candidates. A restarted owner waits for every home's
    /// round of `all` levels (one tick) before it hands anything off:
    /// until then messages queue in the backlog, in LSN order.
    pub(crate) fn notify_handoff(
        &mut self,
        cx: &mut Ctx,
        conversation: ConversationId,
        lsn: Lsn,
        event: &Arc<Event>,
        out: &mut Vec<crate::api::Effect>,
    ) {
        // Changes of messages (issue 17) notify no one.
        if crate::types::posted(event.as_ref()).is_none()
            || !cx.state.conversations.contains_key(&conversation)
        {
            return;
        }
        let lsn = lsn.0;
        if self.all_subscribers.complete(cx.shard_count()) {
            return self.handoff(cx, lsn, conversation, event.clone(), None, out);
        }
        cx.metrics.notify_handoffs_deferred += 1;
        self.defer_handoff(cx, lsn, conversation, event.clone(), out);
    }

    /// Queues a hand-off until the rounds are in; bounded: beyond
    /// NOTIFY_HANDOFFS_MAX the oldest goes now, with what is known.
    fn defer_handoff(
        &mut self,
        cx: &mut Ctx,
        lsn: u64,
        conversation: ConversationId,
        event: Arc<Event>,
        out: &mut Vec<Effect>,
    ) {
        if self.handoffs.backlog.len() >= NOTIFY_HANDOFFS_MAX {
            if let Some((l, c, e)) = self.handoffs.backlog.pop_front() {
                self.handoff(cx, l, c, e, None, out);
            }
        }
        self.handoffs.backlog.push_back((lsn, conversation, event));
    }

    /// Hands a message (at `lsn` in this shard's log) to its candidates'
    /// home shards (only to `only` when given: a restarted home), and
    /// tracks it until each of them confirmed its decisions durable.
    fn handoff(
        &mut self,
        cx: &mut Ctx,
        lsn: u64,
        conversation: ConversationId,
        event: Arc<Event>,
        only: Option<ShardId>,
        out: &mut Vec<Effect>,
    ) {
        let (Event::Message(m), Some(c)) =
            (event.as_ref(), cx.state.conversations.get(&conversation))
        else {
            return;
        };
        // A message deleted since (issue 17) notifies no one: a hand-off
        // driven again after a restart must not push it once more (its
        // delivered push was cleared, which forgot it in `pushed`).
        let deleted = c.live.get(&m.seq.0).is_some_and(|e| e.live.deleted);
        let direct = matches!(c.kind, ConversationKind::Dm | ConversationKind::GroupDm);
        let all = if direct {
            Vec::new()
        } else {
            self.all_subscribers.of(conversation)
        };
        let posted = Posted {
            direct,
            mentions: &m.mentions,
            broadcast: m.broadcast,
            member_count: c.members.len(),
            broadcast_members_max: cx.config.notify.broadcast_members_max,
            all: &all,
        };
        let list = if deleted {
            Vec::new()
        } else {
            notify::candidates(&posted, c.members.keys(), |u| c.members.contains_key(&u))
        };
        let count = cx.shard_count();
        let mut by_home: BTreeMap<ShardId, Vec<Candidate>> = BTreeMap::new();
        for cand in list {
            let home = crate::ids::shard_of(cand.user, count);
            if only.is_none_or(|h| h == home) {
                by_home.entry(home).or_default().push(cand);
            }
        }
        self.handoffs.last = self.handoffs.last.max(lsn);
        if by_home.is_empty() {
            if let Some(home) = only {
                // Nothing left for that home (its users left): it owes
                // no confirmation any more.
                self.on_notify_done(
                    cx,
                    home,
                    peer::notifier::NotifyDone {
                        handoff: cx.ticket(lsn),
                    },
                );
            }
            return;
        }
        let ticket = cx.ticket(lsn);
        let homes: BTreeSet<ShardId> = by_home.keys().copied().collect();
        match self.handoffs.pending.get_mut(&lsn) {
            Some(p) => p.homes.extend(homes),
            None => {
                if self.handoffs.pending.len() >= NOTIFY_HANDOFFS_MAX {
                    // Bounded: give up tracking the oldest (a home that
                    // never confirms: its storage failed). Counted.
                    self.handoffs.pending.pop_first();
                    cx.metrics.notify_handoffs_abandoned += 1;
                }
                let p = PendingHandoff {
                    conversation,
                    event: event.clone(),
                    homes,
                };
                self.handoffs.pending.insert(lsn, p);
            }
        }
        for (home, cands) in by_home {
            let n = cands.len().div_ceil(PEER_BATCH_MAX);
            for (i, chunk) in cands.chunks(PEER_BATCH_MAX).enumerate() {
                let body = peer::notifier::Notify {
                    event: event.clone(),
                    direct,
                    candidates: chunk.to_vec(),
                    // The home confirms after its last chunk's records.
                    handoff: (i + 1 == n).then_some(ticket),
                };
                cx.send_peer(home, body, out);
            }
        }
    }

    /// Owner role: a home shard's decisions for a hand-off are durable.
    pub(crate) fn on_notify_done(
        &mut self,
        cx: &mut Ctx,
        home: ShardId,
        m: peer::notifier::NotifyDone,
    ) {
        let peer::notifier::NotifyDone { handoff } = m;
        if handoff.incarnation != cx.incarnation {
            return; // An earlier start's hand-off: the watermark re-drove it.
        }
        if let Some(p) = self.handoffs.pending.get_mut(&handoff.id) {
            p.homes.remove(&home);
            if p.homes.is_empty() {
                self.handoffs.pending.remove(&handoff.id);
            }
        }
    }

    /// Owner role: `home` restarted, and may have lost hand-offs it had
    /// not made durable: hand those off to it again (its outbox drops
    /// what it already queued or delivered).
    pub(crate) fn redrive_handoffs_to(
        &mut self,
        cx: &mut Ctx,
        home: ShardId,
        out: &mut Vec<Effect>,
    ) {
        let owed: Vec<(u64, ConversationId, Arc<Event>)> = self
            .handoffs
            .pending
            .iter()
            .filter(|(_, p)| p.homes.contains(&home))
            .map(|(l, p)| (*l, p.conversation, p.event.clone()))
            .collect();
        cx.metrics.notify_handoffs_resent += owed.len() as u64;
        for (lsn, conversation, event) in owed {
            self.handoff(cx, lsn, conversation, event, Some(home), out);
        }
    }

    /// Owner role, at start: the messages after the durable watermark may
    /// have been handed off without a durable decision (a crash of this
    /// shard or of a home): queue them to be handed off again once the
    /// rounds are in. Which they are is `State::handoff_tail` (the newest
    /// [`NOTIFY_HANDOFFS_MAX`] after the watermark, kept by `apply` and in
    /// snapshots; older ones count as abandoned). Their events come from
    /// the recent cache (the newest messages of each conversation; one that
    /// is not cached is counted as abandoned).
    pub(crate) fn collect_redrive(&mut self, cx: &mut Ctx) {
        let mark = cx.state.handoff_watermark;
        cx.metrics.notify_handoffs_abandoned += cx.state.handoff_tail_dropped;
        cx.state.handoff_tail_dropped = 0;
        self.handoffs.last = mark;
        let owed: Vec<(u64, ConversationId, Seq)> = cx.state.handoff_tail.iter().copied().collect();
        for (lsn, conversation, seq) in owed {
            debug_assert!(lsn > mark);
            let cached = cx.state.cache.range(conversation, seq, seq);
            let Some(m) = cached.into_iter().next() else {
                cx.metrics.notify_handoffs_abandoned += 1;
                continue;
            };
            cx.metrics.notify_handoffs_redriven += 1;
            let event = Arc::new(Event::Message(m));
            self.handoffs.backlog.push_back((lsn, conversation, event));
        }
    }

    /// Owner role, every tick: appends the hand-off watermark when it moved
    /// (at most one small record per tick, and none while idle).
    pub(crate) fn persist_handoff_watermark(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        if !self.all_subscribers.complete(cx.shard_count()) {
            return; // The backlog is not handed off yet.
        }
        let mark = match self.handoffs.pending.first_key_value() {
            Some((first, _)) => first - 1,
            None => self.handoffs.last,
        };
        if mark > cx.state.handoff_watermark && cx.writable().is_ok() {
            cx.commit(Record::NotifyHandedOff { lsn: mark }, Vec::new(), out);
        }
    }

    /// Owner role: a member asks for a level. `all` takes a slot in the
    /// channel's set now (so concurrent requests cannot pass the cap); the
    /// home's answer after its record is durable confirms or frees it.
    /// `Err` when the set is full.
    pub(crate) fn reserve_notify_level(
        &mut self,
        cx: &mut Ctx,
        conversation: ConversationId,
        user: UserId,
        level: NotifyLevel,
    ) -> Result<(), Reject> {
        let dm = cx
            .state
            .conversations
            .get(&conversation)
            .is_none_or(|c| c.is_dm());
        if dm || level != NotifyLevel::All {
            return Ok(());
        }
        if self.all_subscribers.add(conversation, user) {
            Ok(())
        } else {
            Err(all_full())
        }
    }

    /// Owner role: a member left or was removed: no longer a subscriber
    /// (the home keeps the level; a re-add brings it back).
    pub(crate) fn notify_member_gone(&mut self, conversation: ConversationId, user: UserId) {
        self.all_subscribers.remove(conversation, user);
    }

    /// Owner role: a home says `user`'s level for `conversation` is
    /// (durably) `all`, or no longer.
    pub(crate) fn on_notify_all(&mut self, cx: &mut Ctx, m: peer::notifier::NotifyAll) {
        let peer::notifier::NotifyAll {
            user,
            conversation,
            all,
        } = m;
        let Some(c) = cx.state.conversations.get(&conversation) else {
            return;
        };
        if c.is_dm() {
            return;
        }
        if !all {
            return self.all_subscribers.remove(conversation, user);
        }
        if c.members.contains_key(&user) && !self.all_subscribers.add(conversation, user) {
            cx.metrics.notify_all_capped += 1;
        }
    }

    /// Owner role: a chunk of a home's round of `all` levels; the last one
    /// replaces that home's entries.
    pub(crate) fn on_notify_all_round(
        &mut self,
        cx: &mut Ctx,
        home: ShardId,
        m: peer::notifier::NotifyAllRound,
        out: &mut Vec<Effect>,
    ) {
        let peer::notifier::NotifyAllRound {
            entries,
            first,
            last,
        } = m;
        let rounds = &mut self.all_subscribers.rounds;
        if first {
            rounds.insert(home, Vec::new());
        }
        let Some(acc) = rounds.get_mut(&home) else {
            return; // A tail of a round whose start we never saw.
        };
        acc.extend(entries);
        if !last {
            return;
        }
        let entries = rounds.remove(&home).unwrap_or_default();
        let count = cx.shard_count();
        for set in self.all_subscribers.by_conversation.values_mut() {
            set.retain(|u| crate::ids::shard_of(*u, count) != home);
        }
        self.all_subscribers
            .by_conversation
            .retain(|_, set| !set.is_empty());
        for (user, conversation) in entries {
            self.on_notify_all(
                cx,
                peer::notifier::NotifyAll {
                    user,
                    conversation,
                    all: true,
                },
            );
        }
        self.all_subscribers.rounds_done.insert(home);
        if self.all_subscribers.complete(count) {
            while let Some((lsn, conversation, event)) = self.handoffs.backlog.pop_front() {
                self.handoff(cx, lsn, conversation, event, None, out);
            }
        }
    }

    /// Home role: sends each owner in `to` the `all` levels of this shard's
    /// users in its conversations (one scan for all of them).
    pub(crate) fn send_notify_all_rounds(
        &mut self,
        cx: &mut Ctx,
        to: &ShardSet,
        out: &mut Vec<Effect>,
    ) {
        let count = cx.shard_count();
        let mut entries: BTreeMap<ShardId, Vec<(UserId, ConversationId)>> =
            to.iter().map(|s| (s, Vec::new())).collect();
        for u in cx.state.users.values() {
            for (conversation, pref) in &u.prefs {
                if pref.level != NotifyLevel::All {
                    continue;
                }
                let owner = crate::ids::shard_of(*conversation, count);
                if let Some(bucket) = entries.get_mut(&owner) {
                    bucket.push((u.id, *conversation));
                }
            }
        }
        for (owner, mut entries) in entries {
            entries.sort_unstable();
            let chunks: Vec<Vec<(UserId, ConversationId)>> = if entries.is_empty() {
                vec![Vec::new()]
            } else {
                entries.chunks(PEER_BATCH_MAX).map(<[_]>::to_vec).collect()
            };
            let n = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let body = peer::notifier::NotifyAllRound {
                    entries: chunk,
                    first: i == 0,
                    last: i + 1 == n,
                };
                cx.send_peer(owner, body, out);
            }
        }
    }

    /// Home role: whether `user`'s level for `conversation` is explicitly
    /// `all` (what the owner's set mirrors).
    pub(crate) fn level_is_all(
        &self,
        cx: &Ctx,
        user: UserId,
        conversation: ConversationId,
    ) -> bool {
        cx.state
            .users
            .get(&user)
            .and_then(|u| u.prefs.get(&conversation))
            .is_some_and(|p| p.level == NotifyLevel::All)
    }

    /// Home role: decides each candidate homed here; with `handoff`,
    /// confirms to the owner once the resulting records are durable.
    pub(crate) fn on_notify(
        &mut self,
        cx: &mut Ctx,
        owner: ShardId,
        m: peer::notifier::Notify,
        out: &mut Vec<Effect>,
    ) {
        let peer::notifier::Notify {
            event,
            direct,
            candidates,
            handoff,
        } = m;
        let event = &event;
        self.decide_candidates(cx, event, direct, candidates, out);
        if let Some(handoff) = handoff {
            let body = peer::notifier::NotifyDone { handoff };
            cx.after_durable(
                Action::Peer {
                    to: owner,
                    body: body.into(),
                },
                out,
            );
        }
    }

    fn decide_candidates(
        &mut self,
        cx: &mut Ctx,
        event: &Arc<Event>,
        direct: bool,
        candidates: Vec<Candidate>,
        out: &mut Vec<Effect>,
    ) {
        let Event::Message(m) = event.as_ref() else {
            return;
        };
        let now = cx.now;
        for cand in candidates {
            let Some(u) = cx.state.users.get(&cand.user) else {
                continue;
            };
            let devices: Vec<DeviceView> = u
                .devices
                .values()
                .map(|d| DeviceView {
                    kind: d.kind,
                    focused: d.focused,
                    active_at: d.active_at,
                })
                .collect();
            let pref = u.prefs.get(&m.conversation);
            let situation = Situation {
                user: cand.user,
                sender: m.sender,
                conversation: m.conversation,
                seq: m.seq,
                reason: cand.reason,
                here: cand.here,
                level: pref.map_or(notify::default_level(direct), |p| p.level),
                muted: pref.is_some_and(|p| p.muted),
                dnd_until: u.dnd_until,
                read: u.cursor(m.conversation),
                devices: &devices,
                now,
            };
            let decision = notify::decide(&situation);
            cx.metrics.notify_decided += 1;
            let delayed = match decision {
                Decision::Suppress(why) => {
                    let i = Suppressed::ALL
                        .iter()
                        .position(|s| *s == why)
                        .unwrap_or_default();
                    cx.metrics.notify_suppressed[i] += 1;
                    continue;
                }
                Decision::Delay => true,
                Decision::PushNow => false,
            };
            if !devices.is_empty() {
                cx.metrics.notify_in_app += 1;
                let inapp = Arc::new(Event::Notify {
                    conversation: m.conversation,
                    seq: m.seq,
                    reason: cand.reason,
                });
                cx.deliver_to_user(cand.user, inapp, out);
            }
            if cx.config.notify.push == PushMode::Off {
                continue;
            }
            let key = (cand.user, m.conversation, m.seq, false);
            let pushed = cx.state.pushed_up_to(cand.user, m.conversation);
            if cx.state.outbox_index.contains_key(&key) || pushed.is_some_and(|s| s >= m.seq) {
                // Handed over again (after a crash): one push per (user,
                // message), and none older than one delivered (even if a
                // delete's clear retracted it since).
                continue;
            }
            if cx.state.outbox.len() >= OUTBOX_ENTRIES_MAX || cx.writable().is_err() {
                cx.metrics.push_dropped += 1;
                continue;
            }
            let due = if delayed {
                cx.metrics.push_delayed += 1;
                Millis(now.0 + cx.config.notify.grace_ms)
            } else {
                cx.metrics.push_immediate += 1;
                now
            };
            let record = Record::PushQueued {
                user: cand.user.0,
                conversation: m.conversation.0,
                seq: m.seq.0,
                sender: m.sender.0,
                reason: StoredReason::from(cand.reason),
                preview: preview(&m.body),
                due: due.0,
                clear: false,
            };
            let id = cx.commit(record, Vec::new(), out);
            self.push_due.insert((due, id.0));
        }
    }

    /// Home role, after a cursor moved to `seq`: cancels queued pushes the
    /// read covers and queues a `clear` for a delivered one.
    pub(crate) fn notify_read(
        &mut self,
        cx: &mut Ctx,
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
        out: &mut Vec<Effect>,
    ) {
        let lo = (user, conversation, Seq(0), false);
        let hi = (user, conversation, seq, true);
        let covered: Vec<(u64, bool)> = cx
            .state
            .outbox_index
            .range(lo..=hi)
            .map(|(k, id)| (*id, k.3))
            .collect();
        for (id, clear) in covered {
            if !clear && !self.push_in_flight.contains_key(&id) {
                self.cancel_push(cx, id, out);
            }
        }
        let pushed = cx.state.pushed.get(&(user, conversation)).copied();
        if let Some(s) = pushed.filter(|s| *s <= seq) {
            self.queue_clear(cx, user, conversation, s, out);
        }
    }

    /// Home role, a message was deleted (issue 17): cancels its queued
    /// pushes (not one in flight: the gateway has it already) and queues a
    /// `clear` for a delivered one of each recipient homed here, so the
    /// deleted text is retracted from devices. O(outbox entries): one scan
    /// per delete per home shard, the outbox being at most
    /// OUTBOX_ENTRIES_MAX.
    pub(crate) fn notify_deleted(
        &mut self,
        cx: &mut Ctx,
        m: crate::peer::home::MessageDeleted,
        out: &mut Vec<Effect>,
    ) {
        let crate::peer::home::MessageDeleted { conversation, seq } = m;
        let queued: Vec<u64> = cx
            .state
            .outbox_index
            .iter()
            .filter(|(k, _)| k.1 == conversation && k.2 == seq && !k.3)
            .map(|(_, id)| *id)
            .filter(|id| !self.push_in_flight.contains_key(id))
            .collect();
        for id in queued {
            self.cancel_push(cx, id, out);
        }
        let delivered: Vec<UserId> = cx
            .state
            .pushed
            .iter()
            .filter(|((_, c), s)| *c == conversation && **s == seq)
            .map(|((u, _), _)| *u)
            .collect();
        for user in delivered {
            self.queue_clear(cx, user, conversation, seq, out);
        }
    }

    fn cancel_push(&mut self, cx: &mut Ctx, id: u64, out: &mut Vec<Effect>) {
        if cx.writable().is_err() {
            return; // Retried at the next pump.
        }
        if let Some(e) = cx.state.outbox.get(&id) {
            self.push_due.remove(&(e.due, id));
        }
        self.push_attempts.remove(&id);
        cx.metrics.push_cancelled += 1;
        let record = Record::PushSettled {
            id,
            delivered: false,
        };
        cx.commit(record, Vec::new(), out);
    }

    fn queue_clear(
        &mut self,
        cx: &mut Ctx,
        user: UserId,
        conv: ConversationId,
        seq: Seq,
        out: &mut Vec<Effect>,
    ) {
        let key = (user, conv, seq, true);
        if cx.state.outbox_index.contains_key(&key)
            || cx.state.outbox.len() >= OUTBOX_ENTRIES_MAX
            || cx.writable().is_err()
        {
            return;
        }
        let record = Record::PushQueued {
            user: user.0,
            conversation: conv.0,
            seq: seq.0,
            sender: user.0,
            reason: StoredReason::Dm,
            preview: String::new(),
            due: cx.now.0,
            clear: true,
        };
        let id = cx.commit(record, Vec::new(), out);
        self.push_due.insert((cx.now, id.0));
    }

    /// Home role, every tick: starts due, durable pushes.
    pub(crate) fn pump_pushes(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        if cx.config.notify.push == PushMode::Off {
            return;
        }
        let now = cx.now;
        let durable = cx.durable.0;
        let mut started = 0;
        let due: Vec<(Millis, u64)> = self.push_due.range(..=(now, u64::MAX)).copied().collect();
        for (at, id) in due {
            if started >= PUSH_STARTS_PER_TICK_MAX
                || self.push_in_flight.len() >= PUSH_IN_FLIGHT_MAX
            {
                break;
            }
            if id > durable {
                continue; // Persist, then act.
            }
            let Some(e) = cx.state.outbox.get(&id).cloned() else {
                self.push_due.remove(&(at, id));
                continue;
            };
            let Some(u) = cx.state.users.get(&e.user) else {
                continue;
            };
            if !e.clear && u.cursor(e.conversation) >= e.seq {
                self.cancel_push(cx, id, out);
                continue;
            }
            let badge = cx
                .state
                .pushed
                .range((e.user, ConversationId(0))..=(e.user, ConversationId(u64::MAX)))
                .count()
                + usize::from(!e.clear);
            let action = if e.clear {
                PushAction::Clear
            } else {
                PushAction::Notify
            };
            let push = Push {
                action,
                user: e.user,
                devices: u.devices.values().map(|d| d.kind).collect(),
                conversation: e.conversation,
                seq: e.seq,
                reason: e.reason,
                sender: e.sender,
                preview: e.preview.clone(),
                badge: u32::try_from(badge).unwrap_or(u32::MAX),
                idempotency_key: idempotency_key(action, e.user, e.conversation, e.seq),
            };
            self.push_due.remove(&(at, id));
            let attempts = self.push_attempts.remove(&id).unwrap_or(0);
            self.push_in_flight.insert(id, attempts);
            started += 1;
            out.push(Effect::Push {
                id: PushId(id),
                push: Box::new(push),
            });
        }
    }

    /// Home role: the gateway answered.
    pub(crate) fn on_push_result(
        &mut self,
        cx: &mut Ctx,
        id: PushId,
        outcome: PushOutcome,
        out: &mut Vec<Effect>,
    ) {
        let Some(attempts) = self.push_in_flight.remove(&id.0) else {
            return; // Not ours (an earlier start's push): ignore.
        };
        let Some(e) = cx.state.outbox.get(&id.0).cloned() else {
            return;
        };
        let settle = match outcome {
            PushOutcome::Retry => None,
            PushOutcome::Delivered => Some(true),
            PushOutcome::Rejected => Some(false),
        };
        let Some(delivered) = settle.filter(|_| cx.writable().is_ok()) else {
            let attempts = attempts + 1;
            cx.metrics.push_retried += 1;
            self.push_attempts.insert(id.0, attempts);
            self.push_due
                .insert((Millis(cx.now.0 + backoff_ms(attempts)), id.0));
            return;
        };
        match (delivered, e.clear) {
            (true, false) => cx.metrics.pushed += 1,
            (true, true) => cx.metrics.push_cleared += 1,
            (false, _) => cx.metrics.push_rejected += 1,
        }
        cx.commit(
            Record::PushSettled {
                id: id.0,
                delivered,
            },
            Vec::new(),
            out,
        );
        // Read while the push was in flight: retract it now.
        let read = cx
            .state
            .users
            .get(&e.user)
            .map_or(Seq(0), |u| u.cursor(e.conversation));
        if delivered && !e.clear && read >= e.seq {
            self.queue_clear(cx, e.user, e.conversation, e.seq, out);
        }
    }
}

impl NotifierRole {
    /// The notifier role's entry point: one message addressed to it.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        msg: peer::notifier::NotifierMsg,
        out: &mut Vec<Effect>,
    ) {
        use peer::notifier::NotifierMsg;
        match msg {
            NotifierMsg::Notify(m) => self.on_notify(cx, from, m, out),
            NotifierMsg::NotifyDone(m) => self.on_notify_done(cx, from, m),
            NotifierMsg::NotifyAll(m) => self.on_notify_all(cx, m),
            NotifierMsg::NotifyAllRound(m) => self.on_notify_all_round(cx, from, m, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1), PUSH_RETRY_BASE_MS);
        assert_eq!(backoff_ms(2), 2 * PUSH_RETRY_BASE_MS);
        assert_eq!(backoff_ms(100), PUSH_RETRY_MAX_MS);
    }

    #[test]
    fn all_subscribers_are_capped_per_channel_and_refused_by_name() {
        let mut set = AllSubscribers::default();
        let (a, b) = (ConversationId(1), ConversationId(2));
        for u in 0..NOTIFY_ALL_PER_CONVERSATION_MAX as u64 {
            assert!(set.add(a, UserId(u)));
        }
        let over = UserId(NOTIFY_ALL_PER_CONVERSATION_MAX as u64);
        assert!(!set.add(a, over), "the cap holds");
        assert!(set.add(a, UserId(0)), "a subscriber already in stays in");
        assert!(set.add(b, over), "the cap is per channel");
        assert_eq!(set.total(), NOTIFY_ALL_PER_CONVERSATION_MAX + 1);
        set.remove(a, UserId(0));
        assert!(set.add(a, over), "a freed slot is reusable");
        assert_eq!(set.of(b), vec![over]);
        set.remove(b, over);
        assert!(set.of(b).is_empty() && !set.by_conversation.contains_key(&b));
        let Reject::TooLarge(why) = all_full() else {
            panic!("a full set is TooLarge");
        };
        assert!(
            why.contains("NOTIFY_ALL_PER_CONVERSATION_MAX (1000)"),
            "{why}"
        );
    }

    #[test]
    fn keys_are_distinct_per_action() {
        let (u, c, s) = (UserId(1), ConversationId(2), Seq(3));
        assert_eq!(idempotency_key(PushAction::Notify, u, c, s), "push-1-2-3");
        assert_ne!(
            idempotency_key(PushAction::Notify, u, c, s),
            idempotency_key(PushAction::Clear, u, c, s)
        );
    }
}
