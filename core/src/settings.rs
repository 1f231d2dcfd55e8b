//! Channel settings (issue 16, part 4): topic, purpose, rename, archive,
//! unarchive and who may post, each a sequenced event in the channel.
//!
//! A setting arrives as `ChangeMessage` with a setting kind and target 0
//! (`Request::SetChannel` at `C`). The owner checks it with the one
//! authorization function ([`Access::Setting`]: members only, typed
//! refusals after that), answers `Done` when the setting already has the
//! value (retries are safe), and otherwise appends a `MessageChanged`
//! record at `seq = head + 1` whose kind is the setting and whose text is
//! the value: the same durability queue, fanout, recent cache, history
//! store, Sync and History as a message's change (`Conversation::changes`
//! lists it, so unread counts skip it). Once durable the conversation's
//! `settings` (and `name`) follow it ([`crate::state::State::settle`]);
//! until then the owner decides by [`Conversation::current_settings`].
//!
//! A rename moves the name claim in the workspace's directory, which lives
//! on the workspace shard `W`, so it spans two shards the way channel
//! creation does: O asks W ([`peer::workspace::RenameChannel`]); W claims
//! the new name durably (`ChannelRenameClaimed`: the new name taken but
//! not yet resolvable, the old one still resolving) and asks O to apply it
//! ([`peer::owner::ApplyRename`], re-sent every CLAIM_RETRY_MS until
//! confirmed, like creations); O checks again and sequences the rename
//! (idempotent: a channel already carrying the name only confirms), then
//! tells W ([`peer::workspace::RenameDone`]); W records
//! `ChannelRenameConfirmed`, which frees the old name (or, when O refused,
//! the new one). A crash of either shard anywhere leaves a durable claim
//! that is retried; no name is ever free while a channel may still carry
//! it, and a name resolves to one channel only.

use crate::api::Effect;
use crate::auth::Access;
use crate::commit::{Action, Ctx};
use crate::constants::PENDING_CLAIMS_MAX;
use crate::directory::WorkspaceRole;
use crate::owner::OwnerRole;
use crate::peer::{self, Origin, Who};
use crate::record::{ChangeRecord, Record};
use crate::state::{change_of, Claim};
use crate::types::{
    ChangeKind, ConversationId, Event, Reject, Response, Seq, UnavailableCause, WorkspaceId,
};

impl OwnerRole {
    /// C → O: change a channel setting (a `ChangeMessage` of a setting
    /// kind).
    pub(crate) fn on_set_channel(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::ChangeMessage,
        out: &mut Vec<Effect>,
    ) {
        let c = match Self::conversation_for(cx, m.conversation, m.who, Access::Setting(m.kind)) {
            Ok(c) => c,
            Err(r) => return cx.reply(m.origin, Err(r), out),
        };
        let (name, now) = c.current_settings();
        let mut next = now.clone();
        let renamed = next.apply(m.kind, &m.text);
        if next == now && renamed.as_ref().is_none_or(|n| *n == name) {
            let done = Action::Reply {
                origin: m.origin,
                result: Ok(Response::Done),
            };
            return cx.after_durable(done, out);
        }
        if let Err(r) = cx.writable() {
            return cx.reply(m.origin, Err(r), out);
        }
        if m.kind == ChangeKind::Rename {
            // W moves the name claim first (see the module doc).
            let to = cx.workspace_shard(c.workspace);
            let body = peer::workspace::RenameChannel {
                origin: m.origin,
                who: m.who,
                conversation: m.conversation,
                old: name,
                new: m.text,
            };
            return cx.send_peer(to, body, out);
        }
        commit_setting(
            cx,
            Some(m.origin),
            m.who,
            m.conversation,
            m.kind,
            m.text,
            None,
            out,
        );
    }

    /// W → O: apply a claimed rename (first attempt or a retry). Every
    /// check runs again; the outcome goes back to W either way.
    pub(crate) fn on_apply_rename(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::ApplyRename,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::ApplyRename {
            origin,
            who,
            conversation,
            name,
        } = m;
        let done = |applied| peer::workspace::RenameDone {
            workspace: who.workspace,
            conversation,
            applied,
        };
        let w = cx.workspace_shard(who.workspace);
        let current = cx
            .state
            .conversations
            .get(&conversation)
            .map(|c| c.current_settings().0);
        if current.as_deref() == Some(name.as_str()) {
            // Applied before (a retry after a crash): confirm once durable.
            if let Some(origin) = origin {
                let reply = Action::Reply {
                    origin,
                    result: Ok(Response::Done),
                };
                cx.after_durable(reply, out);
            }
            let tell = Action::Peer {
                to: w,
                body: done(true).into(),
            };
            return cx.after_durable(tell, out);
        }
        let check =
            Self::conversation_for(cx, conversation, who, Access::Setting(ChangeKind::Rename))
                .and_then(|_| cx.writable());
        if let Err(r) = check {
            if matches!(r, Reject::Unavailable { .. }) {
                // The claim stays and W retries, so the rename may still
                // happen: an unknown outcome for the client.
                if let Some(origin) = origin {
                    let r = Reject::unavailable(
                        UnavailableCause::NotDurable,
                        "rename not applied yet; it is retried",
                    );
                    cx.reply(origin, Err(r), out);
                }
                return;
            }
            if let Some(origin) = origin {
                cx.reply(origin, Err(r), out);
            }
            return cx.send_peer(w, done(false), out);
        }
        let tell = Action::Peer {
            to: w,
            body: done(true).into(),
        };
        commit_setting(
            cx,
            origin,
            who,
            conversation,
            ChangeKind::Rename,
            name,
            Some(tell),
            out,
        );
    }
}

