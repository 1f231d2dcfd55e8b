//! The frames of issue 17, messages that live: the `ChangeMessage` request
//! (and issue 16 part 4's `SetChannel`, whose kinds extend `ChangeKind`)
//! and the change and current-state fields of `Message`
//! (`courier_core::api::Change`, `Live`) ⇄ their flatbuffers form. Called
//! by [`crate::codec`]; same contract: nothing here panics on any input,
//! every failure is a [`DecodeError`].

use crate::codec::DecodeError;
use crate::wire;
use courier_core::api::{
    Change, ChangeKind, ConversationId, Live, Millis, Reaction, Request, Seq, UserId,
};
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

/// The wire kind of a change (`None`: a message).
pub(crate) fn kind_to_wire(change: Option<Change>) -> wire::ChangeKind {
    match change.map(|c| c.kind) {
        None => wire::ChangeKind::None,
        Some(ChangeKind::Edit) => wire::ChangeKind::Edit,
        Some(ChangeKind::Delete) => wire::ChangeKind::Delete,
        Some(ChangeKind::React) => wire::ChangeKind::React,
        Some(ChangeKind::Unreact) => wire::ChangeKind::Unreact,
        Some(ChangeKind::Topic) => wire::ChangeKind::Topic,
        Some(ChangeKind::Purpose) => wire::ChangeKind::Purpose,
        Some(ChangeKind::Rename) => wire::ChangeKind::Rename,
        Some(ChangeKind::Archive) => wire::ChangeKind::Archive,
        Some(ChangeKind::Unarchive) => wire::ChangeKind::Unarchive,
        Some(ChangeKind::PostingEveryone) => wire::ChangeKind::PostingEveryone,
        Some(ChangeKind::PostingAdmins) => wire::ChangeKind::PostingAdmins,
        Some(ChangeKind::Pin) => wire::ChangeKind::Pin,
        Some(ChangeKind::Unpin) => wire::ChangeKind::Unpin,
    }
}

fn kind_from_wire(k: wire::ChangeKind) -> Result<Option<ChangeKind>, DecodeError> {
    Ok(match k {
        wire::ChangeKind::None => None,
        wire::ChangeKind::Edit => Some(ChangeKind::Edit),
        wire::ChangeKind::Delete => Some(ChangeKind::Delete),
        wire::ChangeKind::React => Some(ChangeKind::React),
        wire::ChangeKind::Unreact => Some(ChangeKind::Unreact),
        wire::ChangeKind::Topic => Some(ChangeKind::Topic),
        wire::ChangeKind::Purpose => Some(ChangeKind::Purpose),
        wire::ChangeKind::Rename => Some(ChangeKind::Rename),
        wire::ChangeKind::Archive => Some(ChangeKind::Archive),
        wire::ChangeKind::Unarchive => Some(ChangeKind::Unarchive),
        wire::ChangeKind::PostingEveryone => Some(ChangeKind::PostingEveryone),
        wire::ChangeKind::PostingAdmins => Some(ChangeKind::PostingAdmins),
        wire::ChangeKind::Pin => Some(ChangeKind::Pin),
        wire::ChangeKind::Unpin => Some(ChangeKind::Unpin),
        _ => return Err(DecodeError::field("kind", "unknown change kind")),
    })
}

/// The client frames after `codec::encode_request`'s own:
/// `Request::Change` → `ChangeMessage` here, `Request::People` to
/// [`crate::people`] (it passes no other variant: a programmer error).
pub(crate) fn encode_request(
    fbb: &mut FlatBufferBuilder<'static>,
    request: &Request,
) -> (wire::Body, Union) {
    let (conversation, target, kind, text) = match request {
        Request::Change {
            conversation,
            target,
            kind,
            text,
        } => (*conversation, *target, *kind, text.as_str()),
        Request::SetChannel {
            conversation,
            kind,
            text,
        } => return encode_set_channel(fbb, *conversation, *kind, text),
        Request::People(p) => return crate::people::encode_request(fbb, p),
        r @ (Request::Reply { .. } | Request::Thread { .. }) => {
            return crate::threads::encode_request(fbb, r)
        }
        other => unreachable!("live::encode_request called with {other:?}"),
    };
    let text = fbb.create_string(text);
    let t = wire::ChangeMessage::create(
        fbb,
        &wire::ChangeMessageArgs {
            conversation: conversation.0,
            target: target.0,
            kind: kind_to_wire(Some(Change { kind, target })),
            text: Some(text),
        },
    );
    (wire::Body::ChangeMessage, t.as_union_value())
}

