//! Channel settings (issue 16, part 4) through the whole node (shards, fake
//! WAL, fake network): who may change what (the authorization rows),
//! settings as sequenced events that history, live delivery and infos show
//! and unread counts skip, archived channels read-only but readable,
//! admins-only posting, renames that move the name claim between shards,
//! and all of it across crashes and snapshots.

mod support;

use courier_core::api::{
    Broadcast, ChangeKind, ChannelSettings, ConversationId, ConversationInfo, Event, HistoryAnchor,
    LookupKind, Message, Posting, Reject, Request, Response, Role, Seq,
};

use support::{ScriptedNode as Node, World};

const SHARDS: u16 = 3;

fn node(seed: u64) -> Node {
    support::scripted_node(seed, SHARDS)
}

fn send(w: &mut World, c: usize, conversation: ConversationId, body: &str) -> Result<Seq, Reject> {
    let request = Request::Send {
        conversation,
        client_msg_id: u128::from(w.clients[c].next_req) << 64 | 7,
        body: body.into(),
        mentions: vec![],
        broadcast: Broadcast::None,
    };
    match w.call(c, request)? {
        Response::SendAck { seq, .. } => Ok(seq),
        other => panic!("send: {other:?}"),
    }
}

/// A setting; `Ok(Some(seq))` when sequenced, `Ok(None)` for `Done`.
fn set(
    w: &mut World,
    c: usize,
    conversation: ConversationId,
    kind: ChangeKind,
    text: &str,
) -> Result<Option<Seq>, Reject> {
    let request = Request::SetChannel {
        conversation,
        kind,
        text: text.into(),
    };
    match w.call(c, request)? {
        Response::SendAck { seq, .. } => Ok(Some(seq)),
        Response::Done => Ok(None),
        other => panic!("set: {other:?}"),
    }
}

fn page(w: &mut World, c: usize, conversation: ConversationId) -> Result<Vec<Message>, Reject> {
    let request = Request::History {
        conversation,
        anchor: HistoryAnchor::Latest,
        limit: 50,
    };
    match w.call(c, request)? {
        Response::History { messages, .. } => Ok(messages),
        other => panic!("history: {other:?}"),
    }
}

/// The settings events of a page as (seq, kind, value).
fn settings_events(messages: &[Message]) -> Vec<(u64, ChangeKind, String)> {
    messages
        .iter()
        .filter_map(|m| {
            let c = m.change.filter(|c| c.kind.is_setting())?;
            assert_eq!(c.target, Seq(0), "a setting targets no message");
            Some((m.seq.0, c.kind, m.body.clone()))
        })
        .collect()
}

/// `c`'s info of `conversation` from `ListConversations`.
fn info(w: &mut World, c: usize, conversation: ConversationId) -> ConversationInfo {
    match w.call(c, Request::ListConversations) {
        Ok(Response::Conversations(list)) => list
            .into_iter()
            .find(|i| i.id == conversation)
            .expect("listed"),
        other => panic!("list: {other:?}"),
    }
}

fn lookup(w: &mut World, c: usize, name: &str) -> Result<u64, Reject> {
    let request = Request::Lookup {
        name: name.into(),
        kind: LookupKind::Channel,
    };
    match w.call(c, request)? {
        Response::Found { id } => Ok(id),
        other => panic!("lookup: {other:?}"),
    }
}

fn forbidden<T>(r: &Result<T, Reject>) -> bool {
    matches!(r, Err(Reject::Forbidden(_)))
}

