//! Frame codec: owned `courier_core::api` values ⇄ flatbuffers bytes.
//!
//! Decoding runs in two phases, like every decoder that faces the network:
//! first the flatbuffers verifier checks the whole buffer against the schema
//! with tight limits ([`crate::constants`]), then accessors copy the fields out
//! into owned values, checking enum ranges and our own limits. Nothing here
//! panics on any input; every failure is a [`DecodeError`].

use crate::constants::{
    CLIENT_FRAME_BYTES_MAX, CLIENT_IDS_MAX, CLIENT_VERIFIER_TABLES_MAX, PROTOCOL_VERSION,
    SERVER_FRAME_BYTES_MAX, SERVER_VERIFIER_TABLES_MAX, SYNC_CURSORS_MAX, VERIFIER_DEPTH_MAX,
};
use crate::people;
use crate::token;
use crate::wire;
use courier_core::api::{
    BootPage, Broadcast, ClientMsgId, ConversationId, ConversationInfo, ConversationKind,
    Credential, DeviceInfo, DeviceKind, Event, HistoryAnchor, LookupKind, Message, Millis,
    NotifyLevel, NotifyReason, RateLimit, Reject, ReqId, Request, Response, Seq, SyncConversation,
    UnavailableCause, UserId, WorkspaceId,
};
use courier_core::text::{check_name, NameKind};
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

/// A frame a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// Opens the session.
    Hello {
        /// Request id.
        req: ReqId,
        /// Parsed token.
        credential: Credential,
        /// Device facts.
        device: DeviceInfo,
    },
    /// Any other request.
    Request {
        /// Request id.
        req: ReqId,
        /// The request.
        request: Request,
    },
}

/// A frame the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    /// The answer to request `req`.
    Reply {
        /// Request id.
        req: ReqId,
        /// Outcome.
        result: Result<Response, Reject>,
    },
    /// A server-initiated event (`request_id` 0 on the wire).
    Event(Event),
}

