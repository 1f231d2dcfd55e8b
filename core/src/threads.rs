//! Threads (issue 17, part 2), the owner's side: replies and thread pages,
//! kept as `impl OwnerRole` here (like `changes.rs`) so `owner.rs` stays
//! as it was.
//!
//! A reply is a message in the conversation's own sequence (the next seq,
//! the same durability, dedup, fanout, notification hand-off and history
//! store) stored as a `ReplyPosted` record: the `MessagePosted` fields
//! plus its root's seq and whether it is also shown in the channel.
//! `OwnerRole::post` sequences both; [`check_root`] is the one extra
//! check: the root is an earlier message of the conversation (not a
//! change, not a reply) and not deleted.
//!
//! A thread page (`Request::Thread`) is the root (when the cursor is below
//! it) and up to THREAD_PAGE_MAX replies after the cursor, from the recent
//! cache or one read of the history store over at most
//! THREAD_READ_SPAN_MAX seqs (root and replies are not contiguous; the
//! page stops early rather than read more). Authorization is History's: a
//! reader who may not read the conversation gets `NotFound`.

use crate::api::{Effect, ReadToken};
use crate::auth::Access;
use crate::commit::Ctx;
use crate::constants::{
    HISTORY_PAGE_BYTES_MAX, LIVE_MESSAGES_PER_CONVERSATION_MAX, PENDING_READS_MAX, THREAD_PAGE_MAX,
    THREAD_READ_SPAN_MAX,
};
use crate::owner::{fit_bytes, OwnerRole, PendingRead};
use crate::peer::owner::ThreadPage;
use crate::record::{MessageRecord, Record, ReplyRecord};
use crate::state::{message_of, reply_of, Conversation};
use crate::types::{ChangeKind, Message, Reject, Response, Seq, Thread, UnavailableCause};

/// Whether a reply may start or join `root`'s thread: `root` is a message
/// of `c` (sequenced, durable or not), not a change, not a reply, not
/// deleted (durably or by a delete not yet durable), and the owner can
/// keep its summary (LIVE_MESSAGES_PER_CONVERSATION_MAX).
pub(crate) fn check_root(c: &Conversation, root: Seq) -> Result<(), Reject> {
    if root.0 == 0 || root > c.head {
        return Err(Reject::NotFound);
    }
    if c.is_change(root) {
        return Err(Reject::Invalid(
            "root: an edit, delete or reaction, not a message".into(),
        ));
    }
    if c.is_reply(root) {
        return Err(Reject::Invalid(
            "root: a reply; reply in its root's thread".into(),
        ));
    }
    let entry = c.live.get(&root.0);
    let deleted = entry.is_some_and(|e| e.live.deleted)
        || c.unsettled_changes.iter().any(|(_, e)| {
            e.change
                .is_some_and(|ch| ch.kind == ChangeKind::Delete && ch.target == root)
        });
    if deleted {
        return Err(Reject::NotFound);
    }
    if entry.is_none() && c.live.len() >= LIVE_MESSAGES_PER_CONVERSATION_MAX {
        return Err(Reject::TooLarge(format!(
            "conversation: more than LIVE_MESSAGES_PER_CONVERSATION_MAX \
             ({LIVE_MESSAGES_PER_CONVERSATION_MAX}) changed messages or thread roots"
        )));
    }
    Ok(())
}

/// The record of a post and the event fanned out: `MessagePosted`, or
/// `ReplyPosted` for a reply.
pub(crate) fn post_record(posted: MessageRecord, thread: Option<Thread>) -> (Record, Message) {
    match thread {
        None => {
            let message = message_of(&posted);
            (Record::MessagePosted(posted), message)
        }
        Some(t) => {
            let reply = ReplyRecord {
                message: posted,
                root: t.root.0,
                in_channel: t.in_channel,
            };
            let message = reply_of(&reply);
            (Record::ReplyPosted(Box::new(reply)), message)
        }
    }
}

/// The seqs a thread page serves (ascending): the root when `after` is
/// below it, then the replies after `after` (at or below the visible
/// `head`), at most `limit` of them, all within THREAD_READ_SPAN_MAX seqs
/// of the first (at least one).
fn page_seqs(c: &Conversation, root: Seq, after: Seq, head: Seq, limit: u32) -> Vec<u64> {
    let limit = limit.clamp(1, THREAD_PAGE_MAX) as usize;
    let replies = c.threads.get(&root.0).map_or(&[][..], Vec::as_slice);
    let from = replies.partition_point(|&s| s <= after.0);
    let to = replies.partition_point(|&s| s <= head.0);
    let mut keep = Vec::with_capacity(limit + 1);
    if after < root {
        keep.push(root.0);
    }
    for &s in replies.get(from..to).unwrap_or(&[]).iter().take(limit) {
        if keep
            .first()
            .is_some_and(|&first| s - first >= THREAD_READ_SPAN_MAX)
        {
            break;
        }
        keep.push(s);
    }
    keep
}

impl OwnerRole {
    /// C → O: a page of a thread.
    pub(crate) fn on_thread_page(&mut self, cx: &mut Ctx, m: ThreadPage, out: &mut Vec<Effect>) {
        let c = match Self::conversation_for(cx, m.conversation, m.who, Access::Read) {
            Ok(c) => c,
            Err(r) => return cx.reply(m.origin, Err(r), out),
        };
        let head = c.visible_head(cx.durable);
        if m.root.0 == 0 || m.root > head || c.is_change(m.root) || c.is_reply(m.root) {
            return cx.reply(m.origin, Err(Reject::NotFound), out);
        }
        let newest = c.newest_reply(m.root, head);
        let keep = page_seqs(c, m.root, m.after, head, m.limit);
        let (Some(&lo), Some(&hi)) = (keep.first(), keep.last()) else {
            let page = Response::Thread {
                messages: Vec::new(),
                head: newest,
            };
            return cx.reply(m.origin, Ok(page), out);
        };
        let cached = cx
            .state
            .cache
            .first_seq(m.conversation)
            .is_some_and(|f| f.0 <= lo);
        if cached {
            let mut messages = cx.state.cache.range(m.conversation, Seq(lo), Seq(hi));
            messages.retain(|x| keep.binary_search(&x.seq.0).is_ok());
            let messages = messages.into_iter().map(|x| c.present(x)).collect();
            let messages = fit_bytes(messages, HISTORY_PAGE_BYTES_MAX, false);
            let page = Response::Thread {
                messages,
                head: newest,
            };
            return cx.reply(m.origin, Ok(page), out);
        }
        if self.reads.is_full() {
            let r = Reject::unavailable(
                UnavailableCause::Overloaded,
                format!(
                    "too many history reads in flight (PENDING_READS_MAX = {PENDING_READS_MAX})"
                ),
            );
            return cx.reply(m.origin, Err(r), out);
        }
        let read = PendingRead {
            origin: m.origin,
            who: m.who,
            conversation: m.conversation,
            lo,
            hi,
            newest_first: false,
            head: newest.0,
            change: None,
            keep: Some(keep),
        };
        // Not full (checked above): history reads always answer.
        let Ok(token) = self.reads.insert(None, read) else {
            return;
        };
        cx.metrics.wal_reads += 1;
        out.push(Effect::ReadHistory {
            token: ReadToken(token),
            conversation: m.conversation,
            from: Seq(lo),
            to: Seq(hi),
        });
    }
}
