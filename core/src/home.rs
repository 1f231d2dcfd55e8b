//! The home shard's role for its users: credentials, devices, cursors,
//! preferences, and the derived list of each user's conversations.
//!
//! The derived list is never a source of truth: owners tell the home shard
//! about durable membership changes (`MemberAdded`, `MemberRemoved`), and at
//! every start each owner sends a full *membership round* for this shard's
//! users, which replaces the entries of that owner's conversations. A crash
//! between an owner's record and its message to the home shard therefore
//! heals at the next start of either shard. Authorization never trusts the
//! list: owners decide (see [`crate::auth`]).
//!
//! Notification state lives here for the notifier (`crate::notifier`): per
//! device focus and activity (memory only), per conversation level and
//! mute, DND (durable). The owner hands each durable message's candidates
//! to this shard, which decides and keeps the push outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::Effect;
use crate::auth::{hash_secret, secret_matches};
use crate::commit::Action;
use crate::commit::Ctx;
use crate::constants::{CONVERSATIONS_PER_USER_MAX, DEVICES_PER_USER_MAX, TOKENS_PER_USER_MAX};
use crate::hash::{HashState, Map};
use crate::notifier::NotifierRole;
use crate::peer::{self, PeerBody, Who};
use crate::record::{Record, StoredLevel};
use crate::state::Device;
use crate::types::{
    CloseReason, ConnId, ConversationId, Event, Lsn, Millis, NotifyLevel, Reject, Response, Role,
    Seq, ShardId, UnavailableCause, UserId,
};

/// The home role's state (memory, derived; users, tokens, cursors and
/// preferences are in the persistent state).
#[derive(Debug)]
pub(crate) struct HomeRole {
    /// Membership rounds being received, per owner shard: the chunks so
    /// far, replacing the owner's entries when the last one arrives.
    pub(crate) rounds: BTreeMap<ShardId, Vec<(UserId, ConversationId, Millis)>>,
    /// Last activity of every conversation in a derived list here, with how
    /// many users of this shard list it; at most one entry per conversation
    /// listed (bounded by CONVERSATIONS_PER_USER_MAX per user). Orders
    /// `Boot` pages without asking the owners about every conversation.
    pub(crate) activity: Map<ConversationId, Activity>,
    /// Cursor moves not yet durable (see [`PendingCursors`]).
    pub(crate) pending_cursors: PendingCursors,
    /// The display names of this shard's users are reported to their
    /// workspace shards at the first tick after start (see
    /// `HomeRole::send_directory_names`).
    pub(crate) directory_round_due: bool,
    /// The newest profile version of each user whose `ProfileSet` was
    /// replayed at recovery (at most one entry per user homed here): a
    /// crash between a change reaching the disk and its events leaving
    /// would otherwise leave it unannounced, so the first tick announces
    /// them again (`HomeRole::announce_replayed_profiles`).
    pub(crate) replayed_profiles: BTreeMap<UserId, u64>,
    /// A membership round completed: deactivated users still listed in a
    /// conversation are evicted again at the next tick (`crate::roles`).
    pub(crate) evict_due: bool,
    /// Issue 17, part 4: presence watchers and manual aways of the users
    /// homed here (memory; see `crate::around`).
    pub(crate) presence: crate::around::PresenceHome,
}

impl HomeRole {
    /// Empty.
    pub(crate) fn new(hash: HashState) -> HomeRole {
        HomeRole {
            rounds: BTreeMap::new(),
            activity: hash.map(),
            pending_cursors: PendingCursors::default(),
            directory_round_due: false,
            replayed_profiles: BTreeMap::new(),
            evict_due: false,
            presence: Default::default(),
        }
    }
}

/// What a home shard knows of one listed conversation's activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Activity {
    /// The owner's visible last activity, as last heard (never decreases).
    pub(crate) at: Millis,
    /// Users of this shard whose derived list has the conversation; the
    /// entry goes when it reaches 0.
    pub(crate) listed: u32,
}