/// Why bytes are not a valid frame.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Larger than the direction's frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The flatbuffers verifier rejected the buffer.
    #[error("not a valid Frame: {0}")]
    Invalid(#[from] flatbuffers::InvalidFlatbuffer),
    /// The body is a table this direction does not carry (e.g. a client
    /// sending `Welcome`), or none.
    #[error("unexpected frame body {0}")]
    UnexpectedBody(&'static str),
    /// A field is out of range or over a limit.
    #[error("field {field}: {reason}")]
    Field {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The `Hello` token is not a token.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// The buffer is a flatbuffer but not a Courier frame: its file
    /// identifier (bytes 4..8) is not `CRR1`.
    #[error("not a Courier frame: the file identifier (bytes 4..8) is not \"CRR1\"")]
    Identifier,
    /// A client frame with `request_id` 0, which is reserved for events: it
    /// is not executed (its answer could not be told from an event).
    #[error("request_id 0 is reserved for events; use a non-zero request id")]
    ZeroRequestId,
    /// A well-formed `Hello` the server refuses (unsupported protocol
    /// version, invalid device name or kind): answered with `reject`, which
    /// names the field, then closed with 4002 and `reason`.
    #[error("Hello refused: {reason}")]
    BadHello {
        /// The rejection to answer the `Hello` with.
        reject: Reject,
        /// The close frame's reason.
        reason: &'static str,
    },
}

impl DecodeError {
    pub(crate) fn field(field: &'static str, reason: &'static str) -> DecodeError {
        DecodeError::Field { field, reason }
    }
}

/// Reusable encoder: keeps one flatbuffers builder so steady-state encoding
/// does not allocate beyond the returned `Vec`.
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// A new encoder with a 4 KiB starting buffer.
    pub fn new() -> Encoder {
        Encoder {
            fbb: FlatBufferBuilder::with_capacity(4096),
        }
    }

    /// Encodes a client frame.
    pub fn client(&mut self, frame: &ClientFrame) -> Vec<u8> {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let (req, kind, body) = match frame {
            ClientFrame::Hello {
                req,
                credential,
                device,
            } => {
                let text = match credential {
                    Credential::Admin(secret) => token::format_admin(secret),
                    Credential::User {
                        user,
                        token,
                        secret,
                    } => token::format_user(*user, *token, secret),
                };
                let token = fbb.create_string(&text);
                let device_name = fbb.create_string(&device.name);
                let hello = wire::Hello::create(
                    fbb,
                    &wire::HelloArgs {
                        token: Some(token),
                        device_kind: device_kind_to_wire(device.kind),
                        device_name: Some(device_name),
                        protocol_version: PROTOCOL_VERSION,
                    },
                );
                (*req, wire::Body::Hello, hello.as_union_value())
            }
            ClientFrame::Request { req, request } => {
                let (kind, body) = encode_request(fbb, request);
                (*req, kind, body)
            }
        };
        finish(fbb, req, kind, body)
    }

    /// Encodes a reply.
    pub fn reply(&mut self, req: ReqId, result: &Result<Response, Reject>) -> Vec<u8> {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let (kind, body) = match result {
            Ok(response) => encode_response(fbb, response),
            Err(reject) => encode_reject(fbb, reject),
        };
        finish(fbb, req, kind, body)
    }

    /// Encodes an error reply for a frame that could not be decoded.
    pub fn bad_frame(&mut self, req: ReqId, message: &str) -> Vec<u8> {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let message = fbb.create_string(message);
        let body = wire::ErrorReply::create(
            fbb,
            &wire::ErrorReplyArgs {
                code: wire::ErrorCode::BadFrame,
                message: Some(message),
                ..Default::default()
            },
        );
        finish(fbb, req, wire::Body::ErrorReply, body.as_union_value())
    }

    /// Encodes an event.
    pub fn event(&mut self, event: &Event) -> Vec<u8> {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let (kind, body) = encode_event(fbb, event);
        finish(fbb, 0, kind, body)
    }

    /// Encodes any server frame.
    pub fn server(&mut self, frame: &ServerFrame) -> Vec<u8> {
        match frame {
            ServerFrame::Reply { req, result } => self.reply(*req, result),
            ServerFrame::Event(event) => self.event(event),
        }
    }
}

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn finish(
    fbb: &mut FlatBufferBuilder<'static>,
    req: ReqId,
    kind: wire::Body,
    body: Union,
) -> Vec<u8> {
    let frame = wire::Frame::create(
        fbb,
        &wire::FrameArgs {
            request_id: req,
            body_type: kind,
            body: Some(body),
        },
    );
    wire::finish_frame_buffer(fbb, frame);
    fbb.finished_data().to_vec()
}

pub(crate) fn u128_to_wire(v: ClientMsgId) -> wire::U128 {
    wire::U128::new(v as u64, (v >> 64) as u64)
}

pub(crate) fn u128_from_wire(v: &wire::U128) -> ClientMsgId {
    u128::from(v.lo()) | (u128::from(v.hi()) << 64)
}

fn device_kind_to_wire(kind: DeviceKind) -> wire::DeviceKind {
    match kind {
        DeviceKind::Desktop => wire::DeviceKind::Desktop,
        DeviceKind::Web => wire::DeviceKind::Web,
        DeviceKind::Mobile => wire::DeviceKind::Mobile,
        DeviceKind::Tool => wire::DeviceKind::Tool,
    }
}

fn device_kind_from_wire(kind: wire::DeviceKind) -> Result<DeviceKind, DecodeError> {
    Ok(match kind {
        wire::DeviceKind::Desktop => DeviceKind::Desktop,
        wire::DeviceKind::Web => DeviceKind::Web,
        wire::DeviceKind::Mobile => DeviceKind::Mobile,
        wire::DeviceKind::Tool => DeviceKind::Tool,
        _ => return Err(DecodeError::field("device_kind", "unknown value")),
    })
}

pub(crate) fn broadcast_to_wire(b: Broadcast) -> wire::Broadcast {
    match b {
        Broadcast::None => wire::Broadcast::None,
        Broadcast::Here => wire::Broadcast::Here,
        Broadcast::Channel => wire::Broadcast::Channel,
    }
}

pub(crate) fn broadcast_from_wire(b: wire::Broadcast) -> Result<Broadcast, DecodeError> {
    Ok(match b {
        wire::Broadcast::None => Broadcast::None,
        wire::Broadcast::Here => Broadcast::Here,
        wire::Broadcast::Channel => Broadcast::Channel,
        _ => return Err(DecodeError::field("broadcast", "unknown value")),
    })
}

fn kind_to_wire(k: ConversationKind) -> wire::ConversationKind {
    match k {
        ConversationKind::PublicChannel => wire::ConversationKind::PublicChannel,
        ConversationKind::PrivateChannel => wire::ConversationKind::PrivateChannel,
        ConversationKind::Dm => wire::ConversationKind::Dm,
        ConversationKind::GroupDm => wire::ConversationKind::GroupDm,
    }
}

fn kind_from_wire(k: wire::ConversationKind) -> Result<ConversationKind, DecodeError> {
    Ok(match k {
        wire::ConversationKind::PublicChannel => ConversationKind::PublicChannel,
        wire::ConversationKind::PrivateChannel => ConversationKind::PrivateChannel,
        wire::ConversationKind::Dm => ConversationKind::Dm,
        wire::ConversationKind::GroupDm => ConversationKind::GroupDm,
        _ => return Err(DecodeError::field("kind", "unknown value")),
    })
}

fn level_to_wire(l: NotifyLevel) -> wire::NotifyLevel {
    match l {
        NotifyLevel::All => wire::NotifyLevel::All,
        NotifyLevel::Mentions => wire::NotifyLevel::Mentions,
        NotifyLevel::Nothing => wire::NotifyLevel::Nothing,
    }
}

fn level_from_wire(l: wire::NotifyLevel) -> Result<NotifyLevel, DecodeError> {
    Ok(match l {
        wire::NotifyLevel::All => NotifyLevel::All,
        wire::NotifyLevel::Mentions => NotifyLevel::Mentions,
        wire::NotifyLevel::Nothing => NotifyLevel::Nothing,
        _ => return Err(DecodeError::field("level", "unknown value")),
    })
}

fn reason_to_wire(r: NotifyReason) -> wire::NotifyReason {
    match r {
        NotifyReason::Dm => wire::NotifyReason::Dm,
        NotifyReason::Mention => wire::NotifyReason::Mention,
        NotifyReason::Broadcast => wire::NotifyReason::Broadcast,
        NotifyReason::Channel => wire::NotifyReason::Channel,
    }
}

fn reason_from_wire(r: wire::NotifyReason) -> Result<NotifyReason, DecodeError> {
    Ok(match r {
        wire::NotifyReason::Dm => NotifyReason::Dm,
        wire::NotifyReason::Mention => NotifyReason::Mention,
        wire::NotifyReason::Broadcast => NotifyReason::Broadcast,
        wire::NotifyReason::Channel => NotifyReason::Channel,
        _ => return Err(DecodeError::field("reason", "unknown value")),
    })
}

pub(crate) fn ids_vec<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    ids: impl ExactSizeIterator<Item = u64> + DoubleEndedIterator,
) -> WIPOffset<Vector<'a, u64>> {
    let ids: Vec<u64> = ids.collect();
    fbb.create_vector(&ids)
}

fn encode_lookup(
    fbb: &mut FlatBufferBuilder<'static>,
    name: &str,
    kind: LookupKind,
) -> (wire::Body, Union) {
    let name = fbb.create_string(name);
    let kind = match kind {
        LookupKind::User => wire::LookupKind::User,
        LookupKind::Channel => wire::LookupKind::Channel,
    };
    let t = wire::Lookup::create(
        fbb,
        &wire::LookupArgs {
            name: Some(name),
            kind,
        },
    );
    (wire::Body::Lookup, t.as_union_value())
}

