//! Typing and presence (issue 17, part 4): ephemeral state beside the
//! sequence — never in the WAL, never in a snapshot, never unread. The
//! handlers of every role for them, kept here (as `impl` blocks of the
//! roles) so the roles' own files only gain a dispatch line.
//!
//! **Typing.** `C` keeps, per connection, when it last forwarded a
//! `Typing` for each of at most TYPING_CONVERSATIONS_PER_CONN_MAX
//! conversations and forwards one per TYPING_INTERVAL_MS per conversation
//! (more are answered `Done` and dropped). The owner checks the typist may
//! post there (a durable member; not archived; admins-only channels: only
//! admins), answers `Done`, and sends `Event::Typing` in one `Fanout` per
//! shard with subscribed sessions — the same interest set as messages,
//! O(interested shards) per event whatever the member count, and nothing
//! written. `C` delivers it to its active subscribers of the conversation
//! except the typist's own sessions. Clients expire it after
//! TYPING_EXPIRY_MS.
//!
//! **Presence.** A user is `Active` while at least one of their devices is
//! connected (the home shard's `User::devices`) and they have not set
//! themselves away (`SetAway`, memory on the home shard: a restart of it
//! forgets the flag). A connection watches at most
//! PRESENCE_WATCH_PER_CONN_MAX users (`WatchPresence` replaces its set).
//! Interest is kept per shard, like conversations': `C` keeps user →
//! (its watching connections, the last state heard); the home shard `H`
//! keeps user → (the shards watching, the last state sent). `C` tells `H`
//! only when its first connection starts or its last stops watching a
//! user. A change at `H` (a device connects or goes, a shard restarts, a
//! manual away) sends one `PresenceChanged` per watching shard, and each
//! `C` delivers one event to its watching connections (the runtime encodes
//! it once): for a user watched by 100,000 connections spread over every
//! shard, one peer message per shard (≤ shard count + edges) and one
//! delivery per shard, the sockets written O(watchers) once each — never a
//! message per watcher between shards. `H` ignores watches of users who do
//! not exist or are of another workspace (no event ever comes); `GetPresence`
//! of them answers `NotFound`. A restarted `H` loses its watchers: every
//! `C` watches its users there again when it hears of the restart (as it
//! re-subscribes conversations); a restarted `C` is forgotten by `H` and
//! a late `PresenceChanged` for a user `C` no longer watches is answered
//! with an unwatch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::Effect;
use crate::auth::Access;
use crate::bitset::ShardSet;
use crate::commit::Ctx;
use crate::conn::ConnRole;
use crate::constants::{
    PRESENCE_WATCH_PER_CONN_MAX, TYPING_CONVERSATIONS_PER_CONN_MAX, TYPING_INTERVAL_MS,
};
use crate::home::HomeRole;
use crate::owner::OwnerRole;
use crate::peer::{self, Origin, Who};
use crate::types::{
    ConnId, ConversationId, Event, Millis, Presence, Reject, Request, Response, ShardId, UserId,
};

/// A connection's typing and presence state (on `C`).
#[derive(Debug, Default)]
pub(crate) struct ConnAround {
    /// (conversation, when its last `Typing` was forwarded), at most
    /// TYPING_CONVERSATIONS_PER_CONN_MAX, oldest first.
    typing: Vec<(ConversationId, Millis)>,
    /// Users whose presence it watches (at most PRESENCE_WATCH_PER_CONN_MAX).
    watching: BTreeSet<UserId>,
}

/// One watched user on `C`.
#[derive(Debug, Default)]
pub(crate) struct WatchedUser {
    /// The connections here watching them.
    conns: BTreeSet<ConnId>,
    /// The last state the home shard sent (`None`: none yet).
    presence: Option<Presence>,
}

/// One watched user on `H`.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    /// Shards with connections watching the user.
    shards: ShardSet,
    /// The state last sent to them.
    sent: Presence,
}

/// `C`'s presence subscriptions: user → watching connections (an entry
/// only while one watches; at most PRESENCE_WATCH_PER_CONN_MAX per
/// connection).
pub(crate) type PresenceSubs = BTreeMap<UserId, WatchedUser>;

/// `H`'s presence watchers: user → shards (an entry only while a shard
/// watches; at most one per user homed here) and the manual aways.
#[derive(Debug, Default)]
pub(crate) struct PresenceHome {
    watchers: BTreeMap<UserId, Watchers>,
    /// Users homed here who set themselves away (memory only).
    away: BTreeSet<UserId>,
}

