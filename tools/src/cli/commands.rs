//! Running each `courier` subcommand: resolve names to ids, call the client
//! library, print the result (see `output.rs`).

use super::args::{
    AdminCommand, ChannelCommand, Cli, ClusterCommand, Command, RoleArg, TokenCommand, WalCommand,
    WatchArgs,
};
use super::config::{self, Config};
use super::output::{
    change_type, conversation_json, conversation_label, conversation_label_with, id_json,
    kind_name, message_json, message_text, opt_id_json, setting_text, Out,
};
use anyhow::anyhow;
use courier_core::api::{
    ChangeKind, ConversationId, ConversationInfo, ConversationKind, Credential, HistoryAnchor,
    LookupKind, Message, ProfileUpdate, Reject, Role, Seq, UserId, WorkspaceId,
};
use courier_tools::{
    Client, ClientError, ClientOptions, ConnectOptions, Notice, Outgoing, People, ProfileCache,
    Requester, Session, SessionEvent, SessionOptions,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

/// The server courierd listens on by default.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:7070";

/// Most messages `courier history` prints in one call.
pub const HISTORY_LIMIT_MAX: u32 = 10_000;

/// A mistake in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Everything a command needs besides its own arguments.
pub struct Ctx {
    /// Printing.
    pub out: Out,
    /// Server URL (flag, env, config file, or the default).
    pub server: String,
    /// Token text, if any source gave one.
    pub token: Option<String>,
    /// How long to keep retrying an unreachable server.
    pub timeout: Duration,
    /// The config file.
    pub config_path: Option<PathBuf>,
}

impl Ctx {
    /// Merges flags and environment (already in `cli`) over the config file.
    pub fn new(cli: &Cli) -> anyhow::Result<Ctx> {
        let config_path = cli.config.clone().or_else(config::default_path);
        let file = match &config_path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        Ok(Ctx {
            out: Out { json: cli.json },
            server: cli
                .server
                .clone()
                .or(file.server)
                .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
            token: cli.token.clone().or(file.token),
            timeout: Duration::from_secs(cli.timeout.max(1)),
            config_path,
        })
    }

    fn credential(&self) -> anyhow::Result<Credential> {
        let text = self.token.as_deref().ok_or_else(|| {
            usage("no token: pass --token TOKEN, set COURIER_TOKEN, or run `courier login --server URL --token TOKEN`")
        })?;
        courier_tools::token::parse(text).map_err(|_| {
            usage("malformed token: expected cu1_ followed by 96 hex digits (user) or ca1_ followed by 64 (admin)")
        })
    }

    fn options(&self) -> anyhow::Result<ClientOptions> {
        courier_tools::server_list(&self.server).map_err(|e| usage(e.to_string()))?;
        let mut connect = ConnectOptions::new(self.server.clone(), self.credential()?);
        connect.device.name = "courier-cli".to_owned();
        let mut options = ClientOptions::new(connect);
        options.retry_deadline = Some(self.timeout);
        Ok(options)
    }

    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let mut client = Client::new(self.options()?);
        client.connect().await?;
        Ok(client)
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Wal(cmd) = &cli.command {
        // Offline: no server, no token, no config file needed.
        let out = Out { json: cli.json };
        return match cmd {
            WalCommand::Inspect { dir } => super::wal::inspect(&out, dir),
            WalCommand::Verify { dir } => super::wal::verify(&out, dir),
        };
    }
    let ctx = Ctx::new(&cli)?;
    match cli.command {
        Command::Login { offline } => login(&ctx, &cli, offline).await,
        Command::Whoami => whoami(&ctx).await,
        Command::Admin(cmd) => admin(&ctx, cmd).await,
        Command::Channel(cmd) => channel(&ctx, cmd).await,
        Command::Dm { users } => dm(&ctx, &users).await,
        Command::Send { conversation, text } => send(&ctx, &conversation, text).await,
        Command::Edit {
            conversation,
            seq,
            text,
        } => change(&ctx, &conversation, seq, ChangeKind::Edit, text).await,
        Command::Delete { conversation, seq } => {
            change(&ctx, &conversation, seq, ChangeKind::Delete, String::new()).await
        }
        Command::React {
            conversation,
            seq,
            emoji,
            remove,
        } => {
            let kind = if remove {
                ChangeKind::Unreact
            } else {
                ChangeKind::React
            };
            change(&ctx, &conversation, seq, kind, emoji).await
        }
        Command::Reply { .. } | Command::Thread { .. } => {
            super::threads::run(&ctx, cli.command).await
        }
        Command::Pin { conversation, seq } => {
            change(&ctx, &conversation, seq, ChangeKind::Pin, String::new()).await
        }
        Command::Unpin { conversation, seq } => {
            change(&ctx, &conversation, seq, ChangeKind::Unpin, String::new()).await
        }
        Command::Pins { conversation } => super::around::pins(&ctx, &conversation).await,
        Command::Typing { conversation } => super::around::typing(&ctx, &conversation).await,
        Command::Presence { users, watch } => super::around::presence(&ctx, &users, watch).await,
        Command::Away { state } => super::around::away(&ctx, &state).await,
        Command::Watch(args) => watch(&ctx, args).await,
        Command::History {
            conversation,
            before,
            after,
            limit,
        } => history(&ctx, &conversation, before, after, limit).await,
        Command::Unread => unread(&ctx).await,
        Command::Read { conversation, seq } => read(&ctx, &conversation, seq).await,
        Command::Users(cmd) => super::people::users(&ctx, cmd).await,
        Command::Profile(cmd) => super::people::profile(&ctx, cmd).await,
        Command::Directory(args) => super::people::directory(&ctx, args).await,
        Command::Members(args) => super::people::members(&ctx, args).await,
        Command::Token(cmd) => token(&ctx, cmd).await,
        Command::Invite(cmd) => super::invites::invite(&ctx, cmd).await,
        Command::Wal(_) => Ok(()), // handled above
    }
}

/// A numeric argument is an id.
fn as_id(arg: &str) -> Option<u64> {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        arg.parse().ok()
    } else {
        None
    }
}