fn encode_request(fbb: &mut FlatBufferBuilder<'static>, request: &Request) -> (wire::Body, Union) {
    use wire::Body as B;
    match request {
        Request::CreateWorkspace { name } => {
            let name = fbb.create_string(name);
            let t =
                wire::CreateWorkspace::create(fbb, &wire::CreateWorkspaceArgs { name: Some(name) });
            (B::CreateWorkspace, t.as_union_value())
        }
        Request::CreateUser { workspace, name } => {
            let name = fbb.create_string(name);
            let t = wire::CreateUser::create(
                fbb,
                &wire::CreateUserArgs {
                    workspace: workspace.0,
                    name: Some(name),
                },
            );
            (B::CreateUser, t.as_union_value())
        }
        Request::IssueToken { user } => {
            let t = wire::IssueToken::create(fbb, &wire::IssueTokenArgs { user: user.0 });
            (B::IssueToken, t.as_union_value())
        }
        Request::RevokeToken { user, token } => {
            let t = wire::RevokeToken::create(
                fbb,
                &wire::RevokeTokenArgs {
                    user: user.0,
                    token: token.unwrap_or(0),
                },
            );
            (B::RevokeToken, t.as_union_value())
        }
        Request::CreateChannel { name, private } => {
            let name = fbb.create_string(name);
            let t = wire::CreateChannel::create(
                fbb,
                &wire::CreateChannelArgs {
                    name: Some(name),
                    private: *private,
                },
            );
            (B::CreateChannel, t.as_union_value())
        }
        Request::Join { conversation } => {
            let t = wire::Join::create(
                fbb,
                &wire::JoinArgs {
                    conversation: conversation.0,
                },
            );
            (B::Join, t.as_union_value())
        }
        Request::Leave { conversation } => {
            let t = wire::Leave::create(
                fbb,
                &wire::LeaveArgs {
                    conversation: conversation.0,
                },
            );
            (B::Leave, t.as_union_value())
        }
        Request::Invite { conversation, user } => {
            let t = wire::Invite::create(
                fbb,
                &wire::InviteArgs {
                    conversation: conversation.0,
                    user: user.0,
                },
            );
            (B::Invite, t.as_union_value())
        }
        Request::Remove { conversation, user } => {
            let t = wire::Remove::create(
                fbb,
                &wire::RemoveArgs {
                    conversation: conversation.0,
                    user: user.0,
                },
            );
            (B::Remove, t.as_union_value())
        }
        Request::OpenDm { users } => {
            let users = ids_vec(fbb, users.iter().map(|u| u.0));
            let t = wire::OpenDm::create(fbb, &wire::OpenDmArgs { users: Some(users) });
            (B::OpenDm, t.as_union_value())
        }
        Request::ListConversations => {
            let t = wire::ListConversations::create(fbb, &wire::ListConversationsArgs {});
            (B::ListConversations, t.as_union_value())
        }
        Request::Lookup { name, kind } => encode_lookup(fbb, name, *kind),
        r @ (Request::People(_) | Request::Change { .. }) => crate::live::encode_request(fbb, r),
        r @ (Request::SetChannel { .. } | Request::Reply { .. } | Request::Thread { .. }) => {
            crate::live::encode_request(fbb, r)
        }
        Request::Send {
            conversation,
            client_msg_id,
            body,
            mentions,
            broadcast,
        } => {
            let body = fbb.create_string(body);
            let mentions = ids_vec(fbb, mentions.iter().map(|u| u.0));
            let id = u128_to_wire(*client_msg_id);
            let t = wire::Send::create(
                fbb,
                &wire::SendArgs {
                    conversation: conversation.0,
                    client_msg_id: Some(&id),
                    body: Some(body),
                    mentions: Some(mentions),
                    broadcast: broadcast_to_wire(*broadcast),
                },
            );
            (B::Send, t.as_union_value())
        }
        Request::Sync { cursors, reads } => {
            let cursors: Vec<wire::Cursor> = cursors
                .iter()
                .map(|(c, s)| wire::Cursor::new(c.0, s.0))
                .collect();
            let cursors = fbb.create_vector(&cursors);
            // Absent when empty: the frame of a client that keeps no read
            // state is byte for byte what it was before `reads` existed.
            let reads = (!reads.is_empty()).then(|| {
                let reads: Vec<u64> = reads.iter().map(|s| s.0).collect();
                fbb.create_vector(&reads)
            });
            let t = wire::Sync::create(
                fbb,
                &wire::SyncArgs {
                    cursors: Some(cursors),
                    reads,
                },
            );
            (B::Sync, t.as_union_value())
        }
        Request::History {
            conversation,
            anchor,
            limit,
        } => {
            let (anchor, seq) = match anchor {
                HistoryAnchor::Latest => (wire::Anchor::Latest, 0),
                HistoryAnchor::Before(s) => (wire::Anchor::Before, s.0),
                HistoryAnchor::After(s) => (wire::Anchor::After, s.0),
            };
            let t = wire::History::create(
                fbb,
                &wire::HistoryArgs {
                    conversation: conversation.0,
                    anchor,
                    seq,
                    limit: *limit,
                },
            );
            (B::History, t.as_union_value())
        }
        Request::Boot { limit, offset } => {
            let t = wire::Boot::create(
                fbb,
                &wire::BootArgs {
                    limit: *limit,
                    offset: *offset,
                },
            );
            (B::Boot, t.as_union_value())
        }
        Request::MarkRead { conversation, seq } => {
            let t = wire::MarkRead::create(
                fbb,
                &wire::MarkReadArgs {
                    conversation: conversation.0,
                    seq: seq.0,
                },
            );
            (B::MarkRead, t.as_union_value())
        }
        Request::SetNotify {
            conversation,
            level,
            muted,
        } => {
            let t = wire::SetNotify::create(
                fbb,
                &wire::SetNotifyArgs {
                    conversation: conversation.0,
                    level: level_to_wire(*level),
                    muted: *muted,
                },
            );
            (B::SetNotify, t.as_union_value())
        }
        Request::SetFocus { focused, active } => {
            let t = wire::SetFocus::create(
                fbb,
                &wire::SetFocusArgs {
                    focused: focused.map_or(0, |c| c.0),
                    active: *active,
                },
            );
            (B::SetFocus, t.as_union_value())
        }
        Request::SetDnd { until } => encode_set_dnd(fbb, *until),
        r => crate::around::encode_request(fbb, r),
    }
}

fn encode_set_dnd(
    fbb: &mut FlatBufferBuilder<'static>,
    until: Option<Millis>,
) -> (wire::Body, Union) {
    let t = wire::SetDnd::create(
        fbb,
        &wire::SetDndArgs {
            until_ms: until.map_or(0, |m| m.0),
        },
    );
    (wire::Body::SetDnd, t.as_union_value())
}

fn encode_info<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    info: &ConversationInfo,
) -> WIPOffset<wire::ConversationInfo<'a>> {
    let name = fbb.create_string(&info.name);
    let members = ids_vec(fbb, info.members.iter().map(|u| u.0));
    let preview = info.preview.as_deref().map(|p| fbb.create_string(p));
    let set = &info.settings;
    let topic = (!set.topic.is_empty()).then(|| fbb.create_string(&set.topic));
    let purpose = (!set.purpose.is_empty()).then(|| fbb.create_string(&set.purpose));
    wire::ConversationInfo::create(
        fbb,
        &wire::ConversationInfoArgs {
            id: info.id.0,
            kind: kind_to_wire(info.kind),
            name: Some(name),
            members: Some(members),
            member_count: info.member_count,
            head: info.head.0,
            read: info.read.0,
            unread: info.unread,
            mentions: info.mentions,
            member: info.member,
            last_activity_ms: info.last_activity.0,
            preview,
            topic,
            purpose,
            archived: set.archived,
            admins_only: set.posting == courier_core::api::Posting::Admins,
        },
    )
}