/// Home role: read cursor moves whose `CursorSet` record is not durable
/// yet, and the durable cursor under them (memory; empty at start, where
/// every record read back is durable).
///
/// Normally nothing shows a cursor before its record is durable (replies
/// and events wait for it). After a storage failure a gather answers at
/// once (reads keep working on a full disk), and must then show only what
/// a restart keeps: [`HomeRole::shown_cursor`] reads the durable value here.
/// Bounded by the records appended and not yet durable (one entry per
/// `CursorSet` among them), like the shard's `commits`.
#[derive(Debug, Default)]
pub(crate) struct PendingCursors {
    /// `(LSN, user, conversation, new seq)`, in LSN order.
    moves: std::collections::VecDeque<(Lsn, UserId, ConversationId, Seq)>,
    /// Per (user, conversation) with moves above: how many, and the
    /// cursor as far as durable.
    durable: BTreeMap<(UserId, ConversationId), (u32, Seq)>,
}

impl PendingCursors {
    /// The cursor of `user` in `conversation` moved from `from` to `to` by
    /// the record at `lsn`, not yet durable.
    fn moved(&mut self, lsn: Lsn, user: UserId, conversation: ConversationId, from: Seq, to: Seq) {
        debug_assert!(self.moves.back().is_none_or(|m| m.0 < lsn));
        self.moves.push_back((lsn, user, conversation, to));
        self.durable
            .entry((user, conversation))
            .or_insert((0, from))
            .0 += 1;
    }

    /// Everything up to `lsn` is durable.
    pub(crate) fn durable_through(&mut self, lsn: Lsn) {
        while let Some(&(at, user, conversation, to)) = self.moves.front() {
            if at > lsn {
                break;
            }
            self.moves.pop_front();
            let key = (user, conversation);
            let Some(entry) = self.durable.get_mut(&key) else {
                panic!("pending cursor move without its entry");
            };
            entry.0 -= 1;
            entry.1 = to;
            if entry.0 == 0 {
                self.durable.remove(&key);
            }
        }
    }

    /// The durable cursor, given the current one.
    fn durable_cursor(&self, user: UserId, conversation: ConversationId, current: Seq) -> Seq {
        self.durable
            .get(&(user, conversation))
            .map_or(current, |&(_, seq)| seq)
    }
}

fn too_many_conversations() -> Reject {
    Reject::TooLarge(format!(
        "conversations of the user: more than CONVERSATIONS_PER_USER_MAX ({CONVERSATIONS_PER_USER_MAX})"
    ))
}

impl HomeRole {
    /// The read cursor a reply may show: the current one, or after a
    /// storage failure (replies no longer wait for durability, see
    /// `gather_reply`) the durable one, so that no device ever sees a
    /// cursor a restart undoes or that overtakes the `ReadCursor` event of
    /// an earlier move still waiting for its batch.
    pub(crate) fn shown_cursor(
        &self,
        cx: &Ctx,
        user: &crate::state::User,
        conversation: ConversationId,
    ) -> Seq {
        let current = user.cursor(conversation);
        if cx.storage_failed.is_none() {
            return current;
        }
        self.pending_cursors
            .durable_cursor(user.id, conversation, current)
    }

    pub(crate) fn on_auth(&mut self, cx: &mut Ctx, m: peer::home::Auth, out: &mut Vec<Effect>) {
        let peer::home::Auth {
            origin,
            user,
            token,
            secret,
            device,
        } = m;
        let from = origin.conn.shard();
        let ready = cx.is_ready();
        let verdict = match cx.state.users.get_mut(&user) {
            None => {
                // Same work as a real check, so timing does not say whether
                // the user exists.
                let _ = secret_matches(&secret, &[0; 32]);
                Err(Reject::Unauthenticated)
            }
            Some(u) => {
                let stored = u.tokens.get(&token).copied().unwrap_or([0; 32]);
                let good = secret_matches(&secret, &stored) && u.tokens.contains_key(&token);
                if !good {
                    Err(Reject::Unauthenticated)
                } else if !ready {
                    Err(Reject::unavailable(
                        UnavailableCause::Starting,
                        "home shard is starting",
                    ))
                } else if u.devices.len() >= DEVICES_PER_USER_MAX
                    && !u.devices.contains_key(&origin.conn)
                {
                    Err(Reject::TooLarge(format!(
                        "devices: more than DEVICES_PER_USER_MAX ({DEVICES_PER_USER_MAX}) connected"
                    )))
                } else {
                    u.devices.insert(
                        origin.conn,
                        Device {
                            token,
                            incarnation: origin.incarnation,
                            kind: device.kind,
                            name: device.name,
                            focused: None,
                            active: false,
                            active_at: None,
                            changed: cx.now,
                        },
                    );
                    Ok((
                        Who {
                            user,
                            workspace: u.workspace,
                            role: u.role,
                        },
                        u.conversations.iter().copied().collect::<Vec<_>>(),
                    ))
                }
            }
        };
        let body: PeerBody = match verdict {
            Ok((who, conversations)) => peer::conn::AuthOk {
                origin,
                who,
                token,
                conversations,
            }
            .into(),
            Err(reject) => peer::conn::AuthFailed { origin, reject }.into(),
        };
        cx.send_peer(from, body, out);
    }

