//! The owner shard's role for its conversations: membership, the sequencer,
//! history, summaries for scatter-gathers, and interest.
//!
//! Send path: authorize → dedup window (a retry gets the original ack, once
//! the original is durable) → `seq = head + 1` → append `MessagePosted` →
//! on durability: ack, fan out to interested shards, advance the sender's
//! read cursor. The notification hand-off (issue 6) runs right after the
//! fanout ([`OwnerRole::fanout`]; the shard runs both): it is the commit
//! point of a message.
//!
//! History: pages are served from the recent cache when it covers them, and
//! otherwise read back from the shard's history store by conversation and
//! seq (`Effect::ReadHistory`), then authorized again before the answer
//! leaves. The core keeps no per-message index: the store has its own, on
//! disk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::{Effect, ReadToken};
use crate::auth::{authorize, Access};
use crate::bitset::ShardSet;
use crate::commit::Action;
use crate::commit::Ctx;
use crate::constants::{
    DM_OPEN_WAITERS_MAX, HISTORY_PAGE_BYTES_MAX, HISTORY_PAGE_MAX, MEMBERS_PER_CONVERSATION_MAX,
    PEER_BATCH_MAX, REQUEST_TIMEOUT_MS, SYNC_GAP_INLINE_MAX, SYNC_PAGE_MESSAGES,
};
use crate::constants::{PENDING_DM_OPENS_MAX, PENDING_READS_MAX};
use crate::hash::{HashState, Map};
use crate::ids::dm_slot;
use crate::notifier::NotifierRole;
use crate::peer::{self, Actor, Origin, Summary, SummaryItem, SummaryMode, Who};
use crate::pending::PendingTable;
use crate::record::{MessageRecord, Record, StoredBroadcast};
use crate::state::DmKey;
use crate::state::{change_of, message_of, reply_of, Conversation};
use crate::text::{message_bytes, preview};
use crate::types::{
    Broadcast, ConversationId, ConversationInfo, ConversationKind, Event, HistoryAnchor, Message,
    Millis, Reject, Response, Seq, ShardId, Thread, UnavailableCause, UserId,
};

/// The owner role's state (memory only; the conversations themselves are
/// in the persistent state): history reads and DM creations in flight, and
/// the restarted home shards owed a membership round.
#[derive(Debug)]
pub(crate) struct OwnerRole {
    /// History pages waiting for WAL reads, by read token (at most
    /// PENDING_READS_MAX).
    pub(crate) reads: PendingTable<PendingRead>,
    /// DM creations waiting for their members' home shards (at most
    /// PENDING_DM_OPENS_MAX).
    pub(crate) dm_opens: PendingTable<DmOpen>,
    /// The pending creation of each member set (one entry per `dm_opens`
    /// entry), so concurrent opens wait on one creation.
    pub(crate) dm_open_keys: Map<DmKey, u64>,
    /// Restarted home shards owed a membership round (sent at the next
    /// tick, one scan for all of them).
    pub(crate) rounds_due: ShardSet,
}

impl OwnerRole {
    /// Empty, for a shard incarnation.
    pub(crate) fn new(hash: HashState, incarnation: u64) -> OwnerRole {
        OwnerRole {
            reads: PendingTable::new(PENDING_READS_MAX, incarnation),
            dm_opens: PendingTable::new(PENDING_DM_OPENS_MAX, incarnation),
            dm_open_keys: hash.map(),
            rounds_due: ShardSet::new(),
        }
    }
}

/// A history page waiting for WAL reads.
#[derive(Debug)]
pub(crate) struct PendingRead {
    pub(crate) origin: Origin,
    pub(crate) who: Who,
    pub(crate) conversation: ConversationId,
    /// The page's seq range, inclusive.
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    /// Keep the newest messages when the byte budget cuts the page.
    pub(crate) newest_first: bool,
    pub(crate) head: u64,
    /// Issue 17: a change waiting for its target's author and time (the
    /// read is of the target alone); `None` for a history page.
    pub(crate) change: Option<Box<peer::owner::ChangeMessage>>,
    /// Threads (issue 17, part 2): a thread page keeps only these seqs of
    /// the range read (the root and the page's replies); `None` for a
    /// history page.
    pub(crate) keep: Option<Vec<u64>>,
}

/// A DM creation waiting for its members' home shards.
#[derive(Debug)]
pub(crate) struct DmOpen {
    pub(crate) key: DmKey,
    pub(crate) waiters: Vec<(Origin, UserId)>,
    pub(crate) unverified: BTreeSet<UserId>,
}

/// Keeps the messages of a page that fit in `budget` bytes: the newest ones
/// when paging backwards, the oldest when paging forwards. Stays contiguous.
pub(crate) fn fit_bytes(messages: Vec<Message>, budget: usize, newest_first: bool) -> Vec<Message> {
    let mut used = 0usize;
    let mut keep = 0usize;
    let sizes: Vec<usize> = messages.iter().map(message_bytes).collect();
    let order: Box<dyn Iterator<Item = &usize>> = if newest_first {
        Box::new(sizes.iter().rev())
    } else {
        Box::new(sizes.iter())
    };
    for size in order {
        if used + size > budget {
            break;
        }
        used += size;
        keep += 1;
    }
    let n = messages.len();
    if newest_first {
        messages.into_iter().skip(n - keep).collect()
    } else {
        messages.into_iter().take(keep).collect()
    }
}

