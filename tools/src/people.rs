//! People requests (issue 16) for every [`Requester`]: profiles, lookups by
//! id and handle, the workspace directory and member lists; and
//! [`ProfileCache`], which keeps profiles by version and turns user ids
//! into the names people read.

use crate::error::ClientError;
use crate::requester::{unexpected, Requester};
use courier_core::api::{
    ConversationId, DirectoryCursor, DirectoryEntry, InviteInfo, PeopleRequest, PeopleResponse,
    ProfileUpdate, Request, Response, Role, UserId, UserProfile, WorkspaceId,
};
use courier_core::constants::GET_USERS_MAX;
use courier_proto::token;
use std::collections::HashMap;
use std::future::Future;

/// One page of the workspace directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryPage {
    /// Entries in directory order.
    pub entries: Vec<DirectoryEntry>,
    /// Pass as `after` for the next page; `None`: this was the last.
    pub next: Option<DirectoryCursor>,
}

/// One page of a conversation's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPage {
    /// Member ids, ascending.
    pub members: Vec<UserId>,
    /// The conversation's member count.
    pub total: u32,
    /// Pass as `after` for the next page; `None`: this was the last.
    pub next: Option<UserId>,
}

fn people_reply(response: Response, what: &str) -> Result<PeopleResponse, ClientError> {
    match response {
        Response::People(p) => Ok(p),
        other => Err(unexpected(what, &other)),
    }
}

fn users_reply(response: Response) -> Result<Vec<UserProfile>, ClientError> {
    match people_reply(response, "UserList")? {
        PeopleResponse::Users(users) => Ok(users),
        other => Err(unexpected("UserList", &Response::People(other))),
    }
}

fn one_user(response: Response) -> Result<UserProfile, ClientError> {
    users_reply(response)?
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol("expected one profile, got none".into()))
}

fn done(response: Response) -> Result<(), ClientError> {
    match response {
        Response::Done => Ok(()),
        other => Err(unexpected("Done", &other)),
    }
}

/// The people requests, for anything that carries requests.
pub trait People: Requester {
    /// Changes a profile: your own (`user` `None`), or anyone's from an
    /// admin session. Returns the profile at its new version.
    fn set_profile(
        &mut self,
        user: Option<UserId>,
        update: ProfileUpdate,
    ) -> impl Future<Output = Result<UserProfile, ClientError>> {
        let request = Request::People(PeopleRequest::SetProfile {
            user,
            update: Box::new(update),
        });
        async move { one_user(self.call(request).await?) }
    }

    /// Profiles of these users of your workspace (at most GET_USERS_MAX),
    /// in the order asked; unknown ids are left out.
    fn get_users(
        &mut self,
        users: &[UserId],
    ) -> impl Future<Output = Result<Vec<UserProfile>, ClientError>> {
        let request = Request::People(PeopleRequest::GetUsers {
            users: users.to_vec(),
        });
        async move { users_reply(self.call(request).await?) }
    }

    /// The profile of the user with this handle (`Rejected(NotFound)` if
    /// none in your workspace).
    fn user_by_handle(
        &mut self,
        handle: &str,
    ) -> impl Future<Output = Result<UserProfile, ClientError>> {
        let request = Request::People(PeopleRequest::GetUserByHandle {
            handle: handle.to_owned(),
        });
        async move { one_user(self.call(request).await?) }
    }

