//! Building a scenario's world before measuring: a workspace, users (with
//! their tokens), channels and memberships, through the client library's
//! [`Connection`] with requests pipelined ([`SETUP_IN_FLIGHT`] at a time).
//! Setup is not measured, only reported (its duration), so it uses the
//! convenient library rather than the lean load-generator client.

use crate::server::Target;
use anyhow::{anyhow, Context};
use courier_core::api::{ConversationId, Credential, Request, Response, UserId, WorkspaceId};
use courier_tools::{ConnectOptions, Connection};
use futures::stream::{self, StreamExt};
use std::time::Duration;

/// Setup requests in flight on one connection.
pub const SETUP_IN_FLIGHT: usize = 256;

/// A user of the scenario's world.
#[derive(Clone, Debug)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its credential.
    pub credential: Credential,
}

fn options(target: &Target, credential: Credential) -> ConnectOptions {
    let mut o = ConnectOptions::new(target.url(), credential);
    o.in_flight_max = SETUP_IN_FLIGHT;
    o.request_timeout = Duration::from_secs(120);
    o.connect_timeout = Duration::from_secs(30);
    o.event_queue_max = 64;
    o.device.name = "courier-bench-setup".to_owned();
    o
}

/// Connects with the library client (events are drained and dropped).
pub async fn connect(target: &Target, credential: &Credential) -> anyhow::Result<Connection> {
    let (conn, mut events) = Connection::connect(&options(target, credential.clone()))
        .await
        .context("setup connection")?;
    tokio::task::spawn_local(async move { while events.next().await.is_some() {} });
    Ok(conn)
}

/// Sends `request` expecting success.
pub async fn call(conn: &Connection, request: Request) -> anyhow::Result<Response> {
    conn.request(request).await.map_err(|e| anyhow!("{e}"))
}

/// A workspace and `n` users named `{prefix}{i}`.
pub async fn workspace_with_users(
    target: &Target,
    name: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<(WorkspaceId, Vec<User>)> {
    let admin = connect(target, &target.admin).await?;
    let workspace = match call(
        &admin,
        Request::CreateWorkspace {
            name: name.to_owned(),
        },
    )
    .await?
    {
        Response::WorkspaceCreated { workspace } => workspace,
        other => return Err(anyhow!("CreateWorkspace answered {other:?}")),
    };
    let users = more_users(&admin, workspace, prefix, 0..n).await?;
    admin.close().await;
    Ok((workspace, users))
}

/// Creates users `{prefix}{i}` for `i` in `range`.
pub async fn more_users(
    admin: &Connection,
    workspace: WorkspaceId,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<User>> {
    stream::iter(range)
        .map(|i| {
            let request = Request::CreateUser {
                workspace,
                name: format!("{prefix}{i}"),
            };
            async move {
                match call(admin, request).await? {
                    Response::TokenIssued {
                        user,
                        token,
                        secret,
                    } => Ok(User {
                        id: user,
                        credential: Credential::User {
                            user,
                            token,
                            secret,
                        },
                    }),
                    other => Err(anyhow!("CreateUser answered {other:?}")),
                }
            }
        })
        .buffered(SETUP_IN_FLIGHT)
        .collect::<Vec<anyhow::Result<User>>>()
        .await
        .into_iter()
        .collect()
}

/// Creates public channels `{prefix}{i}` for `i` in `0..n` as `conn`'s user.
pub async fn channels(
    conn: &Connection,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<ConversationId>> {
    stream::iter(0..n)
        .map(|i| {
            let request = Request::CreateChannel {
                name: format!("{prefix}{i}"),
                private: false,
            };
            async move {
                match call(conn, request).await? {
                    Response::Conversation(info) => Ok(info.id),
                    other => Err(anyhow!("CreateChannel answered {other:?}")),
                }
            }
        })
        .buffered(SETUP_IN_FLIGHT)
        .collect::<Vec<anyhow::Result<ConversationId>>>()
        .await
        .into_iter()
        .collect()
}

/// Invites every `(conversation, user)` pair, as `conn`'s user (a member).
pub async fn invite(conn: &Connection, pairs: &[(ConversationId, UserId)]) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<Response>> = stream::iter(pairs.iter().copied())
        .map(|(conversation, user)| call(conn, Request::Invite { conversation, user }))
        .buffer_unordered(SETUP_IN_FLIGHT)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// Sends `count` messages of `body_bytes` to each of `conversations` (setup
/// traffic: history to read back, previews to show).
pub async fn post(
    conn: &Connection,
    conversations: &[ConversationId],
    count: usize,
    body_bytes: usize,
) -> anyhow::Result<()> {
    let body = crate::payload::filler(body_bytes);
    let jobs = conversations
        .iter()
        .flat_map(|c| std::iter::repeat_n(*c, count));
    let results: Vec<anyhow::Result<Response>> = stream::iter(jobs)
        .map(|conversation| {
            call(
                conn,
                Request::Send {
                    conversation,
                    client_msg_id: crate::payload::client_msg_id(),
                    body: body.clone(),
                    mentions: Vec::new(),
                    broadcast: courier_core::api::Broadcast::None,
                },
            )
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}
