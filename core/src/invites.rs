//! Workspace invites (issue 16, item 4): an admin (or any member, when the
//! workspace allows it) creates an invite; whoever holds its code redeems
//! it with a handle of their choice and gets a new user and its first
//! token, with no admin involved.
//!
//! Invites live on the workspace shard (`Workspace::invites`, records
//! `InviteCreated`, `InviteRedeemed`, `InviteRevoked`, `InvitePolicySet`).
//! The secret is made from the shard's entropy like a token's and only its
//! sha256 is stored. Redeeming is a request allowed on a connection with no
//! session (like `Hello`): `C` forwards it to `W`, which checks the secret
//! (a wrong secret and an unknown invite both answer `NotFound`), the
//! expiry, the uses left and revocation (typed refusals), then claims the
//! handle exactly as `CreateUser` does: one `InviteRedeemed` record takes a
//! use and claims the name, and the new user's home shard creates the user
//! (with the invite's role, held there before the token is handed out) and
//! answers with the token. The claim machinery (retries, confirmation)
//! is `CreateUser`'s.

use crate::api::Effect;
use crate::auth::{permit, permit_invite, secret_matches, Act};
use crate::commit::{Action, Ctx};
use crate::conn::ConnRole;
use crate::constants::{INVITES_PER_WORKSPACE_MAX, INVITE_EXPIRY_MAX_MS, INVITE_USES_MAX};
use crate::directory::{exhausted, WorkspaceRole};
use crate::ids::spread_slot;
use crate::peer::workspace::{InviteOp, Invites, Redeem};
use crate::peer::{self, Actor, Origin, Who};
use crate::record::Record;
use crate::state::{Invite, Workspace};
use crate::text::{check_name, NameKind};
use crate::types::{
    InviteInfo, Millis, PeopleRequest, PeopleResponse, Reject, Response, Role, UserId, WorkspaceId,
};

/// An invite as listed.
fn info(ws: &Workspace, id: u64, i: &Invite) -> InviteInfo {
    InviteInfo {
        workspace: ws.id,
        id,
        creator: i.creator,
        role: i.role,
        max_uses: i.max_uses,
        uses: i.uses,
        created: i.created,
        expires: i.expires,
        revoked: i.revoked,
    }
}

/// Why an invite cannot be redeemed at `now`, if it cannot.
pub(crate) fn redeem_refusal(i: &Invite, now: Millis) -> Option<Reject> {
    if i.revoked {
        Some(Reject::InviteRevoked)
    } else if i.uses >= i.max_uses {
        Some(Reject::InviteUsedUp)
    } else if now >= i.expires {
        Some(Reject::InviteExpired)
    } else {
        None
    }
}

/// The workspace an invite request acts on: a user session's own (naming
/// another is `NotFound`), the one an admin session names.
fn target(actor: Actor, named: Option<WorkspaceId>) -> Result<WorkspaceId, Reject> {
    match (actor, named) {
        (Actor::User(who), None) => Ok(who.workspace),
        (Actor::User(who), Some(w)) if w == who.workspace => Ok(w),
        (Actor::User(_), Some(_)) => Err(Reject::NotFound),
        (Actor::Admin, Some(w)) => Ok(w),
        (Actor::Admin, None) => Err(Reject::Invalid(
            "workspace: an admin session names the workspace".into(),
        )),
    }
}

/// Whether a people request is one of the invite requests.
pub(crate) fn is_invite(p: &PeopleRequest) -> bool {
    matches!(
        p,
        PeopleRequest::CreateInvite { .. }
            | PeopleRequest::ListInvites { .. }
            | PeopleRequest::RevokeInvite { .. }
            | PeopleRequest::SetInvitePolicy { .. }
            | PeopleRequest::RedeemInvite { .. }
    )
}

impl ConnRole {
    /// [`ConnRole::route_invites`] for a user session.
    pub(crate) fn user_invites(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        who: Who,
        request: PeopleRequest,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        self.route_invites(cx, origin, Actor::User(who), request, out)
    }

