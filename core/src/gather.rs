//! Scatter-gathers at the home shard: `Sync`, `Boot` and
//! `ListConversations`.
//!
//! The home shard knows the user's conversations (derived list) and read
//! cursors; the owners know heads, mentions, previews and messages. A gather
//! sends one `Summaries` batch per owner shard (chunked to PEER_BATCH_MAX
//! items), collects the answers, and assembles a reply whose size is
//! bounded whatever the number of conversations:
//!
//! - `Sync`: every changed conversation's info; inline messages up to
//!   SYNC_INLINE_MESSAGES_MAX / SYNC_INLINE_BYTES_MAX in total, most
//!   recently active conversations first; beyond that a conversation is
//!   `truncated` and carries the newest messages that still fit (possibly
//!   none). Messages are always a gap-free run ending at the head.
//! - `Boot`: the home shard picks the page itself, ordering the user's
//!   conversations by the last activity the owners told it (`Activity`
//!   after each durable message, the info of `MemberAdded`, membership
//!   rounds), and asks the owners only about the page: infos, plus the
//!   newest messages of its first BOOT_PAGES_MAX conversations (within
//!   BOOT_MESSAGES_BYTES_MAX). The infos are sorted again by the activity
//!   they carry, so a page is always ordered by what it shows.
//! - `ListConversations`: the workspace shard's public channels plus the
//!   user's conversations.
//!
//! A gather whose owners do not all answer within REQUEST_TIMEOUT_MS is
//! answered `Unavailable` (cause `PeerTimeout`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::api::Effect;
use crate::commit::Action;
use crate::commit::Ctx;
use crate::constants::{
    BOOT_MESSAGES_BYTES_MAX, BOOT_OVERHEAD_BYTES, BOOT_PAGES_MAX, BOOT_PAGE_MESSAGES,
    BOOT_PAYLOAD_BYTES_MAX, BOOT_TOPIC_BYTES_MAX, LIST_CONVERSATIONS_MAX, PEER_BATCH_MAX,
    REQUEST_TIMEOUT_MS, SYNC_INLINE_BYTES_MAX, SYNC_INLINE_MESSAGES_MAX,
};
use crate::constants::{PENDING_GATHERS_MAX, PENDING_PROFILE_GATHERS_MAX};
use crate::home::HomeRole;
use crate::owner::fit_bytes;
use crate::peer::{self, GatherRequest, Origin, Summary, SummaryItem, SummaryMode, Who};
use crate::pending::PendingTable;
use crate::people::ProfileGather;
use crate::text::{info_bytes, message_bytes};
use crate::types::{
    BootPage, ConversationId, ConversationInfo, Message, Millis, Reject, Response, Seq, ShardId,
    SyncConversation, UnavailableCause, UserId,
};

/// The scatter-gathers' state at the home shard.
#[derive(Debug)]
pub(crate) struct GatherRole {
    /// Gathers waiting for the owners (at most PENDING_GATHERS_MAX).
    pub(crate) gathers: PendingTable<Gather>,
    /// `GetUsers` lookups waiting for home shards (at most
    /// PENDING_PROFILE_GATHERS_MAX; see `crate::people`).
    pub(crate) profiles: PendingTable<ProfileGather>,
}

impl GatherRole {
    /// Empty, for a shard incarnation.
    pub(crate) fn new(incarnation: u64) -> GatherRole {
        GatherRole {
            gathers: PendingTable::new(PENDING_GATHERS_MAX, incarnation),
            profiles: PendingTable::new(PENDING_PROFILE_GATHERS_MAX, incarnation),
        }
    }
}

/// An outstanding scatter-gather.
#[derive(Debug)]
pub(crate) struct Gather {
    origin: Origin,
    who: Who,
    outstanding: u32,
    summaries: Vec<Summary>,
    phase: Phase,
    /// The items of the current phase as sent to the owners (for a re-ask
    /// after a storage failure, see `advance_gather`).
    items: Vec<SummaryItem>,
    /// The items' read cursors were chosen after a storage failure
    /// (durable ones only).
    durable_reads: bool,
}

