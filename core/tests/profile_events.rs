//! Profile events (issue 16, part 5) through the whole node (state shards,
//! an edge, fake WAL, fake network): a durable profile change reaches every
//! connected session of the user's workspace once, on every shard and the
//! edge, and no session of another workspace; across crashes of a
//! connection shard and of the user's home shard no client is told of a
//! version the server does not hold, and every device connected throughout
//! hears of every version that survived (a recovering home shard announces
//! replayed changes again).

mod support;

use courier_core::api::{
    Credential, Event, PeopleRequest, PeopleResponse, ProfileUpdate, Request, Response, UserId,
    WorkspaceId,
};
use courier_core::ids::shard_of;

use support::{Chaos, Down, World};

const SHARDS: u16 = 3;
/// The edge's address (after the state shards).
const EDGE: u16 = SHARDS;

fn display(name: &str) -> Request {
    Request::People(PeopleRequest::SetProfile {
        user: None,
        update: Box::new(ProfileUpdate {
            display_name: Some(name.into()),
            ..ProfileUpdate::default()
        }),
    })
}

/// The versions of `user`'s profile events client `c` received.
fn events_of(w: &World, c: usize, user: UserId) -> Vec<u64> {
    w.clients[c]
        .inbox
        .iter()
        .filter_map(|d| match d {
            Down::Event(e) => match e.as_ref() {
                Event::ProfileChanged { user: u, version } if *u == user => Some(*version),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `user`'s profile version as client `c` reads it.
fn version(w: &mut World, c: usize, user: UserId) -> u64 {
    let got = w.call(
        c,
        Request::People(PeopleRequest::GetUsers { users: vec![user] }),
    );
    match got {
        Ok(Response::People(PeopleResponse::Users(u))) if u.len() == 1 => u[0].version,
        other => panic!("get users: {other:?}"),
    }
}

struct Setup {
    w: World,
    ann: UserId,
    ann_cred: Credential,
    /// Ann's own device (on her home shard).
    a: usize,
    /// Bob's devices: one on each state shard and one on the edge.
    bobs: Vec<usize>,
    /// Carol, of another workspace, on every address too.
    carols: Vec<usize>,
}

fn user(w: &mut World, admin: usize, ws: WorkspaceId, name: &str) -> (UserId, Credential) {
    w.create_user(admin, ws, name)
}

fn setup(seed: u64) -> Setup {
    let mut w = World::with_edges(seed, SHARDS, 1);
    let admin = w.admin(0);
    let acme = w.create_workspace(admin, "acme");
    let beta = w.create_workspace(admin, "beta");
    let (ann, ann_cred) = user(&mut w, admin, acme, "ann");
    let (bob, bob_cred) = user(&mut w, admin, acme, "bob");
    let (carol, carol_cred) = user(&mut w, admin, beta, "carol");
    let home = shard_of(ann, SHARDS).0;
    let a = w.user_client(ann, acme, ann_cred.clone(), home, false);
    let mut bobs = Vec::new();
    let mut carols = Vec::new();
    for s in 0..=EDGE {
        bobs.push(w.user_client(bob, acme, bob_cred.clone(), s, false));
        carols.push(w.user_client(carol, beta, carol_cred.clone(), s, false));
    }
    Setup {
        w,
        ann,
        ann_cred,
        a,
        bobs,
        carols,
    }
}

#[test]
fn a_profile_change_reaches_every_session_of_the_workspace_once() {
    let Setup {
        mut w,
        ann,
        a,
        bobs,
        carols,
        ..
    } = setup(51);
    assert!(w.call(a, display("Ann Lee")).is_ok());
    w.settle();
    assert_eq!(events_of(&w, a, ann), vec![1], "ann's own device");
    for (s, b) in bobs.iter().enumerate() {
        assert_eq!(events_of(&w, *b, ann), vec![1], "bob's device on {s}");
    }
    for (s, c) in carols.iter().enumerate() {
        assert_eq!(events_of(&w, *c, ann), Vec::<u64>::new(), "carol on {s}");
    }
    // A second change: the next version, once each.
    assert!(w.call(a, display("Ann")).is_ok());
    w.settle();
    for b in &bobs {
        assert_eq!(events_of(&w, *b, ann), vec![1, 2]);
    }
    // A closed session hears nothing more (it left the index).
    w.disconnect(bobs[0]);
    assert!(w.call(a, display("A. Lee")).is_ok());
    w.settle();
    assert_eq!(events_of(&w, bobs[1], ann), vec![1, 2, 3]);
}

/// One run of the crash scenario; returns how many rounds hit the window
/// where a change survived the home shard's crash (its unsynced record was
/// kept) although its events never left before it.
fn crash_rounds(seed: u64) -> u32 {
    let Setup {
        mut w,
        ann,
        ann_cred,
        a,
        bobs,
        ..
    } = setup(seed);
    let home = shard_of(ann, SHARDS).0;
    let other = (0..SHARDS).find(|s| *s != home).expect("three shards");
    let edge_bob = bobs[usize::from(EDGE)];
    let mut expected = 0;
    let mut windows = 0;
    // 1. A connection shard crashes while the change travels; 2. the
    // user's home shard does, before or after the record is durable (the
    // disk may keep unsynced records).
    for (round, crash) in [other, home, home, home].into_iter().enumerate() {
        w.ensure_online(a, home);
        w.request(a, display(&format!("Ann {round}")), support::Pend::Other)
            .expect("connected");
        for _ in 0..(1 + round + (seed as usize % 3)) {
            w.step_once(Chaos {
                clients_act: false,
                crashes: false,
            });
        }
        w.storage_faults = true;
        w.crash(crash);
        w.storage_faults = false;
        let heard_before = events_of(&w, edge_bob, ann).contains(&(expected + 1));
        w.restart(crash);
        for _ in 0..20 {
            w.tick();
            w.settle();
        }
        for (s, b) in bobs.iter().enumerate() {
            w.ensure_online(*b, s as u16);
        }
        let held = version(&mut w, edge_bob, ann);
        assert!(held == expected || held == expected + 1, "round {round}");
        if held > expected && !heard_before {
            windows += 1;
        }
        for (s, b) in bobs.iter().enumerate() {
            let got = events_of(&w, *b, ann);
            // In order, never ahead of what the server holds (a home
            // shard's recovery may announce its newest version again).
            assert!(got.windows(2).all(|p| p[0] <= p[1]), "device {s}: {got:?}");
            assert!(
                got.iter().all(|v| *v <= held),
                "device {s}: told of {got:?}, server holds {held}"
            );
            // A device connected throughout (not on the crashed shard)
            // heard of every change that survived.
            if s as u16 != crash && held > 0 {
                assert_eq!(got.last(), Some(&held), "device {s} missed {held}");
            }
        }
        expected = held;
    }
    // After the crashes a change reaches everyone again, exactly once.
    let ws = w.users[0].0;
    let a2 = w.user_client(ann, ws, ann_cred, 0, false);
    assert!(w.call(a2, display("Ann again")).is_ok());
    w.settle();
    for b in &bobs {
        let got = events_of(&w, *b, ann);
        assert_eq!(got.last(), Some(&(expected + 1)));
        assert_eq!(got.iter().filter(|v| **v == expected + 1).count(), 1);
    }
    windows
}

#[test]
fn crashes_never_announce_a_version_the_server_lacks_nor_lose_one() {
    let windows: u32 = (60..80).map(crash_rounds).sum();
    assert!(windows > 0, "no run kept a change its events had not left");
}
