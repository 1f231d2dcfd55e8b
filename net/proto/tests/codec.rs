//! Round trips of every frame kind, and rejection of hostile bytes.

use courier_core::api::*;
use courier_proto::{decode_client, decode_server, ClientFrame, DecodeError, Encoder, ServerFrame};

fn info() -> ConversationInfo {
    ConversationInfo {
        id: ConversationId(77),
        kind: ConversationKind::PrivateChannel,
        name: "ops".into(),
        members: vec![UserId(1), UserId(2)],
        member_count: 2,
        head: Seq(10),
        read: Seq(4),
        unread: 6,
        mentions: 1,
        member: true,
        last_activity: Millis(1_700_000_000_000),
        preview: Some("héllo".into()),
        settings: Box::new(ChannelSettings {
            topic: "ship it ✓".into(),
            purpose: "ops talk".into(),
            archived: true,
            posting: Posting::Admins,
        }),
    }
}

fn message(seq: u64) -> Message {
    Message {
        conversation: ConversationId(77),
        seq: Seq(seq),
        sender: UserId(2),
        client_msg_id: u128::MAX - seq as u128,
        ts: Millis(123),
        body: format!("message {seq} ✓"),
        mentions: vec![UserId(1)],
        broadcast: Broadcast::Here,
        change: None,
        live: Default::default(),
        thread: None,
    }
}

fn requests() -> Vec<Request> {
    let c = ConversationId(5);
    vec![
        Request::CreateWorkspace {
            name: "acme".into(),
        },
        Request::CreateUser {
            workspace: WorkspaceId(9),
            name: "ann".into(),
        },
        Request::IssueToken { user: UserId(3) },
        Request::RevokeToken {
            user: UserId(3),
            token: Some(2),
        },
        Request::RevokeToken {
            user: UserId(3),
            token: None,
        },
        Request::CreateChannel {
            name: "general".into(),
            private: true,
        },
        Request::Join { conversation: c },
        Request::Leave { conversation: c },
        Request::Invite {
            conversation: c,
            user: UserId(8),
        },
        Request::Remove {
            conversation: c,
            user: UserId(8),
        },
        Request::OpenDm {
            users: vec![UserId(1), UserId(2)],
        },
        Request::ListConversations,
        Request::Lookup {
            name: "general".into(),
            kind: LookupKind::Channel,
        },
        Request::Lookup {
            name: "ann".into(),
            kind: LookupKind::User,
        },
        Request::Send {
            conversation: c,
            client_msg_id: 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            body: "hi @ann".into(),
            mentions: vec![UserId(1)],
            broadcast: Broadcast::Channel,
        },
        Request::Sync {
            cursors: vec![(c, Seq(3)), (ConversationId(6), Seq(0))],
            reads: vec![],
        },
        Request::Sync {
            cursors: vec![(c, Seq(3)), (ConversationId(6), Seq(0))],
            reads: vec![Seq(2), Seq(0)],
        },
        Request::History {
            conversation: c,
            anchor: HistoryAnchor::Latest,
            limit: 50,
        },
        Request::History {
            conversation: c,
            anchor: HistoryAnchor::Before(Seq(9)),
            limit: 5,
        },
        Request::History {
            conversation: c,
            anchor: HistoryAnchor::After(Seq(2)),
            limit: 5,
        },
        Request::Boot {
            limit: 50,
            offset: 100,
        },
        Request::MarkRead {
            conversation: c,
            seq: Seq(4),
        },
        Request::SetNotify {
            conversation: c,
            level: NotifyLevel::Mentions,
            muted: true,
        },
        Request::SetFocus {
            focused: Some(c),
            active: true,
        },
        Request::SetFocus {
            focused: None,
            active: false,
        },
        Request::SetDnd {
            until: Some(Millis(99)),
        },
        Request::SetDnd { until: None },
    ]
    .into_iter()
    .chain(people_requests().into_iter().map(Request::People))
    .chain(live_requests())
    .chain(thread_requests())
    .collect()
}

/// Threads (issue 17, part 2): after the others, so the committed corpus
/// files of the older ones keep their numbers.
fn thread_requests() -> Vec<Request> {
    vec![
        Request::Reply {
            conversation: ConversationId(5),
            root: Seq(4),
            in_channel: true,
            client_msg_id: u128::MAX - 9,
            body: "in the thread ✓".into(),
            mentions: vec![UserId(2), UserId(3)],
            broadcast: Broadcast::Here,
        },
        Request::Thread {
            conversation: ConversationId(5),
            root: Seq(4),
            after: Seq(7),
            limit: 50,
        },
    ]
}

