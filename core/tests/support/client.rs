//! Simulated devices: client state, and the random behaviour of auto
//! clients (requests, sends, retries, syncs, gap repair).

use std::collections::BTreeMap;
use std::sync::Arc;

use courier_core::api::{
    Broadcast, CloseReason, ConnId, ConversationId, ConversationKind, Credential, Event,
    HistoryAnchor, Message, Millis, PeopleRequest, PeopleResponse, Reject, ReqId, Request,
    Response, Role, Seq, UnavailableCause, UserId, WorkspaceId,
};

use super::{Down, Fault, World};

/// A request a client waits on, with the step it was sent.
#[derive(Clone, Debug)]
pub enum Pend {
    Hello,
    /// A `Sync`; `reads`: the read cursors it named (empty: none, like a
    /// client that keeps no read state).
    Sync {
        reads: Vec<(ConversationId, Seq)>,
    },
    History {
        conv: ConversationId,
    },
    Send {
        idx: usize,
    },
    Membership {
        conv: Option<ConversationId>,
    },
    Leave {
        conv: ConversationId,
    },
    Boot,
    List,
    /// A `SetRole` (counted when done).
    Role,
    /// A `CreateInvite` (issue 16, item 4).
    Invite,
    /// A `RedeemInvite` on a connection with no session, for `ws`.
    Redeem {
        ws: WorkspaceId,
    },
    /// Issue 17: a change of a message; `own`: the client's user wrote it.
    Change {
        conv: ConversationId,
        own: bool,
    },
    /// Threads (issue 17, part 2): a reply in `conv`.
    Reply {
        conv: ConversationId,
    },
    /// Threads: a thread page.
    Thread,
    /// Issue 16, part 4: a channel setting of `kind`.
    Setting {
        conv: ConversationId,
        kind: courier_core::api::ChangeKind,
    },
    Other,
}

#[derive(Default, Clone, Debug)]
pub struct CConv {
    pub msgs: BTreeMap<u64, Message>,
    pub head: u64,
    pub fetching: bool,
    pub cursor: u64,
}

/// An `Unavailable` that names a storage failure (refused before appending,
/// or waiting on a record that will not become durable in this incarnation).
fn storage_cause(cause: UnavailableCause) -> bool {
    matches!(
        cause,
        UnavailableCause::StorageFailed | UnavailableCause::NotDurable
    )
}

impl CConv {
    pub fn contiguous(&self) -> u64 {
        let mut n = 0;
        while self.msgs.contains_key(&(n + 1)) {
            n += 1;
        }
        n
    }
}

