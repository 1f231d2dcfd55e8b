//! A reconnecting client: one logical session to a server across any number
//! of [`Connection`]s. It reconnects with exponential backoff and jitter,
//! retries idempotent requests over reconnects, and sends messages with a
//! fresh random `client_msg_id` that it reuses for every retry of that send,
//! so a retry after a timeout or a dropped connection never creates a second
//! message (the server answers a repeated id with the original ack).
//!
//! **Several servers.** `ConnectOptions::url` may list several servers (the
//! nodes of a cluster: `ws://a:7070,ws://b:7070`). A connection attempt is
//! a round over the list starting at the server that last worked: each is
//! tried once, with no pause between them, and the backoff delay comes
//! only after a whole round failed. A client therefore stays on one server
//! while it serves and moves to the next as soon as it cannot be reached.
//! Nothing else changes on a failover: it is a reconnect, so sends keep
//! their `client_msg_id` and a [`crate::Session`] re-syncs from its cursors,
//! which is what makes it exactly-once (given servers that share the data,
//! as a cluster's nodes do). A blackholed server costs one
//! `connect_timeout` per round before the next is tried.
//!
//! **The primary.** A cluster node that is not the serving primary closes
//! the session with 4011 `NOT_SERVING`, naming the primary
//! (`primary=ws://HOST:PORT` in the close reason) when it knows it. The
//! client then tries the named server next if it is in its list (and not
//! yet tried in this round), else the next one, at once; a round in which
//! every server refused with 4011 (an election under way) is followed by
//! the backoff delay capped at [`NOT_SERVING_RETRY_MAX`], and the next
//! round starts at the last server named. So a failover to the primary
//! costs one extra connection attempt, not a backoff. A request the
//! cluster answers `Unavailable` (`PeerTimeout`) because the primary changed
//! is retried with the same cap ([`ClientError::is_failover`]), and a
//! successful request resets the backoff.
//!
//! Failure contract: transient failures (connect errors, dropped
//! connections, timeouts, `Unavailable`, `RateLimited`) are retried until
//! [`ClientOptions::retry_deadline`] runs out, then returned; permanent ones
//! (bad token, revoked token, any other rejection) are returned at once.

use crate::backoff::Backoff;
use crate::connection::{ConnectOptions, Connection, Events, Welcome};
use crate::constants::NOT_SERVING_RETRY_MAX;
use crate::error::ClientError;
use crate::requester::{ack_reply, send_request, Outgoing, Requester, SendAck};
use courier_core::api::{ChangeKind, ClientMsgId, ConversationId, Reject, Request, Response, Seq};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Options of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Where and how to connect.
    pub connect: ConnectOptions,
    /// How long one operation (a request, a send, a reconnect) keeps
    /// retrying transient failures; `None` retries forever.
    pub retry_deadline: Option<Duration>,
    /// Reconnect delays.
    pub backoff: Backoff,
}

impl ClientOptions {
    /// Options with the default backoff and a 30 s retry deadline.
    pub fn new(connect: ConnectOptions) -> ClientOptions {
        ClientOptions {
            connect,
            retry_deadline: Some(Duration::from_secs(30)),
            backoff: Backoff::default(),
        }
    }
}

/// Something worth telling a person while a client recovers.
#[derive(Debug)]
pub enum Notice<'a> {
    /// A new connection is up (`generation` counts connections).
    Connected {
        /// 1 for the first connection, then one more per reconnect.
        generation: u64,
        /// The server it reached (normalized URL).
        server: &'a str,
    },
    /// The connection ended or an attempt failed; next try after `delay`.
    Retrying {
        /// What went wrong.
        error: &'a ClientError,
        /// Wait before the next attempt.
        delay: Duration,
    },
}

type NoticeFn = Box<dyn FnMut(Notice<'_>) + Send>;

/// A reconnecting client (see the module docs). Requests go through
/// [`Requester`] methods; sends through [`Client::send`].
pub struct Client {
    options: ClientOptions,
    link: Option<(Connection, Events)>,
    backoff: Backoff,
    generation: u64,
    /// Index in the server list of the server that last worked (or 0).
    preferred: usize,
    welcome: Option<Welcome>,
    on_notice: Option<NoticeFn>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.options.connect.url)
            .field("connected", &self.link.is_some())
            .field("generation", &self.generation)
            .finish()
    }
}

/// True for requests that can be repeated without changing the outcome, so
/// they are retried over reconnects. `Send` is made idempotent by its
/// `client_msg_id`; creations are not retried once sent.
pub fn is_idempotent(request: &Request) -> bool {
    !matches!(
        request,
        Request::CreateWorkspace { .. }
            | Request::CreateUser { .. }
            | Request::IssueToken { .. }
            | Request::CreateChannel { .. }
    )
}

impl Client {
    /// A client that has not connected yet.
    pub fn new(options: ClientOptions) -> Client {
        let backoff = options.backoff.clone();
        Client {
            options,
            link: None,
            backoff,
            generation: 0,
            preferred: 0,
            welcome: None,
            on_notice: None,
        }
    }

