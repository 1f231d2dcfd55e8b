//! The ledger built from the durable records, and the invariants checked
//! against it as events happen, after recoveries and restores.

use std::collections::BTreeMap;

use courier_core::api::{
    ChangeKind, ConversationId, ConversationInfo, ConversationKind, Event, Lsn, Message, Millis,
    Response, Seq, ShardId, UserId, WorkspaceId,
};
use courier_core::record::{ChangeRecord, MessageRecord, Record};

/// The message of a `MessagePosted` or `ReplyPosted` record (threads,
/// issue 17 part 2), with the reply's (root, shown in the channel).
fn posted_of(rec: &Record) -> Option<(&MessageRecord, Option<(u64, bool)>)> {
    match rec {
        Record::MessagePosted(m) => Some((m, None)),
        Record::ReplyPosted(r) => Some((&r.message, Some((r.root, r.in_channel)))),
        _ => None,
    }
}
use courier_core::Shard;

use super::{config, Chaos, Down, Stored, World};

/// A message as the model knows it.
#[derive(Clone, Debug)]
pub struct Posted {
    pub shard: u16,
    pub lsn: u64,
    pub rec: MessageRecord,
    pub durable_at: Option<u64>,
    /// Threads: a reply's (root, shown in the channel).
    pub thread: Option<(u64, bool)>,
}

impl Posted {
    /// As clients see it, no changes applied.
    pub fn message(&self) -> Message {
        let mut m = message_of(&self.rec);
        m.thread = self
            .thread
            .map(|(root, in_channel)| courier_core::api::Thread {
                root: Seq(root),
                in_channel,
            });
        m
    }
}

/// A change of an earlier message (issue 17) as the model knows it.
#[derive(Clone, Debug)]
pub struct Changed {
    pub lsn: u64,
    pub rec: ChangeRecord,
    pub durable_at: Option<u64>,
}

/// What the durable logs say, updated as records are appended, made
/// durable, or lost in crashes.
#[derive(Default)]
pub struct Model {
    pub records: Vec<BTreeMap<u64, Record>>,
    pub messages: BTreeMap<(u64, u64), Posted>,
    /// Issue 17: changes, by (conversation, seq).
    pub changes: BTreeMap<(u64, u64), Changed>,
    pub durable_keys: BTreeMap<(u64, u64, u128), u64>,
    /// (conversation, user) → (step, member?) in durability order.
    pub membership: BTreeMap<(u64, u64), Vec<(u64, bool)>>,
    pub convs: BTreeMap<u64, (WorkspaceId, ConversationKind)>,
    pub users: BTreeMap<u64, WorkspaceId>,
    pub acked: BTreeMap<(u64, u64), (u64, u128)>,
    /// Messages delivered live: (conversation, seq) → (sender, key, ts).
    pub delivered: BTreeMap<(u64, u64), (u64, u128, u64)>,
    /// Durable read cursors: (user, conversation) → seq.
    pub cursors: BTreeMap<(u64, u64), u64>,
    /// When each read cursor move became durable: (user, conversation) →
    /// (step, seq), ascending.
    pub cursor_history: BTreeMap<(u64, u64), Vec<(u64, u64)>>,
    /// Statistics.
    pub acks: u64,
    pub live_events: u64,
    pub reads_checked: u64,
}

