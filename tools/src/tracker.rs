//! The recovery logic of a client, without any I/O: per-conversation cursors,
//! duplicate drop, gap detection, and the bookkeeping that turns live events,
//! `Sync` replies and `History` pages into one exactly-once, in-order stream
//! of messages per conversation.
//!
//! [`crate::Session`] feeds a [`Tracker`] what arrives from the server and
//! performs the fetches it asks for ([`Tracker::next_repair`]); tests feed it
//! directly. The rules (docs/PROTOCOL.md, "Recovery"):
//!
//! - per conversation the tracker keeps `last`, the highest seq up to which
//!   every message has been delivered (or was never to be delivered);
//! - a message with `seq ≤ last` is a duplicate and is dropped;
//! - `seq == last + 1` is delivered at once, followed by any buffered
//!   successors;
//! - `seq > last + 1` reveals a gap: the message is buffered (bounded by
//!   [`PENDING_PER_CONVERSATION_MAX`]) and the gap is repaired with
//!   `History After(last)` until `last` reaches the known head;
//! - a server page that *covers* a seq range (a `History` page up to its last
//!   message, a complete `Sync` entry up to the head) is authoritative: seqs
//!   in the range without a message hold nothing deliverable and are passed.
//!
//! It also keeps the user's read cursor per conversation (shared by all the
//! user's devices, never moving back): the highest of `ReadCursor` events,
//! `Joined` infos and `Sync` entries. `Sync` names it ([`Tracker::sync_cursors`]),
//! so a cursor another device moved while this one was away comes back in
//! the reply even when the head did not move.
//!
//! Memory is bounded: buffered messages per conversation are capped, and the
//! ready queue only ever holds what one server reply produced.

use crate::constants::PENDING_PER_CONVERSATION_MAX;
use courier_core::api::{ConversationId, Message, Seq, SyncConversation};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

/// How far back to start a conversation the tracker first hears of while
/// running (a channel just joined, a DM someone just opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backlog {
    /// Deliver its whole history from seq 1.
    All,
    /// Deliver at most this many of its newest seqs, then everything new.
    Newest(u64),
}

/// Counters of what the tracker saw, for tests, logs and benches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Messages handed to the consumer.
    pub delivered: u64,
    /// Messages dropped because `seq ≤ last` (or already buffered).
    pub duplicates: u64,
    /// Messages that arrived with `seq > last + 1`.
    pub gaps: u64,
    /// Seqs passed over because a covering page had no message for them.
    pub holes: u64,
    /// Buffered messages dropped because the per-conversation buffer was
    /// full (they are fetched again by the repair).
    pub overflow: u64,
}

#[derive(Clone, Debug)]
struct Conv {
    /// Every seq ≤ last is delivered (or known to hold nothing).
    last: Seq,
    /// Highest seq known to exist.
    head: Seq,
    /// Messages beyond a gap, keyed by seq.
    pending: BTreeMap<Seq, Message>,
    /// The user's read cursor as known (0 until the server says).
    read: Seq,
}

/// Per-conversation cursors and the dedup/gap state machine (see the module
/// docs). Conversations outside the optional filter are tracked for their
/// cursors only: their messages are neither delivered nor repaired.
#[derive(Clone, Debug)]
pub struct Tracker {
    convs: BTreeMap<ConversationId, Conv>,
    filter: Option<HashSet<ConversationId>>,
    backlog: Backlog,
    ready: VecDeque<Message>,
    stats: TrackerStats,
}

impl Tracker {
    /// An empty tracker. `filter`: deliver only these conversations (all
    /// when `None`). `backlog`: where conversations first seen at run time
    /// start.
    pub fn new(filter: Option<HashSet<ConversationId>>, backlog: Backlog) -> Tracker {
        Tracker {
            convs: BTreeMap::new(),
            filter,
            backlog,
            ready: VecDeque::new(),
            stats: TrackerStats::default(),
        }
    }

    /// Starts tracking `conversation` with everything up to `last` taken as
    /// delivered (from a cursor file, or a conversation's head at start).
    /// Does nothing if it is tracked already.
    pub fn track(&mut self, conversation: ConversationId, last: Seq) {
        self.convs.entry(conversation).or_insert(Conv {
            last,
            head: last,
            pending: BTreeMap::new(),
            read: Seq(0),
        });
    }

