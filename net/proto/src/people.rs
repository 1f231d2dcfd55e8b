//! The people frames of issue 16 (profiles, lookups, the directory, member
//! lists): `courier_core::api::PeopleRequest` / `PeopleResponse` ⇄ their
//! flatbuffers tables. Called by [`crate::codec`] for those union members
//! only; same contract: nothing here panics on any input, every failure is
//! a [`DecodeError`].

use crate::codec::DecodeError;
use crate::constants::{DIRECTORY_CURSOR_BYTES_MAX, GET_USERS_MAX};
use crate::wire;
use courier_core::api::{
    ConversationId, DirectoryCursor, DirectoryEntry, Millis, PeopleRequest, PeopleResponse,
    Profile, ProfileUpdate, Request, Response, Role, Status, UserId, UserProfile,
};
use flatbuffers::{FlatBufferBuilder, WIPOffset};

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn field(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::Field { field, reason }
}

fn required<T>(v: Option<T>, what: &'static str) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::UnexpectedBody(what))
}

fn opt_string<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    v: &Option<String>,
) -> Option<WIPOffset<&'a str>> {
    v.as_deref().map(|s| fbb.create_string(s))
}

fn encode_status<'a>(fbb: &mut FlatBufferBuilder<'a>, s: &Status) -> WIPOffset<wire::Status<'a>> {
    let emoji = fbb.create_string(&s.emoji);
    let text = fbb.create_string(&s.text);
    wire::Status::create(
        fbb,
        &wire::StatusArgs {
            emoji: Some(emoji),
            text: Some(text),
            expires_ms: s.expires.map_or(0, |m| m.0),
        },
    )
}

fn decode_status(t: &wire::Status<'_>) -> Status {
    Status {
        emoji: t.emoji().unwrap_or("").to_owned(),
        text: t.text().unwrap_or("").to_owned(),
        expires: (t.expires_ms() != 0).then_some(Millis(t.expires_ms())),
    }
}

/// Encodes a people request.
pub(crate) fn encode_request(
    fbb: &mut FlatBufferBuilder<'static>,
    request: &PeopleRequest,
) -> (wire::Body, Union) {
    use wire::Body as B;
    if let Some(invite) = crate::invites::encode_request(fbb, request) {
        return invite;
    }
    match request {
        PeopleRequest::SetProfile { user, update } => {
            let args = wire::SetProfileArgs {
                user: user.map_or(0, |u| u.0),
                display_name: opt_string(fbb, &update.display_name),
                real_name: opt_string(fbb, &update.real_name),
                title: opt_string(fbb, &update.title),
                time_zone: opt_string(fbb, &update.time_zone),
                avatar_url: opt_string(fbb, &update.avatar_url),
                status: update.status.as_ref().map(|s| encode_status(fbb, s)),
            };
            let t = wire::SetProfile::create(fbb, &args);
            (B::SetProfile, t.as_union_value())
        }
        PeopleRequest::GetUsers { users } => {
            let ids: Vec<u64> = users.iter().map(|u| u.0).collect();
            let users = fbb.create_vector(&ids);
            let t = wire::GetUsers::create(fbb, &wire::GetUsersArgs { users: Some(users) });
            (B::GetUsers, t.as_union_value())
        }
        PeopleRequest::GetUserByHandle { handle } => {
            let handle = fbb.create_string(handle);
            let args = wire::GetUserByHandleArgs {
                handle: Some(handle),
            };
            let t = wire::GetUserByHandle::create(fbb, &args);
            (B::GetUserByHandle, t.as_union_value())
        }
        PeopleRequest::Directory {
            prefix,
            after,
            limit,
        } => {
            let prefix = fbb.create_string(prefix);
            let after_key = after.as_ref().map(|a| fbb.create_string(&a.key));
            let args = wire::DirectoryArgs {
                prefix: Some(prefix),
                after_key,
                after_user: after.as_ref().map_or(0, |a| a.user.0),
                limit: *limit,
            };
            let t = wire::Directory::create(fbb, &args);
            (B::Directory, t.as_union_value())
        }
        PeopleRequest::BrowseChannels { after, limit } => {
            let after = after.as_deref().map(|a| fbb.create_string(a));
            let args = wire::BrowseChannelsArgs {
                after,
                limit: *limit,
            };
            let t = wire::BrowseChannels::create(fbb, &args);
            (B::BrowseChannels, t.as_union_value())
        }
        PeopleRequest::ListMembers {
            conversation,
            after,
            limit,
        } => {
            let args = wire::ListMembersArgs {
                conversation: conversation.0,
                after: after.map_or(0, |u| u.0),
                limit: *limit,
            };
            let t = wire::ListMembers::create(fbb, &args);
            (B::ListMembers, t.as_union_value())
        }
        PeopleRequest::ListTokens => {
            let t = wire::ListTokens::create(fbb, &wire::ListTokensArgs {});
            (B::ListTokens, t.as_union_value())
        }
        PeopleRequest::SetRole { user, role } => {
            let args = wire::SetRoleArgs {
                user: user.0,
                role: role_to_wire(*role),
            };
            let t = wire::SetRole::create(fbb, &args);
            (B::SetRole, t.as_union_value())
        }
        PeopleRequest::CreateInvite { .. }
        | PeopleRequest::ListInvites { .. }
        | PeopleRequest::RevokeInvite { .. }
        | PeopleRequest::SetInvitePolicy { .. }
        | PeopleRequest::RedeemInvite { .. } => unreachable!("encoded by crate::invites"),
    }
}

