//! Pins (issue 17, part 3): the paged list of a conversation's pinned
//! messages. Pinning and unpinning themselves are changes (`ChangeKind::Pin`
//! / `Unpin`, sequenced by `crate::changes` like an edit or a reaction);
//! the owner keeps the pinned seqs as of durable pins in
//! `Conversation::pins` (at most PINS_PER_CONVERSATION_MAX), so a page
//! costs O(log pins + limit) and reads nothing from the history store: it
//! names the messages, and a client loads the ones it does not hold with
//! `History` (they come in their current state).

use crate::api::Effect;
use crate::auth::Access;
use crate::commit::Ctx;
use crate::constants::PINS_PAGE_MAX;
use crate::owner::OwnerRole;
use crate::peer::{self, Origin, Who};
use crate::state::Conversation;
use crate::types::{Reject, Request, Response, Seq};

/// C: the requests of issue 17, parts 3-4 that `ConnRole::route_user`
/// does not route itself: checks a `ListPins` and sends it to the
/// conversation's owner.
pub(crate) fn route(
    cx: &mut Ctx,
    origin: Origin,
    who: Who,
    request: Request,
    out: &mut Vec<Effect>,
) -> Result<(), Reject> {
    let Request::ListPins {
        conversation,
        before,
        limit,
    } = request
    else {
        return Err(Reject::Invalid("request: not routed here".into()));
    };
    if limit == 0 {
        return Err(Reject::Invalid("limit: must be positive".into()));
    }
    if limit > PINS_PAGE_MAX {
        return Err(Reject::TooLarge(format!(
            "limit: more than PINS_PAGE_MAX ({PINS_PAGE_MAX})"
        )));
    }
    let to = cx.owner_of(conversation);
    let body = peer::owner::ListPins {
        origin,
        who,
        conversation,
        before,
        limit,
    };
    cx.send_peer(to, body, out);
    Ok(())
}

impl OwnerRole {
    /// C → O: a page of pinned seqs, newest message first.
    pub(crate) fn on_list_pins(
        &mut self,
        cx: &mut Ctx,
        m: peer::owner::ListPins,
        out: &mut Vec<Effect>,
    ) {
        let result = Self::conversation_for(cx, m.conversation, m.who, Access::Read)
            .map(|c| pins_page(c, m.before, m.limit))
            .map(|(pins, next)| Response::Pins {
                conversation: m.conversation,
                pins,
                next,
            });
        cx.reply(m.origin, result, out);
    }
}

/// The pinned seqs below `before` (all for `Seq(0)`), descending, at most
/// `limit`; and the `before` of the next page (`Seq(0)`: none).
pub(crate) fn pins_page(c: &Conversation, before: Seq, limit: u32) -> (Vec<Seq>, Seq) {
    let below = if before.0 == 0 { u64::MAX } else { before.0 };
    let mut seqs = c.pins.range(..below).rev().map(|s| Seq(*s));
    let page: Vec<Seq> = seqs.by_ref().take(limit as usize).collect();
    let next = match (seqs.next(), page.last()) {
        (Some(_), Some(last)) => *last,
        _ => Seq(0),
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashState;
    use crate::state::State;
    use crate::types::{ConversationId, ConversationKind, Millis, ShardId, WorkspaceId};

    /// A conversation pinning `pins`, paged with `before` and `limit`:
    /// (seqs, next).
    fn check(pins: &[u64], before: u64, limit: u32, want: &[u64], next: u64) {
        let state = State::new(ShardId(0), 1, HashState::new(&[1; 32]));
        let mut c = state.new_conversation(
            ConversationId(1),
            WorkspaceId(1),
            ConversationKind::PublicChannel,
            "general".into(),
            None,
            Millis(0),
        );
        c.pins = pins.iter().copied().collect();
        let (page, n) = pins_page(&c, Seq(before), limit);
        let page: Vec<u64> = page.into_iter().map(|s| s.0).collect();
        assert_eq!(
            (page.as_slice(), n.0),
            (want, next),
            "{pins:?} {before} {limit}"
        );
    }

    #[test]
    fn pages_run_newest_first_and_end_with_next_zero() {
        check(&[], 0, 10, &[], 0);
        check(&[3, 7, 9], 0, 10, &[9, 7, 3], 0);
        check(&[3, 7, 9], 0, 2, &[9, 7], 7);
        check(&[3, 7, 9], 7, 2, &[3], 0);
        check(&[3, 7, 9], 0, 3, &[9, 7, 3], 0);
        check(&[3, 7, 9], 3, 5, &[], 0);
    }
}
