//! The connection shard's role: sessions, request routing, local
//! subscriptions and delivery.
//!
//! A request is checked for framing and limits here (cheap, before any
//! cross-shard hop) and forwarded to the shard that decides it; the answer
//! comes back as `peer::conn::Reply`.
//!
//! Subscriptions: each `(conversation, user, connection)` is *pending*
//! until the conversation's owner confirms the user's membership (a
//! `Watch` verdict); only *active* ones receive live events. The owner
//! keeps one bit per interested shard and vetoes stale subscriptions (a
//! user removed while their home shard's list still named the
//! conversation), so no live event reaches a non-member. Removal
//! (`Unsubscribed`) drops the user's active subscriptions at once; since
//! owner→shard messages are FIFO it overtakes no later fanout.
//! `Welcome` and join acks are sent after the verdicts, so a client that
//! syncs after them cannot miss a message between its read and its
//! subscription.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::Effect;
use crate::auth::hash_secret;
use crate::commit::Ctx;
use crate::constants::{
    BOOT_CONVERSATIONS_MAX, CONNECTIONS_PER_SHARD_MAX, GROUP_DM_MEMBERS_MAX, HISTORY_PAGE_MAX,
    PEER_BATCH_MAX, REQUEST_TIMEOUT_MS, SYNC_CURSORS_MAX, THREAD_PAGE_MAX,
};
use crate::constants::{PENDING_HELLOS_MAX, PENDING_WATCH_WAITERS_MAX};
use crate::hash::{HashState, Map};
use crate::ids::{shard_of_slot, spread_slot};
use crate::peer::{self, Actor, DeviceReg, GatherRequest, Origin, Who};
use crate::pending::PendingTable;
use crate::text::{check_body, check_name, NameKind};
use crate::types::{
    CloseReason, ConnId, ConversationId, Credential, DeviceInfo, Event, Millis, PeopleRequest,
    RateLimit, Reject, ReqId, Request, Response, Seq, ShardId, UnavailableCause, UserId,
    WorkspaceId,
};
use std::collections::BTreeSet;

/// The connection role's state (memory only): the connections this shard
/// holds, their local subscriptions, and the replies waiting for the
/// owners' watch verdicts or the home shards' hello verdicts.
#[derive(Debug)]
pub(crate) struct ConnRole {
    /// Open connections (at most CONNECTIONS_PER_SHARD_MAX).
    pub(crate) conns: Map<ConnId, Conn>,
    /// Local subscribers per conversation (entries only while some
    /// connection here is subscribed).
    pub(crate) subs: Map<ConversationId, LocalSub>,
    /// The next watch batch number (monotonic in an incarnation).
    pub(crate) next_nonce: u64,
    /// Watch batch → the waiter it counts for (one entry per unanswered
    /// batch of a waiter).
    pub(crate) nonce_waiters: Map<u64, u64>,
    /// Replies waiting for watch verdicts (at most
    /// PENDING_WATCH_WAITERS_MAX).
    pub(crate) waiters: PendingTable<Waiter>,
    /// Hellos waiting for the home shard, by connection, with their request
    /// id (at most PENDING_HELLOS_MAX).
    pub(crate) hellos: PendingTable<ReqId, ConnId>,
    /// Workspaces created through this shard (seeds their placement).
    pub(crate) placement_counter: u64,
    /// The user sessions held here by workspace (one entry per
    /// `Session::User` connection, so at most CONNECTIONS_PER_SHARD_MAX):
    /// a profile change reaches a workspace's sessions in O(those
    /// sessions), not O(connections) or O(members).
    pub(crate) by_workspace: BTreeSet<(WorkspaceId, ConnId)>,
    /// Issue 17, part 4: the users watched by connections here (see
    /// `crate::around`).
    pub(crate) presence: crate::around::PresenceSubs,
}

impl ConnRole {
    /// Empty, for a shard incarnation.
    pub(crate) fn new(hash: HashState, incarnation: u64) -> ConnRole {
        ConnRole {
            conns: hash.map(),
            subs: hash.map(),
            next_nonce: 1,
            nonce_waiters: hash.map(),
            waiters: PendingTable::new(PENDING_WATCH_WAITERS_MAX, incarnation),
            hellos: PendingTable::new(PENDING_HELLOS_MAX, incarnation),
            placement_counter: 0,
            by_workspace: BTreeSet::new(),
            presence: Default::default(),
        }
    }
}

/// A connection's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Session {
    /// Connected, no `Hello` yet (or it failed).
    Anonymous,
    /// `Hello` forwarded to the home shard.
    Authenticating {
        /// The hello's request id (its deadline is in the pending hellos).
        req: ReqId,
    },
    /// Admin session.
    Admin,
    /// User session.
    User {
        /// The user.
        who: Who,
        /// The token used.
        token: u64,
    },
}

/// A connection held by this shard.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) session: Session,
    pub(crate) device: Option<DeviceInfo>,
    /// Conversations this connection is subscribed to (pending or active).
    pub(crate) subs: BTreeSet<ConversationId>,
    /// Issue 17, part 4: its typing rate and presence watches.
    pub(crate) around: crate::around::ConnAround,
}

