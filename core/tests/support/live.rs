//! Issue 17 in the simulation: devices edit, delete, react to, pin and
//! unpin messages they hold (their own and others'), and the replies are
//! checked against the model (a change acknowledged is durable; a refusal is one the rules
//! allow). Issue 16, part 4: devices change channel settings the same way.
//! Threads (issue 17, part 2): devices reply to messages they hold and read
//! threads; the checker checks every served reply and root against the
//! model and that every device ends with every root's reply count.
//! Pins pages, typing and presence (issue 17, parts 3-4) are asked for
//! too: they write nothing, so any answer but a refusal of a well-formed
//! request will do.

use courier_core::api::{
    ChangeKind, ConversationId, ConversationKind, Reject, Request, Response, Seq, UserId,
};

use super::{Pend, World};

const EMOJI: [&str; 4] = ["+1", "eyes", "tada", "heart"];

impl World {
    /// A random change of a message the device holds.
    pub(super) fn act_change(&mut self, c: usize, member_convs: &[ConversationId]) {
        let Some(&conv) = self.rng.pick(member_convs) else {
            return;
        };
        let user = self.clients[c].user;
        let posts: Vec<(Seq, bool)> = self.clients[c]
            .convs
            .get(&conv)
            .map(|cc| {
                cc.msgs
                    .values()
                    .filter(|m| m.change.is_none())
                    .map(|m| (m.seq, Some(m.sender) == user))
                    .collect()
            })
            .unwrap_or_default();
        let Some(&(target, own)) = self.rng.pick(&posts) else {
            return;
        };
        if self.rng.chance(1, 3) {
            return self.act_thread(c, conv, target);
        }
        if self.rng.chance(1, 8) {
            return self.act_around(c, conv);
        }
        let (kind, text) = match self.rng.below(12) {
            0..=2 => (
                ChangeKind::Edit,
                format!("c{c}-edit-{}", self.rng.below(1000)),
            ),
            3 => (ChangeKind::Delete, String::new()),
            4..=7 => (ChangeKind::React, self.emoji()),
            8..=9 => (ChangeKind::Unreact, self.emoji()),
            // Issue 17, part 3: pins are changes like reactions.
            10 => (ChangeKind::Pin, String::new()),
            _ => (ChangeKind::Unpin, String::new()),
        };
        let request = Request::Change {
            conversation: conv,
            target,
            kind,
            text,
        };
        self.request(c, request, Pend::Change { conv, own });
    }

    /// Threads: a reply to `root` (refused if it is a reply itself), or a
    /// page of its thread.
    fn act_thread(&mut self, c: usize, conv: ConversationId, root: Seq) {
        if self.rng.chance(1, 3) {
            let after = Seq(self.rng.below(root.0 + 3));
            let limit = 1 + self.rng.below(5) as u32;
            let request = Request::Thread {
                conversation: conv,
                root,
                after,
                limit,
            };
            self.request(c, request, Pend::Thread);
            return;
        }
        let request = Request::Reply {
            conversation: conv,
            root,
            in_channel: self.rng.chance(1, 4),
            client_msg_id: u128::from(self.rng.next_u64()) << 64 | 0xeeee,
            body: format!("c{c}-reply-{}", self.rng.below(1000)),
            mentions: vec![],
            broadcast: courier_core::api::Broadcast::None,
        };
        self.request(c, request, Pend::Reply { conv });
    }

    /// Issue 17, parts 3-4: a pins page, typing, or presence (a look, a
    /// watch of a few users of the workspace, or a manual away). None of
    /// them writes; any answer but a refusal of a well-formed request will
    /// do (`Pend::Other`), and typing and presence events are ignored.
    fn act_around(&mut self, c: usize, conv: ConversationId) {
        let ws = self.clients[c].ws;
        let users: Vec<UserId> = self
            .users
            .iter()
            .filter(|(w, _)| Some(*w) == ws)
            .map(|(_, u)| *u)
            .collect();
        let request = match self.rng.below(5) {
            0 => Request::ListPins {
                conversation: conv,
                before: Seq(self.rng.below(20)),
                limit: 1 + self.rng.below(5) as u32,
            },
            1 => Request::Typing { conversation: conv },
            2 => {
                let n = self.rng.below(4) as usize;
                let watched = (0..n).filter_map(|_| self.rng.pick(&users).copied());
                Request::WatchPresence {
                    users: watched.collect(),
                }
            }
            3 => match self.rng.pick(&users) {
                Some(&user) => Request::GetPresence { user },
                None => return,
            },
            _ => Request::SetAway {
                away: self.rng.chance(1, 2),
            },
        };
        self.request(c, request, Pend::Other);
    }

    /// The answer to a reply: an ack names a durable reply of this
    /// conversation; refusals are the ones the rules allow.
    pub(super) fn on_reply_reply(
        &mut self,
        conv: ConversationId,
        result: Result<Response, Reject>,
    ) {
        match result {
            Ok(Response::SendAck {
                conversation, seq, ..
            }) => {
                assert_eq!(conversation, conv);
                let p = self.model.messages.get(&(conv.0, seq.0));
                assert!(
                    p.is_some_and(|p| p.durable_at.is_some() && p.thread.is_some()),
                    "reply ack of {conv:?}/{} that is not a durable reply",
                    seq.0
                );
                self.stats.replies_acked += 1;
            }
            // A reply as root; a deleted root; archived; admins only.
            Err(
                Reject::Invalid(_) | Reject::NotFound | Reject::Archived | Reject::Forbidden(_),
            ) => self.stats.replies_refused += 1,
            Err(Reject::Unavailable { .. }) => {}
            other => panic!("reply in {conv:?} answered {other:?}"),
        }
    }