fn encode_infos<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    infos: &[ConversationInfo],
) -> WIPOffset<Vector<'a, ForwardsUOffset<wire::ConversationInfo<'a>>>> {
    let items: Vec<_> = infos.iter().map(|i| encode_info(fbb, i)).collect();
    fbb.create_vector(&items)
}

fn encode_message<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    m: &Message,
) -> WIPOffset<wire::Message<'a>> {
    let body = fbb.create_string(&m.body);
    let mentions = ids_vec(fbb, m.mentions.iter().map(|u| u.0));
    let id = u128_to_wire(m.client_msg_id);
    let reactions = crate::live::encode_reactions(fbb, &m.live);
    let t = &m.live.thread;
    let participants =
        (!t.participants.is_empty()).then(|| ids_vec(fbb, t.participants.iter().map(|u| u.0)));
    wire::Message::create(
        fbb,
        &wire::MessageArgs {
            conversation: m.conversation.0,
            seq: m.seq.0,
            sender: m.sender.0,
            client_msg_id: Some(&id),
            ts_ms: m.ts.0,
            body: Some(body),
            mentions: Some(mentions),
            broadcast: broadcast_to_wire(m.broadcast),
            change: crate::live::kind_to_wire(m.change),
            target: m.change.map_or(0, |c| c.target.0),
            edited_ms: m.live.edited.map_or(0, |t| t.0),
            deleted: m.live.deleted,
            reactions,
            version: m.live.version.0,
            thread_root: m.thread.map_or(0, |t| t.root.0),
            thread_in_channel: m.thread.is_some_and(|t| t.in_channel),
            reply_count: t.replies,
            last_reply_ms: t.last_reply.0,
            last_reply_seq: t.last_seq.0,
            participants,
            pinned: m.live.pinned,
        },
    )
}

fn encode_messages<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    messages: &[Message],
) -> WIPOffset<Vector<'a, ForwardsUOffset<wire::Message<'a>>>> {
    let items: Vec<_> = messages.iter().map(|m| encode_message(fbb, m)).collect();
    fbb.create_vector(&items)
}

/// `Response::History` → `HistoryPage`.
fn encode_history(
    fbb: &mut FlatBufferBuilder<'static>,
    messages: &[Message],
    head: Seq,
) -> (wire::Body, Union) {
    let messages = encode_messages(fbb, messages);
    let t = wire::HistoryPage::create(
        fbb,
        &wire::HistoryPageArgs {
            messages: Some(messages),
            head: head.0,
        },
    );
    (wire::Body::HistoryPage, t.as_union_value())
}

fn encode_response(
    fbb: &mut FlatBufferBuilder<'static>,
    response: &Response,
) -> (wire::Body, Union) {
    use wire::Body as B;
    match response {
        Response::Welcome {
            user,
            workspace,
            now,
            conn_rate,
            user_rate,
        } => {
            let t = wire::Welcome::create(
                fbb,
                &wire::WelcomeArgs {
                    user: user.map_or(0, |u| u.0),
                    workspace: workspace.map_or(0, |w| w.0),
                    now_ms: now.0,
                    admin: user.is_none(),
                    protocol_version: PROTOCOL_VERSION,
                    rate_conn_per_sec: conn_rate.per_sec,
                    rate_conn_burst: conn_rate.burst,
                    rate_user_per_sec: user_rate.per_sec,
                    rate_user_burst: user_rate.burst,
                },
            );
            (B::Welcome, t.as_union_value())
        }
        Response::WorkspaceCreated { workspace } => {
            let t = wire::WorkspaceCreated::create(
                fbb,
                &wire::WorkspaceCreatedArgs {
                    workspace: workspace.0,
                },
            );
            (B::WorkspaceCreated, t.as_union_value())
        }
        Response::TokenIssued {
            user,
            token,
            secret,
        } => {
            let text = fbb.create_string(&token::format_user(*user, *token, secret));
            let t = wire::TokenIssued::create(
                fbb,
                &wire::TokenIssuedArgs {
                    user: user.0,
                    token_id: *token,
                    token: Some(text),
                },
            );
            (B::TokenIssued, t.as_union_value())
        }
        Response::Done => {
            let t = wire::Done::create(fbb, &wire::DoneArgs {});
            (B::Done, t.as_union_value())
        }
        Response::Conversation(info) => {
            let info = encode_info(fbb, info);
            let t = wire::ConversationReply::create(
                fbb,
                &wire::ConversationReplyArgs { info: Some(info) },
            );
            (B::ConversationReply, t.as_union_value())
        }
        Response::Conversations(infos) => {
            let items = encode_infos(fbb, infos);
            let t = wire::ConversationList::create(
                fbb,
                &wire::ConversationListArgs { items: Some(items) },
            );
            (B::ConversationList, t.as_union_value())
        }
        Response::Found { id } => {
            let t = wire::Found::create(fbb, &wire::FoundArgs { id: *id });
            (B::Found, t.as_union_value())
        }
        Response::SendAck {
            conversation,
            seq,
            ts,
            broadcast_ignored,
        } => {
            let t = wire::SendAck::create(
                fbb,
                &wire::SendAckArgs {
                    conversation: conversation.0,
                    seq: seq.0,
                    ts_ms: ts.0,
                    broadcast_ignored: *broadcast_ignored,
                },
            );
            (B::SendAck, t.as_union_value())
        }
        Response::Sync { changed, gone } => {
            let changed: Vec<_> = changed
                .iter()
                .map(|c| {
                    let info = encode_info(fbb, &c.info);
                    let messages = encode_messages(fbb, &c.messages);
                    wire::SyncConversation::create(
                        fbb,
                        &wire::SyncConversationArgs {
                            info: Some(info),
                            messages: Some(messages),
                            truncated: c.truncated,
                        },
                    )
                })
                .collect();
            let changed = fbb.create_vector(&changed);
            let gone = ids_vec(fbb, gone.iter().map(|c| c.0));
            let t = wire::SyncReply::create(
                fbb,
                &wire::SyncReplyArgs {
                    changed: Some(changed),
                    gone: Some(gone),
                },
            );
            (B::SyncReply, t.as_union_value())
        }
        Response::History { messages, head } | Response::Thread { messages, head } => {
            encode_history(fbb, messages, *head)
        }
        Response::Boot(page) => encode_boot(fbb, page),
        Response::People(p) => people::encode_response(fbb, p),
        r => crate::around::encode_response(fbb, r),
    }
}