#[derive(Clone, Debug)]
pub struct OutSend {
    pub conv: ConversationId,
    pub cmid: u128,
    pub body: String,
    pub mentions: Vec<UserId>,
    pub broadcast: Broadcast,
    pub acked: Option<Seq>,
    pub abandoned: bool,
    pub inflight: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CState {
    Offline,
    Hello,
    Online,
}

/// A device of a user (or the admin tool).
pub struct Client {
    pub user: Option<UserId>,
    pub ws: Option<WorkspaceId>,
    pub credential: Credential,
    /// Random behaviour, gap repair and syncs on its own.
    pub auto: bool,
    pub conn: Option<ConnId>,
    pub state: CState,
    pub next_req: ReqId,
    pub pending: BTreeMap<ReqId, (Pend, u64)>,
    pub convs: BTreeMap<ConversationId, CConv>,
    pub sends: Vec<OutSend>,
    pub synced: bool,
    pub offline_until: u64,
    /// Scripted clients keep everything they receive.
    pub inbox: Vec<Down>,
}

impl Client {
    pub(super) fn take_req(&mut self) -> ReqId {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    pub fn go_offline(&mut self, until: u64) {
        self.conn = None;
        self.state = CState::Offline;
        self.synced = false;
        self.offline_until = until;
        for (pend, _) in std::mem::take(&mut self.pending).into_values() {
            if let Pend::Send { idx } = pend {
                self.sends[idx].inflight = false;
            }
        }
        for conv in self.convs.values_mut() {
            conv.fetching = false;
        }
    }

    /// Replies of a request this client made, for scripted tests.
    pub fn reply_to(&self, req: ReqId) -> Option<&Result<Response, Reject>> {
        self.inbox.iter().find_map(|d| match d {
            Down::Reply(r, result) if *r == req => Some(result),
            _ => None,
        })
    }

    pub fn events(&self) -> Vec<Arc<Event>> {
        self.inbox
            .iter()
            .filter_map(|d| match d {
                Down::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }
}

impl World {
    pub fn add_client(
        &mut self,
        credential: Credential,
        user: Option<(UserId, WorkspaceId)>,
        auto: bool,
    ) -> usize {
        self.clients.push(Client {
            user: user.map(|u| u.0),
            ws: user.map(|u| u.1),
            credential,
            auto,
            conn: None,
            state: CState::Offline,
            next_req: 1,
            pending: BTreeMap::new(),
            convs: BTreeMap::new(),
            sends: Vec::new(),
            synced: false,
            offline_until: 0,
            inbox: Vec::new(),
        });
        self.clients.len() - 1
    }

    pub(super) fn client_receive(&mut self, c: usize, down: Down) {
        if std::env::var_os("COURIER_SIM_TRACE").is_some() {
            eprintln!(
                "step {} client {c} conn {:?} <- {down:?}",
                self.step, self.clients[c].conn
            );
        }
        if !self.clients[c].auto {
            self.check_down(c, &down);
            if let Down::Reply(req, result) = &down {
                // The random redemptions' connections are not auto
                // clients, but their answers count.
                if let Some((pend @ Pend::Redeem { .. }, t0)) = self.clients[c].pending.remove(req)
                {
                    return self.on_reply(c, pend, t0, result.clone());
                }
            }
            if let Down::Closed(_) = &down {
                self.clients[c].go_offline(u64::MAX);
            }
            self.clients[c].inbox.push(down);
            return;
        }
        self.check_down(c, &down);
        match down {
            Down::Closed(reason) => {
                assert_ne!(
                    reason,
                    CloseReason::Revoked,
                    "sim never revokes tokens of auto clients"
                );
                let until = self.step + 10;
                self.clients[c].go_offline(until);
            }
            Down::Event(event) => self.on_event(c, &event),
            Down::Reply(req, result) => {
                let Some((pend, t0)) = self.clients[c].pending.remove(&req) else {
                    panic!("client {c}: reply to unknown request {req}");
                };
                self.on_reply(c, pend, t0, result);
            }
        }
    }

    pub(super) fn on_event(&mut self, c: usize, event: &Event) {
        let client = &mut self.clients[c];
        match event {
            Event::Message(m) => {
                if let Some(conv) = client.convs.get_mut(&m.conversation) {
                    conv.head = conv.head.max(m.seq.0);
                    conv.msgs.insert(m.seq.0, m.clone());
                }
                self.fill_gaps(c);
            }
            Event::Joined(info) => {
                let conv = client.convs.entry(info.id).or_default();
                conv.head = conv.head.max(info.head.0);
                conv.cursor = conv.cursor.max(info.read.0);
                self.fill_gaps(c);
            }
            Event::Left { conversation } => {
                client.convs.remove(conversation);
            }
            Event::ReadCursor { conversation, seq } => {
                if let Some(conv) = client.convs.get_mut(conversation) {
                    assert!(
                        seq.0 >= conv.cursor,
                        "client {c}: read cursor of {conversation:?} moved backwards: {} after {}",
                        seq.0,
                        conv.cursor
                    );
                    conv.cursor = seq.0;
                }
            }
            Event::Notify { .. } => {}
            Event::ProfileChanged { user, version } => {
                // Issue 16, part 5: only sessions of the user's workspace
                // hear of it, with a version the user's profile reached.
                let ws = client.ws;
                assert!(
                    self.users.iter().any(|(w, u)| u == user && Some(*w) == ws),
                    "client {c}: profile event of {user:?}, not of its workspace"
                );
                assert!(*version >= 1, "client {c}: profile event of version 0");
                self.stats.profile_events += 1;
            }
            // Issue 17, part 4: ephemeral, nothing to hold; the simulation
            // sends neither (tools/tests/around.rs checks them end to end).
            Event::Typing { .. } | Event::Presence { .. } => {}
        }
    }

    pub(super) fn on_reply(
        &mut self,
        c: usize,
        pend: Pend,
        t0: u64,
        result: Result<Response, Reject>,
    ) {
        match (pend, result) {
            (Pend::Hello, Ok(Response::Welcome { .. })) => {
                self.clients[c].state = CState::Online;
                self.send_sync(c);
            }
            (Pend::Hello, Err(Reject::Unavailable { .. })) => {
                // The home shard is starting; try again later.
                self.disconnect(c);
            }
            (Pend::Hello, other) => panic!("client {c}: hello failed: {other:?}"),
            (Pend::Sync { reads }, Ok(Response::Sync { changed, gone })) => {
                // A device that named its read cursors learns the user's:
                // every move durable when it asked (later ones come as
                // events), whatever other devices did while it was away.
                // Each named conversation is in `changed` with a cursor at
                // least that, or in `gone`, or the cursor it named is.
                let user = self.clients[c].user.expect("user client");
                for &(conv, named) in &reads {
                    let durable = self.model.cursor_at(user, conv, t0);
                    let shown = match changed.iter().find(|sc| sc.info.id == conv) {
                        Some(sc) => sc.info.read,
                        None if gone.contains(&conv) => continue,
                        None => named,
                    };
                    assert!(
                        shown.0 >= durable,
                        "client {c}: after a sync, read cursor of {conv:?} is {} but {durable} was durable when it asked",
                        shown.0
                    );
                }
                let client = &mut self.clients[c];
                for conv in gone {
                    client.convs.remove(&conv);
                }
                for sc in changed {
                    self.stats.truncated_syncs += u64::from(sc.truncated);
                    let conv = client.convs.entry(sc.info.id).or_default();
                    conv.head = conv.head.max(sc.info.head.0);
                    conv.cursor = conv.cursor.max(sc.info.read.0);
                    for m in sc.messages {
                        conv.msgs.insert(m.seq.0, m);
                    }
                }
                client.synced = true;
                self.fill_gaps(c);
                self.retry_unacked(c);
            }
            (Pend::Sync { .. }, Err(Reject::Unavailable { cause, detail }))
                if storage_cause(cause) =>
            {
                // The home shard's disk failed: come back after a while.
                assert!(
                    detail.contains(Fault::Io.reason()) || detail.contains(Fault::NoSpace.reason()),
                    "sync refused without the storage failure's reason: {detail}"
                );
                self.stats.storage_refusals += 1;
                self.disconnect(c);
                self.clients[c].offline_until = self.step + 50;
            }
            (Pend::Sync { .. }, Err(Reject::Unavailable { .. })) => self.send_sync(c),
            (Pend::Sync { .. }, other) => panic!("client {c}: sync failed: {other:?}"),
            (Pend::History { conv }, result) => {
                let client = &mut self.clients[c];
                let known = client.convs.get_mut(&conv);
                match (known, result) {
                    (Some(cc), Ok(Response::History { messages, head })) => {
                        cc.fetching = false;
                        cc.head = cc.head.max(head.0);
                        for m in messages {
                            cc.msgs.insert(m.seq.0, m);
                        }
                    }
                    (Some(_), Err(Reject::NotFound)) => {
                        // Not a member any more: the `Left` is on its way;
                        // a sync settles it (the conversation stays marked
                        // as fetching until then, so no loop).
                        self.send_sync(c);
                        return;
                    }
                    (Some(cc), _) => cc.fetching = false,
                    (None, _) => {}
                }
                self.fill_gaps(c);
            }
            (Pend::Send { idx }, result) => {
                let user = self.clients[c].user;
                let send = &mut self.clients[c].sends[idx];
                send.inflight = false;
                match result {
                    Ok(Response::SendAck {
                        conversation,
                        seq,
                        ts,
                        ..
                    }) => {
                        assert_eq!(conversation, send.conv);
                        let Some(p) = self.model.messages.get(&(conversation.0, seq.0)) else {
                            panic!("ack of {conversation:?}/{} that is in no WAL", seq.0);
                        };
                        assert!(
                            p.durable_at.is_some(),
                            "ack before durability: {conversation:?}/{}",
                            seq.0
                        );
                        assert_eq!(p.rec.client_msg_id, send.cmid, "ack names another message");
                        assert_eq!(Some(UserId(p.rec.sender)), user);
                        assert_eq!(p.rec.ts, ts.0);
                        assert_eq!(p.rec.body, send.body);
                        if let Some(first) = send.acked {
                            assert_eq!(first, seq, "a retry was acked with another seq");
                        }
                        send.acked = Some(seq);
                        self.model.acks += 1;
                        self.model
                            .acked
                            .insert((conversation.0, seq.0), (p.rec.sender, send.cmid));
                    }
                    Err(Reject::NotFound) => send.abandoned = true,
                    // Issue 16, part 4: archived, or admins only.
                    Err(Reject::Archived | Reject::Forbidden(_)) => {
                        send.abandoned = true;
                        self.stats.sends_refused_by_settings += 1;
                    }
                    Err(Reject::Unavailable { cause, detail }) => {
                        if storage_cause(cause) {
                            // A clear refusal naming the failure.
                            assert!(
                                detail.contains(Fault::Io.reason())
                                    || detail.contains(Fault::NoSpace.reason()),
                                "send refused without the storage failure's reason: {detail}"
                            );
                            self.stats.storage_refusals += 1;
                        }
                    }
                    other => panic!("send failed: {other:?}"),
                }
            }
            (Pend::Membership { conv }, Ok(Response::Conversation(info))) => {
                if let Some(expected) = conv {
                    assert_eq!(expected, info.id);
                }
                let cc = self.clients[c].convs.entry(info.id).or_default();
                cc.head = cc.head.max(info.head.0);
                self.fill_gaps(c);
            }
            (Pend::Leave { conv }, Ok(Response::Done)) => {
                self.clients[c].convs.remove(&conv);
            }
            (
                Pend::Invite,
                Ok(Response::People(PeopleResponse::InviteCreated { invite, secret })),
            ) => {
                self.stats.invites_created += 1;
                self.invites.push((invite.workspace, invite.id, secret));
            }
            (Pend::Invite, Err(Reject::NotAdmin | Reject::Forbidden(_))) => {
                self.stats.invites_refused += 1
            }
            (Pend::Redeem { ws }, result) => {
                match result {
                    Ok(Response::TokenIssued { user, .. }) => {
                        self.stats.invites_redeemed += 1;
                        self.users.push((ws, user));
                    }
                    Err(
                        Reject::InviteExpired
                        | Reject::InviteUsedUp
                        | Reject::InviteRevoked
                        | Reject::NotFound
                        | Reject::AlreadyExists,
                    ) => self.stats.invites_refused += 1,
                    Err(Reject::Unavailable { .. }) => {}
                    other => panic!("client {c}: redeem: {other:?}"),
                }
                self.disconnect(c);
            }
            (Pend::Change { conv, own }, result) => self.on_change_reply(conv, own, result),
            (Pend::Reply { conv }, result) => self.on_reply_reply(conv, result),
            (Pend::Thread, result) => self.on_thread_reply(result),
            (Pend::Setting { conv, kind }, result) => self.on_setting_reply(conv, kind, result),
            (Pend::Role, Ok(Response::Done)) => self.stats.roles_set += 1,
            (Pend::Role, Err(Reject::NotAdmin | Reject::Forbidden(_))) => {
                self.stats.roles_refused += 1
            }
            (Pend::Boot, Ok(Response::Boot(page))) => {
                assert!(
                    page.conversations.len()
                        <= courier_core::constants::BOOT_CONVERSATIONS_MAX as usize
                );
            }
            (_, Err(Reject::Invalid(e))) | (_, Err(Reject::TooLarge(e))) => {
                panic!("client {c}: a well-formed request was refused: {e}")
            }
            (_, Err(Reject::Unauthenticated)) => {
                panic!("client {c}: session lost its authentication")
            }
            _ => {}
        }
    }

    /// Syncs; three times in four naming the read cursors known (the
    /// fourth is a client that keeps no read state).
    pub(super) fn send_sync(&mut self, c: usize) {
        let cursors = self.clients[c]
            .convs
            .iter()
            .map(|(id, cc)| (*id, Seq(cc.contiguous())))
            .collect();
        let named: Vec<(ConversationId, Seq)> = if self.rng.chance(3, 4) {
            self.clients[c]
                .convs
                .iter()
                .map(|(id, cc)| (*id, Seq(cc.cursor)))
                .collect()
        } else {
            Vec::new()
        };
        let reads = named.iter().map(|(_, r)| *r).collect();
        self.request(
            c,
            Request::Sync { cursors, reads },
            Pend::Sync { reads: named },
        );
    }

    /// Asks for the messages after the contiguous prefix of each known
    /// conversation that lacks some.
    pub(super) fn fill_gaps(&mut self, c: usize) {
        if self.clients[c].state != CState::Online {
            return;
        }
        let wanted: Vec<(ConversationId, u64)> = self.clients[c]
            .convs
            .iter()
            .filter(|(_, cc)| {
                !cc.fetching
                    && cc.contiguous() < cc.head.max(cc.msgs.keys().last().copied().unwrap_or(0))
            })
            .map(|(id, cc)| (*id, cc.contiguous()))
            .collect();
        for (conv, after) in wanted {
            let request = Request::History {
                conversation: conv,
                anchor: HistoryAnchor::After(Seq(after)),
                limit: courier_core::constants::HISTORY_PAGE_MAX,
            };
            if self.request(c, request, Pend::History { conv }).is_some() {
                if let Some(cc) = self.clients[c].convs.get_mut(&conv) {
                    cc.fetching = true;
                }
            }
        }
    }

    pub(super) fn retry_unacked(&mut self, c: usize) {
        let idxs: Vec<usize> = self.clients[c]
            .sends
            .iter()
            .enumerate()
            .filter(|(_, s)| s.acked.is_none() && !s.abandoned && !s.inflight)
            .map(|(i, _)| i)
            .collect();
        for idx in idxs {
            self.resend(c, idx);
        }
    }

    pub(super) fn resend(&mut self, c: usize, idx: usize) {
        let s = self.clients[c].sends[idx].clone();
        let request = Request::Send {
            conversation: s.conv,
            client_msg_id: s.cmid,
            body: s.body,
            mentions: s.mentions,
            broadcast: s.broadcast,
        };
        if self.request(c, request, Pend::Send { idx }).is_some() {
            self.stats.retries += 1;
            self.clients[c].sends[idx].inflight = true;
        }
    }

    /// One random action of an auto client.
    pub fn client_act(&mut self, c: usize) {
        let client = &self.clients[c];
        if client.state == CState::Offline {
            if client.offline_until <= self.step {
                let s = self.client_shard();
                self.connect(c, s);
            }
            return;
        }
        if client.state != CState::Online || !client.synced || client.pending.len() >= 6 {
            return;
        }
        let user = client.user.expect("auto clients are users");
        let ws = client.ws.expect("auto clients are users");
        let member_convs: Vec<ConversationId> = client.convs.keys().copied().collect();
        let same_ws_users: Vec<UserId> = self
            .users
            .iter()
            .filter(|(w, u)| *w == ws && *u != user)
            .map(|(_, u)| *u)
            .collect();
        let ws_channels: Vec<ConversationId> = self
            .channels
            .iter()
            .filter(|(w, _)| *w == ws)
            .map(|(_, c)| *c)
            .collect();
        let any_conv: Vec<ConversationId> = self
            .model
            .convs
            .keys()
            .map(|&c| ConversationId(c))
            .collect();
        let roll = self.rng.below(100);
        match roll {
            34..=37 => self.act_change(c, &member_convs),
            38..=39 => self.act_setting(c, &member_convs),
            0..=33 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                self.stats.sends += 1;
                let n = self.clients[c].sends.len();
                let mut mentions = Vec::new();
                if self.rng.chance(1, 4) {
                    if let Some(&u) = self.rng.pick(&same_ws_users) {
                        mentions.push(u);
                    }
                }
                let broadcast = match self.rng.below(20) {
                    0 => Broadcast::Channel,
                    1 => Broadcast::Here,
                    _ => Broadcast::None,
                };
                let body_len = 1 + self.rng.below(40) as usize;
                let body = format!("c{c}-m{n}-{}", "x".repeat(body_len));
                self.clients[c].sends.push(OutSend {
                    conv,
                    cmid: u128::from(self.rng.next_u64()) << 64 | n as u128,
                    body,
                    mentions,
                    broadcast,
                    acked: None,
                    abandoned: false,
                    inflight: false,
                });
                self.resend(c, n);
            }
            40..=45 => {
                // Retry a recent send (acked or not) with the same key.
                let n = self.clients[c].sends.len();
                if n == 0 {
                    return;
                }
                let idx = n - 1 - self.rng.below(n.min(8) as u64) as usize;
                let s = &self.clients[c].sends[idx];
                if !s.inflight && !s.abandoned {
                    self.resend(c, idx);
                }
            }
            46..=55 => {
                // History of any conversation, member or not: non-members
                // must get exactly what a nonexistent one gets.
                let pool = if self.rng.chance(1, 3) {
                    &any_conv
                } else {
                    &member_convs
                };
                let Some(&conv) = self.rng.pick(pool) else {
                    return;
                };
                let head = self.clients[c].convs.get(&conv).map_or(0, |cc| cc.head);
                let anchor = match self.rng.below(3) {
                    0 => HistoryAnchor::Latest,
                    1 => HistoryAnchor::Before(Seq(self.rng.below(head + 2))),
                    _ => HistoryAnchor::After(Seq(self.rng.below(head + 2))),
                };
                let limit = 1 + self.rng.below(20) as u32;
                self.request(
                    c,
                    Request::History {
                        conversation: conv,
                        anchor,
                        limit,
                    },
                    Pend::Other,
                );
            }
            56..=61 => {
                let Some(&conv) = self.rng.pick(&ws_channels) else {
                    return;
                };
                self.request(
                    c,
                    Request::Join { conversation: conv },
                    Pend::Membership { conv: Some(conv) },
                );
            }
            62..=64 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                if self.model.convs.get(&conv.0).is_some_and(|(_, k)| {
                    matches!(k, ConversationKind::Dm | ConversationKind::GroupDm)
                }) {
                    return;
                }
                self.request(
                    c,
                    Request::Leave { conversation: conv },
                    Pend::Leave { conv },
                );
            }
            65..=70 => {
                // Invite (65..=68) or remove (69..=70) a same-workspace
                // user in a channel or group the client is in.
                let (Some(&conv), Some(&u)) =
                    (self.rng.pick(&member_convs), self.rng.pick(&same_ws_users))
                else {
                    return;
                };
                if self.model.convs.get(&conv.0).is_some_and(|(_, k)| {
                    matches!(k, ConversationKind::Dm | ConversationKind::GroupDm)
                }) {
                    return;
                }
                let request = if roll <= 68 {
                    Request::Invite {
                        conversation: conv,
                        user: u,
                    }
                } else {
                    Request::Remove {
                        conversation: conv,
                        user: u,
                    }
                };
                self.request(c, request, Pend::Other);
            }
            71..=74 => {
                let k = 1 + self.rng.below(3) as usize;
                let mut users = Vec::new();
                for _ in 0..k {
                    if let Some(&u) = self.rng.pick(&same_ws_users) {
                        users.push(u);
                    }
                }
                if self.rng.chance(1, 10) {
                    // Someone of another workspace: must look nonexistent.
                    if let Some(&(_, u)) = self.rng.pick(&self.users.clone()) {
                        users.push(u);
                    }
                }
                if users.is_empty() {
                    return;
                }
                self.request(
                    c,
                    Request::OpenDm { users },
                    Pend::Membership { conv: None },
                );
            }
            75..=82 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                let head = self.clients[c].convs.get(&conv).map_or(0, |cc| cc.head);
                let seq = Seq(self.rng.below(head + 3));
                self.request(
                    c,
                    Request::MarkRead {
                        conversation: conv,
                        seq,
                    },
                    Pend::Other,
                );
            }
            83..=86 => self.send_sync(c),
            87..=88 => {
                let limit = 1 + self.rng.below(10) as u32;
                let offset = self.rng.below(3) as u32;
                self.request(c, Request::Boot { limit, offset }, Pend::Boot);
            }
            89 => {
                self.request(c, Request::ListConversations, Pend::List);
            }
            90..=91 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                let request = match self.rng.below(3) {
                    0 => Request::SetNotify {
                        conversation: conv,
                        // Both levels a user picks for a conversation:
                        // `all` notifies on every message of a channel.
                        level: if self.rng.chance(1, 2) {
                            courier_core::api::NotifyLevel::All
                        } else {
                            courier_core::api::NotifyLevel::Mentions
                        },
                        muted: self.rng.chance(1, 2),
                    },
                    1 => Request::SetFocus {
                        focused: Some(conv),
                        active: true,
                    },
                    _ => Request::SetDnd {
                        until: Some(Millis(self.now + 60_000)),
                    },
                };
                self.request(c, request, Pend::Other);
            }
            92..=93 => {
                let name = format!("ch-{}-{}", c, self.rng.below(1000));
                let private = self.rng.chance(1, 3);
                self.request(
                    c,
                    Request::CreateChannel { name, private },
                    Pend::Membership { conv: None },
                );
            }
            94 if self.rng.chance(1, 2) => {
                // A profile change (issue 16, part 5): every session of
                // the workspace hears of it once durable.
                self.stats.profile_sets += 1;
                let update = courier_core::api::ProfileUpdate {
                    display_name: Some(format!("User {}", self.rng.below(1000))),
                    ..Default::default()
                };
                let request = Request::People(PeopleRequest::SetProfile {
                    user: None,
                    update: Box::new(update),
                });
                self.request(c, request, Pend::Other);
            }
            94 => {
                // A role change (issue 16, part 2) of a same-workspace user:
                // the workspace's owner succeeds, admins mostly, others are
                // refused. Guests lose their public-channel previews; nobody
                // loses a membership, so the ledger's promises stay as they
                // are, and every record must replay identically.
                let Some(&u) = self.rng.pick(&same_ws_users) else {
                    return;
                };
                let role = match self.rng.below(3) {
                    0 => courier_core::api::Role::Guest,
                    1 => courier_core::api::Role::Admin,
                    _ => courier_core::api::Role::Member,
                };
                let request =
                    Request::People(courier_core::api::PeopleRequest::SetRole { user: u, role });
                self.request(c, request, Pend::Role);
            }
            95 => self.invite_act(c, ws),
            _ => {
                let until = if self.rng.below(100) < self.long_offline_pct {
                    self.step + 1_000 + self.rng.below(4_000)
                } else {
                    self.step + 5 + self.rng.below(50)
                };
                self.disconnect(c);
                self.clients[c].offline_until = until;
            }
        }
    }
}

