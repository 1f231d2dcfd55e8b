//! The notifier: the hand-off of a committed message from its owner to the
//! candidates' home shards, the decision there, and the durable push outbox.
//!
//! Flow, all after durability:
//!
//! 1. Owner, at the commit point (`Shard::fanout`, run when the message's
//!    record is durable): [`crate::notify::candidates`] in O(mentions) (DM
//!    members; mentions; every member only for an honored `@channel` /
//!    `@here`), grouped by home shard, one `PeerBody::Notify` per shard.
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
//! idempotency key, which the gateway uses to drop the repeat. A home shard
//! that crashes between the owner's hand-off and the `PushQueued` record
//! loses that notification (the message itself is durable and synced).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::{
    ConversationId, ConversationKind, Effect, Event, Millis, Push, PushAction, PushId, PushOutcome,
    Seq, ShardId, UserId,
};
use crate::constants::{
    OUTBOX_ENTRIES_MAX, PEER_BATCH_MAX, PUSH_IN_FLIGHT_MAX, PUSH_RETRY_BASE_MS, PUSH_RETRY_MAX_MS,
    PUSH_STARTS_PER_TICK_MAX,
};
use crate::notify::{self, Candidate, Decision, DeviceView, Posted, Situation, Suppressed};
use crate::peer::PeerBody;
use crate::record::{Record, StoredReason};
use crate::shard::{PushMode, Shard};
use crate::text::preview;

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

impl Shard {
    /// Owner role, at the commit point: hands a durable message to the home
    /// shards of its candidates.
    pub(crate) fn notify_handoff(
        &mut self,
        conversation: ConversationId,
        event: &Arc<Event>,
        out: &mut Vec<crate::api::Effect>,
    ) {
        let Event::Message(m) = event.as_ref() else {
            return;
        };
        let Some(c) = self.state.conversations.get(&conversation) else {
            return;
        };
        let direct = matches!(c.kind, ConversationKind::Dm | ConversationKind::GroupDm);
        let posted = Posted {
            direct,
            mentions: &m.mentions,
            broadcast: m.broadcast,
            member_count: c.members.len(),
            broadcast_members_max: self.config.notify.broadcast_members_max,
        };
        let list = notify::candidates(&posted, c.members.keys(), |u| c.members.contains_key(&u));
        let count = self.shard_count();
        let mut by_home: BTreeMap<ShardId, Vec<Candidate>> = BTreeMap::new();
        for cand in list {
            by_home
                .entry(crate::ids::shard_of(cand.user, count))
                .or_default()
                .push(cand);
        }
        for (home, cands) in by_home {
            for chunk in cands.chunks(PEER_BATCH_MAX) {
                let body = PeerBody::Notify {
                    event: event.clone(),
                    direct,
                    candidates: chunk.to_vec(),
                };
                self.send_peer(home, body, out);
            }
        }
    }

