//! The recent-message cache of a shard's conversations.
//!
//! Per conversation it holds a contiguous run of the newest messages (at
//! most `per_conversation`); over all conversations at most `budget_bytes`
//! (size estimates, see [`crate::text::message_bytes`]). When the budget is
//! exceeded the caches of the least recently *written* conversations are
//! dropped whole; their history is then read from the WAL by LSN. Recency is
//! the LSN of the last message, so live apply and replay evict identically.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::hash::{HashState, Map};
use crate::text::message_bytes;
use crate::types::{ChangeKind, ConversationId, Message, Seq};

/// Newest messages per conversation, bounded in count and total bytes.
#[derive(Debug)]
pub struct RecentCache {
    budget_bytes: usize,
    per_conversation: usize,
    bytes: usize,
    entries: Map<ConversationId, Entry>,
    lru: BTreeSet<(u64, ConversationId)>,
}

#[derive(Debug)]
struct Entry {
    stamp: u64,
    bytes: usize,
    /// Shared so a snapshot's capture copies pointers, not bodies.
    messages: VecDeque<Arc<Message>>,
}

impl RecentCache {
    /// An empty cache.
    pub fn new(budget_bytes: usize, per_conversation: usize, hash: HashState) -> RecentCache {
        assert!(per_conversation >= 1);
        RecentCache {
            budget_bytes,
            per_conversation,
            bytes: 0,
            entries: hash.map(),
            lru: BTreeSet::new(),
        }
    }

    /// Total size estimate held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the next message of a conversation. `stamp` orders recency
    /// (the record's LSN). The message must follow the cached run.
    pub fn push(&mut self, stamp: u64, message: Message) {
        let conv = message.conversation;
        let size = message_bytes(&message);
        let entry = self.entries.entry(conv).or_insert_with(|| Entry {
            stamp,
            bytes: 0,
            messages: VecDeque::new(),
        });
        if let Some(last) = entry.messages.back() {
            assert_eq!(
                last.seq.0 + 1,
                message.seq.0,
                "cache: messages of {conv:?} out of order"
            );
        }
        self.lru.remove(&(entry.stamp, conv));
        entry.stamp = stamp;
        self.lru.insert((stamp, conv));
        entry.bytes += size;
        self.bytes += size;
        entry.messages.push_back(Arc::new(message));
        while entry.messages.len() > self.per_conversation {
            if let Some(old) = entry.messages.pop_front() {
                let size = message_bytes(&old);
                entry.bytes -= size;
                self.bytes -= size;
            }
        }
        while self.bytes > self.budget_bytes {
            let Some(&(old_stamp, victim)) = self.lru.iter().next() else {
                break;
            };
            if victim == conv {
                // Never evict what was just written; a single conversation
                // always fits (checked in constants.rs).
                break;
            }
            self.lru.remove(&(old_stamp, victim));
            if let Some(gone) = self.entries.remove(&victim) {
                self.bytes -= gone.bytes;
            }
        }
    }

    /// The first cached seq of a conversation, if any is cached.
    pub fn first_seq(&self, conv: ConversationId) -> Option<Seq> {
        self.entries
            .get(&conv)
            .and_then(|e| e.messages.front())
            .map(|m| m.seq)
    }

    /// Cached messages with `lo <= seq <= hi`, ascending.
    pub fn range(&self, conv: ConversationId, lo: Seq, hi: Seq) -> Vec<Message> {
        let Some(entry) = self.entries.get(&conv) else {
            return Vec::new();
        };
        let Some(first) = entry.messages.front().map(|m| m.seq.0) else {
            return Vec::new();
        };
        let start = lo.0.max(first);
        if hi.0 < start {
            return Vec::new();
        }
        let skip = (start - first) as usize;
        let take = (hi.0 - start + 1) as usize;
        entry
            .messages
            .iter()
            .skip(skip)
            .take(take)
            .map(|m| Message::clone(m))
            .collect()
    }

