//! Typed calls for every request of the protocol, shared by anything that
//! can carry a [`Request`] to the server and bring back its [`Response`]: a
//! bare [`crate::Connection`] or a reconnecting [`crate::Client`].
//!
//! Each method checks that the reply is of the kind the request promises and
//! returns [`ClientError::Protocol`] otherwise; rejections come back as
//! [`ClientError::Rejected`].

use crate::connection::response_name;
use crate::error::ClientError;
use courier_core::api::{
    BootPage, Broadcast, ClientMsgId, ConversationId, ConversationInfo, Credential, HistoryAnchor,
    LookupKind, Message, Millis, NotifyLevel, Request, Response, Seq, SyncConversation, UserId,
    WorkspaceId,
};
use std::future::Future;

/// A user token the server just issued (shown only once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The user.
    pub user: UserId,
    /// The token's id (what `RevokeToken` names).
    pub token_id: u64,
    /// The credential itself.
    pub credential: Credential,
    /// Its text form `cu1_…`, for `--token` and config files.
    pub text: String,
}

/// The acknowledgement of a durable send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendAck {
    /// The conversation.
    pub conversation: ConversationId,
    /// The message's seq.
    pub seq: Seq,
    /// Server time of sequencing.
    pub ts: Millis,
    /// `@channel`/`@here` was ignored for notifications (channel too big).
    pub broadcast_ignored: bool,
}

/// The answer to `Sync`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReply {
    /// Conversations changed after the client's cursors.
    pub changed: Vec<SyncConversation>,
    /// Conversations named by the client that the user can no longer see.
    pub gone: Vec<ConversationId>,
}

/// One page of history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    /// Messages in ascending seq order.
    pub messages: Vec<Message>,
    /// The conversation's head when the page was read.
    pub head: Seq,
}

/// A message to send: the body and its mentions.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Outgoing {
    /// UTF-8 text.
    pub body: String,
    /// Users mentioned directly.
    pub mentions: Vec<UserId>,
    /// `@channel` / `@here`.
    pub broadcast: Broadcast,
}

impl Outgoing {
    /// A plain text message without mentions.
    pub fn text(body: impl Into<String>) -> Outgoing {
        Outgoing {
            body: body.into(),
            ..Outgoing::default()
        }
    }
}

pub(crate) fn unexpected(what: &str, got: &Response) -> ClientError {
    ClientError::Protocol(format!(
        "expected a {what} reply, got {}",
        response_name(got)
    ))
}

/// Something that carries requests to a server. Implementors provide
/// [`Requester::call`]; every typed method is built on it.
pub trait Requester {
    /// Sends `request` and returns the server's successful response, or
    /// [`ClientError::Rejected`] with its rejection.
    fn call(&mut self, request: Request) -> impl Future<Output = Result<Response, ClientError>>;

