//! People (issue 16): profiles, lookups, the workspace directory and member
//! lists — the handlers of every role for [`PeopleRequest`]s, kept together
//! here (as `impl` blocks of the roles) so the roles' own files stay as
//! they were.
//!
//! - **Profiles** live on the user's home shard (`ProfileSet`, the whole
//!   profile at its new version). `C` checks the update
//!   ([`crate::profile::check_profile_update`]) and who may make it (the
//!   user for themself, an admin session for anyone); `H` applies it,
//!   answers with the new profile once durable and tells the workspace
//!   shard the display name.
//! - **`GetUsers`** is a scatter-gather at the asker's home shard: one
//!   `GetProfiles` per distinct home shard of the ids (at most
//!   GET_USERS_MAX ids, so one batch each), answered in the order asked;
//!   users of other workspaces and unknown ids are left out. A home shard
//!   that does not answer within REQUEST_TIMEOUT_MS makes the whole lookup
//!   `Unavailable` (cause `PeerTimeout`; a read, so retry).
//! - **`GetUserByHandle`**: `W` resolves the handle (confirmed users only)
//!   and asks the user's home shard, which answers the client.
//! - **Directory**: `W` keeps the sorted index ([`crate::dirindex`]) of its
//!   confirmed users with the display names their home shards reported
//!   (`DirectoryNameSet`, only newer versions). Home shards report every
//!   durable change, and at the first tick after start every profile they
//!   hold, so a report lost to a crash is repaired by the next start.
//! - **Public channels**: `BrowseChannels` pages the workspace shard's
//!   confirmed public channels by name (all of them; `ListConversations`
//!   stops at LIST_PUBLIC_CHANNELS_MAX).
//! - **Members**: the owner pages its durable members by id. Each page
//!   costs O(members) (one pass selecting the next `limit` ids above the
//!   cursor): about a millisecond at the 100,000-member bound.
//!
//! Readers see durable state: profile and directory answers wait for every
//! record appended before them (`after_durable`), like gathers do.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::Effect;
use crate::auth::{authorize, Access};
use crate::commit::{Action, Ctx};
use crate::conn::ConnRole;
use crate::constants::{
    CHANNEL_PAGE_MAX, DIRECTORY_CURSOR_BYTES_MAX, DIRECTORY_PAGE_MAX, GET_USERS_MAX,
    MEMBERS_PAGE_MAX, PEER_BATCH_MAX, REQUEST_TIMEOUT_MS,
};
use crate::directory::WorkspaceRole;
use crate::gather::GatherRole;
use crate::home::HomeRole;
use crate::invites::is_invite;
use crate::owner::OwnerRole;
use crate::peer::home::ProfilesTo;
use crate::peer::{self, Actor, Origin, Who};
use crate::profile::{apply_update, check_profile_update, shown, to_record};
use crate::record::Record;
use crate::state::User;
use crate::text::{check_name, NameKind};
use crate::types::{
    ConnId, ConversationId, Event, Millis, PeopleRequest, PeopleResponse, Reject, Response,
    ShardId, UnavailableCause, UserId, UserProfile, WorkspaceId,
};

/// An outstanding `GetUsers` at the asker's home shard.
#[derive(Debug)]
pub(crate) struct ProfileGather {
    origin: Origin,
    /// The ids in the order asked (unique).
    asked: Vec<UserId>,
    /// Home shards that have not answered.
    outstanding: u32,
    found: BTreeMap<UserId, UserProfile>,
}

fn users_response(profiles: Vec<UserProfile>) -> Result<Response, Reject> {
    Ok(Response::People(PeopleResponse::Users(profiles)))
}

/// Runs a read's answer once every record appended before it is durable
/// (at once after a storage failure: durable state is all it can show).
fn answer_durable(cx: &mut Ctx, action: Action, out: &mut Vec<Effect>) {
    if cx.storage_failed.is_some() {
        cx.run_action(action, out);
    } else {
        cx.after_durable(action, out);
    }
}

fn check_limit(limit: u32, max: u32, name: &str) -> Result<(), Reject> {
    if limit == 0 {
        return Err(Reject::Invalid("limit: must be positive".into()));
    }
    if limit > max {
        return Err(Reject::TooLarge(format!("limit: more than {name} ({max})")));
    }
    Ok(())
}

/// A user's profile as a reader sees it at `now`.
fn user_profile(u: &User, now: Millis) -> UserProfile {
    UserProfile {
        user: u.id,
        handle: u.name.clone(),
        profile: shown(&u.profile, now),
        version: u.profile_version,
    }
}