/// `Request::SetChannel` → `SetChannel` (issue 16, part 4).
fn encode_set_channel(
    fbb: &mut FlatBufferBuilder<'static>,
    conversation: ConversationId,
    kind: ChangeKind,
    text: &str,
) -> (wire::Body, Union) {
    let text = fbb.create_string(text);
    let t = wire::SetChannel::create(
        fbb,
        &wire::SetChannelArgs {
            conversation: conversation.0,
            kind: kind_to_wire(Some(Change {
                kind,
                target: Seq(0),
            })),
            text: Some(text),
        },
    );
    (wire::Body::SetChannel, t.as_union_value())
}

/// The client frames after `codec::decode_request`'s own: `ChangeMessage`
/// and `SetChannel` here, the rest to [`crate::people`].
pub(crate) fn decode_request(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Request, DecodeError> {
    if kind == wire::Body::SetChannel {
        let t = frame
            .body_as_set_channel()
            .ok_or(DecodeError::UnexpectedBody("SetChannel"))?;
        return match kind_from_wire(t.kind())? {
            Some(k) if k.is_setting() => Ok(Request::SetChannel {
                conversation: ConversationId(t.conversation()),
                kind: k,
                text: t.text().unwrap_or_default().to_owned(),
            }),
            _ => Err(DecodeError::field("kind", "not a channel setting")),
        };
    }
    if crate::threads::is_thread_request(kind) {
        return crate::threads::decode_request(frame, kind);
    }
    if kind != wire::Body::ChangeMessage {
        return crate::people::decode_request(frame, kind);
    }
    let t = frame
        .body_as_change_message()
        .ok_or(DecodeError::UnexpectedBody("ChangeMessage"))?;
    decode_change(&t)
}

/// `ChangeMessage` → `Request::Change` (the kind must name a change).
fn decode_change(t: &wire::ChangeMessage<'_>) -> Result<Request, DecodeError> {
    let Some(kind) = kind_from_wire(t.kind())? else {
        return Err(DecodeError::field("kind", "not a change"));
    };
    Ok(Request::Change {
        conversation: ConversationId(t.conversation()),
        target: Seq(t.target()),
        kind,
        text: t.text().unwrap_or_default().to_owned(),
    })
}

/// A message's reactions as a vector of `Reaction` tables.
pub(crate) fn encode_reactions<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    live: &Live,
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<wire::Reaction<'a>>>>> {
    if live.reactions.is_empty() {
        return None;
    }
    let items: Vec<_> = live
        .reactions
        .iter()
        .map(|r| {
            let emoji = fbb.create_string(&r.emoji);
            let users: Vec<u64> = r.users.iter().map(|u| u.0).collect();
            let users = fbb.create_vector(&users);
            wire::Reaction::create(
                fbb,
                &wire::ReactionArgs {
                    emoji: Some(emoji),
                    users: Some(users),
                },
            )
        })
        .collect();
    Some(fbb.create_vector(&items))
}

/// The change and current state of a wire `Message`.
pub(crate) fn decode_live(t: &wire::Message<'_>) -> Result<(Option<Change>, Live), DecodeError> {
    let change = kind_from_wire(t.change())?.map(|kind| Change {
        kind,
        target: Seq(t.target()),
    });
    let reactions = t
        .reactions()
        .iter()
        .flatten()
        .map(|r| Reaction {
            emoji: r.emoji().to_owned(),
            users: r.users().iter().flatten().map(UserId).collect(),
        })
        .collect();
    let live = Live {
        edited: (t.edited_ms() != 0).then_some(Millis(t.edited_ms())),
        deleted: t.deleted(),
        reactions,
        version: Seq(t.version()),
        thread: Default::default(),
        pinned: t.pinned(),
    };
    Ok((change, live))
}