/// A user given by id or name (`@name` also accepted).
pub async fn resolve_user(client: &mut Client, arg: &str) -> anyhow::Result<UserId> {
    if let Some(id) = as_id(arg) {
        return Ok(UserId(id));
    }
    let name = arg.strip_prefix('@').unwrap_or(arg);
    if name.is_empty() {
        return Err(usage(format!("{arg:?} is not a user name or id")));
    }
    match client.lookup(name, LookupKind::User).await {
        Ok(id) => Ok(UserId(id)),
        Err(ClientError::Rejected(Reject::NotFound)) => {
            Err(anyhow::Error::new(ClientError::Rejected(Reject::NotFound))
                .context(format!("no user named {name:?} in your workspace")))
        }
        Err(e) => Err(e.into()),
    }
}

/// A conversation given by id, by channel name (`#name` also accepted), or
/// as `@user` for the DM with that user.
pub async fn resolve_conversation(
    client: &mut Client,
    arg: &str,
) -> anyhow::Result<ConversationId> {
    if let Some(id) = as_id(arg) {
        return Ok(ConversationId(id));
    }
    if let Some(user) = arg.strip_prefix('@') {
        let user = resolve_user(client, user).await?;
        return Ok(client.open_dm(vec![user]).await?.id);
    }
    let name = arg.strip_prefix('#').unwrap_or(arg);
    if name.is_empty() {
        return Err(usage(format!("{arg:?} is not a conversation name or id")));
    }
    match client.lookup(name, LookupKind::Channel).await {
        Ok(id) => Ok(ConversationId(id)),
        Err(ClientError::Rejected(Reject::NotFound)) => {
            Err(anyhow::Error::new(ClientError::Rejected(Reject::NotFound))
                .context(format!("no channel named {name:?} that you can see")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn login(ctx: &Ctx, cli: &Cli, offline: bool) -> anyhow::Result<()> {
    let (Some(server), Some(_)) = (&cli.server, &cli.token) else {
        return Err(usage("usage: courier login --server URL --token TOKEN"));
    };
    let path = ctx.config_path.clone().ok_or_else(|| {
        anyhow!("no config directory: set XDG_CONFIG_HOME or HOME, or pass --config")
    })?;
    let mut who = json!({ "server": server, "config": path.display().to_string() });
    if !offline {
        let welcome = ctx
            .client()
            .await?
            .welcome()
            .unwrap_or_else(unreachable_welcome);
        who["user"] = opt_id_json(welcome.user.map(|u| u.0));
        who["workspace"] = opt_id_json(welcome.workspace.map(|w| w.0));
        who["admin"] = json!(welcome.user.is_none());
    }
    Config {
        server: Some(server.clone()),
        token: cli.token.clone(),
    }
    .save(&path)?;
    ctx.out.emit(who.clone(), || {
        let identity = match (offline, who["user"].as_str()) {
            (true, _) => "(not verified)".to_owned(),
            (false, Some(u)) => format!("as user {u}"),
            (false, None) => "as admin".to_owned(),
        };
        format!(
            "logged in to {server} {identity}; saved to {}",
            path.display()
        )
    })
}

/// `Client::connect` always sets a welcome; this is the value if it did not.
fn unreachable_welcome() -> courier_tools::Welcome {
    courier_tools::Welcome {
        user: None,
        workspace: None,
        now: courier_core::api::Millis(0),
        conn_rate: courier_core::api::RateLimit::NONE,
        user_rate: courier_core::api::RateLimit::NONE,
    }
}

/// `courier token list|revoke`: your own tokens.
async fn token(ctx: &Ctx, cmd: TokenCommand) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let me = client
        .welcome()
        .and_then(|w| w.user)
        .ok_or_else(|| usage("token commands need a user token, not the admin token"))?;
    match cmd {
        TokenCommand::List => {
            let (tokens, current) = client.list_tokens().await?;
            for t in tokens {
                ctx.out.emit(
                    json!({ "token_id": id_json(t), "current": t == current }),
                    || {
                        let mark = if t == current { "  (this one)" } else { "" };
                        format!("{t}{mark}")
                    },
                )?;
            }
            Ok(())
        }
        TokenCommand::Revoke { token_id } => {
            client.revoke_token(me, Some(token_id)).await?;
            ctx.out.emit(
                json!({ "token_id": id_json(token_id), "revoked": true }),
                || format!("revoked token {token_id}"),
            )
        }
    }
}

async fn whoami(ctx: &Ctx) -> anyhow::Result<()> {
    let welcome = ctx
        .client()
        .await?
        .welcome()
        .unwrap_or_else(unreachable_welcome);
    ctx.out.emit(
        json!({
            "server": ctx.server,
            "user": opt_id_json(welcome.user.map(|u| u.0)),
            "workspace": opt_id_json(welcome.workspace.map(|w| w.0)),
            "admin": welcome.user.is_none(),
        }),
        || match (welcome.user, welcome.workspace) {
            (Some(u), Some(w)) => format!("user {} in workspace {} at {}", u.0, w.0, ctx.server),
            (Some(u), None) => format!("user {} at {}", u.0, ctx.server),
            _ => format!("admin at {}", ctx.server),
        },
    )
}

/// `admin create-user`: the user, then its role and display name (checked
/// before anything is created), then the token.
async fn create_user(
    ctx: &Ctx,
    client: &mut Client,
    workspace: u64,
    name: String,
    role: Option<RoleArg>,
    display_name: Option<String>,
) -> anyhow::Result<()> {
    // Issue 16, part 5: checked before anything is created, so a
    // bad name creates no user.
    let update = display_name.as_ref().map(|n| ProfileUpdate {
        display_name: Some(n.clone()),
        ..ProfileUpdate::default()
    });
    if let Some(u) = &update {
        courier_core::profile::check_profile_update(u).map_err(|r| {
            usage(format!(
                "--display-name: {}",
                courier_tools::describe_reject(&r)
            ))
        })?;
    }
    let t = client.create_user(WorkspaceId(workspace), &name).await?;
    let role = role.map_or(Role::Member, |r| r.0);
    if role != Role::Member {
        client.set_role(t.user, role).await?;
    }
    let mut display_name = display_name;
    if let Some(u) = update {
        // The user exists and its token is shown only now: a
        // failure here warns instead of losing the token.
        if let Err(e) = client.set_profile(Some(t.user), u).await {
            eprintln!("courier: user created, display name not set: {e}");
            display_name = None;
        }
    }
    ctx.out.emit(
        json!({
            "user_id": id_json(t.user.0),
            "token": t.text,
            "token_id": id_json(t.token_id),
            "workspace": id_json(workspace),
            "name": name,
            "role": role.name(),
            "display_name": display_name,
        }),
        || format!("user_id {}\ntoken {}", t.user.0, t.text),
    )
}

async fn admin(ctx: &Ctx, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Cluster(ClusterCommand::Status) => return cluster_status(ctx).await,
        AdminCommand::Backup { dir } => return backup(ctx, &dir).await,
        _ => {}
    }
    let mut client = ctx.client().await?;
    match cmd {
        AdminCommand::Cluster(_) | AdminCommand::Backup { .. } => Ok(()), // handled above
        AdminCommand::CreateWorkspace { name } => {
            let ws = client.create_workspace(&name).await?;
            ctx.out
                .emit(json!({ "workspace": id_json(ws.0), "name": name }), || {
                    ws.0.to_string()
                })
        }
        AdminCommand::CreateUser {
            workspace,
            name,
            role,
            display_name,
        } => create_user(ctx, &mut client, workspace, name, role, display_name).await,
        AdminCommand::SetRole { user, role } => {
            let id = resolve_user(&mut client, &user).await?;
            client.set_role(id, role.0).await?;
            ctx.out.emit(
                json!({ "user_id": id_json(id.0), "role": role.0.name() }),
                || format!("user {} is now {}", id.0, role.0.name()),
            )
        }
        AdminCommand::Deactivate { user } => {
            let id = resolve_user(&mut client, &user).await?;
            client.set_role(id, Role::Deactivated).await?;
            ctx.out.emit(
                json!({ "user_id": id_json(id.0), "role": "deactivated" }),
                || format!("user {} is deactivated", id.0),
            )
        }
        AdminCommand::IssueToken { user } => {
            let t = client.issue_token(UserId(user)).await?;
            ctx.out.emit(
                json!({
                    "user_id": id_json(t.user.0),
                    "token": t.text,
                    "token_id": id_json(t.token_id),
                }),
                || format!("token_id {}\ntoken {}", t.token_id, t.text),
            )
        }
        AdminCommand::RevokeToken { user, token_id } => {
            client.revoke_token(UserId(user), token_id).await?;
            ctx.out.emit(
                json!({
                    "user_id": id_json(user),
                    "token_id": opt_id_json(token_id),
                    "revoked": true,
                }),
                || match token_id {
                    Some(t) => format!("revoked token {t} of user {user}"),
                    None => format!("revoked every token of user {user}"),
                },
            )
        }
    }
}

/// `courier admin cluster status`: `GET /admin/cluster` with the admin
/// token (HTTP on the server's port, not a WebSocket session: a
/// cluster-mode node refuses sessions until replication exists).
async fn cluster_status(ctx: &Ctx) -> anyhow::Result<()> {
    let token = ctx.token.as_deref().ok_or_else(|| {
        usage("no token: pass --token \"$(cat DATA_DIR/admin.token)\" or set COURIER_TOKEN")
    })?;
    let report = courier_tools::admin_http::cluster_status(&ctx.server, token, ctx.timeout)
        .await
        .map_err(|e| match e {
            ClientError::BadUrl { .. } => usage(e.to_string()),
            other => anyhow::Error::new(other),
        })?;
    let value = serde_json::to_value(&report)?;
    ctx.out
        .emit(value, || super::output::cluster_status_text(&report))
}

/// `courier admin backup DIR`: `POST /admin/backup` with the admin token;
/// prints the server's report.
async fn backup(ctx: &Ctx, dir: &std::path::Path) -> anyhow::Result<()> {
    let token = ctx.token.as_deref().ok_or_else(|| {
        usage("no token: pass --token \"$(cat DATA_DIR/admin.token)\" or set COURIER_TOKEN")
    })?;
    let dir = std::path::absolute(dir).map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    // A backup copies the whole store: allow far more than one request.
    let timeout = ctx.timeout.max(courier_tools::constants::BACKUP_WAIT);
    let report = courier_tools::admin_http::backup(&ctx.server, token, &dir, timeout)
        .await
        .map_err(|e| match e {
            ClientError::BadUrl { .. } => usage(e.to_string()),
            other => anyhow::Error::new(other),
        })?;
    let text = format!(
        "backup in {} ({} ms)",
        dir.display(),
        report["ms"].as_u64().unwrap_or(0)
    );
    ctx.out.emit(report, || text)
}

async fn channel(ctx: &Ctx, cmd: ChannelCommand) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    match cmd {
        ChannelCommand::Create { name, private } => {
            let name = name.strip_prefix('#').unwrap_or(&name).to_owned();
            let info = client.create_channel(&name, private).await?;
            ctx.out.emit(conversation_json(&info), || {
                format!("created {} (id {})", conversation_label(&info), info.id.0)
            })
        }
        ChannelCommand::Join { channel } => {
            let id = resolve_conversation(&mut client, &channel).await?;
            let info = client.join(id).await?;
            ctx.out.emit(conversation_json(&info), || {
                format!("joined {} (id {})", conversation_label(&info), info.id.0)
            })
        }
        ChannelCommand::Invite { channel, user } => {
            let id = resolve_conversation(&mut client, &channel).await?;
            let user_id = resolve_user(&mut client, &user).await?;
            client.invite(id, user_id).await?;
            ctx.out.emit(
                json!({ "conversation": id_json(id.0), "user": id_json(user_id.0) }),
                || format!("invited {user} to {channel}"),
            )
        }
        ChannelCommand::Leave { channel } => {
            let id = resolve_conversation(&mut client, &channel).await?;
            client.leave(id).await?;
            ctx.out.emit(json!({ "conversation": id_json(id.0) }), || {
                format!("left {channel}")
            })
        }
        ChannelCommand::Browse { limit } => super::people::browse(ctx, &mut client, limit).await,
        ChannelCommand::Topic { channel, text } => {
            set_channel(ctx, &mut client, &channel, ChangeKind::Topic, text).await
        }
        ChannelCommand::Purpose { channel, text } => {
            set_channel(ctx, &mut client, &channel, ChangeKind::Purpose, text).await
        }
        ChannelCommand::Rename { channel, name } => {
            let name = name.strip_prefix('#').unwrap_or(&name).to_owned();
            set_channel(ctx, &mut client, &channel, ChangeKind::Rename, name).await
        }
        ChannelCommand::Archive { channel } => {
            set_channel(
                ctx,
                &mut client,
                &channel,
                ChangeKind::Archive,
                String::new(),
            )
            .await
        }
        ChannelCommand::Unarchive { channel } => {
            let kind = ChangeKind::Unarchive;
            set_channel(ctx, &mut client, &channel, kind, String::new()).await
        }
        ChannelCommand::Posting { channel, who } => {
            let kind = if who == "admins" {
                ChangeKind::PostingAdmins
            } else {
                ChangeKind::PostingEveryone
            };
            set_channel(ctx, &mut client, &channel, kind, String::new()).await
        }
        ChannelCommand::List => {
            let list = client.list_conversations().await?;
            if !ctx.out.json {
                ctx.out.emit(json!(null), || {
                    format!(
                        "{:<20} {:<16} {:<24} {:>7} {:>6} {:>7}",
                        "ID", "KIND", "NAME", "MEMBERS", "HEAD", "UNREAD"
                    )
                })?;
            }
            for c in &list {
                ctx.out.emit(conversation_json(c), || {
                    let member = if c.member { "" } else { " (not a member)" };
                    format!(
                        "{:<20} {:<16} {:<24} {:>7} {:>6} {:>7}{member}",
                        c.id.0,
                        kind_name(c.kind),
                        conversation_label(c),
                        c.member_count,
                        c.head.0,
                        c.unread
                    )
                })?;
            }
            Ok(())
        }
    }
}

async fn dm(ctx: &Ctx, users: &[String]) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let mut ids = Vec::with_capacity(users.len());
    for u in users {
        ids.push(resolve_user(&mut client, u).await?);
    }
    let info = client.open_dm(ids).await?;
    ctx.out
        .emit(conversation_json(&info), || info.id.0.to_string())
}

async fn send(ctx: &Ctx, conversation: &str, text: String) -> anyhow::Result<()> {
    if text.is_empty() {
        return Err(usage("the message text is empty"));
    }
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    let ack = client.send(id, &Outgoing::text(text)).await?;
    ctx.out.emit(
        json!({
            "conversation": id_json(ack.conversation.0),
            "seq": ack.seq.0,
            "ts": ack.ts.0,
        }),
        || ack.seq.0.to_string(),
    )
}

/// `edit`, `delete`, `react`, `pin`, `unpin`: one change of message `seq` (issue 17);
/// prints the change's own seq, or `unchanged` when there was nothing to
/// change.
async fn change(
    ctx: &Ctx,
    conversation: &str,
    seq: u64,
    kind: ChangeKind,
    text: String,
) -> anyhow::Result<()> {
    if seq == 0 {
        return Err(usage("SEQ starts at 1"));
    }
    if kind != ChangeKind::Delete && !kind.is_pin() && text.is_empty() {
        return Err(usage("the text is empty"));
    }
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    let ack = client.change(id, Seq(seq), kind, &text).await?;
    let value = json!({
        "conversation": id_json(id.0),
        "target": seq,
        "type": change_type(kind),
        "seq": ack.as_ref().map(|a| a.seq.0),
        "changed": ack.is_some(),
    });
    ctx.out.emit(value, || {
        ack.map_or_else(|| "unchanged".to_owned(), |a| a.seq.0.to_string())
    })
}

/// `channel topic|purpose|rename|archive|unarchive|posting` (issue 16,
/// part 4): one setting event; prints what it did and its seq, or
/// `unchanged` when the setting already had that value.
async fn set_channel(
    ctx: &Ctx,
    client: &mut Client,
    channel: &str,
    kind: ChangeKind,
    text: String,
) -> anyhow::Result<()> {
    let id = resolve_conversation(client, channel).await?;
    let ack = client.set_channel(id, kind, &text).await?;
    let value = json!({
        "conversation": id_json(id.0),
        "type": change_type(kind),
        "value": text,
        "seq": ack.as_ref().map(|a| a.seq.0),
        "changed": ack.is_some(),
    });
    ctx.out.emit(value, || match &ack {
        Some(a) => format!("{} (#{})", setting_text(kind, &text), a.seq.0),
        None => "unchanged".to_owned(),
    })
}

/// Senders' names for output: profiles fetched once per sender (display
/// name, else `@handle`); a sender whose profile cannot be read (an older
/// server, another workspace) is shown by id, and asked for only once.
#[derive(Default)]
pub(super) struct Names {
    cache: ProfileCache,
    asked: HashSet<UserId>,
}

impl Names {
    /// Fetches the profiles of those of `users` not asked for yet.
    pub(super) async fn learn(&mut self, client: &mut Client, users: &[UserId]) {
        let new: Vec<UserId> = users
            .iter()
            .copied()
            .filter(|u| self.asked.insert(*u))
            .collect();
        if !new.is_empty() {
            // Names are a courtesy: ids are shown when this fails.
            let _ = self.cache.resolve(client, &new).await;
        }
    }

    fn get(&self, user: UserId) -> Option<String> {
        self.cache.get(user).map(|_| self.cache.name(user))
    }

    /// A profile change: a stale profile is dropped and asked for again
    /// at the user's next line.
    fn on_changed(&mut self, user: UserId, version: u64) {
        if self.cache.on_changed(user, version) {
            self.asked.remove(&user);
        }
    }

    /// `@handle` of a user whose profile was read.
    fn handle(&self, user: UserId) -> Option<String> {
        self.cache.get(user).map(|p| format!("@{}", p.handle))
    }
}

/// Labels of conversations (`#general`, `@alice`, `@alice,@bob`), for
/// human output and `conversation_name`.
pub(super) struct Labels(pub(super) HashMap<ConversationId, String>);

impl Labels {
    /// Learns the DM members' names, then labels `convs` (`me`: left out
    /// of DM labels).
    async fn add_all(
        &mut self,
        client: &mut Client,
        names: &mut Names,
        me: Option<UserId>,
        convs: &[ConversationInfo],
    ) {
        let members: Vec<UserId> = convs
            .iter()
            .filter(|c| matches!(c.kind, ConversationKind::Dm | ConversationKind::GroupDm))
            .flat_map(|c| c.members.iter().copied())
            .collect();
        names.learn(client, &members).await;
        for c in convs {
            let label = conversation_label_with(c, me, |u| names.handle(u));
            self.0.insert(c.id, label);
        }
    }

    fn name(&self, id: ConversationId) -> Option<&str> {
        self.0.get(&id).map(String::as_str)
    }

    fn get(&self, id: ConversationId) -> String {
        self.0.get(&id).cloned().unwrap_or_else(|| id.0.to_string())
    }
}

async fn watch(ctx: &Ctx, args: WatchArgs) -> anyhow::Result<()> {
    let options = ctx.options()?;
    let mut client = Client::new(options.clone());
    client.connect().await?;
    let mut filter = None;
    if !args.conversations.is_empty() {
        let mut ids = Vec::new();
        for c in &args.conversations {
            ids.push(resolve_conversation(&mut client, c).await?);
        }
        filter = Some(ids);
    }
    let mut labels = Labels(HashMap::new());
    let mut names = Names::default();
    let me = client.welcome().and_then(|w| w.user);
    let convs = client.list_conversations().await?;
    labels.add_all(&mut client, &mut names, me, &convs).await;
    // Notices go to stderr in every mode (stdout stays one JSON object per
    // line with --json).
    client.on_notice(move |notice| match notice {
        Notice::Retrying { error, delay } => {
            eprintln!(
                "courier: {error}; reconnecting in {:.1}s",
                delay.as_secs_f64()
            )
        }
        Notice::Connected { generation, server } if generation > 1 => {
            eprintln!("courier: reconnected to {server}")
        }
        Notice::Connected { .. } => {}
    });
    let mut session_options = SessionOptions::new(options);
    session_options.filter = filter;
    session_options.from_start = args.from_start;
    session_options.cursor_file = args.cursor_file;
    let mut session = Session::with_client(client, session_options).await?;
    let result = watch_loop(ctx, &mut session, &mut labels, &mut names, me).await;
    // Keep where we got to, whatever ended the loop.
    let saved = session.save_cursors();
    match result {
        Err(e) if e.is::<super::output::StdoutClosed>() => saved.map_err(Into::into),
        other => other.and(saved.map_err(Into::into)),
    }
}

async fn watch_loop(
    ctx: &Ctx,
    session: &mut Session,
    labels: &mut Labels,
    names: &mut Names,
    me: Option<UserId>,
) -> anyhow::Result<()> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            event = session.next() => event?,
            _ = &mut interrupted => return Ok(()),
        };
        match event {
            SessionEvent::Message(m) => {
                names.learn(session.client(), &[m.sender]).await;
                print_message(ctx, labels, names, &m)?;
                // Issue 16, part 4: later lines carry the channel's new name.
                if m.change.is_some_and(|c| c.kind == ChangeKind::Rename) {
                    labels.0.insert(m.conversation, format!("#{}", m.body));
                }
            }
            SessionEvent::Joined(info) => {
                let joined = std::slice::from_ref(&info);
                labels.add_all(session.client(), names, me, joined).await;
                if !ctx.out.json {
                    eprintln!(
                        "courier: joined {} (id {})",
                        conversation_label(&info),
                        info.id.0
                    );
                }
            }
            SessionEvent::Left(id) => {
                if !ctx.out.json {
                    eprintln!("courier: left {}", labels.get(id));
                }
            }
            SessionEvent::ProfileChanged { user, version } => {
                // Issue 16, part 5: silent; the next line by this user
                // fetches the new profile (and shows the new name).
                names.on_changed(user, version);
            }
            SessionEvent::Typing { conversation, user } => {
                // Issue 17, part 4: a transient status, not a message line
                // (stderr in text mode, so stdout stays one message a line).
                names.learn(session.client(), &[user]).await;
                let who = names.get(user);
                let label = labels.get(conversation);
                super::around::print_typing(ctx, conversation, &label, user, who.as_deref())?;
            }
            SessionEvent::CaughtUp { .. }
            | SessionEvent::ReadCursor { .. }
            | SessionEvent::Notify { .. }
            | SessionEvent::Presence { .. } => {}
        }
    }
}

