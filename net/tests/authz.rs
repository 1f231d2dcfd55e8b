//! Authorization matrix against a real `courierd` (one server, every case):
//! two workspaces; principals owner (the channel's creator), member,
//! non-member, removed member, a user of the other workspace, a user whose
//! token was revoked, the admin, a guest (workspace role `Guest`, invited
//! into the private channel only) and a workspace admin (role `Admin`, a
//! member of both channels); objects public channel, private channel, DM,
//! group DM, and one message (in the private channel); operations send,
//! history, sync, boot, live delivery, join, invite, remove, mark read,
//! list members, and the channel settings (issue 16, part 4) set topic and
//! archive.
//!
//! Every case asserts allow or deny from the policy (docs/ARCHITECTURE.md,
//! "Authorization"; `core/src/auth.rs`): other workspaces see nothing;
//! members may do everything; users of the workspace may preview a public
//! channel (history, join) and nothing else, except guests, who see only
//! what they were added to; removing someone else needs the creator, the
//! admin role or the admin; DMs take no invitations or removals; members
//! set a channel's topic, its creator and workspace admins archive it,
//! guests neither (typed refusals), DMs have no settings. Every
//! denial of something the principal may not see is **indistinguishable
//! from a nonexistent id**: the reply frame is byte-identical (same request
//! id) to the one for two ids that do not exist (an unused id on a live
//! shard and a random one); for `Sync` the denied id lands in `gone` exactly
//! as a nonexistent one does; `Boot` never lists it; no live event leaks.
//!
//! The invite matrix (issue 16, part 3): node admin, owner, admin, member,
//! guest, another workspace's user and a connection with no session ×
//! create (member, guest, admin, owner invites), list, revoke, policy and
//! redeem; another workspace's invites answer byte for byte like a
//! workspace that does not exist, and a wrong secret like an unknown
//! invite.
//!
//! A second test checks that removal and token revocation cut live
//! delivery at once: nothing committed after the server answered the
//! removal (or revocation) reaches the removed (or revoked) session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use courier_core::api::*;
use courier_proto::close;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum P {
    Owner,
    Member,
    NonMember,
    Removed,
    OtherWorkspace,
    Revoked,
    Admin,
    /// Workspace role `Guest`, a member of the private channel only.
    Guest,
    /// Workspace role `Admin`, a member of both channels.
    WsAdmin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum O {
    Public,
    Private,
    Dm,
    GroupDm,
    Message,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Send,
    History,
    Sync,
    Boot,
    Live,
    Join,
    Invite,
    Remove,
    MarkRead,
    /// `ListMembers` (issue 16): read access, like history.
    ListMembers,
    /// `SetChannel` topic (issue 16, part 4): members, not guests.
    SetTopic,
    /// `SetChannel` archive: the channel's creator and workspace admins.
    Archive,
}

/// What a case must produce.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// The operation succeeds (or, for sync/boot/live, the object shows up).
    Allow,
    /// Refused exactly as for an id that does not exist (or, for
    /// sync/boot/live, the object does not show up).
    Hidden,
    /// Refused with this rejection, the object being visible to the principal.
    Refused(Reject),
    /// No session: `Hello` fails with `Unauthenticated`.
    NoSession,
    /// Not a meaningful combination (e.g. removing from a message).
    NotApplicable,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allow => write!(f, "allow"),
            Expect::Hidden => write!(f, "deny as not found"),
            Expect::Refused(r) => write!(f, "refuse with {r:?}"),
            Expect::NoSession => write!(f, "no session"),
            Expect::NotApplicable => write!(f, "n/a"),
        }
    }
}

