//! Messages that live (issue 17), the owner's side: `ChangeMessage`
//! (edit, delete, react, unreact, pin, unpin) sequenced as a new event in the
//! conversation, kept as `impl OwnerRole` here so `owner.rs` stays as it
//! was.
//!
//! Checks, in order: the asker is a durable member (else `NotFound`, like
//! every conversation request); the target is a visible message, not a
//! change (else `NotFound` / `Invalid`); a deleted target refuses
//! everything but a repeated delete; a reaction that changes nothing
//! (already there, or not there to remove) and a repeated delete answer
//! `Done` and sequence nothing (retries are safe); reaction bounds
//! (REACTIONS_PER_MESSAGE_MAX distinct, REACTION_USERS_PER_MESSAGE_MAX in
//! all) and the per-conversation state bound
//! (LIVE_MESSAGES_PER_CONVERSATION_MAX) → `TooLarge`. Pins (part 3): any
//! member pins or unpins; a pin that is there or an unpin of one that is
//! not answers `Done`; at most PINS_PER_CONVERSATION_MAX pinned (counting
//! pins not yet durable) → `TooLarge`. Edits and deletes
//! also need the target's author and time: from the recent cache, or one
//! read of the history store (the request waits in the owner's bounded
//! read table and every check runs again when the read is back). Only the
//! author or a workspace admin may edit or delete (`Forbidden` otherwise:
//! the asker can see the message, so this reveals nothing), and an edit
//! only within the shard's edit window.
//!
//! Then `MessageChanged` at `seq = head + 1`; once durable: `SendAck` with
//! the change's seq and the change fanned out as an `Event::Message` whose
//! `change` is set (no notification hand-off, no activity).

use crate::api::{Effect, ReadToken};
use crate::auth::Access;
use crate::commit::{Action, Ctx};
use crate::constants::{
    LIVE_MESSAGES_PER_CONVERSATION_MAX, PINS_PER_CONVERSATION_MAX, REACTIONS_PER_MESSAGE_MAX,
    REACTION_USERS_PER_MESSAGE_MAX,
};
use crate::live::{has_reacted, reaction_count};
use crate::owner::{OwnerRole, PendingRead};
use crate::peer::home::MessageDeleted;
use crate::peer::owner::ChangeMessage;
use crate::record::{ChangeRecord, Record};
use crate::state::{change_of, Conversation};
use crate::types::{
    ChangeKind, Event, Millis, Reject, Response, Seq, ShardId, UnavailableCause, UserId,
};

/// What a change needs next after the checks that need no target body.
enum Plan {
    /// Nothing to sequence: answer `Done`.
    Noop,
    /// Sequence it now.
    Commit,
    /// Edits and deletes: the author and time of the target are needed.
    NeedTarget,
}

impl OwnerRole {
    /// C → O: a change of an earlier message.
    pub(crate) fn on_change_message(
        &mut self,
        cx: &mut Ctx,
        m: ChangeMessage,
        out: &mut Vec<Effect>,
    ) {
        self.change_checked(cx, m, None, out);
    }

    /// Runs every check (again, after a read: `target` is then the
    /// target's author and time) and sequences, reads or answers.
    pub(crate) fn change_checked(
        &mut self,
        cx: &mut Ctx,
        m: ChangeMessage,
        target: Option<(UserId, Millis)>,
        out: &mut Vec<Effect>,
    ) {
        if m.kind.is_setting() {
            return self.on_set_channel(cx, m, out);
        }
        let plan = match Self::conversation_for(cx, m.conversation, m.who, Access::Change) {
            Ok(c) => plan(c, cx.durable, &m),
            Err(r) => Err(r),
        };
        let need = match plan {
            Err(r) => return cx.reply(m.origin, Err(r), out),
            Ok(Plan::Noop) => {
                let done = Action::Reply {
                    origin: m.origin,
                    result: Ok(Response::Done),
                };
                return cx.after_durable(done, out);
            }
            Ok(Plan::Commit) => false,
            Ok(Plan::NeedTarget) => true,
        };
        if need {
            let known = target.or_else(|| {
                cx.state
                    .cache
                    .range(m.conversation, m.target, m.target)
                    .first()
                    .map(|t| (t.sender, t.ts))
            });
            let Some((author, at)) = known else {
                return self.read_target(cx, m, out);
            };
            if let Err(r) = may_edit(cx, &m, author, at) {
                return cx.reply(m.origin, Err(r), out);
            }
        }
        if let Err(r) = cx.writable() {
            return cx.reply(m.origin, Err(r), out);
        }
        commit_change(cx, m, out);
    }

    /// Reads the target from the history store; the change continues in
    /// [`OwnerRole::on_history_read`] → [`OwnerRole::change_checked`].
    fn read_target(&mut self, cx: &mut Ctx, m: ChangeMessage, out: &mut Vec<Effect>) {
        if self.reads.is_full() {
            let r = Reject::unavailable(
                UnavailableCause::Overloaded,
                "too many history reads in flight (PENDING_READS_MAX)",
            );
            return cx.reply(m.origin, Err(r), out);
        }
        let conversation = m.conversation;
        let target = m.target;
        let read = PendingRead {
            origin: m.origin,
            who: m.who,
            conversation,
            lo: target.0,
            hi: target.0,
            newest_first: false,
            head: 0,
            change: Some(Box::new(m)),
            keep: None,
        };
        // Not full (checked above).
        let Ok(token) = self.reads.insert(None, read) else {
            return;
        };
        cx.metrics.wal_reads += 1;
        out.push(Effect::ReadHistory {
            token: ReadToken(token),
            conversation,
            from: target,
            to: target,
        });
    }
}