pub(crate) fn role_to_wire(role: Role) -> wire::Role {
    match role {
        Role::Owner => wire::Role::Owner,
        Role::Admin => wire::Role::Admin,
        Role::Member => wire::Role::Member,
        Role::Guest => wire::Role::Guest,
        Role::Deactivated => wire::Role::Deactivated,
    }
}

pub(crate) fn role_from_wire(role: wire::Role) -> Result<Role, DecodeError> {
    Ok(match role {
        wire::Role::Owner => Role::Owner,
        wire::Role::Admin => Role::Admin,
        wire::Role::Member => Role::Member,
        wire::Role::Guest => Role::Guest,
        wire::Role::Deactivated => Role::Deactivated,
        _ => return Err(field("role", "unknown role")),
    })
}

/// Decodes a people request (`kind` is one of the people union members;
/// anything else is `UnexpectedBody`).
pub(crate) fn decode_request(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Request, DecodeError> {
    use wire::Body as B;
    let request = match kind {
        B::SetProfile => {
            let t = required(frame.body_as_set_profile(), "SetProfile")?;
            let s = |v: Option<&str>| v.map(str::to_owned);
            PeopleRequest::SetProfile {
                user: (t.user() != 0).then_some(UserId(t.user())),
                update: Box::new(ProfileUpdate {
                    display_name: s(t.display_name()),
                    real_name: s(t.real_name()),
                    title: s(t.title()),
                    time_zone: s(t.time_zone()),
                    avatar_url: s(t.avatar_url()),
                    status: t.status().map(|st| decode_status(&st)),
                }),
            }
        }
        B::GetUsers => {
            let t = required(frame.body_as_get_users(), "GetUsers")?;
            if t.users().len() > GET_USERS_MAX {
                return Err(field("users", "more than GET_USERS_MAX ids"));
            }
            PeopleRequest::GetUsers {
                users: t.users().iter().map(UserId).collect(),
            }
        }
        B::GetUserByHandle => {
            let t = required(frame.body_as_get_user_by_handle(), "GetUserByHandle")?;
            PeopleRequest::GetUserByHandle {
                handle: t.handle().to_owned(),
            }
        }
        B::Directory => {
            let t = required(frame.body_as_directory(), "Directory")?;
            let key = t.after_key().unwrap_or("");
            if key.len() > DIRECTORY_CURSOR_BYTES_MAX {
                return Err(field("after_key", "longer than DIRECTORY_CURSOR_BYTES_MAX"));
            }
            PeopleRequest::Directory {
                prefix: t.prefix().unwrap_or("").to_owned(),
                after: (t.after_user() != 0).then(|| DirectoryCursor {
                    key: key.to_owned(),
                    user: UserId(t.after_user()),
                }),
                limit: t.limit(),
            }
        }
        B::BrowseChannels => {
            let t = required(frame.body_as_browse_channels(), "BrowseChannels")?;
            PeopleRequest::BrowseChannels {
                after: t.after().map(str::to_owned),
                limit: t.limit(),
            }
        }
        B::ListTokens => {
            required(frame.body_as_list_tokens(), "ListTokens")?;
            PeopleRequest::ListTokens
        }
        B::SetRole => {
            let t = required(frame.body_as_set_role(), "SetRole")?;
            if t.user() == 0 {
                return Err(field("user", "required"));
            }
            PeopleRequest::SetRole {
                user: UserId(t.user()),
                role: role_from_wire(t.role())?,
            }
        }
        B::ListMembers => {
            let t = required(frame.body_as_list_members(), "ListMembers")?;
            PeopleRequest::ListMembers {
                conversation: ConversationId(t.conversation()),
                after: (t.after() != 0).then_some(UserId(t.after())),
                limit: t.limit(),
            }
        }
        other => return crate::invites::decode_request(frame, other),
    };
    Ok(Request::People(request))
}

fn encode_profile<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    p: &UserProfile,
) -> WIPOffset<wire::UserProfile<'a>> {
    let f = &p.profile;
    let handle = fbb.create_string(&p.handle);
    let display_name = fbb.create_string(&f.display_name);
    let real_name = fbb.create_string(&f.real_name);
    let title = fbb.create_string(&f.title);
    let time_zone = fbb.create_string(&f.time_zone);
    let avatar_url = fbb.create_string(&f.avatar_url);
    let status = encode_status(fbb, &f.status);
    wire::UserProfile::create(
        fbb,
        &wire::UserProfileArgs {
            user: p.user.0,
            handle: Some(handle),
            version: p.version,
            display_name: Some(display_name),
            real_name: Some(real_name),
            title: Some(title),
            time_zone: Some(time_zone),
            avatar_url: Some(avatar_url),
            status: Some(status),
        },
    )
}

