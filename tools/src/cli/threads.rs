//! `courier reply` and `courier thread` (issue 17, part 2): a reply in a
//! message's thread, and a thread printed root first, then its replies,
//! paged with `Client::thread_page` (docs/CLI.md).

use super::args::Command;
use super::commands::{print_message, resolve_conversation, usage, Ctx, Labels, Names};
use super::output::id_json;
use courier_core::api::{Message, Seq, UserId};
use courier_tools::Outgoing;
use serde_json::json;
use std::collections::HashMap;

/// Replies asked for per page (the server's THREAD_PAGE_MAX).
const PAGE: u32 = courier_core::constants::THREAD_PAGE_MAX;

/// Runs `reply` or `thread` (no other command is passed).
pub(crate) async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Reply {
            conversation,
            root,
            text,
            also_channel,
        } => reply(ctx, &conversation, root, text, also_channel).await,
        Command::Thread {
            conversation,
            root,
            limit,
        } => thread(ctx, &conversation, root, limit).await,
        _ => Ok(()),
    }
}

async fn reply(
    ctx: &Ctx,
    conversation: &str,
    root: u64,
    text: String,
    also_channel: bool,
) -> anyhow::Result<()> {
    if root == 0 {
        return Err(usage("ROOT_SEQ starts at 1"));
    }
    if text.is_empty() {
        return Err(usage("the reply text is empty"));
    }
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    let ack = client
        .reply(id, Seq(root), also_channel, &Outgoing::text(text))
        .await?;
    ctx.out.emit(
        json!({
            "conversation": id_json(ack.conversation.0),
            "seq": ack.seq.0,
            "ts": ack.ts.0,
            "thread_root": root,
        }),
        || ack.seq.0.to_string(),
    )
}

async fn thread(ctx: &Ctx, conversation: &str, root: u64, limit: u32) -> anyhow::Result<()> {
    if root == 0 {
        return Err(usage("ROOT_SEQ starts at 1"));
    }
    if limit == 0 {
        return Err(usage("--limit must be positive"));
    }
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    let mut messages: Vec<Message> = Vec::new();
    let mut after = Seq(0);
    let mut replies = 0u32;
    while replies < limit {
        let want = (limit - replies).min(PAGE);
        let (page, head) = client.thread_page(id, Seq(root), after, want).await?;
        let Some(last) = page.last().map(|m| m.seq) else {
            break;
        };
        replies += page.iter().filter(|m| m.thread.is_some()).count() as u32;
        messages.extend(page);
        if last >= head || last <= after {
            break;
        }
        after = last;
    }
    let mut names = Names::default();
    let senders: Vec<UserId> = messages.iter().map(|m| m.sender).collect();
    names.learn(&mut client, &senders).await;
    let labels = Labels(HashMap::from([(id, conversation.to_owned())]));
    for m in &messages {
        print_message(ctx, &labels, &names, m)?;
    }
    Ok(())
}