    /// Home role: decides each candidate homed here.
    pub(crate) fn on_notify(
        &mut self,
        event: &Arc<Event>,
        direct: bool,
        candidates: Vec<Candidate>,
        out: &mut Vec<Effect>,
    ) {
        let Event::Message(m) = event.as_ref() else {
            return;
        };
        let now = self.now;
        for cand in candidates {
            let Some(u) = self.state.users.get(&cand.user) else {
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
            self.metrics.notify_decided += 1;
            let delayed = match decision {
                Decision::Suppress(why) => {
                    let i = Suppressed::ALL
                        .iter()
                        .position(|s| *s == why)
                        .unwrap_or_default();
                    self.metrics.notify_suppressed[i] += 1;
                    continue;
                }
                Decision::Delay => true,
                Decision::PushNow => false,
            };
            if !devices.is_empty() {
                self.metrics.notify_in_app += 1;
                let inapp = Arc::new(Event::Notify {
                    conversation: m.conversation,
                    seq: m.seq,
                    reason: cand.reason,
                });
                self.deliver_to_user(cand.user, inapp, out);
            }
            if self.config.notify.push == PushMode::Off {
                continue;
            }
            let key = (cand.user, m.conversation, m.seq, false);
            if self.state.outbox_index.contains_key(&key) {
                continue; // Handed over twice: one push per (user, message).
            }
            if self.state.outbox.len() >= OUTBOX_ENTRIES_MAX || self.writable().is_err() {
                self.metrics.push_dropped += 1;
                continue;
            }
            let due = if delayed {
                self.metrics.push_delayed += 1;
                Millis(now.0 + self.config.notify.grace_ms)
            } else {
                self.metrics.push_immediate += 1;
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
            let id = self.commit(record, Vec::new(), out);
            self.push_due.insert((due, id.0));
        }
    }

    /// Home role, after a cursor moved to `seq`: cancels queued pushes the
    /// read covers and queues a `clear` for a delivered one.
    pub(crate) fn notify_read(
        &mut self,
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
        out: &mut Vec<Effect>,
    ) {
        let lo = (user, conversation, Seq(0), false);
        let hi = (user, conversation, seq, true);
        let covered: Vec<(u64, bool)> = self
            .state
            .outbox_index
            .range(lo..=hi)
            .map(|(k, id)| (*id, k.3))
            .collect();
        for (id, clear) in covered {
            if !clear && !self.push_in_flight.contains_key(&id) {
                self.cancel_push(id, out);
            }
        }
        let pushed = self.state.pushed.get(&(user, conversation)).copied();
        if let Some(s) = pushed.filter(|s| *s <= seq) {
            self.queue_clear(user, conversation, s, out);
        }
    }

    fn cancel_push(&mut self, id: u64, out: &mut Vec<Effect>) {
        if self.writable().is_err() {
            return; // Retried at the next pump.
        }
        if let Some(e) = self.state.outbox.get(&id) {
            self.push_due.remove(&(e.due, id));
        }
        self.push_attempts.remove(&id);
        self.metrics.push_cancelled += 1;
        let record = Record::PushSettled {
            id,
            delivered: false,
        };
        self.commit(record, Vec::new(), out);
    }

    fn queue_clear(&mut self, user: UserId, conv: ConversationId, seq: Seq, out: &mut Vec<Effect>) {
        let key = (user, conv, seq, true);
        if self.state.outbox_index.contains_key(&key)
            || self.state.outbox.len() >= OUTBOX_ENTRIES_MAX
            || self.writable().is_err()
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
            due: self.now.0,
            clear: true,
        };
        let id = self.commit(record, Vec::new(), out);
        self.push_due.insert((self.now, id.0));
    }

    /// Home role, every tick: starts due, durable pushes.
    pub(crate) fn pump_pushes(&mut self, out: &mut Vec<Effect>) {
        if self.config.notify.push == PushMode::Off {
            return;
        }
        let now = self.now;
        let durable = self.durable.0;
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
            let Some(e) = self.state.outbox.get(&id).cloned() else {
                self.push_due.remove(&(at, id));
                continue;
            };
            let Some(u) = self.state.users.get(&e.user) else {
                continue;
            };
            if !e.clear && u.cursor(e.conversation) >= e.seq {
                self.cancel_push(id, out);
                continue;
            }
            let badge = self
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
        id: PushId,
        outcome: PushOutcome,
        out: &mut Vec<Effect>,
    ) {
        let Some(attempts) = self.push_in_flight.remove(&id.0) else {
            return; // Not ours (an earlier start's push): ignore.
        };
        let Some(e) = self.state.outbox.get(&id.0).cloned() else {
            return;
        };
        let settle = match outcome {
            PushOutcome::Retry => None,
            PushOutcome::Delivered => Some(true),
            PushOutcome::Rejected => Some(false),
        };
        let Some(delivered) = settle.filter(|_| self.writable().is_ok()) else {
            let attempts = attempts + 1;
            self.metrics.push_retried += 1;
            self.push_attempts.insert(id.0, attempts);
            self.push_due
                .insert((Millis(self.now.0 + backoff_ms(attempts)), id.0));
            return;
        };
        match (delivered, e.clear) {
            (true, false) => self.metrics.pushed += 1,
            (true, true) => self.metrics.push_cleared += 1,
            (false, _) => self.metrics.push_rejected += 1,
        }
        self.commit(
            Record::PushSettled {
                id: id.0,
                delivered,
            },
            Vec::new(),
            out,
        );
        // Read while the push was in flight: retract it now.
        let read = self
            .state
            .users
            .get(&e.user)
            .map_or(Seq(0), |u| u.cursor(e.conversation));
        if delivered && !e.clear && read >= e.seq {
            self.queue_clear(e.user, e.conversation, e.seq, out);
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
    fn keys_are_distinct_per_action() {
        let (u, c, s) = (UserId(1), ConversationId(2), Seq(3));
        assert_eq!(idempotency_key(PushAction::Notify, u, c, s), "push-1-2-3");
        assert_ne!(
            idempotency_key(PushAction::Notify, u, c, s),
            idempotency_key(PushAction::Clear, u, c, s)
        );
    }
}