fn decode_profile(t: &wire::UserProfile<'_>) -> UserProfile {
    let s = |v: Option<&str>| v.unwrap_or("").to_owned();
    UserProfile {
        user: UserId(t.user()),
        handle: s(t.handle()),
        version: t.version(),
        profile: Profile {
            display_name: s(t.display_name()),
            real_name: s(t.real_name()),
            title: s(t.title()),
            time_zone: s(t.time_zone()),
            avatar_url: s(t.avatar_url()),
            status: t.status().map(|st| decode_status(&st)).unwrap_or_default(),
        },
    }
}

/// Encodes a people response.
pub(crate) fn encode_response(
    fbb: &mut FlatBufferBuilder<'static>,
    response: &PeopleResponse,
) -> (wire::Body, Union) {
    use wire::Body as B;
    if let Some(invite) = crate::invites::encode_response(fbb, response) {
        return invite;
    }
    match response {
        PeopleResponse::Users(users) => {
            let items: Vec<_> = users.iter().map(|p| encode_profile(fbb, p)).collect();
            let users = fbb.create_vector(&items);
            let t = wire::UserList::create(fbb, &wire::UserListArgs { users: Some(users) });
            (B::UserList, t.as_union_value())
        }
        PeopleResponse::Directory { entries, next } => {
            let items: Vec<_> = entries
                .iter()
                .map(|e| {
                    let handle = fbb.create_string(&e.handle);
                    let display_name = fbb.create_string(&e.display_name);
                    let args = wire::DirectoryEntryArgs {
                        user: e.user.0,
                        handle: Some(handle),
                        display_name: Some(display_name),
                        version: e.version,
                    };
                    wire::DirectoryEntry::create(fbb, &args)
                })
                .collect();
            let entries = fbb.create_vector(&items);
            let next_key = next.as_ref().map(|n| fbb.create_string(&n.key));
            let args = wire::DirectoryPageArgs {
                entries: Some(entries),
                next_key,
                next_user: next.as_ref().map_or(0, |n| n.user.0),
            };
            let t = wire::DirectoryPage::create(fbb, &args);
            (B::DirectoryPage, t.as_union_value())
        }
        PeopleResponse::Channels { channels, next } => {
            let items: Vec<_> = channels
                .iter()
                .map(|(id, name)| {
                    let name = fbb.create_string(name);
                    let args = wire::ChannelEntryArgs {
                        id: id.0,
                        name: Some(name),
                    };
                    wire::ChannelEntry::create(fbb, &args)
                })
                .collect();
            let channels = fbb.create_vector(&items);
            let next = next.as_deref().map(|n| fbb.create_string(n));
            let args = wire::ChannelPageArgs {
                channels: Some(channels),
                next,
            };
            let t = wire::ChannelPage::create(fbb, &args);
            (B::ChannelPage, t.as_union_value())
        }
        PeopleResponse::Members {
            conversation,
            members,
            total,
            next,
        } => {
            let ids: Vec<u64> = members.iter().map(|u| u.0).collect();
            let members = fbb.create_vector(&ids);
            let args = wire::MemberPageArgs {
                conversation: conversation.0,
                members: Some(members),
                total: *total,
                next: next.map_or(0, |u| u.0),
            };
            let t = wire::MemberPage::create(fbb, &args);
            (B::MemberPage, t.as_union_value())
        }
        PeopleResponse::Tokens { tokens, current } => {
            let tokens = fbb.create_vector(tokens);
            let args = wire::TokenListArgs {
                tokens: Some(tokens),
                current: *current,
            };
            let t = wire::TokenList::create(fbb, &args);
            (B::TokenList, t.as_union_value())
        }
        PeopleResponse::InviteCreated { .. } | PeopleResponse::Invites(_) => {
            unreachable!("encoded by crate::invites")
        }
    }
}

