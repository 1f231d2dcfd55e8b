//! Scripted scenarios for workspace invites (issue 16, item 4) through the
//! whole node (shards, fake WAL, fake network): who may create invites,
//! redeeming on a connection with no session, every typed refusal
//! (expired, used up, revoked, unknown, wrong secret, handle taken), the
//! invite's role, and invites across crashes and snapshots.

mod support;

use courier_core::api::{
    Credential, InviteInfo, PeopleRequest, PeopleResponse, Reject, Request, Response, Role, UserId,
    WorkspaceId,
};
use courier_core::ids::shard_of;

use support::{ScriptedNode as Node, World};

const SHARDS: u16 = 3;
const DAY_MS: u64 = 86_400_000;

fn node(seed: u64) -> Node {
    support::scripted_node(seed, SHARDS)
}

/// A user created by the node admin with `role`, connected on shard `s`.
fn user(n: &mut Node, name: &str, role: Role, s: u16) -> (UserId, usize) {
    let (user, c, _) = n.user(name, role, s);
    (user, c)
}

/// An invite and its secret.
type Created = (InviteInfo, [u8; 32]);

fn create(w: &mut World, c: usize, uses: u32, expires: u64, role: Role) -> Result<Created, Reject> {
    let request = PeopleRequest::CreateInvite {
        workspace: None,
        max_uses: uses,
        expires_in_ms: expires,
        role,
    };
    match w.call(c, Request::People(request))? {
        Response::People(PeopleResponse::InviteCreated { invite, secret }) => Ok((invite, secret)),
        other => panic!("expected an invite, got {other:?}"),
    }
}

/// Redeems on a fresh connection with no session (on shard `s`); returns
/// the new user's credential.
fn redeem(w: &mut World, s: u16, inv: &Created, handle: &str) -> Result<Credential, Reject> {
    redeem_with(w, s, inv.0.workspace, inv.0.id, inv.1, handle)
}

fn redeem_with(
    w: &mut World,
    s: u16,
    workspace: WorkspaceId,
    invite: u64,
    secret: [u8; 32],
    handle: &str,
) -> Result<Credential, Reject> {
    let c = w.anonymous(s);
    let request = PeopleRequest::RedeemInvite {
        workspace,
        invite,
        secret,
        handle: handle.into(),
    };
    let got = w.call(c, Request::People(request));
    w.disconnect(c);
    match got? {
        Response::TokenIssued {
            user,
            token,
            secret,
        } => {
            w.users.push((workspace, user));
            Ok(Credential::User {
                user,
                token,
                secret,
            })
        }
        other => panic!("expected a token, got {other:?}"),
    }
}

fn list(w: &mut World, c: usize) -> Result<Vec<InviteInfo>, Reject> {
    let request = PeopleRequest::ListInvites { workspace: None };
    match w.call(c, Request::People(request))? {
        Response::People(PeopleResponse::Invites(list)) => Ok(list),
        other => panic!("expected invites, got {other:?}"),
    }
}

fn people(w: &mut World, c: usize, request: PeopleRequest) -> Result<Response, Reject> {
    w.call(c, Request::People(request))
}

fn user_of(cred: &Credential) -> UserId {
    match cred {
        Credential::User { user, .. } => *user,
        Credential::Admin(_) => panic!("not a user credential"),
    }
}

fn create_channel(w: &mut World, c: usize, name: &str) -> Result<Response, Reject> {
    w.call(
        c,
        Request::CreateChannel {
            name: name.into(),
            private: false,
        },
    )
}