/// Appends the setting event at `head + 1`; once durable: `SendAck` (if
/// someone waits), the event fanned out, and `then`.
#[allow(clippy::too_many_arguments)]
fn commit_setting(
    cx: &mut Ctx,
    origin: Option<Origin>,
    who: Who,
    conversation: ConversationId,
    kind: ChangeKind,
    text: String,
    then: Option<Action>,
    out: &mut Vec<Effect>,
) {
    let Some(c) = cx.state.conversations.get(&conversation) else {
        if let Some(origin) = origin {
            cx.reply(origin, Err(Reject::NotFound), out);
        }
        return;
    };
    let seq = Seq(c.head.0 + 1);
    let ts = cx.now;
    let record = ChangeRecord {
        conversation: conversation.0,
        seq: seq.0,
        target: 0,
        actor: who.user.0,
        ts: ts.0,
        kind: kind.into(),
        text,
    };
    let event = change_of(&record);
    let mut actions = Vec::with_capacity(3);
    if let Some(origin) = origin {
        actions.push(Action::Reply {
            origin,
            result: Ok(Response::SendAck {
                conversation,
                seq,
                ts,
                broadcast_ignored: false,
            }),
        });
    }
    actions.push(Action::fanout(
        conversation,
        cx.next_lsn,
        Event::Message(event),
    ));
    actions.extend(then);
    cx.commit(Record::MessageChanged(Box::new(record)), actions, out);
}

impl WorkspaceRole {
    /// O → W: claim a channel's new name (see the module doc).
    pub(crate) fn on_rename_channel(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::RenameChannel,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::RenameChannel {
            origin,
            who,
            conversation,
            old,
            new,
        } = m;
        let workspace = who.workspace;
        let holds_old = cx
            .state
            .workspaces
            .get(&workspace)
            .and_then(|w| w.channels.get(&old))
            .is_some_and(|e| e.id == conversation && e.confirmed);
        if !holds_old {
            return cx.reply(origin, Err(Reject::NotFound), out);
        }
        if cx.state.claims.contains_key(&conversation.0) {
            let r = Reject::unavailable(
                UnavailableCause::Overloaded,
                "another rename of this channel is in flight; retry",
            );
            return cx.reply(origin, Err(r), out);
        }
        if let Err(r) = self.rename_room(cx, workspace, &new) {
            return cx.reply(origin, Err(r), out);
        }
        let record = Record::ChannelRenameClaimed {
            workspace: workspace.0,
            conversation: conversation.0,
            old,
            new: new.clone(),
            actor: who.user.0,
            role: who.role.into(),
        };
        let apply = Action::Peer {
            to: cx.owner_of(conversation),
            body: peer::owner::ApplyRename {
                origin: Some(origin),
                who,
                conversation,
                name: new,
            }
            .into(),
        };
        cx.commit(record, vec![apply], out);
    }

    /// Whether the workspace has room for a new channel name (taken →
    /// `AlreadyExists`; the claim table full → `Unavailable`). A rename
    /// adds no channel, so the channel count is not checked.
    fn rename_room(&self, cx: &Ctx, workspace: WorkspaceId, name: &str) -> Result<(), Reject> {
        let ws = cx
            .state
            .workspaces
            .get(&workspace)
            .ok_or(Reject::NotFound)?;
        if ws.channels.contains_key(name) {
            return Err(Reject::AlreadyExists);
        }
        if cx.state.claims.len() >= PENDING_CLAIMS_MAX {
            return Err(Reject::unavailable(
                UnavailableCause::Overloaded,
                "too many creations and renames in flight (PENDING_CLAIMS_MAX)",
            ));
        }
        cx.writable()
    }

    /// O → W: a rename was sequenced (or refused): the claim is settled.
    pub(crate) fn on_rename_done(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::RenameDone,
        out: &mut Vec<Effect>,
    ) {
        let pending = matches!(
            cx.state.claims.get(&m.conversation.0),
            Some((Claim::Rename { .. }, _))
        );
        if pending && cx.writable().is_ok() {
            let record = Record::ChannelRenameConfirmed {
                workspace: m.workspace.0,
                conversation: m.conversation.0,
                applied: m.applied,
            };
            cx.commit(record, Vec::new(), out);
        }
    }
}