impl OwnerRole {
    /// The conversation's info for `user` with read cursor `read` (as far
    /// as durable: head, preview and counters never reflect records that
    /// are not durable yet).
    pub(crate) fn info_for(
        &self,
        cx: &Ctx,
        conv: &Conversation,
        user: UserId,
        read: Seq,
        member: bool,
    ) -> ConversationInfo {
        let head = conv.visible_head(cx.durable);
        let read = if member { read.min(head) } else { Seq(0) };
        let (last_activity, preview_text) = if head == conv.head {
            (conv.last_activity, conv.preview.clone())
        } else {
            match newest_post(cx, conv, head) {
                Some(m) => (m.ts, Some(preview(&m.body)).filter(|_| !m.live.deleted)),
                None => (conv.created, None),
            }
        };
        debug_assert_eq!(last_activity, self.visible_activity(cx, conv));
        let unread = if member {
            conv.messages_between(read, head)
        } else {
            0
        };
        let mentions = if member {
            conv.mention_count(user, read, head)
        } else {
            0
        };
        ConversationInfo {
            id: conv.id,
            kind: conv.kind,
            name: conv.name.clone(),
            members: if conv.is_dm() {
                conv.sorted_members()
            } else {
                Vec::new()
            },
            member_count: conv.members.len() as u32,
            head,
            read,
            unread,
            mentions,
            member,
            last_activity,
            preview: if head.0 == 0 { None } else { preview_text },
            settings: Box::new(conv.settings.clone()),
        }
    }

    /// The conversation's last activity as readers see it: the time of the
    /// newest durable message (or of the creation). The same value as
    /// [`OwnerRole::info_for`]'s `last_activity`; home shards order `Boot`
    /// pages by it (see `HomeRole::on_activity`).
    pub(crate) fn visible_activity(&self, cx: &Ctx, conv: &Conversation) -> Millis {
        let head = conv.visible_head(cx.durable);
        if head == conv.head {
            return conv.last_activity;
        }
        newest_post(cx, conv, head).map_or(conv.created, |m| m.ts)
    }

    pub(crate) fn conversation_for(
        cx: &Ctx,
        conv: ConversationId,
        who: Who,
        access: Access,
    ) -> Result<&Conversation, Reject> {
        let c = cx.state.conversations.get(&conv).ok_or(Reject::NotFound)?;
        authorize(c, who, access, cx.durable)?;
        Ok(c)
    }

    // ----- Interest -----------------------------------------------------------

    pub(crate) fn on_watch(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::owner::Watch,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::Watch { nonce, items } = m;
        let durable = cx.durable;
        let mut verdicts = Vec::with_capacity(items.len());
        for (who, conv) in items {
            let ok = match cx.state.conversations.get_mut(&conv) {
                Some(c) if authorize(c, who, Access::Member, durable).is_ok() => {
                    c.interested.insert(from);
                    true
                }
                _ => false,
            };
            verdicts.push((who.user, conv, ok));
        }
        cx.send_peer(from, peer::conn::WatchReply { nonce, verdicts }, out);
    }

    pub(crate) fn on_unwatch(&mut self, cx: &mut Ctx, from: ShardId, m: peer::owner::Unwatch) {
        let peer::owner::Unwatch { conversation } = m;
        if let Some(c) = cx.state.conversations.get_mut(&conversation) {
            c.interested.remove(from);
        }
    }

    /// Shard `shard` restarted: its subscriptions are gone.
    pub(crate) fn clear_interest_of(&mut self, cx: &mut Ctx, shard: ShardId) {
        for c in cx.state.conversations.values_mut() {
            c.interested.remove(shard);
        }
    }

    /// The commit point of a conversation event: one message per interested
    /// shard, sharing one `Arc<Event>`.
    pub(crate) fn fanout(
        &mut self,
        cx: &mut Ctx,
        conversation: ConversationId,
        event: Arc<Event>,
        out: &mut Vec<Effect>,
    ) {
        let Some(c) = cx.state.conversations.get(&conversation) else {
            return;
        };
        let shards: Vec<ShardId> = c.interested.iter().collect();
        let homes: Vec<ShardId> = c.homes.iter().collect();
        for shard in shards {
            cx.metrics.fanout_messages += 1;
            let body = peer::conn::Fanout {
                conversation,
                event: event.clone(),
            };
            cx.send_peer(shard, body, out);
        }
        // The members' home shards order their `Boot` pages by activity:
        // one message per home shard, in O(shards) whatever the member count.
        // Changes (issue 17) are no activity.
        if let Some(m) = crate::types::posted(event.as_ref()) {
            for home in homes {
                let body = peer::home::Activity {
                    conversation,
                    at: m.ts,
                };
                cx.send_peer(home, body, out);
            }
        }
    }