/// The checks that need no target body (see the module doc).
fn plan(c: &Conversation, durable: crate::types::Lsn, m: &ChangeMessage) -> Result<Plan, Reject> {
    let head = c.visible_head(durable);
    if m.target.0 == 0 || m.target > head {
        return Err(Reject::NotFound);
    }
    if c.is_change(m.target) {
        return Err(Reject::Invalid(
            "target: an edit, delete or reaction, not a message".into(),
        ));
    }
    let entry = c.live.get(&m.target.0);
    let live = entry.map(|e| &e.live);
    if live.is_some_and(|l| l.deleted) {
        return match m.kind {
            ChangeKind::Delete => Ok(Plan::Noop),
            _ => Err(Reject::NotFound),
        };
    }
    if entry.is_none() && c.live.len() >= LIVE_MESSAGES_PER_CONVERSATION_MAX {
        return Err(Reject::TooLarge(format!(
            "conversation: more than LIVE_MESSAGES_PER_CONVERSATION_MAX \
             ({LIVE_MESSAGES_PER_CONVERSATION_MAX}) changed messages"
        )));
    }
    let user = m.who.user;
    match m.kind {
        ChangeKind::Edit | ChangeKind::Delete => Ok(Plan::NeedTarget),
        ChangeKind::React => {
            let Some(l) = live else {
                return Ok(Plan::Commit);
            };
            if has_reacted(l, &m.text, user) {
                return Ok(Plan::Noop);
            }
            let distinct = l.reactions.len();
            let new_emoji = !l.reactions.iter().any(|r| r.emoji == m.text);
            if new_emoji && distinct >= REACTIONS_PER_MESSAGE_MAX {
                return Err(Reject::TooLarge(format!(
                    "reactions: more than REACTIONS_PER_MESSAGE_MAX ({REACTIONS_PER_MESSAGE_MAX}) distinct"
                )));
            }
            if reaction_count(l) >= REACTION_USERS_PER_MESSAGE_MAX {
                return Err(Reject::TooLarge(format!(
                    "reactions: more than REACTION_USERS_PER_MESSAGE_MAX ({REACTION_USERS_PER_MESSAGE_MAX})"
                )));
            }
            Ok(Plan::Commit)
        }
        ChangeKind::Unreact => {
            if live.is_some_and(|l| has_reacted(l, &m.text, user)) {
                Ok(Plan::Commit)
            } else {
                Ok(Plan::Noop)
            }
        }
        // Pins (issue 17, part 3): any member; a pin that is there, or an
        // unpin of one that is not, changes nothing.
        ChangeKind::Pin => {
            if live.is_some_and(|l| l.pinned) {
                return Ok(Plan::Noop);
            }
            if c.pins_now() >= PINS_PER_CONVERSATION_MAX {
                return Err(Reject::TooLarge(format!(
                    "pins: more than PINS_PER_CONVERSATION_MAX ({PINS_PER_CONVERSATION_MAX}) \
                     pinned messages; unpin one first"
                )));
            }
            Ok(Plan::Commit)
        }
        ChangeKind::Unpin => {
            if live.is_some_and(|l| l.pinned) {
                Ok(Plan::Commit)
            } else {
                Ok(Plan::Noop)
            }
        }
        // Settings are decided by `on_set_channel`.
        _ => Err(Reject::Invalid("kind: a channel setting".into())),
    }
}

/// Only the author or a workspace admin edits or deletes; an edit only
/// within the edit window (from the message's time).
fn may_edit(cx: &Ctx, m: &ChangeMessage, author: UserId, at: Millis) -> Result<(), Reject> {
    if author != m.who.user && !m.who.role.is_admin() {
        return Err(Reject::Forbidden(
            "only the author or a workspace admin can edit or delete a message".into(),
        ));
    }
    let window = cx.config.edit_window_ms;
    if m.kind == ChangeKind::Edit && cx.now.0.saturating_sub(at.0) > window {
        return Err(Reject::Forbidden(format!(
            "edit window over: messages can be edited for {} s",
            window / 1_000
        )));
    }
    Ok(())
}

/// Appends `MessageChanged` at `head + 1`; acks and fans out once durable.
fn commit_change(cx: &mut Ctx, m: ChangeMessage, out: &mut Vec<Effect>) {
    let Some(c) = cx.state.conversations.get(&m.conversation) else {
        return cx.reply(m.origin, Err(Reject::NotFound), out);
    };
    let seq = Seq(c.head.0 + 1);
    let ts = cx.now;
    let record = ChangeRecord {
        conversation: m.conversation.0,
        seq: seq.0,
        target: m.target.0,
        actor: m.who.user.0,
        ts: ts.0,
        kind: m.kind.into(),
        text: if m.kind == ChangeKind::Delete {
            String::new()
        } else {
            m.text
        },
    };
    let event = change_of(&record);
    let mut actions = vec![
        Action::Reply {
            origin: m.origin,
            result: Ok(Response::SendAck {
                conversation: m.conversation,
                seq,
                ts,
                broadcast_ignored: false,
            }),
        },
        Action::fanout(m.conversation, cx.next_lsn, Event::Message(event)),
    ];
    if m.kind == ChangeKind::Delete {
        // Its pushes are retracted at the recipients' home shards: one
        // message per home shard of the members, whatever their number.
        let homes: Vec<ShardId> = c.homes.iter().collect();
        for to in homes {
            let body = MessageDeleted {
                conversation: m.conversation,
                seq: m.target,
            };
            actions.push(Action::Peer {
                to,
                body: body.into(),
            });
        }
    }
    cx.commit(Record::MessageChanged(Box::new(record)), actions, out);
}