    /// A thread page (checked by `check_read` as it arrives).
    pub(super) fn on_thread_reply(&mut self, result: Result<Response, Reject>) {
        match result {
            Ok(Response::Thread { .. }) => self.stats.thread_pages += 1,
            Err(Reject::NotFound | Reject::Invalid(_) | Reject::Unavailable { .. }) => {}
            other => panic!("thread page answered {other:?}"),
        }
    }

    fn emoji(&mut self) -> String {
        let i = self.rng.below(EMOJI.len() as u64) as usize;
        EMOJI[i].to_owned()
    }

    /// The answer to a change: an ack names a durable change of this
    /// conversation; `Forbidden` only for someone else's message (or an
    /// admin's edit window); `NotFound` when deleted or no longer a member.
    pub(super) fn on_change_reply(
        &mut self,
        conv: ConversationId,
        own: bool,
        result: Result<Response, Reject>,
    ) {
        match result {
            Ok(Response::SendAck {
                conversation, seq, ..
            }) => {
                assert_eq!(conversation, conv);
                let ch = self.model.changes.get(&(conv.0, seq.0));
                assert!(
                    ch.is_some_and(|ch| ch.durable_at.is_some()),
                    "change ack of {conv:?}/{} that is not a durable change",
                    seq.0
                );
                self.stats.changes_acked += 1;
            }
            Ok(Response::Done) => self.stats.changes_noop += 1,
            Err(Reject::Forbidden(why)) => {
                assert!(
                    !own || why.contains("edit window"),
                    "own change refused: {why}"
                );
                self.stats.changes_refused += 1;
            }
            Err(Reject::NotFound | Reject::Archived) => self.stats.changes_refused += 1,
            Err(Reject::TooLarge(why)) if why.contains("PINS_PER_CONVERSATION_MAX") => {
                self.stats.changes_refused += 1
            }
            Err(Reject::Unavailable { .. }) => {}
            other => panic!("change of {conv:?} answered {other:?}"),
        }
    }

    /// Issue 16, part 4: a random setting of a channel the device is in
    /// (archive rarer than unarchive, so channels do not all freeze).
    pub(super) fn act_setting(&mut self, c: usize, member_convs: &[ConversationId]) {
        let channels: Vec<ConversationId> = member_convs
            .iter()
            .copied()
            .filter(|conv| {
                self.model.convs.get(&conv.0).is_some_and(|(_, k)| {
                    matches!(
                        k,
                        ConversationKind::PublicChannel | ConversationKind::PrivateChannel
                    )
                })
            })
            .collect();
        let Some(&conv) = self.rng.pick(&channels) else {
            return;
        };
        let n = self.rng.below(1000);
        let (kind, text) = match self.rng.below(20) {
            0..=5 => (ChangeKind::Topic, format!("topic {n} by c{c}")),
            6..=7 => (ChangeKind::Purpose, format!("purpose {n}")),
            8..=10 => (ChangeKind::Rename, format!("r{}", n % 50)),
            11 => (ChangeKind::Archive, String::new()),
            12..=15 => (ChangeKind::Unarchive, String::new()),
            16 => (ChangeKind::PostingAdmins, String::new()),
            _ => (ChangeKind::PostingEveryone, String::new()),
        };
        let request = Request::SetChannel {
            conversation: conv,
            kind,
            text,
        };
        self.request(c, request, Pend::Setting { conv, kind });
    }

    /// The answer to a setting: an ack names a durable setting event of
    /// this kind in this channel; refusals are the typed ones the rules
    /// allow.
    pub(super) fn on_setting_reply(
        &mut self,
        conv: ConversationId,
        kind: ChangeKind,
        result: Result<Response, Reject>,
    ) {
        match result {
            Ok(Response::SendAck {
                conversation, seq, ..
            }) => {
                assert_eq!(conversation, conv);
                let ch = self.model.changes.get(&(conv.0, seq.0));
                assert!(
                    ch.is_some_and(|ch| ch.durable_at.is_some()
                        && ChangeKind::from(ch.rec.kind) == kind
                        && ch.rec.target == 0),
                    "setting ack of {conv:?}/{} that is not a durable {kind:?} event",
                    seq.0
                );
                self.stats.settings_acked += 1;
                if kind == ChangeKind::Rename {
                    self.stats.renames_acked += 1;
                }
            }
            Ok(Response::Done) => self.stats.settings_noop += 1,
            Err(Reject::Forbidden(_) | Reject::Archived | Reject::NotFound) => {
                self.stats.settings_refused += 1
            }
            Err(Reject::AlreadyExists) if kind == ChangeKind::Rename => {
                self.stats.settings_refused += 1
            }
            Err(Reject::Unavailable { .. }) => {}
            other => panic!("setting {kind:?} of {conv:?} answered {other:?}"),
        }
    }
}
