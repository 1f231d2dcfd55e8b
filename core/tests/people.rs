//! Scripted scenarios for people (issue 16) through the whole node (shards,
//! fake WAL, fake network): profiles set and read back across shards,
//! crashes and snapshots; `GetUsers` and `GetUserByHandle`; the directory
//! with prefix search and paging; member lists; and the refusals.

mod support;

use courier_core::api::{
    DirectoryCursor, Millis, PeopleRequest, PeopleResponse, ProfileUpdate, Reject, Request,
    Response, Status, UserId, UserProfile, WorkspaceId,
};
use courier_core::constants::{DIRECTORY_PAGE_MAX, GET_USERS_MAX, MEMBERS_PAGE_MAX};
use courier_core::ids::shard_of;

use support::World;

struct Node {
    w: World,
    admin: usize,
    ws: WorkspaceId,
}

fn node(seed: u64, shards: u16) -> Node {
    let mut w = World::new(seed, shards);
    let admin = w.admin(0);
    let ws = w.create_workspace(admin, "acme");
    Node { w, admin, ws }
}

impl Node {
    fn user(&mut self, name: &str, s: u16) -> (UserId, usize) {
        let (user, cred) = self.w.create_user(self.admin, self.ws, name);
        let c = self.w.user_client(user, self.ws, cred, s, false);
        (user, c)
    }
}

fn people(w: &mut World, c: usize, request: PeopleRequest) -> Result<PeopleResponse, Reject> {
    match w.call(c, Request::People(request))? {
        Response::People(p) => Ok(p),
        other => panic!("expected a people answer, got {other:?}"),
    }
}

fn users(r: Result<PeopleResponse, Reject>) -> Vec<UserProfile> {
    match r {
        Ok(PeopleResponse::Users(u)) => u,
        other => panic!("expected profiles, got {other:?}"),
    }
}

fn set(w: &mut World, c: usize, user: Option<UserId>, update: ProfileUpdate) -> UserProfile {
    let update = Box::new(update);
    let mut answer = users(people(w, c, PeopleRequest::SetProfile { user, update }));
    assert_eq!(answer.len(), 1);
    answer.remove(0)
}

fn display(name: &str) -> ProfileUpdate {
    ProfileUpdate {
        display_name: Some(name.into()),
        ..ProfileUpdate::default()
    }
}

fn get(w: &mut World, c: usize, ids: &[UserId]) -> Vec<UserProfile> {
    users(people(
        w,
        c,
        PeopleRequest::GetUsers {
            users: ids.to_vec(),
        },
    ))
}

/// Every page of the directory, as handles.
fn directory(w: &mut World, c: usize, prefix: &str, limit: u32) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<DirectoryCursor> = None;
    loop {
        let request = PeopleRequest::Directory {
            prefix: prefix.into(),
            after: after.clone(),
            limit,
        };
        match people(w, c, request) {
            Ok(PeopleResponse::Directory { entries, next }) => {
                pages.push(entries.into_iter().map(|e| e.handle).collect());
                match next {
                    Some(n) => after = Some(n),
                    None => return pages,
                }
            }
            other => panic!("directory: {other:?}"),
        }
    }
}

#[test]
fn profiles_are_set_read_across_shards_and_survive_crashes() {
    for snapshot_first in [false, true] {
        let mut n = node(21, 3);
        let (ann, a) = n.user("ann", 0);
        let (bob, b) = n.user("bob", 1);
        let w = &mut n.w;
        let update = ProfileUpdate {
            display_name: Some("Ann Lee".into()),
            title: Some("CTO".into()),
            time_zone: Some("Europe/Berlin".into()),
            avatar_url: Some("https://x.example/ann.png".into()),
            status: Some(Status {
                emoji: "🌴".into(),
                text: "away".into(),
                expires: None,
            }),
            ..ProfileUpdate::default()
        };
        let first = set(w, a, None, update);
        assert_eq!((first.user, first.version), (ann, 1));
        assert_eq!(first.handle, "ann");
        let second = set(w, a, Some(ann), display("Ann"));
        assert_eq!(second.version, 2);
        assert_eq!(second.profile.title, "CTO", "untouched fields stay");
        // Bob reads it (another shard), with his own, in the order asked.
        let got = get(w, b, &[ann, bob, UserId(12345)]);
        assert_eq!(got.len(), 2, "unknown ids are left out");
        assert_eq!(got[0], second);
        assert_eq!((got[1].user, got[1].version), (bob, 0));
        let home = shard_of(ann, 3).0;
        if snapshot_first {
            w.snapshot(home);
        }
        w.crash(home);
        w.restart(home);
        w.ensure_online(b, 1);
        w.settle();
        assert_eq!(get(w, b, &[ann]), vec![second.clone()]);
        // The version keeps growing after the restart.
        w.ensure_online(a, 0);
        assert_eq!(set(w, a, None, display("Ann L.")).version, 3);
    }
}