/// Decodes a people response (`kind` is one of the people union members;
/// anything else is `UnexpectedBody`).
pub(crate) fn decode_response(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Response, DecodeError> {
    use wire::Body as B;
    let response = match kind {
        B::UserList => {
            let t = required(frame.body_as_user_list(), "UserList")?;
            PeopleResponse::Users(
                t.users()
                    .into_iter()
                    .flatten()
                    .map(|p| decode_profile(&p))
                    .collect(),
            )
        }
        B::DirectoryPage => {
            let t = required(frame.body_as_directory_page(), "DirectoryPage")?;
            let entries = t
                .entries()
                .into_iter()
                .flatten()
                .map(|e| DirectoryEntry {
                    user: UserId(e.user()),
                    handle: e.handle().unwrap_or("").to_owned(),
                    display_name: e.display_name().unwrap_or("").to_owned(),
                    version: e.version(),
                })
                .collect();
            let next = (t.next_user() != 0).then(|| DirectoryCursor {
                key: t.next_key().unwrap_or("").to_owned(),
                user: UserId(t.next_user()),
            });
            PeopleResponse::Directory { entries, next }
        }
        B::ChannelPage => {
            let t = required(frame.body_as_channel_page(), "ChannelPage")?;
            PeopleResponse::Channels {
                channels: t
                    .channels()
                    .into_iter()
                    .flatten()
                    .map(|c| (ConversationId(c.id()), c.name().unwrap_or("").to_owned()))
                    .collect(),
                next: t.next().map(str::to_owned),
            }
        }
        B::MemberPage => {
            let t = required(frame.body_as_member_page(), "MemberPage")?;
            PeopleResponse::Members {
                conversation: ConversationId(t.conversation()),
                members: t.members().into_iter().flatten().map(UserId).collect(),
                total: t.total(),
                next: (t.next() != 0).then_some(UserId(t.next())),
            }
        }
        B::TokenList => {
            let t = required(frame.body_as_token_list(), "TokenList")?;
            PeopleResponse::Tokens {
                tokens: t.tokens().into_iter().flatten().collect(),
                current: t.current(),
            }
        }
        other => return crate::invites::decode_response(frame, other),
    };
    Ok(Response::People(response))
}
