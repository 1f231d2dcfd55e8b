//! Messages that live (issue 17) through the whole node (shards, fake WAL,
//! fake network): who may edit, delete and react (the authorization rows),
//! history and sync in the current state with no deleted body anywhere,
//! unread counts that count messages only, an offline device catching up
//! on changes of messages it holds, and all of it across a crash.

mod support;

use courier_core::api::{
    Broadcast, ChangeKind, ConversationId, HistoryAnchor, Message, Reject, Request, Response, Role,
    Seq,
};

use support::{ScriptedNode as Node, World};

const SHARDS: u16 = 3;

fn node(seed: u64) -> Node {
    support::scripted_node(seed, SHARDS)
}

fn send(w: &mut World, c: usize, conversation: ConversationId, body: &str) -> Seq {
    let request = Request::Send {
        conversation,
        client_msg_id: u128::from(w.clients[c].next_req) << 64 | 9,
        body: body.into(),
        mentions: vec![],
        broadcast: Broadcast::None,
    };
    match w.call(c, request) {
        Ok(Response::SendAck { seq, .. }) => seq,
        other => panic!("send: {other:?}"),
    }
}

/// A change; `Ok(Some(seq))` when sequenced, `Ok(None)` for `Done`.
fn change(
    w: &mut World,
    c: usize,
    conversation: ConversationId,
    target: Seq,
    kind: ChangeKind,
    text: &str,
) -> Result<Option<Seq>, Reject> {
    let request = Request::Change {
        conversation,
        target,
        kind,
        text: text.into(),
    };
    match w.call(c, request)? {
        Response::SendAck { seq, .. } => Ok(Some(seq)),
        Response::Done => Ok(None),
        other => panic!("change: {other:?}"),
    }
}

fn page(w: &mut World, c: usize, conversation: ConversationId) -> Vec<Message> {
    let request = Request::History {
        conversation,
        anchor: HistoryAnchor::Latest,
        limit: 50,
    };
    match w.call(c, request) {
        Ok(Response::History { messages, .. }) => messages,
        other => panic!("history: {other:?}"),
    }
}

/// (seq, body, edited, deleted, reactions as "emoji:count") of the
/// messages (not changes) of a page.
fn view(messages: &[Message]) -> Vec<(u64, String, bool, bool, Vec<String>)> {
    messages
        .iter()
        .filter(|m| m.change.is_none())
        .map(|m| {
            let reactions = m
                .live
                .reactions
                .iter()
                .map(|r| format!("{}:{}", r.emoji, r.users.len()))
                .collect();
            (
                m.seq.0,
                m.body.clone(),
                m.live.edited.is_some(),
                m.live.deleted,
                reactions,
            )
        })
        .collect()
}

