//! The invite frames of issue 16, part 3 (`CreateInvite`, `ListInvites`,
//! `RevokeInvite`, `SetInvitePolicy`, `RedeemInvite`, `InviteCreated`,
//! `InviteList`) ⇄ `courier_core::api::PeopleRequest` / `PeopleResponse`.
//! Called by [`crate::people`] for those union members only; same
//! contract: nothing here panics on any input, every failure is a
//! [`DecodeError`]. The invite's secret travels as its code (`ci1_…`,
//! [`crate::token::format_invite`]).

use crate::codec::{body_name, DecodeError};
use crate::people::{role_from_wire, role_to_wire};
use crate::token::{format_invite, parse_invite};
use crate::wire;
use courier_core::api::{
    InviteInfo, Millis, PeopleRequest, PeopleResponse, Request, Response, UserId, WorkspaceId,
};
use flatbuffers::{FlatBufferBuilder, WIPOffset};

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn required<T>(v: Option<T>, what: &'static str) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::UnexpectedBody(what))
}

fn ws(w: &Option<WorkspaceId>) -> u64 {
    w.map_or(0, |w| w.0)
}

fn ws_from(raw: u64) -> Option<WorkspaceId> {
    (raw != 0).then_some(WorkspaceId(raw))
}

/// Encodes an invite request; `None` for other people requests.
pub(crate) fn encode_request(
    fbb: &mut FlatBufferBuilder<'static>,
    request: &PeopleRequest,
) -> Option<(wire::Body, Union)> {
    use wire::Body as B;
    Some(match request {
        PeopleRequest::CreateInvite {
            workspace,
            max_uses,
            expires_in_ms,
            role,
        } => {
            let args = wire::CreateInviteArgs {
                workspace: ws(workspace),
                max_uses: *max_uses,
                expires_in_ms: *expires_in_ms,
                role: role_to_wire(*role),
            };
            let t = wire::CreateInvite::create(fbb, &args);
            (B::CreateInvite, t.as_union_value())
        }
        PeopleRequest::ListInvites { workspace } => {
            let args = wire::ListInvitesArgs {
                workspace: ws(workspace),
            };
            let t = wire::ListInvites::create(fbb, &args);
            (B::ListInvites, t.as_union_value())
        }
        PeopleRequest::RevokeInvite { workspace, invite } => {
            let args = wire::RevokeInviteArgs {
                workspace: ws(workspace),
                invite: *invite,
            };
            let t = wire::RevokeInvite::create(fbb, &args);
            (B::RevokeInvite, t.as_union_value())
        }
        PeopleRequest::SetInvitePolicy {
            workspace,
            members_may_invite,
        } => {
            let args = wire::SetInvitePolicyArgs {
                workspace: ws(workspace),
                members_may_invite: *members_may_invite,
            };
            let t = wire::SetInvitePolicy::create(fbb, &args);
            (B::SetInvitePolicy, t.as_union_value())
        }
        PeopleRequest::RedeemInvite {
            workspace,
            invite,
            secret,
            handle,
        } => {
            let code = fbb.create_string(&format_invite(*workspace, *invite, secret));
            let handle = fbb.create_string(handle);
            let args = wire::RedeemInviteArgs {
                code: Some(code),
                handle: Some(handle),
            };
            let t = wire::RedeemInvite::create(fbb, &args);
            (B::RedeemInvite, t.as_union_value())
        }
        _ => return None,
    })
}