impl Model {
    pub(super) fn on_append(
        &mut self,
        shard: u16,
        lsn: u64,
        kind: u8,
        payload: &[u8],
    ) -> Option<Stored> {
        let rec = Record::decode(kind, payload).unwrap_or_else(|e| {
            panic!("shard {shard} appended an undecodable record at {lsn}: {e}")
        });
        let mut stored = None;
        if let Some((m, thread)) = posted_of(&rec) {
            if let Some((root, _)) = thread {
                let r = self.messages.get(&(m.conversation, root));
                assert!(
                    r.is_some_and(|r| r.thread.is_none()),
                    "reply {}/{} to {root}: not a message, or a reply",
                    m.conversation,
                    m.seq
                );
            }
            stored = Some(Stored {
                conversation: m.conversation,
                seq: m.seq,
                sender: m.sender,
                client_msg_id: m.client_msg_id,
                ts: m.ts,
                change: false,
            });
            let key = (m.conversation, m.seq);
            assert!(
                !self.changes.contains_key(&key),
                "seq reused: conversation {} seq {} was a change",
                m.conversation,
                m.seq
            );
            if let Some(old) = self.messages.get(&key) {
                panic!(
                    "seq reused: conversation {} seq {} appended again (first at shard {} lsn {}, durable {:?})",
                    m.conversation, m.seq, old.shard, old.lsn, old.durable_at
                );
            }
            if m.seq > 1 && !self.holds(m.conversation, m.seq - 1) {
                panic!(
                    "gap: conversation {} seq {} appended without seq {}",
                    m.conversation,
                    m.seq,
                    m.seq - 1
                );
            }
            self.messages.insert(
                key,
                Posted {
                    shard,
                    lsn,
                    rec: m.clone(),
                    durable_at: None,
                    thread,
                },
            );
        }
        if let Record::MessageChanged(c) = &rec {
            stored = Some(self.on_change_appended(lsn, c));
        }
        self.records[usize::from(shard)].insert(lsn, rec);
        stored
    }

    /// Whether (conversation, seq) is a message or change in some WAL.
    pub fn holds(&self, conv: u64, seq: u64) -> bool {
        self.messages.contains_key(&(conv, seq)) || self.changes.contains_key(&(conv, seq))
    }

    fn on_change_appended(&mut self, lsn: u64, c: &ChangeRecord) -> Stored {
        let key = (c.conversation, c.seq);
        assert!(
            !self.holds(c.conversation, c.seq),
            "seq reused: conversation {} seq {} appended again as a change",
            c.conversation,
            c.seq
        );
        assert!(
            c.seq == 1 || self.holds(c.conversation, c.seq - 1),
            "gap: change {} of conversation {} appended without seq {}",
            c.seq,
            c.conversation,
            c.seq - 1
        );
        if courier_core::api::ChangeKind::from(c.kind).is_setting() {
            // Issue 16, part 4: a channel setting targets no message.
            assert_eq!(c.target, 0, "setting {key:?} with a target");
            let kind = self.convs.get(&c.conversation).map(|k| k.1);
            assert!(
                matches!(
                    kind,
                    None | Some(ConversationKind::PublicChannel | ConversationKind::PrivateChannel)
                ),
                "setting {key:?} of a {kind:?}"
            );
        } else {
            let target = self
                .messages
                .get(&(c.conversation, c.target))
                .unwrap_or_else(|| panic!("change {key:?} targets {}, not a message", c.target));
            assert!(
                target.durable_at.is_some(),
                "change {key:?} of a message that is not durable"
            );
        }
        self.changes.insert(
            key,
            Changed {
                lsn,
                rec: c.clone(),
                durable_at: None,
            },
        );
        Stored {
            conversation: c.conversation,
            seq: c.seq,
            sender: c.actor,
            client_msg_id: 0,
            ts: c.ts,
            change: true,
        }
    }

    /// The durable changes of message `target` (ascending seq).
    pub fn changes_of(&self, conv: u64, target: u64) -> Vec<&Changed> {
        self.changes
            .range((conv, 0)..=(conv, u64::MAX))
            .map(|(_, c)| c)
            .filter(|c| c.rec.target == target && c.durable_at.is_some())
            .collect()
    }

    /// The durable replies to `root` (threads), ascending seq.
    pub fn replies_to(&self, conv: u64, root: u64) -> Vec<&Posted> {
        self.messages
            .range((conv, root + 1)..=(conv, u64::MAX))
            .map(|(_, p)| p)
            .filter(|p| p.thread.is_some_and(|t| t.0 == root) && p.durable_at.is_some())
            .collect()
    }

