//! Threads (issue 17, part 2) through the whole node (shards, fake WAL,
//! fake network): replies in the conversation's sequence, roots carrying
//! their summaries in history, thread pages, the authorization rows (a
//! non-member can neither reply nor read a thread), the root checks,
//! unread counts that skip replies shown only in their thread, and an
//! offline device that catches up on replies ending with the owner's
//! counts — across a crash and a snapshot.

mod support;

use courier_core::api::{
    Broadcast, ChangeKind, ConversationId, HistoryAnchor, Message, Reject, Request, Response, Role,
    Seq, UserId,
};

use support::{ScriptedNode as Node, World};

const SHARDS: u16 = 3;

fn node(seed: u64) -> Node {
    support::scripted_node(seed, SHARDS)
}

fn key(w: &World, c: usize) -> u128 {
    u128::from(w.clients[c].next_req) << 64 | 7
}

fn send(w: &mut World, c: usize, conversation: ConversationId, body: &str) -> Seq {
    let request = Request::Send {
        conversation,
        client_msg_id: key(w, c),
        body: body.into(),
        mentions: vec![],
        broadcast: Broadcast::None,
    };
    match w.call(c, request) {
        Ok(Response::SendAck { seq, .. }) => seq,
        other => panic!("send: {other:?}"),
    }
}

fn reply(
    w: &mut World,
    c: usize,
    conversation: ConversationId,
    root: Seq,
    body: &str,
    in_channel: bool,
) -> Result<Seq, Reject> {
    let request = Request::Reply {
        conversation,
        root,
        in_channel,
        client_msg_id: key(w, c),
        body: body.into(),
        mentions: vec![],
        broadcast: Broadcast::None,
    };
    match w.call(c, request)? {
        Response::SendAck { seq, .. } => Ok(seq),
        other => panic!("reply: {other:?}"),
    }
}

fn thread(
    w: &mut World,
    c: usize,
    conversation: ConversationId,
    root: Seq,
    after: Seq,
    limit: u32,
) -> Result<(Vec<Message>, Seq), Reject> {
    let request = Request::Thread {
        conversation,
        root,
        after,
        limit,
    };
    match w.call(c, request)? {
        Response::Thread { messages, head } => Ok((messages, head)),
        other => panic!("thread: {other:?}"),
    }
}

fn history(w: &mut World, c: usize, conversation: ConversationId) -> Vec<Message> {
    let request = Request::History {
        conversation,
        anchor: HistoryAnchor::Latest,
        limit: 100,
    };
    match w.call(c, request) {
        Ok(Response::History { messages, .. }) => messages,
        other => panic!("history: {other:?}"),
    }
}

/// (seq, reply count, last reply seq, participants) of the roots of a page.
fn roots(messages: &[Message]) -> Vec<(u64, u32, u64, Vec<UserId>)> {
    messages
        .iter()
        .filter(|m| m.live.thread.replies > 0)
        .map(|m| {
            let t = &m.live.thread;
            (m.seq.0, t.replies, t.last_seq.0, t.participants.clone())
        })
        .collect()
}