/// Decodes an invite request (`kind` is one of the invite union members;
/// anything else is `UnexpectedBody`).
pub(crate) fn decode_request(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Request, DecodeError> {
    use wire::Body as B;
    let request = match kind {
        B::CreateInvite => {
            let t = required(frame.body_as_create_invite(), "CreateInvite")?;
            PeopleRequest::CreateInvite {
                workspace: ws_from(t.workspace()),
                max_uses: t.max_uses(),
                expires_in_ms: t.expires_in_ms(),
                role: role_from_wire(t.role())?,
            }
        }
        B::ListInvites => {
            let t = required(frame.body_as_list_invites(), "ListInvites")?;
            PeopleRequest::ListInvites {
                workspace: ws_from(t.workspace()),
            }
        }
        B::RevokeInvite => {
            let t = required(frame.body_as_revoke_invite(), "RevokeInvite")?;
            PeopleRequest::RevokeInvite {
                workspace: ws_from(t.workspace()),
                invite: t.invite(),
            }
        }
        B::SetInvitePolicy => {
            let t = required(frame.body_as_set_invite_policy(), "SetInvitePolicy")?;
            PeopleRequest::SetInvitePolicy {
                workspace: ws_from(t.workspace()),
                members_may_invite: t.members_may_invite(),
            }
        }
        B::RedeemInvite => {
            let t = required(frame.body_as_redeem_invite(), "RedeemInvite")?;
            let (workspace, invite, secret) =
                parse_invite(t.code()).map_err(|_| DecodeError::Field {
                    field: "code",
                    reason: "malformed invite code (expected ci1_<96 hex>)",
                })?;
            PeopleRequest::RedeemInvite {
                workspace,
                invite,
                secret,
                handle: t.handle().to_owned(),
            }
        }
        other => return Err(DecodeError::UnexpectedBody(body_name(other))),
    };
    Ok(Request::People(request))
}

fn encode_info<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    i: &InviteInfo,
) -> WIPOffset<wire::InviteInfo<'a>> {
    let args = wire::InviteInfoArgs {
        workspace: i.workspace.0,
        id: i.id,
        creator: i.creator.map_or(0, |u| u.0),
        role: role_to_wire(i.role),
        max_uses: i.max_uses,
        uses: i.uses,
        created_ms: i.created.0,
        expires_ms: i.expires.0,
        revoked: i.revoked,
    };
    wire::InviteInfo::create(fbb, &args)
}

fn decode_info(t: &wire::InviteInfo<'_>) -> Result<InviteInfo, DecodeError> {
    Ok(InviteInfo {
        workspace: WorkspaceId(t.workspace()),
        id: t.id(),
        creator: (t.creator() != 0).then_some(UserId(t.creator())),
        role: role_from_wire(t.role())?,
        max_uses: t.max_uses(),
        uses: t.uses(),
        created: Millis(t.created_ms()),
        expires: Millis(t.expires_ms()),
        revoked: t.revoked(),
    })
}

/// Encodes an invite response; `None` for other people responses.
pub(crate) fn encode_response(
    fbb: &mut FlatBufferBuilder<'static>,
    response: &PeopleResponse,
) -> Option<(wire::Body, Union)> {
    use wire::Body as B;
    Some(match response {
        PeopleResponse::InviteCreated { invite, secret } => {
            let code = fbb.create_string(&format_invite(invite.workspace, invite.id, secret));
            let invite = encode_info(fbb, invite);
            let args = wire::InviteCreatedArgs {
                invite: Some(invite),
                code: Some(code),
            };
            let t = wire::InviteCreated::create(fbb, &args);
            (B::InviteCreated, t.as_union_value())
        }
        PeopleResponse::Invites(list) => {
            let items: Vec<_> = list.iter().map(|i| encode_info(fbb, i)).collect();
            let invites = fbb.create_vector(&items);
            let args = wire::InviteListArgs {
                invites: Some(invites),
            };
            let t = wire::InviteList::create(fbb, &args);
            (B::InviteList, t.as_union_value())
        }
        _ => return None,
    })
}

/// Decodes an invite response (`kind` is one of the invite union members;
/// anything else is `UnexpectedBody`).
pub(crate) fn decode_response(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Response, DecodeError> {
    use wire::Body as B;
    let response = match kind {
        B::InviteCreated => {
            let t = required(frame.body_as_invite_created(), "InviteCreated")?;
            let invite = decode_info(&t.invite())?;
            let (workspace, id, secret) =
                parse_invite(t.code()).map_err(|_| DecodeError::Field {
                    field: "code",
                    reason: "malformed invite code",
                })?;
            if workspace != invite.workspace || id != invite.id {
                return Err(DecodeError::Field {
                    field: "code",
                    reason: "names another invite",
                });
            }
            PeopleResponse::InviteCreated { invite, secret }
        }
        B::InviteList => {
            let t = required(frame.body_as_invite_list(), "InviteList")?;
            let invites = t
                .invites()
                .into_iter()
                .flatten()
                .map(|i| decode_info(&i))
                .collect::<Result<Vec<_>, _>>()?;
            PeopleResponse::Invites(invites)
        }
        other => return Err(DecodeError::UnexpectedBody(body_name(other))),
    };
    Ok(Response::People(response))
}