/// The policy, written from the documentation, not from the code.
fn expected(p: P, o: O, op: Op) -> Expect {
    use Expect::*;
    let channel = matches!(o, O::Public | O::Private);
    let dm = matches!(o, O::Dm | O::GroupDm);
    let admin_only_user = Refused(Reject::Invalid(
        "an admin session has no user; use a user token".into(),
    ));
    if o == O::Message && !matches!(op, Op::History | Op::Sync | Op::Live | Op::MarkRead) {
        return NotApplicable;
    }
    if p == P::Removed && dm {
        return NotApplicable; // nobody leaves or is removed from a DM
    }
    if matches!(op, Op::SetTopic | Op::Archive) {
        return expected_setting(p, o, op);
    }
    match p {
        P::Revoked => {
            if op == Op::Live {
                Hidden
            } else {
                NoSession
            }
        }
        P::Admin => match op {
            Op::Live | Op::Sync | Op::Boot => {
                if op == Op::Live {
                    Hidden
                } else {
                    admin_only_user
                }
            }
            Op::Remove if channel => Allow,
            Op::Remove => Refused(Reject::Invalid(
                "conversation: members cannot leave or be removed from a DM".into(),
            )),
            _ => admin_only_user,
        },
        P::Owner | P::Member => match op {
            Op::Invite if dm => Refused(Reject::Invalid(
                "conversation: cannot invite to a DM".into(),
            )),
            // Removing someone else needs the creator; DMs have none.
            Op::Remove if p == P::Member || dm => Refused(Reject::NotAdmin),
            _ => Allow,
        },
        P::NonMember | P::Removed => match (o, op) {
            // The preview of a public channel: read and join.
            (O::Public, Op::History | Op::Join | Op::ListMembers) => Allow,
            _ => Hidden,
        },
        P::OtherWorkspace => Hidden,
        // A guest in the private channel acts there as any member does;
        // everything else, the public channel included, is nothing to them.
        P::Guest => match o {
            O::Private | O::Message => expected(P::Member, o, op),
            _ => Hidden,
        },
        // The admin role removes anyone from the channels it is in.
        P::WsAdmin => match (o, op) {
            (O::Public | O::Private, Op::Remove) => Allow,
            (O::Public | O::Private | O::Message, _) => expected(P::Member, o, op),
            _ => Hidden,
        },
    }
}

/// Channel settings (issue 16, part 4): members set the topic, the creator
/// and workspace admins archive, guests nothing (typed refusals: they see
/// the channel); DMs have no settings; everyone else sees nothing.
fn expected_setting(p: P, o: O, op: Op) -> Expect {
    use Expect::*;
    let dm = matches!(o, O::Dm | O::GroupDm);
    let refused = |role: &str, rule: &str| {
        Refused(Reject::Forbidden(format!(
            "channel: the {role} role cannot change this setting ({rule})"
        )))
    };
    let managers = "workspace admins and the channel's creator";
    let members = "members, not guests; only admins in an admins-only channel";
    match p {
        P::Revoked => NoSession,
        P::Admin => Refused(Reject::Invalid(
            "an admin session has no user; use a user token".into(),
        )),
        P::Owner | P::Member if dm => Refused(Reject::Invalid(
            "conversation: only channels have settings".into(),
        )),
        P::Owner | P::WsAdmin if !dm => Allow,
        P::Member if op == Op::SetTopic => Allow,
        P::Member => refused("member", managers),
        P::Guest if o == O::Private && op == Op::SetTopic => refused("guest", members),
        P::Guest if o == O::Private => refused("guest", managers),
        _ => Hidden,
    }
}

/// The fixture: who is who, what is what.
struct Fx {
    server: Server,
    /// Principal → credential (admin: the admin credential).
    cred: BTreeMap<P, Credential>,
    user: BTreeMap<P, UserId>,
    obj: BTreeMap<O, ConversationId>,
    /// The message object: (conversation, seq).
    message: (ConversationId, Seq),
    /// Invited and removed by the cases (a member of nothing at first).
    target: UserId,
    /// Removed and re-added by the cases (a member of both channels).
    victim: UserId,
    /// Two ids that do not exist: an unused id on a live shard, a random one.
    ghosts: [ConversationId; 2],
}

fn login(server: &Server, c: &Credential) -> Client {
    Client::login(server.addr, c)
}

