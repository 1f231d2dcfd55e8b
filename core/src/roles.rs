//! Workspace roles and deactivation (issue 16, part 2): the handlers of
//! every role for `SetRole`, kept together as `impl` blocks like
//! `people.rs`.
//!
//! - **Where the role lives.** The workspace shard `W` holds every user's
//!   role, authoritative (`RoleSet`, a version per user; users never set
//!   are members at version 0). The user's home shard `H` keeps a copy
//!   (`UserRoleSet`, only newer versions), so a `Hello` puts the role into
//!   the session's `Who` without asking `W`, and every owner authorizes
//!   with it ([`crate::auth::authorize`]: guests get no public-channel
//!   preview).
//! - **A change**: `C` → `H` of the user (exists? names its workspace) →
//!   `W` (the actor's role from `W`'s own table, checked by
//!   [`crate::auth::permit_role_change`]; append `RoleSet`) → once durable
//!   `RoleChanged` → `H` (append `UserRoleSet`; tell every connection
//!   shard holding the user's sessions at once: `SessionRole`) → the
//!   answer, once `H`'s record is durable. So when the client hears
//!   `Done`, every session of the user already acts with the new role.
//! - **Deactivation** is the role `Deactivated` (final): `H`'s record
//!   also revokes every token; at once `H` closes the user's sessions
//!   (`CloseConns`, close code `REVOKED`) and asks each owner of the
//!   user's conversations to remove them (`Evict`: channels only; a DM is
//!   its member set and keeps them). Their messages stay in history.
//! - **Repair.** A `RoleChanged` lost to a crash (of `W` after its record,
//!   or of `H` before its own) is re-sent: `W` sends every role it holds
//!   (version > 0) to the home shards at its first tick after start and,
//!   for one home shard, at the tick after that shard restarted; `H` writes
//!   only newer versions. A removal lost to a crash is re-sent after every
//!   membership round that still lists a deactivated user (`Evict` is
//!   idempotent at the owner).

use std::collections::BTreeMap;

use crate::api::Effect;
use crate::auth::permit_role_change;
use crate::bitset::ShardSet;
use crate::commit::{Action, Ctx};
use crate::conn::{ConnRole, Session};
use crate::constants::PEER_BATCH_MAX;
use crate::directory::WorkspaceRole;
use crate::home::HomeRole;
use crate::peer::{self, Actor, Origin};
use crate::record::Record;
use crate::text::{check_name, NameKind};
use crate::types::{
    CloseReason, ConversationId, PeopleResponse, Reject, Response, Role, ShardId, UserId,
    WorkspaceId,
};

// ----- C ---------------------------------------------------------------------

impl ConnRole {
    /// Routes `SetRole` (user and admin sessions alike) to the user's home
    /// shard.
    pub(crate) fn route_set_role(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        actor: Actor,
        user: UserId,
        role: Role,
        out: &mut Vec<Effect>,
    ) {
        let body = peer::home::SetRole {
            origin,
            actor,
            user,
            role,
        };
        cx.send_peer(cx.home_of(user), body, out);
    }

    /// Routes `CreateUser` of an admin session or (checked by `W` in its
    /// own table) of a user with the admin role.
    pub(crate) fn route_create_user(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        actor: Actor,
        workspace: WorkspaceId,
        name: String,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        check_name("name", &name, NameKind::Handle)?;
        let body = peer::workspace::CreateUser {
            origin,
            actor,
            workspace,
            name,
        };
        cx.send_peer(cx.workspace_shard(workspace), body, out);
        Ok(())
    }

    /// Routes a user's `RevokeToken`: only their own tokens.
    pub(crate) fn route_own_revoke(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        who: crate::peer::Who,
        user: UserId,
        token: Option<u64>,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        if user != who.user {
            return Err(Reject::NotAdmin);
        }
        let body = peer::home::RevokeToken {
            origin,
            user,
            token,
        };
        cx.send_peer(cx.home_of(user), body, out);
        Ok(())
    }

    /// The user's role changed: their sessions here act with it now.
    pub(crate) fn on_session_role(&mut self, cx: &mut Ctx, m: peer::conn::SessionRole) {
        let peer::conn::SessionRole {
            user,
            conns,
            incarnation,
            role,
        } = m;
        if incarnation != cx.incarnation {
            return;
        }
        for conn in conns {
            if let Some(c) = self.conns.get_mut(&conn) {
                if let Session::User { who, .. } = &mut c.session {
                    if who.user == user {
                        who.role = role;
                    }
                }
            }
        }
    }
}

// ----- H ---------------------------------------------------------------------

impl HomeRole {
    pub(crate) fn on_set_role(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::SetRole,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::SetRole {
            origin,
            actor,
            user,
            role,
        } = m;
        let workspace = match cx.state.users.get(&user) {
            Some(u) if !matches!(actor, Actor::User(who) if who.workspace != u.workspace) => {
                u.workspace
            }
            _ => return cx.reply(origin, Err(Reject::NotFound), out),
        };
        let body = peer::workspace::SetRole {
            origin,
            actor,
            workspace,
            user,
            role,
        };
        cx.send_peer(cx.workspace_shard(workspace), body, out);
    }