/// The authorization rows: the author edits and deletes; a member who is
/// not the author is refused (`Forbidden`: they can see the message); a
/// workspace admin may; a non-member of a private channel gets `NotFound`
/// as for a channel that does not exist; anyone in it reacts, once per
/// emoji.
#[test]
fn who_may_edit_delete_and_react() {
    let mut n = node(1);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let (dan, d, _) = n.user("dan", Role::Admin, 2);
    let (_eve, e, _) = n.user("eve", Role::Member, 2);
    let conv = n.channel(a, "design", true, &[bob, dan]);
    let m1 = send(&mut n.w, a, conv, "first");
    let m2 = send(&mut n.w, a, conv, "second");
    let forbidden = |r: Result<Option<Seq>, Reject>| matches!(r, Err(Reject::Forbidden(_)));
    let w = &mut n.w;
    // (who, target, kind) → outcome
    assert!(forbidden(change(
        w,
        b,
        conv,
        m1,
        ChangeKind::Edit,
        "bob was here"
    )));
    assert!(forbidden(change(w, b, conv, m1, ChangeKind::Delete, "")));
    assert_eq!(
        change(w, e, conv, m1, ChangeKind::Edit, "x"),
        Err(Reject::NotFound)
    );
    assert_eq!(
        change(w, e, conv, m1, ChangeKind::Delete, ""),
        Err(Reject::NotFound)
    );
    assert_eq!(
        change(w, e, conv, m1, ChangeKind::React, "+1"),
        Err(Reject::NotFound)
    );
    assert_eq!(
        change(w, e, ConversationId(987_654), m1, ChangeKind::Delete, ""),
        Err(Reject::NotFound),
        "a conversation that does not exist answers the same"
    );
    assert!(change(w, a, conv, m1, ChangeKind::Edit, "first, fixed")
        .expect("allowed")
        .is_some());
    assert!(
        change(w, d, conv, m2, ChangeKind::Delete, "")
            .expect("allowed")
            .is_some(),
        "admin deletes"
    );
    assert_eq!(
        change(w, a, conv, m2, ChangeKind::Delete, ""),
        Ok(None),
        "deleting again: Done"
    );
    assert_eq!(
        change(w, a, conv, m2, ChangeKind::Edit, "back"),
        Err(Reject::NotFound)
    );
    assert!(change(w, b, conv, m1, ChangeKind::React, "+1")
        .expect("allowed")
        .is_some());
    assert_eq!(
        change(w, b, conv, m1, ChangeKind::React, "+1"),
        Ok(None),
        "once per user"
    );
    assert!(change(w, d, conv, m1, ChangeKind::React, "+1")
        .expect("allowed")
        .is_some());
    assert_eq!(
        change(w, b, conv, m1, ChangeKind::Unreact, "eyes"),
        Ok(None)
    );
    assert!(matches!(
        change(w, b, conv, m1, ChangeKind::React, "two words"),
        Err(Reject::Invalid(_))
    ));
    let edit_seq = Seq(m2.0 + 1);
    assert!(
        matches!(
            change(w, a, conv, edit_seq, ChangeKind::React, "+1"),
            Err(Reject::Invalid(_))
        ),
        "a change is not a message"
    );
    assert_eq!(
        change(w, a, conv, Seq(99), ChangeKind::React, "+1"),
        Err(Reject::NotFound)
    );
    let got = view(&page(w, b, conv));
    assert_eq!(
        got,
        vec![
            (1, "first, fixed".into(), true, false, vec!["+1:2".into()]),
            (2, String::new(), false, true, vec![]),
        ]
    );
}