    /// A durable message in its state after its durable changes and
    /// replies (threads) with a seq at or below `version` (all when
    /// `u64::MAX`), applied in seq order.
    pub fn state_at(&self, conv: u64, seq: u64, version: u64) -> Message {
        let p = &self.messages[&(conv, seq)];
        let mut m = p.message();
        let mut events: Vec<Message> = self
            .changes_of(conv, seq)
            .iter()
            .map(|c| change_message(&c.rec))
            .chain(self.replies_to(conv, seq).iter().map(|r| r.message()))
            .filter(|e| e.seq.0 <= version)
            .collect();
        events.sort_by_key(|e| e.seq);
        for e in &events {
            courier_core::live::apply(&mut m, e);
        }
        m
    }

    /// Messages (not changes, not replies shown only in their thread)
    /// with `read < seq <= head`, durable or not.
    pub fn messages_between(&self, conv: u64, read: u64, head: u64) -> u64 {
        (read + 1..=head)
            .filter(|s| !self.changes.contains_key(&(conv, *s)))
            .filter(|s| {
                self.messages
                    .get(&(conv, *s))
                    .is_none_or(|p| p.thread.is_none_or(|t| t.1))
            })
            .count() as u64
    }

    pub(super) fn on_durable(&mut self, shard: u16, from: u64, to: u64, step: u64) {
        for lsn in from + 1..=to {
            let rec = self.records[usize::from(shard)]
                .get(&lsn)
                .cloned()
                .unwrap_or_else(|| panic!("durable LSN {lsn} of shard {shard} unknown"));
            let rec = match posted_of(&rec) {
                Some((m, _)) => Record::MessagePosted(m.clone()),
                None => rec,
            };
            match rec {
                Record::MessagePosted(m) => {
                    let p = self
                        .messages
                        .get_mut(&(m.conversation, m.seq))
                        .expect("message in model");
                    p.durable_at = Some(step);
                    let key = (m.conversation, m.sender, m.client_msg_id);
                    if let Some(seq) = self.durable_keys.insert(key, m.seq) {
                        panic!(
                            "duplicate: client_msg_id {} of user {} in conversation {} stored as seq {} and {}",
                            m.client_msg_id, m.sender, m.conversation, seq, m.seq
                        );
                    }
                }
                Record::MessageChanged(c) => {
                    let ch = self
                        .changes
                        .get_mut(&(c.conversation, c.seq))
                        .expect("change in model");
                    ch.durable_at = Some(step);
                }
                Record::ConversationCreated {
                    conversation,
                    workspace,
                    kind,
                    members,
                    ..
                } => {
                    self.convs
                        .insert(conversation, (WorkspaceId(workspace), kind.into()));
                    for u in members {
                        self.membership
                            .entry((conversation, u))
                            .or_default()
                            .push((step, true));
                    }
                }
                Record::MemberAdded {
                    conversation, user, ..
                } => self
                    .membership
                    .entry((conversation, user))
                    .or_default()
                    .push((step, true)),
                Record::MemberRemoved {
                    conversation, user, ..
                } => self
                    .membership
                    .entry((conversation, user))
                    .or_default()
                    .push((step, false)),
                Record::UserCreated {
                    user, workspace, ..
                } => {
                    self.users.insert(user, WorkspaceId(workspace));
                }
                Record::CursorSet {
                    user,
                    conversation,
                    seq,
                } => {
                    let c = self.cursors.entry((user, conversation)).or_insert(0);
                    assert!(
                        seq > *c,
                        "durable cursor of {user} in {conversation} moved back"
                    );
                    *c = seq;
                    self.cursor_history
                        .entry((user, conversation))
                        .or_default()
                        .push((step, seq));
                }
                _ => {}
            }
        }
    }

    pub(super) fn on_crash(&mut self, shard: u16, durable: u64) {
        let lost: Vec<u64> = self.records[usize::from(shard)]
            .range(durable + 1..)
            .map(|(l, _)| *l)
            .collect();
        for lsn in lost {
            let removed = self.records[usize::from(shard)].remove(&lsn);
            let removed = match removed.as_ref().and_then(posted_of) {
                Some((m, _)) => Some(Record::MessagePosted(m.clone())),
                None => removed,
            };
            match removed {
                Some(Record::MessagePosted(m)) => {
                    let p = self.messages.remove(&(m.conversation, m.seq));
                    assert!(p.is_some_and(|p| p.durable_at.is_none()));
                }
                Some(Record::MessageChanged(c)) => {
                    let p = self.changes.remove(&(c.conversation, c.seq));
                    assert!(p.is_some_and(|p| p.durable_at.is_none()));
                }
                _ => {}
            }
        }
    }

