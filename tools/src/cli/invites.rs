//! `courier invite create|redeem|list|revoke|policy` (issue 16, part 3):
//! workspace invites — their arguments (clap derive, used by `args.rs`)
//! and how they run and print. Redeeming needs no token: it opens a
//! connection of its own with no session.

use super::args::{parse_role, RoleArg};
use super::commands::{usage, Ctx};
use super::output::id_json;
use clap::Subcommand;
use courier_core::api::{InviteInfo, ProfileUpdate, Role, WorkspaceId};
use courier_tools::token::parse;
use courier_tools::{Client, ClientOptions, ConnectOptions, People};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

/// `courier invite …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum InviteCommand {
    /// Create an invite and print its code (shown only now). Admins and
    /// owners; members too when the workspace allows it (`invite policy`).
    Create {
        /// How many users it may create.
        #[arg(long, value_name = "N", default_value_t = 1)]
        uses: u32,
        /// Valid for this long: 90s, 30m, 12h or 7d (at most 30d).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_expiry)]
        expires: u64,
        /// The role it gives: member (the default), guest or admin.
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: Option<RoleArg>,
        /// Workspace id (only with the admin token).
        #[arg(long, value_name = "ID")]
        workspace: Option<u64>,
    },
    /// Redeem an invite code: creates your user with HANDLE and prints its
    /// token (needs no token; save it with `courier login`).
    Redeem {
        /// The invite code (ci1_…).
        code: String,
        /// Your handle, unique in the workspace.
        #[arg(long, value_name = "HANDLE")]
        handle: String,
        /// Your display name (set with the new token right after).
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
    },
    /// The workspace's invites (admins and owners).
    List {
        /// Workspace id (only with the admin token).
        #[arg(long, value_name = "ID")]
        workspace: Option<u64>,
    },
    /// Revoke an invite (admins and owners).
    Revoke {
        /// Invite id (from `invite list`).
        #[arg(value_name = "ID")]
        id: u64,
        /// Workspace id (only with the admin token).
        #[arg(long, value_name = "ID")]
        workspace: Option<u64>,
    },
    /// Who may create invites: `admins` (the default) or `members`.
    Policy {
        /// admins or members.
        #[arg(value_name = "WHO", value_parser = ["admins", "members"])]
        who: String,
        /// Workspace id (only with the admin token).
        #[arg(long, value_name = "ID")]
        workspace: Option<u64>,
    },
}

/// `90s`, `30m`, `12h`, `7d` (a bare number is seconds) → milliseconds.
pub fn parse_expiry(s: &str) -> Result<u64, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and s, m, h or d (e.g. 7d)"))?;
    let scale = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("{s:?}: out of range"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn invite_json(i: &InviteInfo) -> serde_json::Value {
    json!({
        "id": id_json(i.id),
        "workspace": id_json(i.workspace.0),
        "role": i.role.name(),
        "uses": i.uses,
        "max_uses": i.max_uses,
        "created_ms": i.created.0,
        "expires_ms": i.expires.0,
        "revoked": i.revoked,
        "creator": i.creator.map(|u| id_json(u.0)),
    })
}

fn invite_line(i: &InviteInfo) -> String {
    let now = now_ms();
    let state = if i.revoked {
        "revoked".to_owned()
    } else if i.uses >= i.max_uses {
        "used up".to_owned()
    } else if now >= i.expires.0 {
        "expired".to_owned()
    } else {
        let left = (i.expires.0 - now) / 60_000;
        format!("expires in {}h{:02}m", left / 60, left % 60)
    };
    format!(
        "#{}  {}  {}/{} used  {state}",
        i.id,
        i.role.name(),
        i.uses,
        i.max_uses
    )
}

/// Runs `courier invite …`.
pub async fn invite(ctx: &Ctx, cmd: InviteCommand) -> anyhow::Result<()> {
    if let InviteCommand::Redeem {
        code,
        handle,
        display_name,
    } = cmd
    {
        return redeem(ctx, &code, &handle, display_name).await;
    }
    let mut client = ctx.client().await?;
    let ws = |w: Option<u64>| w.map(WorkspaceId);
    match cmd {
        InviteCommand::Create {
            uses,
            expires,
            role,
            workspace,
        } => {
            let role = role.map_or(Role::Member, |r| r.0);
            let (info, code) = client
                .create_invite(ws(workspace), uses, expires, role)
                .await?;
            let mut value = invite_json(&info);
            value["code"] = json!(code);
            ctx.out.emit(value, || {
                format!(
                    "{code}\n(invite #{}: {}, {} use(s); redeem with `courier invite redeem CODE --handle NAME`)",
                    info.id,
                    info.role.name(),
                    info.max_uses
                )
            })
        }
        InviteCommand::List { workspace } => {
            for i in client.list_invites(ws(workspace)).await? {
                ctx.out.emit(invite_json(&i), || invite_line(&i))?;
            }
            Ok(())
        }
        InviteCommand::Revoke { id, workspace } => {
            client.revoke_invite(ws(workspace), id).await?;
            ctx.out
                .emit(json!({ "id": id_json(id), "revoked": true }), || {
                    format!("revoked invite #{id}")
                })
        }
        InviteCommand::Policy { who, workspace } => {
            let members = who == "members";
            client.set_invite_policy(ws(workspace), members).await?;
            ctx.out.emit(json!({ "members_may_invite": members }), || {
                format!("invites are created by {who}")
            })
        }
        InviteCommand::Redeem { .. } => Ok(()), // handled above
    }
}

async fn redeem(
    ctx: &Ctx,
    code: &str,
    handle: &str,
    display_name: Option<String>,
) -> anyhow::Result<()> {
    courier_tools::token::parse_invite(code)
        .map_err(|_| usage("malformed invite code: expected ci1_ followed by 96 hex digits"))?;
    let (user, token) =
        courier_tools::redeem_invite(&ctx.server, code, handle, ctx.timeout).await?;
    if let Some(name) = display_name {
        let credential = parse(&token).map_err(|_| usage("the server sent a malformed token"))?;
        let mut connect = ConnectOptions::new(ctx.server.clone(), credential);
        connect.device.name = "courier-cli".to_owned();
        let mut options = ClientOptions::new(connect);
        options.retry_deadline = Some(ctx.timeout);
        let mut client = Client::new(options);
        client.connect().await?;
        let update = ProfileUpdate {
            display_name: Some(name),
            ..ProfileUpdate::default()
        };
        client.set_profile(None, update).await?;
    }
    ctx.out.emit(
        json!({ "user": id_json(user.0), "handle": handle, "token": token }),
        || format!("user {} (@{handle})\n{token}", user.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_units() {
        assert_eq!(parse_expiry("90s"), Ok(90_000));
        assert_eq!(parse_expiry("90"), Ok(90_000));
        assert_eq!(parse_expiry("30m"), Ok(1_800_000));
        assert_eq!(parse_expiry("12h"), Ok(43_200_000));
        assert_eq!(parse_expiry("7d"), Ok(604_800_000));
        for bad in ["", "d", "7w", "0s", "-1d", "99999999999999999999d"] {
            assert!(parse_expiry(bad).is_err(), "{bad:?}");
        }
    }
}
