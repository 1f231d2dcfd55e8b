//! Scripted scenarios for workspace roles and deactivation (issue 16, part
//! 2) through the whole node (shards, fake WAL, fake network): who may
//! create users and change roles, what guests see, roles across crashes
//! and snapshots, and deactivation (sessions closed, tokens gone, removed
//! from channels, messages kept, final).

mod support;

use courier_core::api::{
    Broadcast, ConversationId, Credential, Event, HistoryAnchor, LookupKind, PeopleRequest,
    PeopleResponse, Reject, Request, Response, Role, UserId, WorkspaceId,
};
use courier_core::ids::shard_of;

use support::{Down, ScriptedNode as Node, World};

const SHARDS: u16 = 3;

fn node(seed: u64) -> Node {
    support::scripted_node(seed, SHARDS)
}

fn set_role(w: &mut World, c: usize, user: UserId, role: Role) -> Result<(), Reject> {
    match w.call(c, Request::People(PeopleRequest::SetRole { user, role }))? {
        Response::Done => Ok(()),
        other => panic!("expected Done, got {other:?}"),
    }
}

fn create_user(w: &mut World, c: usize, ws: WorkspaceId, name: &str) -> Result<UserId, Reject> {
    let request = Request::CreateUser {
        workspace: ws,
        name: name.into(),
    };
    match w.call(c, request)? {
        Response::TokenIssued { user, .. } => Ok(user),
        other => panic!("expected a token, got {other:?}"),
    }
}

fn send(w: &mut World, c: usize, conversation: ConversationId, body: &str) -> Result<(), Reject> {
    let request = Request::Send {
        conversation,
        client_msg_id: u128::from(w.clients[c].next_req) << 64 | 7,
        body: body.into(),
        mentions: vec![],
        broadcast: Broadcast::None,
    };
    w.call(c, request).map(|_| ())
}

fn history(w: &mut World, c: usize, conversation: ConversationId) -> Result<Vec<String>, Reject> {
    let request = Request::History {
        conversation,
        anchor: HistoryAnchor::Latest,
        limit: 50,
    };
    match w.call(c, request)? {
        Response::History { messages, .. } => Ok(messages.into_iter().map(|m| m.body).collect()),
        other => panic!("expected history, got {other:?}"),
    }
}

fn members(w: &mut World, c: usize, conversation: ConversationId) -> Vec<UserId> {
    let request = Request::People(PeopleRequest::ListMembers {
        conversation,
        after: None,
        limit: 100,
    });
    match w.call(c, request) {
        Ok(Response::People(PeopleResponse::Members { members, .. })) => members,
        other => panic!("expected members, got {other:?}"),
    }
}

fn forbidden(r: &Result<impl std::fmt::Debug, Reject>) -> bool {
    matches!(r, Err(Reject::Forbidden(_)))
}

#[test]
fn admins_manage_users_members_do_not_and_owners_guard_owners() {
    let mut n = node(31);
    let (owner, o, _) = n.user("olga", Role::Owner, 0);
    let (admin, a, _) = n.user("adam", Role::Admin, 1);
    let (_, m, _) = n.user("mia", Role::Member, 2);
    let ws = n.ws;
    let w = &mut n.w;
    // An admin creates users (no node admin needed); a member may not.
    let fresh = create_user(w, a, ws, "fred").expect("an admin creates users");
    assert_eq!(create_user(w, m, ws, "nope"), Err(Reject::NotAdmin));
    assert_eq!(create_user(w, a, ws, "fred"), Err(Reject::AlreadyExists));
    // Another workspace is out of reach, like a workspace that does not exist.
    let other = w.create_workspace(n.admin, "globex");
    assert_eq!(create_user(w, a, other, "spy"), Err(Reject::NotFound));
    // Admins set member, guest and admin roles; never the owner role.
    assert_eq!(set_role(w, a, fresh, Role::Guest), Ok(()));
    assert_eq!(set_role(w, a, fresh, Role::Admin), Ok(()));
    assert_eq!(set_role(w, a, fresh, Role::Owner), Err(Reject::NotAdmin));
    assert_eq!(set_role(w, a, owner, Role::Member), Err(Reject::NotAdmin));
    // Members change nobody's role, not even their own.
    assert_eq!(set_role(w, m, fresh, Role::Member), Err(Reject::NotAdmin));
    assert_eq!(
        set_role(w, m, UserId(424242), Role::Member),
        Err(Reject::NotFound)
    );
    // The owner makes a second owner; the last owner cannot step down.
    assert_eq!(set_role(w, o, admin, Role::Owner), Ok(()));
    assert_eq!(set_role(w, o, owner, Role::Member), Ok(()));
    assert!(forbidden(&set_role(w, a, admin, Role::Admin)));
    // Demoted, the former owner manages nobody — at once, in the same session.
    assert_eq!(create_user(w, o, ws, "late"), Err(Reject::NotAdmin));
    // Setting the same role again is idempotent.
    assert_eq!(set_role(w, a, fresh, Role::Admin), Ok(()));
}