    /// Stops tracking (the user left or lost the conversation).
    pub fn forget(&mut self, conversation: ConversationId) {
        self.convs.remove(&conversation);
    }

    /// True if the conversation is tracked.
    pub fn is_tracked(&self, conversation: ConversationId) -> bool {
        self.convs.contains_key(&conversation)
    }

    /// True if messages of `conversation` are delivered (the filter).
    pub fn wants(&self, conversation: ConversationId) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.contains(&conversation))
    }

    /// The cursor of a conversation: every seq ≤ it has been delivered.
    pub fn last(&self, conversation: ConversationId) -> Option<Seq> {
        self.convs.get(&conversation).map(|c| c.last)
    }

    /// The highest seq known to exist in a conversation.
    pub fn head(&self, conversation: ConversationId) -> Option<Seq> {
        self.convs.get(&conversation).map(|c| c.head)
    }

    /// The user's read cursor of a conversation, as known.
    pub fn read(&self, conversation: ConversationId) -> Option<Seq> {
        self.convs.get(&conversation).map(|c| c.read)
    }

    /// Unread seqs of a conversation: known head minus read cursor. An
    /// upper bound on unread messages: edits, deletes and reactions take
    /// seqs too (issue 17), and so do replies shown only in their thread
    /// (issue 17, part 2); the server's `ConversationInfo::unread` counts
    /// messages shown in the channel only.
    pub fn unread(&self, conversation: ConversationId) -> Option<u64> {
        self.convs
            .get(&conversation)
            .map(|c| c.head.0.saturating_sub(c.read.0))
    }

    /// What a `Sync` names: every tracked `(conversation, last)` (as
    /// [`Tracker::cursors`]) and, in the same order, its read cursor.
    pub fn sync_cursors(&self) -> (Vec<(ConversationId, Seq)>, Vec<Seq>) {
        self.convs
            .iter()
            .map(|(id, c)| ((*id, c.last), c.read))
            .unzip()
    }

    /// The user's read cursor of a tracked conversation is at least `seq`
    /// (an event, a `Joined` or `Sync` info). Returns the new cursor if it
    /// moved; a cursor never moves back.
    pub fn on_read_cursor(&mut self, conversation: ConversationId, seq: Seq) -> Option<Seq> {
        let conv = self.convs.get_mut(&conversation)?;
        if seq <= conv.read {
            return None;
        }
        conv.read = seq;
        Some(seq)
    }

    /// Every tracked `(conversation, last)`, for `Sync` and cursor files.
    pub fn cursors(&self) -> Vec<(ConversationId, Seq)> {
        self.convs.iter().map(|(id, c)| (*id, c.last)).collect()
    }

    /// Counters so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// The next message to hand to the consumer, in seq order per
    /// conversation, each exactly once.
    pub fn pop_ready(&mut self) -> Option<Message> {
        self.ready.pop_front()
    }

    /// Messages waiting in the ready queue.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Learns that `conversation` exists up to `head` (a `Joined` event, a
    /// `Sync` entry, a history page). A conversation not tracked yet starts
    /// according to the [`Backlog`] policy.
    pub fn observe_head(&mut self, conversation: ConversationId, head: Seq) {
        let start = match self.backlog {
            Backlog::All => Seq(0),
            Backlog::Newest(n) => Seq(head.0.saturating_sub(n)),
        };
        let wanted = self.wants(conversation);
        let conv = self.convs.entry(conversation).or_insert(Conv {
            last: start,
            head: start,
            pending: BTreeMap::new(),
            read: Seq(0),
        });
        conv.head = conv.head.max(head);
        if !wanted {
            // Not delivered: keep the cursor at the head so `Sync` stays cheap.
            conv.last = conv.last.max(conv.head);
        }
    }

    /// A message from the live stream (or any other source). Returns what
    /// became of it.
    pub fn on_message(&mut self, message: Message) -> Verdict {
        let conversation = message.conversation;
        let seq = message.seq;
        if !self.convs.contains_key(&conversation) {
            self.observe_head(conversation, seq);
            // Runtime start: the message itself is within the backlog.
            let wanted = self.wants(conversation);
            if let Some(conv) = self.convs.get_mut(&conversation) {
                if wanted {
                    conv.last = conv.last.min(Seq(seq.0.saturating_sub(1)));
                }
            }
        }
        let wanted = self.wants(conversation);
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return Verdict::Ignored;
        };
        conv.head = conv.head.max(seq);
        if !wanted {
            conv.last = conv.last.max(seq);
            return Verdict::Ignored;
        }
        if seq <= conv.last || conv.pending.contains_key(&seq) {
            self.stats.duplicates += 1;
            return Verdict::Duplicate;
        }
        if seq.0 == conv.last.0 + 1 {
            conv.last = seq;
            self.ready.push_back(message);
            self.stats.delivered += 1;
            drain_contiguous(conv, &mut self.ready, &mut self.stats);
            return Verdict::Delivered;
        }
        self.stats.gaps += 1;
        let gap = (Seq(conv.last.0 + 1), Seq(seq.0 - 1));
        if conv.pending.len() >= PENDING_PER_CONVERSATION_MAX {
            // Keep the lowest seqs: they are delivered first. A dropped one
            // is below the head, so the repair fetches it again.
            match conv.pending.last_key_value() {
                Some((&highest, _)) if highest > seq => {
                    conv.pending.remove(&highest);
                    self.stats.overflow += 1;
                }
                _ => {
                    self.stats.overflow += 1;
                    return Verdict::Gap {
                        from: gap.0,
                        to: gap.1,
                    };
                }
            }
        }
        conv.pending.insert(seq, message);
        Verdict::Gap {
            from: gap.0,
            to: gap.1,
        }
    }

    /// Applies a page that covers the seq range `(after, through]`: its
    /// `messages` (ascending) are every message of that range, so seqs in
    /// the range without one hold nothing and are passed over.
    pub fn on_covering_page(
        &mut self,
        conversation: ConversationId,
        after: Seq,
        through: Seq,
        messages: Vec<Message>,
    ) {
        self.observe_head(conversation, through);
        for m in messages {
            if m.conversation == conversation && m.seq > after && m.seq <= through {
                self.on_message(m);
            }
        }
        if !self.wants(conversation) {
            return;
        }
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return;
        };
        if conv.last >= after && conv.last < through {
            // Everything of (after, through] that exists was in the page and
            // is now delivered or buffered: deliver the buffered ones in
            // order and pass the holes.
            while let Some(entry) = conv.pending.first_entry() {
                if *entry.key() > through {
                    break;
                }
                let m = entry.remove();
                if m.seq <= conv.last {
                    continue;
                }
                self.stats.holes += m.seq.0 - conv.last.0 - 1;
                conv.last = m.seq;
                self.ready.push_back(m);
                self.stats.delivered += 1;
            }
            self.stats.holes += through.0 - conv.last.0;
            conv.last = through;
            drain_contiguous(conv, &mut self.ready, &mut self.stats);
        }
    }

    /// Applies one conversation of a `Sync` reply, given the cursor the
    /// request named for it (`Seq(0)` if it named none). Returns the read
    /// cursor if the entry moved it (an entry may come for that alone).
    pub fn on_sync(&mut self, sent_cursor: Seq, entry: SyncConversation) -> Option<Seq> {
        let id = entry.info.id;
        let head = entry.info.head;
        let read = entry.info.read;
        if entry.truncated {
            // Only the newest page came inline: it covers itself up to the
            // head; the range before it is repaired with History.
            let after = entry
                .messages
                .first()
                .map_or(head, |m| Seq(m.seq.0.saturating_sub(1)));
            self.on_covering_page(id, after, head, entry.messages);
        } else {
            self.on_covering_page(id, sent_cursor, head, entry.messages);
        }
        self.on_read_cursor(id, read)
    }

    /// Applies a `History After(after)` page of at most `limit` messages
    /// whose reply said the head is `head`. The page covers up to its last
    /// message (a server may cut a page short by bytes), or up to `head` when
    /// it is empty.
    pub fn on_history_after(
        &mut self,
        conversation: ConversationId,
        after: Seq,
        messages: Vec<Message>,
        head: Seq,
    ) {
        let through = messages.last().map_or(head, |m| m.seq).max(after);
        self.observe_head(conversation, head);
        self.on_covering_page(conversation, after, through, messages);
    }

    /// The next gap to repair: fetch `History After(after)` of
    /// `conversation`. `None` when every wanted conversation is complete up
    /// to its known head.
    pub fn next_repair(&self) -> Option<(ConversationId, Seq)> {
        self.convs
            .iter()
            .find(|(id, c)| c.last < c.head && self.wants(**id))
            .map(|(id, c)| (*id, c.last))
    }

    /// Conversations with an open gap (for diagnostics).
    pub fn gaps(&self) -> BTreeSet<ConversationId> {
        self.convs
            .iter()
            .filter(|(id, c)| c.last < c.head && self.wants(**id))
            .map(|(id, _)| *id)
            .collect()
    }
}