fn setup() -> Fx {
    let server = Server::start(2);
    let w1 = world(
        &server,
        &[
            "owner", "member", "outsider", "removed", "revoked", "target", "victim", "guest",
            "wsadmin",
        ],
    );
    let mut admin = server.admin();
    let ws2 = match admin.request(Request::CreateWorkspace {
        name: "globex".into(),
    }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let other = issued_credential(admin.request(Request::CreateUser {
        workspace: ws2,
        name: "stranger".into(),
    }));
    let u = |i: usize| w1.users[i].clone();
    let (owner, member, outsider, removed, revoked, target, victim) =
        (u(0), u(1), u(2), u(3), u(4), u(5), u(6));
    let (guest, wsadmin) = (u(7), u(8));
    for (user, role) in [(guest.0, Role::Guest), (wsadmin.0, Role::Admin)] {
        let set = Request::People(PeopleRequest::SetRole { user, role });
        assert_eq!(admin.request(set), Ok(Response::Done));
    }
    let mut o = login(&server, &owner.1);
    let public = conversation(o.request(Request::CreateChannel {
        name: "public".into(),
        private: false,
    }));
    let private = conversation(o.request(Request::CreateChannel {
        name: "private".into(),
        private: true,
    }));
    let invite = |o: &mut Client, c: ConversationId, user: UserId| {
        let r = o.request(Request::Invite {
            conversation: c,
            user,
        });
        assert_eq!(r, Ok(Response::Done));
    };
    invite(&mut o, private, guest.0);
    invite(&mut o, public, wsadmin.0);
    invite(&mut o, private, wsadmin.0);
    for (id, _) in [&member, &removed, &revoked, &victim] {
        for c in [public, private] {
            assert_eq!(
                o.request(Request::Invite {
                    conversation: c,
                    user: *id,
                }),
                Ok(Response::Done)
            );
        }
    }
    let dm = conversation(o.request(Request::OpenDm {
        users: vec![member.0],
    }));
    let group = conversation(o.request(Request::OpenDm {
        users: vec![member.0, revoked.0, victim.0],
    }));
    for c in [public, private, dm, group] {
        o.send(c, "before everything");
    }
    for c in [public, private] {
        assert_eq!(
            o.request(Request::Remove {
                conversation: c,
                user: removed.0,
            }),
            Ok(Response::Done)
        );
    }
    assert_eq!(
        admin.request(Request::RevokeToken {
            user: revoked.0,
            token: None,
        }),
        Ok(Response::Done)
    );
    // Ghosts: the private channel's id with an unused counter (same slot,
    // same shard), and a random id.
    let ghosts = [
        ConversationId(private.0 | 0x7fff_0000),
        ConversationId(0x5a5a_1234_0001_beef),
    ];
    let mut cred = BTreeMap::new();
    let mut user = BTreeMap::new();
    for (p, (id, c)) in [
        (P::Owner, owner),
        (P::Member, member),
        (P::NonMember, outsider),
        (P::Removed, removed),
        (P::OtherWorkspace, other),
        (P::Revoked, revoked),
        (P::Guest, guest),
        (P::WsAdmin, wsadmin),
    ] {
        cred.insert(p, c);
        user.insert(p, id);
    }
    cred.insert(P::Admin, server.admin_credential());
    let obj = [
        (O::Public, public),
        (O::Private, private),
        (O::Dm, dm),
        (O::GroupDm, group),
        (O::Message, private),
    ]
    .into_iter()
    .collect();
    Fx {
        server,
        cred,
        user,
        obj,
        message: (private, Seq(0)),
        target: target.0,
        victim: victim.0,
        ghosts,
    }
}

/// The request of a case against conversation `c`.
fn request(fx: &Fx, o: O, op: Op, c: ConversationId, n: u64) -> Request {
    let (_, mseq) = fx.message;
    match (o, op) {
        (_, Op::Send) => Request::Send {
            conversation: c,
            client_msg_id: 0xa117_0000 + u128::from(n),
            body: format!("case {n}"),
            mentions: vec![],
            broadcast: Broadcast::None,
        },
        (O::Message, Op::History) => Request::History {
            conversation: c,
            anchor: HistoryAnchor::Before(Seq(mseq.0 + 1)),
            limit: 1,
        },
        (_, Op::History) => Request::History {
            conversation: c,
            anchor: HistoryAnchor::After(Seq(0)),
            limit: 10,
        },
        (O::Message, Op::Sync) => Request::Sync {
            cursors: vec![(c, Seq(mseq.0 - 1))],
            reads: vec![],
        },
        (_, Op::Sync) => Request::Sync {
            cursors: vec![(c, Seq(0))],
            reads: vec![],
        },
        (_, Op::Boot) => Request::Boot {
            limit: 100,
            offset: 0,
        },
        (O::Message, Op::MarkRead) => Request::MarkRead {
            conversation: c,
            seq: mseq,
        },
        (_, Op::MarkRead) => Request::MarkRead {
            conversation: c,
            seq: Seq(1),
        },
        (_, Op::Join) => Request::Join { conversation: c },
        (_, Op::Invite) => Request::Invite {
            conversation: c,
            user: fx.target,
        },
        (_, Op::Remove) => Request::Remove {
            conversation: c,
            user: fx.victim,
        },
        (_, Op::ListMembers) => Request::People(PeopleRequest::ListMembers {
            conversation: c,
            after: None,
            limit: 10,
        }),
        (_, Op::SetTopic) => Request::SetChannel {
            conversation: c,
            kind: ChangeKind::Topic,
            text: format!("case {n}"),
        },
        (_, Op::Archive) => Request::SetChannel {
            conversation: c,
            kind: ChangeKind::Archive,
            text: String::new(),
        },
        (_, Op::Live) => unreachable!("live is observed, not requested"),
    }
}

/// Did the reply show the object (for sync and boot) or succeed?
fn shows(o: O, op: Op, c: ConversationId, reply: &Result<Response, Reject>, mseq: Seq) -> bool {
    match (op, reply) {
        (Op::Sync, Ok(Response::Sync { changed, gone })) => {
            let listed = changed.iter().find(|s| s.info.id == c);
            assert!(
                listed.is_none() || !gone.contains(&c),
                "{c:?} both changed and gone"
            );
            match listed {
                Some(s) if o == O::Message => s.messages.iter().any(|m| m.seq == mseq),
                Some(_) => true,
                None => false,
            }
        }
        (Op::Boot, Ok(Response::Boot(page))) => page.conversations.iter().any(|i| i.id == c),
        (Op::History, Ok(Response::History { messages, .. })) if o == O::Message => {
            messages.iter().any(|m| m.seq == mseq)
        }
        (_, Ok(_)) => true,
        (_, Err(_)) => false,
    }
}

/// Undoes an allowed mutation so later cases see the original state.
fn undo(fx: &Fx, owner: &mut Client, p: P, o: O, op: Op) {
    let c = fx.obj[&o];
    let r = match (op, p) {
        (Op::Join, P::NonMember) => Some(
            login(&fx.server, &fx.cred[&P::NonMember]).request(Request::Leave { conversation: c }),
        ),
        (Op::Join, P::Removed) => Some(owner.request(Request::Remove {
            conversation: c,
            user: fx.user[&P::Removed],
        })),
        (Op::Invite, _) => Some(owner.request(Request::Remove {
            conversation: c,
            user: fx.target,
        })),
        (Op::Remove, _) => Some(owner.request(Request::Invite {
            conversation: c,
            user: fx.victim,
        })),
        // The creator unarchives (a topic stays: it changes no access).
        (Op::Archive, _) => Some(
            owner
                .request(Request::SetChannel {
                    conversation: c,
                    kind: ChangeKind::Unarchive,
                    text: String::new(),
                })
                .map(|r| match r {
                    Response::SendAck { .. } => Response::Done,
                    other => other,
                }),
        ),
        _ => None,
    };
    if let Some(r) = r {
        assert_eq!(r, Ok(Response::Done), "undo of {p:?} {op:?} {o:?}");
    }
}

#[test]
fn the_authorization_matrix_holds_and_denials_look_like_nothing() {
    let mut fx = setup();
    let server_addr = fx.server.addr;
    // Live sessions of every principal that can have one, opened before the
    // message object is sent.
    let mut live: BTreeMap<P, Client> = BTreeMap::new();
    for p in [
        P::Owner,
        P::Member,
        P::NonMember,
        P::Removed,
        P::OtherWorkspace,
        P::Admin,
        P::Guest,
        P::WsAdmin,
    ] {
        live.insert(p, login(&fx.server, &fx.cred[&p]));
    }
    let mut owner = login(&fx.server, &fx.cred[&P::Owner]);
    // The message object, and one fresh message in every conversation.
    let mseq = owner.send(fx.obj[&O::Private], "the secret");
    fx.message = (fx.obj[&O::Private], mseq);
    for o in [O::Public, O::Dm, O::GroupDm] {
        owner.send(fx.obj[&o], "live");
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut cases = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    let mut n = 0u64;
    let objects = [O::Public, O::Private, O::Dm, O::GroupDm, O::Message];
    let principals = [
        P::Owner,
        P::Member,
        P::NonMember,
        P::Removed,
        P::OtherWorkspace,
        P::Revoked,
        P::Admin,
        P::Guest,
        P::WsAdmin,
    ];
    // Live delivery first: what each session received.
    let mut received: BTreeMap<P, Vec<Event>> = BTreeMap::new();
    for (p, c) in live.iter_mut() {
        received.insert(*p, c.drain_events(Duration::from_millis(200)).0);
    }
    // Read-only operations before mutating ones.
    let ops = [
        Op::Live,
        Op::Send,
        Op::History,
        Op::Sync,
        Op::Boot,
        Op::MarkRead,
        Op::ListMembers,
        Op::SetTopic,
        Op::Archive,
        Op::Join,
        Op::Invite,
        Op::Remove,
    ];
    for op in ops {
        for p in principals {
            for o in objects {
                let want = expected(p, o, op);
                if want == Expect::NotApplicable {
                    *tally.entry("n/a".into()).or_default() += 1;
                    continue;
                }
                cases += 1;
                n += 1;
                *tally.entry(want.to_string()).or_default() += 1;
                let c = fx.obj[&o];
                let case = format!("{p:?} × {o:?} × {op:?}: expected {want}");
                if op == Op::Live {
                    let got = received.get(&p).is_some_and(|events| {
                        events.iter().any(|e| match e {
                            Event::Message(m) if m.conversation == c => {
                                o != O::Message || m.seq == mseq
                            }
                            _ => false,
                        })
                    });
                    if got != (want == Expect::Allow) {
                        failures.push(format!(
                            "{case}, got {}",
                            if got { "the event" } else { "nothing" }
                        ));
                    }
                    continue;
                }
                if want == Expect::NoSession {
                    let mut s = fx.server.connect();
                    let r = s.hello(fx.cred[&p].clone());
                    if r != Err(Reject::Unauthenticated) {
                        failures.push(format!("{case}, got {r:?}"));
                    }
                    continue;
                }
                let mut s = login(&fx.server, &fx.cred[&p]);
                let req = request(&fx, o, op, c, n);
                let raw = s.request_raw(7, req.clone());
                let reply = match courier_proto::decode_server(&raw).unwrap() {
                    courier_proto::ServerFrame::Reply { result, .. } => result,
                    other => panic!("{other:?}"),
                };
                let visible = shows(o, op, c, &reply, mseq);
                match &want {
                    Expect::Allow => {
                        if !visible {
                            failures.push(format!("{case}, got {reply:?}"));
                        } else {
                            undo(&fx, &mut owner, p, o, op);
                        }
                    }
                    Expect::Refused(r) => {
                        if reply != Err(r.clone()) {
                            failures.push(format!("{case}, got {reply:?}"));
                        }
                    }
                    Expect::Hidden => {
                        if visible {
                            failures.push(format!("{case}, got {reply:?}"));
                            undo(&fx, &mut owner, p, o, op);
                            continue;
                        }
                        // Indistinguishable from ids that do not exist.
                        for ghost in fx.ghosts {
                            let ghost_req = request(&fx, o, op, ghost, n);
                            let ghost_raw = s.request_raw(7, ghost_req);
                            let same = if op == Op::Sync {
                                // The reply names the id: compare with it swapped.
                                let swap =
                                    |r: Result<Response, Reject>, from: ConversationId| match r {
                                        Ok(Response::Sync { changed, gone }) => {
                                            Ok(Response::Sync {
                                                changed,
                                                gone: gone
                                                    .into_iter()
                                                    .map(|g| {
                                                        if g == from {
                                                            ConversationId(0)
                                                        } else {
                                                            g
                                                        }
                                                    })
                                                    .collect(),
                                            })
                                        }
                                        other => other,
                                    };
                                let decode =
                                    |b: &[u8]| match courier_proto::decode_server(b).unwrap() {
                                        courier_proto::ServerFrame::Reply { result, .. } => result,
                                        other => panic!("{other:?}"),
                                    };
                                swap(decode(&raw), c) == swap(decode(&ghost_raw), ghost)
                            } else {
                                raw == ghost_raw
                            };
                            if !same {
                                let ghost_reply = courier_proto::decode_server(&ghost_raw).unwrap();
                                failures.push(format!(
                                    "{case}: the denial differs from the reply for nonexistent id {}: {reply:?} vs {ghost_reply:?}",
                                    ghost.0
                                ));
                            }
                        }
                    }
                    Expect::NoSession | Expect::NotApplicable => unreachable!(),
                }
            }
        }
    }
    let _ = server_addr;
    eprintln!(
        "authz: {cases} cases over 9 principals × 5 objects × 12 operations ({tally:?}); {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases >= 398, "only {cases} cases ran");
}

#[test]
fn removal_and_revocation_cut_live_delivery_at_once() {
    let server = Server::start(2);
    let w = world(&server, &["owner", "leaver", "revoked"]);
    let mut owner = login(&server, &w.users[0].1);
    let private = conversation(owner.request(Request::CreateChannel {
        name: "private".into(),
        private: true,
    }));
    let public = conversation(owner.request(Request::CreateChannel {
        name: "public".into(),
        private: false,
    }));
    for c in [private, public] {
        for u in [w.users[1].0, w.users[2].0] {
            assert_eq!(
                owner.request(Request::Invite {
                    conversation: c,
                    user: u,
                }),
                Ok(Response::Done)
            );
        }
    }
    let mut leaver = login(&server, &w.users[1].1);
    let mut revoked = login(&server, &w.users[2].1);
    for round in 0..20 {
        let c = if round % 2 == 0 { private } else { public };
        let before = owner.send(c, &format!("before {round}"));
        // Removal: answered, then a message at once.
        if round % 4 < 2 {
            assert_eq!(
                owner.request(Request::Remove {
                    conversation: c,
                    user: w.users[1].0,
                }),
                Ok(Response::Done)
            );
            let after = owner.send(c, &format!("after removal {round}"));
            let (events, closed) = leaver.drain_events(Duration::from_millis(150));
            assert_eq!(closed, None);
            let seqs: Vec<Seq> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Message(m) if m.conversation == c => Some(m.seq),
                    _ => None,
                })
                .collect();
            assert!(
                !seqs.contains(&after),
                "round {round}: the removed member got seq {after:?} ({seqs:?})"
            );
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::Left { conversation } if *conversation == c)),
                "round {round}: no Left event: {events:?}"
            );
            assert!(seqs.iter().all(|s| *s <= before), "{seqs:?}");
            // Back in for the next round.
            assert_eq!(
                owner.request(Request::Invite {
                    conversation: c,
                    user: w.users[1].0,
                }),
                Ok(Response::Done)
            );
            leaver.drain_events(Duration::from_millis(50));
        }
    }
    // Revocation: answered, then a message at once; the session is closed
    // with 4003 and never sees it.
    let mut admin = server.admin();
    assert_eq!(
        admin.request(Request::RevokeToken {
            user: w.users[2].0,
            token: None,
        }),
        Ok(Response::Done)
    );
    let after = owner.send(private, "after revocation");
    let (events, closed) = revoked.drain_events(Duration::from_secs(5));
    assert_eq!(closed, Some(Some(close::REVOKED)), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.seq == after && m.conversation == private)),
        "the revoked session got a message committed after the revocation"
    );
    let mut again = server.connect();
    assert_eq!(
        again.hello(w.users[2].1.clone()),
        Err(Reject::Unauthenticated)
    );
    assert_eq!(again.expect_close(), Some(close::UNAUTHENTICATED));
}