    /// Whether `user` was a member of `conv` at some step in `[t0, t1]`.
    pub fn member_during(&self, conv: ConversationId, user: UserId, t0: u64, t1: u64) -> bool {
        let Some(events) = self.membership.get(&(conv.0, user.0)) else {
            return false;
        };
        let at_t0 = events
            .iter()
            .rev()
            .find(|(t, _)| *t <= t0)
            .is_some_and(|(_, m)| *m);
        at_t0 || events.iter().any(|(t, m)| *m && *t > t0 && *t <= t1)
    }

    /// The durable read cursor of `user` in `conv` (0 if none).
    pub fn cursor(&self, user: UserId, conv: ConversationId) -> u64 {
        self.cursors.get(&(user.0, conv.0)).copied().unwrap_or(0)
    }

    /// The durable read cursor of `user` in `conv` at step `t` (0 if none).
    pub fn cursor_at(&self, user: UserId, conv: ConversationId, t: u64) -> u64 {
        self.cursor_history
            .get(&(user.0, conv.0))
            .and_then(|h| h.iter().rev().find(|(at, _)| *at <= t))
            .map_or(0, |(_, seq)| *seq)
    }

    /// A read cursor shown to a device is durable: no restart undoes it.
    pub fn check_cursor_shown(&self, user: UserId, info: &ConversationInfo, what: &str) {
        let durable = self.cursor(user, info.id);
        assert!(
            !info.member || info.read.0 <= durable,
            "{what}: read cursor {} of {:?} shown to {user:?} is not durable (durable: {durable})",
            info.read.0,
            info.id
        );
    }

    /// Whether `user` is a member now.
    pub fn member_now(&self, conv: u64, user: u64) -> bool {
        self.membership
            .get(&(conv, user))
            .and_then(|e| e.last())
            .is_some_and(|(_, m)| *m)
    }

    /// The expected client view of a durable message or change, or a
    /// panic: a message as its record with the durable changes up to its
    /// `live.version` applied (all of them durable; a deleted one without
    /// body); a change as its record (an edit of a message deleted since
    /// without its text).
    pub fn check_message(&self, m: &Message, what: &str) -> u64 {
        let key = (m.conversation.0, m.seq.0);
        if let Some(c) = self.changes.get(&key) {
            let Some(durable_at) = c.durable_at else {
                panic!("{what}: change {key:?} is not durable");
            };
            let mut expected = change_message(&c.rec);
            if m.body.is_empty() && !c.rec.text.is_empty() {
                // Redacted: its target must be deleted by a durable change.
                let deleted = self
                    .changes_of(c.rec.conversation, c.rec.target)
                    .iter()
                    .any(|d| d.rec.kind == courier_core::record::StoredChange::Delete);
                assert!(deleted, "{what}: change {key:?} served without its text");
                expected.body = String::new();
            }
            assert_eq!(m, &expected, "{what}: change differs from its record");
            return durable_at;
        }
        let Some(p) = self.messages.get(&key) else {
            panic!(
                "{what}: message {:?}/{} is not in any WAL",
                m.conversation, m.seq.0
            );
        };
        let Some(durable_at) = p.durable_at else {
            panic!(
                "{what}: message {:?}/{} is not durable",
                m.conversation, m.seq.0
            );
        };
        let version = m.live.version.0;
        if version > 0 {
            let c = self.changes.get(&(key.0, version));
            let r = self.messages.get(&(key.0, version));
            assert!(
                c.is_some_and(|c| c.durable_at.is_some() && c.rec.target == key.1)
                    || r.is_some_and(|r| r.durable_at.is_some()
                        && r.thread.is_some_and(|t| t.0 == key.1)),
                "{what}: message {key:?} at version {version}, not a durable change of it or reply to it"
            );
        }
        let expected = self.state_at(key.0, key.1, version);
        assert_eq!(
            m, &expected,
            "{what}: message differs from its record and changes"
        );
        durable_at
    }

