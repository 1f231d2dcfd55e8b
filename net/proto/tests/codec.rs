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
}

fn responses() -> Vec<Result<Response, Reject>> {
    vec![
        Ok(Response::Welcome {
            user: Some(UserId(1)),
            workspace: Some(WorkspaceId(2)),
            now: Millis(3),
        }),
        Ok(Response::Welcome {
            user: None,
            workspace: None,
            now: Millis(3),
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
        }),
        Err(Reject::Unavailable("storage failed".into())),
    ]
}

fn events() -> Vec<Event> {
    vec![
        Event::Message(message(3)),
        Event::ReadCursor {
            conversation: ConversationId(1),
            seq: Seq(2),
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
    ]
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

#[test]
fn bad_token_is_a_token_error() {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let token = fbb.create_string("not-a-token");
    let hello = courier_proto::wire::Hello::create(
        &mut fbb,
        &courier_proto::wire::HelloArgs {
            token: Some(token),
            ..Default::default()
        },
    );
    let frame = courier_proto::wire::Frame::create(
        &mut fbb,
        &courier_proto::wire::FrameArgs {
            request_id: 1,
            body_type: courier_proto::wire::Body::Hello,
            body: Some(hello.as_union_value()),
        },
    );
    fbb.finish(frame, None);
    assert!(matches!(
        decode_client(fbb.finished_data()),
        Err(DecodeError::Token(_))
    ));
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