/// A connection's subscription to a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubConn {
    /// The watch batch that covers it.
    pub(crate) nonce: u64,
    /// Confirmed by the owner: live events are delivered.
    pub(crate) active: bool,
}

/// The local subscribers of one conversation.
#[derive(Debug, Default)]
pub(crate) struct LocalSub {
    pub(crate) conns: BTreeMap<(UserId, ConnId), SubConn>,
    /// The owner has this shard in its interest set (as far as we know).
    pub(crate) registered: bool,
    /// Watch items sent and not yet answered.
    pub(crate) outstanding: u32,
}

/// What to do when watch verdicts are in.
#[derive(Debug)]
pub(crate) enum WaiterAction {
    /// Reply `Welcome` to a hello.
    Welcome { origin: Origin, who: Who },
    /// Deliver `Event::Joined` and answer the join.
    Joined {
        user: UserId,
        conns: Vec<ConnId>,
        event: Option<Arc<Event>>,
        reply: Option<(Origin, Result<Response, Reject>)>,
    },
}

/// Replies waiting for watch verdicts.
#[derive(Debug)]
pub(crate) struct Waiter {
    /// Watch batches not yet answered.
    pub(crate) remaining: u32,
    /// The batches' nonces (keys of `nonce_waiters`), forgotten with the
    /// waiter when it expires.
    pub(crate) nonces: Vec<u64>,
    /// What to do once every batch is answered (or at the deadline).
    pub(crate) action: WaiterAction,
}

impl ConnRole {
    /// Emits the answer on a local connection (the connection role).
    pub(crate) fn emit_reply(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        result: Result<Response, Reject>,
        out: &mut Vec<Effect>,
    ) {
        assert_eq!(
            origin.conn.shard(),
            cx.config.shard,
            "reply on a foreign connection"
        );
        if origin.incarnation != cx.incarnation || !self.conns.contains_key(&origin.conn) {
            return; // The connection is gone; so is the reply.
        }
        if result.is_err() {
            cx.metrics.rejects += 1;
        }
        cx.metrics.replies += 1;
        out.push(Effect::Reply {
            conn: origin.conn,
            req: origin.req,
            result,
        });
    }

    pub(crate) fn on_connected(&mut self, cx: &mut Ctx, conn: ConnId, out: &mut Vec<Effect>) {
        assert_eq!(conn.shard(), cx.me(), "connection of another shard");
        if self.conns.len() >= CONNECTIONS_PER_SHARD_MAX {
            out.push(Effect::Close {
                conn,
                reason: CloseReason::Overloaded,
            });
            return;
        }
        self.conns.insert(
            conn,
            Conn {
                session: Session::Anonymous,
                device: None,
                subs: Default::default(),
                around: Default::default(),
            },
        );
    }

    fn direct_reply(
        &mut self,
        cx: &mut Ctx,
        conn: ConnId,
        req: ReqId,
        result: Result<Response, Reject>,
        out: &mut Vec<Effect>,
    ) {
        let origin = cx.origin(conn, req);
        self.emit_reply(cx, origin, result, out);
    }