/// A thread root with its summary, and a reply (issue 17, part 2).
fn thread_events() -> Vec<Event> {
    vec![
        Event::Message(Message {
            live: Live {
                version: Seq(12),
                thread: Box::new(ThreadSummary {
                    replies: 3,
                    last_reply: Millis(789),
                    last_seq: Seq(12),
                    participants: vec![UserId(3), UserId(1)],
                }),
                ..Live::default()
            },
            ..message(4)
        }),
        Event::Message(Message {
            thread: Some(Thread {
                root: Seq(4),
                in_channel: false,
            }),
            ..message(12)
        }),
    ]
}

/// Issue 17's requests (after the others, so the committed corpus files
/// of the older ones keep their numbers).
fn live_requests() -> Vec<Request> {
    let c = ConversationId(5);
    vec![
        Request::Change {
            conversation: c,
            target: Seq(4),
            kind: ChangeKind::Edit,
            text: "fixed ✓".into(),
        },
        Request::Change {
            conversation: c,
            target: Seq(4),
            kind: ChangeKind::Delete,
            text: String::new(),
        },
        Request::Change {
            conversation: c,
            target: Seq(4),
            kind: ChangeKind::React,
            text: "👍".into(),
        },
        Request::Change {
            conversation: c,
            target: Seq(4),
            kind: ChangeKind::Unreact,
            text: "+1".into(),
        },
        // Issue 17, part 3.
        Request::Change {
            conversation: c,
            target: Seq(4),
            kind: ChangeKind::Pin,
            text: String::new(),
        },
        Request::ListPins {
            conversation: c,
            before: Seq(40),
            limit: 25,
        },
        // Issue 17, part 4.
        Request::Typing { conversation: c },
        Request::WatchPresence {
            users: vec![UserId(3), UserId(u64::MAX)],
        },
        Request::GetPresence { user: UserId(3) },
        Request::SetAway { away: true },
    ]
    .into_iter()
    .chain(setting_requests())
    .collect()
}

/// Issue 16, part 4: one `SetChannel` of every setting kind.
fn setting_requests() -> Vec<Request> {
    use ChangeKind::*;
    [
        (Topic, "launch ✓"),
        (Purpose, ""),
        (Rename, "town-square"),
        (Archive, ""),
        (Unarchive, ""),
        (PostingEveryone, ""),
        (PostingAdmins, ""),
    ]
    .into_iter()
    .map(|(kind, text)| Request::SetChannel {
        conversation: ConversationId(5),
        kind,
        text: text.into(),
    })
    .collect()
}

fn profile() -> UserProfile {
    UserProfile {
        user: UserId(3),
        handle: "ann".into(),
        profile: Profile {
            display_name: "Ann Lee".into(),
            real_name: "Ann Marie Lee".into(),
            title: "CTO".into(),
            time_zone: "Europe/Berlin".into(),
            avatar_url: "https://x.example/ann.png".into(),
            status: Status {
                emoji: "🌴".into(),
                text: "away".into(),
                expires: Some(Millis(1_700_000_000_000)),
            },
        },
        version: 7,
    }
}