    /// Calls `f` on every reconnect and retry (e.g. to print a line).
    pub fn on_notice(&mut self, f: impl FnMut(Notice<'_>) + Send + 'static) {
        self.on_notice = Some(Box::new(f));
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// How many connections were established so far; changes exactly when a
    /// new connection (with a fresh subscription) is up.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The `Welcome` of the latest connection.
    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome
    }

    /// The current connection, if it is up.
    pub fn connection(&self) -> Option<&Connection> {
        self.link
            .as_ref()
            .map(|(c, _)| c)
            .filter(|c| !c.is_closed())
    }

    /// The current connection's event stream, if connected.
    pub fn events(&mut self) -> Option<&mut Events> {
        self.link.as_mut().map(|(_, e)| e)
    }

    /// Drops the current connection (the next operation reconnects).
    pub fn disconnect(&mut self) {
        self.link = None;
    }

    /// Connects if not connected, retrying transient failures with backoff
    /// within the retry deadline. Returns the connection's `Welcome`.
    pub async fn connect(&mut self) -> Result<Welcome, ClientError> {
        let deadline = self.deadline();
        self.ensure(deadline).await.map(|c| c.welcome())
    }

    /// Connects if not connected, retrying transient failures forever.
    pub async fn connect_forever(&mut self) -> Result<Welcome, ClientError> {
        self.ensure(None).await.map(|c| c.welcome())
    }

    /// Changes how long operations retry transient failures (`None`: forever).
    pub fn set_retry_deadline(&mut self, deadline: Option<Duration>) {
        self.options.retry_deadline = deadline;
    }

    fn deadline(&self) -> Option<Instant> {
        self.options.retry_deadline.map(|d| Instant::now() + d)
    }

    /// Reports `error`, then sleeps the next backoff delay; fails with
    /// `error` if the deadline would pass first.
    pub async fn pause_after(
        &mut self,
        error: ClientError,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        let mut delay = self.backoff.next_delay();
        if let Some(Reject::RateLimited { retry_after_ms, .. }) = error.reject() {
            delay = delay.max(Duration::from_millis(retry_after_ms));
        }
        if error.is_failover() {
            delay = delay.min(NOT_SERVING_RETRY_MAX);
        }
        if let Some(deadline) = deadline {
            if Instant::now() + delay > deadline {
                return Err(error);
            }
        }
        if let Some(f) = self.on_notice.as_mut() {
            f(Notice::Retrying {
                error: &error,
                delay,
            });
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    async fn ensure(&mut self, deadline: Option<Instant>) -> Result<Connection, ClientError> {
        loop {
            if let Some(conn) = self.connection() {
                return Ok(conn.clone());
            }
            self.link = None;
            match self.connect_round().await {
                Ok((conn, events, server)) => {
                    self.generation += 1;
                    self.backoff.reset();
                    self.welcome = Some(conn.welcome());
                    self.link = Some((conn.clone(), events));
                    let generation = self.generation;
                    if let Some(f) = self.on_notice.as_mut() {
                        f(Notice::Connected {
                            generation,
                            server: &server,
                        });
                    }
                    return Ok(conn);
                }
                Err(e) if e.is_transient() => self.pause_after(e, deadline).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt at each server, starting with the one that last worked;
    /// the first that connects becomes the preferred one. A server that
    /// refuses with 4011 naming the primary sends the round to that server
    /// next, if listed and not tried yet (and the next round starts there).
    /// A permanent failure (e.g. a bad token, which every node of a cluster
    /// shares) ends the round at once; otherwise the last failure is
    /// returned.
    async fn connect_round(&mut self) -> Result<(Connection, Events, String), ClientError> {
        let servers = crate::connection::server_list(&self.options.connect.url)?;
        let mut last = None;
        let mut tried = vec![false; servers.len()];
        let mut index = self.preferred % servers.len().max(1);
        while let Some(server) = servers.get(index) {
            tried[index] = true;
            match Connection::connect_to(server, &self.options.connect).await {
                Ok((conn, events)) => {
                    self.preferred = index;
                    return Ok((conn, events, server.clone()));
                }
                Err(e) if e.is_transient() => {
                    let hinted = hinted_index(&servers, &e);
                    if let Some(h) = hinted {
                        self.preferred = h;
                    }
                    last = Some(e);
                    let next = (1..servers.len())
                        .map(|i| (index + i) % servers.len())
                        .find(|&i| !tried[i]);
                    match hinted.filter(|&h| !tried[h]).or(next) {
                        Some(i) => index = i,
                        None => break,
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::BadUrl {
            url: self.options.connect.url.clone(),
            reason: "no server".to_owned(),
        }))
    }

    /// Sends `request`, reconnecting as needed. Idempotent requests (see
    /// [`is_idempotent`]) are retried after transient failures until the
    /// retry deadline; others are sent once.
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let retry = is_idempotent(&request);
        let deadline = self.deadline();
        loop {
            let conn = self.ensure(deadline).await?;
            match conn.request(request.clone()).await {
                Ok(response) => {
                    // The next failure starts from the initial delay again:
                    // without this, a long-lived client's delays grew with
                    // every failover it ever went through (up to 5 s).
                    self.backoff.reset();
                    return Ok(response);
                }
                Err(e) if retry && e.is_transient() => {
                    if conn.is_closed() || matches!(e, ClientError::Timeout(_)) {
                        self.disconnect();
                    }
                    self.pause_after(e, deadline).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a message with a fresh random `client_msg_id`, retrying the
    /// same id until acknowledged (see [`Client::send_with_id`]).
    pub async fn send(
        &mut self,
        conversation: ConversationId,
        message: &Outgoing,
    ) -> Result<SendAck, ClientError> {
        self.send_with_id(conversation, new_client_msg_id(), message)
            .await
    }

    /// Sends a message with the given idempotency key, retrying *that key*
    /// over timeouts and reconnects until acknowledged or the retry deadline
    /// passes. However many attempts reach the server, at most one message
    /// exists afterwards and every ack names the same seq.
    pub async fn send_with_id(
        &mut self,
        conversation: ConversationId,
        client_msg_id: ClientMsgId,
        message: &Outgoing,
    ) -> Result<SendAck, ClientError> {
        let request = send_request(conversation, client_msg_id, message);
        ack_reply(self.request(request).await?)
    }
}

impl Client {
    /// Edits, deletes or reacts to message `target` (issue 17), retrying
    /// over reconnects: a repeated delete or reaction changes nothing (the
    /// server answers `Done`), a repeated edit sets the same text again.
    /// `Some(ack)` names the change's own seq; `None`: nothing to change
    /// (already deleted, reaction already there or not there to remove).
    pub async fn change(
        &mut self,
        conversation: ConversationId,
        target: Seq,
        kind: ChangeKind,
        text: &str,
    ) -> Result<Option<SendAck>, ClientError> {
        let request = Request::Change {
            conversation,
            target,
            kind,
            text: text.to_owned(),
        };
        match self.request(request).await? {
            Response::Done => Ok(None),
            other => ack_reply(other).map(Some),
        }
    }

    /// Changes a channel setting (issue 16, part 4: `kind` is one of the
    /// setting kinds; `text` the topic, purpose or new name, else empty),
    /// retrying over reconnects (the same value again changes nothing).
    /// `Some(ack)` names the setting event's seq; `None`: the setting
    /// already had that value.
    pub async fn set_channel(
        &mut self,
        conversation: ConversationId,
        kind: ChangeKind,
        text: &str,
    ) -> Result<Option<SendAck>, ClientError> {
        let request = Request::SetChannel {
            conversation,
            kind,
            text: text.to_owned(),
        };
        match self.request(request).await? {
            Response::Done => Ok(None),
            other => ack_reply(other).map(Some),
        }
    }
}

impl Client {
    /// Posts a reply in the thread of `root` (issue 17, part 2), retrying
    /// its idempotency key over reconnects like [`Client::send_with_id`]:
    /// at most one reply exists afterwards. `in_channel`: also shown in
    /// the channel.
    pub async fn reply(
        &mut self,
        conversation: ConversationId,
        root: Seq,
        in_channel: bool,
        message: &Outgoing,
    ) -> Result<SendAck, ClientError> {
        let request = Request::Reply {
            conversation,
            root,
            in_channel,
            client_msg_id: new_client_msg_id(),
            body: message.body.clone(),
            mentions: message.mentions.clone(),
            broadcast: message.broadcast,
        };
        ack_reply(self.request(request).await?)
    }

    /// One page of the thread of `root` (issue 17, part 2): the root
    /// first when `after` is below it, then up to `limit` replies after
    /// `after`, ascending; and the seq of the thread's newest reply (page
    /// on with `after` = the last seq returned until it reaches it).
    pub async fn thread_page(
        &mut self,
        conversation: ConversationId,
        root: Seq,
        after: Seq,
        limit: u32,
    ) -> Result<(Vec<courier_core::api::Message>, Seq), ClientError> {
        let request = Request::Thread {
            conversation,
            root,
            after,
            limit,
        };
        match self.request(request).await? {
            Response::History { messages, head } | Response::Thread { messages, head } => {
                Ok((messages, head))
            }
            other => Err(crate::requester::unexpected("History", &other)),
        }
    }
}

/// The index in `servers` of the primary a 4011 `error` names, if listed.
fn hinted_index(servers: &[String], error: &ClientError) -> Option<usize> {
    let hint = crate::connection::normalize_url(error.primary_hint()?).ok()?;
    servers.iter().position(|s| *s == hint)
}

/// A fresh random idempotency key for a send.
pub fn new_client_msg_id() -> ClientMsgId {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

impl Requester for Client {
    fn call(&mut self, request: Request) -> impl Future<Output = Result<Response, ClientError>> {
        self.request(request)
    }
}