    /// A page of the workspace directory (`prefix` matches the start of
    /// handle or display name; empty: everyone).
    fn directory(
        &mut self,
        prefix: &str,
        after: Option<DirectoryCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<DirectoryPage, ClientError>> {
        let request = Request::People(PeopleRequest::Directory {
            prefix: prefix.to_owned(),
            after,
            limit,
        });
        async move {
            match people_reply(self.call(request).await?, "DirectoryPage")? {
                PeopleResponse::Directory { entries, next } => Ok(DirectoryPage { entries, next }),
                other => Err(unexpected("DirectoryPage", &Response::People(other))),
            }
        }
    }

    /// A page of the workspace's public channels, `(id, name)` ascending
    /// by name, and the name to pass as `after` for the next page.
    #[allow(clippy::type_complexity)]
    fn browse_channels(
        &mut self,
        after: Option<String>,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<(ConversationId, String)>, Option<String>), ClientError>>
    {
        let request = Request::People(PeopleRequest::BrowseChannels { after, limit });
        async move {
            match people_reply(self.call(request).await?, "ChannelPage")? {
                PeopleResponse::Channels { channels, next } => Ok((channels, next)),
                other => Err(unexpected("ChannelPage", &Response::People(other))),
            }
        }
    }

    /// Changes a user's workspace role (an admin or owner session, or the
    /// admin token); `Role::Deactivated` deactivates the user. Done once
    /// every session of the user acts with the new role (or, deactivated,
    /// is closed).
    fn set_role(
        &mut self,
        user: UserId,
        role: Role,
    ) -> impl Future<Output = Result<(), ClientError>> {
        let request = Request::People(PeopleRequest::SetRole { user, role });
        async move {
            match self.call(request).await? {
                Response::Done => Ok(()),
                other => Err(unexpected("Done", &other)),
            }
        }
    }

    /// The ids of your own tokens, ascending, and the one this session
    /// uses. Revoke one with `revoke_token(yourself, Some(id))`.
    fn list_tokens(&mut self) -> impl Future<Output = Result<(Vec<u64>, u64), ClientError>> {
        let request = Request::People(PeopleRequest::ListTokens);
        async move {
            match people_reply(self.call(request).await?, "TokenList")? {
                PeopleResponse::Tokens { tokens, current } => Ok((tokens, current)),
                other => Err(unexpected("TokenList", &Response::People(other))),
            }
        }
    }

    /// Creates a workspace invite (`workspace` `None`: your own; the
    /// admin token names it). Returns the invite and its code
    /// (`ci1_…`, shown only now).
    fn create_invite(
        &mut self,
        workspace: Option<WorkspaceId>,
        max_uses: u32,
        expires_in_ms: u64,
        role: Role,
    ) -> impl Future<Output = Result<(InviteInfo, String), ClientError>> {
        let request = Request::People(PeopleRequest::CreateInvite {
            workspace,
            max_uses,
            expires_in_ms,
            role,
        });
        async move {
            match people_reply(self.call(request).await?, "InviteCreated")? {
                PeopleResponse::InviteCreated { invite, secret } => {
                    let code = token::format_invite(invite.workspace, invite.id, &secret);
                    Ok((invite, code))
                }
                other => Err(unexpected("InviteCreated", &Response::People(other))),
            }
        }
    }

    /// The workspace's invites, ascending by id (admins and owners).
    fn list_invites(
        &mut self,
        workspace: Option<WorkspaceId>,
    ) -> impl Future<Output = Result<Vec<InviteInfo>, ClientError>> {
        let request = Request::People(PeopleRequest::ListInvites { workspace });
        async move {
            match people_reply(self.call(request).await?, "InviteList")? {
                PeopleResponse::Invites(list) => Ok(list),
                other => Err(unexpected("InviteList", &Response::People(other))),
            }
        }
    }

    /// Revokes an invite (admins and owners).
    fn revoke_invite(
        &mut self,
        workspace: Option<WorkspaceId>,
        invite: u64,
    ) -> impl Future<Output = Result<(), ClientError>> {
        let request = Request::People(PeopleRequest::RevokeInvite { workspace, invite });
        async move { done(self.call(request).await?) }
    }

    /// Whether members may create invites (admins and owners).
    fn set_invite_policy(
        &mut self,
        workspace: Option<WorkspaceId>,
        members_may_invite: bool,
    ) -> impl Future<Output = Result<(), ClientError>> {
        let request = Request::People(PeopleRequest::SetInvitePolicy {
            workspace,
            members_may_invite,
        });
        async move { done(self.call(request).await?) }
    }

    /// A page of a conversation's members, ascending by id.
    fn list_members(
        &mut self,
        conversation: ConversationId,
        after: Option<UserId>,
        limit: u32,
    ) -> impl Future<Output = Result<MemberPage, ClientError>> {
        let request = Request::People(PeopleRequest::ListMembers {
            conversation,
            after,
            limit,
        });
        async move {
            match people_reply(self.call(request).await?, "MemberPage")? {
                PeopleResponse::Members {
                    members,
                    total,
                    next,
                    ..
                } => Ok(MemberPage {
                    members,
                    total,
                    next,
                }),
                other => Err(unexpected("MemberPage", &Response::People(other))),
            }
        }
    }
}

impl<R: Requester> People for R {}

/// Profiles by user, each kept at the highest version seen, so a client
/// asks the server only for users it has not seen (or whose directory
/// entry shows a newer version). Unbounded by design of the caller: one
/// entry per user the client showed, at most the workspace's users.
#[derive(Clone, Debug, Default)]
pub struct ProfileCache {
    profiles: HashMap<UserId, UserProfile>,
}

impl ProfileCache {
    /// An empty cache.
    pub fn new() -> ProfileCache {
        ProfileCache::default()
    }