fn encode_boot(fbb: &mut FlatBufferBuilder<'static>, page: &BootPage) -> (wire::Body, Union) {
    use wire::Body as B;
    let user_name = fbb.create_string(&page.user_name);
    let workspace_name = fbb.create_string(&page.workspace_name);
    let conversations = encode_infos(fbb, &page.conversations);
    let pages: Vec<_> = page
        .pages
        .iter()
        .map(|(conversation, messages)| {
            let messages = encode_messages(fbb, messages);
            wire::ConversationPage::create(
                fbb,
                &wire::ConversationPageArgs {
                    conversation: conversation.0,
                    messages: Some(messages),
                },
            )
        })
        .collect();
    let pages = fbb.create_vector(&pages);
    let t = wire::BootReply::create(
        fbb,
        &wire::BootReplyArgs {
            user: page.user.0,
            user_name: Some(user_name),
            workspace: page.workspace.0,
            workspace_name: Some(workspace_name),
            conversations: Some(conversations),
            total: page.total,
            pages: Some(pages),
        },
    );
    (B::BootReply, t.as_union_value())
}

/// The wire code of a rejection (documented in docs/PROTOCOL.md).
pub fn reject_code(reject: &Reject) -> u16 {
    reject_parts(reject).0 .0
}

fn reject_parts(reject: &Reject) -> (wire::ErrorCode, String, u64, RateLimit) {
    let (code, message, retry_after_ms) = reject_fields(reject);
    let limit = match reject {
        Reject::RateLimited { limit, .. } => *limit,
        _ => RateLimit::NONE,
    };
    (code, message, retry_after_ms, limit)
}

fn reject_fields(reject: &Reject) -> (wire::ErrorCode, String, u64) {
    match reject {
        Reject::Unauthenticated => (
            wire::ErrorCode::Unauthenticated,
            "unauthenticated".into(),
            0,
        ),
        Reject::NotAdmin => (
            wire::ErrorCode::NotAdmin,
            "needs an admin session or the admin role".into(),
            0,
        ),
        Reject::Forbidden(m) => (wire::ErrorCode::Forbidden, m.clone(), 0),
        Reject::NotFound => (wire::ErrorCode::NotFound, "not found".into(), 0),
        Reject::AlreadyExists => (wire::ErrorCode::AlreadyExists, "already exists".into(), 0),
        Reject::Invalid(m) => (wire::ErrorCode::Invalid, m.clone(), 0),
        Reject::TooLarge(m) => (wire::ErrorCode::TooLarge, m.clone(), 0),
        Reject::RateLimited { retry_after_ms, .. } => (
            wire::ErrorCode::RateLimited,
            "rate limited".into(),
            *retry_after_ms,
        ),
        Reject::Unavailable { detail, .. } => (wire::ErrorCode::Unavailable, detail.clone(), 0),
        Reject::InviteExpired => (wire::ErrorCode::InviteExpired, "invite expired".into(), 0),
        Reject::InviteUsedUp => (wire::ErrorCode::InviteUsedUp, "invite used up".into(), 0),
        Reject::InviteRevoked => (wire::ErrorCode::InviteRevoked, "invite revoked".into(), 0),
        Reject::Archived => (
            wire::ErrorCode::Archived,
            "channel archived: read-only".into(),
            0,
        ),
    }
}

fn encode_reject(fbb: &mut FlatBufferBuilder<'static>, reject: &Reject) -> (wire::Body, Union) {
    let (code, message, retry_after_ms, limit) = reject_parts(reject);
    let message = fbb.create_string(&message);
    let t = wire::ErrorReply::create(
        fbb,
        &wire::ErrorReplyArgs {
            code,
            message: Some(message),
            retry_after_ms,
            rate_per_sec: limit.per_sec,
            rate_burst: limit.burst,
            unavailable: match reject {
                Reject::Unavailable { cause, .. } => cause_to_wire(*cause),
                _ => wire::UnavailableCause::Unspecified,
            },
        },
    );
    (wire::Body::ErrorReply, t.as_union_value())
}

fn cause_to_wire(c: UnavailableCause) -> wire::UnavailableCause {
    use wire::UnavailableCause as W;
    match c {
        UnavailableCause::Unspecified => W::Unspecified,
        UnavailableCause::Starting => W::Starting,
        UnavailableCause::Overloaded => W::Overloaded,
        UnavailableCause::StorageFailed => W::StorageFailed,
        UnavailableCause::NotDurable => W::NotDurable,
        UnavailableCause::ReadFailed => W::ReadFailed,
        UnavailableCause::IdsExhausted => W::IdsExhausted,
        UnavailableCause::PeerTimeout => W::PeerTimeout,
    }
}

/// `Unspecified` (an older server) and values from newer servers decode as
/// `Unspecified`, whose outcome is unknown: the conservative reading.
fn cause_from_wire(c: wire::UnavailableCause) -> UnavailableCause {
    use wire::UnavailableCause as W;
    match c {
        W::Starting => UnavailableCause::Starting,
        W::Overloaded => UnavailableCause::Overloaded,
        W::StorageFailed => UnavailableCause::StorageFailed,
        W::NotDurable => UnavailableCause::NotDurable,
        W::ReadFailed => UnavailableCause::ReadFailed,
        W::IdsExhausted => UnavailableCause::IdsExhausted,
        W::PeerTimeout => UnavailableCause::PeerTimeout,
        _ => UnavailableCause::Unspecified,
    }
}

fn encode_event(fbb: &mut FlatBufferBuilder<'static>, event: &Event) -> (wire::Body, Union) {
    use wire::Body as B;
    match event {
        Event::Message(m) => {
            let message = encode_message(fbb, m);
            let t = wire::MessageEvent::create(
                fbb,
                &wire::MessageEventArgs {
                    message: Some(message),
                },
            );
            (B::MessageEvent, t.as_union_value())
        }
        Event::ReadCursor { conversation, seq } => {
            let t = wire::ReadCursorEvent::create(
                fbb,
                &wire::ReadCursorEventArgs {
                    conversation: conversation.0,
                    seq: seq.0,
                },
            );
            (B::ReadCursorEvent, t.as_union_value())
        }
        Event::Joined(info) => {
            let info = encode_info(fbb, info);
            let t = wire::JoinedEvent::create(fbb, &wire::JoinedEventArgs { info: Some(info) });
            (B::JoinedEvent, t.as_union_value())
        }
        Event::Left { conversation } => {
            let t = wire::LeftEvent::create(
                fbb,
                &wire::LeftEventArgs {
                    conversation: conversation.0,
                },
            );
            (B::LeftEvent, t.as_union_value())
        }
        Event::Notify {
            conversation,
            seq,
            reason,
        } => {
            let t = wire::NotifyEvent::create(
                fbb,
                &wire::NotifyEventArgs {
                    conversation: conversation.0,
                    seq: seq.0,
                    reason: reason_to_wire(*reason),
                },
            );
            (B::NotifyEvent, t.as_union_value())
        }
        Event::ProfileChanged { user, version } => {
            let t = wire::ProfileChangedEvent::create(
                fbb,
                &wire::ProfileChangedEventArgs {
                    user: user.0,
                    version: *version,
                },
            );
            (B::ProfileChangedEvent, t.as_union_value())
        }
        e => crate::around::encode_event(fbb, e),
    }
}

