//! Pins (issue 17, part 3) through the whole node (shards, fake WAL, fake
//! network): any member pins and unpins, retries change nothing, a
//! non-member gets `NotFound`, a delete unpins, the per-conversation bound,
//! `ListPins` pages, history carries `pinned`, pins are not unread, and
//! all of it across a crash of the owner, with an offline device catching
//! up to the owner's pinned state.

mod support;

use courier_core::api::{
    Broadcast, ChangeKind, ConversationId, HistoryAnchor, Message, Reject, Request, Response, Role,
    Seq,
};
use courier_core::constants::PINS_PER_CONVERSATION_MAX;

use support::World;

const SHARDS: u16 = 3;

fn send(w: &mut World, c: usize, conversation: ConversationId, body: &str) -> Seq {
    let request = Request::Send {
        conversation,
        client_msg_id: u128::from(w.clients[c].next_req) << 64 | 7,
        body: body.into(),
        mentions: vec![],
        broadcast: Broadcast::None,
    };
    match w.call(c, request) {
        Ok(Response::SendAck { seq, .. }) => seq,
        other => panic!("send: {other:?}"),
    }
}

/// A pin (`pin`) or unpin; `Ok(Some(seq))` when sequenced, `Ok(None)` for
/// `Done`.
fn pin(
    w: &mut World,
    c: usize,
    conversation: ConversationId,
    target: Seq,
    kind: ChangeKind,
) -> Result<Option<Seq>, Reject> {
    let request = Request::Change {
        conversation,
        target,
        kind,
        text: String::new(),
    };
    match w.call(c, request)? {
        Response::SendAck { seq, .. } => Ok(Some(seq)),
        Response::Done => Ok(None),
        other => panic!("pin: {other:?}"),
    }
}

/// Every pinned seq by `ListPins` pages of `limit`, newest first.
fn pins(w: &mut World, c: usize, conversation: ConversationId, limit: u32) -> Vec<u64> {
    let mut all = Vec::new();
    let mut before = Seq(0);
    loop {
        let request = Request::ListPins {
            conversation,
            before,
            limit,
        };
        match w.call(c, request) {
            Ok(Response::Pins { pins, next, .. }) => {
                assert!(pins.len() <= limit as usize);
                all.extend(pins.iter().map(|s| s.0));
                if next.0 == 0 {
                    return all;
                }
                before = next;
            }
            other => panic!("list pins: {other:?}"),
        }
    }
}

/// (seq, pinned) of the messages (not changes) of the newest page.
fn pinned_view(w: &mut World, c: usize, conversation: ConversationId) -> Vec<(u64, bool)> {
    let request = Request::History {
        conversation,
        anchor: HistoryAnchor::Latest,
        limit: 50,
    };
    let messages: Vec<Message> = match w.call(c, request) {
        Ok(Response::History { messages, .. }) => messages,
        other => panic!("history: {other:?}"),
    };
    messages
        .iter()
        .filter(|m| m.change.is_none())
        .map(|m| (m.seq.0, m.live.pinned))
        .collect()
}

/// The authorization rows and the rules of one pin: any member (a guest
/// too) pins and unpins; a repeat answers `Done`; a non-member of a
/// private channel gets `NotFound` for pinning and listing alike; a
/// change (not a message) cannot be pinned; a deleted message is unpinned
/// and cannot be pinned again.
#[test]
fn any_member_pins_non_members_do_not() {
    let mut n = support::scripted_node(11, SHARDS);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let (gus, g, _) = n.user("gus", Role::Guest, 2);
    let (_eve, e, _) = n.user("eve", Role::Member, 2);
    let conv = n.channel(a, "design", true, &[bob, gus]);
    let m1 = send(&mut n.w, a, conv, "first");
    let m2 = send(&mut n.w, a, conv, "second");
    let w = &mut n.w;
    let p = pin(w, b, conv, m1, ChangeKind::Pin).expect("bob pins ann's message");
    assert_eq!(p, Some(Seq(3)), "a pin is the next seq");
    assert_eq!(
        pin(w, a, conv, m1, ChangeKind::Pin),
        Ok(None),
        "already pinned"
    );
    assert!(pin(w, g, conv, m2, ChangeKind::Pin)
        .expect("a guest member pins")
        .is_some());
    assert_eq!(
        pin(w, e, conv, m2, ChangeKind::Unpin),
        Err(Reject::NotFound),
        "a non-member cannot unpin"
    );
    assert_eq!(pin(w, e, conv, m1, ChangeKind::Pin), Err(Reject::NotFound));
    let list = Request::ListPins {
        conversation: conv,
        before: Seq(0),
        limit: 10,
    };
    assert_eq!(w.call(e, list), Err(Reject::NotFound), "nor list the pins");
    assert!(matches!(
        pin(w, a, conv, p.unwrap_or(Seq(3)), ChangeKind::Pin),
        Err(Reject::Invalid(_))
    ));
    assert_eq!(pins(w, b, conv, 10), vec![2, 1]);
    assert_eq!(
        pin(w, a, conv, m2, ChangeKind::Unpin).map(|s| s.is_some()),
        Ok(true)
    );
    assert_eq!(
        pin(w, a, conv, m2, ChangeKind::Unpin),
        Ok(None),
        "not pinned"
    );
    // A delete unpins for good.
    let request = Request::Change {
        conversation: conv,
        target: m1,
        kind: ChangeKind::Delete,
        text: String::new(),
    };
    assert!(matches!(w.call(a, request), Ok(Response::SendAck { .. })));
    assert_eq!(pins(w, a, conv, 10), Vec::<u64>::new());
    assert_eq!(pin(w, a, conv, m1, ChangeKind::Pin), Err(Reject::NotFound));
    assert_eq!(pinned_view(w, b, conv), vec![(1, false), (2, false)]);
}