/// Whether `last` (a connection's last forwarded `Typing` in that
/// conversation, if remembered) lets one more through at `now`; records it
/// if so, forgetting the oldest conversation when the table is full.
fn typing_allowed(around: &mut ConnAround, conversation: ConversationId, now: Millis) -> bool {
    let t = &mut around.typing;
    if let Some(i) = t.iter().position(|(c, _)| *c == conversation) {
        if now.0.saturating_sub(t[i].1 .0) < TYPING_INTERVAL_MS {
            return false;
        }
        t.remove(i);
    } else if t.len() >= TYPING_CONVERSATIONS_PER_CONN_MAX {
        t.remove(0);
    }
    t.push((conversation, now));
    true
}

// ----- C -----------------------------------------------------------------------

impl ConnRole {
    /// The requests of issue 17, parts 3-4 that `route_user` passes on:
    /// `ListPins` (`crate::pins`), typing and presence.
    pub(crate) fn route_around(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        who: Who,
        request: Request,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        match request {
            Request::Typing { conversation } => {
                self.route_typing(cx, origin, who, conversation, out);
                Ok(())
            }
            Request::WatchPresence { users } => {
                self.route_watch_presence(cx, origin, who, users, out)
            }
            Request::GetPresence { user } => {
                let body = peer::home::PresenceGet {
                    origin,
                    workspace: who.workspace,
                    user,
                };
                cx.send_peer(cx.home_of(user), body, out);
                Ok(())
            }
            Request::SetAway { away } => {
                let body = peer::home::SetAway {
                    origin,
                    user: who.user,
                    away,
                };
                cx.send_peer(cx.home_of(who.user), body, out);
                Ok(())
            }
            other => crate::pins::route(cx, origin, who, other, out),
        }
    }

    /// `Typing`: rate-limited here, decided by the owner.
    pub(crate) fn route_typing(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        who: Who,
        conversation: ConversationId,
        out: &mut Vec<Effect>,
    ) {
        let now = cx.now;
        let allowed = match self.conns.get_mut(&origin.conn) {
            Some(c) => typing_allowed(&mut c.around, conversation, now),
            None => false,
        };
        if !allowed {
            // Within the interval: the earlier one is still showing.
            return cx.reply(origin, Ok(Response::Done), out);
        }
        let to = cx.owner_of(conversation);
        let body = peer::owner::Typing {
            origin,
            who,
            conversation,
        };
        cx.send_peer(to, body, out);
    }

    /// The connections of a conversation's fanout that get `event`: every
    /// active subscriber, but a typist's own sessions never see their
    /// `Typing`.
    pub(crate) fn fanout_filter(event: &Event, subscriber: UserId) -> bool {
        !matches!(event, Event::Typing { user, .. } if *user == subscriber)
    }