    /// Routes an invite request of a session (`actor`) to the workspace
    /// shard, after the checks that need no state.
    pub(crate) fn route_invites(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        actor: Actor,
        request: PeopleRequest,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        let (workspace, op) = match request {
            PeopleRequest::CreateInvite {
                workspace,
                max_uses,
                expires_in_ms,
                role,
            } => {
                if !(1..=INVITE_USES_MAX).contains(&max_uses) {
                    return Err(Reject::Invalid(format!("max_uses: 1..={INVITE_USES_MAX}")));
                }
                if !(1..=INVITE_EXPIRY_MAX_MS).contains(&expires_in_ms) {
                    return Err(Reject::Invalid(format!(
                        "expires_in_ms: 1..={INVITE_EXPIRY_MAX_MS} (30 days)"
                    )));
                }
                let op = InviteOp::Create {
                    max_uses,
                    expires_in_ms,
                    role,
                };
                (workspace, op)
            }
            PeopleRequest::ListInvites { workspace } => (workspace, InviteOp::List),
            PeopleRequest::RevokeInvite { workspace, invite } => {
                (workspace, InviteOp::Revoke { invite })
            }
            PeopleRequest::SetInvitePolicy {
                workspace,
                members_may_invite,
            } => (workspace, InviteOp::Policy { members_may_invite }),
            _ => {
                return Err(Reject::Invalid(
                    "RedeemInvite: only on a connection without a session (before Hello)".into(),
                ))
            }
        };
        let workspace = target(actor, workspace)?;
        let body = Invites {
            origin,
            actor,
            workspace,
            op,
        };
        cx.send_peer(cx.workspace_shard(workspace), body, out);
        Ok(())
    }

    /// Routes `RedeemInvite` from a connection with no session.
    pub(crate) fn route_redeem(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        request: PeopleRequest,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        let PeopleRequest::RedeemInvite {
            workspace,
            invite,
            secret,
            handle,
        } = request
        else {
            return Err(Reject::Unauthenticated);
        };
        check_name("handle", &handle, NameKind::Handle)?;
        let body = Redeem {
            origin,
            workspace,
            invite,
            secret,
            handle,
        };
        cx.send_peer(cx.workspace_shard(workspace), body, out);
        Ok(())
    }
}

