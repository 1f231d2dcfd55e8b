//! The commands of issue 17, parts 3 and 4 that are more than one change:
//! `pins` (a conversation's pinned messages; `pin` and `unpin` are changes,
//! run by `commands.rs`).

use super::commands::{resolve_conversation, Ctx};
use super::output::{message_json, message_text};
use courier_core::api::{HistoryAnchor, Request, Response, Seq};
use courier_core::constants::{PINS_PAGE_MAX, PINS_PER_CONVERSATION_MAX};
use courier_tools::Requester;

/// `pins CONV`: every pinned message (at most PINS_PER_CONVERSATION_MAX),
/// newest first, each loaded in its current state with `History`. JSON:
/// one `message` row per pinned message (`pinned: true`).
pub async fn pins(ctx: &Ctx, conversation: &str) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    let mut seqs: Vec<Seq> = Vec::new();
    let mut before = Seq(0);
    // Bounded: the server holds at most PINS_PER_CONVERSATION_MAX pins.
    for _ in 0..=PINS_PER_CONVERSATION_MAX / PINS_PAGE_MAX as usize {
        let request = Request::ListPins {
            conversation: id,
            before,
            limit: PINS_PAGE_MAX,
        };
        let Response::Pins { pins, next, .. } = client.request(request).await? else {
            anyhow::bail!("ListPins answered with another reply");
        };
        seqs.extend(pins);
        if next.0 == 0 {
            break;
        }
        before = next;
    }
    if seqs.is_empty() && !ctx.out.json {
        return ctx
            .out
            .emit(serde_json::json!(null), || "no pinned messages".to_owned());
    }
    for seq in seqs {
        let page = client
            .history(id, HistoryAnchor::After(Seq(seq.0 - 1)), 1)
            .await?;
        // Unpinned or deleted meanwhile: not pinned any more.
        let Some(m) = page
            .messages
            .into_iter()
            .find(|m| m.seq == seq && m.live.pinned)
        else {
            continue;
        };
        ctx.out.emit(message_json(&m, None, None), || {
            message_text(conversation, &m, None)
        })?;
    }
    Ok(())
}
