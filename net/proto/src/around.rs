//! The frames of issue 17, parts 3 and 4: pins (`ListPins` / `PinPage`;
//! pinning itself is a `ChangeMessage` of kind `Pin` / `Unpin`, in
//! [`crate::live`]), typing and presence. Called by [`crate::codec`]; same
//! contract: nothing here panics on any input, every failure is a
//! [`DecodeError`].

use crate::codec::DecodeError;
use crate::wire;
use courier_core::api::{ConversationId, Event, Presence, Request, Response, Seq, UserId};
use courier_core::constants::PRESENCE_WATCH_PER_CONN_MAX;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

/// Whether `kind` is a client frame of this module.
pub(crate) fn is_request(kind: wire::Body) -> bool {
    use wire::Body as B;
    matches!(
        kind,
        B::ListPins | B::Typing | B::WatchPresence | B::GetPresence | B::SetAway
    )
}

/// Whether `kind` is a server reply of this module.
pub(crate) fn is_response(kind: wire::Body) -> bool {
    matches!(kind, wire::Body::PinPage | wire::Body::PresenceReply)
}

/// Whether `kind` is an event of this module.
pub(crate) fn is_event(kind: wire::Body) -> bool {
    matches!(kind, wire::Body::TypingEvent | wire::Body::PresenceEvent)
}

fn presence_to_wire(p: Presence) -> wire::PresenceState {
    match p {
        Presence::Away => wire::PresenceState::Away,
        Presence::Active => wire::PresenceState::Active,
    }
}

fn presence_from_wire(p: wire::PresenceState) -> Result<Presence, DecodeError> {
    match p {
        wire::PresenceState::Away => Ok(Presence::Away),
        wire::PresenceState::Active => Ok(Presence::Active),
        _ => Err(DecodeError::field("state", "unknown value")),
    }
}

/// This module's events → their frames (the codec passes no other).
pub(crate) fn encode_event(
    fbb: &mut FlatBufferBuilder<'static>,
    event: &Event,
) -> (wire::Body, Union) {
    match event {
        Event::Typing { conversation, user } => {
            let args = wire::TypingEventArgs {
                conversation: conversation.0,
                user: user.0,
            };
            let t = wire::TypingEvent::create(fbb, &args);
            (wire::Body::TypingEvent, t.as_union_value())
        }
        Event::Presence { user, presence } => {
            let args = wire::PresenceEventArgs {
                user: user.0,
                state: presence_to_wire(*presence),
            };
            let t = wire::PresenceEvent::create(fbb, &args);
            (wire::Body::PresenceEvent, t.as_union_value())
        }
        other => unreachable!("around::encode_event called with {other:?}"),
    }
}