// ------------------------------------------------------------------ decoding

fn verify<'b>(bytes: &'b [u8], max: usize, tables: usize) -> Result<wire::Frame<'b>, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let opts = VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: tables,
        max_apparent_size: max,
        ignore_missing_null_terminator: false,
    };
    let frame = wire::root_as_frame_with_opts(&opts, bytes)?;
    if bytes.get(4..8) != Some(wire::FRAME_IDENTIFIER.as_bytes()) {
        return Err(DecodeError::Identifier);
    }
    Ok(frame)
}

/// The request id of a client frame that verifies as a `Frame` but failed to
/// decode further (0 if the bytes are not a frame at all), so the error reply
/// can name the request it answers.
pub fn peek_request_id(bytes: &[u8]) -> ReqId {
    verify(bytes, CLIENT_FRAME_BYTES_MAX, CLIENT_VERIFIER_TABLES_MAX).map_or(0, |f| f.request_id())
}

/// Decodes a client frame (server side).
pub fn decode_client(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    let frame = verify(bytes, CLIENT_FRAME_BYTES_MAX, CLIENT_VERIFIER_TABLES_MAX)?;
    let req = frame.request_id();
    if req == 0 {
        return Err(DecodeError::ZeroRequestId);
    }
    if let Some(hello) = frame.body_as_hello() {
        let credential = token::parse(hello.token())?;
        if hello.protocol_version() != PROTOCOL_VERSION {
            return Err(DecodeError::BadHello {
                reject: Reject::Invalid(format!(
                    "protocol_version: {} is not supported; this server speaks {PROTOCOL_VERSION}",
                    hello.protocol_version()
                )),
                reason: "Hello refused: unsupported protocol_version",
            });
        }
        let name = hello.device_name().unwrap_or("");
        if let Err(reject) = check_name("device_name", name, NameKind::Display) {
            return Err(DecodeError::BadHello {
                reject,
                reason: "Hello refused: invalid device_name",
            });
        }
        let Ok(kind) = device_kind_from_wire(hello.device_kind()) else {
            return Err(DecodeError::BadHello {
                reject: Reject::Invalid("device_kind: unknown value".into()),
                reason: "Hello refused: unknown device_kind",
            });
        };
        return Ok(ClientFrame::Hello {
            req,
            credential,
            device: DeviceInfo {
                kind,
                name: name.to_owned(),
            },
        });
    }
    let request = decode_request(&frame)?;
    Ok(ClientFrame::Request { req, request })
}

fn client_ids(v: Option<Vector<'_, u64>>, field: &'static str) -> Result<Vec<u64>, DecodeError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    if v.len() > CLIENT_IDS_MAX {
        return Err(DecodeError::field(field, "too many ids"));
    }
    Ok(v.iter().collect())
}

fn required<T>(v: Option<T>, what: &'static str) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::UnexpectedBody(what))
}

