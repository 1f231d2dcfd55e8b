//! The people commands of `courier` (issue 16): `users get`, `profile set`,
//! `directory` and `members` — their arguments (clap derive, used by
//! `args.rs`) and how they run and print.

use super::commands::{resolve_conversation, resolve_user, Ctx};
use super::output::id_json;
use clap::{Args, Subcommand};
use courier_core::api::{DirectoryEntry, ProfileUpdate, Status, UserId, UserProfile};
use courier_core::constants::{CHANNEL_PAGE_MAX, DIRECTORY_PAGE_MAX, MEMBERS_PAGE_MAX};
use courier_tools::{Client, People, ProfileCache};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// `courier users …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum UsersCommand {
    /// Show the profiles of users (ids, names or @names).
    Get {
        /// Users (ids, names or @names).
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
    },
}

/// `courier profile …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum ProfileCommand {
    /// Change your profile (with the admin token: --user's). Fields not
    /// given stay as they are; an empty value clears a field.
    Set(ProfileSetArgs),
}

/// `courier profile set` options.
#[derive(Args, Debug, PartialEq, Eq, Default)]
pub struct ProfileSetArgs {
    /// Whose profile (admin token only; default: yours).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The name people see (falls back to the handle when empty).
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Full name.
    #[arg(long, value_name = "NAME")]
    pub real_name: Option<String>,
    /// Job title.
    #[arg(long)]
    pub title: Option<String>,
    /// IANA time zone, e.g. Europe/Berlin.
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// https:// URL of your picture.
    #[arg(long, value_name = "URL")]
    pub avatar_url: Option<String>,
    /// Status emoji (sets the status, with --status-text).
    #[arg(long, value_name = "EMOJI")]
    pub status_emoji: Option<String>,
    /// Status text (sets the status, with --status-emoji).
    #[arg(long, value_name = "TEXT")]
    pub status_text: Option<String>,
    /// The status disappears after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub status_expires_in: Option<u64>,
    /// Remove the status.
    #[arg(long, conflicts_with_all = ["status_emoji", "status_text", "status_expires_in"])]
    pub clear_status: bool,
}

/// `courier directory` options.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct DirectoryArgs {
    /// Only users whose handle or display name starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// At most this many users.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
}

/// `courier members` options.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct MembersArgs {
    /// Conversation: channel name or id, or @user for a DM.
    #[arg(value_name = "CONV")]
    pub conversation: String,
    /// Show names (fetches the profiles).
    #[arg(long)]
    pub profiles: bool,
    /// At most this many members.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: u32,
}

/// A profile as JSON (`users get`, `profile set`).
pub fn profile_json(p: &UserProfile) -> Value {
    let f = &p.profile;
    json!({
        "user": id_json(p.user.0),
        "handle": p.handle,
        "display_name": f.display_name,
        "real_name": f.real_name,
        "title": f.title,
        "time_zone": f.time_zone,
        "avatar_url": f.avatar_url,
        "status_emoji": f.status.emoji,
        "status_text": f.status.text,
        "status_expires": f.status.expires.map(|m| m.0),
        "version": p.version,
    })
}

/// A profile for people: `Display Name (@handle) — title, zone, status`.
pub fn profile_text(p: &UserProfile) -> String {
    let f = &p.profile;
    let mut line = if f.display_name.is_empty() {
        format!("@{}", p.handle)
    } else {
        format!("{} (@{})", f.display_name, p.handle)
    };
    let mut extra: Vec<String> = Vec::new();
    for v in [&f.real_name, &f.title, &f.time_zone, &f.avatar_url] {
        if !v.is_empty() {
            extra.push(v.clone());
        }
    }
    if !f.status.is_empty() {
        extra.push(
            format!("{} {}", f.status.emoji, f.status.text)
                .trim()
                .to_owned(),
        );
    }
    if !extra.is_empty() {
        line = format!("{line} — {}", extra.join(", "));
    }
    format!("{line}  [id {}, v{}]", p.user.0, p.version)
}

fn entry_json(e: &DirectoryEntry) -> Value {
    json!({
        "user": id_json(e.user.0),
        "handle": e.handle,
        "display_name": e.display_name,
        "version": e.version,
    })
}

fn entry_text(e: &DirectoryEntry) -> String {
    if e.display_name.is_empty() {
        format!("@{}  [id {}]", e.handle, e.user.0)
    } else {
        format!("{} (@{})  [id {}]", e.display_name, e.handle, e.user.0)
    }
}

