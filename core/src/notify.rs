//! The notification policy: who is a candidate for a committed message, and
//! the per-(user, message) decision taken on the user's home shard.
//!
//! Candidates are DM members, mentioned members, every member for an
//! honored `@channel`/`@here`, and the channel's `all`-subscribers (the
//! owner's derived set of members whose level is `all`, bounded by
//! [`crate::constants::NOTIFY_ALL_PER_CONVERSATION_MAX`]).
//!
//! Both are pure functions of their inputs (time included), so the rules
//! are unit-tested as a table here and the shard only gathers the inputs.
//! The rules, in the order they apply (docs/NOTIFICATIONS.md explains why):
//!
//! 1. the recipient is the sender → suppress (`Sender`);
//! 2. the recipient already read past the message → suppress (`Read`);
//! 3. level `Nothing` → suppress (`Level`); level `Mentions` and the
//!    message is only an all-messages candidate (`Channel`: the owner
//!    thought the level was `all`, and it changed since) → suppress
//!    (`Level`);
//! 4. muted, and the reason is not a DM or a direct mention → suppress
//!    (`Muted`): DMs and direct mentions override a mute;
//! 5. do-not-disturb window open → suppress (`Dnd`);
//! 6. `@here` and no device connected → suppress (`NotHere`);
//! 7. a device is active with this conversation focused → suppress
//!    (`Focused`);
//! 8. a device is active elsewhere → in-app event now, push after the grace
//!    window unless the read cursor passes the message meanwhile (`Delay`);
//! 9. otherwise → push now (`PushNow`).
//!
//! "Active" decays: a device is active while its last `SetFocus{active:
//! true}` is younger than [`ACTIVITY_TTL_MS`]; clients refresh it every
//! [`crate::constants::ACTIVITY_REFRESH_MS`] while the person interacts. A
//! device that vanishes without closing stops counting within the TTL,
//! long before the runtime's idle timeout closes its socket.

pub use crate::constants::ACTIVITY_TTL_MS;
use crate::types::{
    Broadcast, ConversationId, DeviceKind, Millis, NotifyLevel, NotifyReason, Seq, UserId,
};

/// A user who may be notified of a message, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Candidate {
    /// The user.
    pub user: UserId,
    /// Why.
    pub reason: NotifyReason,
    /// Only because of `@here` (notified only if connected).
    pub here: bool,
}

/// The facts of a committed message the candidates depend on.
#[derive(Clone, Copy, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Posted<'a> {
    /// A DM or group DM.
    pub direct: bool,
    /// Directly mentioned users.
    pub mentions: &'a [UserId],
    /// `@channel` / `@here`.
    pub broadcast: Broadcast,
    /// The conversation's member count.
    pub member_count: usize,
    /// `@channel`/`@here` notify only up to this many members.
    pub broadcast_members_max: u32,
    /// Users whose level for this channel is `all` (the owner's derived
    /// set, at most NOTIFY_ALL_PER_CONVERSATION_MAX; ignored for DMs, whose
    /// members are all candidates anyway). Filtered by `is_member`.
    pub all: &'a [UserId],
}

/// Whether a broadcast of this message is honored for notifications.
pub fn broadcast_honored(broadcast: Broadcast, member_count: usize, limit: u32) -> bool {
    broadcast != Broadcast::None && member_count as u64 <= u64::from(limit)
}