fn drain_contiguous(conv: &mut Conv, ready: &mut VecDeque<Message>, stats: &mut TrackerStats) {
    while let Some(entry) = conv.pending.first_entry() {
        let seq = *entry.key();
        if seq <= conv.last {
            entry.remove();
            continue;
        }
        if seq.0 != conv.last.0 + 1 {
            break;
        }
        conv.last = seq;
        ready.push_back(entry.remove());
        stats.delivered += 1;
    }
}

/// What [`Tracker::on_message`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Queued for the consumer (possibly with buffered successors).
    Delivered,
    /// Already delivered or buffered: dropped.
    Duplicate,
    /// Buffered behind a gap of the seqs `from..=to`.
    Gap {
        /// First missing seq.
        from: Seq,
        /// Last missing seq.
        to: Seq,
    },
    /// A conversation outside the filter: only its cursor moved.
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::api::{Broadcast, ConversationInfo, ConversationKind, Millis, UserId};

    const C: ConversationId = ConversationId(7);
    const D: ConversationId = ConversationId(8);

    fn msg(conv: ConversationId, seq: u64) -> Message {
        Message {
            conversation: conv,
            seq: Seq(seq),
            sender: UserId(1),
            client_msg_id: u128::from(seq),
            ts: Millis(seq),
            body: format!("m{seq}"),
            mentions: vec![],
            broadcast: Broadcast::None,
            change: None,
            live: Default::default(),
            thread: None,
        }
    }

    fn drain(t: &mut Tracker) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| t.pop_ready())
            .map(|m| (m.conversation.0, m.seq.0))
            .collect()
    }

    fn info(conv: ConversationId, head: u64) -> ConversationInfo {
        ConversationInfo {
            id: conv,
            kind: ConversationKind::PublicChannel,
            name: "c".into(),
            members: vec![],
            member_count: 2,
            head: Seq(head),
            read: Seq(0),
            unread: 0,
            mentions: 0,
            member: true,
            last_activity: Millis(0),
            preview: None,
            settings: Default::default(),
        }
    }

    /// Feeds live seqs of conversation C (tracked from `start`) and checks
    /// what is delivered and which repair is asked for.
    fn check_live(start: u64, live: &[u64], delivered: &[u64], repair: Option<u64>) {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(start));
        for &s in live {
            t.on_message(msg(C, s));
        }
        let got: Vec<u64> = drain(&mut t).into_iter().map(|(_, s)| s).collect();
        assert_eq!(got, delivered, "live {live:?}");
        assert_eq!(
            t.next_repair(),
            repair.map(|s| (C, Seq(s))),
            "live {live:?}"
        );
    }

    #[test]
    fn live_stream_cases() {
        check_live(0, &[1, 2, 3], &[1, 2, 3], None);
        check_live(0, &[1, 1, 2, 1, 2, 3, 3], &[1, 2, 3], None);
        check_live(5, &[3, 4, 5, 6], &[6], None);
        check_live(0, &[1, 3, 4], &[1], Some(1));
        check_live(0, &[2, 1], &[1, 2], None);
        check_live(0, &[3, 2, 1, 4], &[1, 2, 3, 4], None);
        check_live(0, &[1, 5, 5, 3], &[1], Some(1));
    }

    #[test]
    fn gap_is_repaired_by_history_and_buffered_messages_follow_in_order() {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(2));
        assert_eq!(t.on_message(msg(C, 3)), Verdict::Delivered);
        assert_eq!(
            t.on_message(msg(C, 7)),
            Verdict::Gap {
                from: Seq(4),
                to: Seq(6)
            }
        );
        t.on_message(msg(C, 8));
        assert_eq!(drain(&mut t), vec![(7, 3)]);
        assert_eq!(t.next_repair(), Some((C, Seq(3))));
        // The page overlaps what is buffered: no duplicates come out.
        t.on_history_after(C, Seq(3), (4..=7).map(|s| msg(C, s)).collect(), Seq(8));
        assert_eq!(drain(&mut t), vec![(7, 4), (7, 5), (7, 6), (7, 7), (7, 8)]);
        assert_eq!(t.next_repair(), None);
        assert_eq!(t.on_message(msg(C, 8)), Verdict::Duplicate);
        let s = t.stats();
        assert_eq!((s.delivered, s.gaps, s.holes), (6, 2, 0));
    }

    #[test]
    fn short_history_page_covers_only_up_to_its_last_message() {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(0));
        t.observe_head(C, Seq(10));
        assert_eq!(t.next_repair(), Some((C, Seq(0))));
        // Cut short by bytes: 1..=4 only, head 10.
        t.on_history_after(C, Seq(0), (1..=4).map(|s| msg(C, s)).collect(), Seq(10));
        assert_eq!(drain(&mut t).len(), 4);
        assert_eq!(t.next_repair(), Some((C, Seq(4))));
        t.on_history_after(C, Seq(4), (5..=10).map(|s| msg(C, s)).collect(), Seq(10));
        assert_eq!(drain(&mut t).len(), 6);
        assert_eq!(t.next_repair(), None);
    }

    #[test]
    fn seqs_without_messages_are_passed_when_a_page_covers_them() {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(0));
        t.observe_head(C, Seq(6));
        // Seqs 2 and 5 hold no message (e.g. a join shares the sequence).
        t.on_history_after(C, Seq(0), [1, 3, 4].map(|s| msg(C, s)).to_vec(), Seq(6));
        assert_eq!(drain(&mut t), vec![(7, 1), (7, 3), (7, 4)]);
        assert_eq!(t.next_repair(), Some((C, Seq(4))));
        t.on_history_after(C, Seq(4), vec![msg(C, 6)], Seq(6));
        assert_eq!(drain(&mut t), vec![(7, 6)]);
        // An empty page means nothing more up to the head.
        t.observe_head(C, Seq(8));
        t.on_history_after(C, Seq(6), vec![], Seq(8));
        assert_eq!(t.next_repair(), None);
        assert_eq!(t.last(C), Some(Seq(8)));
        assert_eq!(t.stats().holes, 4);
    }

    #[test]
    fn complete_sync_delivers_inline_and_truncated_sync_asks_for_the_rest() {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(3));
        t.track(D, Seq(0));
        t.on_sync(
            Seq(3),
            SyncConversation {
                info: info(C, 5),
                messages: vec![msg(C, 4), msg(C, 5)],
                truncated: false,
            },
        );
        t.on_sync(
            Seq(0),
            SyncConversation {
                info: info(D, 300),
                messages: (281..=300).map(|s| msg(D, s)).collect(),
                truncated: true,
            },
        );
        assert_eq!(drain(&mut t), vec![(7, 4), (7, 5)]);
        assert_eq!(t.next_repair(), Some((D, Seq(0))));
        t.on_history_after(D, Seq(0), (1..=100).map(|s| msg(D, s)).collect(), Seq(300));
        t.on_history_after(
            D,
            Seq(100),
            (101..=200).map(|s| msg(D, s)).collect(),
            Seq(300),
        );
        t.on_history_after(
            D,
            Seq(200),
            (201..=280).map(|s| msg(D, s)).collect(),
            Seq(300),
        );
        let got = drain(&mut t);
        assert_eq!(got, (1..=300).map(|s| (8, s)).collect::<Vec<_>>());
        assert_eq!(t.next_repair(), None);
    }

    #[test]
    fn live_events_racing_a_sync_are_delivered_once() {
        // Subscribed first, then Sync: a message can arrive live and inline.
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(2));
        t.on_message(msg(C, 4)); // live, before the sync reply is applied
        t.on_sync(
            Seq(2),
            SyncConversation {
                info: info(C, 4),
                messages: vec![msg(C, 3), msg(C, 4)],
                truncated: false,
            },
        );
        t.on_message(msg(C, 4));
        t.on_message(msg(C, 5));
        assert_eq!(drain(&mut t), vec![(7, 3), (7, 4), (7, 5)]);
        assert_eq!(t.stats().duplicates, 2);
    }

    #[test]
    fn new_conversations_start_per_backlog_policy() {
        let mut t = Tracker::new(None, Backlog::Newest(10));
        t.observe_head(C, Seq(100)); // joined a busy channel
        assert_eq!(t.next_repair(), Some((C, Seq(90))));
        t.on_message(msg(D, 1)); // a DM someone just opened
        assert_eq!(drain(&mut t), vec![(8, 1)]);
        t.on_message(msg(ConversationId(9), 3)); // unknown, gap before it
        assert_eq!(t.last(ConversationId(9)), Some(Seq(0)));
        let mut all = Tracker::new(None, Backlog::All);
        all.observe_head(C, Seq(100));
        assert_eq!(all.next_repair(), Some((C, Seq(0))));
    }

    #[test]
    fn filtered_out_conversations_only_move_their_cursor() {
        let filter: HashSet<_> = [C].into_iter().collect();
        let mut t = Tracker::new(Some(filter), Backlog::All);
        t.track(D, Seq(1));
        assert_eq!(t.on_message(msg(D, 5)), Verdict::Ignored);
        assert_eq!(t.last(D), Some(Seq(5)));
        t.observe_head(D, Seq(9));
        assert_eq!(t.next_repair(), None);
        assert_eq!(t.cursors(), vec![(D, Seq(9))]);
        assert!(drain(&mut t).is_empty());
    }

    #[test]
    fn pending_buffer_is_bounded_and_overflow_is_refetched() {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(0));
        let n = PENDING_PER_CONVERSATION_MAX as u64 + 10;
        for s in (2..=n + 1).rev() {
            t.on_message(msg(C, s));
        }
        assert!(t.stats().overflow > 0);
        // Repair from 0: every page is applied; nothing is lost or doubled.
        let mut out = Vec::new();
        while let Some((conv, after)) = t.next_repair() {
            let to = (after.0 + 100).min(n + 1);
            let page = (after.0 + 1..=to).map(|s| msg(conv, s)).collect();
            t.on_history_after(conv, after, page, Seq(n + 1));
            out.extend(drain(&mut t));
        }
        assert_eq!(out, (1..=n + 1).map(|s| (7, s)).collect::<Vec<_>>());
    }

    #[test]
    fn read_cursors_come_from_events_and_sync_and_never_move_back() {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(5));
        assert_eq!((t.read(C), t.unread(C)), (Some(Seq(0)), Some(5)));
        assert_eq!(t.sync_cursors(), (vec![(C, Seq(5))], vec![Seq(0)]));
        assert_eq!(t.on_read_cursor(C, Seq(2)), Some(Seq(2)));
        assert_eq!(t.on_read_cursor(C, Seq(1)), None, "never back");
        // Another device read everything while this one was away: the
        // entry carries the cursor and no messages.
        let mut entry = info(C, 5);
        entry.read = Seq(5);
        let moved = t.on_sync(
            Seq(5),
            SyncConversation {
                info: entry,
                messages: vec![],
                truncated: false,
            },
        );
        assert_eq!(moved, Some(Seq(5)));
        assert_eq!(
            (t.read(C), t.unread(C), t.last(C)),
            (Some(Seq(5)), Some(0), Some(Seq(5)))
        );
        assert!(drain(&mut t).is_empty());
        assert_eq!(t.on_read_cursor(D, Seq(3)), None, "untracked");
    }

    #[test]
    fn forget_drops_the_conversation() {
        let mut t = Tracker::new(None, Backlog::All);
        t.track(C, Seq(1));
        assert!(t.is_tracked(C));
        t.forget(C);
        assert!(!t.is_tracked(C));
        assert!(t.cursors().is_empty());
    }
}