    pub(crate) fn on_device_gone(&mut self, cx: &mut Ctx, m: peer::home::DeviceGone) {
        let peer::home::DeviceGone { user, conn } = m;
        if let Some(u) = cx.state.users.get_mut(&user) {
            u.devices.remove(&conn);
        }
    }

    /// Forgets devices on a shard that restarted (its sockets are gone).
    pub(crate) fn forget_shard_connections(&mut self, cx: &mut Ctx, shard: ShardId) {
        for u in cx.state.users.values_mut() {
            u.devices.retain(|conn, _| conn.shard() != shard);
        }
    }

    pub(crate) fn on_devices_register(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::home::DevicesRegister,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::DevicesRegister { devices } = m;
        let now = cx.now;
        let mut refused: BTreeMap<u64, Vec<ConnId>> = BTreeMap::new();
        for d in devices {
            let ok = match cx.state.users.get_mut(&d.user) {
                Some(u)
                    if u.tokens.contains_key(&d.token)
                        && u.devices.len() < DEVICES_PER_USER_MAX =>
                {
                    u.devices.insert(
                        d.conn,
                        Device {
                            token: d.token,
                            incarnation: d.incarnation,
                            kind: d.device.kind,
                            name: d.device.name,
                            focused: None,
                            active: false,
                            active_at: None,
                            changed: now,
                        },
                    );
                    true
                }
                _ => false,
            };
            if !ok {
                refused.entry(d.incarnation).or_default().push(d.conn);
            }
        }
        for (incarnation, conns) in refused {
            let body = peer::conn::CloseConns {
                conns,
                incarnation,
                reason: CloseReason::Revoked,
            };
            cx.send_peer(from, body, out);
        }
    }

    pub(crate) fn on_issue_token(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::IssueToken,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::IssueToken { origin, user } = m;
        let result = (|| {
            let u = cx.state.users.get(&user).ok_or(Reject::NotFound)?;
            if u.role == Role::Deactivated {
                return Err(Reject::Forbidden("user: deactivated".into()));
            }
            if u.tokens.len() >= TOKENS_PER_USER_MAX {
                return Err(Reject::TooLarge(format!(
                    "tokens: more than TOKENS_PER_USER_MAX ({TOKENS_PER_USER_MAX})"
                )));
            }
            cx.writable()?;
            Ok(u.next_token)
        })();
        let token = match result {
            Ok(t) => t,
            Err(r) => return cx.reply(origin, Err(r), out),
        };
        let secret = cx.new_secret();
        let record = Record::TokenIssued {
            user: user.0,
            token,
            token_hash: hash_secret(&secret),
        };
        let reply = Action::Reply {
            origin,
            result: Ok(Response::TokenIssued {
                user,
                token,
                secret,
            }),
        };
        cx.commit(record, vec![reply], out);
    }

