//! The frames of threads (issue 17, part 2): the `PostReply` and
//! `GetThread` requests ⇄ `Request::Reply` / `Request::Thread`, and the
//! thread fields of `Message` (a reply's root, a root's summary:
//! `courier_core::api::Thread`, `ThreadSummary`). A thread page
//! (`Response::Thread`) travels as a `HistoryPage` (`crate::codec`). Called
//! by [`crate::codec`] through [`crate::live`]; same contract: nothing
//! here panics on any input, every failure is a [`DecodeError`].

use crate::codec::{
    broadcast_from_wire, broadcast_to_wire, ids_vec, u128_from_wire, u128_to_wire, DecodeError,
};
use crate::wire;
use courier_core::api::{ConversationId, Millis, Request, Seq, Thread, ThreadSummary, UserId};
use courier_core::constants::THREAD_PARTICIPANTS_MAX;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

/// `Request::Reply` → `PostReply`, `Request::Thread` → `GetThread` (no
/// other variant is passed: a programmer error).
pub(crate) fn encode_request(
    fbb: &mut FlatBufferBuilder<'static>,
    request: &Request,
) -> (wire::Body, Union) {
    match request {
        Request::Reply {
            conversation,
            root,
            in_channel,
            client_msg_id,
            body,
            mentions,
            broadcast,
        } => {
            let body = fbb.create_string(body);
            let mentions = ids_vec(fbb, mentions.iter().map(|u| u.0));
            let id = u128_to_wire(*client_msg_id);
            let t = wire::PostReply::create(
                fbb,
                &wire::PostReplyArgs {
                    conversation: conversation.0,
                    root: root.0,
                    in_channel: *in_channel,
                    client_msg_id: Some(&id),
                    body: Some(body),
                    mentions: Some(mentions),
                    broadcast: broadcast_to_wire(*broadcast),
                },
            );
            (wire::Body::PostReply, t.as_union_value())
        }
        Request::Thread {
            conversation,
            root,
            after,
            limit,
        } => {
            let t = wire::GetThread::create(
                fbb,
                &wire::GetThreadArgs {
                    conversation: conversation.0,
                    root: root.0,
                    after: after.0,
                    limit: *limit,
                },
            );
            (wire::Body::GetThread, t.as_union_value())
        }
        other => unreachable!("threads::encode_request called with {other:?}"),
    }
}

/// Whether a request body is one of this module's.
pub(crate) fn is_thread_request(kind: wire::Body) -> bool {
    matches!(kind, wire::Body::PostReply | wire::Body::GetThread)
}

/// `PostReply` / `GetThread` → their requests ([`is_thread_request`]).
pub(crate) fn decode_request(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Request, DecodeError> {
    if kind == wire::Body::GetThread {
        let t = frame
            .body_as_get_thread()
            .ok_or(DecodeError::UnexpectedBody("GetThread"))?;
        return Ok(Request::Thread {
            conversation: ConversationId(t.conversation()),
            root: Seq(t.root()),
            after: Seq(t.after()),
            limit: t.limit(),
        });
    }
    let t = frame
        .body_as_post_reply()
        .ok_or(DecodeError::UnexpectedBody("PostReply"))?;
    Ok(Request::Reply {
        conversation: ConversationId(t.conversation()),
        root: Seq(t.root()),
        in_channel: t.in_channel(),
        client_msg_id: u128_from_wire(t.client_msg_id()),
        body: t.body().to_owned(),
        mentions: t.mentions().iter().flatten().map(UserId).collect(),
        broadcast: broadcast_from_wire(t.broadcast())?,
    })
}

/// A wire `Message`'s reply root (`thread_root` 0: not a reply) and root
/// summary; more than THREAD_PARTICIPANTS_MAX participants is refused.
pub(crate) fn decode_thread(
    t: &wire::Message<'_>,
) -> Result<(Option<Thread>, ThreadSummary), DecodeError> {
    let thread = (t.thread_root() != 0).then(|| Thread {
        root: Seq(t.thread_root()),
        in_channel: t.thread_in_channel(),
    });
    let participants = t.participants();
    if participants.is_some_and(|p| p.len() > THREAD_PARTICIPANTS_MAX) {
        return Err(DecodeError::field(
            "participants",
            "more than THREAD_PARTICIPANTS_MAX",
        ));
    }
    let summary = ThreadSummary {
        replies: t.reply_count(),
        last_reply: Millis(t.last_reply_ms()),
        last_seq: Seq(t.last_reply_seq()),
        participants: participants.iter().flatten().map(UserId).collect(),
    };
    Ok((thread, summary))
}