impl WorkspaceRole {
    pub(crate) fn on_invites(&mut self, cx: &mut Ctx, m: Invites, out: &mut Vec<Effect>) {
        let Invites {
            origin,
            actor,
            workspace,
            op,
        } = m;
        let result = (|| {
            let ws = cx
                .state
                .workspaces
                .get(&workspace)
                .ok_or(Reject::NotFound)?;
            // The actor's role from this shard's own table.
            let role = match actor {
                Actor::Admin => None,
                Actor::User(who) if who.workspace == workspace => Some(ws.role_of(who.user).0),
                Actor::User(_) => return Err(Reject::NotFound),
            };
            match &op {
                InviteOp::Create { role: given, .. } => {
                    permit_invite(role, ws.members_may_invite, *given)?;
                    let live = ws.invites.values().filter(|i| !i.dead(cx.now)).count();
                    if live >= INVITES_PER_WORKSPACE_MAX {
                        return Err(Reject::TooLarge(format!(
                            "workspace: INVITES_PER_WORKSPACE_MAX ({INVITES_PER_WORKSPACE_MAX}) live invites"
                        )));
                    }
                }
                InviteOp::Revoke { invite } if !ws.invites.contains_key(invite) => {
                    role.map_or(Ok(()), |r| permit(r, Act::ManageUsers))?;
                    return Err(Reject::NotFound);
                }
                _ => role.map_or(Ok(()), |r| permit(r, Act::ManageUsers))?,
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.invite_op(cx, origin, actor, workspace, op, out),
            Err(r) => cx.reply(origin, Err(r), out),
        }
    }

    /// Carries out an invite operation already permitted.
    fn invite_op(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        actor: Actor,
        workspace: WorkspaceId,
        op: InviteOp,
        out: &mut Vec<Effect>,
    ) {
        let Some(ws) = cx.state.workspaces.get(&workspace) else {
            return cx.reply(origin, Err(Reject::NotFound), out);
        };
        let reply = |result| Action::Reply { origin, result };
        let record = match op {
            InviteOp::List => {
                let list = ws.invites.iter().map(|(id, i)| info(ws, *id, i)).collect();
                let r = Ok(Response::People(PeopleResponse::Invites(list)));
                return cx.after_durable(reply(r), out);
            }
            InviteOp::Revoke { invite } => {
                if ws.invites.get(&invite).is_some_and(|i| i.revoked) {
                    return cx.after_durable(reply(Ok(Response::Done)), out);
                }
                Record::InviteRevoked {
                    workspace: workspace.0,
                    invite,
                }
            }
            InviteOp::Policy { members_may_invite } => {
                if ws.members_may_invite == members_may_invite {
                    return cx.after_durable(reply(Ok(Response::Done)), out);
                }
                Record::InvitePolicySet {
                    workspace: workspace.0,
                    members_may_invite,
                }
            }
            InviteOp::Create {
                max_uses,
                expires_in_ms,
                role,
            } => {
                if let Err(r) = cx.writable() {
                    return cx.reply(origin, Err(r), out);
                }
                let id = ws.next_invite;
                let secret = cx.new_secret();
                let creator = match actor {
                    Actor::User(who) => Some(who.user),
                    Actor::Admin => None,
                };
                let invite = Invite {
                    hash: crate::auth::hash_secret(&secret),
                    creator,
                    role,
                    max_uses,
                    uses: 0,
                    created: cx.now,
                    expires: Millis(cx.now.0.saturating_add(expires_in_ms)),
                    revoked: false,
                };
                let Some(ws) = cx.state.workspaces.get(&workspace) else {
                    return cx.reply(origin, Err(Reject::NotFound), out);
                };
                let shown = info(ws, id, &invite);
                let record = Record::InviteCreated {
                    workspace: workspace.0,
                    invite: id,
                    hash: invite.hash,
                    creator: creator.map_or(0, |u| u.0),
                    role: role.into(),
                    max_uses,
                    created: invite.created.0,
                    expires: invite.expires.0,
                };
                let created = PeopleResponse::InviteCreated {
                    invite: shown,
                    secret,
                };
                let action = reply(Ok(Response::People(created)));
                cx.commit(record, vec![action], out);
                return;
            }
        };
        if let Err(r) = cx.writable() {
            return cx.reply(origin, Err(r), out);
        }
        cx.commit(record, vec![reply(Ok(Response::Done))], out);
    }

    pub(crate) fn on_redeem(&mut self, cx: &mut Ctx, m: Redeem, out: &mut Vec<Effect>) {
        let Redeem {
            origin,
            workspace,
            invite,
            secret,
            handle,
        } = m;
        let checked = (|| {
            let ws = cx
                .state
                .workspaces
                .get(&workspace)
                .ok_or(Reject::NotFound)?;
            let i = ws.invites.get(&invite).ok_or(Reject::NotFound)?;
            // A wrong secret is an unknown invite: nothing about it leaks.
            if !secret_matches(&secret, &i.hash) {
                return Err(Reject::NotFound);
            }
            if let Some(r) = redeem_refusal(i, cx.now) {
                return Err(r);
            }
            Ok((i.role, ws.name.clone()))
        })();
        let (role, workspace_name) = match checked {
            Ok(v) => v,
            Err(r) => return cx.reply(origin, Err(r), out),
        };
        if let Err(r) = self.claim_room(cx, workspace, &handle, false) {
            return cx.reply(origin, Err(r), out);
        }
        let slot = spread_slot(cx.state.ids.seed());
        let Some(raw) = cx.state.ids.allocate(slot) else {
            return cx.reply(origin, Err(exhausted()), out);
        };
        let user = UserId(raw);
        let record = Record::InviteRedeemed {
            workspace: workspace.0,
            invite,
            user: raw,
            name: handle.clone(),
        };
        let create = Action::Peer {
            to: cx.home_of(user),
            body: peer::home::CreateUser {
                origin: Some(origin),
                user,
                workspace,
                workspace_name,
                name: handle,
                role: (role != Role::Member).then_some((role, 1)),
            }
            .into(),
        };
        cx.commit(record, vec![create], out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(uses: u32, revoked: bool) -> Invite {
        Invite {
            hash: [0; 32],
            creator: None,
            role: Role::Member,
            max_uses: 2,
            uses,
            created: Millis(0),
            expires: Millis(100),
            revoked,
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        assert_eq!(redeem_refusal(&invite(0, false), Millis(99)), None);
        assert_eq!(
            redeem_refusal(&invite(0, false), Millis(100)),
            Some(Reject::InviteExpired)
        );
        assert_eq!(
            redeem_refusal(&invite(2, false), Millis(5)),
            Some(Reject::InviteUsedUp)
        );
        assert_eq!(
            redeem_refusal(&invite(2, true), Millis(500)),
            Some(Reject::InviteRevoked)
        );
        assert!(invite(1, false).dead(Millis(100)));
        assert!(!invite(1, false).dead(Millis(99)));
    }

    #[test]
    fn target_workspace() {
        let who = crate::peer::Who {
            user: UserId(1),
            workspace: WorkspaceId(7),
            role: Role::Member,
        };
        assert_eq!(target(Actor::User(who), None), Ok(WorkspaceId(7)));
        assert_eq!(
            target(Actor::User(who), Some(WorkspaceId(8))),
            Err(Reject::NotFound)
        );
        assert_eq!(
            target(Actor::Admin, Some(WorkspaceId(8))),
            Ok(WorkspaceId(8))
        );
        assert!(matches!(
            target(Actor::Admin, None),
            Err(Reject::Invalid(_))
        ));
    }
}