    /// `WatchPresence`: replaces the connection's set; tells home shards
    /// of users no other connection here watched (or watches any more);
    /// delivers the states already known here at once.
    pub(crate) fn route_watch_presence(
        &mut self,
        cx: &mut Ctx,
        origin: Origin,
        who: Who,
        users: Vec<UserId>,
        out: &mut Vec<Effect>,
    ) -> Result<(), Reject> {
        if users.len() > PRESENCE_WATCH_PER_CONN_MAX {
            return Err(Reject::TooLarge(format!(
                "users: more than PRESENCE_WATCH_PER_CONN_MAX ({PRESENCE_WATCH_PER_CONN_MAX})"
            )));
        }
        let conn = origin.conn;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(Reject::NotFound);
        };
        let new: BTreeSet<UserId> = users.into_iter().collect();
        let old = std::mem::replace(&mut c.around.watching, new.clone());
        for user in old.difference(&new) {
            self.presence_unwatch(cx, conn, *user, out);
        }
        let mut known = Vec::new();
        for user in new.difference(&old) {
            let entry = self.presence.entry(*user).or_default();
            entry.conns.insert(conn);
            if entry.conns.len() == 1 {
                let body = peer::home::PresenceWatch {
                    user: *user,
                    workspace: who.workspace,
                    watch: true,
                };
                cx.send_peer(cx.home_of(*user), body, out);
            } else if let Some(presence) = entry.presence {
                known.push(Event::Presence {
                    user: *user,
                    presence,
                });
            }
        }
        cx.reply(origin, Ok(Response::Done), out);
        for event in known {
            self.deliver_presence(cx, vec![conn], event, out);
        }
        Ok(())
    }

    /// Drops `conn` from `user`'s watchers here; the last one tells `H`.
    fn presence_unwatch(
        &mut self,
        cx: &mut Ctx,
        conn: ConnId,
        user: UserId,
        out: &mut Vec<Effect>,
    ) {
        let Some(entry) = self.presence.get_mut(&user) else {
            return;
        };
        entry.conns.remove(&conn);
        if entry.conns.is_empty() {
            self.presence.remove(&user);
            let body = peer::home::PresenceWatch {
                user,
                workspace: crate::types::WorkspaceId(0),
                watch: false,
            };
            cx.send_peer(cx.home_of(user), body, out);
        }
    }

    /// A connection closes: its presence watches end.
    pub(crate) fn drop_conn_presence(
        &mut self,
        cx: &mut Ctx,
        conn: ConnId,
        around: &ConnAround,
        out: &mut Vec<Effect>,
    ) {
        for user in &around.watching {
            self.presence_unwatch(cx, conn, *user, out);
        }
    }

    /// Home shard `home` restarted and lost its watchers: watch every user
    /// homed there that connections here watch again.
    pub(crate) fn rewatch_presence(&mut self, cx: &mut Ctx, home: ShardId, out: &mut Vec<Effect>) {
        let users: Vec<(UserId, ConnId)> = self
            .presence
            .iter()
            .filter(|(u, _)| cx.home_of(**u) == home)
            .filter_map(|(u, e)| e.conns.first().map(|c| (*u, *c)))
            .collect();
        for (user, conn) in users {
            let workspace = match self.conns.get(&conn).map(|c| &c.session) {
                Some(crate::conn::Session::User { who, .. }) => who.workspace,
                _ => continue,
            };
            let body = peer::home::PresenceWatch {
                user,
                workspace,
                watch: true,
            };
            cx.send_peer(home, body, out);
        }
    }

    /// H → C: a watched user's presence (after a watch, or a change).
    pub(crate) fn on_presence_changed(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::conn::PresenceChanged,
        out: &mut Vec<Effect>,
    ) {
        let peer::conn::PresenceChanged { user, presence } = m;
        let Some(entry) = self.presence.get_mut(&user) else {
            // Stale interest (this shard restarted, or the last watcher
            // left while it was on its way): correct the home shard.
            let body = peer::home::PresenceWatch {
                user,
                workspace: crate::types::WorkspaceId(0),
                watch: false,
            };
            return cx.send_peer(from, body, out);
        };
        entry.presence = Some(presence);
        let conns: Vec<ConnId> = entry.conns.iter().copied().collect();
        self.deliver_presence(cx, conns, Event::Presence { user, presence }, out);
    }

    fn deliver_presence(
        &mut self,
        cx: &mut Ctx,
        conns: Vec<ConnId>,
        event: Event,
        out: &mut Vec<Effect>,
    ) {
        if conns.is_empty() {
            return;
        }
        cx.metrics.deliveries += 1;
        cx.metrics.delivered_conns += conns.len() as u64;
        out.push(Effect::Deliver {
            conns,
            event: Arc::new(event),
        });
    }
}

// ----- O -----------------------------------------------------------------------

impl OwnerRole {
    /// C → O: a member types. Nothing is written; one `Fanout` per
    /// interested shard.
    pub(crate) fn on_typing(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::Typing,
        out: &mut Vec<Effect>,
    ) {
        let peer::owner::Typing {
            origin,
            who,
            conversation,
        } = m;
        if let Err(r) = Self::conversation_for(cx, conversation, who, Access::Post) {
            return cx.reply(origin, Err(r), out);
        }
        cx.reply(origin, Ok(Response::Done), out);
        let event = Arc::new(Event::Typing {
            conversation,
            user: who.user,
        });
        let shards: Vec<ShardId> = cx
            .state
            .conversations
            .get(&conversation)
            .map(|c| c.interested.iter().collect())
            .unwrap_or_default();
        for shard in shards {
            let body = peer::conn::Fanout {
                conversation,
                event: event.clone(),
            };
            cx.send_peer(shard, body, out);
        }
    }
}

// ----- H -----------------------------------------------------------------------

impl HomeRole {
    /// A user's presence now.
    fn presence_of(&self, cx: &Ctx, user: UserId) -> Presence {
        let connected = cx
            .state
            .users
            .get(&user)
            .is_some_and(|u| !u.devices.is_empty());
        if connected && !self.presence.away.contains(&user) {
            Presence::Active
        } else {
            Presence::Away
        }
    }