/// This module's events ([`is_event`]) → events.
pub(crate) fn decode_event(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Event, DecodeError> {
    match kind {
        wire::Body::TypingEvent => {
            let t = frame
                .body_as_typing_event()
                .ok_or(DecodeError::UnexpectedBody("TypingEvent"))?;
            Ok(Event::Typing {
                conversation: ConversationId(t.conversation()),
                user: UserId(t.user()),
            })
        }
        _ => {
            let t = frame
                .body_as_presence_event()
                .ok_or(DecodeError::UnexpectedBody("PresenceEvent"))?;
            Ok(Event::Presence {
                user: UserId(t.user()),
                presence: presence_from_wire(t.state())?,
            })
        }
    }
}

/// This module's requests → their frames (the codec passes no other
/// variant: a programmer error).
pub(crate) fn encode_request(
    fbb: &mut FlatBufferBuilder<'static>,
    request: &Request,
) -> (wire::Body, Union) {
    match request {
        Request::ListPins {
            conversation,
            before,
            limit,
        } => {
            let t = wire::ListPins::create(
                fbb,
                &wire::ListPinsArgs {
                    conversation: conversation.0,
                    before: before.0,
                    limit: *limit,
                },
            );
            (wire::Body::ListPins, t.as_union_value())
        }
        Request::Typing { conversation } => {
            let args = wire::TypingArgs {
                conversation: conversation.0,
            };
            let t = wire::Typing::create(fbb, &args);
            (wire::Body::Typing, t.as_union_value())
        }
        Request::WatchPresence { users } => {
            let ids: Vec<u64> = users.iter().map(|u| u.0).collect();
            let users = Some(fbb.create_vector(&ids));
            let t = wire::WatchPresence::create(fbb, &wire::WatchPresenceArgs { users });
            (wire::Body::WatchPresence, t.as_union_value())
        }
        Request::GetPresence { user } => {
            let t = wire::GetPresence::create(fbb, &wire::GetPresenceArgs { user: user.0 });
            (wire::Body::GetPresence, t.as_union_value())
        }
        Request::SetAway { away } => {
            let t = wire::SetAway::create(fbb, &wire::SetAwayArgs { away: *away });
            (wire::Body::SetAway, t.as_union_value())
        }
        other => unreachable!("around::encode_request called with {other:?}"),
    }
}

/// This module's client frames ([`is_request`]) → requests; the other
/// kinds `codec::decode_request` does not decode itself go on to
/// [`crate::live`].
pub(crate) fn decode_request(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Request, DecodeError> {
    if !is_request(kind) {
        return crate::live::decode_request(frame, kind);
    }
    match kind {
        wire::Body::ListPins => {
            let t = frame
                .body_as_list_pins()
                .ok_or(DecodeError::UnexpectedBody("ListPins"))?;
            Ok(Request::ListPins {
                conversation: ConversationId(t.conversation()),
                before: Seq(t.before()),
                limit: t.limit(),
            })
        }
        wire::Body::Typing => {
            let t = frame
                .body_as_typing()
                .ok_or(DecodeError::UnexpectedBody("Typing"))?;
            Ok(Request::Typing {
                conversation: ConversationId(t.conversation()),
            })
        }
        wire::Body::WatchPresence => {
            let t = frame
                .body_as_watch_presence()
                .ok_or(DecodeError::UnexpectedBody("WatchPresence"))?;
            if t.users()
                .is_some_and(|u| u.len() > PRESENCE_WATCH_PER_CONN_MAX)
            {
                return Err(DecodeError::field(
                    "users",
                    "more than PRESENCE_WATCH_PER_CONN_MAX ids",
                ));
            }
            Ok(Request::WatchPresence {
                users: t.users().iter().flatten().map(UserId).collect(),
            })
        }
        wire::Body::GetPresence => {
            let t = frame
                .body_as_get_presence()
                .ok_or(DecodeError::UnexpectedBody("GetPresence"))?;
            Ok(Request::GetPresence {
                user: UserId(t.user()),
            })
        }
        wire::Body::SetAway => {
            let t = frame
                .body_as_set_away()
                .ok_or(DecodeError::UnexpectedBody("SetAway"))?;
            Ok(Request::SetAway { away: t.away() })
        }
        _ => Err(DecodeError::UnexpectedBody(
            "a pin, typing or presence frame",
        )),
    }
}

/// This module's responses → their frames (the codec passes no other
/// variant).
pub(crate) fn encode_response(
    fbb: &mut FlatBufferBuilder<'static>,
    response: &Response,
) -> (wire::Body, Union) {
    match response {
        Response::Pins {
            conversation,
            pins,
            next,
        } => {
            let seqs: Vec<u64> = pins.iter().map(|s| s.0).collect();
            let pins = fbb.create_vector(&seqs);
            let t = wire::PinPage::create(
                fbb,
                &wire::PinPageArgs {
                    conversation: conversation.0,
                    pins: Some(pins),
                    next: next.0,
                },
            );
            (wire::Body::PinPage, t.as_union_value())
        }
        Response::Presence {
            user,
            presence,
            manual_away,
        } => {
            let args = wire::PresenceReplyArgs {
                user: user.0,
                state: presence_to_wire(*presence),
                manual_away: *manual_away,
            };
            let t = wire::PresenceReply::create(fbb, &args);
            (wire::Body::PresenceReply, t.as_union_value())
        }
        other => unreachable!("around::encode_response called with {other:?}"),
    }
}

/// This module's server replies ([`is_response`]) → responses.
pub(crate) fn decode_response(
    frame: &wire::Frame<'_>,
    kind: wire::Body,
) -> Result<Response, DecodeError> {
    match kind {
        wire::Body::PinPage => {
            let t = frame
                .body_as_pin_page()
                .ok_or(DecodeError::UnexpectedBody("PinPage"))?;
            Ok(Response::Pins {
                conversation: ConversationId(t.conversation()),
                pins: t.pins().iter().flatten().map(Seq).collect(),
                next: Seq(t.next()),
            })
        }
        wire::Body::PresenceReply => {
            let t = frame
                .body_as_presence_reply()
                .ok_or(DecodeError::UnexpectedBody("PresenceReply"))?;
            Ok(Response::Presence {
                user: UserId(t.user()),
                presence: presence_from_wire(t.state())?,
                manual_away: t.manual_away(),
            })
        }
        _ => Err(DecodeError::UnexpectedBody(
            "a pin, typing or presence reply",
        )),
    }
}
