//! The commands of issue 17, parts 3 and 4 that are more than one change:
//! `pins` (a conversation's pinned messages; `pin` and `unpin` are changes,
//! run by `commands.rs`), `typing`, `presence` and `away`, and how `watch`
//! prints a typing event.

use super::commands::{resolve_conversation, resolve_user, Ctx};
use super::output::{id_json, message_json, message_text};
use courier_core::api::{
    ConversationId, Event, HistoryAnchor, Presence, Request, Response, Seq, UserId,
};
use courier_core::constants::{PINS_PAGE_MAX, PINS_PER_CONVERSATION_MAX, TYPING_EXPIRY_MS};
use courier_tools::{Incoming, Requester};
use serde_json::json;

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

/// `watch`: a typing event. JSON: a `typing` line on stdout (`expires_ms`:
/// how long to show it); text: a status line on stderr.
pub fn print_typing(
    ctx: &Ctx,
    conversation: ConversationId,
    label: &str,
    user: UserId,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let who = name.map_or_else(|| user.0.to_string(), str::to_owned);
    if !ctx.out.json {
        eprintln!("courier: {who} is typing in {label}…");
        return Ok(());
    }
    let mut v = json!({
        "type": "typing",
        "conversation": id_json(conversation.0),
        "user": id_json(user.0),
        "expires_ms": TYPING_EXPIRY_MS,
    });
    if let Some(name) = name {
        v["user_name"] = json!(name);
    }
    ctx.out.emit(v, String::new)
}

/// `typing CONV`: one `Typing`.
pub async fn typing(ctx: &Ctx, conversation: &str) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    client.request(Request::Typing { conversation: id }).await?;
    ctx.out.emit(
        json!({"conversation": id_json(id.0), "typing": true}),
        || "typing".to_owned(),
    )
}

fn presence_name(p: Presence) -> &'static str {
    match p {
        Presence::Active => "active",
        Presence::Away => "away",
    }
}

fn emit_presence(ctx: &Ctx, arg: &str, user: UserId, p: Presence) -> anyhow::Result<()> {
    ctx.out.emit(
        json!({"type": "presence", "user": id_json(user.0), "presence": presence_name(p)}),
        || format!("{arg} {}", presence_name(p)),
    )
}

/// `presence USER… [--watch]`: each user's presence (`GetPresence`: a
/// user outside your workspace fails the command, `NotFound`); with
/// `--watch`, then every change until interrupted (`WatchPresence`).
pub async fn presence(ctx: &Ctx, users: &[String], watch: bool) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let mut ids: Vec<(UserId, String)> = Vec::new();
    for arg in users {
        let user = resolve_user(&mut client, arg).await?;
        ids.push((user, arg.clone()));
    }
    for (user, arg) in &ids {
        let Response::Presence { presence, .. } =
            client.request(Request::GetPresence { user: *user }).await?
        else {
            anyhow::bail!("GetPresence answered with another reply");
        };
        emit_presence(ctx, arg, *user, presence)?;
    }
    if !watch {
        return Ok(());
    }
    let request = Request::WatchPresence {
        users: ids.iter().map(|(u, _)| *u).collect(),
    };
    client.request(request).await?;
    let Some(events) = client.events() else {
        anyhow::bail!("the connection closed");
    };
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let incoming = tokio::select! {
            e = events.next() => e,
            _ = &mut interrupted => return Ok(()),
        };
        match incoming {
            Some(Incoming::Event(Event::Presence { user, presence })) => {
                let arg = ids
                    .iter()
                    .find(|(u, _)| *u == user)
                    .map(|(_, a)| a.as_str());
                emit_presence(ctx, arg.unwrap_or("?"), user, presence)?;
            }
            Some(_) => {}
            None => anyhow::bail!("the connection closed"),
        }
    }
}

/// `away on|off`: the manual away (kept in memory by the server).
pub async fn away(ctx: &Ctx, state: &str) -> anyhow::Result<()> {
    let away = state == "on";
    let mut client = ctx.client().await?;
    client.request(Request::SetAway { away }).await?;
    ctx.out
        .emit(json!({"away": away}), || format!("away {state}"))
}
