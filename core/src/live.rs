//! Messages that live (issue 17): the one rule by which a change event
//! (edit, delete, reaction, pin) changes the message it targets.
//!
//! A change is a new event in the conversation's own sequence naming its
//! target seq ([`crate::types::Change`]); history is never rewritten in
//! place. Every holder of a message applies changes with [`apply`]: the
//! owner to its per-conversation state (so history and sync serve the
//! current state), clients and the simulation's devices to the messages
//! they hold. The rule is idempotent and ordered by the change's seq: a
//! change at or below the state's `version` is skipped, so a client that
//! first got a message in its current state (a history page) and later
//! the older change events (the next page, or a sync) does not go back.
//!
//! Threads (issue 17, part 2) follow the same rule: a reply event (a
//! message whose `thread` names its root) moves its root's summary
//! (reply count, last reply time and seq, the most recent
//! THREAD_PARTICIPANTS_MAX distinct repliers) and the root's `version`,
//! so a reply already counted in a current-state page is not counted
//! again. A deleted root's summary stays as it was.
//!
//! A deleted message keeps only its tombstone: no text, no mentions, no
//! reactions, not pinned; later edits and reactions of it are skipped (the owner
//! refuses them before they are sequenced).

use crate::constants::THREAD_PARTICIPANTS_MAX;
use crate::types::{ChangeKind, Live, Message, Reaction, UserId};

/// Applies the change event or reply `event` to a message's state and
/// text. Returns whether it changed anything (false for a message that is
/// neither a change nor a reply, or one already included: `event.seq <=
/// live.version`).
pub fn apply_parts(live: &mut Live, text: &mut String, event: &Message) -> bool {
    let Some(change) = event.change else {
        return event.thread.is_some() && add_reply(live, event);
    };
    // A channel setting (issue 16, part 4) changes the channel, no message.
    if change.kind.is_setting() || event.seq <= live.version {
        return false;
    }
    live.version = event.seq;
    if live.deleted {
        return true;
    }
    match change.kind {
        ChangeKind::Edit => {
            live.edited = Some(event.ts);
            text.clone_from(&event.body);
        }
        ChangeKind::Delete => {
            live.deleted = true;
            live.pinned = false;
            live.edited = None;
            live.reactions = Vec::new();
            *text = String::new();
        }
        ChangeKind::React => react(live, &event.body, event.sender),
        ChangeKind::Unreact => unreact(live, &event.body, event.sender),
        ChangeKind::Pin => live.pinned = true,
        ChangeKind::Unpin => live.pinned = false,
        // Settings returned above.
        ChangeKind::Topic
        | ChangeKind::Purpose
        | ChangeKind::Rename
        | ChangeKind::Archive
        | ChangeKind::Unarchive
        | ChangeKind::PostingEveryone
        | ChangeKind::PostingAdmins => {}
    }
    true
}

/// Applies a change event to a held message (clients, the simulation):
/// [`apply_parts`] on its state and body; a deleted message also loses its
/// mentions. An event that targets another message (or is none) changes
/// nothing, so a client may offer every event to every message it holds.
pub fn apply(target: &mut Message, event: &Message) -> bool {
    let aimed = event.conversation == target.conversation
        && target.change.is_none()
        && match event.change {
            Some(c) => c.target == target.seq,
            None => event.thread.is_some_and(|t| t.root == target.seq),
        };
    if !aimed {
        return false;
    }
    let changed = apply_parts(&mut target.live, &mut target.body, event);
    if target.live.deleted {
        target.mentions = Vec::new();
    }
    changed
}

/// A reply counted in its root's summary (once: see [`apply_parts`]).
fn add_reply(live: &mut Live, reply: &Message) -> bool {
    if reply.seq <= live.version {
        return false;
    }
    live.version = reply.seq;
    if live.deleted {
        return true;
    }
    let t = &mut live.thread;
    t.replies = t.replies.saturating_add(1);
    t.last_reply = reply.ts;
    t.last_seq = reply.seq;
    t.participants.retain(|&u| u != reply.sender);
    t.participants.insert(0, reply.sender);
    t.participants.truncate(THREAD_PARTICIPANTS_MAX);
    true
}