#[test]
fn guests_see_only_what_they_were_added_to() {
    let mut n = node(32);
    let (_, m, _) = n.user("mia", Role::Member, 0);
    let (guest, g, _) = n.user("gus", Role::Guest, 1);
    let w = &mut n.w;
    let public = w.create_channel(m, "general", false);
    let shared = w.create_channel(m, "project", true);
    send(w, m, public, "for everyone").expect("send");
    // No channel creation, no browsing: typed refusals about the role.
    let create = w.call(
        g,
        Request::CreateChannel {
            name: "mine".into(),
            private: false,
        },
    );
    assert!(forbidden(&create), "{create:?}");
    let browse = w.call(
        g,
        Request::People(PeopleRequest::BrowseChannels {
            after: None,
            limit: 10,
        }),
    );
    assert!(forbidden(&browse), "{browse:?}");
    // A public channel they are not in looks like nothing at all.
    let ghost = ConversationId(public.0 ^ 0x7fff_0000);
    for c in [public, ghost] {
        assert_eq!(
            w.call(g, Request::Join { conversation: c }),
            Err(Reject::NotFound)
        );
        assert_eq!(history(w, g, c), Err(Reject::NotFound));
    }
    let lookup = Request::Lookup {
        name: "general".into(),
        kind: LookupKind::Channel,
    };
    assert_eq!(w.call(g, lookup.clone()), Err(Reject::NotFound));
    match w.call(g, Request::ListConversations) {
        Ok(Response::Conversations(list)) => assert!(list.is_empty(), "{list:?}"),
        other => panic!("{other:?}"),
    }
    // Invited, a guest is a member like anyone.
    for c in [shared, public] {
        let invite = Request::Invite {
            conversation: c,
            user: guest,
        };
        assert_eq!(w.call(m, invite), Ok(Response::Done));
    }
    send(w, g, shared, "hello from a guest").expect("a guest posts where invited");
    assert_eq!(history(w, g, public).expect("reads"), vec!["for everyone"]);
    assert_eq!(
        w.call(g, lookup),
        Ok(Response::Found { id: public.0 }),
        "a channel the guest is in is found"
    );
    // Promoted to member, the same session previews public channels.
    let other = w.create_channel(m, "random", false);
    assert_eq!(history(w, g, other), Err(Reject::NotFound));
    assert_eq!(set_role(w, n.admin, guest, Role::Member), Ok(()));
    assert_eq!(history(w, g, other), Ok(vec![]));
    // Demoted again, at once.
    assert_eq!(set_role(w, n.admin, guest, Role::Guest), Ok(()));
    assert_eq!(history(w, g, other), Err(Reject::NotFound));
}

#[test]
fn roles_survive_crashes_and_snapshots() {
    for snapshot_first in [false, true] {
        let mut n = node(33 + u64::from(snapshot_first));
        let (guest, g, cred) = n.user("gus", Role::Guest, 1);
        let (admin, _, acred) = n.user("adam", Role::Admin, 2);
        let ws_shard = shard_of(n.ws, SHARDS).0;
        let homes = [shard_of(guest, SHARDS).0, shard_of(admin, SHARDS).0];
        let w = &mut n.w;
        for s in std::iter::once(ws_shard).chain(homes) {
            if snapshot_first {
                w.snapshot(s);
            }
            w.crash(s);
            w.restart(s);
        }
        w.settle();
        w.disconnect(g);
        let g = w.user_client(guest, n.ws, cred, 0, false);
        w.ensure_online(g, 0);
        let create = w.call(
            g,
            Request::CreateChannel {
                name: "mine".into(),
                private: true,
            },
        );
        assert!(
            forbidden(&create),
            "still a guest after restarts: {create:?}"
        );
        // The admin still manages users (the workspace shard's table).
        let a = w.user_client(admin, n.ws, acred, 2, false);
        w.ensure_online(a, 2);
        assert!(create_user(w, a, n.ws, "fred").is_ok());
    }
}