    /// A read that asked at `t0` shows every change durable by then.
    pub fn check_current(&self, m: &Message, t0: u64, what: &str) {
        if m.change.is_some() {
            return;
        }
        for r in self.replies_to(m.conversation.0, m.seq.0) {
            if r.durable_at.is_some_and(|d| d <= t0) {
                assert!(
                    m.live.version.0 >= r.rec.seq,
                    "{what}: root {:?}/{} served at version {} after reply {} was durable",
                    m.conversation,
                    m.seq.0,
                    m.live.version.0,
                    r.rec.seq
                );
            }
        }
        for c in self.changes_of(m.conversation.0, m.seq.0) {
            if c.durable_at.is_some_and(|d| d <= t0) {
                assert!(
                    m.live.version.0 >= c.rec.seq,
                    "{what}: message {:?}/{} served at version {} after change {} was durable",
                    m.conversation,
                    m.seq.0,
                    m.live.version.0,
                    c.rec.seq
                );
            }
        }
    }

    /// Durable messages of a conversation, checked gap-free.
    pub fn durable_history(&self, conv: u64) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .messages
            .range((conv, 0)..=(conv, u64::MAX))
            .filter(|(_, p)| p.durable_at.is_some())
            .map(|((_, s), _)| *s)
            .chain(
                self.changes
                    .range((conv, 0)..=(conv, u64::MAX))
                    .filter(|(_, c)| c.durable_at.is_some())
                    .map(|((_, s), _)| *s),
            )
            .collect();
        seqs.sort_unstable();
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(
                *s,
                i as u64 + 1,
                "conversation {conv}: durable seqs have a gap"
            );
        }
        seqs
    }
}

/// A change record as clients see it.
pub fn change_message(c: &ChangeRecord) -> Message {
    Message {
        conversation: ConversationId(c.conversation),
        seq: Seq(c.seq),
        sender: UserId(c.actor),
        client_msg_id: 0,
        ts: Millis(c.ts),
        body: c.text.clone(),
        mentions: Vec::new(),
        broadcast: courier_core::api::Broadcast::None,
        change: Some(courier_core::api::Change {
            kind: c.kind.into(),
            target: Seq(c.target),
        }),
        live: Default::default(),
        thread: None,
    }
}

/// A message record as clients see it (no changes applied).
pub fn message_of(r: &MessageRecord) -> Message {
    Message {
        conversation: ConversationId(r.conversation),
        seq: Seq(r.seq),
        sender: UserId(r.sender),
        client_msg_id: r.client_msg_id,
        ts: Millis(r.ts),
        body: r.body.clone(),
        mentions: r.mentions.iter().copied().map(UserId).collect(),
        broadcast: r.broadcast.into(),
        change: None,
        live: Default::default(),
        thread: None,
    }
}