    pub(crate) fn on_hello(
        &mut self,
        cx: &mut Ctx,
        conn: ConnId,
        req: ReqId,
        credential: Credential,
        device: DeviceInfo,
        out: &mut Vec<Effect>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return; // Never connected (or already gone): nobody to answer.
        };
        if c.session != Session::Anonymous {
            let r = Err(Reject::Invalid("hello: session already established".into()));
            return self.direct_reply(cx, conn, req, r, out);
        }
        if let Err(r) = check_name("device.name", &device.name, NameKind::Display) {
            return self.direct_reply(cx, conn, req, Err(r), out);
        }
        match credential {
            Credential::Admin(secret) => {
                let good: bool = subtle::ConstantTimeEq::ct_eq(
                    &hash_secret(&secret)[..],
                    &cx.config.admin_token_hash[..],
                )
                .into();
                if !good {
                    self.direct_reply(cx, conn, req, Err(Reject::Unauthenticated), out);
                    out.push(Effect::Close {
                        conn,
                        reason: CloseReason::Unauthenticated,
                    });
                    return;
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = Session::Admin;
                    c.device = Some(device);
                }
                let now = cx.now;
                let welcome = Response::Welcome {
                    user: None,
                    workspace: None,
                    now,
                    conn_rate: RateLimit::NONE,
                    user_rate: RateLimit::NONE,
                };
                self.direct_reply(cx, conn, req, Ok(welcome), out);
            }
            Credential::User {
                user,
                token,
                secret,
            } => {
                let deadline = Millis(cx.now.0 + REQUEST_TIMEOUT_MS);
                if self.hellos.is_full()
                    || self.hellos.insert_at(conn, Some(deadline), req).is_err()
                {
                    let r = Err(Reject::unavailable(
                        UnavailableCause::Overloaded,
                        "too many pending hellos (PENDING_HELLOS_MAX)",
                    ));
                    return self.direct_reply(cx, conn, req, r, out);
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = Session::Authenticating { req };
                    c.device = Some(device.clone());
                }
                let home = cx.home_of(user);
                let origin = cx.origin(conn, req);
                cx.send_peer(
                    home,
                    peer::home::Auth {
                        origin,
                        user,
                        token,
                        secret,
                        device,
                    },
                    out,
                );
            }
        }
    }

    pub(crate) fn on_auth_ok(
        &mut self,
        cx: &mut Ctx,
        m: peer::conn::AuthOk,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::AuthOk {
            origin,
            who,
            token,
            conversations,
        } = m;
        let waiting = origin.incarnation == cx.incarnation
            && self.conns.get(&origin.conn).is_some_and(
                |c| matches!(c.session, Session::Authenticating { req, .. } if req == origin.req),
            );
        if !waiting {
            // The connection went away or timed out meanwhile: the home
            // shard registered a device that does not exist.
            let home = cx.home_of(who.user);
            cx.send_peer(
                home,
                peer::home::DeviceGone {
                    user: who.user,
                    conn: origin.conn,
                },
                out,
            );
            return;
        }
        self.hellos.remove(origin.conn);
        if let Some(c) = self.conns.get_mut(&origin.conn) {
            c.session = Session::User { who, token };
            self.by_workspace.insert((who.workspace, origin.conn));
        }
        self.subscribe(
            cx,
            who,
            &[origin.conn],
            &conversations,
            WaiterAction::Welcome { origin, who },
            out,
        );
    }

    pub(crate) fn on_auth_failed(
        &mut self,
        cx: &mut Ctx,
        m: peer::conn::AuthFailed,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::AuthFailed { origin, reject } = m;
        let waiting = origin.incarnation == cx.incarnation
            && self.conns.get(&origin.conn).is_some_and(
                |c| matches!(c.session, Session::Authenticating { req, .. } if req == origin.req),
            );
        if !waiting {
            return;
        }
        self.hellos.remove(origin.conn);
        if let Some(c) = self.conns.get_mut(&origin.conn) {
            c.session = Session::Anonymous;
        }
        let close = reject == Reject::Unauthenticated;
        // Emitted here, before the close, not queued behind it.
        self.emit_reply(cx, origin, Err(reject), out);
        if close {
            out.push(Effect::Close {
                conn: origin.conn,
                reason: CloseReason::Unauthenticated,
            });
        }
    }

    pub(crate) fn expire_hellos(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        for (conn, req) in self.hellos.expire(cx.now) {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if c.session != (Session::Authenticating { req }) {
                continue;
            }
            c.session = Session::Anonymous;
            let r = Err(Reject::unavailable(
                UnavailableCause::PeerTimeout,
                "home shard did not answer",
            ));
            self.direct_reply(cx, conn, req, r, out);
        }
    }

    pub(crate) fn on_disconnected(&mut self, cx: &mut Ctx, conn: ConnId, out: &mut Vec<Effect>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.hellos.remove(conn);
        self.drop_conn_subs(cx, conn, &c, out);
        if let Session::User { who, .. } = c.session {
            self.by_workspace.remove(&(who.workspace, conn));
            let home = cx.home_of(who.user);
            cx.send_peer(
                home,
                peer::home::DeviceGone {
                    user: who.user,
                    conn,
                },
                out,
            );
        }
    }

    /// Removes every subscription of a departed connection.
    fn drop_conn_subs(&mut self, cx: &mut Ctx, conn: ConnId, c: &Conn, out: &mut Vec<Effect>) {
        self.drop_conn_presence(cx, conn, &c.around, out);
        let Session::User { who, .. } = c.session else {
            return;
        };
        for conv in &c.subs {
            if let Some(sub) = self.subs.get_mut(conv) {
                sub.conns.remove(&(who.user, conn));
            }
            self.cleanup_sub(cx, *conv, out);
        }
    }

    /// Drops a conversation's entry once nothing is subscribed or awaited,
    /// telling the owner when it counted this shard as interested.
    fn cleanup_sub(&mut self, cx: &mut Ctx, conv: ConversationId, out: &mut Vec<Effect>) {
        let Some(sub) = self.subs.get(&conv) else {
            return;
        };
        if !sub.conns.is_empty() || sub.outstanding > 0 {
            return;
        }
        let registered = sub.registered;
        self.subs.remove(&conv);
        if registered {
            let owner = cx.owner_of(conv);
            cx.send_peer(owner, peer::owner::Unwatch { conversation: conv }, out);
        }
    }

    /// Subscribes `conns` (sessions of `user`) to `convs` as pending, asks
    /// the owners to confirm, and runs `action` when every verdict is in
    /// (or at the deadline).
    pub(crate) fn subscribe(
        &mut self,
        cx: &mut Ctx,
        who: Who,
        conns: &[ConnId],
        convs: &[ConversationId],
        action: WaiterAction,
        out: &mut Vec<Effect>,
    ) {
        let mut by_owner: BTreeMap<ShardId, Vec<ConversationId>> = BTreeMap::new();
        if !conns.is_empty() {
            for &conv in convs {
                by_owner.entry(cx.owner_of(conv)).or_default().push(conv);
            }
        }
        let batches: Vec<(ShardId, Vec<ConversationId>)> = by_owner
            .into_iter()
            .flat_map(|(owner, convs)| {
                convs
                    .chunks(PEER_BATCH_MAX)
                    .map(|c| (owner, c.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let waiter = if batches.is_empty() || self.waiters.is_full() {
            // Nothing to wait for (or no room to wait: answer now; the
            // subscriptions still complete, the client's sync covers it).
            self.run_waiter(cx, action, out);
            None
        } else {
            let waiter = Waiter {
                remaining: batches.len() as u32,
                nonces: Vec::with_capacity(batches.len()),
                action,
            };
            let deadline = Millis(cx.now.0 + REQUEST_TIMEOUT_MS);
            // Not full (checked above), so the insert succeeds.
            self.waiters.insert(Some(deadline), waiter).ok()
        };
        for (owner, batch) in batches {
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            if let Some(id) = waiter {
                self.nonce_waiters.insert(nonce, id);
                if let Some(w) = self.waiters.get_mut(id) {
                    w.nonces.push(nonce);
                }
            }
            let ticket = cx.ticket(nonce);
            let user = who.user;
            for &conv in &batch {
                let sub = self.subs.entry(conv).or_insert_with(LocalSub::default);
                sub.outstanding += 1;
                for &conn in conns {
                    let active = sub.conns.get(&(user, conn)).is_some_and(|s| s.active);
                    sub.conns.insert((user, conn), SubConn { nonce, active });
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.subs.insert(conv);
                    }
                }
            }
            let items = batch.into_iter().map(|c| (who, c)).collect();
            let body = peer::owner::Watch {
                nonce: ticket,
                items,
            };
            cx.send_peer(owner, body, out);
        }
    }

    pub(crate) fn on_watch_reply(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::conn::WatchReply,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::WatchReply {
            nonce: ticket,
            verdicts,
        } = m;
        if ticket.incarnation != cx.incarnation {
            // For an earlier start of this shard; the owner has since
            // cleared our interest (it processed our `Restarted` after).
            return;
        }
        let nonce = ticket.id;
        for (user, conv, ok) in verdicts {
            let Some(sub) = self.subs.get_mut(&conv) else {
                if ok {
                    // Cannot happen while the entry waits for this verdict;
                    // if it does, keep the owner's set exact.
                    cx.send_peer(from, peer::owner::Unwatch { conversation: conv }, out);
                }
                continue;
            };
            sub.outstanding = sub.outstanding.saturating_sub(1);
            if ok {
                sub.registered = true;
            }
            let mine: Vec<ConnId> = sub
                .conns
                .range((user, ConnId(0))..=(user, ConnId(u64::MAX)))
                .filter(|(_, s)| s.nonce <= nonce)
                .map(|((_, c), _)| *c)
                .collect();
            for conn in mine {
                if ok {
                    if let Some(s) = sub.conns.get_mut(&(user, conn)) {
                        s.active = true;
                    }
                } else {
                    sub.conns.remove(&(user, conn));
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.subs.remove(&conv);
                    }
                }
            }
            self.cleanup_sub(cx, conv, out);
        }
        if let Some(id) = self.nonce_waiters.remove(&nonce) {
            let done = match self.waiters.get_mut(id) {
                Some(w) => {
                    w.remaining -= 1;
                    w.remaining == 0
                }
                None => false,
            };
            if done {
                if let Some(w) = self.waiters.remove(id) {
                    self.run_waiter(cx, w.action, out);
                }
            }
        }
    }

    pub(crate) fn expire_waiters(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        for (_, w) in self.waiters.expire(cx.now) {
            for nonce in &w.nonces {
                self.nonce_waiters.remove(nonce);
            }
            // The owner did not answer (it restarted; it will ask for
            // our subscriptions again). Answer anyway: sync covers it.
            self.run_waiter(cx, w.action, out);
        }
    }

    fn run_waiter(&mut self, cx: &mut Ctx, action: WaiterAction, out: &mut Vec<Effect>) {
        match action {
            WaiterAction::Welcome { origin, who } => {
                let now = cx.now;
                let welcome = Response::Welcome {
                    user: Some(who.user),
                    workspace: Some(who.workspace),
                    now,
                    conn_rate: RateLimit::NONE,
                    user_rate: RateLimit::NONE,
                };
                cx.reply(origin, Ok(welcome), out);
            }
            WaiterAction::Joined {
                user,
                conns,
                event,
                reply,
            } => {
                if let Some(event) = event {
                    let alive = self.user_conns(user, &conns);
                    self.deliver(cx, alive, event, out);
                }
                if let Some((origin, result)) = reply {
                    cx.reply(origin, result, out);
                }
            }
        }
    }

    /// The connections in `conns` that are still sessions of `user`.
    fn user_conns(&self, user: UserId, conns: &[ConnId]) -> Vec<ConnId> {
        conns
            .iter()
            .copied()
            .filter(|c| {
                self.conns.get(c).is_some_and(
                    |c| matches!(c.session, Session::User { who, .. } if who.user == user),
                )
            })
            .collect()
    }

    fn deliver(
        &mut self,
        cx: &mut Ctx,
        conns: Vec<ConnId>,
        event: Arc<Event>,
        out: &mut Vec<Effect>,
    ) {
        if conns.is_empty() {
            return;
        }
        cx.metrics.deliveries += 1;
        cx.metrics.delivered_conns += conns.len() as u64;
        out.push(Effect::Deliver { conns, event });
    }

    pub(crate) fn on_subscribe_conns(
        &mut self,
        cx: &mut Ctx,
        m: peer::conn::SubscribeConns,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::SubscribeConns {
            user,
            conversation,
            conns,
            incarnation,
            event,
            reply,
        } = m;
        let alive = if incarnation == cx.incarnation {
            self.user_conns(user, &conns)
        } else {
            Vec::new()
        };
        let who = alive
            .first()
            .and_then(|c| match self.conns.get(c).map(|c| &c.session) {
                Some(Session::User { who, .. }) => Some(*who),
                _ => None,
            });
        let action = WaiterAction::Joined {
            user,
            conns: alive.clone(),
            event,
            reply,
        };
        match who {
            Some(who) => self.subscribe(cx, who, &alive, &[conversation], action, out),
            None => self.run_waiter(cx, action, out),
        }
    }

    pub(crate) fn on_deliver_to_conns(
        &mut self,
        cx: &mut Ctx,
        m: peer::conn::DeliverToConns,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::DeliverToConns {
            user,
            conns,
            incarnation,
            event,
        } = m;
        if incarnation != cx.incarnation {
            return;
        }
        let alive = self.user_conns(user, &conns);
        self.deliver(cx, alive, event, out);
    }

    pub(crate) fn on_close_conns(
        &mut self,
        cx: &mut Ctx,
        m: peer::conn::CloseConns,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::CloseConns {
            conns,
            incarnation,
            reason,
        } = m;
        if incarnation != cx.incarnation {
            return;
        }
        for conn in conns {
            let Some(c) = self.conns.remove(&conn) else {
                continue;
            };
            self.hellos.remove(conn);
            self.drop_conn_subs(cx, conn, &c, out);
            if let Session::User { who, .. } = c.session {
                self.by_workspace.remove(&(who.workspace, conn));
            }
            out.push(Effect::Close { conn, reason });
        }
    }

    pub(crate) fn on_unsubscribed(
        &mut self,
        cx: &mut Ctx,
        m: peer::conn::Unsubscribed,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::Unsubscribed { conversation, user } = m;
        let Some(sub) = self.subs.get_mut(&conversation) else {
            return;
        };
        // Active subscriptions stop now. Pending ones keep waiting for their
        // own verdict, which the owner decides after this removal.
        let gone: Vec<ConnId> = sub
            .conns
            .range((user, ConnId(0))..=(user, ConnId(u64::MAX)))
            .filter(|(_, s)| s.active)
            .map(|((_, c), _)| *c)
            .collect();
        for conn in gone {
            sub.conns.remove(&(user, conn));
            if let Some(c) = self.conns.get_mut(&conn) {
                c.subs.remove(&conversation);
            }
        }
        self.cleanup_sub(cx, conversation, out);
    }

    pub(crate) fn on_fanout(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::conn::Fanout,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::Fanout {
            conversation,
            event,
        } = m;
        let Some(sub) = self.subs.get(&conversation) else {
            // Stale interest (e.g. this shard restarted): correct the owner.
            cx.send_peer(from, peer::owner::Unwatch { conversation }, out);
            return;
        };
        let conns: Vec<ConnId> = sub
            .conns
            .iter()
            .filter(|((user, _), s)| s.active && Self::fanout_filter(&event, *user))
            .map(|((_, c), _)| *c)
            .collect();
        self.deliver(cx, conns, event, out);
    }

    /// Owner `owner` restarted and lost its interest sets: ask again for
    /// every local subscription of its conversations.
    pub(crate) fn rewatch_owner(&mut self, cx: &mut Ctx, owner: ShardId, out: &mut Vec<Effect>) {
        let mut convs: Vec<ConversationId> = self
            .subs
            .keys()
            .copied()
            .filter(|c| cx.owner_of(*c) == owner)
            .collect();
        convs.sort_unstable();
        let mut items: Vec<(Who, ConversationId)> = Vec::new();
        for conv in convs {
            let Some(sub) = self.subs.get_mut(&conv) else {
                continue;
            };
            sub.registered = false;
            let mut whos: Vec<Who> = Vec::new();
            for (user, conn) in sub.conns.keys() {
                if whos.last().is_some_and(|w| w.user == *user) {
                    continue;
                }
                if let Some(Session::User { who, .. }) = self.conns.get(conn).map(|c| &c.session) {
                    whos.push(*who);
                }
            }
            sub.outstanding += whos.len() as u32;
            items.extend(whos.into_iter().map(|w| (w, conv)));
        }
        for chunk in items.chunks(PEER_BATCH_MAX) {
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            let ticket = cx.ticket(nonce);
            for (who, conv) in chunk {
                if let Some(sub) = self.subs.get_mut(conv) {
                    for ((_, _), s) in sub
                        .conns
                        .range_mut((who.user, ConnId(0))..=(who.user, ConnId(u64::MAX)))
                    {
                        // Pending again until the owner's verdict: a batch
                        // split in several could otherwise let a fanout
                        // reach a user removed while the owner was down.
                        s.nonce = nonce;
                        s.active = false;
                    }
                }
            }
            let items = chunk.to_vec();
            let body = peer::owner::Watch {
                nonce: ticket,
                items,
            };
            cx.send_peer(owner, body, out);
        }
    }

    /// Home shard `home` restarted and lost its device registry: register
    /// our sessions of its users again.
    pub(crate) fn register_devices_with(
        &mut self,
        cx: &mut Ctx,
        home: ShardId,
        out: &mut Vec<Effect>,
    ) {
        let mut devices: Vec<DeviceReg> = self
            .conns
            .iter()
            .filter_map(|(conn, c)| match (&c.session, &c.device) {
                (Session::User { who, token }, Some(device)) if cx.home_of(who.user) == home => {
                    Some(DeviceReg {
                        conn: *conn,
                        user: who.user,
                        token: *token,
                        device: device.clone(),
                        incarnation: cx.incarnation,
                    })
                }
                _ => None,
            })
            .collect();
        devices.sort_by_key(|d| d.conn);
        for chunk in devices.chunks(PEER_BATCH_MAX) {
            cx.send_peer(
                home,
                peer::home::DevicesRegister {
                    devices: chunk.to_vec(),
                },
                out,
            );
        }
    }

    pub(crate) fn on_request(
        &mut self,
        cx: &mut Ctx,
        conn: ConnId,
        req: ReqId,
        request: Request,
        out: &mut Vec<Effect>,
    ) {
        let origin = cx.origin(conn, req);
        let session = match self.conns.get(&conn) {
            Some(c) => c.session.clone(),
            None => return,
        };
        let result = match session {
            // Redeeming an invite needs no session (it makes the token).
            Session::Anonymous => match request {
                Request::People(p @ PeopleRequest::RedeemInvite { .. }) => {
                    self.route_redeem(cx, origin, p, out)
                }
                _ => Err(Reject::Unauthenticated),
            },
            Session::Authenticating { .. } => Err(Reject::Unauthenticated),
            Session::Admin => self.route_admin(cx, origin, request, out),
            Session::User { who, token } => match request {
                Request::People(PeopleRequest::ListTokens) => {
                    let body = peer::home::ListTokens {
                        origin,
                        user: who.user,
                        current: token,
                    };
                    cx.send_peer(cx.home_of(who.user), body, out);
                    Ok(())
                }
                request => self.route_user(cx, origin, who, request, out),
            },
        };
        if let Err(reject) = result {
            cx.reply(origin, Err(reject), out);
        }
    }

    fn route_admin(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        request: Request,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        match request {
            Request::CreateWorkspace { name } => {
                check_name("name", &name, NameKind::Display)?;
                self.placement_counter += 1;
                let seed = self.placement_counter ^ (cx.now.0 << 20) ^ u64::from(cx.me().0);
                let slot = spread_slot(seed);
                let to = shard_of_slot(slot, cx.shard_count());
                cx.send_peer(
                    to,
                    peer::workspace::CreateWorkspace { origin, slot, name },
                    out,
                );
            }
            Request::CreateUser { workspace, name } => {
                return self.route_create_user(cx, origin, Actor::Admin, workspace, name, out);
            }
            Request::IssueToken { user } => {
                let to = cx.home_of(user);
                cx.send_peer(to, peer::home::IssueToken { origin, user }, out);
            }
            Request::RevokeToken { user, token } => {
                let to = cx.home_of(user);
                cx.send_peer(
                    to,
                    peer::home::RevokeToken {
                        origin,
                        user,
                        token,
                    },
                    out,
                );
            }
            Request::Remove { conversation, user } => {
                let to = cx.owner_of(conversation);
                cx.send_peer(
                    to,
                    peer::owner::RemoveMember {
                        origin,
                        actor: Actor::Admin,
                        user,
                        conversation,
                    },
                    out,
                );
            }
            Request::People(p) => return self.route_people_admin(cx, origin, p, out),
            _ => {
                return Err(Reject::Invalid(
                    "an admin session has no user; use a user token".into(),
                ))
            }
        }
        Ok(())
    }

    fn route_user(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        who: Who,
        request: Request,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        let home = cx.home_of(who.user);
        match request {
            Request::CreateWorkspace { .. } | Request::IssueToken { .. } => {
                return Err(Reject::NotAdmin)
            }
            Request::RevokeToken { user, token } => {
                return self.route_own_revoke(cx, origin, who, user, token, out)
            }
            Request::CreateUser { workspace, name } => {
                return self.route_create_user(cx, origin, Actor::User(who), workspace, name, out);
            }
            Request::CreateChannel { name, private } => {
                check_name("name", &name, NameKind::Handle)?;
                let body = peer::home::CreateChannel {
                    origin,
                    who,
                    name,
                    private,
                };
                cx.send_peer(home, body, out);
            }
            Request::Join { conversation } => {
                let body = peer::home::Join {
                    origin,
                    who,
                    conversation,
                };
                cx.send_peer(home, body, out);
            }
            Request::Leave { conversation } => {
                // Leaving is removing oneself.
                let remove = Request::Remove {
                    conversation,
                    user: who.user,
                };
                return self.route_user(cx, origin, who, remove, out);
            }
            Request::Invite { conversation, user } => {
                let to = cx.home_of(user);
                let body = peer::home::Invite {
                    origin,
                    who,
                    conversation,
                    user,
                };
                cx.send_peer(to, body, out);
            }
            Request::Remove { conversation, user } => {
                let to = cx.owner_of(conversation);
                let body = peer::owner::RemoveMember {
                    origin,
                    actor: Actor::User(who),
                    user,
                    conversation,
                };
                cx.send_peer(to, body, out);
            }
            Request::OpenDm { users } => {
                let members = dm_members(users, who.user)?;
                let body = peer::home::OpenDm {
                    origin,
                    who,
                    members,
                };
                cx.send_peer(home, body, out);
            }
            Request::ListConversations => {
                let body = peer::gather::Start {
                    origin,
                    who,
                    request: GatherRequest::List,
                };
                cx.send_peer(home, body, out);
            }
            Request::Lookup { name, kind } => {
                check_name("name", &name, NameKind::Handle)?;
                let to = cx.workspace_shard(who.workspace);
                let body = peer::workspace::Lookup {
                    origin,
                    who,
                    name,
                    kind,
                };
                cx.send_peer(to, body, out);
            }
            Request::Send {
                conversation,
                client_msg_id,
                body,
                mut mentions,
                broadcast,
            } => {
                check_body(&body, mentions.len())?;
                mentions.sort_unstable();
                mentions.dedup();
                let to = cx.owner_of(conversation);
                let msg = peer::owner::Send {
                    origin,
                    who,
                    conversation,
                    client_msg_id,
                    body,
                    mentions,
                    broadcast,
                };
                cx.send_peer(to, msg, out);
            }
            change @ (Request::Change { .. }
            | Request::SetChannel { .. }
            | Request::Reply { .. }
            | Request::Thread { .. }) => route_change(cx, origin, who, change, out)?,
            Request::Sync { cursors, reads } => {
                check_sync(&cursors, &reads)?;
                let body = peer::gather::Start {
                    origin,
                    who,
                    request: GatherRequest::Sync { cursors, reads },
                };
                cx.send_peer(home, body, out);
            }
            Request::History {
                conversation,
                anchor,
                limit,
            } => {
                if limit == 0 {
                    return Err(Reject::Invalid("limit: must be positive".into()));
                }
                if limit > HISTORY_PAGE_MAX {
                    return Err(Reject::TooLarge(format!(
                        "limit: more than HISTORY_PAGE_MAX ({HISTORY_PAGE_MAX})"
                    )));
                }
                let to = cx.owner_of(conversation);
                let body = peer::owner::History {
                    origin,
                    who,
                    conversation,
                    anchor,
                    limit,
                };
                cx.send_peer(to, body, out);
            }
            Request::Boot { limit, offset } => {
                if limit == 0 {
                    return Err(Reject::Invalid("limit: must be positive".into()));
                }
                if limit > BOOT_CONVERSATIONS_MAX {
                    return Err(Reject::TooLarge(format!(
                        "limit: more than BOOT_CONVERSATIONS_MAX ({BOOT_CONVERSATIONS_MAX})"
                    )));
                }
                let body = peer::gather::Start {
                    origin,
                    who,
                    request: GatherRequest::Boot { limit, offset },
                };
                cx.send_peer(home, body, out);
            }
            Request::MarkRead { conversation, seq } => {
                let to = cx.owner_of(conversation);
                let body = peer::owner::MarkRead {
                    origin,
                    who,
                    conversation,
                    seq,
                };
                cx.send_peer(to, body, out);
            }
            Request::SetNotify {
                conversation,
                level,
                muted,
            } => {
                let to = cx.owner_of(conversation);
                let body = peer::owner::SetNotify {
                    origin,
                    who,
                    conversation,
                    level,
                    muted,
                };
                cx.send_peer(to, body, out);
            }
            device @ (Request::SetFocus { .. } | Request::SetDnd { .. }) => {
                route_device(cx, origin, who, home, device, out)
            }
            Request::People(p) => return self.route_people(cx, origin, who, p, out),
            other => return self.route_around(cx, origin, who, other, out),
        }
        Ok(())
    }
}

/// `SetFocus` and `SetDnd`: device and do-not-disturb state, kept in the
/// user's home shard's memory (`home`); other requests are not routed here.
fn route_device(
    cx: &mut Ctx,
    origin: Origin,
    who: Who,
    home: ShardId,
    request: Request,
    out: &mut Vec<Effect>,
) {
    match request {
        Request::SetFocus { focused, active } => {
            let body = peer::home::SetFocus {
                origin,
                user: who.user,
                focused,
                active,
            };
            cx.send_peer(home, body, out);
        }
        Request::SetDnd { until } => {
            let body = peer::home::SetDnd {
                origin,
                user: who.user,
                until,
            };
            cx.send_peer(home, body, out);
        }
        _ => {}
    }
}

impl ConnRole {
    /// The conn role's entry point: one message addressed to it.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        msg: peer::conn::ConnMsg,
        out: &mut Vec<Effect>,
    ) {
        use peer::conn::ConnMsg;
        match msg {
            ConnMsg::Reply(m) => self.emit_reply(cx, m.origin, m.result, out),
            ConnMsg::AuthOk(m) => self.on_auth_ok(cx, m, out),
            ConnMsg::AuthFailed(m) => self.on_auth_failed(cx, m, out),
            ConnMsg::CloseConns(m) => self.on_close_conns(cx, m, out),
            ConnMsg::DeliverToConns(m) => self.on_deliver_to_conns(cx, m, out),
            ConnMsg::SubscribeConns(m) => self.on_subscribe_conns(cx, m, out),
            ConnMsg::WatchReply(m) => self.on_watch_reply(cx, from, m, out),
            ConnMsg::Unsubscribed(m) => self.on_unsubscribed(cx, m, out),
            ConnMsg::Fanout(m) => self.on_fanout(cx, from, m, out),
            ConnMsg::PresenceChanged(m) => self.on_presence_changed(cx, from, m, out),
            ConnMsg::SessionRole(m) => self.on_session_role(cx, m),
            ConnMsg::ProfileChanged(m) => self.on_profile_changed(cx, m, out),
        }
    }
}