fn react(live: &mut Live, emoji: &str, user: UserId) {
    match live.reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(r) => {
            if let Err(at) = r.users.binary_search(&user) {
                r.users.insert(at, user);
            }
        }
        None => live.reactions.push(Reaction {
            emoji: emoji.to_owned(),
            users: vec![user],
        }),
    }
}

fn unreact(live: &mut Live, emoji: &str, user: UserId) {
    if let Some(i) = live.reactions.iter().position(|r| r.emoji == emoji) {
        let r = &mut live.reactions[i];
        if let Ok(at) = r.users.binary_search(&user) {
            r.users.remove(at);
        }
        if r.users.is_empty() {
            live.reactions.remove(i);
        }
    }
}

/// Whether `user` has reacted to a message with `emoji`.
pub fn has_reacted(live: &Live, emoji: &str, user: UserId) -> bool {
    live.reactions
        .iter()
        .any(|r| r.emoji == emoji && r.users.binary_search(&user).is_ok())
}

/// Reactions on a message over all emoji (what
/// `REACTION_USERS_PER_MESSAGE_MAX` bounds).
pub fn reaction_count(live: &Live) -> usize {
    live.reactions.iter().map(|r| r.users.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Broadcast, Change, ConversationId, Millis, Seq};

    fn msg(seq: u64, sender: u64, body: &str, change: Option<(ChangeKind, u64)>) -> Message {
        Message {
            conversation: ConversationId(1),
            seq: Seq(seq),
            sender: UserId(sender),
            client_msg_id: 0,
            ts: Millis(seq * 10),
            body: body.into(),
            mentions: if change.is_none() {
                vec![UserId(9)]
            } else {
                vec![]
            },
            broadcast: Broadcast::None,
            change: change.map(|(kind, t)| Change {
                kind,
                target: Seq(t),
            }),
            live: Live::default(),
            thread: None,
        }
    }

    /// Applies `events` to message 1 by user 1 ("hello") in order and
    /// checks (body, edited, deleted, reactions as (emoji, users)).
    #[allow(clippy::type_complexity)]
    fn check(
        events: &[Message],
        body: &str,
        edited: Option<u64>,
        deleted: bool,
        r: &[(&str, &[u64])],
    ) {
        let mut m = msg(1, 1, "hello", None);
        for e in events {
            apply(&mut m, e);
        }
        let reactions: Vec<(String, Vec<u64>)> = m
            .live
            .reactions
            .iter()
            .map(|x| (x.emoji.clone(), x.users.iter().map(|u| u.0).collect()))
            .collect();
        let want: Vec<(String, Vec<u64>)> = r
            .iter()
            .map(|(e, u)| ((*e).to_owned(), u.to_vec()))
            .collect();
        assert_eq!(
            (
                m.body.as_str(),
                m.live.edited.map(|t| t.0),
                m.live.deleted,
                reactions
            ),
            (body, edited, deleted, want),
            "{events:?}"
        );
        if deleted {
            assert!(m.mentions.is_empty(), "a tombstone keeps no mentions");
        }
    }

    #[test]
    fn changes_apply_in_seq_order_once() {
        use ChangeKind::*;
        let edit = |s, t: &str| msg(s, 1, t, Some((Edit, 1)));
        let del = |s| msg(s, 1, "", Some((Delete, 1)));
        let react = |s, u, e: &str| msg(s, u, e, Some((React, 1)));
        let unreact = |s, u, e: &str| msg(s, u, e, Some((Unreact, 1)));
        check(&[], "hello", None, false, &[]);
        check(&[edit(2, "hi")], "hi", Some(20), false, &[]);
        check(
            &[edit(2, "hi"), edit(3, "hey")],
            "hey",
            Some(30),
            false,
            &[],
        );
        // An older event after a newer one is skipped (current-state pages).
        check(
            &[edit(3, "hey"), edit(2, "hi")],
            "hey",
            Some(30),
            false,
            &[],
        );
        check(&[edit(2, "hi"), edit(2, "hi")], "hi", Some(20), false, &[]);
        check(&[edit(2, "secret"), del(3)], "", None, true, &[]);
        check(&[del(2), edit(3, "back")], "", None, true, &[]);
        check(
            &[
                react(2, 5, "+1"),
                react(3, 4, "+1"),
                react(4, 4, "+1"),
                react(5, 4, "eyes"),
            ],
            "hello",
            None,
            false,
            &[("+1", &[4, 5]), ("eyes", &[4])],
        );
        check(
            &[react(2, 5, "+1"), unreact(3, 5, "+1"), unreact(4, 5, "+1")],
            "hello",
            None,
            false,
            &[],
        );
        check(
            &[react(2, 5, "+1"), del(3), react(4, 6, "+1")],
            "",
            None,
            true,
            &[],
        );
        // A message, not a change, changes nothing.
        check(&[msg(2, 1, "other", None)], "hello", None, false, &[]);
    }

    fn reply(seq: u64, sender: u64, root: u64) -> Message {
        Message {
            thread: Some(crate::types::Thread {
                root: Seq(root),
                in_channel: false,
            }),
            ..msg(seq, sender, "re", None)
        }
    }

    #[test]
    fn replies_count_once_in_seq_order() {
        let mut root = msg(1, 1, "hello", None);
        // Another root's reply, or a plain message, changes nothing.
        assert!(!apply(&mut root, &reply(2, 5, 7)));
        assert!(!apply(&mut root, &msg(2, 5, "other", None)));
        for (seq, sender) in [(3, 5), (4, 6), (5, 5), (6, 7), (7, 8)] {
            assert!(apply(&mut root, &reply(seq, sender, 1)));
        }
        let t = &root.live.thread;
        assert_eq!(
            (t.replies, t.last_reply, t.last_seq, t.participants.clone()),
            (5, Millis(70), Seq(7), vec![UserId(8), UserId(7), UserId(5)]),
            "most recent distinct repliers, at most THREAD_PARTICIPANTS_MAX"
        );
        // A reply already included (a current-state page, then sync) is
        // not counted again; neither is an older one.
        assert!(!apply(&mut root, &reply(7, 8, 1)));
        assert!(!apply(&mut root, &reply(4, 6, 1)));
        assert_eq!(root.live.thread.replies, 5);
        // Edits and reactions share the order: a reply after an edit
        // counts, the edit still applies.
        assert!(apply(
            &mut root,
            &msg(8, 1, "hi", Some((ChangeKind::Edit, 1)))
        ));
        assert!(apply(&mut root, &reply(9, 5, 1)));
        assert_eq!((root.body.as_str(), root.live.thread.replies), ("hi", 6));
        // A deleted root keeps its summary and counts no more.
        assert!(apply(
            &mut root,
            &msg(10, 1, "", Some((ChangeKind::Delete, 1)))
        ));
        assert!(apply(&mut root, &reply(11, 6, 1)));
        assert_eq!(root.live.thread.replies, 6);
        assert!(root.live.deleted);
    }

    /// Issue 17, part 3: pins and unpins in seq order; a delete unpins for
    /// good; an older event after a newer one is skipped.
    #[test]
    fn pins_apply_in_seq_order_and_delete_unpins() {
        use ChangeKind::*;
        let run = |events: &[(u64, ChangeKind)]| {
            let mut m = msg(1, 1, "hello", None);
            for &(seq, kind) in events {
                apply(&mut m, &msg(seq, 2, "", Some((kind, 1))));
            }
            (m.live.pinned, m.live.deleted, m.live.version.0)
        };
        assert_eq!(run(&[]), (false, false, 0));
        assert_eq!(run(&[(2, Pin)]), (true, false, 2));
        assert_eq!(run(&[(2, Pin), (3, Unpin)]), (false, false, 3));
        assert_eq!(run(&[(3, Unpin), (2, Pin)]), (false, false, 3));
        assert_eq!(run(&[(2, Pin), (3, Delete), (4, Pin)]), (false, true, 4));
    }
}