/// At most PINS_PER_CONVERSATION_MAX pinned; unpinning one makes room;
/// `ListPins` pages through all of them, newest message first; pins are
/// not unread.
#[test]
fn pins_are_bounded_paged_and_not_unread() {
    let mut n = support::scripted_node(12, SHARDS);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let conv = n.channel(a, "general", false, &[bob]);
    let w = &mut n.w;
    let count = PINS_PER_CONVERSATION_MAX as u64 + 1;
    let seqs: Vec<Seq> = (0..count)
        .map(|i| send(w, a, conv, &format!("m{i}")))
        .collect();
    for s in &seqs[..PINS_PER_CONVERSATION_MAX] {
        pin(w, a, conv, *s, ChangeKind::Pin).expect("under the bound");
    }
    let last = seqs[PINS_PER_CONVERSATION_MAX];
    assert!(matches!(
        pin(w, a, conv, last, ChangeKind::Pin),
        Err(Reject::TooLarge(why)) if why.contains("PINS_PER_CONVERSATION_MAX")
    ));
    pin(w, a, conv, seqs[0], ChangeKind::Unpin).expect("unpin one");
    pin(w, a, conv, last, ChangeKind::Pin).expect("room again");
    let want: Vec<u64> = seqs[1..].iter().rev().map(|s| s.0).collect();
    assert_eq!(pins(w, b, conv, 7), want, "pages of 7");
    assert_eq!(pins(w, b, conv, 100), want, "pages of 100");
    let zero = Request::ListPins {
        conversation: conv,
        before: Seq(0),
        limit: 0,
    };
    assert!(matches!(w.call(b, zero), Err(Reject::Invalid(_))));
    let big = Request::ListPins {
        conversation: conv,
        before: Seq(0),
        limit: 101,
    };
    assert!(matches!(w.call(b, big), Err(Reject::TooLarge(_))));
    // Bob read everything but the pins: nothing unread after them.
    let read = Request::MarkRead {
        conversation: conv,
        seq: last,
    };
    w.call(b, read).expect("mark read");
    let unread = match w.call(b, Request::ListConversations) {
        Ok(Response::Conversations(list)) => list.iter().find(|c| c.id == conv).map(|c| c.unread),
        other => panic!("list: {other:?}"),
    };
    assert_eq!(unread, Some(0), "pins are not unread");
}

/// Pins survive a crash of the owner (restore + replay), and a device
/// that was offline while pins changed ends with the owner's pinned state
/// by applying the pin events its sync brings to the messages it holds.
#[test]
fn pins_survive_a_crash_and_reach_an_offline_device() {
    let mut n = support::scripted_node(13, SHARDS);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let conv = n.channel(a, "ops", false, &[bob]);
    let m1 = send(&mut n.w, a, conv, "runbook");
    let m2 = send(&mut n.w, a, conv, "oncall");
    let w = &mut n.w;
    let held = match w.call(
        b,
        Request::History {
            conversation: conv,
            anchor: HistoryAnchor::Latest,
            limit: 50,
        },
    ) {
        Ok(Response::History { messages, .. }) => messages,
        other => panic!("history: {other:?}"),
    };
    w.disconnect(b);
    pin(w, a, conv, m1, ChangeKind::Pin).expect("pin 1");
    pin(w, a, conv, m2, ChangeKind::Pin).expect("pin 2");
    pin(w, a, conv, m1, ChangeKind::Unpin).expect("unpin 1");
    let owner = courier_core::ids::shard_of(conv, SHARDS).0;
    w.crash(owner);
    w.restart(owner);
    w.settle();
    assert_eq!(pinned_view(w, a, conv), vec![(1, false), (2, true)]);
    assert_eq!(pins(w, a, conv, 10), vec![2]);
    w.ensure_online(b, 1);
    let sync = Request::Sync {
        cursors: vec![(conv, Seq(2))],
        reads: vec![],
    };
    let changed = match w.call(b, sync) {
        Ok(Response::Sync { changed, .. }) => changed,
        other => panic!("sync: {other:?}"),
    };
    let entry = changed.iter().find(|s| s.info.id == conv).expect("changed");
    let mut mine = held;
    for e in &entry.messages {
        for m in mine.iter_mut() {
            courier_core::live::apply(m, e);
        }
    }
    let state: Vec<(u64, bool)> = mine.iter().map(|m| (m.seq.0, m.live.pinned)).collect();
    assert_eq!(
        state,
        vec![(1, false), (2, true)],
        "the owner's pinned state"
    );
}