/// Checks a `Sync`'s sizes at the connection shard.
fn check_sync(
    cursors: &[(ConversationId, crate::types::Seq)],
    reads: &[crate::types::Seq],
) -> Result<(), Reject> {
    if cursors.len() > SYNC_CURSORS_MAX {
        return Err(Reject::TooLarge(format!(
            "cursors: more than SYNC_CURSORS_MAX ({SYNC_CURSORS_MAX})"
        )));
    }
    if !reads.is_empty() && reads.len() != cursors.len() {
        return Err(Reject::Invalid(
            "reads: one per cursor, in the same order, or none".into(),
        ));
    }
    Ok(())
}

/// The members of a DM `requester` opens with `users`: sorted, unique, the
/// requester included, 2..=GROUP_DM_MEMBERS_MAX of them.
fn dm_members(mut users: Vec<UserId>, requester: UserId) -> Result<Vec<UserId>, Reject> {
    users.push(requester);
    users.sort_unstable();
    users.dedup();
    if users.len() < 2 {
        return Err(Reject::Invalid(
            "users: name at least one other user".into(),
        ));
    }
    if users.len() > GROUP_DM_MEMBERS_MAX {
        return Err(Reject::TooLarge(format!(
            "users: a group DM has at most GROUP_DM_MEMBERS_MAX ({GROUP_DM_MEMBERS_MAX}) members"
        )));
    }
    Ok(users)
}