/// The authorization rows of every setting: (who) × (kind). Members set
/// topic and purpose; the creator and workspace admins rename, archive and
/// unarchive; only admins change who may post; guests nothing; a
/// non-member gets `NotFound` as for a channel that does not exist; DMs
/// have no settings.
#[test]
fn who_may_change_which_setting() {
    use ChangeKind::*;
    let mut n = node(11);
    let (_cat, creator, _) = n.user("cat", Role::Member, 0);
    let (mia, member, _) = n.user("mia", Role::Member, 1);
    let (ada, admin, _) = n.user("ada", Role::Admin, 2);
    let (gus, guest, _) = n.user("gus", Role::Guest, 0);
    let (_out, outsider, _) = n.user("out", Role::Member, 1);
    let conv = n.channel(creator, "plans", true, &[mia, ada, gus]);
    // (client, kind, value) → allowed? (each allowed change is undone
    // right after, so every row starts from the defaults).
    let undo = |k: ChangeKind| match k {
        Topic | Purpose => (k, ""),
        Rename => (Rename, "plans"),
        Archive => (Unarchive, ""),
        Unarchive => (Archive, ""),
        PostingAdmins => (PostingEveryone, ""),
        _ => (PostingAdmins, ""),
    };
    let kinds = [
        (Topic, "q3"),
        (Purpose, "roadmap"),
        (Rename, "plans-2"),
        (Archive, ""),
        (PostingAdmins, ""),
    ];
    let who = [
        ("creator", creator, [true, true, true, true, false]),
        ("member", member, [true, true, false, false, false]),
        ("admin", admin, [true, true, true, true, true]),
        ("guest", guest, [false, false, false, false, false]),
    ];
    let mut rows = 0;
    for (name, c, allowed) in who {
        for ((kind, value), ok) in kinds.iter().zip(allowed) {
            let got = set(&mut n.w, c, conv, *kind, value);
            rows += 1;
            if ok {
                assert!(matches!(got, Ok(Some(_))), "{name} {kind:?}: {got:?}");
                let (back, v) = undo(*kind);
                assert!(set(&mut n.w, admin, conv, back, v).is_ok(), "undo {kind:?}");
            } else {
                assert!(forbidden(&got), "{name} {kind:?}: {got:?}");
            }
            // A non-member cannot tell the channel from nothing.
            let stranger = set(&mut n.w, outsider, conv, *kind, value);
            assert_eq!(stranger, Err(Reject::NotFound), "outsider {kind:?}");
            let none = set(&mut n.w, c, ConversationId(conv.0 ^ 1 << 40), *kind, value);
            assert_eq!(none, Err(Reject::NotFound), "nonexistent {kind:?}");
        }
    }
    assert_eq!(rows, 20);
    // Unarchive: the creator and admins; an archived channel refuses
    // every other setting with `Archived`, to everyone.
    assert!(set(&mut n.w, creator, conv, Archive, "")
        .expect("archive")
        .is_some());
    assert_eq!(
        set(&mut n.w, admin, conv, Topic, "x"),
        Err(Reject::Archived)
    );
    assert!(forbidden(&set(&mut n.w, member, conv, Unarchive, "")));
    assert!(set(&mut n.w, creator, conv, Unarchive, "")
        .expect("unarchive")
        .is_some());
    // DMs have no settings; bad values are refused before the owner.
    let dm = match n.w.call(member, Request::OpenDm { users: vec![ada] }) {
        Ok(Response::Conversation(i)) => i.id,
        other => panic!("dm: {other:?}"),
    };
    assert!(matches!(
        set(&mut n.w, member, dm, Topic, "x"),
        Err(Reject::Invalid(_))
    ));
    let long = "t".repeat(251);
    assert!(matches!(
        set(&mut n.w, member, conv, Topic, &long),
        Err(Reject::TooLarge(_))
    ));
    assert!(matches!(
        set(&mut n.w, admin, conv, Rename, "Bad Name"),
        Err(Reject::Invalid(_))
    ));
    assert!(matches!(
        set(&mut n.w, admin, conv, Archive, "why"),
        Err(Reject::Invalid(_))
    ));
    assert!(matches!(
        set(&mut n.w, admin, conv, Edit, "x"),
        Err(Reject::Invalid(_))
    ));
    // The same value again is `Done` and sequences nothing.
    set(&mut n.w, member, conv, Topic, "same").expect("topic");
    assert_eq!(set(&mut n.w, member, conv, Topic, "same"), Ok(None));
}