impl World {
    /// The ledger invariants on the log a shard restarted from: per
    /// conversation, seqs are 1, 2, 3, … in LSN order (no gap, no reorder);
    /// no `(sender, client_msg_id)` is stored twice; every acknowledged
    /// message this shard owns is there under its acknowledged seq; every
    /// message delivered live is there, as delivered.
    pub(super) fn check_recovered(&mut self, s: u16) {
        self.stats.recovery_checks += 1;
        let seed = self.seed;
        let node = &self.nodes[usize::from(s)];
        let mut heads: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        let mut keys: std::collections::HashSet<(u64, u64, u128)> =
            std::collections::HashSet::new();
        for (i, m) in node.index.iter().enumerate() {
            let Some(m) = m else { continue };
            let head = heads.entry(m.conversation).or_insert(0);
            assert_eq!(
                m.seq,
                *head + 1,
                "seed {seed}: shard {s} recovered conversation {} with seq {} after {} (LSN {})",
                m.conversation,
                m.seq,
                *head,
                i + 1
            );
            *head = m.seq;
            assert!(
                m.change || keys.insert((m.conversation, m.sender, m.client_msg_id)),
                "seed {seed}: shard {s} recovered a duplicate of {:#x} in conversation {}",
                m.client_msg_id,
                m.conversation
            );
        }
        let owned = |conv: u64| {
            courier_core::ids::shard_of(ConversationId(conv), self.shard_count) == ShardId(s)
        };
        let stored_at = |conv: u64, seq: u64, what: &str| -> Stored {
            let p = self.model.messages.get(&(conv, seq)).unwrap_or_else(|| {
                panic!("seed {seed}: {what} message {conv}/{seq} lost by shard {s}")
            });
            let stored = node
                .index
                .get((p.lsn - 1) as usize)
                .copied()
                .flatten()
                .unwrap_or_else(|| {
                    panic!("seed {seed}: {what} message {conv}/{seq} missing after the restart of shard {s}")
                });
            assert_eq!(
                (stored.conversation, stored.seq),
                (conv, seq),
                "seed {seed}: {what} message {conv}/{seq} stored under another seq"
            );
            stored
        };
        for (&(conv, seq), &(sender, cmid)) in &self.model.acked {
            if owned(conv) {
                let st = stored_at(conv, seq, "acknowledged");
                assert_eq!(
                    (st.sender, st.client_msg_id),
                    (sender, cmid),
                    "seed {seed}: acknowledged seq {conv}/{seq} holds another message after a restart"
                );
            }
        }
        for (&(conv, seq), &(sender, cmid, ts)) in &self.model.delivered {
            if owned(conv) {
                let st = stored_at(conv, seq, "live-delivered");
                assert_eq!(
                    (st.sender, st.client_msg_id, st.ts),
                    (sender, cmid, ts),
                    "seed {seed}: live-delivered {conv}/{seq} differs from the recovered record"
                );
            }
        }
    }

    /// Restore + replay of everything appended equals the live state.
    pub fn check_restore(&mut self, s: u16) {
        let entropy = self.rng.bytes32();
        let node = &self.nodes[usize::from(s)];
        let Some(shard) = node.shard.as_ref() else {
            return;
        };
        if node.fault.is_some() {
            // The live state holds the record the disk refused.
            return;
        }
        self.stats.restore_checks += 1;
        let (lsn, live) = shard.snapshot();
        let cfg = config(s, self.shard_count, entropy);
        let mut copy = match node.snapshots.first() {
            Some((_, bytes)) => Shard::restore(cfg, bytes).expect("snapshot restores"),
            None => Shard::new(cfg),
        };
        for l in copy.last_lsn().0 + 1..=lsn.0 {
            let (kind, payload) = &node.wal[(l - 1) as usize];
            copy.replay(Lsn(l), *kind, payload).expect("record replays");
        }
        let (copy_lsn, copied) = copy.snapshot();
        assert_eq!(copy_lsn, lsn);
        assert!(
            copied == live,
            "shard {s}: restore + replay differs from the live state at LSN {}",
            lsn.0
        );
    }

    /// Checks that hold for every client: messages are durable, identical to
    /// their records, and seen only by members.
    pub(super) fn check_down(&mut self, c: usize, down: &Down) {
        let Some(user) = self.clients[c].user else {
            return;
        };
        let now = self.step;
        match down {
            Down::Event(event) => {
                if let Event::Joined(info) = event.as_ref() {
                    self.model.check_cursor_shown(user, info, "joined");
                }
                if let Event::Message(m) = event.as_ref() {
                    let durable_at = self.model.check_message(m, "live event");
                    self.model.live_events += 1;
                    if m.change.is_none() {
                        self.model.delivered.insert(
                            (m.conversation.0, m.seq.0),
                            (m.sender.0, m.client_msg_id, m.ts.0),
                        );
                    }
                    assert!(
                        self.model
                            .member_during(m.conversation, user, durable_at, now),
                        "live event of {:?} seq {} reached non-member {:?}",
                        m.conversation,
                        m.seq.0,
                        user
                    );
                }
            }
            Down::Reply(req, Ok(response)) => {
                let t0 = match self.clients[c].pending.get(req) {
                    Some((_, t0)) => *t0,
                    None if !self.clients[c].auto => 0,
                    None => return,
                };
                let ws = self.clients[c].ws;
                self.check_read(user, ws, t0, response);
            }
            _ => {}
        }
    }