/// `Request::Reply` and `Request::Thread` (issue 17, part 2): checked
/// here like `Send` and `History`, decided by the owner.
fn route_thread(
    cx: &mut Ctx,
    origin: Origin,
    who: Who,
    request: Request,
    out: &mut Vec<Effect>,
) -> Result<(), Reject> {
    match request {
        Request::Reply {
            conversation,
            root,
            in_channel,
            client_msg_id,
            body,
            mut mentions,
            broadcast,
        } => {
            check_body(&body, mentions.len())?;
            mentions.sort_unstable();
            mentions.dedup();
            let send = peer::owner::Send {
                origin,
                who,
                conversation,
                client_msg_id,
                body,
                mentions,
                broadcast,
            };
            let msg = peer::owner::PostReply {
                send,
                root,
                in_channel,
            };
            cx.send_peer(cx.owner_of(conversation), msg, out);
        }
        Request::Thread {
            conversation,
            root,
            after,
            limit,
        } => {
            if limit == 0 {
                return Err(Reject::Invalid("limit: must be positive".into()));
            }
            if limit > THREAD_PAGE_MAX {
                return Err(Reject::TooLarge(format!(
                    "limit: more than THREAD_PAGE_MAX ({THREAD_PAGE_MAX})"
                )));
            }
            let body = peer::owner::ThreadPage {
                origin,
                who,
                conversation,
                root,
                after,
                limit,
            };
            cx.send_peer(cx.owner_of(conversation), body, out);
        }
        _ => {}
    }
    Ok(())
}

/// `Request::Change` (issue 17) and `Request::SetChannel` (issue 16,
/// part 4): checked here, decided by the owner; `Reply` and `Thread` go
/// on to [`route_thread`].
fn route_change(
    cx: &mut Ctx,
    origin: Origin,
    who: Who,
    request: Request,
    out: &mut Vec<Effect>,
) -> Result<(), Reject> {
    let (conversation, target, kind, text) = match request {
        Request::Change {
            conversation,
            target,
            kind,
            text,
        } => {
            crate::text::check_change(kind, &text)?;
            (conversation, target, kind, text)
        }
        // Issue 16, part 4: a channel setting, target 0.
        Request::SetChannel {
            conversation,
            kind,
            text,
        } => {
            crate::text::check_setting(kind, &text)?;
            (conversation, Seq(0), kind, text)
        }
        // Threads (issue 17, part 2).
        other => return route_thread(cx, origin, who, other, out),
    };
    let to = cx.owner_of(conversation);
    let msg = peer::owner::ChangeMessage {
        origin,
        who,
        conversation,
        target,
        kind,
        text,
    };
    cx.send_peer(to, msg, out);
    Ok(())
}