#[test]
fn an_admin_edits_anyone_a_user_only_themself() {
    let mut n = node(22, 2);
    let (ann, a) = n.user("ann", 0);
    let (bob, b) = n.user("bob", 1);
    let w = &mut n.w;
    let by_admin = set(w, n.admin, Some(bob), display("Robert"));
    assert_eq!((by_admin.user, by_admin.version), (bob, 1));
    let refused = people(
        w,
        a,
        PeopleRequest::SetProfile {
            user: Some(bob),
            update: Box::new(display("Bobby")),
        },
    );
    assert_eq!(refused, Err(Reject::NotAdmin));
    assert_eq!(get(w, b, &[bob])[0].profile.display_name, "Robert");
    // Invalid updates are refused before anything is written.
    let bad = |f: fn(&mut ProfileUpdate)| {
        let mut u = ProfileUpdate::default();
        f(&mut u);
        PeopleRequest::SetProfile {
            user: None,
            update: Box::new(u),
        }
    };
    for (request, what) in [
        (bad(|u| u.display_name = Some("x".repeat(81))), "too large"),
        (bad(|u| u.avatar_url = Some("ftp://x".into())), "invalid"),
        (bad(|u| u.time_zone = Some("Mars Base".into())), "invalid"),
        (bad(|_| {}), "invalid"),
    ] {
        let got = people(w, a, request);
        let kind = match got {
            Err(Reject::TooLarge(_)) => "too large",
            Err(Reject::Invalid(_)) => "invalid",
            _ => "other",
        };
        assert_eq!(kind, what, "{got:?}");
    }
    assert_eq!(get(w, a, &[ann])[0].version, 0);
    // An admin session has no workspace to look in.
    assert!(matches!(
        people(w, n.admin, PeopleRequest::GetUsers { users: vec![ann] }),
        Err(Reject::Invalid(_))
    ));
}

#[test]
fn lookups_stay_inside_the_workspace_and_are_bounded() {
    let mut n = node(23, 3);
    let (ann, a) = n.user("ann", 0);
    let other_ws = n.w.create_workspace(n.admin, "other");
    let (zed, zed_cred) = n.w.create_user(n.admin, other_ws, "zed");
    let z = n.w.user_client(zed, other_ws, zed_cred, 2, false);
    let w = &mut n.w;
    set(w, z, None, display("Zed"));
    assert!(get(w, a, &[zed]).is_empty(), "another workspace's user");
    assert!(get(w, z, &[ann]).is_empty());
    let by_handle = |w: &mut World, c, h: &str| {
        people(w, c, PeopleRequest::GetUserByHandle { handle: h.into() })
    };
    assert_eq!(users(by_handle(w, a, "ann"))[0].user, ann);
    assert_eq!(by_handle(w, a, "zed"), Err(Reject::NotFound));
    assert_eq!(users(by_handle(w, z, "zed"))[0].profile.display_name, "Zed");
    let too_many: Vec<UserId> = (0..=GET_USERS_MAX as u64).map(UserId).collect();
    assert!(matches!(
        people(w, a, PeopleRequest::GetUsers { users: too_many }),
        Err(Reject::TooLarge(_))
    ));
    // Duplicates are answered once.
    assert_eq!(get(w, a, &[ann, ann, ann]).len(), 1);
}

#[test]
fn the_directory_is_sorted_searchable_paged_and_survives_restarts() {
    let mut n = node(24, 3);
    let (_, a) = n.user("ann", 0);
    let (_, b) = n.user("bob", 1);
    let (_, _c) = n.user("carl", 2);
    let (_, d) = n.user("dora", 0);
    let w = &mut n.w;
    set(w, b, None, display("Aaron B"));
    set(w, d, None, display("Zoe"));
    w.settle();
    // Sort keys: "aaron b" (bob), "ann", "carl", "zoe" (dora).
    assert_eq!(
        directory(w, a, "", 10),
        vec![vec!["bob", "ann", "carl", "dora"]]
    );
    assert_eq!(
        directory(w, a, "", 3),
        vec![vec!["bob", "ann", "carl"], vec!["dora"]]
    );
    // "a" matches ann (handle), bob (display name "Aaron B"); "z" dora.
    assert_eq!(directory(w, a, "A", 1), vec![vec!["bob"], vec!["ann"]]);
    assert_eq!(directory(w, a, "zo", 10), vec![vec!["dora"]]);
    assert_eq!(directory(w, a, "do", 10), vec![vec!["dora"]]);
    assert!(matches!(
        people(
            w,
            a,
            PeopleRequest::Directory {
                prefix: String::new(),
                after: None,
                limit: DIRECTORY_PAGE_MAX + 1
            }
        ),
        Err(Reject::TooLarge(_))
    ));
    // The workspace shard restarts with and without a snapshot; the
    // directory (display names included) comes back.
    let ws_shard = shard_of(n.ws, 3).0;
    for snapshot_first in [true, false] {
        if snapshot_first {
            w.snapshot(ws_shard);
        }
        w.crash(ws_shard);
        w.restart(ws_shard);
        w.settle();
        w.ensure_online(a, 0);
        assert_eq!(
            directory(w, a, "", 10),
            vec![vec!["bob", "ann", "carl", "dora"]]
        );
    }
    // A rename moves the entry.
    w.ensure_online(d, 0);
    set(w, d, None, display("Abe"));
    w.settle();
    assert_eq!(
        directory(w, a, "", 10),
        vec![vec!["bob", "dora", "ann", "carl"]]
    );
}