fn people_requests() -> Vec<PeopleRequest> {
    vec![
        PeopleRequest::SetProfile {
            user: None,
            update: Box::new(ProfileUpdate {
                display_name: Some("Ann".into()),
                title: Some(String::new()),
                status: Some(Status::default()),
                ..ProfileUpdate::default()
            }),
        },
        PeopleRequest::SetProfile {
            user: Some(UserId(4)),
            update: Box::new(ProfileUpdate {
                real_name: Some("Bob B".into()),
                time_zone: Some("UTC".into()),
                avatar_url: Some("https://x.example/b".into()),
                status: Some(profile().profile.status),
                ..ProfileUpdate::default()
            }),
        },
        PeopleRequest::GetUsers {
            users: vec![UserId(1), UserId(u64::MAX)],
        },
        PeopleRequest::GetUsers { users: vec![] },
        PeopleRequest::GetUserByHandle {
            handle: "ann".into(),
        },
        PeopleRequest::Directory {
            prefix: String::new(),
            after: None,
            limit: 50,
        },
        PeopleRequest::Directory {
            prefix: "An".into(),
            after: Some(DirectoryCursor {
                key: "ann lee".into(),
                user: UserId(3),
            }),
            limit: 200,
        },
        PeopleRequest::ListMembers {
            conversation: ConversationId(5),
            after: None,
            limit: 100,
        },
        PeopleRequest::BrowseChannels {
            after: None,
            limit: 200,
        },
        PeopleRequest::BrowseChannels {
            after: Some("general".into()),
            limit: 1,
        },
        PeopleRequest::ListMembers {
            conversation: ConversationId(5),
            after: Some(UserId(9)),
            limit: 1,
        },
        PeopleRequest::SetRole {
            user: UserId(9),
            role: Role::Guest,
        },
        PeopleRequest::SetRole {
            user: UserId(9),
            role: Role::Owner,
        },
        PeopleRequest::SetRole {
            user: UserId(9),
            role: Role::Deactivated,
        },
        PeopleRequest::ListTokens,
        PeopleRequest::CreateInvite {
            workspace: None,
            max_uses: 5,
            expires_in_ms: 86_400_000,
            role: Role::Guest,
        },
        PeopleRequest::CreateInvite {
            workspace: Some(WorkspaceId(3)),
            max_uses: 1,
            expires_in_ms: 1,
            role: Role::Admin,
        },
        PeopleRequest::ListInvites { workspace: None },
        PeopleRequest::ListInvites {
            workspace: Some(WorkspaceId(3)),
        },
        PeopleRequest::RevokeInvite {
            workspace: None,
            invite: 4,
        },
        PeopleRequest::SetInvitePolicy {
            workspace: Some(WorkspaceId(3)),
            members_may_invite: true,
        },
        PeopleRequest::RedeemInvite {
            workspace: WorkspaceId(3),
            invite: 4,
            secret: [9; 32],
            handle: "gus".into(),
        },
    ]
}

fn invite_info() -> InviteInfo {
    InviteInfo {
        workspace: WorkspaceId(3),
        id: 4,
        creator: Some(UserId(2)),
        role: Role::Guest,
        max_uses: 5,
        uses: 2,
        created: Millis(1_000),
        expires: Millis(87_000),
        revoked: false,
    }
}

fn people_responses() -> Vec<PeopleResponse> {
    vec![
        PeopleResponse::Users(vec![profile(), {
            let mut p = profile();
            p.user = UserId(4);
            p.profile = Profile::default();
            p.version = 0;
            p
        }]),
        PeopleResponse::Users(vec![]),
        PeopleResponse::Directory {
            entries: vec![DirectoryEntry {
                user: UserId(3),
                handle: "ann".into(),
                display_name: "Ann Lee".into(),
                version: 7,
            }],
            next: Some(DirectoryCursor {
                key: "ann lee".into(),
                user: UserId(3),
            }),
        },
        PeopleResponse::Directory {
            entries: vec![],
            next: None,
        },
        PeopleResponse::Members {
            conversation: ConversationId(5),
            members: vec![UserId(1), UserId(2)],
            total: 40,
            next: Some(UserId(2)),
        },
        PeopleResponse::Members {
            conversation: ConversationId(5),
            members: vec![],
            total: 0,
            next: None,
        },
        PeopleResponse::Channels {
            channels: vec![(ConversationId(8), "general".into())],
            next: Some("general".into()),
        },
        PeopleResponse::Channels {
            channels: vec![],
            next: None,
        },
        PeopleResponse::InviteCreated {
            invite: invite_info(),
            secret: [0xee; 32],
        },
        PeopleResponse::Invites(vec![
            invite_info(),
            InviteInfo {
                creator: None,
                revoked: true,
                role: Role::Member,
                ..invite_info()
            },
        ]),
        PeopleResponse::Invites(vec![]),
    ]
}