#[test]
fn deactivation_cuts_live_delivery_at_once_and_keeps_history() {
    let server = Server::start(2);
    let w = world(&server, &["owner", "boss", "dan"]);
    let (boss, dan) = (w.users[1].clone(), w.users[2].clone());
    let mut admin = server.admin();
    let promote = Request::People(PeopleRequest::SetRole {
        user: boss.0,
        role: Role::Admin,
    });
    assert_eq!(admin.request(promote), Ok(Response::Done));
    let mut owner = login(&server, &w.users[0].1);
    let mut channels = Vec::new();
    for (name, private) in [("public", false), ("private", true)] {
        let c = conversation(owner.request(Request::CreateChannel {
            name: name.into(),
            private,
        }));
        let invite = Request::Invite {
            conversation: c,
            user: dan.0,
        };
        assert_eq!(owner.request(invite), Ok(Response::Done));
        channels.push(c);
    }
    let dm = conversation(owner.request(Request::OpenDm { users: vec![dan.0] }));
    // Two live sessions of dan; dan writes before the deactivation.
    let mut laptop = login(&server, &dan.1);
    let mut phone = login(&server, &dan.1);
    let said = laptop.send(channels[0], "dan was here");
    laptop.drain_events(Duration::from_millis(100));
    phone.drain_events(Duration::from_millis(100));
    // A user with the admin role deactivates dan; right after the answer,
    // a message in every conversation dan was in.
    let mut b = login(&server, &boss.1);
    let deactivate = Request::People(PeopleRequest::SetRole {
        user: dan.0,
        role: Role::Deactivated,
    });
    assert_eq!(b.request(deactivate), Ok(Response::Done));
    let after: Vec<(ConversationId, Seq)> = [channels[0], channels[1], dm]
        .into_iter()
        .map(|c| (c, owner.send(c, "after the deactivation")))
        .collect();
    for session in [&mut laptop, &mut phone] {
        let (events, closed) = session.drain_events(Duration::from_secs(5));
        assert_eq!(closed, Some(Some(close::REVOKED)), "{events:?}");
        let leaked: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Message(m) if after.contains(&(m.conversation, m.seq))))
            .collect();
        assert!(leaked.is_empty(), "delivered after Done: {leaked:?}");
    }
    // No new session; out of both channels, still in the DM; history kept.
    let mut again = server.connect();
    assert_eq!(again.hello(dan.1.clone()), Err(Reject::Unauthenticated));
    for (c, in_it) in [(channels[0], false), (channels[1], false), (dm, true)] {
        let page = owner.request(Request::People(PeopleRequest::ListMembers {
            conversation: c,
            after: None,
            limit: 10,
        }));
        let members = match page {
            Ok(Response::People(PeopleResponse::Members { members, .. })) => members,
            other => panic!("{other:?}"),
        };
        assert_eq!(members.contains(&dan.0), in_it, "{c:?}: {members:?}");
    }
    let history = owner.request(Request::History {
        conversation: channels[0],
        anchor: HistoryAnchor::After(Seq(0)),
        limit: 10,
    });
    match history {
        Ok(Response::History { messages, .. }) => {
            assert!(messages.iter().any(|m| m.seq == said && m.sender == dan.0));
        }
        other => panic!("{other:?}"),
    }
    // Final: no way back, no new token.
    let back = Request::People(PeopleRequest::SetRole {
        user: dan.0,
        role: Role::Member,
    });
    assert!(matches!(admin.request(back), Err(Reject::Forbidden(_))));
    assert!(matches!(
        admin.request(Request::IssueToken { user: dan.0 }),
        Err(Reject::Forbidden(_))
    ));
}