    /// Sends each home shard in `to` every durable membership of its users
    /// in this shard's conversations (see `on_membership_round`), with one
    /// scan of the memberships for all of them.
    pub(crate) fn send_membership_rounds(
        &mut self,
        cx: &mut Ctx,
        to: &ShardSet,
        out: &mut Vec<Effect>,
    ) {
        let durable = cx.durable;
        let count = cx.shard_count();
        let mut entries: BTreeMap<ShardId, Vec<(UserId, ConversationId, Millis)>> =
            to.iter().map(|s| (s, Vec::new())).collect();
        for c in cx.state.conversations.values() {
            let at = self.visible_activity(cx, c);
            for (user, m) in &c.members {
                if m.lsn > durable {
                    continue;
                }
                if let Some(bucket) = entries.get_mut(&crate::ids::shard_of(*user, count)) {
                    bucket.push((*user, c.id, at));
                }
            }
        }
        for (home, mut entries) in entries {
            entries.sort_unstable();
            let chunks: Vec<Vec<(UserId, ConversationId, Millis)>> = if entries.is_empty() {
                vec![Vec::new()]
            } else {
                entries.chunks(PEER_BATCH_MAX).map(<[_]>::to_vec).collect()
            };
            let n = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let body = peer::home::MembershipRound {
                    entries: chunk,
                    first: i == 0,
                    last: i + 1 == n,
                };
                cx.send_peer(home, body, out);
            }
        }
    }

    // ----- Messages -------------------------------------------------------------

    pub(crate) fn on_send(&mut self, cx: &mut Ctx, m: peer::owner::Send, out: &mut Vec<Effect>) {
        self.post(cx, m, None, out);
    }

    /// Sequences a message, or with `thread` a reply (issue 17, part 2:
    /// its root checked by `crate::threads::check_root` unless the send
    /// is a retry).
    pub(crate) fn post(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::Send,
        thread: Option<Thread>,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::Send {
            origin,
            who,
            conversation,
            client_msg_id,
            body,
            mentions,
            broadcast,
        } = m;
        let durable = cx.durable;
        let now = cx.now;
        let broadcast_limit = cx.config.notify.broadcast_members_max;
        let plan = Self::conversation_for(cx, conversation, who, Access::Post).and_then(|c| {
            Ok(match c.dedup.get(who.user, client_msg_id) {
                Some(original) => Err((original, original.seq <= c.visible_head(durable))),
                None => {
                    if let Some(t) = thread {
                        crate::threads::check_root(c, t.root)?;
                    }
                    let ignored = broadcast != Broadcast::None
                        && !crate::notify::broadcast_honored(
                            broadcast,
                            c.members.len(),
                            broadcast_limit,
                        );
                    Ok((Seq(c.head.0 + 1), now.max(c.last_activity), ignored))
                }
            })
        });
        let (seq, ts, broadcast_ignored) = match plan {
            Err(r) => return cx.reply(origin, Err(r), out),
            Ok(Err((original, visible))) => {
                return ack_retry(cx, origin, conversation, original, visible, out);
            }
            Ok(Ok(plan)) => plan,
        };
        if let Err(r) = cx.writable() {
            return cx.reply(origin, Err(r), out);
        }
        let posted = MessageRecord {
            conversation: conversation.0,
            seq: seq.0,
            sender: who.user.0,
            client_msg_id,
            ts: ts.0,
            body,
            mentions: mentions.iter().map(|u| u.0).collect(),
            broadcast: StoredBroadcast::from(broadcast),
            broadcast_ignored,
        };
        let (record, message) = crate::threads::post_record(posted, thread);
        let home = cx.home_of(who.user);
        let actions = vec![
            Action::Reply {
                origin,
                result: Ok(Response::SendAck {
                    conversation,
                    seq,
                    ts,
                    broadcast_ignored,
                }),
            },
            // `commit` below gives the record `next_lsn`.
            Action::fanout(conversation, cx.next_lsn, Event::Message(message)),
            // Sending marks everything up to one's own message read.
            Action::Peer {
                to: home,
                body: peer::home::SetCursor {
                    origin: None,
                    user: who.user,
                    conversation,
                    seq,
                }
                .into(),
            },
        ];
        cx.metrics.messages_sequenced += 1;
        cx.commit(record, actions, out);
    }

    pub(crate) fn on_history(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::History,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::History {
            origin,
            who,
            conversation,
            anchor,
            limit,
        } = m;
        let durable = cx.durable;
        let c = match Self::conversation_for(cx, conversation, who, Access::Read) {
            Ok(c) => c,
            Err(r) => return cx.reply(origin, Err(r), out),
        };
        let head = c.visible_head(durable).0;
        // Checked where the request entered; clamped again so no input can
        // underflow below.
        let limit = u64::from(limit.clamp(1, HISTORY_PAGE_MAX));
        let (lo, hi, newest_first) = match anchor {
            HistoryAnchor::Latest => (head.saturating_sub(limit - 1).max(1), head, true),
            HistoryAnchor::Before(s) => {
                let top = s.0.saturating_sub(1).min(head);
                (top.saturating_sub(limit - 1).max(1), top, true)
            }
            HistoryAnchor::After(s) => (
                s.0.saturating_add(1),
                head.min(s.0.saturating_add(limit)),
                false,
            ),
        };
        if lo > hi {
            let page = Response::History {
                messages: Vec::new(),
                head: Seq(head),
            };
            return cx.reply(origin, Ok(page), out);
        }
        let cached = cx
            .state
            .cache
            .first_seq(conversation)
            .is_some_and(|f| f.0 <= lo);
        if cached {
            let messages = cx.state.cache.range(conversation, Seq(lo), Seq(hi));
            let messages = messages.into_iter().map(|m| c.present(m)).collect();
            let messages = fit_bytes(messages, HISTORY_PAGE_BYTES_MAX, newest_first);
            let page = Response::History {
                messages,
                head: Seq(head),
            };
            return cx.reply(origin, Ok(page), out);
        }
        if self.reads.is_full() {
            let r = Reject::unavailable(
                UnavailableCause::Overloaded,
                "too many history reads in flight (PENDING_READS_MAX)",
            );
            return cx.reply(origin, Err(r), out);
        }
        // The whole page from the history store: simpler than stitching
        // with a cache that may change before the read completes.
        let read = PendingRead {
            origin,
            who,
            conversation,
            lo,
            hi,
            newest_first,
            head,
            change: None,
            keep: None,
        };
        // Not full (checked above): history reads always answer, no deadline.
        let Ok(token) = self.reads.insert(None, read) else {
            return;
        };
        cx.metrics.wal_reads += 1;
        out.push(Effect::ReadHistory {
            token: ReadToken(token),
            conversation,
            from: Seq(lo),
            to: Seq(hi),
        });
    }

    pub(crate) fn on_history_read(
        &mut self,
        cx: &mut Ctx,
        token: ReadToken,
        read: Vec<(Seq, bytes::Bytes)>,
        out: &mut Vec<Effect>,
    ) {
        let Some(p) = self.reads.remove(token.0) else {
            return;
        };
        let mut messages = Vec::with_capacity(read.len());
        let mut error = None;
        let asked = p.hi - p.lo + 1;
        if read.len() as u64 != asked {
            error = Some(format!(
                "the history store returned {} messages for {asked}",
                read.len()
            ));
        }
        for (i, (seq, payload)) in read.iter().enumerate() {
            if error.is_some() {
                break;
            }
            let expected_seq = p.lo + i as u64;
            match Record::decode_history(payload) {
                Ok(Record::MessagePosted(m))
                    if seq.0 == expected_seq
                        && m.conversation == p.conversation.0
                        && m.seq == expected_seq =>
                {
                    messages.push(message_of(&m));
                }
                Ok(Record::MessageChanged(c))
                    if seq.0 == expected_seq
                        && c.conversation == p.conversation.0
                        && c.seq == expected_seq =>
                {
                    messages.push(change_of(&c));
                }
                Ok(Record::ReplyPosted(r))
                    if seq.0 == expected_seq
                        && r.message.conversation == p.conversation.0
                        && r.message.seq == expected_seq =>
                {
                    messages.push(reply_of(&r));
                }
                Ok(_) => {
                    error = Some(format!(
                        "entry {} is not message {} of conversation {}",
                        seq.0, expected_seq, p.conversation.0
                    ))
                }
                Err(e) => error = Some(format!("message {}: {e}", seq.0)),
            }
        }
        if let Some(e) = error {
            cx.metrics.wal_read_errors += 1;
            let r = Reject::unavailable(
                UnavailableCause::ReadFailed,
                format!("history read failed: {e}"),
            );
            return cx.reply(p.origin, Err(r), out);
        }
        debug_assert_eq!(messages.len() as u64, asked);
        if let Some(change) = p.change {
            // Issue 17: the target of an edit or delete; every check again.
            let Some(t) = messages.first().filter(|t| t.change.is_none()) else {
                let r =
                    Reject::Invalid("target: an edit, delete or reaction, not a message".into());
                return cx.reply(p.origin, Err(r), out);
            };
            let target = (t.sender, t.ts);
            return self.change_checked(cx, *change, Some(target), out);
        }
        // Membership may have changed while the read was in flight.
        let c = match Self::conversation_for(cx, p.conversation, p.who, Access::Read) {
            Ok(c) => c,
            Err(r) => return cx.reply(p.origin, Err(r), out),
        };
        // Threads: a thread page keeps its root and replies only.
        if let Some(keep) = &p.keep {
            messages.retain(|m| keep.binary_search(&m.seq.0).is_ok());
        }
        // Issue 17: served in their current state (never a deleted body).
        let messages = messages.into_iter().map(|m| c.present(m)).collect();
        let messages = fit_bytes(messages, HISTORY_PAGE_BYTES_MAX, p.newest_first);
        let page = if p.keep.is_some() {
            Response::Thread {
                messages,
                head: Seq(p.head),
            }
        } else {
            Response::History {
                messages,
                head: Seq(p.head),
            }
        };
        cx.reply(p.origin, Ok(page), out);
    }

    pub(crate) fn on_mark_read(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::MarkRead,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::MarkRead {
            origin,
            who,
            conversation,
            seq,
        } = m;
        let durable = cx.durable;
        let head = match Self::conversation_for(cx, conversation, who, Access::Member) {
            Ok(c) => c.visible_head(durable),
            Err(r) => return cx.reply(origin, Err(r), out),
        };
        let home = cx.home_of(who.user);
        let body = peer::home::SetCursor {
            origin: Some(origin),
            user: who.user,
            conversation,
            seq: seq.min(head),
        };
        cx.send_peer(home, body, out);
    }

    pub(crate) fn on_set_notify(
        &mut self,
        cx: &mut Ctx,
        notifier: &mut NotifierRole,
        m: peer::owner::SetNotify,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::SetNotify {
            origin,
            who,
            conversation,
            level,
            muted,
        } = m;
        if let Err(r) = Self::conversation_for(cx, conversation, who, Access::Member) {
            return cx.reply(origin, Err(r), out);
        }
        if let Err(r) = notifier.reserve_notify_level(cx, conversation, who.user, level) {
            return cx.reply(origin, Err(r), out);
        }
        let home = cx.home_of(who.user);
        let body = peer::home::SetNotify {
            origin,
            user: who.user,
            conversation,
            level,
            muted,
        };
        cx.send_peer(home, body, out);
    }

    pub(crate) fn on_lookup_private(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::LookupPrivate,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::LookupPrivate {
            origin,
            who,
            conversation,
        } = m;
        let result = Self::conversation_for(cx, conversation, who, Access::Read)
            .map(|c| Response::Found { id: c.id.0 });
        cx.reply(origin, result, out);
    }

    // ----- Membership -------------------------------------------------------------

    pub(crate) fn on_create_channel(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::CreateChannel,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::CreateChannel {
            origin,
            conversation,
            workspace,
            name,
            private,
            creator,
        } = m;
        assert!(
            cx.state.owns(conversation),
            "channel created on the wrong owner"
        );
        let ws_shard = cx.workspace_shard(workspace);
        let ready = peer::workspace::ChannelReady {
            workspace,
            conversation,
        };
        if cx.state.conversations.contains_key(&conversation) {
            cx.after_durable(
                Action::Peer {
                    to: ws_shard,
                    body: ready.into(),
                },
                out,
            );
            if let Some(origin) = origin {
                let r = Action::Reply {
                    origin,
                    result: Err(Reject::AlreadyExists),
                };
                cx.after_durable(r, out);
            }
            return;
        }
        if let Err(r) = cx.writable() {
            if let Some(origin) = origin {
                cx.reply(origin, Err(r), out);
            }
            return;
        }
        let kind = if private {
            ConversationKind::PrivateChannel
        } else {
            ConversationKind::PublicChannel
        };
        let now = cx.now;
        let record = Record::ConversationCreated {
            conversation: conversation.0,
            workspace: workspace.0,
            kind: kind.into(),
            name: name.clone(),
            members: vec![creator.0],
            creator: Some(creator.0),
            ts: now.0,
        };
        let info = ConversationInfo {
            id: conversation,
            kind,
            name,
            members: Vec::new(),
            member_count: 1,
            head: Seq(0),
            read: Seq(0),
            unread: 0,
            mentions: 0,
            member: true,
            last_activity: now,
            preview: None,
            settings: Default::default(),
        };
        let home = cx.home_of(creator);
        let actions = vec![
            Action::Peer {
                to: ws_shard,
                body: ready.into(),
            },
            Action::Peer {
                to: home,
                body: peer::home::MemberAdded {
                    user: creator,
                    conversation,
                    info: Box::new(info),
                    origin,
                }
                .into(),
            },
        ];
        cx.commit(record, actions, out);
    }

    pub(crate) fn on_add_member(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::AddMember,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::AddMember {
            origin,
            actor,
            user,
            conversation,
            read,
        } = m;
        let join = actor.user == user;
        let access = if join { Access::Read } else { Access::Member };
        let (info, already) = match Self::conversation_for(cx, conversation, actor, access) {
            Err(r) => return cx.reply(origin, Err(r), out),
            Ok(c) => {
                if !join && c.is_dm() {
                    let r = Reject::Invalid("conversation: cannot invite to a DM".into());
                    return cx.reply(origin, Err(r), out);
                }
                let already = c.members.contains_key(&user);
                if !already && c.members.len() as u64 >= u64::from(MEMBERS_PER_CONVERSATION_MAX) {
                    let r = Reject::TooLarge(format!(
                        "members: more than MEMBERS_PER_CONVERSATION_MAX ({MEMBERS_PER_CONVERSATION_MAX})"
                    ));
                    return cx.reply(origin, Err(r), out);
                }
                (self.info_for(cx, c, user, read, true), already)
            }
        };
        let home = cx.home_of(user);
        let added = |origin: Option<Origin>, info: ConversationInfo| Action::Peer {
            to: home,
            body: peer::home::MemberAdded {
                user,
                conversation,
                info: Box::new(info),
                origin,
            }
            .into(),
        };
        if already {
            // Idempotent: answer as for the original, once it is durable.
            let action = if join {
                added(Some(origin), info)
            } else {
                Action::Reply {
                    origin,
                    result: Ok(Response::Done),
                }
            };
            return cx.after_durable(action, out);
        }
        if let Err(r) = cx.writable() {
            return cx.reply(origin, Err(r), out);
        }
        let record = Record::MemberAdded {
            conversation: conversation.0,
            user: user.0,
            ts: cx.now.0,
        };
        let actions = if join {
            vec![added(Some(origin), info)]
        } else {
            vec![
                Action::Reply {
                    origin,
                    result: Ok(Response::Done),
                },
                added(None, info),
            ]
        };
        cx.commit(record, actions, out);
    }

    pub(crate) fn on_remove_member(
        &mut self,
        cx: &mut Ctx,
        notifier: &mut NotifierRole,
        m: peer::owner::RemoveMember,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::RemoveMember {
            origin,
            actor,
            user,
            conversation,
        } = m;
        let check = (|| {
            let c = match actor {
                Actor::User(who) => {
                    let c = Self::conversation_for(cx, conversation, who, Access::Member)?;
                    // Workspace admins may remove anyone from a channel.
                    if who.user != user && c.creator != Some(who.user) && !who.role.is_admin() {
                        return Err(Reject::NotAdmin);
                    }
                    c
                }
                Actor::Admin => cx
                    .state
                    .conversations
                    .get(&conversation)
                    .ok_or(Reject::NotFound)?,
            };
            if c.is_dm() {
                return Err(Reject::Invalid(
                    "conversation: members cannot leave or be removed from a DM".into(),
                ));
            }
            if !c.members.contains_key(&user) {
                return Err(Reject::NotFound);
            }
            cx.writable()
        })();
        if let Err(r) = check {
            return cx.reply(origin, Err(r), out);
        }
        Self::commit_removal(cx, notifier, conversation, user, Some(origin), out);
    }

    /// H → O: a deactivated user leaves a channel (no answer; DMs, unknown
    /// conversations and non-members are left as they are).
    pub(crate) fn on_evict(
        &mut self,
        cx: &mut Ctx,
        notifier: &mut NotifierRole,
        m: peer::owner::Evict,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::Evict { user, conversation } = m;
        let due = cx
            .state
            .conversations
            .get(&conversation)
            .is_some_and(|c| !c.is_dm() && c.members.contains_key(&user));
        if due && cx.writable().is_ok() {
            Self::commit_removal(cx, notifier, conversation, user, None, out);
        }
    }

    /// Appends `MemberRemoved`, answers `origin` and tells the user's home
    /// shard once durable, and cuts the user's live stream at once.
    fn commit_removal(
        cx: &mut Ctx,
        notifier: &mut NotifierRole,
        conversation: ConversationId,
        user: UserId,
        origin: Option<Origin>,
        out: &mut Vec<Effect>,
    ) {
        let record = Record::MemberRemoved {
            conversation: conversation.0,
            user: user.0,
            ts: cx.now.0,
        };
        let home = cx.home_of(user);
        let mut actions = Vec::with_capacity(2);
        if let Some(origin) = origin {
            actions.push(Action::Reply {
                origin,
                result: Ok(Response::Done),
            });
        }
        actions.push(Action::Peer {
            to: home,
            body: peer::home::MemberRemoved { user, conversation }.into(),
        });
        cx.commit(record, actions, out);
        notifier.notify_member_gone(conversation, user);
        // A restriction acts at once: cut the user's live stream before any
        // later fanout (FIFO per shard pair).
        let shards: Vec<ShardId> = cx
            .state
            .conversations
            .get(&conversation)
            .map(|c| c.interested.iter().collect())
            .unwrap_or_default();
        for shard in shards {
            cx.send_peer(shard, peer::conn::Unsubscribed { conversation, user }, out);
        }
    }

    pub(crate) fn on_open_dm(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::OpenDm,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::OpenDm {
            origin,
            who,
            members,
        } = m;
        let key = (who.workspace, members);
        if let Some(&id) = cx.state.dms.get(&key) {
            let action = match cx.state.conversations.get(&id) {
                Some(c) => {
                    let info = self.info_for(cx, c, who.user, Seq(0), true);
                    Action::Peer {
                        to: cx.home_of(who.user),
                        body: peer::home::MemberAdded {
                            user: who.user,
                            conversation: id,
                            info: Box::new(info),
                            origin: Some(origin),
                        }
                        .into(),
                    }
                }
                None => Action::Reply {
                    origin,
                    result: Err(Reject::NotFound),
                },
            };
            return cx.after_durable(action, out);
        }
        if let Some(&pending) = self.dm_open_keys.get(&key) {
            let full = self
                .dm_opens
                .get(pending)
                .is_none_or(|p| p.waiters.len() >= DM_OPEN_WAITERS_MAX);
            if full {
                let r = Reject::unavailable(
                    UnavailableCause::Overloaded,
                    "DM being created (DM_OPEN_WAITERS_MAX)",
                );
                return cx.reply(origin, Err(r), out);
            }
            if let Some(p) = self.dm_opens.get_mut(pending) {
                p.waiters.push((origin, who.user));
            }
            return;
        }
        if self.dm_opens.is_full() {
            let r = Reject::unavailable(
                UnavailableCause::Overloaded,
                "too many DM creations (PENDING_DM_OPENS_MAX)",
            );
            return cx.reply(origin, Err(r), out);
        }
        if let Err(r) = cx.writable() {
            return cx.reply(origin, Err(r), out);
        }
        let unverified: BTreeSet<UserId> =
            key.1.iter().copied().filter(|u| *u != who.user).collect();
        let open = DmOpen {
            key: key.clone(),
            waiters: vec![(origin, who.user)],
            unverified: unverified.clone(),
        };
        let deadline = crate::types::Millis(cx.now.0 + REQUEST_TIMEOUT_MS);
        // Not full (checked above).
        let Ok(id) = self.dm_opens.insert(Some(deadline), open) else {
            return;
        };
        self.dm_open_keys.insert(key, id);
        for &user in &unverified {
            let body = peer::home::VerifyMember {
                pending: self.dm_opens.ticket(id),
                user,
                workspace: who.workspace,
            };
            let to = cx.home_of(user);
            cx.send_peer(to, body, out);
        }
    }

    fn fail_dm_open(&mut self, cx: &mut Ctx, pending: u64, reject: Reject, out: &mut Vec<Effect>) {
        if let Some(p) = self.dm_opens.remove(pending) {
            self.dm_open_keys.remove(&p.key);
            for (origin, _) in p.waiters {
                cx.reply(origin, Err(reject.clone()), out);
            }
        }
    }

    pub(crate) fn expire_dm_opens(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        for (_, p) in self.dm_opens.expire(cx.now) {
            self.dm_open_keys.remove(&p.key);
            let r = Reject::unavailable(
                UnavailableCause::PeerTimeout,
                "a member's home shard did not answer",
            );
            for (origin, _) in p.waiters {
                cx.reply(origin, Err(r.clone()), out);
            }
        }
    }

    pub(crate) fn on_verify_reply(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::VerifyReply,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::VerifyReply {
            pending: ticket,
            user,
            ok,
        } = m;
        let Some(pending) = self.dm_opens.id_of(ticket) else {
            return;
        };
        let Some(p) = self.dm_opens.get_mut(pending) else {
            return;
        };
        if !ok {
            // A member that does not exist, is in another workspace or has
            // no room: indistinguishable from nonexistent.
            return self.fail_dm_open(cx, pending, Reject::NotFound, out);
        }
        p.unverified.remove(&user);
        if !p.unverified.is_empty() {
            return;
        }
        if let Err(r) = cx.writable() {
            return self.fail_dm_open(cx, pending, r, out);
        }
        let Some(p) = self.dm_opens.remove(pending) else {
            return;
        };
        self.dm_open_keys.remove(&p.key);
        let (workspace, members) = p.key;
        let slot = dm_slot(workspace, &members);
        assert_eq!(
            crate::ids::shard_of_slot(slot, cx.shard_count()),
            cx.me(),
            "DM opened on the wrong owner"
        );
        let Some(raw) = cx.state.ids.allocate(slot) else {
            let r = crate::directory::exhausted();
            for (origin, _) in p.waiters {
                cx.reply(origin, Err(r.clone()), out);
            }
            return;
        };
        let conversation = ConversationId(raw);
        let kind = if members.len() == 2 {
            ConversationKind::Dm
        } else {
            ConversationKind::GroupDm
        };
        let now = cx.now;
        let record = Record::ConversationCreated {
            conversation: raw,
            workspace: workspace.0,
            kind: kind.into(),
            name: String::new(),
            members: members.iter().map(|u| u.0).collect(),
            creator: None,
            ts: now.0,
        };
        let info = new_dm_info(conversation, kind, &members, now);
        let mut actions = Vec::new();
        for &member in &members {
            let to = cx.home_of(member);
            let origins: Vec<Origin> = p
                .waiters
                .iter()
                .filter(|(_, u)| *u == member)
                .map(|(o, _)| *o)
                .collect();
            let origins: Vec<Option<Origin>> = if origins.is_empty() {
                vec![None]
            } else {
                origins.into_iter().map(Some).collect()
            };
            for origin in origins {
                actions.push(Action::Peer {
                    to,
                    body: peer::home::MemberAdded {
                        user: member,
                        conversation,
                        info: Box::new(info.clone()),
                        origin,
                    }
                    .into(),
                });
            }
        }
        cx.commit(record, actions, out);
    }

    // ----- Summaries -----------------------------------------------------------

    pub(crate) fn on_summaries(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::owner::Summaries,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::Summaries { gather, who, items } = m;
        let summaries = items
            .iter()
            .map(|item| self.summarize(cx, who, item))
            .collect();
        cx.send_peer(
            from,
            peer::gather::SummariesReply { gather, summaries },
            out,
        );
    }

    fn summarize(&self, cx: &Ctx, who: Who, item: &SummaryItem) -> Summary {
        let conversation = item.conversation;
        let none = Summary {
            conversation,
            info: None,
            messages: Vec::new(),
            truncated: false,
        };
        let Some(c) = cx.state.conversations.get(&conversation) else {
            return none;
        };
        if authorize(c, who, Access::Member, cx.durable).is_err() {
            if item.mode == SummaryMode::Preview
                && authorize(c, who, Access::Read, cx.durable).is_ok()
            {
                return Summary {
                    info: Some(self.info_for(cx, c, who.user, Seq(0), false)),
                    ..none
                };
            }
            return none;
        }
        let info = self.info_for(cx, c, who.user, item.read, true);
        let head = info.head.0;
        let cache = &cx.state.cache;
        let (messages, truncated) = match item.mode {
            SummaryMode::Info | SummaryMode::Preview => (Vec::new(), false),
            SummaryMode::Sync { after } if head > after.0 => {
                let gap = head - after.0;
                let covered = cache
                    .first_seq(conversation)
                    .is_some_and(|f| f.0 <= after.0 + 1);
                if gap <= SYNC_GAP_INLINE_MAX as u64 && covered {
                    (
                        cache.range(conversation, Seq(after.0 + 1), Seq(head)),
                        false,
                    )
                } else {
                    let lo = (after.0 + 1).max(head.saturating_sub(SYNC_PAGE_MESSAGES as u64 - 1));
                    (cache.range(conversation, Seq(lo), Seq(head)), true)
                }
            }
            SummaryMode::Sync { .. } => (Vec::new(), false),
            SummaryMode::Page { count } => {
                let lo = head.saturating_sub(count as u64 - 1).max(1);
                (cache.range(conversation, Seq(lo), Seq(head)), false)
            }
        };
        // Issue 17: served in their current state (never a deleted body).
        let messages = messages.into_iter().map(|m| c.present(m)).collect();
        Summary {
            conversation,
            info: Some(info),
            messages,
            truncated,
        }
    }
}