fn responses() -> Vec<Result<Response, Reject>> {
    vec![
        Ok(Response::Welcome {
            user: Some(UserId(1)),
            workspace: Some(WorkspaceId(2)),
            now: Millis(3),
            conn_rate: RateLimit {
                per_sec: 100,
                burst: 200,
            },
            user_rate: RateLimit {
                per_sec: 200,
                burst: 400,
            },
        }),
        Ok(Response::Welcome {
            user: None,
            workspace: None,
            now: Millis(3),
            conn_rate: RateLimit::NONE,
            user_rate: RateLimit::NONE,
        }),
        Ok(Response::WorkspaceCreated {
            workspace: WorkspaceId(2),
        }),
        Ok(Response::TokenIssued {
            user: UserId(1),
            token: 4,
            secret: [9; 32],
        }),
        Ok(Response::Done),
        Ok(Response::Conversation(info())),
        Ok(Response::Conversations(vec![info(), info()])),
        Ok(Response::Found { id: 42 }),
        Ok(Response::SendAck {
            conversation: ConversationId(1),
            seq: Seq(2),
            ts: Millis(3),
            broadcast_ignored: true,
        }),
        Ok(Response::Sync {
            changed: vec![SyncConversation {
                info: info(),
                messages: vec![message(5), message(6)],
                truncated: true,
            }],
            gone: vec![ConversationId(8)],
        }),
        Ok(Response::History {
            messages: vec![message(1)],
            head: Seq(10),
        }),
        Ok(Response::Pins {
            conversation: ConversationId(3),
            pins: vec![Seq(9), Seq(4)],
            next: Seq(4),
        }),
        Ok(Response::Presence {
            user: UserId(3),
            presence: courier_core::api::Presence::Active,
            manual_away: false,
        }),
        Ok(Response::Boot(Box::new(BootPage {
            user: UserId(1),
            user_name: "ann".into(),
            workspace: WorkspaceId(2),
            workspace_name: "acme".into(),
            conversations: vec![info()],
            total: 1,
            pages: vec![(ConversationId(77), vec![message(9), message(10)])],
        }))),
        Err(Reject::Unauthenticated),
        Err(Reject::NotAdmin),
        Err(Reject::NotFound),
        Err(Reject::AlreadyExists),
        Err(Reject::Invalid("body: empty".into())),
        Err(Reject::TooLarge("body over 16 KiB".into())),
        Err(Reject::RateLimited {
            retry_after_ms: 250,
            limit: RateLimit {
                per_sec: 10,
                burst: 20,
            },
        }),
    ]
    .into_iter()
    .chain(ALL_CAUSES.map(|c| Err(Reject::unavailable(c, format!("{c:?}: detail")))))
    .chain(
        people_responses()
            .into_iter()
            .map(|p| Ok(Response::People(p))),
    )
    .chain([
        Err(Reject::Forbidden(
            "role: guests cannot create channels".into(),
        )),
        Err(Reject::InviteExpired),
        Err(Reject::InviteUsedUp),
        Err(Reject::InviteRevoked),
        Ok(Response::People(PeopleResponse::Tokens {
            tokens: vec![1, 3, 4],
            current: 3,
        })),
        // Issue 16, part 4.
        Err(Reject::Archived),
    ])
    .collect()
}

/// Every `UnavailableCause`, each with its documented outcome.
const ALL_CAUSES: [UnavailableCause; 8] = [
    UnavailableCause::Unspecified,
    UnavailableCause::Starting,
    UnavailableCause::Overloaded,
    UnavailableCause::StorageFailed,
    UnavailableCause::NotDurable,
    UnavailableCause::ReadFailed,
    UnavailableCause::IdsExhausted,
    UnavailableCause::PeerTimeout,
];