/// The candidates of a message, sorted by user, each once with its
/// strongest reason (DM, then mention, then broadcast, then `all`).
/// `members` is iterated only for DMs (≤ GROUP_DM_MEMBERS_MAX) and honored
/// broadcasts (≤ the broadcast limit); `is_member` filters mentions and
/// `all`-subscribers who are not (or no longer) members. Cost:
/// O(mentions + all-subscribers) for a channel message without a
/// broadcast, never O(members).
///
/// An `all`-subscriber named by an honored `@here` is a broadcast
/// candidate that need not be connected: their level asks for every
/// message, present or not.
pub fn candidates<'m>(
    p: &Posted<'_>,
    members: impl Iterator<Item = &'m UserId>,
    is_member: impl Fn(UserId) -> bool,
) -> Vec<Candidate> {
    let mut out: std::collections::BTreeMap<UserId, Candidate> = Default::default();
    let honored = broadcast_honored(p.broadcast, p.member_count, p.broadcast_members_max);
    if !p.direct {
        for user in p.all {
            if is_member(*user) {
                let c = Candidate {
                    user: *user,
                    reason: NotifyReason::Channel,
                    here: false,
                };
                out.insert(*user, c);
            }
        }
    }
    if p.direct || honored {
        let (reason, here) = if p.direct {
            (NotifyReason::Dm, false)
        } else {
            (NotifyReason::Broadcast, p.broadcast == Broadcast::Here)
        };
        for user in members {
            let subscribed = out.contains_key(user);
            out.insert(
                *user,
                Candidate {
                    user: *user,
                    reason,
                    here: here && !subscribed,
                },
            );
        }
    }
    if !p.direct {
        for user in p.mentions {
            if is_member(*user) {
                let c = Candidate {
                    user: *user,
                    reason: NotifyReason::Mention,
                    here: false,
                };
                out.insert(*user, c);
            }
        }
    }
    out.into_values().collect()
}

/// What the home shard knows of one connected device, for the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeviceView {
    /// Kind (tools never count as a person's device).
    pub kind: DeviceKind,
    /// Conversation on screen.
    pub focused: Option<ConversationId>,
    /// The device reported activity last at this time (`None`: never, or
    /// it reported itself idle since).
    pub active_at: Option<Millis>,
}

impl DeviceView {
    /// Whether the person is at this device now.
    pub fn is_active(&self, now: Millis) -> bool {
        self.kind != DeviceKind::Tool
            && self
                .active_at
                .is_some_and(|t| now.0.saturating_sub(t.0) < ACTIVITY_TTL_MS)
    }
}

/// Everything the decision depends on for one (user, message).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Situation<'a> {
    /// The recipient.
    pub user: UserId,
    /// The message's sender.
    pub sender: UserId,
    /// The message's conversation and seq.
    pub conversation: ConversationId,
    /// Its seq.
    pub seq: Seq,
    /// Why the user is a candidate.
    pub reason: NotifyReason,
    /// The candidate came from `@here` (only connected users count).
    pub here: bool,
    /// The user's level for the conversation and mute (defaults applied).
    pub level: NotifyLevel,
    /// Muted.
    pub muted: bool,
    /// Do-not-disturb until.
    pub dnd_until: Option<Millis>,
    /// The user's read cursor in the conversation.
    pub read: Seq,
    /// The user's connected devices.
    pub devices: &'a [DeviceView],
    /// Now.
    pub now: Millis,
}

/// Why a notification was suppressed (also the metric label).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum Suppressed {
    /// The recipient wrote it.
    Sender,
    /// Already read.
    Read,
    /// The conversation's level excludes it.
    Level,
    /// Muted (and not a DM or direct mention).
    Muted,
    /// Do not disturb.
    Dnd,
    /// `@here` and nobody there.
    NotHere,
    /// The conversation is on an active device's screen.
    Focused,
}

impl Suppressed {
    /// Every reason, for metrics.
    pub const ALL: [Suppressed; 7] = [
        Suppressed::Sender,
        Suppressed::Read,
        Suppressed::Level,
        Suppressed::Muted,
        Suppressed::Dnd,
        Suppressed::NotHere,
        Suppressed::Focused,
    ];

    /// Lower-case label.
    pub fn label(self) -> &'static str {
        match self {
            Suppressed::Sender => "sender",
            Suppressed::Read => "read",
            Suppressed::Level => "level",
            Suppressed::Muted => "muted",
            Suppressed::Dnd => "dnd",
            Suppressed::NotHere => "not_here",
            Suppressed::Focused => "focused",
        }
    }
}

/// The outcome for one (user, message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Decision {
    /// Nothing.
    Suppress(Suppressed),
    /// In-app event to the connected devices; push after the grace window
    /// unless read meanwhile.
    Delay,
    /// Push at once (and an in-app event to any connected device).
    PushNow,
}