    pub(crate) fn on_revoke_token(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::RevokeToken,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::RevokeToken {
            origin,
            user,
            token,
        } = m;
        let check = match cx.state.users.get(&user) {
            None => Err(Reject::NotFound),
            Some(u) if token.is_some_and(|t| !u.tokens.contains_key(&t)) => Err(Reject::NotFound),
            Some(_) => cx.writable(),
        };
        if let Err(r) = check {
            return cx.reply(origin, Err(r), out);
        }
        let record = Record::TokensRevoked {
            user: user.0,
            token,
        };
        let reply = Action::Reply {
            origin,
            result: Ok(Response::Done),
        };
        cx.commit(record, vec![reply], out);
        // A restriction acts at once: close the sessions of revoked tokens.
        let mut closing: BTreeMap<(ShardId, u64), Vec<ConnId>> = BTreeMap::new();
        if let Some(u) = cx.state.users.get_mut(&user) {
            let tokens = &u.tokens;
            let gone: Vec<(ConnId, u64)> = u
                .devices
                .iter()
                .filter(|(_, d)| !tokens.contains_key(&d.token))
                .map(|(c, d)| (*c, d.incarnation))
                .collect();
            for (conn, incarnation) in gone {
                u.devices.remove(&conn);
                closing
                    .entry((conn.shard(), incarnation))
                    .or_default()
                    .push(conn);
            }
        }
        for ((shard, incarnation), conns) in closing {
            let body = peer::conn::CloseConns {
                conns,
                incarnation,
                reason: CloseReason::Revoked,
            };
            cx.send_peer(shard, body, out);
        }
    }

    pub(crate) fn on_create_user(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::CreateUser,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::CreateUser {
            origin,
            user,
            workspace,
            workspace_name,
            name,
            role,
        } = m;
        assert!(cx.state.owns(user), "user created on the wrong home shard");
        let ws_shard = cx.workspace_shard(workspace);
        let ready = peer::workspace::UserHomeReady { workspace, user };
        if cx.state.users.contains_key(&user) {
            // A retry: confirm once the creation is durable.
            cx.after_durable(
                Action::Peer {
                    to: ws_shard,
                    body: ready.into(),
                },
                out,
            );
            if let Some(origin) = origin {
                cx.after_durable(
                    Action::Reply {
                        origin,
                        result: Err(Reject::AlreadyExists),
                    },
                    out,
                );
            }
            return;
        }
        if let Err(r) = cx.writable() {
            // The workspace shard retries the claim later.
            if let Some(origin) = origin {
                cx.reply(origin, Err(r), out);
            }
            return;
        }
        let secret = cx.new_secret();
        let record = Record::UserCreated {
            user: user.0,
            workspace: workspace.0,
            name,
            workspace_name,
            token: 1,
            token_hash: hash_secret(&secret),
        };
        let mut actions = vec![Action::Peer {
            to: ws_shard,
            body: ready.into(),
        }];
        let reply = origin.map(|origin| Action::Reply {
            origin,
            result: Ok(Response::TokenIssued {
                user,
                token: 1,
                secret,
            }),
        });
        match role {
            // An invite's role: held here before the token is handed out,
            // so the first session already acts with it.
            Some((role, version)) if version > 0 => {
                cx.commit(record, actions, out);
                let role_record = Record::UserRoleSet {
                    user: user.0,
                    role: role.into(),
                    version,
                };
                cx.commit(role_record, reply.into_iter().collect(), out);
            }
            _ => {
                actions.extend(reply);
                cx.commit(record, actions, out);
            }
        }
    }

    /// Checks the session user exists here and is under its conversation
    /// limit; returns its cursor for `conv`.
    fn member_room(
        &self,
        cx: &Ctx,
        user: UserId,
        conv: Option<ConversationId>,
    ) -> Result<Seq, Reject> {
        let u = cx
            .state
            .users
            .get(&user)
            .filter(|u| u.role != Role::Deactivated)
            .ok_or(Reject::NotFound)?;
        if u.conversations.len() >= CONVERSATIONS_PER_USER_MAX
            && !conv.is_some_and(|c| u.conversations.contains(&c))
        {
            return Err(too_many_conversations());
        }
        Ok(conv.map_or(Seq(0), |c| u.cursor(c)))
    }

    pub(crate) fn on_create_channel(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::CreateChannel,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::CreateChannel {
            origin,
            who,
            name,
            private,
        } = m;
        let check = self.member_room(cx, who.user, None).and_then(|_| {
            // The home shard's copy of the role decides (durable here).
            let role = cx.state.users.get(&who.user).map_or(who.role, |u| u.role);
            crate::auth::permit(role, crate::auth::Act::CreateChannel)
        });
        if let Err(r) = check {
            return cx.reply(origin, Err(r), out);
        }
        let to = cx.workspace_shard(who.workspace);
        let body = peer::workspace::ClaimChannel {
            origin,
            who,
            name,
            private,
        };
        cx.send_peer(to, body, out);
    }