/// Replies take the next seq, carry their root; the root in history
/// carries the count, the last reply and the participants; the thread
/// view pages the root and its replies; unread counts skip replies not
/// shown in the channel.
#[test]
fn replies_sequence_summarize_and_page() {
    let mut n = node(11);
    let (ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let (cat, c, _) = n.user("cat", Role::Member, 2);
    let conv = n.channel(a, "design", false, &[bob, cat]);
    let root = send(&mut n.w, a, conv, "shall we ship?");
    let other = send(&mut n.w, a, conv, "unrelated");
    let w = &mut n.w;
    let r1 = reply(w, b, conv, root, "yes", false).expect("reply");
    assert_eq!(r1, Seq(other.0 + 1), "the next seq, like any message");
    let r2 = reply(w, c, conv, root, "after lunch", true).expect("reply");
    let r3 = reply(w, b, conv, root, "ok", false).expect("reply");
    let r4 = reply(w, a, conv, root, "done", false).expect("reply");
    let page = history(w, a, conv);
    assert_eq!(
        roots(&page),
        vec![(root.0, 4, r4.0, vec![ann, bob, cat])],
        "one root, newest participant first"
    );
    let threads: Vec<(u64, Option<u64>, bool)> = page
        .iter()
        .map(|m| {
            let t = m.thread;
            (
                m.seq.0,
                t.map(|t| t.root.0),
                t.is_some_and(|t| t.in_channel),
            )
        })
        .collect();
    assert_eq!(
        threads,
        vec![
            (root.0, None, false),
            (other.0, None, false),
            (r1.0, Some(root.0), false),
            (r2.0, Some(root.0), true),
            (r3.0, Some(root.0), false),
            (r4.0, Some(root.0), false),
        ]
    );
    // The thread view: root first, then replies; paged by cursor.
    let (first, head) = thread(w, c, conv, root, Seq(0), 2).expect("thread");
    let seqs = |m: &[Message]| m.iter().map(|m| m.seq.0).collect::<Vec<_>>();
    assert_eq!(seqs(&first), vec![root.0, r1.0, r2.0]);
    assert_eq!(head, r4, "the newest reply");
    assert_eq!(first[0].live.thread.replies, 4);
    let (second, _) = thread(w, c, conv, root, r2, 2).expect("thread");
    assert_eq!(seqs(&second), vec![r3.0, r4.0]);
    let (done, _) = thread(w, c, conv, root, r4, 2).expect("thread");
    assert!(done.is_empty());
    // Unread: cat's cursor moved to r2 when cat replied; bob's to r3.
    let list = |w: &mut World, c| match w.call(c, Request::ListConversations) {
        Ok(Response::Conversations(list)) => list
            .into_iter()
            .find(|i| i.id == conv)
            .map(|i| (i.unread, i.read))
            .expect("listed"),
        other => panic!("list: {other:?}"),
    };
    assert_eq!(
        list(w, c),
        (0, r2),
        "after cat's reply: r3 and r4 are thread-only"
    );
    assert_eq!(list(w, b), (0, r3));
    let (_dan, d, _) = n.user("dan", Role::Member, 0);
    let w = &mut n.w;
    let joined = match w.call(d, Request::Join { conversation: conv }) {
        Ok(Response::Conversation(info)) => info,
        other => panic!("join: {other:?}"),
    };
    assert_eq!(
        (joined.unread, joined.preview.as_deref()),
        (3, Some("after lunch")),
        "root, other and the reply shown in the channel; not the 3 thread-only replies"
    );
    assert_eq!(list(w, d), (3, Seq(0)));
}

/// Authorization rows and root checks: a non-member of a private channel
/// can neither reply nor read a thread (`NotFound`, as for a conversation
/// that does not exist); the root must exist, be a message (not a change,
/// not a reply) and not be deleted.
#[test]
fn who_may_reply_and_read_and_which_roots() {
    let mut n = node(12);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let (_eve, e, _) = n.user("eve", Role::Member, 2);
    let conv = n.channel(a, "secret", true, &[bob]);
    let root = send(&mut n.w, a, conv, "root");
    let w = &mut n.w;
    let r1 = reply(w, b, conv, root, "member reply", false).expect("a member replies");
    assert_eq!(
        reply(w, e, conv, root, "x", false),
        Err(Reject::NotFound),
        "a non-member cannot reply"
    );
    assert_eq!(
        thread(w, e, conv, root, Seq(0), 10).map(|_| ()),
        Err(Reject::NotFound),
        "a non-member cannot read the thread"
    );
    assert_eq!(
        thread(w, e, ConversationId(987_654), root, Seq(0), 10).map(|_| ()),
        Err(Reject::NotFound),
        "a conversation that does not exist answers the same"
    );
    assert_eq!(
        reply(w, b, conv, Seq(99), "x", false),
        Err(Reject::NotFound)
    );
    assert_eq!(
        thread(w, b, conv, Seq(99), Seq(0), 10).map(|_| ()),
        Err(Reject::NotFound)
    );
    assert!(matches!(
        reply(w, b, conv, r1, "nested", false),
        Err(Reject::Invalid(_))
    ));
    let reacted = match w.call(
        a,
        Request::Change {
            conversation: conv,
            target: root,
            kind: ChangeKind::React,
            text: "+1".into(),
        },
    ) {
        Ok(Response::SendAck { seq, .. }) => seq,
        other => panic!("react: {other:?}"),
    };
    assert!(matches!(
        reply(w, b, conv, reacted, "to a reaction", false),
        Err(Reject::Invalid(_))
    ));
    assert!(matches!(
        thread(w, b, conv, Seq(0), Seq(0), 0),
        Err(Reject::Invalid(_))
    ));
    assert!(matches!(
        thread(w, b, conv, root, Seq(0), 101),
        Err(Reject::TooLarge(_))
    ));
    // A reply can be edited by its author like any message.
    let edit = Request::Change {
        conversation: conv,
        target: r1,
        kind: ChangeKind::Edit,
        text: "member reply, fixed".into(),
    };
    assert!(matches!(w.call(b, edit), Ok(Response::SendAck { .. })));
    let delete = Request::Change {
        conversation: conv,
        target: root,
        kind: ChangeKind::Delete,
        text: String::new(),
    };
    assert!(matches!(w.call(a, delete), Ok(Response::SendAck { .. })));
    assert_eq!(
        reply(w, b, conv, root, "too late", false),
        Err(Reject::NotFound),
        "no reply to a deleted root"
    );
    let (page, _) = thread(w, b, conv, root, Seq(0), 10).expect("the thread stays readable");
    assert_eq!(page[0].body, "", "the root as a tombstone");
    assert_eq!(page[1].body, "member reply, fixed");
}

/// A device holding a root goes offline; replies follow; the owner shard
/// crashes, restarts, snapshots and crashes again; the device syncs and
/// applies the reply events with `live::apply`, ending with the owner's
/// counts; a retried reply (same key) is sequenced once.
#[test]
fn offline_device_catches_up_on_replies_across_crash_and_snapshot() {
    let mut n = node(13);
    let (_ann, a, _) = n.user("ann", Role::Member, 0);
    let (bob, b, _) = n.user("bob", Role::Member, 1);
    let conv = n.channel(a, "ops", false, &[bob]);
    let root = send(&mut n.w, a, conv, "incident");
    let held = history(&mut n.w, b, conv);
    n.w.disconnect(b);
    let w = &mut n.w;
    let r1 = reply(w, a, conv, root, "looking", false).expect("reply");
    let retry = Request::Reply {
        conversation: conv,
        root,
        in_channel: false,
        client_msg_id: 42,
        body: "fixed".into(),
        mentions: vec![],
        broadcast: Broadcast::None,
    };
    let first = w.call(a, retry.clone());
    assert_eq!(w.call(a, retry), first, "a retry answers the first ack");
    let owner = courier_core::ids::shard_of(conv, SHARDS).0;
    w.crash(owner);
    w.restart(owner);
    w.settle();
    w.snapshot(owner);
    reply(w, a, conv, root, "postmortem tomorrow", true).expect("reply");
    w.crash(owner);
    w.restart(owner);
    w.settle();
    let current = history(w, a, conv);
    assert_eq!(roots(&current).len(), 1);
    assert_eq!(roots(&current)[0].1, 3, "three replies, the retry once");
    let (page, _) = thread(w, a, conv, root, Seq(0), 10).expect("thread");
    assert_eq!(page.len(), 4);
    assert_eq!(page[1].seq, r1);
    w.ensure_online(b, 1);
    let sync = Request::Sync {
        cursors: vec![(conv, root)],
        reads: vec![],
    };
    let changed = match w.call(b, sync) {
        Ok(Response::Sync { changed, .. }) => changed,
        other => panic!("sync: {other:?}"),
    };
    let entry = changed
        .iter()
        .find(|s| s.info.id == conv)
        .expect("the channel changed");
    let mut mine: Vec<Message> = held;
    for event in &entry.messages {
        for m in mine.iter_mut() {
            courier_core::live::apply(m, event);
        }
        for m in mine.iter_mut() {
            assert!(!courier_core::live::apply(m, event), "exactly once");
        }
    }
    assert_eq!(
        roots(&mine),
        roots(&current),
        "the device ends where the owner is"
    );
}