#[test]
fn deactivation_closes_sessions_removes_from_channels_and_keeps_messages() {
    let mut n = node(35);
    let (_, m, _) = n.user("mia", Role::Member, 0);
    let (dan, d, cred) = n.user("dan", Role::Member, 1);
    let (admin, a, _) = n.user("adam", Role::Admin, 2);
    let w = &mut n.w;
    let general = w.create_channel(m, "general", false);
    let private = w.create_channel(m, "private", true);
    for c in [general, private] {
        let invite = Request::Invite {
            conversation: c,
            user: dan,
        };
        assert_eq!(w.call(m, invite), Ok(Response::Done));
    }
    let dm = match w.call(m, Request::OpenDm { users: vec![dan] }) {
        Ok(Response::Conversation(info)) => info.id,
        other => panic!("{other:?}"),
    };
    send(w, d, general, "dan was here").expect("send");
    send(w, d, dm, "psst").expect("send");
    w.clients[d].inbox.clear();
    // Deactivated by an admin user.
    assert_eq!(set_role(w, a, dan, Role::Deactivated), Ok(()));
    w.settle();
    assert!(
        w.clients[d]
            .inbox
            .iter()
            .any(|x| matches!(x, Down::Closed(_))),
        "the session was not closed: {:?}",
        w.clients[d].inbox
    );
    // Nothing sent afterwards reaches the old session.
    send(w, m, general, "after").expect("send");
    assert!(!w.clients[d].inbox.iter().any(|x| matches!(
        x,
        Down::Event(e) if matches!(&**e, Event::Message(msg) if msg.body == "after")
    )));
    // The token is gone: no new session.
    w.disconnect(d);
    let again = w.user_client(dan, n.ws, cred, 0, false);
    assert!(
        w.clients[again]
            .inbox
            .iter()
            .any(|x| matches!(x, Down::Reply(_, Err(Reject::Unauthenticated)))),
        "{:?}",
        w.clients[again].inbox
    );
    // Out of every channel; still in the DM; messages kept.
    assert!(!members(w, m, general).contains(&dan));
    assert!(!members(w, m, private).contains(&dan));
    assert!(members(w, m, dm).contains(&dan));
    assert_eq!(
        history(w, m, general).expect("history"),
        vec!["dan was here", "after"]
    );
    assert_eq!(history(w, m, dm).expect("history"), vec!["psst"]);
    // Nobody adds them back; no token is issued; it is final.
    let invite = Request::Invite {
        conversation: private,
        user: dan,
    };
    assert_eq!(w.call(m, invite), Err(Reject::NotFound));
    let issue = w.call(n.admin, Request::IssueToken { user: dan });
    assert!(forbidden(&issue), "{issue:?}");
    assert!(forbidden(&set_role(w, a, dan, Role::Member)));
    assert!(forbidden(&set_role(w, n.admin, dan, Role::Member)));
    let _ = admin;
}

fn tokens(w: &mut World, c: usize) -> Result<(Vec<u64>, u64), Reject> {
    match w.call(c, Request::People(PeopleRequest::ListTokens))? {
        Response::People(PeopleResponse::Tokens { tokens, current }) => Ok((tokens, current)),
        other => panic!("expected tokens, got {other:?}"),
    }
}

#[test]
fn users_list_and_revoke_their_own_tokens() {
    let mut n = node(36);
    let (ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, _, _) = n.user("bob", Role::Member, 1);
    let w = &mut n.w;
    assert_eq!(tokens(w, a), Ok((vec![1], 1)));
    // A second device's token, issued by the admin.
    let second = match w.call(n.admin, Request::IssueToken { user: ann }) {
        Ok(Response::TokenIssued {
            user,
            token,
            secret,
        }) => Credential::User {
            user,
            token,
            secret,
        },
        other => panic!("{other:?}"),
    };
    let phone = w.user_client(ann, n.ws, second, 2, false);
    assert_eq!(tokens(w, phone), Ok((vec![1, 2], 2)));
    // Someone else's tokens are not yours to revoke.
    let theirs = Request::RevokeToken {
        user: bob,
        token: Some(1),
    };
    assert_eq!(w.call(a, theirs), Err(Reject::NotAdmin));
    // Revoking your phone's token closes the phone at once.
    let mine = Request::RevokeToken {
        user: ann,
        token: Some(2),
    };
    assert_eq!(w.call(a, mine), Ok(Response::Done));
    w.settle();
    assert!(w.clients[phone]
        .inbox
        .iter()
        .any(|x| matches!(x, Down::Closed(_))));
    assert_eq!(tokens(w, a), Ok((vec![1], 1)));
    assert_eq!(
        w.call(n.admin, Request::People(PeopleRequest::ListTokens)),
        Err(Reject::Invalid(
            "an admin session has no user; use a user token".into()
        ))
    );
}