pub(super) fn print_message(
    ctx: &Ctx,
    labels: &Labels,
    names: &Names,
    m: &Message,
) -> anyhow::Result<()> {
    let name = names.get(m.sender);
    let conversation_name = labels.name(m.conversation);
    ctx.out
        .emit(message_json(m, name.as_deref(), conversation_name), || {
            message_text(&labels.get(m.conversation), m, name.as_deref())
        })
}

async fn history(
    ctx: &Ctx,
    conversation: &str,
    before: Option<u64>,
    after: Option<u64>,
    limit: u32,
) -> anyhow::Result<()> {
    if limit == 0 || limit > HISTORY_LIMIT_MAX {
        return Err(usage(format!("--limit must be 1..={HISTORY_LIMIT_MAX}")));
    }
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    let page_max = courier_tools::constants::HISTORY_PAGE;
    let mut messages: Vec<Message> = Vec::new();
    if let Some(after) = after {
        // Forward from `after`.
        let mut cursor = Seq(after);
        while messages.len() < limit as usize {
            let want = (limit - messages.len() as u32).min(page_max);
            let page = client
                .history(id, HistoryAnchor::After(cursor), want)
                .await?;
            let Some(last) = page.messages.last().map(|m| m.seq) else {
                break;
            };
            if last <= cursor {
                break;
            }
            cursor = last;
            messages.extend(page.messages.into_iter().filter(|m| m.seq <= last));
        }
        messages.truncate(limit as usize);
    } else {
        // Backward from the head or from `before`, then print oldest first.
        let mut anchor = before.map_or(HistoryAnchor::Latest, |b| HistoryAnchor::Before(Seq(b)));
        let mut pages: Vec<Vec<Message>> = Vec::new();
        let mut count = 0usize;
        while count < limit as usize {
            let want = (limit - count as u32).min(page_max);
            let page = client.history(id, anchor, want).await?;
            let Some(first) = page.messages.first().map(|m| m.seq) else {
                break;
            };
            count += page.messages.len();
            pages.push(page.messages);
            if first <= Seq(1) {
                break;
            }
            anchor = HistoryAnchor::Before(first);
        }
        for page in pages.into_iter().rev() {
            messages.extend(page);
        }
        let excess = messages.len().saturating_sub(limit as usize);
        messages.drain(..excess);
    }
    let mut labels = Labels(HashMap::new());
    let mut names = Names::default();
    let me = client.welcome().and_then(|w| w.user);
    // The conversation's label as `watch` shows it (as given when it is
    // not listed, e.g. a public channel previewed without joining).
    let listed: Vec<ConversationInfo> = client
        .list_conversations()
        .await
        .map(|all| all.into_iter().filter(|c| c.id == id).collect())
        .unwrap_or_default();
    labels.add_all(&mut client, &mut names, me, &listed).await;
    if listed.is_empty() {
        labels.0.insert(id, conversation.to_owned());
    }
    let senders: Vec<UserId> = messages.iter().map(|m| m.sender).collect();
    names.learn(&mut client, &senders).await;
    // Issue 17: messages come in their current state; the edits, deletes
    // and reactions among the seqs are already applied, so not listed.
    // Channel settings (issue 16, part 4) are timeline lines of their own.
    let shown = |m: &&Message| m.change.is_none_or(|c| c.kind.is_setting());
    for m in messages.iter().filter(shown) {
        print_message(ctx, &labels, &names, m)?;
    }
    Ok(())
}