    /// Drops the body and mentions of a cached message and the text of
    /// every cached edit of it (a delete, issue 17: the deleted words leave
    /// memory at once). O(cached messages of the conversation).
    pub fn redact(&mut self, conv: ConversationId, seq: Seq) {
        let Some(entry) = self.entries.get_mut(&conv) else {
            return;
        };
        let mut freed = 0;
        for m in entry.messages.iter_mut() {
            let hit = m.seq == seq
                || m.change
                    .is_some_and(|c| c.target == seq && c.kind == ChangeKind::Edit);
            if hit {
                let before = message_bytes(m);
                // Copy-on-write: a snapshot capture may share the message.
                let m = Arc::make_mut(m);
                m.body = String::new();
                m.mentions = Vec::new();
                freed += before - message_bytes(m);
            }
        }
        entry.bytes -= freed;
        self.bytes -= freed;
    }

    /// Every cached run with its stamp, sorted by conversation (snapshots).
    pub fn export(&self) -> Vec<(ConversationId, u64, Vec<Message>)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(c, e)| {
                let messages = e.messages.iter().map(|m| Message::clone(m)).collect();
                (*c, e.stamp, messages)
            })
            .collect();
        all.sort_by_key(|(c, _, _)| *c);
        all
    }

    /// Every cached run with its stamp, unsorted, sharing the messages: a
    /// pointer copy per message (a snapshot's capture; see
    /// `snapshot::Capture`).
    pub fn export_shared(&self) -> Vec<(ConversationId, u64, Vec<Arc<Message>>)> {
        self.entries
            .iter()
            .map(|(c, e)| (*c, e.stamp, e.messages.iter().cloned().collect()))
            .collect()
    }

    /// Restores one conversation's run (from a snapshot).
    pub fn import(&mut self, conv: ConversationId, stamp: u64, messages: Vec<Message>) {
        assert!(!self.entries.contains_key(&conv));
        let bytes = messages.iter().map(message_bytes).sum();
        self.bytes += bytes;
        self.lru.insert((stamp, conv));
        self.entries.insert(
            conv,
            Entry {
                stamp,
                bytes,
                messages: messages.into_iter().map(Arc::new).collect(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Broadcast, Millis, UserId};

    fn msg(conv: u64, seq: u64, body_len: usize) -> Message {
        Message {
            conversation: ConversationId(conv),
            seq: Seq(seq),
            sender: UserId(1),
            client_msg_id: u128::from(seq),
            ts: Millis(seq),
            body: "x".repeat(body_len),
            mentions: vec![],
            broadcast: Broadcast::None,
            change: None,
            live: crate::types::Live::default(),
            thread: None,
        }
    }

    fn seqs(v: &[Message]) -> Vec<u64> {
        v.iter().map(|m| m.seq.0).collect()
    }

    #[test]
    fn keeps_newest_per_conversation() {
        let mut c = RecentCache::new(1 << 20, 3, HashState::new(&[0; 32]));
        for s in 1..=5 {
            c.push(s, msg(1, s, 10));
        }
        assert_eq!(c.first_seq(ConversationId(1)), Some(Seq(3)));
        assert_eq!(
            seqs(&c.range(ConversationId(1), Seq(1), Seq(9))),
            vec![3, 4, 5]
        );
        assert_eq!(seqs(&c.range(ConversationId(1), Seq(4), Seq(4))), vec![4]);
        assert!(c.range(ConversationId(1), Seq(6), Seq(9)).is_empty());
        assert!(c.range(ConversationId(2), Seq(1), Seq(9)).is_empty());
        assert_eq!(
            c.bytes(),
            3 * (10 + crate::constants::MESSAGE_OVERHEAD_BYTES)
        );
    }

    #[test]
    fn evicts_least_recently_written_whole() {
        let one = 100 + crate::constants::MESSAGE_OVERHEAD_BYTES;
        let mut c = RecentCache::new(3 * one, 10, HashState::new(&[0; 32]));
        c.push(1, msg(1, 1, 100));
        c.push(2, msg(2, 1, 100));
        c.push(3, msg(1, 2, 100));
        c.push(4, msg(3, 1, 100)); // over budget: conversation 2 is oldest
        assert_eq!(c.first_seq(ConversationId(2)), None);
        assert_eq!(c.first_seq(ConversationId(1)), Some(Seq(1)));
        assert_eq!(c.bytes(), 3 * one);
        let exported = c.export();
        let mut d = RecentCache::new(3 * one, 10, HashState::new(&[1; 32]));
        for (conv, stamp, msgs) in exported.clone() {
            d.import(conv, stamp, msgs);
        }
        assert_eq!(d.export(), exported);
        assert_eq!(d.bytes(), c.bytes());
    }
}