impl World {
    /// Invites (issue 16, item 4): create one (admins and owners succeed,
    /// members when the workspace allows it), change the policy, revoke
    /// one, or redeem a known one on a fresh connection with no session
    /// (some expire or run out first: typed refusals). A redeemed invite
    /// adds a user that others then DM, invite and mention.
    fn invite_act(&mut self, c: usize, ws: WorkspaceId) {
        let known: Vec<(WorkspaceId, u64, [u8; 32])> =
            self.invites.iter().filter(|i| i.0 == ws).copied().collect();
        let roll = self.rng.below(10);
        let request = match (roll, self.rng.pick(&known).copied()) {
            (0..=3, Some((workspace, invite, secret))) => {
                let a = self.add_client(Credential::Admin([0; 32]), None, false);
                let s = self.rng.below(u64::from(self.shard_count)) as u16;
                if self.nodes[usize::from(s)].shard.is_none() {
                    return;
                }
                self.open_socket(a, s, false);
                let handle = format!("inv{}", self.rng.below(1_000_000));
                let request = PeopleRequest::RedeemInvite {
                    workspace,
                    invite,
                    secret,
                    handle,
                };
                self.request(a, Request::People(request), Pend::Redeem { ws });
                return;
            }
            (4, Some((_, invite, _))) => PeopleRequest::RevokeInvite {
                workspace: None,
                invite,
            },
            (5, _) => PeopleRequest::SetInvitePolicy {
                workspace: None,
                members_may_invite: self.rng.chance(1, 2),
            },
            _ => {
                let role = if self.rng.chance(1, 3) {
                    Role::Guest
                } else {
                    Role::Member
                };
                let request = PeopleRequest::CreateInvite {
                    workspace: None,
                    max_uses: 1 + self.rng.below(3) as u32,
                    expires_in_ms: 1 + self.rng.below(120_000),
                    role,
                };
                self.request(c, Request::People(request), Pend::Invite);
                return;
            }
        };
        self.request(c, Request::People(request), Pend::Other);
    }
}