async fn unread(ctx: &Ctx) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let list = client.list_conversations().await?;
    let mut any = false;
    for c in list
        .iter()
        .filter(|c| c.member && (c.unread > 0 || c.mentions > 0))
    {
        any = true;
        ctx.out.emit(
            json!({
                "conversation": id_json(c.id.0),
                "name": c.name,
                "kind": kind_name(c.kind),
                "unread": c.unread,
                "mentions": c.mentions,
                "read": c.read.0,
                "head": c.head.0,
            }),
            || {
                format!(
                    "{:<24} {} unread, {} mention{} (id {})",
                    conversation_label(c),
                    c.unread,
                    c.mentions,
                    if c.mentions == 1 { "" } else { "s" },
                    c.id.0
                )
            },
        )?;
    }
    if !any && !ctx.out.json {
        ctx.out.emit(json!(null), || "nothing unread".to_owned())?;
    }
    Ok(())
}

async fn read(ctx: &Ctx, conversation: &str, seq: Option<u64>) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let id = resolve_conversation(&mut client, conversation).await?;
    let seq = match seq {
        Some(s) => Seq(s),
        None => client.history(id, HistoryAnchor::Latest, 1).await?.head,
    };
    client.mark_read(id, seq).await?;
    ctx.out.emit(
        json!({ "conversation": id_json(id.0), "seq": seq.0 }),
        || format!("marked {conversation} read up to {}", seq.0),
    )
}

/// Exit code for an error: 2 usage, 3 cannot reach the server, 1 otherwise
/// (a rejection or a local failure).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.is::<UsageError>()) {
        return 2;
    }
    match e.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
        Some(ce) if ce.is_connection() => 3,
        _ => 1,
    }
}

/// The error text for stderr, with a hint where one helps.
pub fn describe_error(e: &anyhow::Error) -> String {
    let hint = match e.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
        Some(ce) if ce.is_connection() => {
            "\nhint: is courierd running there? Pass --server URL, set COURIER_SERVER, or run `courier login`.".to_owned()
        }
        Some(ce) => match ce.reject() {
            Some(Reject::Unauthenticated) => "\nhint: check --token / COURIER_TOKEN, or run `courier login --server URL --token TOKEN`.".to_owned(),
            Some(Reject::NotAdmin) => "\nhint: admin commands need the admin token: --token \"$(cat DATA_DIR/admin.token)\".".to_owned(),
            _ => String::new(),
        },
        None => String::new(),
    };
    format!("{e:#}{hint}")
}