fn decode_request(frame: &wire::Frame<'_>) -> Result<Request, DecodeError> {
    use wire::Body as B;
    let request = match frame.body_type() {
        B::CreateWorkspace => {
            let t = required(frame.body_as_create_workspace(), "CreateWorkspace")?;
            Request::CreateWorkspace {
                name: t.name().to_owned(),
            }
        }
        B::CreateUser => {
            let t = required(frame.body_as_create_user(), "CreateUser")?;
            Request::CreateUser {
                workspace: WorkspaceId(t.workspace()),
                name: t.name().to_owned(),
            }
        }
        B::IssueToken => {
            let t = required(frame.body_as_issue_token(), "IssueToken")?;
            Request::IssueToken {
                user: UserId(t.user()),
            }
        }
        B::RevokeToken => {
            let t = required(frame.body_as_revoke_token(), "RevokeToken")?;
            Request::RevokeToken {
                user: UserId(t.user()),
                token: (t.token() != 0).then_some(t.token()),
            }
        }
        B::CreateChannel => {
            let t = required(frame.body_as_create_channel(), "CreateChannel")?;
            Request::CreateChannel {
                name: t.name().to_owned(),
                private: t.private(),
            }
        }
        B::Join => {
            let t = required(frame.body_as_join(), "Join")?;
            Request::Join {
                conversation: ConversationId(t.conversation()),
            }
        }
        B::Leave => {
            let t = required(frame.body_as_leave(), "Leave")?;
            Request::Leave {
                conversation: ConversationId(t.conversation()),
            }
        }
        B::Invite => {
            let t = required(frame.body_as_invite(), "Invite")?;
            Request::Invite {
                conversation: ConversationId(t.conversation()),
                user: UserId(t.user()),
            }
        }
        B::Remove => {
            let t = required(frame.body_as_remove(), "Remove")?;
            Request::Remove {
                conversation: ConversationId(t.conversation()),
                user: UserId(t.user()),
            }
        }
        B::OpenDm => {
            let t = required(frame.body_as_open_dm(), "OpenDm")?;
            Request::OpenDm {
                users: client_ids(Some(t.users()), "users")?
                    .into_iter()
                    .map(UserId)
                    .collect(),
            }
        }
        B::ListConversations => Request::ListConversations,
        B::Lookup => {
            let t = required(frame.body_as_lookup(), "Lookup")?;
            let kind = match t.kind() {
                wire::LookupKind::User => LookupKind::User,
                wire::LookupKind::Channel => LookupKind::Channel,
                _ => return Err(DecodeError::field("kind", "unknown value")),
            };
            Request::Lookup {
                name: t.name().to_owned(),
                kind,
            }
        }
        B::Send => {
            let t = required(frame.body_as_send(), "Send")?;
            Request::Send {
                conversation: ConversationId(t.conversation()),
                client_msg_id: u128_from_wire(t.client_msg_id()),
                body: t.body().to_owned(),
                mentions: client_ids(t.mentions(), "mentions")?
                    .into_iter()
                    .map(UserId)
                    .collect(),
                broadcast: broadcast_from_wire(t.broadcast())?,
            }
        }
        B::Sync => {
            let t = required(frame.body_as_sync(), "Sync")?;
            let cursors = match t.cursors() {
                None => Vec::new(),
                Some(v) if v.len() > SYNC_CURSORS_MAX => {
                    return Err(DecodeError::field("cursors", "too many cursors"))
                }
                Some(v) => v
                    .iter()
                    .map(|c| (ConversationId(c.conversation()), Seq(c.seq())))
                    .collect(),
            };
            let reads = match t.reads() {
                None => Vec::new(),
                Some(v) if v.len() > SYNC_CURSORS_MAX => {
                    return Err(DecodeError::field("reads", "too many read cursors"))
                }
                Some(v) => v.iter().map(Seq).collect(),
            };
            Request::Sync { cursors, reads }
        }
        B::History => {
            let t = required(frame.body_as_history(), "History")?;
            let anchor = match t.anchor() {
                wire::Anchor::Latest => HistoryAnchor::Latest,
                wire::Anchor::Before => HistoryAnchor::Before(Seq(t.seq())),
                wire::Anchor::After => HistoryAnchor::After(Seq(t.seq())),
                _ => return Err(DecodeError::field("anchor", "unknown value")),
            };
            Request::History {
                conversation: ConversationId(t.conversation()),
                anchor,
                limit: t.limit(),
            }
        }
        B::Boot => {
            let t = required(frame.body_as_boot(), "Boot")?;
            Request::Boot {
                limit: t.limit(),
                offset: t.offset(),
            }
        }
        B::MarkRead => {
            let t = required(frame.body_as_mark_read(), "MarkRead")?;
            Request::MarkRead {
                conversation: ConversationId(t.conversation()),
                seq: Seq(t.seq()),
            }
        }
        B::SetNotify => {
            let t = required(frame.body_as_set_notify(), "SetNotify")?;
            Request::SetNotify {
                conversation: ConversationId(t.conversation()),
                level: level_from_wire(t.level())?,
                muted: t.muted(),
            }
        }
        B::SetFocus => {
            let t = required(frame.body_as_set_focus(), "SetFocus")?;
            Request::SetFocus {
                focused: (t.focused() != 0).then_some(ConversationId(t.focused())),
                active: t.active(),
            }
        }
        B::SetDnd => {
            let t = required(frame.body_as_set_dnd(), "SetDnd")?;
            Request::SetDnd {
                until: (t.until_ms() != 0).then_some(Millis(t.until_ms())),
            }
        }
        other => return crate::around::decode_request(frame, other),
    };
    Ok(request)
}

pub(crate) fn body_name(kind: wire::Body) -> &'static str {
    kind.variant_name().unwrap_or("unknown")
}

/// Decodes a server frame (client side).
pub fn decode_server(bytes: &[u8]) -> Result<ServerFrame, DecodeError> {
    let frame = verify(bytes, SERVER_FRAME_BYTES_MAX, SERVER_VERIFIER_TABLES_MAX)?;
    let req = frame.request_id();
    use wire::Body as B;
    let response = match frame.body_type() {
        B::Welcome => {
            let t = required(frame.body_as_welcome(), "Welcome")?;
            Response::Welcome {
                user: (!t.admin()).then_some(UserId(t.user())),
                workspace: (t.workspace() != 0).then_some(WorkspaceId(t.workspace())),
                now: Millis(t.now_ms()),
                conn_rate: RateLimit {
                    per_sec: t.rate_conn_per_sec(),
                    burst: t.rate_conn_burst(),
                },
                user_rate: RateLimit {
                    per_sec: t.rate_user_per_sec(),
                    burst: t.rate_user_burst(),
                },
            }
        }
        B::WorkspaceCreated => {
            let t = required(frame.body_as_workspace_created(), "WorkspaceCreated")?;
            Response::WorkspaceCreated {
                workspace: WorkspaceId(t.workspace()),
            }
        }
        B::TokenIssued => {
            let t = required(frame.body_as_token_issued(), "TokenIssued")?;
            match token::parse(t.token())? {
                Credential::User {
                    user,
                    token,
                    secret,
                } => Response::TokenIssued {
                    user,
                    token,
                    secret,
                },
                Credential::Admin(_) => {
                    return Err(DecodeError::field("token", "not a user token"))
                }
            }
        }
        B::Done => Response::Done,
        B::ConversationReply => {
            let t = required(frame.body_as_conversation_reply(), "ConversationReply")?;
            Response::Conversation(decode_info(&t.info())?)
        }
        B::ConversationList => {
            let t = required(frame.body_as_conversation_list(), "ConversationList")?;
            Response::Conversations(decode_infos(t.items())?)
        }
        B::Found => {
            let t = required(frame.body_as_found(), "Found")?;
            Response::Found { id: t.id() }
        }
        B::SendAck => {
            let t = required(frame.body_as_send_ack(), "SendAck")?;
            Response::SendAck {
                conversation: ConversationId(t.conversation()),
                seq: Seq(t.seq()),
                ts: Millis(t.ts_ms()),
                broadcast_ignored: t.broadcast_ignored(),
            }
        }
        B::SyncReply => {
            let t = required(frame.body_as_sync_reply(), "SyncReply")?;
            let mut changed = Vec::new();
            for c in t.changed().iter().flatten() {
                changed.push(SyncConversation {
                    info: decode_info(&c.info())?,
                    messages: decode_messages(c.messages())?,
                    truncated: c.truncated(),
                });
            }
            let gone = t.gone().iter().flatten().map(ConversationId).collect();
            Response::Sync { changed, gone }
        }
        B::HistoryPage => {
            let t = required(frame.body_as_history_page(), "HistoryPage")?;
            Response::History {
                messages: decode_messages(t.messages())?,
                head: Seq(t.head()),
            }
        }
        B::BootReply => {
            let t = required(frame.body_as_boot_reply(), "BootReply")?;
            let mut pages = Vec::new();
            for p in t.pages().iter().flatten() {
                pages.push((
                    ConversationId(p.conversation()),
                    decode_messages(p.messages())?,
                ));
            }
            Response::Boot(Box::new(BootPage {
                user: UserId(t.user()),
                user_name: t.user_name().unwrap_or("").to_owned(),
                workspace: WorkspaceId(t.workspace()),
                workspace_name: t.workspace_name().unwrap_or("").to_owned(),
                conversations: decode_infos(t.conversations())?,
                total: t.total(),
                pages,
            }))
        }
        B::ErrorReply => {
            let t = required(frame.body_as_error_reply(), "ErrorReply")?;
            return Ok(ServerFrame::Reply {
                req,
                result: Err(decode_reject(&t)),
            });
        }
        kind if is_event(kind) => return Ok(ServerFrame::Event(decode_event(&frame, kind)?)),
        other if crate::around::is_response(other) => {
            crate::around::decode_response(&frame, other)?
        }
        other => people::decode_response(&frame, other)?,
    };
    Ok(ServerFrame::Reply {
        req,
        result: Ok(response),
    })
}