impl OwnerRole {
    /// The owner role's entry point: one message addressed to it.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx,
        notifier: &mut NotifierRole,
        from: ShardId,
        msg: peer::owner::OwnerMsg,
        out: &mut Vec<Effect>,
    ) {
        use peer::owner::OwnerMsg;
        match msg {
            OwnerMsg::Watch(m) => self.on_watch(cx, from, m, out),
            OwnerMsg::Unwatch(m) => self.on_unwatch(cx, from, m),
            OwnerMsg::CreateChannel(m) => self.on_create_channel(cx, m, out),
            OwnerMsg::LookupPrivate(m) => self.on_lookup_private(cx, m, out),
            OwnerMsg::AddMember(m) => self.on_add_member(cx, m, out),
            OwnerMsg::RemoveMember(m) => self.on_remove_member(cx, notifier, m, out),
            OwnerMsg::OpenDm(m) => self.on_open_dm(cx, m, out),
            OwnerMsg::VerifyReply(m) => self.on_verify_reply(cx, m, out),
            OwnerMsg::Send(m) => self.on_send(cx, m, out),
            OwnerMsg::History(m) => self.on_history(cx, m, out),
            OwnerMsg::MarkRead(m) => self.on_mark_read(cx, m, out),
            OwnerMsg::SetNotify(m) => self.on_set_notify(cx, notifier, m, out),
            OwnerMsg::Summaries(m) => self.on_summaries(cx, from, m, out),
            OwnerMsg::ListMembers(m) => self.on_list_members(cx, m, out),
            OwnerMsg::Evict(m) => self.on_evict(cx, notifier, m, out),
            OwnerMsg::ChangeMessage(m) => self.on_change_message(cx, m, out),
            OwnerMsg::ApplyRename(m) => self.on_apply_rename(cx, m, out),
            OwnerMsg::PostReply(m) => {
                let thread = Thread {
                    root: m.root,
                    in_channel: m.in_channel,
                };
                self.post(cx, m.send, Some(thread), out)
            }
            OwnerMsg::ThreadPage(m) => self.on_thread_page(cx, m, out),
            OwnerMsg::ListPins(m) => self.on_list_pins(cx, m, out),
            OwnerMsg::Typing(m) => self.on_typing(cx, m, out),
        }
    }
}