#[derive(Debug)]
enum Phase {
    Sync {
        named: BTreeMap<ConversationId, Seq>,
        /// The read cursors the client knows.
        reads: BTreeMap<ConversationId, Seq>,
    },
    Boot {
        /// The page's conversations, most recently active first as this
        /// shard last heard.
        page: Vec<ConversationId>,
        total: u32,
    },
    ListPublic,
    List,
}

/// Most recently active first; ties by id (deterministic).
/// An info as a `Boot` page carries it: topic and purpose cut to
/// BOOT_TOPIC_BYTES_MAX (issue 16, part 4), so the page keeps its bound.
fn boot_info(mut info: ConversationInfo) -> ConversationInfo {
    crate::text::cut(&mut info.settings.topic, BOOT_TOPIC_BYTES_MAX);
    crate::text::cut(&mut info.settings.purpose, BOOT_TOPIC_BYTES_MAX);
    info
}

fn by_activity(a: &ConversationInfo, b: &ConversationInfo) -> std::cmp::Ordering {
    b.last_activity
        .cmp(&a.last_activity)
        .then_with(|| a.id.cmp(&b.id))
}

/// Applies the inline budget of a `Sync` reply to its changed conversations
/// (already sorted by activity).
pub(crate) fn apply_sync_budget(changed: &mut [SyncConversation]) {
    let mut messages_left = SYNC_INLINE_MESSAGES_MAX;
    let mut bytes_left = SYNC_INLINE_BYTES_MAX;
    for c in changed.iter_mut() {
        let bytes: usize = c.messages.iter().map(message_bytes).sum();
        if c.messages.len() <= messages_left && bytes <= bytes_left {
            messages_left -= c.messages.len();
            bytes_left -= bytes;
            continue;
        }
        let kept = fit_bytes(std::mem::take(&mut c.messages), bytes_left, true);
        let skip = kept.len().saturating_sub(messages_left);
        c.messages = kept.into_iter().skip(skip).collect();
        c.truncated = true;
        messages_left -= c.messages.len();
        bytes_left -= c.messages.iter().map(message_bytes).sum::<usize>();
    }
}

impl GatherRole {
    /// Whether this home shard can start a gather for `user` now.
    fn gather_check(&self, cx: &Ctx, user: UserId) -> Result<(), Reject> {
        if !cx.state.users.contains_key(&user) {
            Err(Reject::NotFound)
        } else if !cx.is_ready() {
            Err(Reject::unavailable(
                UnavailableCause::Starting,
                "home shard is starting",
            ))
        } else if self.gathers.is_full() {
            Err(Reject::unavailable(
                UnavailableCause::Overloaded,
                "too many syncs in flight (PENDING_GATHERS_MAX)",
            ))
        } else {
            Ok(())
        }
    }