/// One `ProfileChanged` per connection shard (state shards and edges),
/// each delivering to its own sessions of the workspace: O(shards +
/// connected sessions of the workspace) per change, never O(members).
fn profile_changed(cx: &Ctx, workspace: WorkspaceId, user: UserId, version: u64) -> Vec<Action> {
    (0..cx.config.addresses())
        .map(|s| Action::Peer {
            to: ShardId(s),
            body: peer::conn::ProfileChanged {
                workspace,
                user,
                version,
            }
            .into(),
        })
        .collect()
}

/// The ids of a `GetUsers`, each once, in the order asked.
fn unique_ids(mut users: Vec<UserId>) -> Result<Vec<UserId>, Reject> {
    if users.len() > GET_USERS_MAX {
        return Err(Reject::TooLarge(format!(
            "users: more than GET_USERS_MAX ({GET_USERS_MAX})"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    users.retain(|u| seen.insert(*u));
    Ok(users)
}

// ----- C: routing -------------------------------------------------------------

impl ConnRole {
    /// Routes a people request of an admin session: only `SetProfile` of a
    /// named user (an admin session has no workspace to look in).
    pub(crate) fn route_people_admin(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        request: PeopleRequest,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        match request {
            PeopleRequest::SetProfile {
                user: Some(user),
                update,
            } => {
                check_profile_update(&update)?;
                let body = peer::home::SetProfile {
                    origin,
                    actor: Actor::Admin,
                    user,
                    update: *update,
                };
                cx.send_peer(cx.home_of(user), body, out);
                Ok(())
            }
            PeopleRequest::SetRole { user, role } => {
                self.route_set_role(cx, origin, Actor::Admin, user, role, out);
                Ok(())
            }
            p if is_invite(&p) => self.route_invites(cx, origin, Actor::Admin, p, out),
            PeopleRequest::SetProfile { user: None, .. } => Err(Reject::Invalid(
                "user: an admin session sets the profile of a named user".into(),
            )),
            _ => Err(Reject::Invalid(
                "an admin session has no user; use a user token".into(),
            )),
        }
    }

    /// Routes a people request of a user session.
    pub(crate) fn route_people(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        who: Who,
        request: PeopleRequest,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        match request {
            PeopleRequest::SetProfile { user, update } => {
                let user = user.unwrap_or(who.user);
                if user != who.user {
                    return Err(Reject::NotAdmin);
                }
                check_profile_update(&update)?;
                let body = peer::home::SetProfile {
                    origin,
                    actor: Actor::User(who),
                    user,
                    update: *update,
                };
                cx.send_peer(cx.home_of(user), body, out);
            }
            PeopleRequest::GetUsers { users } => {
                let users = unique_ids(users)?;
                let body = peer::gather::UsersStart { origin, who, users };
                cx.send_peer(cx.home_of(who.user), body, out);
            }
            PeopleRequest::GetUserByHandle { handle } => {
                check_name("handle", &handle, NameKind::Handle)?;
                let body = peer::workspace::UserByHandle {
                    origin,
                    who,
                    handle,
                };
                cx.send_peer(cx.workspace_shard(who.workspace), body, out);
            }
            PeopleRequest::Directory {
                prefix,
                after,
                limit,
            } => {
                check_limit(limit, DIRECTORY_PAGE_MAX, "DIRECTORY_PAGE_MAX")?;
                if !prefix.is_empty() {
                    check_name("prefix", &prefix, NameKind::Display)?;
                }
                if after
                    .as_ref()
                    .is_some_and(|a| a.key.len() > DIRECTORY_CURSOR_BYTES_MAX)
                {
                    return Err(Reject::Invalid("after: not a directory cursor".into()));
                }
                let body = peer::workspace::Directory {
                    origin,
                    who,
                    prefix,
                    after,
                    limit,
                };
                cx.send_peer(cx.workspace_shard(who.workspace), body, out);
            }
            PeopleRequest::BrowseChannels { after, limit } => {
                check_limit(limit, CHANNEL_PAGE_MAX, "CHANNEL_PAGE_MAX")?;
                if let Some(a) = &after {
                    check_name("after", a, NameKind::Handle)?;
                }
                let body = peer::workspace::BrowseChannels {
                    origin,
                    who,
                    after,
                    limit,
                };
                cx.send_peer(cx.workspace_shard(who.workspace), body, out);
            }
            PeopleRequest::SetRole { user, role } => {
                self.route_set_role(cx, origin, Actor::User(who), user, role, out);
            }
            // Routed by `on_request`, which knows the session's token.
            PeopleRequest::ListTokens => return Err(Reject::Invalid("ListTokens".into())),
            PeopleRequest::ListMembers {
                conversation,
                after,
                limit,
            } => {
                check_limit(limit, MEMBERS_PAGE_MAX, "MEMBERS_PAGE_MAX")?;
                let body = peer::owner::ListMembers {
                    origin,
                    who,
                    conversation,
                    after,
                    limit,
                };
                cx.send_peer(cx.owner_of(conversation), body, out);
            }
            invite => return self.user_invites(cx, origin, who, invite, out),
        }
        Ok(())
    }
}

// ----- C: profile events -------------------------------------------------------

impl ConnRole {
    /// A profile change of a user of `workspace` is durable: every session
    /// of that workspace held here gets `Event::ProfileChanged` (one
    /// `Effect::Deliver`, the event encoded once). Cost O(those sessions)
    /// through the `by_workspace` index.
    pub(crate) fn on_profile_changed(
        &mut self,
        cx: &mut Ctx,
        m: peer::conn::ProfileChanged,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::ProfileChanged {
            workspace,
            user,
            version,
        } = m;
        let conns: Vec<ConnId> = self
            .by_workspace
            .range((workspace, ConnId(0))..=(workspace, ConnId(u64::MAX)))
            .map(|(_, c)| *c)
            .collect();
        if conns.is_empty() {
            return;
        }
        cx.metrics.deliveries += 1;
        cx.metrics.delivered_conns += conns.len() as u64;
        let event = Arc::new(Event::ProfileChanged { user, version });
        out.push(Effect::Deliver { conns, event });
    }
}

// ----- H: profiles --------------------------------------------------------------

impl HomeRole {
    pub(crate) fn on_set_profile(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::SetProfile,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::SetProfile {
            origin,
            actor,
            user,
            update,
        } = m;
        let Some(u) = cx.state.users.get(&user) else {
            return cx.reply(origin, Err(Reject::NotFound), out);
        };
        if let Actor::User(who) = actor {
            if who.user != user || who.workspace != u.workspace {
                return cx.reply(origin, Err(Reject::NotAdmin), out);
            }
        }
        if let Err(r) = cx.writable() {
            return cx.reply(origin, Err(r), out);
        }
        let profile = apply_update(&u.profile, &update);
        let version = u.profile_version + 1;
        let workspace = u.workspace;
        let display_name = profile.display_name.clone();
        let record = Record::ProfileSet {
            user: user.0,
            version,
            profile: Box::new(to_record(&profile)),
        };
        let answer = UserProfile {
            user,
            handle: u.name.clone(),
            profile: shown(&profile, cx.now),
            version,
        };
        let reply = Action::Reply {
            origin,
            result: users_response(vec![answer]),
        };
        let tell = Action::Peer {
            to: cx.workspace_shard(workspace),
            body: peer::workspace::DirectoryNames {
                workspace,
                entries: vec![(user, display_name, version)],
            }
            .into(),
        };
        let mut actions = vec![reply, tell];
        actions.extend(profile_changed(cx, workspace, user, version));
        cx.commit(record, actions, out);
    }

    /// At the first tick after recovery: announces again the newest
    /// version of every profile whose change was replayed from the WAL
    /// (its events may not have left before the crash). A session may so
    /// hear a version twice; versions make that harmless. Cost: O(users
    /// changed since the last snapshot x shards) messages, once per start.
    pub(crate) fn announce_replayed_profiles(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        for (user, version) in std::mem::take(&mut self.replayed_profiles) {
            let Some(u) = cx.state.users.get(&user) else {
                continue;
            };
            if u.profile_version != version {
                continue;
            }
            let workspace = u.workspace;
            for action in profile_changed(cx, workspace, user, version) {
                cx.run_action(action, out);
            }
        }
    }

    pub(crate) fn on_get_profiles(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::home::GetProfiles,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::GetProfiles {
            to,
            workspace,
            users,
        } = m;
        let now = cx.now;
        let profiles: Vec<UserProfile> = users
            .iter()
            .filter_map(|id| cx.state.users.get(id))
            .filter(|u| u.workspace == workspace)
            .map(|u| user_profile(u, now))
            .collect();
        let action = match to {
            ProfilesTo::Gather(gather) => Action::Peer {
                to: from,
                body: peer::gather::ProfilesReply { gather, profiles }.into(),
            },
            ProfilesTo::Client(origin) if profiles.is_empty() => Action::Reply {
                origin,
                result: Err(Reject::NotFound),
            },
            ProfilesTo::Client(origin) => Action::Reply {
                origin,
                result: users_response(profiles),
            },
        };
        answer_durable(cx, action, out);
    }

    /// At the first tick after start: reports the display name of every
    /// user homed here with a profile to their workspace shard (which
    /// writes only newer ones), in batches of at most PEER_BATCH_MAX.
    /// Repairs reports lost to a crash. Not during `start` itself: the
    /// runtime reports durability only for records appended after start,
    /// so a record the workspace shard wrote then would hold every answer
    /// waiting for durability until the next write.
    pub(crate) fn send_directory_names(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        let mut by_ws: BTreeMap<WorkspaceId, Vec<(UserId, String, u64)>> = BTreeMap::new();
        for u in cx.state.users.values() {
            if u.profile_version > 0 {
                let entry = (u.id, u.profile.display_name.clone(), u.profile_version);
                by_ws.entry(u.workspace).or_default().push(entry);
            }
        }
        for (workspace, mut entries) in by_ws {
            entries.sort_unstable_by_key(|e| e.0);
            let to = cx.workspace_shard(workspace);
            for chunk in entries.chunks(PEER_BATCH_MAX) {
                let body = peer::workspace::DirectoryNames {
                    workspace,
                    entries: chunk.to_vec(),
                };
                cx.send_peer(to, body, out);
            }
        }
    }
}

// ----- H (asker): the GetUsers gather ------------------------------------------

impl GatherRole {
    pub(crate) fn on_users_start(
        &mut self,
        cx: &mut Ctx,
        m: peer::gather::UsersStart,
        out: &mut Vec<Effect>,
    ) {
        let peer::gather::UsersStart { origin, who, users } = m;
        if !cx.state.users.contains_key(&who.user) {
            return cx.reply(origin, Err(Reject::NotFound), out);
        }
        if users.is_empty() {
            return cx.reply(origin, users_response(Vec::new()), out);
        }
        let mut by_home: BTreeMap<ShardId, Vec<UserId>> = BTreeMap::new();
        for u in &users {
            by_home.entry(cx.home_of(*u)).or_default().push(*u);
        }
        let chunks: usize = by_home
            .values()
            .map(|v| v.len().div_ceil(PEER_BATCH_MAX))
            .sum();
        let gather = ProfileGather {
            origin,
            asked: users,
            outstanding: chunks as u32,
            found: BTreeMap::new(),
        };
        let deadline = Millis(cx.now.0 + REQUEST_TIMEOUT_MS);
        let Ok(id) = self.profiles.insert(Some(deadline), gather) else {
            let r = Reject::unavailable(
                UnavailableCause::Overloaded,
                "too many lookups in flight (PENDING_PROFILE_GATHERS_MAX)",
            );
            return cx.reply(origin, Err(r), out);
        };
        let ticket = self.profiles.ticket(id);
        for (home, ids) in by_home {
            for chunk in ids.chunks(PEER_BATCH_MAX) {
                let body = peer::home::GetProfiles {
                    to: ProfilesTo::Gather(ticket),
                    workspace: who.workspace,
                    users: chunk.to_vec(),
                };
                cx.send_peer(home, body, out);
            }
        }
    }

    pub(crate) fn on_profiles_reply(
        &mut self,
        cx: &mut Ctx,
        m: peer::gather::ProfilesReply,
        out: &mut Vec<Effect>,
    ) {
        let peer::gather::ProfilesReply { gather, profiles } = m;
        let Some(id) = self.profiles.id_of(gather) else {
            return; // For a gather of an earlier start.
        };
        let Some(g) = self.profiles.get_mut(id) else {
            return; // Timed out meanwhile.
        };
        for p in profiles {
            g.found.insert(p.user, p);
        }
        g.outstanding = g.outstanding.saturating_sub(1);
        if g.outstanding > 0 {
            return;
        }
        let Some(mut g) = self.profiles.remove(id) else {
            return;
        };
        let answer: Vec<UserProfile> = g.asked.iter().filter_map(|u| g.found.remove(u)).collect();
        cx.reply(g.origin, users_response(answer), out);
    }

    /// Answers `GetUsers` gathers past their deadline `Unavailable`.
    pub(crate) fn expire_profile_gathers(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        for (_, g) in self.profiles.expire(cx.now) {
            let r = Reject::unavailable(
                UnavailableCause::PeerTimeout,
                "a home shard did not answer a profile lookup",
            );
            cx.reply(g.origin, Err(r), out);
        }
    }
}

// ----- W: directory ----------------------------------------------------------------

impl WorkspaceRole {
    pub(crate) fn on_directory_names(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::DirectoryNames,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::DirectoryNames { workspace, entries } = m;
        for (user, display_name, version) in entries {
            let Some(ws) = cx.state.workspaces.get(&workspace) else {
                return;
            };
            if version <= ws.dir.version(user) || cx.writable().is_err() {
                // Held already, or not writable now: the home shard's next
                // change or start reports it again.
                continue;
            }
            let record = Record::DirectoryNameSet {
                workspace: workspace.0,
                user: user.0,
                display_name,
                version,
            };
            cx.commit(record, Vec::new(), out);
        }
    }

    pub(crate) fn on_directory(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::Directory,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::Directory {
            origin,
            who,
            prefix,
            after,
            limit,
        } = m;
        let Some(ws) = cx.state.workspaces.get(&who.workspace) else {
            return cx.reply(origin, Err(Reject::NotFound), out);
        };
        let limit = limit.clamp(1, DIRECTORY_PAGE_MAX) as usize;
        let (entries, next) = ws.dir.page(&prefix, after.as_ref(), limit);
        let result = Ok(Response::People(PeopleResponse::Directory {
            entries,
            next,
        }));
        answer_durable(cx, Action::Reply { origin, result }, out);
    }

    /// A page of the workspace's confirmed public channels by name: one
    /// pass over the channel directory selecting the next `limit` names
    /// (O(channels), at most CHANNELS_PER_WORKSPACE_MAX).
    pub(crate) fn on_browse_channels(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::BrowseChannels,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::BrowseChannels {
            origin,
            who,
            after,
            limit,
        } = m;
        let Some(ws) = cx.state.workspaces.get(&who.workspace) else {
            return cx.reply(origin, Err(Reject::NotFound), out);
        };
        let role = ws.role_of(who.user).0;
        if let Err(r) = crate::auth::permit(role, crate::auth::Act::BrowseChannels) {
            return cx.reply(origin, Err(r), out);
        }
        let after = after.unwrap_or_default();
        let mut page: Vec<(&String, ConversationId)> = ws
            .channels
            .iter()
            .filter(|(name, c)| c.confirmed && !c.private && name.as_str() > after.as_str())
            .map(|(name, c)| (name, c.id))
            .collect();
        let limit = limit.clamp(1, CHANNEL_PAGE_MAX) as usize;
        let more = page.len() > limit;
        if more {
            page.select_nth_unstable(limit);
            page.truncate(limit);
        }
        page.sort_unstable();
        let next = if more {
            page.last().map(|(name, _)| (*name).clone())
        } else {
            None
        };
        let channels = page.into_iter().map(|(n, id)| (id, n.clone())).collect();
        let result = Ok(Response::People(PeopleResponse::Channels {
            channels,
            next,
        }));
        answer_durable(cx, Action::Reply { origin, result }, out);
    }

    pub(crate) fn on_user_by_handle(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::UserByHandle,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::UserByHandle {
            origin,
            who,
            handle,
        } = m;
        let found = cx
            .state
            .workspaces
            .get(&who.workspace)
            .and_then(|ws| ws.users.get(&handle))
            .filter(|e| e.confirmed)
            .map(|e| e.user);
        let Some(user) = found else {
            return cx.reply(origin, Err(Reject::NotFound), out);
        };
        let body = peer::home::GetProfiles {
            to: ProfilesTo::Client(origin),
            workspace: who.workspace,
            users: vec![user],
        };
        cx.send_peer(cx.home_of(user), body, out);
    }
}

// ----- O: members --------------------------------------------------------------------

impl OwnerRole {
    pub(crate) fn on_list_members(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::ListMembers,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::ListMembers {
            origin,
            who,
            conversation,
            after,
            limit,
        } = m;
        let durable = cx.durable;
        let Some(c) = cx.state.conversations.get(&conversation) else {
            return cx.reply(origin, Err(Reject::NotFound), out);
        };
        if let Err(r) = authorize(c, who, Access::Read, durable) {
            return cx.reply(origin, Err(r), out);
        }
        let floor = after.map_or(0, |u| u.0.saturating_add(1));
        let mut ids: Vec<UserId> = c
            .members
            .iter()
            .filter(|(u, m)| u.0 >= floor && m.lsn <= durable)
            .map(|(u, _)| *u)
            .collect();
        let total = c.members.values().filter(|m| m.lsn <= durable).count() as u32;
        let limit = limit.clamp(1, MEMBERS_PAGE_MAX) as usize;
        let more = ids.len() > limit;
        if more {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        let next = if more { ids.last().copied() } else { None };
        let result = Ok(Response::People(PeopleResponse::Members {
            conversation,
            members: ids,
            total,
            next,
        }));
        cx.reply(origin, result, out);
    }
}