    pub(super) fn check_read(
        &mut self,
        user: UserId,
        ws: Option<WorkspaceId>,
        t0: u64,
        response: &Response,
    ) {
        let now = self.step;
        let check = |model: &mut Model, m: &Message, preview: bool, what: &str| {
            model.check_message(m, what);
            model.check_current(m, t0, what);
            model.reads_checked += 1;
            let member = model.member_during(m.conversation, user, t0, now);
            let public = preview
                && model
                    .convs
                    .get(&m.conversation.0)
                    .is_some_and(|(w, k)| Some(*w) == ws && *k == ConversationKind::PublicChannel);
            assert!(
                member || public,
                "{what}: message {:?}/{} reached non-member {:?}",
                m.conversation,
                m.seq.0,
                user
            );
        };
        match response {
            Response::History { messages, head } => {
                for w in messages.windows(2) {
                    assert_eq!(w[0].seq.0 + 1, w[1].seq.0, "history page has a gap");
                }
                for m in messages {
                    assert!(m.seq <= *head);
                    check(&mut self.model, m, true, "history");
                }
            }
            Response::Thread { messages, head } => {
                // Threads: the root (first, when the cursor was below it)
                // and replies to it, ascending.
                let root = messages.first().map(|m| m.thread.map_or(m.seq, |t| t.root));
                for w in messages.windows(2) {
                    assert!(w[0].seq < w[1].seq, "thread page out of order");
                }
                for m in messages {
                    let of = m.thread.map_or(m.seq, |t| t.root);
                    assert_eq!(Some(of), root, "thread page mixes threads");
                    assert!(m.thread.is_none() || m.seq <= *head);
                    check(&mut self.model, m, true, "thread");
                }
            }
            Response::Sync { changed, .. } => {
                for sc in changed {
                    assert!(sc.info.member);
                    self.model.check_cursor_shown(user, &sc.info, "sync");
                    assert_eq!(
                        sc.info.unread,
                        self.model
                            .messages_between(sc.info.id.0, sc.info.read.0, sc.info.head.0),
                        "sync: unread counts messages only"
                    );
                    for w in sc.messages.windows(2) {
                        assert_eq!(w[0].seq.0 + 1, w[1].seq.0, "sync messages have a gap");
                    }
                    if let Some(last) = sc.messages.last() {
                        assert_eq!(last.seq, sc.info.head, "sync messages end below the head");
                    }
                    for m in &sc.messages {
                        check(&mut self.model, m, false, "sync");
                    }
                }
            }
            Response::Boot(page) => {
                for info in &page.conversations {
                    self.model.check_cursor_shown(user, info, "boot");
                }
                for (_, messages) in &page.pages {
                    for m in messages {
                        check(&mut self.model, m, false, "boot");
                    }
                }
                for w in page.conversations.windows(2) {
                    assert!(
                        w[0].last_activity >= w[1].last_activity,
                        "boot not sorted by activity"
                    );
                }
            }
            Response::Conversations(infos) => {
                for info in infos {
                    self.model.check_cursor_shown(user, info, "list");
                }
            }
            Response::Conversation(info) => self.model.check_cursor_shown(user, info, "join"),
            _ => {}
        }
    }
}

impl World {
    /// The end of every seeded run: `clients` act automatically for
    /// `steps` steps of chaos (crashes included); then disks are repaired,
    /// shards come back, clients reconnect, retry unacked sends and sync —
    /// twice, so the second round sees every retried message — pushes are
    /// drained, and the final invariants are checked.
    pub fn chaos_then_check(&mut self, clients: &[usize], steps: u64) {
        for &c in clients {
            self.clients[c].auto = true;
            self.clients[c].inbox.clear();
            self.disconnect(c);
        }
        for _ in 0..steps {
            self.step_once(Chaos {
                clients_act: true,
                crashes: true,
            });
        }
        self.repair_storage();
        for _ in 0..2 {
            self.settle();
            for &c in clients {
                self.disconnect(c);
                self.clients[c].offline_until = 0;
            }
            self.settle();
        }
        self.drain_pushes();
        self.check_final(clients);
    }