/// A retried send or reply (same key): the original ack, once the
/// original is durable.
fn ack_retry(
    cx: &mut Ctx,
    origin: Origin,
    conversation: ConversationId,
    original: crate::state::DedupEntry,
    visible: bool,
    out: &mut Vec<Effect>,
) {
    cx.metrics.sends_deduplicated += 1;
    let ack = Action::Reply {
        origin,
        result: Ok(Response::SendAck {
            conversation,
            seq: original.seq,
            ts: original.ts,
            broadcast_ignored: original.broadcast_ignored,
        }),
    };
    if visible {
        cx.run_action(ack, out);
    } else {
        cx.after_durable(ack, out);
    }
}

/// The newest message (not change) at or below `head`, in its current
/// state, from the recent cache (only asked for while the head is not
/// durable, so it is cached).
fn newest_post(cx: &Ctx, conv: &Conversation, head: Seq) -> Option<Message> {
    cx.state
        .cache
        .range(conv.id, Seq(1), head)
        .into_iter()
        .rev()
        .find(|m| m.change.is_none())
        .map(|m| conv.present(m))
}

/// A new DM's info as its members first see it: empty, read, just active.
fn new_dm_info(
    conversation: ConversationId,
    kind: ConversationKind,
    members: &[UserId],
    now: crate::types::Millis,
) -> ConversationInfo {
    ConversationInfo {
        id: conversation,
        kind,
        name: String::new(),
        members: members.to_vec(),
        member_count: members.len() as u32,
        head: Seq(0),
        read: Seq(0),
        unread: 0,
        mentions: 0,
        member: true,
        last_activity: now,
        preview: None,
        settings: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Millis;

    fn msg(seq: u64, len: usize) -> Message {
        Message {
            conversation: ConversationId(1),
            seq: Seq(seq),
            sender: UserId(1),
            client_msg_id: 0,
            ts: Millis(0),
            body: "x".repeat(len),
            mentions: vec![],
            broadcast: Broadcast::None,
            change: None,
            live: crate::types::Live::default(),
            thread: None,
        }
    }

    fn check(sizes: &[usize], budget: usize, newest_first: bool, expected: &[u64]) {
        let messages = sizes
            .iter()
            .enumerate()
            .map(|(i, &l)| msg(i as u64 + 1, l))
            .collect();
        let kept: Vec<u64> = fit_bytes(messages, budget, newest_first)
            .iter()
            .map(|m| m.seq.0)
            .collect();
        assert_eq!(
            kept, expected,
            "{sizes:?} budget {budget} newest_first {newest_first}"
        );
    }

    #[test]
    fn fit_bytes_keeps_a_contiguous_end() {
        let o = crate::constants::MESSAGE_OVERHEAD_BYTES;
        check(&[10, 10, 10], 3 * (10 + o), true, &[1, 2, 3]);
        check(&[10, 10, 10], 2 * (10 + o), true, &[2, 3]);
        check(&[10, 10, 10], 2 * (10 + o), false, &[1, 2]);
        check(&[10, 1000, 10], 2 * (10 + o), true, &[3]);
        check(&[10, 1000, 10], 2 * (10 + o), false, &[1]);
        check(&[10], 5, true, &[]);
        check(&[], 5, false, &[]);
    }
}