#[test]
fn member_lists_are_paged_by_id_and_need_read_access() {
    let mut n = node(25, 3);
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for (i, name) in ["ann", "bob", "carl", "dora", "eve"].iter().enumerate() {
        let (u, c) = n.user(name, (i % 3) as u16);
        ids.push(u);
        clients.push(c);
    }
    let w = &mut n.w;
    let a = clients[0];
    let public = w.create_channel(a, "general", false);
    let private = w.create_channel(a, "secret", true);
    for (i, c) in clients.iter().enumerate().skip(1) {
        let join = Request::Join {
            conversation: public,
        };
        assert!(w.call(*c, join).is_ok(), "join {i}");
    }
    let list = |w: &mut World, c, conv, after, limit| {
        people(
            w,
            c,
            PeopleRequest::ListMembers {
                conversation: conv,
                after,
                limit,
            },
        )
    };
    let mut sorted = ids.clone();
    sorted.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        match list(w, clients[4], public, after, 2) {
            Ok(PeopleResponse::Members {
                members,
                total,
                next,
                ..
            }) => {
                assert_eq!(total, 5);
                assert!(members.len() <= 2);
                seen.extend(members);
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            other => panic!("members: {other:?}"),
        }
    }
    assert_eq!(seen, sorted, "every member once, by id");
    // A private channel's members are hidden from non-members (not found).
    assert_eq!(
        list(w, clients[1], private, None, 10),
        Err(Reject::NotFound)
    );
    match list(w, a, private, None, 10) {
        Ok(PeopleResponse::Members { members, total, .. }) => {
            assert_eq!((members, total), (vec![ids[0]], 1));
        }
        other => panic!("members: {other:?}"),
    }
    assert!(matches!(
        list(w, a, public, None, MEMBERS_PAGE_MAX + 1),
        Err(Reject::TooLarge(_))
    ));
}

#[test]
fn an_expired_status_reads_empty() {
    let mut n = node(26, 2);
    let (ann, a) = n.user("ann", 0);
    let w = &mut n.w;
    let now = w.now;
    let update = ProfileUpdate {
        status: Some(Status {
            emoji: ":lunch:".into(),
            text: "back soon".into(),
            expires: Some(Millis(now + 1_000)),
        }),
        ..ProfileUpdate::default()
    };
    assert_eq!(set(w, a, None, update).profile.status.text, "back soon");
    for _ in 0..20 {
        w.tick();
        w.settle();
    }
    let got = get(w, a, &[ann]);
    assert!(got[0].profile.status.is_empty(), "{got:?}");
    assert_eq!(got[0].version, 1, "expiry writes nothing");
}

#[test]
fn public_channels_are_browsed_by_name_past_any_list_limit() {
    let mut n = node(27, 3);
    let (_, a) = n.user("ann", 0);
    let (_, b) = n.user("bob", 1);
    let w = &mut n.w;
    for name in ["zulu", "alpha", "mike", "bravo", "echo"] {
        w.create_channel(a, name, false);
    }
    w.create_channel(a, "secret", true);
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        match people(w, b, PeopleRequest::BrowseChannels { after, limit: 2 }) {
            Ok(PeopleResponse::Channels { channels, next }) => {
                pages.push(channels.into_iter().map(|(_, n)| n).collect::<Vec<_>>());
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            other => panic!("browse: {other:?}"),
        }
    }
    assert_eq!(
        pages,
        vec![vec!["alpha", "bravo"], vec!["echo", "mike"], vec!["zulu"]],
        "public only, by name"
    );
    assert!(matches!(
        people(
            w,
            b,
            PeopleRequest::BrowseChannels {
                after: None,
                limit: 0
            }
        ),
        Err(Reject::Invalid(_))
    ));
}