fn events() -> Vec<Event> {
    vec![
        Event::Message(message(3)),
        // Issue 17: a message in its current state, and a change.
        Event::Message(Message {
            live: Live {
                edited: Some(Millis(456)),
                deleted: false,
                reactions: vec![Reaction {
                    emoji: "eyes".into(),
                    users: vec![UserId(1), UserId(9)],
                }],
                version: Seq(9),
                thread: Box::default(),
                pinned: true,
            },
            ..message(4)
        }),
        Event::Message(Message {
            body: String::new(),
            mentions: vec![],
            live: Live {
                deleted: true,
                version: Seq(8),
                ..Live::default()
            },
            ..message(5)
        }),
        Event::Message(Message {
            change: Some(Change {
                kind: ChangeKind::React,
                target: Seq(4),
            }),
            body: "eyes".into(),
            mentions: vec![],
            ..message(9)
        }),
        // Issue 17, part 3: a pin and an unpin.
        Event::Message(Message {
            change: Some(Change {
                kind: ChangeKind::Pin,
                target: Seq(4),
            }),
            body: String::new(),
            mentions: vec![],
            ..message(10)
        }),
        Event::Message(Message {
            change: Some(Change {
                kind: ChangeKind::Unpin,
                target: Seq(4),
            }),
            body: String::new(),
            mentions: vec![],
            ..message(11)
        }),
        Event::ReadCursor {
            conversation: ConversationId(1),
            seq: Seq(2),
        },
        Event::Typing {
            conversation: ConversationId(1),
            user: UserId(4),
        },
        Event::Presence {
            user: UserId(4),
            presence: courier_core::api::Presence::Away,
        },
        Event::Joined(info()),
        Event::Left {
            conversation: ConversationId(1),
        },
        Event::Notify {
            conversation: ConversationId(1),
            seq: Seq(2),
            reason: NotifyReason::Mention,
        },
        // Issue 16, part 4: a setting event (target 0, the value as body).
        Event::Message(Message {
            change: Some(Change {
                kind: ChangeKind::Topic,
                target: Seq(0),
            }),
            body: "launch week".into(),
            mentions: vec![],
            ..message(10)
        }),
        // Issue 16, part 5: a profile event.
        Event::ProfileChanged {
            user: UserId(7),
            version: 3,
        },
    ]
    .into_iter()
    .chain(thread_events())
    .collect()
}

#[test]
fn every_request_round_trips() {
    let mut enc = Encoder::new();
    for (i, request) in requests().into_iter().enumerate() {
        let frame = ClientFrame::Request {
            req: i as u32 + 1,
            request,
        };
        let bytes = enc.client(&frame);
        assert_eq!(decode_client(&bytes), Ok(frame));
    }
}

#[test]
fn hello_round_trips_for_both_credentials() {
    let mut enc = Encoder::new();
    for credential in [
        Credential::Admin([7; 32]),
        Credential::User {
            user: UserId(5),
            token: 2,
            secret: [1; 32],
        },
    ] {
        let frame = ClientFrame::Hello {
            req: 1,
            credential,
            device: DeviceInfo {
                kind: DeviceKind::Mobile,
                name: "phone".into(),
            },
        };
        assert_eq!(decode_client(&enc.client(&frame)), Ok(frame));
    }
}

#[test]
fn every_reply_and_event_round_trips() {
    let mut enc = Encoder::new();
    for (i, result) in responses().into_iter().enumerate() {
        let frame = ServerFrame::Reply {
            req: i as u32,
            result,
        };
        assert_eq!(decode_server(&enc.server(&frame)), Ok(frame));
    }
    for event in events() {
        let frame = ServerFrame::Event(event);
        assert_eq!(decode_server(&enc.server(&frame)), Ok(frame));
    }
}

/// Threads: a thread page travels as a history page (same fields), and a
/// message with more participants than a summary keeps is refused.
#[test]
fn a_thread_page_is_a_history_page_on_the_wire() {
    let mut enc = Encoder::new();
    let messages = vec![message(4), message(6)];
    let page = Response::Thread {
        messages: messages.clone(),
        head: Seq(6),
    };
    let bytes = enc.server(&ServerFrame::Reply {
        req: 3,
        result: Ok(page),
    });
    assert_eq!(
        decode_server(&bytes),
        Ok(ServerFrame::Reply {
            req: 3,
            result: Ok(Response::History {
                messages,
                head: Seq(6)
            })
        })
    );
    let crowded = Message {
        live: Live {
            thread: Box::new(ThreadSummary {
                replies: 4,
                participants: (1..=4).map(UserId).collect(),
                ..ThreadSummary::default()
            }),
            ..Live::default()
        },
        ..message(4)
    };
    let bytes = enc.server(&ServerFrame::Event(Event::Message(crowded)));
    assert!(decode_server(&bytes).is_err());
}

#[test]
fn only_peer_timeouts_not_durable_and_unspecified_are_unknown_outcomes() {
    let unknown: Vec<_> = ALL_CAUSES
        .into_iter()
        .filter(|c| !c.outcome_known())
        .collect();
    assert_eq!(
        unknown,
        [
            UnavailableCause::Unspecified,
            UnavailableCause::NotDurable,
            UnavailableCause::PeerTimeout
        ]
    );
}