/// Runs `courier users …`.
pub async fn users(ctx: &Ctx, cmd: UsersCommand) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let UsersCommand::Get { users } = cmd;
    let mut ids = Vec::with_capacity(users.len());
    for u in &users {
        ids.push(resolve_user(&mut client, u).await?);
    }
    let found = client.get_users(&ids).await?;
    for p in &found {
        ctx.out.emit(profile_json(p), || profile_text(p))?;
    }
    if found.len() < ids.len() {
        anyhow::bail!(
            "{} of {} users not found in your workspace",
            ids.len() - found.len(),
            ids.len()
        );
    }
    Ok(())
}

fn status_of(args: &ProfileSetArgs) -> anyhow::Result<Option<Status>> {
    if args.clear_status {
        return Ok(Some(Status::default()));
    }
    if args.status_emoji.is_none() && args.status_text.is_none() {
        if args.status_expires_in.is_some() {
            return Err(super::commands::UsageError(
                "--status-expires-in needs --status-emoji or --status-text".into(),
            )
            .into());
        }
        return Ok(None);
    }
    let expires = match args.status_expires_in {
        Some(secs) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
            Some(courier_core::api::Millis(now + secs.saturating_mul(1000)))
        }
        None => None,
    };
    Ok(Some(Status {
        emoji: args.status_emoji.clone().unwrap_or_default(),
        text: args.status_text.clone().unwrap_or_default(),
        expires,
    }))
}

/// Runs `courier profile …`.
pub async fn profile(ctx: &Ctx, cmd: ProfileCommand) -> anyhow::Result<()> {
    let ProfileCommand::Set(args) = cmd;
    let mut client = ctx.client().await?;
    let user = match &args.user {
        Some(u) => Some(resolve_user(&mut client, u).await?),
        None => None,
    };
    let update = ProfileUpdate {
        display_name: args.display_name.clone(),
        real_name: args.real_name.clone(),
        title: args.title.clone(),
        time_zone: args.time_zone.clone(),
        avatar_url: args.avatar_url.clone(),
        status: status_of(&args)?,
    };
    if update.is_empty() {
        return Err(super::commands::UsageError(
            "nothing to change: give at least one --option (see courier profile set --help)".into(),
        )
        .into());
    }
    let p = client.set_profile(user, update).await?;
    ctx.out.emit(profile_json(&p), || profile_text(&p))
}

/// Runs `courier directory`.
pub async fn directory(ctx: &Ctx, args: DirectoryArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let mut left = args.limit;
    let mut after = None;
    while left > 0 {
        let page = client
            .directory(&args.prefix, after, left.min(DIRECTORY_PAGE_MAX))
            .await?;
        for e in &page.entries {
            ctx.out.emit(entry_json(e), || entry_text(e))?;
        }
        left = left.saturating_sub(page.entries.len() as u32);
        match page.next {
            Some(next) if !page.entries.is_empty() => after = Some(next),
            _ => break,
        }
    }
    Ok(())
}

/// Runs `courier members`.
pub async fn members(ctx: &Ctx, args: MembersArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let conversation = resolve_conversation(&mut client, &args.conversation).await?;
    let mut left = args.limit;
    let mut after: Option<UserId> = None;
    let mut total = 0;
    let mut cache = ProfileCache::new();
    while left > 0 {
        let page = client
            .list_members(conversation, after, left.min(MEMBERS_PAGE_MAX))
            .await?;
        total = page.total;
        if args.profiles {
            cache.resolve(&mut client, &page.members).await?;
        }
        for u in &page.members {
            let value = match cache.get(*u) {
                Some(p) => profile_json(p),
                None => json!({ "user": id_json(u.0) }),
            };
            ctx.out.emit(value, || match cache.get(*u) {
                Some(p) => profile_text(p),
                None => u.0.to_string(),
            })?;
        }
        left = left.saturating_sub(page.members.len() as u32);
        match page.next {
            Some(next) if !page.members.is_empty() => after = Some(next),
            _ => break,
        }
    }
    if !ctx.out.json {
        ctx.out.emit(json!(null), || format!("{total} members"))?;
    }
    Ok(())
}

/// Runs `courier channel browse`: every public channel by name, up to
/// `limit`, paging through the server's pages.
pub async fn browse(ctx: &Ctx, client: &mut Client, limit: u32) -> anyhow::Result<()> {
    let mut left = limit;
    let mut after = None;
    while left > 0 {
        let (channels, next) = client
            .browse_channels(after, left.min(CHANNEL_PAGE_MAX))
            .await?;
        for (id, name) in &channels {
            ctx.out.emit(
                json!({ "conversation": id_json(id.0), "name": name }),
                || format!("#{name}  [id {}]", id.0),
            )?;
        }
        left = left.saturating_sub(channels.len() as u32);
        match next {
            Some(n) if !channels.is_empty() => after = Some(n),
            _ => break,
        }
    }
    Ok(())
}