    /// Keeps `profile` unless a newer version is cached; returns whether
    /// it was taken.
    pub fn insert(&mut self, profile: UserProfile) -> bool {
        match self.profiles.get(&profile.user) {
            Some(held) if held.version >= profile.version => false,
            _ => {
                self.profiles.insert(profile.user, profile);
                true
            }
        }
    }

    /// The cached profile of `user`.
    pub fn get(&self, user: UserId) -> Option<&UserProfile> {
        self.profiles.get(&user)
    }

    /// Whether the cache holds `user` at `version` or later.
    pub fn is_current(&self, user: UserId, version: u64) -> bool {
        self.profiles
            .get(&user)
            .is_some_and(|p| p.version >= version)
    }

    /// A `ProfileChanged` event: drops the cached profile of `user` if it
    /// is older than `version` (the next [`ProfileCache::resolve`] fetches
    /// it again); returns whether it dropped one. A newer or equal cached
    /// version stays (events may arrive after a read that saw the change).
    pub fn on_changed(&mut self, user: UserId, version: u64) -> bool {
        let stale = self
            .profiles
            .get(&user)
            .is_some_and(|p| p.version < version);
        if stale {
            self.profiles.remove(&user);
        }
        stale
    }

    /// Fetches the profiles of those of `users` not cached yet (in
    /// requests of at most GET_USERS_MAX ids).
    pub async fn resolve(
        &mut self,
        requester: &mut impl Requester,
        users: &[UserId],
    ) -> Result<(), ClientError> {
        let mut missing: Vec<UserId> = users
            .iter()
            .copied()
            .filter(|u| !self.profiles.contains_key(u))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for chunk in missing.chunks(GET_USERS_MAX) {
            for p in requester.get_users(chunk).await? {
                self.insert(p);
            }
        }
        Ok(())
    }

    /// The name to show for `user`: the display name, else `@handle`, else
    /// the id (not cached).
    pub fn name(&self, user: UserId) -> String {
        match self.profiles.get(&user) {
            Some(p) if !p.profile.display_name.is_empty() => p.profile.display_name.clone(),
            Some(p) => format!("@{}", p.handle),
            None => user.0.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::api::Profile;

    fn profile(user: u64, handle: &str, name: &str, version: u64) -> UserProfile {
        UserProfile {
            user: UserId(user),
            handle: handle.into(),
            profile: Profile {
                display_name: name.into(),
                ..Profile::default()
            },
            version,
        }
    }

    #[test]
    fn the_cache_keeps_the_newest_version_and_names_people() {
        let mut cache = ProfileCache::new();
        assert!(cache.insert(profile(1, "ann", "Ann", 2)));
        assert!(!cache.insert(profile(1, "ann", "Old Ann", 1)));
        assert!(!cache.insert(profile(1, "ann", "Same Ann", 2)));
        assert_eq!(cache.name(UserId(1)), "Ann");
        assert!(cache.insert(profile(1, "ann", "", 3)));
        assert_eq!(cache.name(UserId(1)), "@ann");
        assert_eq!(cache.name(UserId(9)), "9");
        assert!(cache.is_current(UserId(1), 3));
        assert!(!cache.is_current(UserId(1), 4));
    }

    #[test]
    fn a_profile_event_drops_only_an_older_cached_profile() {
        let mut cache = ProfileCache::new();
        cache.insert(profile(1, "ann", "Ann", 2));
        // The same or an older version (a repeat, or an event behind a
        // read that already saw the change) keeps the entry.
        assert!(!cache.on_changed(UserId(1), 2));
        assert!(!cache.on_changed(UserId(1), 1));
        assert_eq!(cache.name(UserId(1)), "Ann");
        // A newer one drops it: the next resolve asks again.
        assert!(cache.on_changed(UserId(1), 3));
        assert!(cache.get(UserId(1)).is_none());
        assert!(!cache.on_changed(UserId(9), 1), "nothing cached");
    }
}