    pub(crate) fn on_role_changed(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::RoleChanged,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::RoleChanged { origin, entries } = m;
        for (user, role, version) in entries {
            let newer = cx
                .state
                .users
                .get(&user)
                .is_some_and(|u| version > u.role_version);
            if !newer {
                continue;
            }
            if let Err(r) = cx.writable() {
                // W re-sends its roles at the next start of either shard.
                if let Some(origin) = origin {
                    cx.reply(origin, Err(r), out);
                }
                return;
            }
            let record = Record::UserRoleSet {
                user: user.0,
                role: role.into(),
                version,
            };
            cx.commit(record, Vec::new(), out);
            // Acts at once: a restriction must not wait for the disk, and a
            // promotion is durable at the workspace shard already.
            if role == Role::Deactivated {
                self.end_sessions(cx, user, out);
                self.evict(cx, user, out);
            } else {
                for ((shard, incarnation), conns) in cx.devices_by_shard(user) {
                    let body = peer::conn::SessionRole {
                        user,
                        conns,
                        incarnation,
                        role,
                    };
                    cx.send_peer(shard, body, out);
                }
            }
        }
        if let Some(origin) = origin {
            let reply = Action::Reply {
                origin,
                result: Ok(Response::Done),
            };
            cx.after_durable(reply, out);
        }
    }

    /// `ListTokens`: the user's token ids, once every record appended
    /// before is durable (a revocation just answered is not listed).
    pub(crate) fn on_list_tokens(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::ListTokens,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::ListTokens {
            origin,
            user,
            current,
        } = m;
        let result = match cx.state.users.get(&user) {
            Some(u) => Ok(Response::People(PeopleResponse::Tokens {
                tokens: u.tokens.keys().copied().collect(),
                current,
            })),
            None => Err(Reject::NotFound),
        };
        cx.after_durable(Action::Reply { origin, result }, out);
    }

    /// Closes every session of a deactivated user (their tokens are gone
    /// with the `UserRoleSet` record).
    fn end_sessions(&mut self, cx: &mut Ctx, user: UserId, out: &mut Vec<Effect>) {
        let by_shard = cx.devices_by_shard(user);
        if let Some(u) = cx.state.users.get_mut(&user) {
            u.devices.clear();
        }
        for ((shard, incarnation), conns) in by_shard {
            let body = peer::conn::CloseConns {
                conns,
                incarnation,
                reason: CloseReason::Revoked,
            };
            cx.send_peer(shard, body, out);
        }
    }

    /// Asks the owners of a deactivated user's listed conversations to
    /// remove them.
    fn evict(&mut self, cx: &mut Ctx, user: UserId, out: &mut Vec<Effect>) {
        let convs: Vec<ConversationId> = cx
            .state
            .users
            .get(&user)
            .map(|u| u.conversations.iter().copied().collect())
            .unwrap_or_default();
        for conversation in convs {
            let to = cx.owner_of(conversation);
            cx.send_peer(to, peer::owner::Evict { user, conversation }, out);
        }
    }

    /// After membership rounds completed: deactivated users still listed
    /// in a channel are removed again (a removal a crash lost).
    pub(crate) fn evict_deactivated(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        let users: Vec<UserId> = cx
            .state
            .users
            .values()
            .filter(|u| u.role == Role::Deactivated && !u.conversations.is_empty())
            .map(|u| u.id)
            .collect();
        for user in users {
            self.evict(cx, user, out);
        }
    }
}

// ----- W ---------------------------------------------------------------------

impl WorkspaceRole {
    pub(crate) fn on_set_role(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::SetRole,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::SetRole {
            origin,
            actor,
            workspace,
            user,
            role,
        } = m;
        let check = (|| {
            let ws = cx
                .state
                .workspaces
                .get(&workspace)
                .ok_or(Reject::NotFound)?;
            let actor_role = match actor {
                Actor::Admin => None,
                Actor::User(who) if who.workspace == workspace => Some(ws.role_of(who.user).0),
                Actor::User(_) => return Err(Reject::NotFound),
            };
            let (from, version) = ws.role_of(user);
            permit_role_change(actor_role, from, role, ws.owners())?;
            cx.writable()?;
            Ok((from, version))
        })();
        let (from, version) = match check {
            Ok(v) => v,
            Err(r) => return cx.reply(origin, Err(r), out),
        };
        let home = cx.home_of(user);
        if from == role {
            // Nothing to write; still make sure the home shard has it.
            let body = peer::home::RoleChanged {
                origin: Some(origin),
                entries: vec![(user, role, version)],
            };
            let action = Action::Peer {
                to: home,
                body: body.into(),
            };
            return cx.after_durable(action, out);
        }
        let record = Record::RoleSet {
            workspace: workspace.0,
            user: user.0,
            role: role.into(),
            version: version + 1,
        };
        let tell = Action::Peer {
            to: home,
            body: peer::home::RoleChanged {
                origin: Some(origin),
                entries: vec![(user, role, version + 1)],
            }
            .into(),
        };
        cx.commit(record, vec![tell], out);
    }

    /// Sends the home shards in `to` every durable role of their users
    /// (repair; see the module doc). One scan of the roles, batches of
    /// PEER_BATCH_MAX per home shard.
    pub(crate) fn send_role_rounds(&mut self, cx: &mut Ctx, to: &ShardSet, out: &mut Vec<Effect>) {
        let mut by_home: BTreeMap<ShardId, Vec<(UserId, Role, u64)>> = BTreeMap::new();
        for ws in cx.state.workspaces.values() {
            for (user, (role, version)) in &ws.roles {
                let home = cx.home_of(*user);
                if to.contains(home) {
                    by_home
                        .entry(home)
                        .or_default()
                        .push((*user, *role, *version));
                }
            }
        }
        for (home, mut entries) in by_home {
            entries.sort_unstable_by_key(|e| e.0);
            for chunk in entries.chunks(PEER_BATCH_MAX) {
                let body = peer::home::RoleChanged {
                    origin: None,
                    entries: chunk.to_vec(),
                };
                cx.send_peer(home, body, out);
            }
        }
    }
}