/// Invite operations (issue 16, part 3) of the invite matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InviteOp {
    CreateMember,
    CreateGuest,
    CreateAdmin,
    CreateOwner,
    List,
    Revoke,
    Policy,
    /// `RedeemInvite` on the principal's connection (only a connection with
    /// no session may).
    Redeem,
}

/// Invite principals: the node admin, workspace roles, another
/// workspace's user, and a connection with no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IP {
    NodeAdmin,
    Owner,
    WsAdmin,
    Member,
    Guest,
    OtherWorkspace,
    Anonymous,
}

/// The invite policy, written from docs/PROTOCOL.md ("Invites"), with the
/// workspace's policy off (members may not invite).
fn invite_expected(p: IP, op: InviteOp) -> Result<(), Reject> {
    use InviteOp::*;
    let invalid = |m: &str| Err(Reject::Invalid(m.into()));
    if op == CreateOwner && p != IP::Anonymous && p != IP::OtherWorkspace {
        return invalid("role: an invite gives member, guest or admin");
    }
    if op == Redeem {
        // Redeeming is for a connection with no session, and only for it.
        return match p {
            IP::Anonymous => Ok(()),
            _ => invalid("RedeemInvite: only on a connection without a session (before Hello)"),
        };
    }
    match p {
        IP::Anonymous => Err(Reject::Unauthenticated),
        IP::OtherWorkspace => Err(Reject::NotFound),
        IP::NodeAdmin | IP::Owner | IP::WsAdmin => Ok(()),
        IP::Member => match op {
            CreateMember | CreateGuest => Err(Reject::Forbidden(
                "role: only admins create invites in this workspace".into(),
            )),
            _ => Err(Reject::NotAdmin),
        },
        IP::Guest => match op {
            CreateMember | CreateGuest | CreateAdmin => Err(Reject::Forbidden(
                "role: guests cannot create invites".into(),
            )),
            _ => Err(Reject::NotAdmin),
        },
    }
}