    /// After anything that may change `user`'s presence: tells the
    /// watching shards if it changed (one message per shard).
    pub(crate) fn presence_touch(&mut self, cx: &mut Ctx, user: UserId, out: &mut Vec<Effect>) {
        let now = self.presence_of(cx, user);
        let Some(w) = self.presence.watchers.get_mut(&user) else {
            return;
        };
        if w.sent == now {
            return;
        }
        w.sent = now;
        let shards: Vec<ShardId> = w.shards.iter().collect();
        for shard in shards {
            let body = peer::conn::PresenceChanged {
                user,
                presence: now,
            };
            cx.send_peer(shard, body, out);
        }
    }

    /// Every watched user with a device on `shard` (it restarted): their
    /// presence may have changed; and `shard` watches nothing any more.
    pub(crate) fn presence_forget_shard(
        &mut self,
        cx: &mut Ctx,
        shard: ShardId,
        out: &mut Vec<Effect>,
    ) {
        for w in self.presence.watchers.values_mut() {
            w.shards.remove(shard);
        }
        self.presence.watchers.retain(|_, w| !w.shards.is_empty());
        let users: Vec<UserId> = self.presence.watchers.keys().copied().collect();
        for user in users {
            self.presence_touch(cx, user, out);
        }
    }

    /// C → H: start or stop watching a user homed here.
    pub(crate) fn on_presence_watch(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::home::PresenceWatch,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::PresenceWatch {
            user,
            workspace,
            watch,
        } = m;
        if !watch {
            if let Some(w) = self.presence.watchers.get_mut(&user) {
                w.shards.remove(from);
                if w.shards.is_empty() {
                    self.presence.watchers.remove(&user);
                }
            }
            return;
        }
        let visible = cx
            .state
            .users
            .get(&user)
            .is_some_and(|u| u.workspace == workspace);
        if !visible {
            return;
        }
        let presence = self.presence_of(cx, user);
        let w = self.presence.watchers.entry(user).or_insert(Watchers {
            shards: ShardSet::new(),
            sent: presence,
        });
        w.shards.insert(from);
        let body = peer::conn::PresenceChanged {
            user,
            presence: w.sent,
        };
        cx.send_peer(from, body, out);
    }

    /// C → H: `GetPresence`.
    pub(crate) fn on_presence_get(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::PresenceGet,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::PresenceGet {
            origin,
            workspace,
            user,
        } = m;
        let visible = cx
            .state
            .users
            .get(&user)
            .is_some_and(|u| u.workspace == workspace);
        let result = if visible {
            Ok(Response::Presence {
                user,
                presence: self.presence_of(cx, user),
                manual_away: self.presence.away.contains(&user),
            })
        } else {
            Err(Reject::NotFound)
        };
        cx.reply(origin, result, out);
    }

    /// C → H: `SetAway` of a user homed here.
    pub(crate) fn on_set_away(
        &mut self,
        cx: &mut Ctx,
        m: peer::home::SetAway,
        out: &mut Vec<Effect>,
    ) {
        let peer::home::SetAway { origin, user, away } = m;
        if !cx.state.users.contains_key(&user) {
            return cx.reply(origin, Err(Reject::NotFound), out);
        }
        if away {
            self.presence.away.insert(user);
        } else {
            self.presence.away.remove(&user);
        }
        cx.reply(origin, Ok(Response::Done), out);
        self.presence_touch(cx, user, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (conversation, ms) requests in order → which were let through.
    fn check(requests: &[(u64, u64)], want: &[bool]) {
        let mut around = ConnAround::default();
        let got: Vec<bool> = requests
            .iter()
            .map(|&(c, t)| typing_allowed(&mut around, ConversationId(c), Millis(t)))
            .collect();
        assert_eq!(got, want, "{requests:?}");
        assert!(around.typing.len() <= TYPING_CONVERSATIONS_PER_CONN_MAX);
    }

    #[test]
    fn typing_is_one_per_interval_per_conversation() {
        let i = TYPING_INTERVAL_MS;
        check(
            &[(1, 0), (1, 1), (1, i - 1), (1, i)],
            &[true, false, false, true],
        );
        check(
            &[(1, 0), (2, 1), (1, 2), (2, i + 1)],
            &[true, true, false, true],
        );
        // The table forgets the oldest conversation when full: it may
        // type again at once (bounded state over a strict rate).
        let n = TYPING_CONVERSATIONS_PER_CONN_MAX as u64;
        let mut requests: Vec<(u64, u64)> = (0..=n).map(|c| (c, 10)).collect();
        requests.push((0, 11));
        requests.push((n, 12));
        let mut want = vec![true; n as usize + 1];
        want.extend([true, false]);
        check(&requests, &want);
    }
}