    pub(crate) fn on_join(&mut self, cx: &mut Ctx, m: peer::home::Join, out: &mut Vec<Effect>) {
        let peer::home::Join {
            origin,
            who,
            conversation,
        } = m;
        match self.member_room(cx, who.user, Some(conversation)) {
            Err(r) => cx.reply(origin, Err(r), out),
            Ok(read) => {
                let to = cx.owner_of(conversation);
                let body = peer::owner::AddMember {
                    origin,
                    actor: who,
                    user: who.user,
                    conversation,
                    read,
                };
                cx.send_peer(to, body, out);
            }
        }
    }

    pub(crate) fn on_invite(&mut self, cx: &mut Ctx, m: peer::home::Invite, out: &mut Vec<Effect>) {
        let peer::home::Invite {
            origin,
            who,
            conversation,
            user,
        } = m;
        // The invitee must exist in the inviter's workspace: otherwise it is
        // indistinguishable from a user that does not exist.
        let same_ws = cx
            .state
            .users
            .get(&user)
            .is_some_and(|u| u.workspace == who.workspace);
        let result = if same_ws {
            self.member_room(cx, user, Some(conversation))
        } else {
            Err(Reject::NotFound)
        };
        match result {
            Err(r) => cx.reply(origin, Err(r), out),
            Ok(read) => {
                let to = cx.owner_of(conversation);
                let body = peer::owner::AddMember {
                    origin,
                    actor: who,
                    user,
                    conversation,
                    read,
                };
                cx.send_peer(to, body, out);
            }
        }
    }

    pub(crate) fn on_open_dm(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::OpenDm,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::OpenDm {
            origin,
            who,
            members,
        } = m;
        if let Err(r) = self.member_room(cx, who.user, None) {
            return cx.reply(origin, Err(r), out);
        }
        let slot = crate::ids::dm_slot(who.workspace, &members);
        let to = crate::ids::shard_of_slot(slot, cx.shard_count());
        let body = peer::owner::OpenDm {
            origin,
            who,
            members,
        };
        cx.send_peer(to, body, out);
    }

    pub(crate) fn on_verify_member(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::home::VerifyMember,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::VerifyMember {
            pending,
            user,
            workspace,
        } = m;
        let ok = cx.state.users.get(&user).is_some_and(|u| {
            u.workspace == workspace
                && u.role != Role::Deactivated
                && u.conversations.len() < CONVERSATIONS_PER_USER_MAX
        });
        cx.send_peer(from, peer::owner::VerifyReply { pending, user, ok }, out);
    }

    pub(crate) fn on_member_added(
        &mut self,
        cx: &mut Ctx,
        notifier: &NotifierRole,
        m: peer::home::MemberAdded,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::MemberAdded {
            user,
            conversation,
            info,
            origin,
        } = m;
        let mut info = *info;
        let Some(u) = cx.state.users.get_mut(&user) else {
            if let Some(origin) = origin {
                cx.reply(origin, Err(Reject::NotFound), out);
            }
            return;
        };
        if u.role == Role::Deactivated {
            // Added while the deactivation was on its way: out again.
            if let Some(origin) = origin {
                cx.reply(origin, Err(Reject::NotFound), out);
            }
            let to = cx.owner_of(conversation);
            return cx.send_peer(to, peer::owner::Evict { user, conversation }, out);
        }
        if u.conversations.insert(conversation) {
            self.listed(conversation, info.last_activity);
        } else {
            self.heard_activity(conversation, info.last_activity);
        }
        let Some(u) = cx.state.users.get_mut(&user) else {
            return;
        };
        // The owner computed the counters with the cursor we sent it (or 0
        // for a new conversation); refresh from the current cursor.
        let read = u.cursor(conversation).min(info.head);
        // The owner counted messages only (issue 17: changes share the
        // sequence); a cursor that moved since can only lower the count,
        // and head − cursor bounds it.
        info.unread = info.unread.min(info.head.0 - read.0);
        info.read = read;
        if matches!(
            info.kind,
            crate::types::ConversationKind::Dm | crate::types::ConversationKind::GroupDm
        ) {
            info.mentions = info.unread;
        } else {
            info.mentions = info.mentions.min(info.unread);
        }
        if notifier.level_is_all(cx, user, conversation) {
            // Re-added with level `all`: the owner dropped it at the removal.
            let body = peer::notifier::NotifyAll {
                user,
                conversation,
                all: true,
            };
            let to = cx.owner_of(conversation);
            cx.after_durable(
                Action::Peer {
                    to,
                    body: body.into(),
                },
                out,
            );
        }
        let mut by_shard = cx.devices_by_shard(user);
        if let Some(origin) = origin {
            by_shard
                .entry((origin.conn.shard(), origin.incarnation))
                .or_default();
        }
        let event = Arc::new(Event::Joined(info.clone()));
        for ((shard, incarnation), conns) in by_shard {
            let reply = origin
                .filter(|o| o.conn.shard() == shard && o.incarnation == incarnation)
                .map(|o| (o, Ok(Response::Conversation(info.clone()))));
            let body = peer::conn::SubscribeConns {
                user,
                conversation,
                conns,
                incarnation,
                event: Some(event.clone()),
                reply,
            };
            // The info carries this shard's cursor: durable first.
            cx.after_durable(
                Action::Peer {
                    to: shard,
                    body: body.into(),
                },
                out,
            );
        }
    }