    pub(crate) fn on_gather(
        &mut self,
        cx: &mut Ctx,
        home: &HomeRole,
        m: peer::gather::Start,
        out: &mut Vec<Effect>,
    ) {
        let peer::gather::Start {
            origin,
            who,
            request,
        } = m;
        if let Err(r) = self.gather_check(cx, who.user) {
            return cx.reply(origin, Err(r), out);
        }
        let Some(user) = cx.state.users.get(&who.user) else {
            return;
        };
        let deadline = Millis(cx.now.0 + REQUEST_TIMEOUT_MS);
        let (phase, items) = match request {
            GatherRequest::Sync { cursors, reads } => {
                let (named, known_reads) = sync_cursors(cursors, &reads);
                let mut convs: Vec<ConversationId> = user.conversations.iter().copied().collect();
                convs.extend(named.keys().copied());
                convs.sort_unstable();
                convs.dedup();
                let items = convs
                    .into_iter()
                    .map(|c| SummaryItem {
                        conversation: c,
                        read: home.shown_cursor(cx, user, c),
                        mode: SummaryMode::Sync {
                            after: named.get(&c).copied().unwrap_or(Seq(0)),
                        },
                    })
                    .collect();
                (
                    Phase::Sync {
                        named,
                        reads: known_reads,
                    },
                    Some(items),
                )
            }
            GatherRequest::Boot { limit, offset } => {
                let page = self.boot_page(home, &user.conversations, limit, offset);
                let items = page
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| SummaryItem {
                        conversation: c,
                        read: home.shown_cursor(cx, user, c),
                        mode: if i < BOOT_PAGES_MAX {
                            SummaryMode::Page {
                                count: BOOT_PAGE_MESSAGES,
                            }
                        } else {
                            SummaryMode::Info
                        },
                    })
                    .collect();
                let total = user.conversations.len() as u32;
                (Phase::Boot { page, total }, Some(items))
            }
            GatherRequest::List => (Phase::ListPublic, None),
        };
        let gather = Gather {
            origin,
            who,
            outstanding: 0,
            summaries: Vec::new(),
            phase,
            items: Vec::new(),
            durable_reads: false,
        };
        // Not full (checked by `gather_check`).
        let Ok(id) = self.gathers.insert(Some(deadline), gather) else {
            return;
        };
        match items {
            Some(items) => self.scatter(cx, home, id, items, out),
            None => {
                if let Some(g) = self.gathers.get_mut(id) {
                    g.outstanding = 1;
                }
                let to = cx.workspace_shard(who.workspace);
                let body = peer::workspace::PublicChannels {
                    gather: self.gathers.ticket(id),
                    workspace: who.workspace,
                };
                cx.send_peer(to, body, out);
            }
        }
    }

    /// The conversations of a `Boot` page: `limit` of the user's
    /// conversations from `offset`, most recently active first (ties by
    /// id), by the activity this shard heard from the owners. O(n) map
    /// lookups and a selection, then a sort of the page: no owner is asked
    /// about conversations outside the page.
    fn boot_page(
        &self,
        home: &HomeRole,
        conversations: &BTreeSet<ConversationId>,
        limit: u32,
        offset: u32,
    ) -> Vec<ConversationId> {
        let offset = offset as usize;
        let end = offset
            .saturating_add(limit as usize)
            .min(conversations.len());
        if offset >= end {
            return Vec::new();
        }
        let mut keys: Vec<(Reverse<Millis>, ConversationId)> = conversations
            .iter()
            .map(|&c| (Reverse(home.activity_of(c)), c))
            .collect();
        if end < keys.len() {
            keys.select_nth_unstable(end);
            keys.truncate(end);
        }
        keys.sort_unstable();
        keys.into_iter().skip(offset).map(|(_, c)| c).collect()
    }

    /// Sends the items to their owners; finishes at once if there are none.
    fn scatter(
        &mut self,
        cx: &mut Ctx,
        home: &HomeRole,
        id: u64,
        items: Vec<SummaryItem>,
        out: &mut Vec<Effect>,
    ) {
        let Some(who) = self.gathers.get(id).map(|g| g.who) else {
            return;
        };
        let mut by_owner: BTreeMap<ShardId, Vec<SummaryItem>> = BTreeMap::new();
        for item in items {
            by_owner
                .entry(cx.owner_of(item.conversation))
                .or_default()
                .push(item);
        }
        let mut batches = Vec::new();
        for (owner, items) in by_owner {
            for chunk in items.chunks(PEER_BATCH_MAX) {
                batches.push((owner, chunk.to_vec()));
            }
        }
        let durable_reads = cx.storage_failed.is_some();
        if let Some(g) = self.gathers.get_mut(id) {
            g.outstanding = batches.len() as u32;
            g.durable_reads = durable_reads;
            g.items = batches
                .iter()
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
        }
        if batches.is_empty() {
            return self.advance_gather(cx, home, id, out);
        }
        for (owner, items) in batches {
            let body = peer::owner::Summaries {
                gather: self.gathers.ticket(id),
                who,
                items,
            };
            cx.send_peer(owner, body, out);
        }
    }

    pub(crate) fn on_summaries_reply(
        &mut self,
        cx: &mut Ctx,
        home: &HomeRole,
        m: peer::gather::SummariesReply,
        out: &mut Vec<Effect>,
    ) {
        let peer::gather::SummariesReply {
            gather: ticket,
            summaries,
        } = m;
        let Some(gather) = self.gathers.id_of(ticket) else {
            return; // For a gather of an earlier start.
        };
        let Some(g) = self.gathers.get_mut(gather) else {
            return; // Timed out meanwhile.
        };
        g.summaries.extend(summaries);
        g.outstanding = g.outstanding.saturating_sub(1);
        if g.outstanding == 0 {
            self.advance_gather(cx, home, gather, out);
        }
    }

    pub(crate) fn on_public_channels_reply(
        &mut self,
        cx: &mut Ctx,
        home: &HomeRole,
        m: peer::gather::PublicChannelsReply,
        out: &mut Vec<Effect>,
    ) {
        let peer::gather::PublicChannelsReply {
            gather: ticket,
            conversations: public,
        } = m;
        let Some(gather) = self.gathers.id_of(ticket) else {
            return;
        };
        let Some(g) = self.gathers.get_mut(gather) else {
            return;
        };
        if !matches!(g.phase, Phase::ListPublic) {
            return;
        }
        g.phase = Phase::List;
        let who = g.who;
        let Some(user) = cx.state.users.get(&who.user) else {
            return;
        };
        let mut convs: Vec<ConversationId> = user.conversations.iter().copied().collect();
        convs.extend(public);
        convs.sort_unstable();
        convs.dedup();
        let items = convs
            .into_iter()
            .map(|c| SummaryItem {
                conversation: c,
                read: home.shown_cursor(cx, user, c),
                mode: SummaryMode::Preview,
            })
            .collect();
        self.scatter(cx, home, gather, items, out);
    }

    pub(crate) fn expire_gathers(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        for (_, g) in self.gathers.expire(cx.now) {
            let r = Reject::unavailable(
                UnavailableCause::PeerTimeout,
                "an owner shard did not answer",
            );
            cx.reply(g.origin, Err(r), out);
        }
        self.expire_profile_gathers(cx, out);
    }

    /// Answers a gather once every record appended before is durable: the
    /// reply carries read cursors read from this shard's state, and must
    /// neither show a cursor a crash could undo nor overtake the
    /// `ReadCursor` events of earlier cursor moves.
    ///
    /// Once this shard's storage failed, nothing appended after its last
    /// durable batch ever becomes durable in this process, so waiting would
    /// leave every read of the shard's users unanswered until a restart
    /// (`after_durable` drops the action). The reply goes out at once
    /// instead: reads keep working on a full disk. Its messages and heads
    /// are durable (owners show only durable seqs, and membership as far as
    /// durable), and so are its read cursors: after the failure the owners
    /// are asked with durable cursors only (`HomeRole::shown_cursor`, asked
    /// again if the failure came while they counted). A cursor move whose
    /// record was in the failed batch does not show, so no restart can
    /// move a device's cursor back and the reply never overtakes the
    /// `ReadCursor` event of an earlier move still waiting for its batch
    /// (regression: seed 4820).
    fn gather_reply(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        result: Result<Response, Reject>,
        out: &mut Vec<Effect>,
    ) {
        if cx.storage_failed.is_some() {
            return cx.reply(origin, result, out);
        }
        cx.after_durable(Action::Reply { origin, result }, out);
    }

    /// After a storage failure that came while the owners were asked,
    /// the read cursors they counted unread and mentions from may include
    /// moves a restart undoes (the reply no longer waits for durability):
    /// asks again with the durable cursors. At most once per phase (the
    /// failure is sticky). Returns whether it asked again.
    fn reask_with_durable_reads(
        &mut self,
        cx: &mut Ctx,
        home: &HomeRole,
        id: u64,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(g) = self.gathers.get(id) else {
            return false;
        };
        if g.durable_reads || cx.storage_failed.is_none() {
            return false;
        }
        let Some(user) = cx.state.users.get(&g.who.user) else {
            return false;
        };
        let items: Vec<SummaryItem> = g
            .items
            .iter()
            .map(|item| SummaryItem {
                read: home.shown_cursor(cx, user, item.conversation),
                ..*item
            })
            .collect();
        if items.iter().zip(&g.items).all(|(a, b)| a.read == b.read) {
            return false;
        }
        if let Some(g) = self.gathers.get_mut(id) {
            g.summaries.clear();
        }
        self.scatter(cx, home, id, items, out);
        true
    }

    /// All answers of the current phase are in.
    fn advance_gather(&mut self, cx: &mut Ctx, home: &HomeRole, id: u64, out: &mut Vec<Effect>) {
        if self.reask_with_durable_reads(cx, home, id, out) {
            return;
        }
        let Some(mut g) = self.gathers.remove(id) else {
            return;
        };
        let summaries = std::mem::take(&mut g.summaries);
        match std::mem::replace(&mut g.phase, Phase::List) {
            Phase::Sync { named, reads } => {
                let mut changed = Vec::new();
                let mut gone = Vec::new();
                for s in summaries {
                    let known = named.get(&s.conversation).copied();
                    match s.info {
                        None => {
                            if known.is_some() {
                                gone.push(s.conversation);
                            }
                        }
                        Some(info) => {
                            // New to the client, its head moved, or its
                            // read state did (another device marked it
                            // read; then with no messages). Unread and
                            // mentions move only with the head or the
                            // read cursor.
                            let read_moved =
                                reads.get(&s.conversation).is_some_and(|&r| r != info.read);
                            if known.is_none_or(|k| info.head > k) || read_moved {
                                changed.push(SyncConversation {
                                    info,
                                    messages: s.messages,
                                    truncated: s.truncated,
                                });
                            }
                        }
                    }
                }
                changed.sort_by(|a, b| by_activity(&a.info, &b.info));
                apply_sync_budget(&mut changed);
                gone.sort_unstable();
                self.gather_reply(cx, g.origin, Ok(Response::Sync { changed, gone }), out);
            }
            Phase::Boot { page, total } => {
                // Infos as the owners answered them, sorted again by the
                // activity they carry: a message may have committed since
                // this shard last heard of it.
                let mut infos: Vec<ConversationInfo> = Vec::with_capacity(page.len());
                let mut by_id: BTreeMap<ConversationId, Vec<Message>> = BTreeMap::new();
                for s in summaries {
                    if let Some(info) = s.info {
                        infos.push(boot_info(info));
                        by_id.insert(s.conversation, s.messages);
                    }
                }
                infos.sort_by(by_activity);
                // Messages were asked for the first BOOT_PAGES_MAX as
                // ordered here; the same ones unless a race reordered them.
                let paged = &page[..BOOT_PAGES_MAX.min(page.len())];
                let mut budget = BOOT_MESSAGES_BYTES_MAX;
                let mut pages = Vec::new();
                for info in infos.iter().take(BOOT_PAGES_MAX) {
                    if !paged.contains(&info.id) {
                        continue;
                    }
                    let Some(messages) = by_id.remove(&info.id) else {
                        continue;
                    };
                    let kept = fit_bytes(messages, budget, true);
                    budget -= kept.iter().map(message_bytes).sum::<usize>();
                    pages.push((info.id, kept));
                }
                let Some(user) = cx.state.users.get(&g.who.user) else {
                    return;
                };
                debug_assert!(
                    BOOT_OVERHEAD_BYTES
                        + infos.iter().map(info_bytes).sum::<usize>()
                        + pages
                            .iter()
                            .flat_map(|(_, m)| m.iter().map(message_bytes))
                            .sum::<usize>()
                        <= BOOT_PAYLOAD_BYTES_MAX,
                    "boot page over BOOT_PAYLOAD_BYTES_MAX"
                );
                let boot = BootPage {
                    user: user.id,
                    user_name: user.name.clone(),
                    workspace: user.workspace,
                    workspace_name: user.workspace_name.clone(),
                    conversations: infos,
                    total,
                    pages,
                };
                self.gather_reply(cx, g.origin, Ok(Response::Boot(Box::new(boot))), out);
            }
            Phase::ListPublic | Phase::List => {
                let mut infos: Vec<ConversationInfo> =
                    summaries.into_iter().filter_map(|s| s.info).collect();
                infos.sort_by(by_activity);
                infos.truncate(LIST_CONVERSATIONS_MAX);
                self.gather_reply(cx, g.origin, Ok(Response::Conversations(infos)), out);
            }
        }
    }
}