/// An `ErrorReply` as an older server sends it (no cause), or with a cause
/// from a newer server, decodes as an unknown outcome.
#[test]
fn unavailable_without_a_known_cause_reads_as_an_unknown_outcome() {
    use courier_proto::wire;
    for cause in [None, Some(wire::UnavailableCause(200))] {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let message = fbb.create_string("home shard did not answer");
        let mut args = wire::ErrorReplyArgs {
            code: wire::ErrorCode::Unavailable,
            message: Some(message),
            ..Default::default()
        };
        if let Some(c) = cause {
            args.unavailable = c;
        }
        let reply = wire::ErrorReply::create(&mut fbb, &args);
        let frame = wire::Frame::create(
            &mut fbb,
            &wire::FrameArgs {
                request_id: 5,
                body_type: wire::Body::ErrorReply,
                body: Some(reply.as_union_value()),
            },
        );
        fbb.finish(frame, Some(wire::FRAME_IDENTIFIER));
        let expected = ServerFrame::Reply {
            req: 5,
            result: Err(Reject::unavailable(
                UnavailableCause::Unspecified,
                "home shard did not answer",
            )),
        };
        assert_eq!(
            decode_server(fbb.finished_data()),
            Ok(expected),
            "{cause:?}"
        );
        assert!(!UnavailableCause::Unspecified.outcome_known());
    }
}

#[test]
fn server_frames_are_not_client_frames() {
    let mut enc = Encoder::new();
    let bytes = enc.reply(1, &Ok(Response::Done));
    assert!(matches!(
        decode_client(&bytes),
        Err(DecodeError::UnexpectedBody("Done"))
    ));
    let bytes = enc.client(&ClientFrame::Request {
        req: 1,
        request: Request::ListConversations,
    });
    assert!(matches!(
        decode_server(&bytes),
        Err(DecodeError::UnexpectedBody(_))
    ));
}