    pub(crate) fn on_member_removed(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::MemberRemoved,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::MemberRemoved { user, conversation } = m;
        let Some(u) = cx.state.users.get_mut(&user) else {
            return;
        };
        if u.conversations.remove(&conversation) {
            self.unlisted(conversation);
        }
        // Same path as `Joined` (after this shard's durability), so a
        // `Left` never overtakes the `Joined` of an earlier add.
        let event = Arc::new(Event::Left { conversation });
        cx.after_durable(Action::DeliverUser { user, event }, out);
    }

    pub(crate) fn on_set_cursor(
        &mut self,
        cx: &mut Ctx,
        notifier: &mut NotifierRole,
        m: peer::home::SetCursor,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::SetCursor {
            origin,
            user,
            conversation,
            seq,
        } = m;
        let current = match cx.state.users.get(&user) {
            Some(u) => u.cursor(conversation),
            None => {
                if let Some(origin) = origin {
                    cx.reply(origin, Err(Reject::NotFound), out);
                }
                return;
            }
        };
        if seq <= current {
            // Monotonic: nothing to write. Answer once the cursor that
            // covers it is durable.
            if let Some(origin) = origin {
                let done = Action::Reply {
                    origin,
                    result: Ok(Response::Done),
                };
                cx.after_durable(done, out);
            }
            return;
        }
        if let Err(r) = cx.writable() {
            if let Some(origin) = origin {
                cx.reply(origin, Err(r), out);
            }
            return;
        }
        let record = Record::CursorSet {
            user: user.0,
            conversation: conversation.0,
            seq: seq.0,
        };
        let mut actions = vec![Action::DeliverUser {
            user,
            event: Arc::new(Event::ReadCursor { conversation, seq }),
        }];
        if let Some(origin) = origin {
            actions.push(Action::Reply {
                origin,
                result: Ok(Response::Done),
            });
        }
        let lsn = cx.commit(record, actions, out);
        self.pending_cursors
            .moved(lsn, user, conversation, current, seq);
        notifier.notify_read(cx, user, conversation, seq, out);
    }

    pub(crate) fn on_set_notify(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::SetNotify,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::SetNotify {
            origin,
            user,
            conversation,
            level,
            muted,
        } = m;
        let check = if cx.state.users.contains_key(&user) {
            cx.writable()
        } else {
            Err(Reject::NotFound)
        };
        if let Err(r) = check {
            return cx.reply(origin, Err(r), out);
        }
        let record = Record::NotifySet {
            user: user.0,
            conversation: conversation.0,
            level: StoredLevel::from(level),
            muted,
        };
        let done = Action::Reply {
            origin,
            result: Ok(Response::Done),
        };
        // The owner mirrors `all` levels (crate::notifier::AllSubscribers).
        let mirror = Action::Peer {
            to: cx.owner_of(conversation),
            body: peer::notifier::NotifyAll {
                user,
                conversation,
                all: level == NotifyLevel::All,
            }
            .into(),
        };
        cx.commit(record, vec![mirror, done], out);
    }