#[test]
fn an_admin_invites_and_a_newcomer_redeems_without_any_token() {
    let mut n = node(41);
    let (_, a) = user(&mut n, "adam", Role::Admin, 1);
    let ws = n.ws;
    let w = &mut n.w;
    let inv = create(w, a, 2, DAY_MS, Role::Guest).expect("an admin invites");
    assert_eq!(inv.0.uses, 0);
    assert_eq!(inv.0.role, Role::Guest);
    // Redeeming needs no session at all.
    let gus = redeem(w, 2, &inv, "gus").expect("redeems");
    let g = w.user_client(user_of(&gus), ws, gus.clone(), 0, false);
    w.ensure_online(g, 0);
    // The invite's role holds from the first session on.
    assert!(matches!(
        create_channel(w, g, "mine"),
        Err(Reject::Forbidden(_))
    ));
    // A handle already taken leaves the use untaken.
    assert_eq!(redeem(w, 0, &inv, "gus"), Err(Reject::AlreadyExists));
    assert!(matches!(
        redeem(w, 0, &inv, "no spaces"),
        Err(Reject::Invalid(_))
    ));
    redeem(w, 1, &inv, "hal").expect("the second use");
    assert_eq!(redeem(w, 1, &inv, "ivy"), Err(Reject::InviteUsedUp));
    // A wrong secret and an unknown invite look the same.
    let mut wrong = inv.1;
    wrong[0] ^= 1;
    assert_eq!(
        redeem_with(w, 0, ws, inv.0.id, wrong, "eve"),
        Err(Reject::NotFound)
    );
    assert_eq!(
        redeem_with(w, 0, ws, 99, inv.1, "eve"),
        Err(Reject::NotFound)
    );
    assert_eq!(
        redeem_with(w, 0, WorkspaceId(ws.0 ^ 1), inv.0.id, inv.1, "eve"),
        Err(Reject::NotFound)
    );
    let listed = list(w, a).expect("admins list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].uses, 2);
    // A session cannot redeem (it has a user already).
    let again = PeopleRequest::RedeemInvite {
        workspace: ws,
        invite: inv.0.id,
        secret: inv.1,
        handle: "kim".into(),
    };
    assert!(matches!(people(w, a, again), Err(Reject::Invalid(_))));
    // An anonymous connection can do nothing else.
    let anon = w.anonymous(0);
    assert_eq!(
        w.call(anon, Request::ListConversations),
        Err(Reject::Unauthenticated)
    );
}

#[test]
fn expired_and_revoked_invites_are_refused_by_name() {
    let mut n = node(42);
    let (_, a) = user(&mut n, "adam", Role::Admin, 0);
    let w = &mut n.w;
    // (Time passes while the node settles: ten minutes is plenty.)
    let short = create(w, a, 5, 600_000, Role::Member).expect("creates");
    let revoked = create(w, a, 5, DAY_MS, Role::Member).expect("creates");
    let revoke = PeopleRequest::RevokeInvite {
        workspace: None,
        invite: revoked.0.id,
    };
    assert_eq!(people(w, a, revoke.clone()), Ok(Response::Done));
    assert_eq!(people(w, a, revoke), Ok(Response::Done), "idempotent");
    assert_eq!(redeem(w, 1, &revoked, "rex"), Err(Reject::InviteRevoked));
    redeem(w, 1, &short, "sam").expect("still valid");
    w.now += 600_000;
    assert_eq!(redeem(w, 1, &short, "sue"), Err(Reject::InviteExpired));
    // The next creation drops the dead ones: then it is unknown.
    create(w, a, 1, DAY_MS, Role::Member).expect("creates");
    assert_eq!(redeem(w, 1, &short, "sue"), Err(Reject::NotFound));
    let unknown = PeopleRequest::RevokeInvite {
        workspace: None,
        invite: 77,
    };
    assert_eq!(people(w, a, unknown), Err(Reject::NotFound));
    // Out-of-range requests are refused before any state is touched.
    assert!(matches!(
        create(w, a, 0, DAY_MS, Role::Member),
        Err(Reject::Invalid(_))
    ));
    assert!(matches!(
        create(w, a, 1, 31 * DAY_MS, Role::Member),
        Err(Reject::Invalid(_))
    ));
    assert!(matches!(
        create(w, a, 1, DAY_MS, Role::Owner),
        Err(Reject::Invalid(_))
    ));
}

#[test]
fn members_invite_only_when_the_workspace_allows_and_never_admins() {
    let mut n = node(43);
    let (_, a) = user(&mut n, "adam", Role::Admin, 0);
    let (_, m) = user(&mut n, "mia", Role::Member, 1);
    let (_, g) = user(&mut n, "gia", Role::Guest, 2);
    let (_, o) = user(&mut n, "olga", Role::Owner, 2);
    let ws = n.ws;
    let w = &mut n.w;
    assert!(matches!(
        create(w, m, 1, DAY_MS, Role::Member),
        Err(Reject::Forbidden(_))
    ));
    let policy = |on| PeopleRequest::SetInvitePolicy {
        workspace: None,
        members_may_invite: on,
    };
    assert_eq!(people(w, m, policy(true)), Err(Reject::NotAdmin));
    assert_eq!(people(w, o, policy(true)), Ok(Response::Done));
    let inv = create(w, m, 1, DAY_MS, Role::Member).expect("members may now");
    assert_eq!(
        create(w, m, 1, DAY_MS, Role::Admin).map(|_| ()),
        Err(Reject::NotAdmin)
    );
    assert!(matches!(
        create(w, g, 1, DAY_MS, Role::Guest),
        Err(Reject::Forbidden(_))
    ));
    // Members create but do not list or revoke.
    assert_eq!(list(w, m), Err(Reject::NotAdmin));
    let revoke = PeopleRequest::RevokeInvite {
        workspace: None,
        invite: inv.0.id,
    };
    assert_eq!(people(w, m, revoke), Err(Reject::NotAdmin));
    // Another workspace's invites are out of reach, like a missing one.
    let other = w.create_workspace(n.admin, "globex");
    let elsewhere = PeopleRequest::ListInvites {
        workspace: Some(other),
    };
    assert_eq!(people(w, a, elsewhere), Err(Reject::NotFound));
    // An admin-role invite makes an admin: it manages users at once.
    let boss = create(w, a, 1, DAY_MS, Role::Admin).expect("admins invite admins");
    let cred = redeem(w, 1, &boss, "bea").expect("redeems");
    let b = w.user_client(user_of(&cred), ws, cred, 1, false);
    w.ensure_online(b, 1);
    assert!(list(w, b).is_ok(), "an admin from the first session on");
    // The node admin names the workspace.
    let by_node = PeopleRequest::CreateInvite {
        workspace: None,
        max_uses: 1,
        expires_in_ms: DAY_MS,
        role: Role::Member,
    };
    assert!(matches!(
        people(w, n.admin, by_node),
        Err(Reject::Invalid(_))
    ));
    let by_node = PeopleRequest::CreateInvite {
        workspace: Some(ws),
        max_uses: 1,
        expires_in_ms: DAY_MS,
        role: Role::Member,
    };
    match people(w, n.admin, by_node) {
        Ok(Response::People(PeopleResponse::InviteCreated { invite, .. })) => {
            assert_eq!(invite.creator, None)
        }
        other => panic!("the node admin invites: {other:?}"),
    }
}

#[test]
fn invites_survive_crashes_and_snapshots() {
    for snapshot_first in [false, true] {
        let mut n = node(44 + u64::from(snapshot_first));
        let (_, a) = user(&mut n, "adam", Role::Admin, 1);
        let ws = n.ws;
        let w = &mut n.w;
        let inv = create(w, a, 3, DAY_MS, Role::Guest).expect("creates");
        let gone = create(w, a, 3, DAY_MS, Role::Member).expect("creates");
        let revoke = PeopleRequest::RevokeInvite {
            workspace: None,
            invite: gone.0.id,
        };
        assert_eq!(people(w, a, revoke), Ok(Response::Done));
        let first = redeem(w, 2, &inv, "gus").expect("redeems");
        let ws_shard = shard_of(ws, SHARDS).0;
        let home = shard_of(user_of(&first), SHARDS).0;
        for s in [ws_shard, home] {
            if snapshot_first {
                w.snapshot(s);
            }
            w.crash(s);
            w.restart(s);
        }
        w.settle();
        // The use taken, the revocation and the role all held.
        assert_eq!(redeem(w, 0, &inv, "gus"), Err(Reject::AlreadyExists));
        assert_eq!(redeem(w, 0, &gone, "rex"), Err(Reject::InviteRevoked));
        let second = redeem(w, 0, &inv, "hal").expect("a second use");
        let g = w.user_client(user_of(&first), ws, first, 0, false);
        w.ensure_online(g, 0);
        assert!(matches!(
            create_channel(w, g, "mine"),
            Err(Reject::Forbidden(_))
        ));
        let h = w.user_client(user_of(&second), ws, second, 1, false);
        w.ensure_online(h, 1);
        assert!(matches!(
            create_channel(w, h, "mine"),
            Err(Reject::Forbidden(_))
        ));
        w.ensure_online(n.admin, 0);
        let a = n.admin;
        let listed = people(
            w,
            a,
            PeopleRequest::ListInvites {
                workspace: Some(ws),
            },
        );
        match listed {
            Ok(Response::People(PeopleResponse::Invites(list))) => {
                let uses: Vec<(u64, u32, bool)> =
                    list.iter().map(|i| (i.id, i.uses, i.revoked)).collect();
                assert_eq!(uses, vec![(inv.0.id, 2, false), (gone.0.id, 0, true)]);
            }
            other => panic!("expected invites, got {other:?}"),
        }
    }
}
