//! The frames of issue 17, parts 3 and 4: pins (`ListPins` / `PinPage`;
//! pinning itself is a `ChangeMessage` of kind `Pin` / `Unpin`, in
//! [`crate::live`]), typing and presence. Called by [`crate::codec`]; same
//! contract: nothing here panics on any input, every failure is a
//! [`DecodeError`].

use crate::codec::DecodeError;
use crate::wire;
use courier_core::api::{ConversationId, Request, Response, Seq};
use flatbuffers::{FlatBufferBuilder, WIPOffset};

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

/// Whether `kind` is a client frame of this module.
pub(crate) fn is_request(kind: wire::Body) -> bool {
    matches!(kind, wire::Body::ListPins)
}

/// Whether `kind` is a server reply of this module.
pub(crate) fn is_response(kind: wire::Body) -> bool {
    matches!(kind, wire::Body::PinPage)
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
        _ => Err(DecodeError::UnexpectedBody(
            "a pin, typing or presence reply",
        )),
    }
}