    pub(crate) fn on_set_focus(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::SetFocus,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::SetFocus {
            origin,
            user,
            focused,
            active,
        } = m;
        let now = cx.now;
        if let Some(d) = cx
            .state
            .users
            .get_mut(&user)
            .and_then(|u| u.devices.get_mut(&origin.conn))
        {
            d.focused = focused;
            d.active = active;
            d.active_at = active.then_some(now);
            d.changed = now;
        }
        cx.reply(origin, Ok(Response::Done), out);
    }

    pub(crate) fn on_set_dnd(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::SetDnd,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::SetDnd {
            origin,
            user,
            until,
        } = m;
        let check = if cx.state.users.contains_key(&user) {
            cx.writable()
        } else {
            Err(Reject::NotFound)
        };
        if let Err(r) = check {
            return cx.reply(origin, Err(r), out);
        }
        let record = Record::DndSet {
            user: user.0,
            until: until.map(|m| m.0),
        };
        let done = Action::Reply {
            origin,
            result: Ok(Response::Done),
        };
        cx.commit(record, vec![done], out);
    }

    /// A chunk of an owner's membership round; the last one replaces the
    /// derived entries of that owner's conversations.
    pub(crate) fn on_membership_round(
        &mut self,
        cx: &mut Ctx,
        owner: ShardId,
        m: peer::home::MembershipRound,
    ) {
        let peer::home::MembershipRound {
            entries,
            first,
            last,
        } = m;
        if first {
            self.rounds.insert(owner, Vec::new());
        }
        let Some(acc) = self.rounds.get_mut(&owner) else {
            return; // A tail of a round whose start we never saw.
        };
        acc.extend(entries);
        if !last {
            return;
        }
        let entries = self.rounds.remove(&owner).unwrap_or_default();
        let mut fresh: BTreeMap<UserId, BTreeSet<ConversationId>> = BTreeMap::new();
        let mut heard: BTreeMap<ConversationId, Millis> = BTreeMap::new();
        for (user, conv, at) in entries {
            fresh.entry(user).or_default().insert(conv);
            heard.insert(conv, at);
        }
        let count = cx.shard_count();
        let mut unlisted: Vec<ConversationId> = Vec::new();
        let mut listed: Vec<ConversationId> = Vec::new();
        for u in cx.state.users.values_mut() {
            let convs = fresh.remove(&u.id).unwrap_or_default();
            u.conversations.retain(|c| {
                let keep = crate::ids::shard_of(*c, count) != owner || convs.contains(c);
                if !keep {
                    unlisted.push(*c);
                }
                keep
            });
            for c in convs {
                if u.conversations.insert(c) {
                    listed.push(c);
                }
            }
        }
        for c in unlisted {
            self.unlisted(c);
        }
        for c in listed {
            self.listed(c, Millis(0));
        }
        for (c, at) in heard {
            self.heard_activity(c, at);
        }
        // Entries of this owner's conversations that no user lists (an
        // `Activity` that overtook a `MemberAdded` whose record a crash
        // undid) go now: the round is the owner's whole truth.
        self.activity
            .retain(|c, a| a.listed > 0 || crate::ids::shard_of(*c, count) != owner);
        cx.rounds_done.insert(owner);
        self.evict_due = true;
    }

    /// A user of this shard now lists `conversation`.
    fn listed(&mut self, conversation: ConversationId, at: Millis) {
        let a = self
            .activity
            .entry(conversation)
            .or_insert(Activity { at, listed: 0 });
        a.listed += 1;
        a.at = a.at.max(at);
    }

    /// A user of this shard no longer lists `conversation`.
    fn unlisted(&mut self, conversation: ConversationId) {
        if let Some(a) = self.activity.get_mut(&conversation) {
            a.listed = a.listed.saturating_sub(1);
            if a.listed == 0 {
                self.activity.remove(&conversation);
            }
        }
    }