/// History and sync serve the current state; the deleted body is in no
/// page, no sync and no preview, and neither is the text of an edit of
/// it; unread and DM mention counts count messages only; a device that
/// was offline during the changes gets them in its sync, applies them to
/// the messages it holds and ends where the owner is — also after the
/// owner shard crashed and restarted from its log.
#[test]
fn current_state_everywhere_and_offline_catch_up_across_a_crash() {
    let mut n = node(2);
    let (ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let dm = match n.w.call(a, Request::OpenDm { users: vec![bob] }) {
        Ok(Response::Conversation(info)) => info.id,
        other => panic!("open dm: {other:?}"),
    };
    let m1 = send(&mut n.w, a, dm, "hello");
    let m2 = send(&mut n.w, a, dm, "the password is hunter2");
    // Bob's device holds both, then goes offline.
    let held = page(&mut n.w, b, dm);
    assert_eq!(held.len(), 2);
    n.w.disconnect(b);
    let w = &mut n.w;
    change(w, a, dm, m2, ChangeKind::Edit, "the password is hunter3").expect("edit");
    change(w, a, dm, m2, ChangeKind::Delete, "").expect("delete");
    change(w, a, dm, m1, ChangeKind::React, "wave").expect("react");
    let owner = courier_core::ids::shard_of(dm, SHARDS).0;
    w.crash(owner);
    w.restart(owner);
    w.settle();
    let secret = |m: &Message| m.body.contains("hunter");
    let current = page(w, a, dm);
    assert!(
        !current.iter().any(secret),
        "history after the crash: {current:?}"
    );
    assert_eq!(
        view(&current),
        vec![
            (1, "hello".into(), false, false, vec!["wave:1".into()]),
            (2, String::new(), false, true, vec![]),
        ]
    );
    // Bob's device comes back and syncs from the seq it held.
    w.ensure_online(b, 1);
    let sync = Request::Sync {
        cursors: vec![(dm, Seq(2))],
        reads: vec![],
    };
    let changed = match w.call(b, sync) {
        Ok(Response::Sync { changed, .. }) => changed,
        other => panic!("sync: {other:?}"),
    };
    let entry = changed
        .iter()
        .find(|s| s.info.id == dm)
        .expect("the DM changed");
    assert!(
        !entry.messages.iter().any(secret),
        "sync: {:?}",
        entry.messages
    );
    assert_eq!(
        entry.info.preview, None,
        "the newest message is deleted: no preview (never its body)"
    );
    assert_eq!(
        (entry.info.head, entry.info.unread, entry.info.mentions),
        (Seq(5), 2, 2),
        "unread and DM mentions count the two messages, not the three changes"
    );
    let mut mine: Vec<Message> = held;
    for event in &entry.messages {
        for m in mine.iter_mut() {
            courier_core::live::apply(m, event);
        }
        // Applying twice changes nothing (exactly once).
        for m in mine.iter_mut() {
            assert!(!courier_core::live::apply(m, event));
        }
    }
    assert_eq!(
        view(&mine),
        view(&current),
        "the offline device ends in the owner's state"
    );
    // Ann's own unread after reading nothing since her send: 0 (changes
    // never count).
    let boot = match w.call(
        a,
        Request::Boot {
            limit: 10,
            offset: 0,
        },
    ) {
        Ok(Response::Boot(page)) => page,
        other => panic!("boot: {other:?}"),
    };
    let info = boot
        .conversations
        .iter()
        .find(|i| i.id == dm)
        .expect("dm listed");
    assert_eq!(info.unread, 0, "ann: {info:?}");
    let _ = ann;
}

/// The edit window: past it the author may no longer edit (`Forbidden`
/// naming it), but may still delete, and anyone may still react.
#[test]
fn edits_end_with_the_edit_window_deletes_and_reactions_do_not() {
    let mut n = node(3);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let conv = n.channel(a, "general", false, &[bob]);
    let m1 = send(&mut n.w, a, conv, "typo");
    let m2 = send(&mut n.w, a, conv, "old news");
    let w = &mut n.w;
    assert!(change(w, a, conv, m1, ChangeKind::Edit, "fixed").is_ok_and(|s| s.is_some()));
    w.now += courier_core::constants::EDIT_WINDOW_MS_DEFAULT + 1;
    match change(w, a, conv, m1, ChangeKind::Edit, "too late") {
        Err(Reject::Forbidden(why)) => assert!(why.contains("edit window"), "{why}"),
        other => panic!("an edit past the window: {other:?}"),
    }
    assert!(change(w, b, conv, m1, ChangeKind::React, "+1").is_ok_and(|s| s.is_some()));
    assert!(change(w, a, conv, m2, ChangeKind::Delete, "").is_ok_and(|s| s.is_some()));
    let got = view(&page(w, b, conv));
    assert_eq!(
        got,
        vec![
            (1, "fixed".into(), true, false, vec!["+1:1".into()]),
            (2, String::new(), false, true, vec![]),
        ]
    );
}

/// A delete retracts the message's push: the recipient's home shard queues
/// a `clear` for the delivered push (the text leaves the device's
/// notification list), via one message per home shard of the members.
#[test]
fn a_delete_retracts_a_delivered_push() {
    let mut n = node(4);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let dm = match n.w.call(a, Request::OpenDm { users: vec![bob] }) {
        Ok(Response::Conversation(info)) => info.id,
        other => panic!("open dm: {other:?}"),
    };
    n.w.disconnect(b);
    n.w.settle();
    let m = send(&mut n.w, a, dm, "the password is hunter2");
    n.w.drain_pushes();
    let key = |tag: &str| format!("{tag}-{}-{}-{}", bob.0, dm.0, m.0);
    assert!(
        n.w.gateway.shown.contains(&key("push")),
        "{:?}",
        n.w.gateway.posts
    );
    assert!(!n.w.gateway.shown.contains(&key("clear")));
    change(&mut n.w, a, dm, m, ChangeKind::Delete, "").expect("deleted");
    n.w.drain_pushes();
    assert!(
        n.w.gateway.shown.contains(&key("clear")),
        "the delete retracts the push: {:?}",
        n.w.gateway.posts
    );
}