/// The default level of a conversation the user never configured: DMs and
/// group DMs notify on everything, channels on mentions.
pub fn default_level(direct: bool) -> NotifyLevel {
    if direct {
        NotifyLevel::All
    } else {
        NotifyLevel::Mentions
    }
}

/// The decision table (see the module docs for the rules and their order).
pub fn decide(s: &Situation<'_>) -> Decision {
    if s.user == s.sender {
        return Decision::Suppress(Suppressed::Sender);
    }
    if s.read >= s.seq {
        return Decision::Suppress(Suppressed::Read);
    }
    let level_allows = match s.level {
        NotifyLevel::Nothing => false,
        NotifyLevel::Mentions => s.reason != NotifyReason::Channel,
        NotifyLevel::All => true,
    };
    if !level_allows {
        return Decision::Suppress(Suppressed::Level);
    }
    let overrides_mute = matches!(s.reason, NotifyReason::Dm | NotifyReason::Mention);
    if s.muted && !overrides_mute {
        return Decision::Suppress(Suppressed::Muted);
    }
    if s.dnd_until.is_some_and(|until| until > s.now) {
        return Decision::Suppress(Suppressed::Dnd);
    }
    let people: Vec<&DeviceView> = s
        .devices
        .iter()
        .filter(|d| d.kind != DeviceKind::Tool)
        .collect();
    if s.here && people.is_empty() {
        return Decision::Suppress(Suppressed::NotHere);
    }
    let active = || people.iter().filter(|d| d.is_active(s.now));
    if active().any(|d| d.focused == Some(s.conversation)) {
        return Decision::Suppress(Suppressed::Focused);
    }
    if active().next().is_some() {
        return Decision::Delay;
    }
    Decision::PushNow
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const C: ConversationId = ConversationId(7);
    const OTHER: ConversationId = ConversationId(8);
    const NOW: Millis = Millis(1_000_000);

    fn dev(kind: DeviceKind, focused: Option<ConversationId>, ago: Option<u64>) -> DeviceView {
        DeviceView {
            kind,
            focused,
            active_at: ago.map(|a| Millis(NOW.0 - a)),
        }
    }

    fn base(devices: &[DeviceView]) -> Situation<'_> {
        Situation {
            user: ME,
            sender: BOB,
            conversation: C,
            seq: Seq(5),
            reason: NotifyReason::Dm,
            here: false,
            level: NotifyLevel::All,
            muted: false,
            dnd_until: None,
            read: Seq(4),
            devices,
            now: NOW,
        }
    }

    fn check(s: Situation<'_>, expected: Decision) {
        assert_eq!(decide(&s), expected, "{s:#?}");
    }

    #[test]
    fn decision_table() {
        use Decision::*;
        use DeviceKind::*;
        let none: &[DeviceView] = &[];
        let focused_here = [dev(Desktop, Some(C), Some(1_000))];
        let focused_idle = [dev(Desktop, Some(C), Some(ACTIVITY_TTL_MS))];
        let focused_never = [dev(Desktop, Some(C), None)];
        let elsewhere = [dev(Web, Some(OTHER), Some(0))];
        let tool_focused = [dev(Tool, Some(C), Some(0))];
        let phone_idle_desk_focused = [dev(Mobile, None, None), dev(Desktop, Some(C), Some(10))];

        // 1. Sender.
        check(
            Situation {
                user: BOB,
                ..base(none)
            },
            Suppress(Suppressed::Sender),
        );
        // 2. Already read (e.g. read on another device before the hand-off).
        check(
            Situation {
                read: Seq(5),
                ..base(none)
            },
            Suppress(Suppressed::Read),
        );
        check(
            Situation {
                read: Seq(9),
                ..base(&elsewhere)
            },
            Suppress(Suppressed::Read),
        );
        // 3. Level.
        let nothing = NotifyLevel::Nothing;
        check(
            Situation {
                level: nothing,
                ..base(none)
            },
            Suppress(Suppressed::Level),
        );
        let channel = NotifyReason::Channel;
        let mentions = NotifyLevel::Mentions;
        check(
            Situation {
                level: mentions,
                reason: channel,
                ..base(none)
            },
            Suppress(Suppressed::Level),
        );
        check(
            Situation {
                level: mentions,
                reason: NotifyReason::Mention,
                ..base(none)
            },
            PushNow,
        );
        check(
            Situation {
                level: mentions,
                reason: NotifyReason::Broadcast,
                ..base(none)
            },
            PushNow,
        );
        // 4. Mute: DMs and direct mentions override it, broadcasts do not.
        check(
            Situation {
                muted: true,
                ..base(none)
            },
            PushNow,
        );
        check(
            Situation {
                muted: true,
                reason: NotifyReason::Mention,
                ..base(none)
            },
            PushNow,
        );
        check(
            Situation {
                muted: true,
                reason: NotifyReason::Broadcast,
                ..base(none)
            },
            Suppress(Suppressed::Muted),
        );
        check(
            Situation {
                muted: true,
                level: nothing,
                ..base(none)
            },
            Suppress(Suppressed::Level),
        );
        // 5. DND: open window suppresses, an ended one does not.
        check(
            Situation {
                dnd_until: Some(Millis(NOW.0 + 1)),
                ..base(none)
            },
            Suppress(Suppressed::Dnd),
        );
        check(
            Situation {
                dnd_until: Some(NOW),
                ..base(none)
            },
            PushNow,
        );
        // 6. @here needs a person's device connected.
        let here = |d| Situation {
            here: true,
            reason: NotifyReason::Broadcast,
            ..base(d)
        };
        check(here(none), Suppress(Suppressed::NotHere));
        check(here(&tool_focused), Suppress(Suppressed::NotHere));
        check(here(&focused_never), PushNow);
        // 7. Focused and active.
        check(base(&focused_here), Suppress(Suppressed::Focused));
        check(
            base(&phone_idle_desk_focused),
            Suppress(Suppressed::Focused),
        );
        // Focus without recent activity does not count: the person left.
        check(base(&focused_idle), PushNow);
        check(base(&focused_never), PushNow);
        // A tool never counts as the person.
        check(base(&tool_focused), PushNow);
        // 8. Active elsewhere: in-app now, push delayed.
        check(base(&elsewhere), Delay);
        check(
            Situation {
                reason: NotifyReason::Mention,
                ..base(&elsewhere)
            },
            Delay,
        );
        // Level `all` in a channel: an ordinary message is a candidate
        // (`Channel`) and goes through the same rules as any other.
        let all_channel = |d| Situation {
            reason: channel,
            level: NotifyLevel::All,
            ..base(d)
        };
        check(all_channel(none), PushNow);
        check(all_channel(&elsewhere), Delay);
        check(all_channel(&focused_here), Suppress(Suppressed::Focused));
        check(
            Situation {
                level: nothing,
                ..all_channel(none)
            },
            Suppress(Suppressed::Level),
        );
        check(
            Situation {
                muted: true,
                ..all_channel(none)
            },
            Suppress(Suppressed::Muted),
        );
        check(
            Situation {
                dnd_until: Some(Millis(NOW.0 + 1)),
                ..all_channel(none)
            },
            Suppress(Suppressed::Dnd),
        );
        check(
            Situation {
                read: Seq(5),
                ..all_channel(none)
            },
            Suppress(Suppressed::Read),
        );
        check(
            Situation {
                user: BOB,
                ..all_channel(none)
            },
            Suppress(Suppressed::Sender),
        );
        // 9. Nobody there.
        check(base(none), PushNow);
        check(base(&[dev(Mobile, None, None)]), PushNow);
    }

    fn check_candidates(p: Posted<'_>, members: &[u64], expected: &[(u64, NotifyReason, bool)]) {
        let members: Vec<UserId> = members.iter().map(|u| UserId(*u)).collect();
        let got = candidates(&p, members.iter(), |u| members.contains(&u));
        let got: Vec<(u64, NotifyReason, bool)> =
            got.iter().map(|c| (c.user.0, c.reason, c.here)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn candidate_table() {
        use NotifyReason::{Channel, Dm, Mention};
        const BROADCAST: NotifyReason = NotifyReason::Broadcast;
        let channel = |mentions, broadcast, member_count| Posted {
            direct: false,
            mentions,
            broadcast,
            member_count,
            broadcast_members_max: 3,
            all: &[],
        };
        // A DM: every member (the sender is suppressed later, rule 1).
        let dm = Posted {
            direct: true,
            ..channel(&[], Broadcast::None, 2)
        };
        check_candidates(dm, &[1, 2], &[(1, Dm, false), (2, Dm, false)]);
        // A channel: mentions of members only; members are not iterated.
        let m = [UserId(2), UserId(9)];
        check_candidates(
            channel(&m, Broadcast::None, 3),
            &[1, 2, 3],
            &[(2, Mention, false)],
        );
        // Broadcast under the limit: everyone, a mention wins over it.
        check_candidates(
            channel(&m, Broadcast::Here, 3),
            &[1, 2, 3],
            &[
                (1, BROADCAST, true),
                (2, Mention, false),
                (3, BROADCAST, true),
            ],
        );
        check_candidates(
            channel(&[], Broadcast::Channel, 2),
            &[1, 2],
            &[(1, BROADCAST, false), (2, BROADCAST, false)],
        );
        // Over the limit: ignored, mentions still count.
        check_candidates(
            channel(&m, Broadcast::Channel, 4),
            &[1, 2, 3, 4],
            &[(2, Mention, false)],
        );
        // Level `all`: every subscriber who is a member, for an ordinary
        // message; members are still not iterated (9 left: not a member).
        let subs = [UserId(1), UserId(3), UserId(9)];
        check_candidates(
            Posted {
                all: &subs,
                ..channel(&[], Broadcast::None, 5)
            },
            &[1, 2, 3, 4, 5],
            &[(1, Channel, false), (3, Channel, false)],
        );
        // A mention of a subscriber is a mention (the stronger reason).
        check_candidates(
            Posted {
                all: &subs,
                ..channel(&m, Broadcast::None, 3)
            },
            &[1, 2, 3],
            &[
                (1, Channel, false),
                (2, Mention, false),
                (3, Channel, false),
            ],
        );
        // `@here` under the limit: a subscriber need not be connected.
        check_candidates(
            Posted {
                all: &subs,
                ..channel(&[], Broadcast::Here, 3)
            },
            &[1, 2, 3],
            &[
                (1, BROADCAST, false),
                (2, BROADCAST, true),
                (3, BROADCAST, false),
            ],
        );
        // A broadcast over the limit is ignored; subscribers still count.
        check_candidates(
            Posted {
                all: &subs,
                ..channel(&m, Broadcast::Channel, 4)
            },
            &[1, 2, 3, 4],
            &[
                (1, Channel, false),
                (2, Mention, false),
                (3, Channel, false),
            ],
        );
        // DMs ignore the set: every member is a DM candidate already.
        check_candidates(
            Posted { all: &subs, ..dm },
            &[1, 2],
            &[(1, Dm, false), (2, Dm, false)],
        );
        assert!(!broadcast_honored(Broadcast::None, 1, 3));
        assert!(broadcast_honored(Broadcast::Here, 3, 3));
        assert!(!broadcast_honored(Broadcast::Here, 4, 3));
    }

    #[test]
    fn activity_decays() {
        let d = dev(DeviceKind::Web, None, Some(ACTIVITY_TTL_MS - 1));
        assert!(d.is_active(NOW));
        let d = dev(DeviceKind::Web, None, Some(ACTIVITY_TTL_MS));
        assert!(!d.is_active(NOW));
    }

    #[test]
    fn defaults() {
        assert_eq!(default_level(true), NotifyLevel::All);
        assert_eq!(default_level(false), NotifyLevel::Mentions);
    }
}