    /// An owner says `conversation` was active at `at` (a durable message).
    /// An entry nobody lists yet is kept (with `listed` 0): the message may
    /// overtake the `MemberAdded` of the user that will list it, whose
    /// info was computed before it. Such an entry exists only while a
    /// membership is in flight, and the owner's next round clears it.
    fn heard_activity(&mut self, conversation: ConversationId, at: Millis) {
        let a = self
            .activity
            .entry(conversation)
            .or_insert(Activity { at, listed: 0 });
        a.at = a.at.max(at);
    }

    pub(crate) fn on_activity(&mut self, m: peer::home::Activity) {
        let peer::home::Activity { conversation, at } = m;
        self.heard_activity(conversation, at);
    }

    /// The last activity of a conversation listed here, as last heard.
    pub(crate) fn activity_of(&self, conversation: ConversationId) -> Millis {
        self.activity.get(&conversation).map_or(Millis(0), |a| a.at)
    }
}

impl HomeRole {
    /// The home role's entry point: one message addressed to it.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx,
        notifier: &mut NotifierRole,
        from: ShardId,
        msg: peer::home::HomeMsg,
        out: &mut Vec<Effect>,
    ) {
        use peer::home::HomeMsg;
        let touched = match &msg {
            HomeMsg::Auth(m) => Some(m.user),
            HomeMsg::DeviceGone(m) => Some(m.user),
            HomeMsg::RevokeToken(m) => Some(m.user),
            _ => None,
        };
        let touched_many: Vec<UserId> = match &msg {
            HomeMsg::DevicesRegister(m) => m.devices.iter().map(|d| d.user).collect(),
            _ => Vec::new(),
        };
        match msg {
            HomeMsg::MembershipRound(m) => self.on_membership_round(cx, from, m),
            HomeMsg::Activity(m) => self.on_activity(m),
            HomeMsg::MessageDeleted(m) => notifier.notify_deleted(cx, m, out),
            HomeMsg::DevicesRegister(m) => self.on_devices_register(cx, from, m, out),
            HomeMsg::Auth(m) => self.on_auth(cx, m, out),
            HomeMsg::DeviceGone(m) => self.on_device_gone(cx, m),
            HomeMsg::CreateUser(m) => self.on_create_user(cx, m, out),
            HomeMsg::IssueToken(m) => self.on_issue_token(cx, m, out),
            HomeMsg::RevokeToken(m) => self.on_revoke_token(cx, m, out),
            HomeMsg::CreateChannel(m) => self.on_create_channel(cx, m, out),
            HomeMsg::Join(m) => self.on_join(cx, m, out),
            HomeMsg::Invite(m) => self.on_invite(cx, m, out),
            HomeMsg::OpenDm(m) => self.on_open_dm(cx, m, out),
            HomeMsg::VerifyMember(m) => self.on_verify_member(cx, from, m, out),
            HomeMsg::MemberAdded(m) => self.on_member_added(cx, notifier, m, out),
            HomeMsg::MemberRemoved(m) => self.on_member_removed(cx, m, out),
            HomeMsg::SetCursor(m) => self.on_set_cursor(cx, notifier, m, out),
            HomeMsg::SetNotify(m) => self.on_set_notify(cx, m, out),
            HomeMsg::SetFocus(m) => self.on_set_focus(cx, m, out),
            HomeMsg::SetDnd(m) => self.on_set_dnd(cx, m, out),
            HomeMsg::SetProfile(m) => self.on_set_profile(cx, m, out),
            HomeMsg::GetProfiles(m) => self.on_get_profiles(cx, from, m, out),
            HomeMsg::SetRole(m) => self.on_set_role(cx, m, out),
            HomeMsg::RoleChanged(m) => self.on_role_changed(cx, m, out),
            HomeMsg::ListTokens(m) => self.on_list_tokens(cx, m, out),
            HomeMsg::PresenceWatch(m) => self.on_presence_watch(cx, from, m, out),
            HomeMsg::PresenceGet(m) => self.on_presence_get(cx, m, out),
            HomeMsg::SetAway(m) => self.on_set_away(cx, m, out),
        }
        // Issue 17, part 4: a device connected or went (or a token's
        // sessions closed): the user's presence may have changed.
        if let Some(user) = touched {
            self.presence_touch(cx, user, out);
        }
        for user in touched_many {
            self.presence_touch(cx, user, out);
        }
    }
}