fn created_invite(reply: Reply) -> (InviteInfo, [u8; 32]) {
    match reply {
        Ok(Response::People(PeopleResponse::InviteCreated { invite, secret })) => (invite, secret),
        other => panic!("expected an invite: {other:?}"),
    }
}

#[test]
fn the_invite_matrix_holds_and_denials_look_like_nothing() {
    use InviteOp::*;
    let server = Server::start(2);
    let w = world(&server, &["owner", "wsadmin", "member", "guest"]);
    let ws = w.workspace;
    let mut admin = server.admin();
    for (i, role) in [(0, Role::Owner), (1, Role::Admin), (3, Role::Guest)] {
        let set = PeopleRequest::SetRole {
            user: w.users[i].0,
            role,
        };
        assert_eq!(admin.request(Request::People(set)), Ok(Response::Done));
    }
    let ws2 = match admin.request(Request::CreateWorkspace {
        name: "globex".into(),
    }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let (_, stranger) = issued_credential(admin.request(Request::CreateUser {
        workspace: ws2,
        name: "stranger".into(),
    }));
    let mut owner = login(&server, &w.users[0].1);
    let session = |p: IP| -> Client {
        match p {
            IP::NodeAdmin => server.admin(),
            IP::Owner => login(&server, &w.users[0].1),
            IP::WsAdmin => login(&server, &w.users[1].1),
            IP::Member => login(&server, &w.users[2].1),
            IP::Guest => login(&server, &w.users[3].1),
            IP::OtherWorkspace => login(&server, &stranger),
            IP::Anonymous => Client::connect(server.addr),
        }
    };
    let mut cases = 0;
    let principals = [
        IP::NodeAdmin,
        IP::Owner,
        IP::WsAdmin,
        IP::Member,
        IP::Guest,
        IP::OtherWorkspace,
        IP::Anonymous,
    ];
    let ops = [
        CreateMember,
        CreateGuest,
        CreateAdmin,
        CreateOwner,
        List,
        Revoke,
        Policy,
        Redeem,
    ];
    for p in principals {
        let mut c = session(p);
        // The node admin names the workspace; everyone else names theirs
        // (the other workspace's user names this one: out of reach).
        let named = match p {
            IP::NodeAdmin | IP::OtherWorkspace => Some(ws),
            _ => None,
        };
        for op in ops {
            let victim =
                created_invite(owner.request(Request::People(PeopleRequest::CreateInvite {
                    workspace: None,
                    max_uses: 1,
                    expires_in_ms: 60_000,
                    role: Role::Member,
                })));
            let create = |role| PeopleRequest::CreateInvite {
                workspace: named,
                max_uses: 1,
                expires_in_ms: 60_000,
                role,
            };
            let request = match op {
                CreateMember => create(Role::Member),
                CreateGuest => create(Role::Guest),
                CreateAdmin => create(Role::Admin),
                CreateOwner => create(Role::Owner),
                List => PeopleRequest::ListInvites { workspace: named },
                Revoke => PeopleRequest::RevokeInvite {
                    workspace: named,
                    invite: victim.0.id,
                },
                Policy => PeopleRequest::SetInvitePolicy {
                    workspace: named,
                    members_may_invite: false,
                },
                Redeem => PeopleRequest::RedeemInvite {
                    workspace: ws,
                    invite: victim.0.id,
                    secret: victim.1,
                    handle: format!("r{cases}"),
                },
            };
            let got = c.request(Request::People(request)).map(|_| ());
            assert_eq!(got, invite_expected(p, op), "{p:?} {op:?}");
            cases += 1;
        }
    }
    assert_eq!(cases, principals.len() * ops.len());
    // Another workspace's invites answer exactly like a workspace that
    // does not exist: the same bytes.
    let mut stranger = login(&server, &stranger);
    let list = |workspace| {
        Request::People(PeopleRequest::ListInvites {
            workspace: Some(workspace),
        })
    };
    let hidden = stranger.request_raw(90, list(ws));
    let ghost = stranger.request_raw(90, list(WorkspaceId(ws.0 | 0x7fff_0000)));
    assert_eq!(hidden, ghost, "another workspace looks like none");
    // Redeeming: a wrong secret, an unknown invite and an unknown
    // workspace are the same answer, byte for byte.
    let real = created_invite(owner.request(Request::People(PeopleRequest::CreateInvite {
        workspace: None,
        max_uses: 1,
        expires_in_ms: 60_000,
        role: Role::Member,
    })));
    let redeem = |workspace, invite, secret| {
        Request::People(PeopleRequest::RedeemInvite {
            workspace,
            invite,
            secret,
            handle: "eve".into(),
        })
    };
    let mut wrong = real.1;
    wrong[31] ^= 0x80;
    let answers: Vec<Vec<u8>> = [
        redeem(ws, real.0.id, wrong),
        redeem(ws, real.0.id + 1_000, real.1),
        redeem(WorkspaceId(ws.0 | 0x7fff_0000), real.0.id, real.1),
    ]
    .into_iter()
    .map(|r| Client::connect(server.addr).request_raw(5, r))
    .collect();
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert!(matches!(
        decode_server_reply(&answers[0]),
        Err(Reject::NotFound)
    ));
    // With the policy on, members invite members and guests, not admins.
    let on = PeopleRequest::SetInvitePolicy {
        workspace: None,
        members_may_invite: true,
    };
    assert_eq!(owner.request(Request::People(on)), Ok(Response::Done));
    let mut member = login(&server, &w.users[2].1);
    for (role, allowed) in [
        (Role::Member, true),
        (Role::Guest, true),
        (Role::Admin, false),
    ] {
        let got = member.request(Request::People(PeopleRequest::CreateInvite {
            workspace: None,
            max_uses: 1,
            expires_in_ms: 60_000,
            role,
        }));
        assert_eq!(got.is_ok(), allowed, "member, {role:?}: {got:?}");
    }
}

fn decode_server_reply(bytes: &[u8]) -> Reply {
    match courier_proto::decode_server(bytes) {
        Ok(courier_proto::ServerFrame::Reply { result, .. }) => result,
        other => panic!("expected a reply: {other:?}"),
    }
}