    /// Admin: creates a workspace.
    fn create_workspace(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<WorkspaceId, ClientError>> {
        let request = Request::CreateWorkspace {
            name: name.to_owned(),
        };
        async move {
            match self.call(request).await? {
                Response::WorkspaceCreated { workspace } => Ok(workspace),
                other => Err(unexpected("WorkspaceCreated", &other)),
            }
        }
    }

    /// Admin: creates a user and returns its first token.
    fn create_user(
        &mut self,
        workspace: WorkspaceId,
        name: &str,
    ) -> impl Future<Output = Result<IssuedToken, ClientError>> {
        let request = Request::CreateUser {
            workspace,
            name: name.to_owned(),
        };
        async move { token_reply(self.call(request).await?) }
    }

    /// Admin: issues another device token for `user`.
    fn issue_token(
        &mut self,
        user: UserId,
    ) -> impl Future<Output = Result<IssuedToken, ClientError>> {
        async move { token_reply(self.call(Request::IssueToken { user }).await?) }
    }

    /// Admin: revokes one token of `user`, or all of them (`None`).
    fn revoke_token(
        &mut self,
        user: UserId,
        token: Option<u64>,
    ) -> impl Future<Output = Result<(), ClientError>> {
        async move { done_reply(self.call(Request::RevokeToken { user, token }).await?) }
    }

    /// Creates a channel (the caller joins it).
    fn create_channel(
        &mut self,
        name: &str,
        private: bool,
    ) -> impl Future<Output = Result<ConversationInfo, ClientError>> {
        let request = Request::CreateChannel {
            name: name.to_owned(),
            private,
        };
        async move { conversation_reply(self.call(request).await?) }
    }

    /// Joins a public channel.
    fn join(
        &mut self,
        conversation: ConversationId,
    ) -> impl Future<Output = Result<ConversationInfo, ClientError>> {
        async move { conversation_reply(self.call(Request::Join { conversation }).await?) }
    }

    /// Leaves a channel.
    fn leave(
        &mut self,
        conversation: ConversationId,
    ) -> impl Future<Output = Result<(), ClientError>> {
        async move { done_reply(self.call(Request::Leave { conversation }).await?) }
    }

    /// Adds `user` to a channel the caller is in.
    fn invite(
        &mut self,
        conversation: ConversationId,
        user: UserId,
    ) -> impl Future<Output = Result<(), ClientError>> {
        async move { done_reply(self.call(Request::Invite { conversation, user }).await?) }
    }

    /// Removes `user` from a channel.
    fn remove(
        &mut self,
        conversation: ConversationId,
        user: UserId,
    ) -> impl Future<Output = Result<(), ClientError>> {
        async move { done_reply(self.call(Request::Remove { conversation, user }).await?) }
    }

    /// Opens (or finds) the DM / group DM with `users` besides the caller.
    fn open_dm(
        &mut self,
        users: Vec<UserId>,
    ) -> impl Future<Output = Result<ConversationInfo, ClientError>> {
        async move { conversation_reply(self.call(Request::OpenDm { users }).await?) }
    }

    /// Public channels of the workspace plus every conversation the caller is in.
    fn list_conversations(
        &mut self,
    ) -> impl Future<Output = Result<Vec<ConversationInfo>, ClientError>> {
        async move {
            match self.call(Request::ListConversations).await? {
                Response::Conversations(list) => Ok(list),
                other => Err(unexpected("Conversations", &other)),
            }
        }
    }

    /// Resolves a user or channel name of the caller's workspace to its id.
    fn lookup(
        &mut self,
        name: &str,
        kind: LookupKind,
    ) -> impl Future<Output = Result<u64, ClientError>> {
        let request = Request::Lookup {
            name: name.to_owned(),
            kind,
        };
        async move {
            match self.call(request).await? {
                Response::Found { id } => Ok(id),
                other => Err(unexpected("Found", &other)),
            }
        }
    }

    /// Sends one message with the given idempotency key. This is a single
    /// attempt: retrying the *same* `client_msg_id` after a timeout or
    /// reconnect never creates a second message ([`crate::Client::send`]
    /// does exactly that).
    fn send_once(
        &mut self,
        conversation: ConversationId,
        client_msg_id: ClientMsgId,
        message: &Outgoing,
    ) -> impl Future<Output = Result<SendAck, ClientError>> {
        let request = send_request(conversation, client_msg_id, message);
        async move { ack_reply(self.call(request).await?) }
    }

    /// Asks what changed after `cursors` (`(conversation, last seq held)`)
    /// and `reads` (the read cursor known for each entry of `cursors`, same
    /// order; a conversation whose read cursor differs is in the reply even
    /// if its head did not move; empty: heads only).
    fn sync(
        &mut self,
        cursors: Vec<(ConversationId, Seq)>,
        reads: Vec<Seq>,
    ) -> impl Future<Output = Result<SyncReply, ClientError>> {
        async move {
            match self.call(Request::Sync { cursors, reads }).await? {
                Response::Sync { changed, gone } => Ok(SyncReply { changed, gone }),
                other => Err(unexpected("Sync", &other)),
            }
        }
    }

    /// A page of one conversation's history.
    fn history(
        &mut self,
        conversation: ConversationId,
        anchor: HistoryAnchor,
        limit: u32,
    ) -> impl Future<Output = Result<HistoryPage, ClientError>> {
        let request = Request::History {
            conversation,
            anchor,
            limit,
        };
        async move {
            match self.call(request).await? {
                Response::History { messages, head } => Ok(HistoryPage { messages, head }),
                other => Err(unexpected("History", &other)),
            }
        }
    }

    /// The first screen: a page of the conversation list and the newest
    /// messages of the first conversations.
    fn boot(
        &mut self,
        limit: u32,
        offset: u32,
    ) -> impl Future<Output = Result<BootPage, ClientError>> {
        async move {
            match self.call(Request::Boot { limit, offset }).await? {
                Response::Boot(page) => Ok(*page),
                other => Err(unexpected("Boot", &other)),
            }
        }
    }

    /// Advances the caller's read cursor (every device of the user sees it).
    fn mark_read(
        &mut self,
        conversation: ConversationId,
        seq: Seq,
    ) -> impl Future<Output = Result<(), ClientError>> {
        async move { done_reply(self.call(Request::MarkRead { conversation, seq }).await?) }
    }

    /// Sets the notification preference of one conversation.
    fn set_notify(
        &mut self,
        conversation: ConversationId,
        level: NotifyLevel,
        muted: bool,
    ) -> impl Future<Output = Result<(), ClientError>> {
        let request = Request::SetNotify {
            conversation,
            level,
            muted,
        };
        async move { done_reply(self.call(request).await?) }
    }

    /// Tells the server which conversation is on screen and whether the
    /// person is active on this device.
    fn set_focus(
        &mut self,
        focused: Option<ConversationId>,
        active: bool,
    ) -> impl Future<Output = Result<(), ClientError>> {
        async move { done_reply(self.call(Request::SetFocus { focused, active }).await?) }
    }

    /// Do-not-disturb until `until` (`None` ends it).
    fn set_dnd(&mut self, until: Option<Millis>) -> impl Future<Output = Result<(), ClientError>> {
        async move { done_reply(self.call(Request::SetDnd { until }).await?) }
    }
}

/// The `Send` request for one message.
pub fn send_request(
    conversation: ConversationId,
    client_msg_id: ClientMsgId,
    message: &Outgoing,
) -> Request {
    Request::Send {
        conversation,
        client_msg_id,
        body: message.body.clone(),
        mentions: message.mentions.clone(),
        broadcast: message.broadcast,
    }
}

pub(crate) fn ack_reply(response: Response) -> Result<SendAck, ClientError> {
    match response {
        Response::SendAck {
            conversation,
            seq,
            ts,
            broadcast_ignored,
        } => Ok(SendAck {
            conversation,
            seq,
            ts,
            broadcast_ignored,
        }),
        other => Err(unexpected("SendAck", &other)),
    }
}

fn token_reply(response: Response) -> Result<IssuedToken, ClientError> {
    match response {
        Response::TokenIssued {
            user,
            token,
            secret,
        } => Ok(IssuedToken {
            user,
            token_id: token,
            text: courier_proto::token::format_user(user, token, &secret),
            credential: Credential::User {
                user,
                token,
                secret,
            },
        }),
        other => Err(unexpected("TokenIssued", &other)),
    }
}

fn conversation_reply(response: Response) -> Result<ConversationInfo, ClientError> {
    match response {
        Response::Conversation(info) => Ok(info),
        other => Err(unexpected("Conversation", &other)),
    }
}

/// Requests that answer "done" may also answer with the conversation they
/// touched; both mean success.
fn done_reply(response: Response) -> Result<(), ClientError> {
    match response {
        Response::Done | Response::Conversation(_) => Ok(()),
        other => Err(unexpected("Done", &other)),
    }
}

impl Requester for crate::connection::Connection {
    fn call(&mut self, request: Request) -> impl Future<Output = Result<Response, ClientError>> {
        self.request(request)
    }
}