impl GatherRole {
    /// The gather role's entry point: one message addressed to it.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx,
        home: &HomeRole,
        _from: ShardId,
        msg: peer::gather::GatherMsg,
        out: &mut Vec<Effect>,
    ) {
        use peer::gather::GatherMsg;
        match msg {
            GatherMsg::Start(m) => self.on_gather(cx, home, m, out),
            GatherMsg::PublicChannelsReply(m) => self.on_public_channels_reply(cx, home, m, out),
            GatherMsg::SummariesReply(m) => self.on_summaries_reply(cx, home, m, out),
            GatherMsg::UsersStart(m) => self.on_users_start(cx, m, out),
            GatherMsg::ProfilesReply(m) => self.on_profiles_reply(cx, m, out),
        }
    }
}

/// A `Sync`'s cursors and the read cursors it knows, per conversation (the
/// highest when one is named twice). `reads` is empty or one per cursor
/// (checked at the connection shard).
fn sync_cursors(
    cursors: Vec<(ConversationId, Seq)>,
    reads: &[Seq],
) -> (BTreeMap<ConversationId, Seq>, BTreeMap<ConversationId, Seq>) {
    let mut known_reads: BTreeMap<ConversationId, Seq> = BTreeMap::new();
    for (&(conv, _), &seq) in cursors.iter().zip(reads) {
        let e = known_reads.entry(conv).or_insert(seq);
        *e = (*e).max(seq);
    }
    let mut named: BTreeMap<ConversationId, Seq> = BTreeMap::new();
    for (conv, seq) in cursors {
        let e = named.entry(conv).or_insert(seq);
        *e = (*e).max(seq);
    }
    (named, known_reads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Broadcast, ConversationKind, Message, UserId};

    fn conv(id: u64, n: usize, body: usize) -> SyncConversation {
        let messages = (1..=n as u64)
            .map(|s| Message {
                conversation: ConversationId(id),
                seq: Seq(s),
                sender: UserId(1),
                client_msg_id: 0,
                ts: Millis(0),
                body: "b".repeat(body),
                mentions: vec![],
                broadcast: Broadcast::None,
                change: None,
                live: crate::types::Live::default(),
                thread: None,
            })
            .collect();
        SyncConversation {
            info: ConversationInfo {
                id: ConversationId(id),
                kind: ConversationKind::PublicChannel,
                name: String::new(),
                members: vec![],
                member_count: 1,
                head: Seq(n as u64),
                read: Seq(0),
                unread: n as u64,
                mentions: 0,
                member: true,
                last_activity: Millis(0),
                preview: None,
                settings: Default::default(),
            },
            messages,
            truncated: false,
        }
    }

    /// (messages per conversation, body bytes) → (kept, truncated) per
    /// conversation.
    fn check(input: &[(usize, usize)], expected: &[(usize, bool)]) {
        let mut changed: Vec<SyncConversation> = input
            .iter()
            .enumerate()
            .map(|(i, &(n, b))| conv(i as u64, n, b))
            .collect();
        apply_sync_budget(&mut changed);
        let got: Vec<(usize, bool)> = changed
            .iter()
            .map(|c| (c.messages.len(), c.truncated))
            .collect();
        assert_eq!(got, expected, "{input:?}");
        for c in &changed {
            // Always a contiguous run ending at the head.
            if let Some(last) = c.messages.last() {
                assert_eq!(last.seq, c.info.head);
            }
            assert!(c.messages.windows(2).all(|w| w[0].seq.0 + 1 == w[1].seq.0));
        }
        let total: usize = changed.iter().map(|c| c.messages.len()).sum();
        assert!(total <= SYNC_INLINE_MESSAGES_MAX);
    }

    #[test]
    fn sync_budget() {
        check(&[(10, 10), (5, 10)], &[(10, false), (5, false)]);
        check(&[(20, 10); 60], &{
            let mut v = vec![(20, false); 50];
            v.extend([(0, true); 10]);
            v
        });
        check(&[(990, 1), (20, 1)], &[(990, false), (10, true)]);
        // Bytes: 1 MiB of 16 KiB bodies is 63 messages.
        check(&[(100, 16 * 1024)], &[(63, true)]);
    }
}