    /// The end of a run, after every client reconnected and synced: no
    /// acknowledged message lost; every conversation's durable seqs are
    /// 1..=n; every send acknowledged or refused; every client holds
    /// exactly its user's conversations and their whole durable history.
    pub fn check_final(&self, clients: &[usize]) {
        let w = self;
        let model = &w.model;
        let mut heads = std::collections::BTreeMap::new();
        for &conv in model.convs.keys() {
            heads.insert(conv, model.durable_history(conv).len() as u64);
        }
        for (&(conv, seq), &(sender, cmid)) in &model.acked {
            let p = model
                .messages
                .get(&(conv, seq))
                .unwrap_or_else(|| panic!("acknowledged message {conv}/{seq} lost"));
            assert!(p.durable_at.is_some());
            assert_eq!((p.rec.sender, p.rec.client_msg_id), (sender, cmid));
        }
        for &c in clients {
            let client = &w.clients[c];
            let user = client.user.expect("user client");
            assert_eq!(
                client.state,
                super::CState::Online,
                "client {c} did not come back"
            );
            for s in &client.sends {
                assert!(
                    s.acked.is_some() || s.abandoned,
                    "client {c}: send {:#x} neither acknowledged nor refused",
                    s.cmid
                );
            }
            let expected: Vec<ConversationId> = model
                .convs
                .keys()
                .filter(|&&conv| model.member_now(conv, user.0))
                .map(|&conv| ConversationId(conv))
                .collect();
            let got: Vec<ConversationId> = client.convs.keys().copied().collect();
            assert_eq!(
                got, expected,
                "client {c} ({user:?}) ends with other conversations"
            );
            for (conv, cc) in &client.convs {
                let head = heads[&conv.0];
                let seqs: Vec<u64> = cc.msgs.keys().copied().collect();
                let want: Vec<u64> = (1..=head).collect();
                assert_eq!(
                    seqs, want,
                    "client {c}: conversation {conv:?} history differs from the durable one"
                );
                assert!(cc.msgs.values().all(|m| m.seq > Seq(0)));
                // Issue 16, part 4: the setting events the device holds,
                // folded in seq order, give the durable settings.
                let fold = |events: &mut dyn Iterator<Item = (ChangeKind, String)>| {
                    let mut settings = courier_core::api::ChannelSettings::default();
                    let mut name = None;
                    for (kind, value) in events {
                        if let Some(n) = settings.apply(kind, &value) {
                            name = Some(n);
                        }
                    }
                    (settings, name)
                };
                let held = fold(&mut cc.msgs.values().filter_map(|m| {
                    let ch = m.change.filter(|ch| ch.kind.is_setting())?;
                    Some((ch.kind, m.body.clone()))
                }));
                let durable = fold(
                    &mut model
                        .changes
                        .range((conv.0, 0)..=(conv.0, u64::MAX))
                        .map(|(_, ch)| ch)
                        .filter(|ch| ch.durable_at.is_some())
                        .filter(|ch| ChangeKind::from(ch.rec.kind).is_setting())
                        .map(|ch| (ChangeKind::from(ch.rec.kind), ch.rec.text.clone())),
                );
                assert_eq!(
                    held, durable,
                    "client {c}: channel {conv:?} settings differ from the durable events"
                );
                // Issue 17: every message ends in the owner's state.
                for m in cc.msgs.values().filter(|m| m.change.is_none()) {
                    let mut held = m.clone();
                    // Changes of it and (threads) replies to it.
                    for e in cc.msgs.range(m.seq.0 + 1..).map(|(_, e)| e) {
                        courier_core::live::apply(&mut held, e);
                    }
                    let want = model.state_at(conv.0, m.seq.0, u64::MAX);
                    let view = |m: &Message| {
                        (
                            m.body.clone(),
                            m.live.edited,
                            m.live.deleted,
                            m.live.reactions.clone(),
                            m.live.thread.clone(),
                            m.live.pinned,
                        )
                    };
                    assert_eq!(
                        view(&held),
                        view(&want),
                        "client {c}: message {conv:?}/{} ends in another state than the owner's",
                        m.seq.0
                    );
                }
            }
        }
    }
}