/// Whether a body is an event (request id 0, no reply).
fn is_event(kind: wire::Body) -> bool {
    use wire::Body as B;
    matches!(
        kind,
        B::MessageEvent
            | B::ReadCursorEvent
            | B::JoinedEvent
            | B::LeftEvent
            | B::NotifyEvent
            | B::ProfileChangedEvent
    ) || crate::around::is_event(kind)
}

/// Decodes an event body (`is_event`).
fn decode_event(frame: &wire::Frame<'_>, kind: wire::Body) -> Result<Event, DecodeError> {
    use wire::Body as B;
    Ok(match kind {
        B::MessageEvent => {
            let t = required(frame.body_as_message_event(), "MessageEvent")?;
            Event::Message(decode_message(&t.message())?)
        }
        B::ReadCursorEvent => {
            let t = required(frame.body_as_read_cursor_event(), "ReadCursorEvent")?;
            Event::ReadCursor {
                conversation: ConversationId(t.conversation()),
                seq: Seq(t.seq()),
            }
        }
        B::JoinedEvent => {
            let t = required(frame.body_as_joined_event(), "JoinedEvent")?;
            Event::Joined(decode_info(&t.info())?)
        }
        B::LeftEvent => {
            let t = required(frame.body_as_left_event(), "LeftEvent")?;
            Event::Left {
                conversation: ConversationId(t.conversation()),
            }
        }
        B::NotifyEvent => {
            let t = required(frame.body_as_notify_event(), "NotifyEvent")?;
            Event::Notify {
                conversation: ConversationId(t.conversation()),
                seq: Seq(t.seq()),
                reason: reason_from_wire(t.reason())?,
            }
        }
        B::ProfileChangedEvent => {
            let t = required(frame.body_as_profile_changed_event(), "ProfileChangedEvent")?;
            Event::ProfileChanged {
                user: UserId(t.user()),
                version: t.version(),
            }
        }
        other if crate::around::is_event(other) => crate::around::decode_event(frame, other)?,
        other => return Err(DecodeError::UnexpectedBody(body_name(other))),
    })
}

fn decode_reject(t: &wire::ErrorReply<'_>) -> Reject {
    let message = t.message().unwrap_or("").to_owned();
    match t.code() {
        wire::ErrorCode::Unauthenticated => Reject::Unauthenticated,
        wire::ErrorCode::NotAdmin => Reject::NotAdmin,
        wire::ErrorCode::NotFound => Reject::NotFound,
        wire::ErrorCode::AlreadyExists => Reject::AlreadyExists,
        wire::ErrorCode::TooLarge => Reject::TooLarge(message),
        wire::ErrorCode::Forbidden => Reject::Forbidden(message),
        wire::ErrorCode::InviteExpired => Reject::InviteExpired,
        wire::ErrorCode::InviteUsedUp => Reject::InviteUsedUp,
        wire::ErrorCode::InviteRevoked => Reject::InviteRevoked,
        wire::ErrorCode::Archived => Reject::Archived,
        wire::ErrorCode::RateLimited => Reject::RateLimited {
            retry_after_ms: t.retry_after_ms(),
            limit: RateLimit {
                per_sec: t.rate_per_sec(),
                burst: t.rate_burst(),
            },
        },
        wire::ErrorCode::Unavailable => Reject::Unavailable {
            cause: cause_from_wire(t.unavailable()),
            detail: message,
        },
        // BadFrame and codes from newer servers: the request was not usable.
        _ => Reject::Invalid(message),
    }
}

fn decode_info(t: &wire::ConversationInfo<'_>) -> Result<ConversationInfo, DecodeError> {
    Ok(ConversationInfo {
        id: ConversationId(t.id()),
        kind: kind_from_wire(t.kind())?,
        name: t.name().unwrap_or("").to_owned(),
        members: t.members().iter().flatten().map(UserId).collect(),
        member_count: t.member_count(),
        head: Seq(t.head()),
        read: Seq(t.read()),
        unread: t.unread(),
        mentions: t.mentions(),
        member: t.member(),
        last_activity: Millis(t.last_activity_ms()),
        preview: t.preview().map(str::to_owned),
        settings: Box::new(courier_core::api::ChannelSettings {
            topic: t.topic().unwrap_or("").to_owned(),
            purpose: t.purpose().unwrap_or("").to_owned(),
            archived: t.archived(),
            posting: if t.admins_only() {
                courier_core::api::Posting::Admins
            } else {
                courier_core::api::Posting::Everyone
            },
        }),
    })
}

fn decode_infos(
    v: Option<Vector<'_, ForwardsUOffset<wire::ConversationInfo<'_>>>>,
) -> Result<Vec<ConversationInfo>, DecodeError> {
    v.iter().flatten().map(|i| decode_info(&i)).collect()
}

fn decode_message(t: &wire::Message<'_>) -> Result<Message, DecodeError> {
    let (change, mut live) = crate::live::decode_live(t)?;
    let (thread, summary) = crate::threads::decode_thread(t)?;
    *live.thread = summary;
    Ok(Message {
        conversation: ConversationId(t.conversation()),
        seq: Seq(t.seq()),
        sender: UserId(t.sender()),
        client_msg_id: u128_from_wire(t.client_msg_id()),
        ts: Millis(t.ts_ms()),
        body: t.body().to_owned(),
        mentions: t.mentions().iter().flatten().map(UserId).collect(),
        broadcast: broadcast_from_wire(t.broadcast())?,
        change,
        live,
        thread,
    })
}

fn decode_messages(
    v: Option<Vector<'_, ForwardsUOffset<wire::Message<'_>>>>,
) -> Result<Vec<Message>, DecodeError> {
    v.iter().flatten().map(|m| decode_message(&m)).collect()
}