/// A setting is an event in the channel's sequence: history and live
/// delivery show it in order, unread counts skip it, infos carry the
/// current settings, and all of it survives a crash of the owner (replay)
/// and a snapshot restore.
#[test]
fn settings_are_sequenced_events_that_survive_crashes() {
    use ChangeKind::*;
    let mut n = node(12);
    let (_ann, a, _) = n.user("ann", Role::Admin, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let conv = n.channel(a, "launch", false, &[bob]);
    let w = &mut n.w;
    let m1 = send(w, a, conv, "hello").expect("send");
    let t = set(w, a, conv, Topic, "ship it")
        .expect("topic")
        .expect("seq");
    let p = set(w, a, conv, Purpose, "launch talk")
        .expect("purpose")
        .expect("seq");
    let m2 = send(w, a, conv, "second").expect("send");
    let q = set(w, a, conv, PostingAdmins, "")
        .expect("posting")
        .expect("seq");
    assert_eq!((m1, t, p, m2, q), (Seq(1), Seq(2), Seq(3), Seq(4), Seq(5)));
    let want = vec![
        (2, Topic, "ship it".to_owned()),
        (3, Purpose, "launch talk".to_owned()),
        (5, PostingAdmins, String::new()),
    ];
    assert_eq!(settings_events(&page(w, b, conv).expect("history")), want);
    // Bob's device saw them live, in order, with everything else.
    let live: Vec<(u64, Option<ChangeKind>)> = w.clients[b]
        .events()
        .iter()
        .filter_map(|e| match e.as_ref() {
            Event::Message(m) if m.conversation == conv => {
                Some((m.seq.0, m.change.map(|c| c.kind)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        live,
        vec![
            (1, None),
            (2, Some(Topic)),
            (3, Some(Purpose)),
            (4, None),
            (5, Some(PostingAdmins))
        ]
    );
    let expected = ChannelSettings {
        topic: "ship it".into(),
        purpose: "launch talk".into(),
        archived: false,
        posting: Posting::Admins,
    };
    let i = info(w, b, conv);
    assert_eq!((i.head, i.unread, &*i.settings), (Seq(5), 2, &expected));
    // Across a crash of the owner (replay), then a snapshot and a crash.
    let owner = courier_core::ids::shard_of(conv, SHARDS).0;
    for snapshot in [false, true] {
        if snapshot {
            w.snapshot(owner);
        }
        w.crash(owner);
        w.restart(owner);
        w.settle();
        w.ensure_online(b, 1);
        let i = info(w, b, conv);
        assert_eq!(*i.settings, expected, "snapshot {snapshot}");
        assert_eq!(i.unread, 2, "snapshot {snapshot}");
        assert!(forbidden(&send(w, b, conv, "may I?")), "still admins only");
        let events = settings_events(&page(w, b, conv).expect("history"));
        assert_eq!(events, want, "snapshot {snapshot}");
    }
}

/// Archived: posts, edits, reactions and settings are refused with the
/// typed `Archived`; members still read history; unarchiving restores
/// writing. Admins-only: members may not post, admins may.
#[test]
fn archived_is_read_only_and_admins_only_refuses_members() {
    use ChangeKind::*;
    let mut n = node(13);
    let (_ann, a, _) = n.user("ann", Role::Admin, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let conv = n.channel(a, "old-news", false, &[bob]);
    let w = &mut n.w;
    let m1 = send(w, b, conv, "from bob").expect("send");
    set(w, a, conv, Archive, "").expect("archive");
    assert_eq!(send(w, b, conv, "late"), Err(Reject::Archived));
    assert_eq!(send(w, a, conv, "admin late"), Err(Reject::Archived));
    for (kind, text) in [(Edit, "edited"), (React, "wave"), (Delete, "")] {
        let change = Request::Change {
            conversation: conv,
            target: m1,
            kind,
            text: text.into(),
        };
        assert_eq!(w.call(b, change), Err(Reject::Archived), "{kind:?}");
    }
    assert_eq!(set(w, a, conv, Topic, "t"), Err(Reject::Archived));
    let history = page(w, b, conv).expect("archived channels stay readable");
    assert_eq!(history.len(), 2);
    assert!(info(w, b, conv).settings.archived);
    set(w, a, conv, Unarchive, "").expect("unarchive");
    send(w, b, conv, "back").expect("writable again");
    // Admins only.
    set(w, a, conv, PostingAdmins, "").expect("admins only");
    assert!(forbidden(&send(w, b, conv, "members may not")));
    send(w, a, conv, "announcement").expect("admins may");
    assert!(forbidden(&set(w, b, conv, Topic, "members may not either")));
    set(w, a, conv, PostingEveryone, "").expect("everyone");
    send(w, b, conv, "members again").expect("send");
}

/// A rename moves the name claim: the new name resolves, the old one is
/// free for another channel, a taken name is `AlreadyExists`; the claim
/// and the rename survive crashes of the workspace shard and the owner
/// at any point (retried until confirmed), ending with exactly one name.
#[test]
fn rename_moves_the_name_claim_across_crashes() {
    use ChangeKind::*;
    let mut n = node(14);
    let (_ann, a, _) = n.user("ann", Role::Admin, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let conv = n.channel(a, "alpha", false, &[bob]);
    let other = n.channel(a, "beta", false, &[]);
    let w = &mut n.w;
    assert_eq!(set(w, a, conv, Rename, "beta"), Err(Reject::AlreadyExists));
    assert_eq!(
        set(w, a, conv, Rename, "alpha"),
        Ok(None),
        "same name: Done"
    );
    set(w, a, conv, Rename, "gamma").expect("rename");
    assert_eq!(lookup(w, b, "gamma"), Ok(conv.0));
    assert_eq!(lookup(w, b, "alpha"), Err(Reject::NotFound));
    assert_eq!(info(w, b, conv).name, "gamma");
    // The old name is free again.
    let again = n.w.create_channel(a, "alpha", false);
    assert_ne!(again, conv);
    let w = &mut n.w;
    let _ = other;
    // Crashes: the workspace shard and the owner, before the rename's
    // records are durable, then retried by the claim.
    let ws_shard = courier_core::ids::shard_of(n.ws, SHARDS).0;
    let owner = courier_core::ids::shard_of(conv, SHARDS).0;
    for (i, crash) in [ws_shard, owner].into_iter().enumerate() {
        let name = format!("delta-{i}");
        let req = w
            .request(
                a,
                Request::SetChannel {
                    conversation: conv,
                    kind: Rename,
                    text: name.clone(),
                },
                support::Pend::Other,
            )
            .expect("connected");
        // Let the request reach the shards, then crash one of them.
        for _ in 0..3 {
            w.step_once(support::Chaos {
                clients_act: false,
                crashes: false,
            });
        }
        w.crash(crash);
        w.restart(crash);
        for _ in 0..50 {
            w.tick();
            w.settle();
        }
        let _ = req;
        w.ensure_online(a, 0);
        w.ensure_online(b, 1);
        let current = info(w, b, conv).name;
        // Either the rename happened (and the name resolves to it) or it
        // did not (and the name is free): never half.
        match lookup(w, b, &name) {
            Ok(id) => {
                assert_eq!((id, current.as_str()), (conv.0, name.as_str()));
            }
            Err(Reject::NotFound) => {
                assert_ne!(current, name);
                set(w, a, conv, Rename, &name).expect("rename after the crash");
                assert_eq!(lookup(w, b, &name), Ok(conv.0));
            }
            other => panic!("lookup {name}: {other:?}"),
        }
        let before = if i == 0 {
            "gamma".to_owned()
        } else {
            "delta-0".to_owned()
        };
        assert_eq!(
            lookup(w, b, &before),
            Err(Reject::NotFound),
            "old name freed"
        );
    }
    // A snapshot of the workspace shard keeps the directory.
    w.snapshot(ws_shard);
    w.crash(ws_shard);
    w.restart(ws_shard);
    w.settle();
    w.ensure_online(b, 1);
    assert_eq!(lookup(w, b, "delta-1"), Ok(conv.0));
    let renames = settings_events(&page(w, b, conv).expect("history"))
        .into_iter()
        .filter(|e| e.1 == Rename)
        .count();
    assert_eq!(renames, 3, "one event per rename");
}