#[test]
fn oversize_and_garbage_are_errors() {
    let big = vec![0u8; courier_proto::constants::CLIENT_FRAME_BYTES_MAX + 1];
    assert!(matches!(
        decode_client(&big),
        Err(DecodeError::TooLarge { .. })
    ));
    for bytes in [
        &b""[..],
        b"\x00",
        b"\xff\xff\xff\xff",
        &[0u8; 64][..],
        b"CRR1CRR1CRR1",
    ] {
        assert!(decode_client(bytes).is_err(), "{bytes:?}");
        assert!(decode_server(bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn every_truncation_and_bit_flip_of_a_frame_is_handled() {
    let mut enc = Encoder::new();
    let frame = ClientFrame::Request {
        req: 9,
        request: requests()[14].clone(),
    };
    let bytes = enc.client(&frame);
    for len in 0..bytes.len() {
        let _ = decode_client(&bytes[..len]); // must not panic
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        let _ = decode_client(&b);
    }
}

/// A `Hello` frame built field by field, finished with or without the
/// `CRR1` file identifier.
fn raw_hello(
    request_id: u32,
    token: &str,
    device_name: &str,
    protocol_version: u16,
    identifier: bool,
) -> Vec<u8> {
    use courier_proto::wire;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let token = fbb.create_string(token);
    let device_name = fbb.create_string(device_name);
    let hello = wire::Hello::create(
        &mut fbb,
        &wire::HelloArgs {
            token: Some(token),
            device_name: Some(device_name),
            protocol_version,
            ..Default::default()
        },
    );
    let frame = wire::Frame::create(
        &mut fbb,
        &wire::FrameArgs {
            request_id,
            body_type: wire::Body::Hello,
            body: Some(hello.as_union_value()),
        },
    );
    fbb.finish(frame, identifier.then_some(wire::FRAME_IDENTIFIER));
    fbb.finished_data().to_vec()
}

fn admin_token() -> String {
    courier_proto::token::format_admin(&[7; 32])
}

#[test]
fn bad_token_is_a_token_error() {
    assert!(matches!(
        decode_client(&raw_hello(1, "not-a-token", "phone", 1, true)),
        Err(DecodeError::Token(_))
    ));
}

#[test]
fn a_frame_without_the_crr1_identifier_is_refused() {
    let good = raw_hello(1, &admin_token(), "phone", 1, true);
    assert!(matches!(
        decode_client(&good),
        Ok(ClientFrame::Hello { .. })
    ));
    let bare = raw_hello(1, &admin_token(), "phone", 1, false);
    assert_eq!(decode_client(&bare), Err(DecodeError::Identifier));
    assert_eq!(courier_proto::peek_request_id(&bare), 0);
    // Another identifier in the same place.
    let mut other = good.clone();
    other[4..8].copy_from_slice(b"XYZ1");
    assert_eq!(decode_client(&other), Err(DecodeError::Identifier));
    // Server frames too.
    let mut reply = Encoder::new().reply(3, &Ok(Response::Done));
    assert!(decode_server(&reply).is_ok());
    reply[4..8].copy_from_slice(b"CRR2");
    assert_eq!(decode_server(&reply), Err(DecodeError::Identifier));
    assert!(DecodeError::Identifier.to_string().contains("CRR1"));
}

#[test]
fn request_id_zero_is_refused() {
    let mut enc = Encoder::new();
    let bytes = enc.client(&ClientFrame::Request {
        req: 0,
        request: Request::ListConversations,
    });
    assert_eq!(decode_client(&bytes), Err(DecodeError::ZeroRequestId));
    assert_eq!(
        decode_client(&raw_hello(0, &admin_token(), "phone", 1, true)),
        Err(DecodeError::ZeroRequestId)
    );
    // Events from the server carry 0, and still decode.
    let event = enc.event(&Event::Left {
        conversation: ConversationId(4),
    });
    assert!(matches!(decode_server(&event), Ok(ServerFrame::Event(_))));
}

#[test]
fn hello_with_an_unsupported_version_or_a_bad_device_name_is_refused() {
    let max = courier_proto::constants::DEVICE_NAME_BYTES_MAX;
    assert_eq!(max, courier_core::constants::NAME_BYTES_MAX);
    let refused = |bytes: &[u8]| match decode_client(bytes) {
        Err(DecodeError::BadHello { reject, reason }) => (reject, reason),
        other => panic!("expected BadHello: {other:?}"),
    };
    let (reject, reason) = refused(&raw_hello(1, &admin_token(), "phone", 2, true));
    assert!(
        matches!(&reject, Reject::Invalid(m) if m.starts_with("protocol_version")),
        "{reject:?}"
    );
    assert!(reason.contains("protocol_version"), "{reason}");
    let (reject, reason) = refused(&raw_hello(1, &admin_token(), &"n".repeat(max + 1), 1, true));
    assert!(
        matches!(&reject, Reject::TooLarge(m) if m.starts_with("device_name")),
        "{reject:?}"
    );
    assert!(reason.contains("device_name"), "{reason}");
    let (reject, _) = refused(&raw_hello(1, &admin_token(), "", 1, true));
    assert!(matches!(&reject, Reject::Invalid(m) if m.starts_with("device_name")));
    // The longest allowed name (the core's NAME_BYTES_MAX) is accepted.
    assert!(matches!(
        decode_client(&raw_hello(1, &admin_token(), &"n".repeat(max), 1, true)),
        Ok(ClientFrame::Hello { .. })
    ));
}

#[test]
fn the_codec_refuses_more_ids_than_get_users_max() {
    let limit = courier_core::constants::GET_USERS_MAX;
    assert_eq!(courier_proto::constants::GET_USERS_MAX, limit);
    let mut enc = Encoder::new();
    let frame = |n: usize| ClientFrame::Request {
        req: 1,
        request: Request::People(PeopleRequest::GetUsers {
            users: (1..=n as u64).map(UserId).collect(),
        }),
    };
    let at = frame(limit);
    assert_eq!(decode_client(&enc.client(&at)), Ok(at));
    assert!(matches!(
        decode_client(&enc.client(&frame(limit + 1))),
        Err(DecodeError::Field { field: "users", .. })
    ));
    let long_key = ClientFrame::Request {
        req: 1,
        request: Request::People(PeopleRequest::Directory {
            prefix: String::new(),
            after: Some(DirectoryCursor {
                key: "k".repeat(courier_proto::constants::DIRECTORY_CURSOR_BYTES_MAX + 1),
                user: UserId(1),
            }),
            limit: 1,
        }),
    };
    assert!(matches!(
        decode_client(&enc.client(&long_key)),
        Err(DecodeError::Field {
            field: "after_key",
            ..
        })
    ));
}

#[test]
fn the_codec_takes_its_sync_limit_from_the_core() {
    assert_eq!(
        courier_proto::constants::SYNC_CURSORS_MAX,
        courier_core::constants::SYNC_CURSORS_MAX
    );
}

/// The fuzz targets' committed seed corpus, replayed as a regression suite.
/// `COURIER_WRITE_CORPUS=1` (re)writes the seeds from the frames above.
#[test]
fn fuzz_corpus_replays_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    if std::env::var_os("COURIER_WRITE_CORPUS").is_some() {
        let mut enc = Encoder::new();
        let client = root.join("decode_client");
        let server = root.join("decode_server");
        std::fs::create_dir_all(&client).unwrap();
        std::fs::create_dir_all(&server).unwrap();
        for (i, request) in requests().into_iter().enumerate() {
            let bytes = enc.client(&ClientFrame::Request {
                req: i as u32 + 1,
                request,
            });
            std::fs::write(client.join(format!("request-{i:02}")), bytes).unwrap();
        }
        let hello = ClientFrame::Hello {
            req: 1,
            credential: Credential::User {
                user: UserId(5),
                token: 2,
                secret: [1; 32],
            },
            device: DeviceInfo {
                kind: DeviceKind::Web,
                name: "web".into(),
            },
        };
        std::fs::write(client.join("hello"), enc.client(&hello)).unwrap();
        // Refused shapes: the fuzzer starts next to each refusal path.
        let token = admin_token();
        let refused = [
            ("hello-version-2", raw_hello(1, &token, "web", 2, true)),
            (
                "hello-long-name",
                raw_hello(1, &token, &"n".repeat(81), 1, true),
            ),
            ("hello-no-identifier", raw_hello(1, &token, "web", 1, false)),
            ("hello-request-id-0", raw_hello(0, &token, "web", 1, true)),
        ];
        for (name, bytes) in refused {
            std::fs::write(client.join(name), bytes).unwrap();
        }
        for (i, result) in responses().into_iter().enumerate() {
            let bytes = enc.server(&ServerFrame::Reply {
                req: i as u32,
                result,
            });
            std::fs::write(server.join(format!("reply-{i:02}")), bytes).unwrap();
        }
        for (i, event) in events().into_iter().enumerate() {
            let bytes = enc.server(&ServerFrame::Event(event));
            std::fs::write(server.join(format!("event-{i:02}")), bytes).unwrap();
        }
    }
    let mut replayed = 0;
    for (target, decode) in [
        (
            "decode_client",
            (|b: &[u8]| decode_client(b).is_ok()) as fn(&[u8]) -> bool,
        ),
        ("decode_server", |b: &[u8]| decode_server(b).is_ok()),
    ] {
        let dir = root.join(target);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "no corpus in {}", dir.display());
        for path in entries {
            let bytes = std::fs::read(&path).unwrap();
            let _ = decode(&bytes); // must not panic
            replayed += 1;
        }
    }
    assert!(replayed >= 50, "only {replayed} corpus entries");
}

/// A malformed invite code is a bad field (answered `Invalid`), not a bad
/// token: the connection has no session to lose.
#[test]
fn a_malformed_invite_code_is_a_field_error() {
    let request = Request::People(PeopleRequest::RedeemInvite {
        workspace: WorkspaceId(3),
        invite: 4,
        secret: [9; 32],
        handle: "gus".into(),
    });
    let mut bytes = Encoder::new()
        .client(&ClientFrame::Request { req: 7, request })
        .to_vec();
    let at = bytes
        .windows(4)
        .position(|w| w == b"ci1_")
        .expect("the code is in the frame");
    bytes[at + 10] = b'g';
    assert!(matches!(
        decode_client(&bytes),
        Err(DecodeError::Field { field: "code", .. })
    ));
}

/// `SetChannel` must name a channel setting (issue 16, part 4): a message
/// change kind there is a field error, not a request.
#[test]
fn set_channel_with_a_message_change_kind_is_a_field_error() {
    let mut enc = Encoder::new();
    let bytes = enc.client(&ClientFrame::Request {
        req: 1,
        request: Request::SetChannel {
            conversation: ConversationId(5),
            kind: ChangeKind::Edit,
            text: "x".into(),
        },
    });
    assert!(
        matches!(decode_client(&bytes), Err(DecodeError::Field { .. })),
        "{:?}",
        decode_client(&bytes)
    );
}
