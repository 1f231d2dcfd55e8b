//! One WebSocket connection to `courierd`: the `Hello`/`Welcome` handshake,
//! request/response correlation by request id with a bounded number of
//! requests in flight, per-request timeouts, and a bounded stream of the
//! events the server pushes.
//!
//! A [`Connection`] is a cheap, cloneable handle; a driver task (spawned on
//! the current tokio runtime) owns the socket. Replies are routed to their
//! callers by request id; events go to the connection's [`Events`] stream.
//! The driver never blocks on a slow event consumer: when the event queue is
//! full it drops events and the consumer is told [`Incoming::Lagged`] (a
//! [`crate::Session`] answers that with a `Sync`, exactly as after a
//! reconnect). The driver answers the server's pings, pings a quiet server
//! itself and gives the connection up after [`SERVER_SILENCE_MAX`] of
//! silence.
//!
//! Failure contract: a dropped socket, a close frame, a protocol error or a
//! silent server all end the connection; every request still waiting then
//! fails with [`ClientError::Closed`] (or [`ClientError::Protocol`]), and
//! [`Events::next`] returns `None` once the queued events are drained. No
//! reconnect happens here: that is [`crate::Client`]'s and
//! [`crate::Session`]'s job.

use crate::constants::{
    CONNECT_TIMEOUT_DEFAULT, EVENT_QUEUE_MAX_DEFAULT, IN_FLIGHT_MAX_DEFAULT, PING_INTERVAL,
    REQUEST_TIMEOUT_DEFAULT, SERVERS_MAX, SERVER_FRAME_BYTES_MAX, SERVER_SILENCE_MAX,
    WRITE_TIMEOUT,
};
use crate::error::ClientError;
use crate::pacer::Pacer;
use courier_core::api::{
    Credential, DeviceInfo, DeviceKind, Event, Millis, PeopleRequest, RateLimit, Reject, ReqId,
    Request, Response, UserId, WorkspaceId,
};
use courier_proto::close;
use courier_proto::{decode_server, ClientFrame, DecodeError, Encoder, ServerFrame};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to reach and authenticate to a server, and the bounds of one
/// connection. Build it with [`ConnectOptions::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// `ws://host:port[/path]`; a bare `host:port` means `ws://host:port/`.
    /// Several servers (the nodes of a cluster) are separated by commas,
    /// at most [`SERVERS_MAX`]; see [`server_list`] for how they are tried.
    pub url: String,
    /// The user or admin credential (see [`courier_proto::token::parse`]).
    pub credential: Credential,
    /// What this client says it is in `Hello`.
    pub device: DeviceInfo,
    /// Time allowed for connect + upgrade + `Hello`/`Welcome`.
    pub connect_timeout: Duration,
    /// Time allowed for each reply.
    pub request_timeout: Duration,
    /// Requests awaiting a reply at most; callers past it wait for a slot.
    pub in_flight_max: usize,
    /// Events buffered for the consumer at most (then [`Incoming::Lagged`]).
    pub event_queue_max: usize,
    /// Space requests to the budget the server states in `Welcome` (and in
    /// `RateLimited` refusals) rather than send them at once and be refused
    /// (see [`crate::pacer`]). On by default.
    pub pace: bool,
}

impl ConnectOptions {
    /// Options with the library's default bounds and a `Tool` device named
    /// `courier`.
    pub fn new(url: impl Into<String>, credential: Credential) -> ConnectOptions {
        ConnectOptions {
            url: url.into(),
            credential,
            device: DeviceInfo {
                kind: DeviceKind::Tool,
                name: "courier".to_owned(),
            },
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
            event_queue_max: EVENT_QUEUE_MAX_DEFAULT,
            pace: true,
        }
    }
}

/// The server's answer to `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The session's user; `None` for an admin session.
    pub user: Option<UserId>,
    /// The user's workspace; `None` for an admin session.
    pub workspace: Option<WorkspaceId>,
    /// Server time at the handshake.
    pub now: Millis,
    /// This connection's request budget ([`RateLimit::NONE`]: no limit, or
    /// a server that does not say).
    pub conn_rate: RateLimit,
    /// The user's request budget on the connection's shard.
    pub user_rate: RateLimit,
}

/// What the [`Events`] stream yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// An event pushed by the server, in the order it arrived.
    Event(Event),
    /// The consumer fell behind and `dropped` events were discarded (the
    /// report comes once the queue has drained). Whatever state the consumer
    /// derives from events must be refreshed (e.g. with `Sync`).
    Lagged {
        /// How many events were dropped.
        dropped: u64,
    },
}

enum Command {
    Request {
        request: Request,
        reply: oneshot::Sender<Result<Response, ClientError>>,
        permit: OwnedSemaphorePermit,
    },
    Close,
}

#[derive(Debug)]
struct Shared {
    /// Why the connection ended; set once by the driver before it exits.
    closed: OnceLock<ClientError>,
    /// Events dropped because the queue was full, not yet reported.
    dropped: AtomicU64,
}

impl Shared {
    fn close_error(&self) -> ClientError {
        match self.closed.get() {
            Some(e) => clone_error(e),
            None => ClientError::Closed {
                code: None,
                reason: "connection ended".to_owned(),
            },
        }
    }
}

fn clone_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::Closed { code, reason } => ClientError::Closed {
            code: *code,
            reason: reason.clone(),
        },
        ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
        other => ClientError::Closed {
            code: None,
            reason: other.to_string(),
        },
    }
}

/// Handle to one authenticated connection. Cloning it gives another handle
/// to the same socket (requests from all handles are pipelined); the socket
/// closes when every `Connection` handle is dropped, on
/// [`Connection::close`], or when the server or network ends it.
#[derive(Clone, Debug)]
pub struct Connection {
    commands: mpsc::Sender<Command>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    request_timeout: Duration,
    welcome: Welcome,
    /// Paces requests to the server's budget; `None` inside while the
    /// budget is unknown or unlimited (a refusal may make it known).
    pacer: Option<Arc<Mutex<Option<Pacer>>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Request { request, .. } => write!(f, "Request({request:?})"),
            Command::Close => write!(f, "Close"),
        }
    }
}

/// The stream of events of one connection (bounded; see [`Incoming`]).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Incoming>,
    shared: Arc<Shared>,
}

impl Events {
    /// The next event, or `None` once the connection has ended and every
    /// queued event was returned ([`Events::close_reason`] then says why).
    /// [`Incoming::Lagged`] comes once the queue has been drained after an
    /// overflow.
    pub async fn next(&mut self) -> Option<Incoming> {
        if let Some(incoming) = self.try_next() {
            return Some(incoming);
        }
        // The queue is empty, so nothing can be dropped until it fills up
        // again, which wakes this receive.
        self.rx.recv().await
    }

    /// An event (or lag report) if one is available now.
    pub fn try_next(&mut self) -> Option<Incoming> {
        if let Ok(incoming) = self.rx.try_recv() {
            return Some(incoming);
        }
        match self.shared.dropped.swap(0, Ordering::Relaxed) {
            0 => None,
            dropped => Some(Incoming::Lagged { dropped }),
        }
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<ClientError> {
        self.shared.closed.get().map(clone_error)
    }
}

/// Splits a comma-separated list of server URLs (`ws://a:1,ws://b:2`, or a
/// single URL) and normalizes each ([`normalize_url`]); duplicates are
/// dropped, the order is kept. Fails on an empty list, a bad entry, or
/// more than [`SERVERS_MAX`] servers.
///
/// [`Connection::connect`] tries the servers in this order, once each;
/// [`crate::Client`] stays on the one that worked and moves on to the next
/// when it fails (see its module docs).
pub fn server_list(urls: &str) -> Result<Vec<String>, ClientError> {
    let mut list: Vec<String> = Vec::new();
    for part in urls.split(',') {
        let url = normalize_url(part)?;
        if !list.contains(&url) {
            list.push(url);
        }
    }
    if list.len() > SERVERS_MAX {
        return Err(ClientError::BadUrl {
            url: urls.to_owned(),
            reason: format!("{} servers; at most {SERVERS_MAX}", list.len()),
        });
    }
    Ok(list)
}

/// Turns `host:port` into `ws://host:port/` and checks the scheme.
pub fn normalize_url(url: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url.trim();
    if url.is_empty() {
        return Err(bad("empty"));
    }
    if url.starts_with("wss://") || url.starts_with("https://") {
        return Err(bad(
            "TLS is not supported by this client; use ws:// (put a TLS proxy in front if needed)",
        ));
    }
    let rest = if let Some(rest) = url.strip_prefix("ws://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.contains("://") {
        return Err(bad("expected ws://HOST:PORT"));
    } else {
        url
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(bad("expected HOST:PORT (e.g. ws://127.0.0.1:7070)"));
    }
    Ok(format!("ws://{authority}{path}"))
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(SERVER_FRAME_BYTES_MAX))
        .max_frame_size(Some(SERVER_FRAME_BYTES_MAX))
        .max_write_buffer_size(4 * courier_proto::constants::CLIENT_FRAME_BYTES_MAX)
}

impl Connection {
    /// Connects, sends `Hello` and waits for `Welcome`, all within
    /// `options.connect_timeout`. After this returns, the server has
    /// subscribed the connection to all of the user's conversations: live
    /// events already flow into the returned [`Events`].
    ///
    /// Fails with [`ClientError::Connect`] / [`ClientError::Timeout`] when
    /// the server cannot be reached, and [`ClientError::Rejected`] (usually
    /// `Unauthenticated`) or [`ClientError::Closed`] (4001) for a bad token.
    ///
    /// With several servers in `options.url` each is tried once, in order,
    /// until one connects; a permanent failure (a bad token) ends the round
    /// at once, otherwise the last server's failure is returned.
    pub async fn connect(options: &ConnectOptions) -> Result<(Connection, Events), ClientError> {
        let mut last = None;
        for url in server_list(&options.url)? {
            match Connection::connect_to(&url, options).await {
                Ok(connected) => return Ok(connected),
                Err(e) if e.is_transient() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::BadUrl {
            url: options.url.clone(),
            reason: "no server".to_owned(),
        }))
    }

    /// [`Connection::connect`] to one server, `url` (already normalized,
    /// e.g. an entry of [`server_list`]); `options.url` is not read.
    pub async fn connect_to(
        url: &str,
        options: &ConnectOptions,
    ) -> Result<(Connection, Events), ClientError> {
        let url = normalize_url(url)?;
        let timeout = options.connect_timeout;
        let (ws, welcome) = tokio::time::timeout(timeout, handshake(&url, options))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        let in_flight_max = options.in_flight_max.max(1);
        let (commands, command_rx) = mpsc::channel(in_flight_max);
        let (event_tx, event_rx) = mpsc::channel(options.event_queue_max.max(1));
        let shared = Arc::new(Shared {
            closed: OnceLock::new(),
            dropped: AtomicU64::new(0),
        });
        let driver = Driver {
            ws,
            commands: command_rx,
            events: event_tx,
            shared: shared.clone(),
            pending: HashMap::with_capacity(in_flight_max),
            encoder: Encoder::new(),
            next_req: 2,
            last_heard: Instant::now(),
            last_sent: Instant::now(),
        };
        tokio::spawn(driver.run());
        Ok((
            Connection {
                commands,
                permits: Arc::new(Semaphore::new(in_flight_max)),
                shared: shared.clone(),
                request_timeout: options.request_timeout,
                welcome,
                pacer: options.pace.then(|| {
                    Arc::new(Mutex::new(Pacer::for_budgets(
                        welcome.conn_rate,
                        welcome.user_rate,
                        Instant::now(),
                    )))
                }),
            },
            Events {
                rx: event_rx,
                shared,
            },
        ))
    }

    /// The server's `Welcome`.
    pub fn welcome(&self) -> Welcome {
        self.welcome
    }

    /// Sends a request and waits for its reply (at most the connection's
    /// request timeout). A rejection is [`ClientError::Rejected`].
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        self.request_within(request, self.request_timeout).await
    }

    /// [`Connection::request`] with an explicit timeout (which also covers
    /// waiting for an in-flight slot).
    pub async fn request_within(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let work = async {
            self.pace().await;
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| self.shared.close_error())?;
            let (reply, rx) = oneshot::channel();
            self.commands
                .send(Command::Request {
                    request,
                    reply,
                    permit,
                })
                .await
                .map_err(|_| self.shared.close_error())?;
            let result = match rx.await {
                Ok(result) => result,
                Err(_) => Err(self.shared.close_error()),
            };
            if let Err(ClientError::Rejected(Reject::RateLimited {
                retry_after_ms,
                limit,
            })) = &result
            {
                self.refused(Duration::from_millis(*retry_after_ms), *limit);
            }
            result
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// Waits for this request's turn under the server's budget (nothing
    /// with pacing off or no budget known).
    async fn pace(&self) {
        let Some(pacer) = &self.pacer else { return };
        let wait = match pacer.lock() {
            Ok(mut p) => p.as_mut().map(|p| p.reserve(Instant::now())),
            Err(_) => None,
        };
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// A `RateLimited` refusal: hold later requests back until the server
    /// has room, and learn the budget if `Welcome` did not tell it.
    fn refused(&self, retry_after: Duration, limit: RateLimit) {
        let Some(pacer) = &self.pacer else { return };
        if let Ok(mut p) = pacer.lock() {
            let now = Instant::now();
            if p.is_none() {
                *p = Pacer::new(limit, now);
            }
            if let Some(p) = p.as_mut() {
                p.refused(now, retry_after);
            }
        }
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.get().is_some() || self.commands.is_closed()
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<ClientError> {
        self.shared.closed.get().map(clone_error)
    }

    /// Sends a normal close frame; requests still waiting fail with
    /// [`ClientError::Closed`].
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }
}

/// Redeems an invite code (`ci1_…`) on a connection of its own, with no
/// session (no token needed), as the handle `handle`: the server creates
/// the user and answers its first token as `(user, token text)`; the
/// connection is closed after. One server of `url` (the first in a
/// list), within `timeout`.
pub async fn redeem_invite(
    url: &str,
    code: &str,
    handle: &str,
    timeout: Duration,
) -> Result<(UserId, String), ClientError> {
    let (workspace, invite, secret) = courier_proto::token::parse_invite(code).map_err(|_| {
        ClientError::Protocol("malformed invite code (expected ci1_<96 hex>)".into())
    })?;
    let first = server_list(url)?.into_iter().next().unwrap_or_default();
    let url = normalize_url(&first)?;
    let request = Request::People(PeopleRequest::RedeemInvite {
        workspace,
        invite,
        secret,
        handle: handle.to_owned(),
    });
    let work = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config()), true)
                .await
                .map_err(|e| ClientError::Connect {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
        let frame = Encoder::new().client(&ClientFrame::Request { req: 1, request });
        ws.send(WsMessage::Binary(frame.into()))
            .await
            .map_err(|e| ClientError::Connect {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let result = loop {
            match ws.next().await {
                Some(Ok(WsMessage::Binary(bytes))) => match decode_server(&bytes) {
                    Ok(ServerFrame::Reply { req: 1, result }) => break result,
                    Ok(_) => continue,
                    Err(e) => return Err(ClientError::Protocol(e.to_string())),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: e.to_string(),
                    })
                }
                None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: "server closed the connection before answering".to_owned(),
                    })
                }
            }
        };
        let _ = ws.close(None).await;
        match result {
            Ok(Response::TokenIssued {
                user,
                token,
                secret,
            }) => Ok((
                user,
                courier_proto::token::format_user(user, token, &secret),
            )),
            Ok(other) => Err(ClientError::Protocol(format!(
                "expected TokenIssued, got {}",
                response_name(&other)
            ))),
            Err(reject) => Err(ClientError::Rejected(reject)),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

async fn handshake(url: &str, options: &ConnectOptions) -> Result<(Ws, Welcome), ClientError> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
        .await
        .map_err(|e| ClientError::Connect {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let hello = Encoder::new().client(&ClientFrame::Hello {
        req: 1,
        credential: options.credential.clone(),
        device: options.device.clone(),
    });
    ws.send(WsMessage::Binary(hello.into()))
        .await
        .map_err(|e| ClientError::Connect {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    loop {
        let msg = match ws.next().await {
            None => {
                return Err(ClientError::Closed {
                    code: None,
                    reason: "server closed the connection during Hello".to_owned(),
                })
            }
            Some(Err(e)) => {
                return Err(ClientError::Closed {
                    code: None,
                    reason: e.to_string(),
                })
            }
            Some(Ok(msg)) => msg,
        };
        match msg {
            WsMessage::Binary(bytes) => match decode_server(&bytes) {
                Ok(ServerFrame::Reply { req: 1, result }) => {
                    return match result {
                        Ok(Response::Welcome {
                            user,
                            workspace,
                            now,
                            conn_rate,
                            user_rate,
                        }) => Ok((
                            ws,
                            Welcome {
                                user,
                                workspace,
                                now,
                                conn_rate,
                                user_rate,
                            },
                        )),
                        Ok(other) => Err(ClientError::Protocol(format!(
                            "expected Welcome, got {}",
                            response_name(&other)
                        ))),
                        Err(reject) => Err(ClientError::Rejected(reject)),
                    };
                }
                // The gateway answers a malformed token with request id 0.
                Ok(ServerFrame::Reply {
                    req: 0,
                    result: Err(reject),
                }) => return Err(ClientError::Rejected(reject)),
                Ok(_) => continue,
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            },
            WsMessage::Close(frame) => {
                let (code, reason) = close_parts(frame);
                return Err(ClientError::Closed { code, reason });
            }
            _ => continue,
        }
    }
}

fn close_parts(frame: Option<CloseFrame>) -> (Option<u16>, String) {
    match frame {
        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
        None => (None, "closed without a code".to_owned()),
    }
}

/// Short name of a response variant, for error messages.
pub(crate) fn response_name(response: &Response) -> &'static str {
    match response {
        Response::Welcome { .. } => "Welcome",
        Response::WorkspaceCreated { .. } => "WorkspaceCreated",
        Response::TokenIssued { .. } => "TokenIssued",
        Response::Done => "Done",
        Response::Conversation(_) => "Conversation",
        Response::Conversations(_) => "Conversations",
        Response::Found { .. } => "Found",
        Response::SendAck { .. } => "SendAck",
        Response::Sync { .. } => "Sync",
        Response::History { .. } => "History",
        Response::Thread { .. } => "Thread",
        Response::Boot(_) => "Boot",
        Response::Pins { .. } => "PinPage",
        Response::Presence { .. } => "PresenceReply",
        Response::People(p) => match p {
            courier_core::api::PeopleResponse::Users(_) => "UserList",
            courier_core::api::PeopleResponse::Directory { .. } => "DirectoryPage",
            courier_core::api::PeopleResponse::Members { .. } => "MemberPage",
            courier_core::api::PeopleResponse::Channels { .. } => "ChannelPage",
            courier_core::api::PeopleResponse::Tokens { .. } => "TokenList",
            courier_core::api::PeopleResponse::InviteCreated { .. } => "InviteCreated",
            courier_core::api::PeopleResponse::Invites(_) => "InviteList",
        },
    }
}

type Pending = HashMap<
    ReqId,
    (
        oneshot::Sender<Result<Response, ClientError>>,
        OwnedSemaphorePermit,
    ),
>;

struct Driver {
    ws: Ws,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Incoming>,
    shared: Arc<Shared>,
    pending: Pending,
    encoder: Encoder,
    next_req: ReqId,
    last_heard: Instant,
    last_sent: Instant,
}

enum Step {
    Continue,
    End(ClientError),
}

impl Driver {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let step = tokio::select! {
                command = self.commands.recv() => self.on_command(command).await,
                msg = self.ws.next() => self.on_socket(msg),
                _ = tick.tick() => self.on_tick().await,
            };
            if let Step::End(e) = step {
                break e;
            }
        };
        let _ = self.shared.closed.set(end);
        // Dropping the senders fails every waiting request with the reason
        // just recorded; dropping `events` ends the event stream.
        self.pending.clear();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }

    /// Writes one message, giving up after [`WRITE_TIMEOUT`] (a server that
    /// stopped reading must not wedge the driver).
    async fn write(&mut self, msg: WsMessage) -> Result<(), ClientError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.ws.send(msg)).await {
            Ok(Ok(())) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(ClientError::Closed {
                code: None,
                reason: e.to_string(),
            }),
            Err(_) => Err(ClientError::Closed {
                code: None,
                reason: format!("the server took no data for {WRITE_TIMEOUT:?}"),
            }),
        }
    }

    fn alloc_req(&mut self) -> ReqId {
        loop {
            let req = self.next_req;
            self.next_req = self.next_req.wrapping_add(1).max(1);
            if !self.pending.contains_key(&req) {
                return req;
            }
        }
    }

    async fn on_command(&mut self, command: Option<Command>) -> Step {
        match command {
            // Every handle is gone: nobody can ask anything any more.
            None => Step::End(ClientError::Closed {
                code: Some(close::NORMAL),
                reason: "closed by the client".to_owned(),
            }),
            Some(Command::Close) => {
                let _ = self
                    .write(WsMessage::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "bye".into(),
                    })))
                    .await;
                Step::End(ClientError::Closed {
                    code: Some(close::NORMAL),
                    reason: "closed by the client".to_owned(),
                })
            }
            Some(Command::Request {
                request,
                reply,
                permit,
            }) => {
                if reply.is_closed() {
                    return Step::Continue; // the caller gave up already
                }
                let req = self.alloc_req();
                let bytes = self.encoder.client(&ClientFrame::Request { req, request });
                self.pending.insert(req, (reply, permit));
                match self.write(WsMessage::Binary(bytes.into())).await {
                    Ok(()) => Step::Continue,
                    Err(e) => Step::End(e),
                }
            }
        }
    }

    fn on_socket(
        &mut self,
        msg: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    ) -> Step {
        let msg = match msg {
            None => {
                return Step::End(ClientError::Closed {
                    code: None,
                    reason: "connection dropped".to_owned(),
                })
            }
            Some(Err(e)) => {
                return Step::End(ClientError::Closed {
                    code: None,
                    reason: e.to_string(),
                })
            }
            Some(Ok(msg)) => msg,
        };
        self.last_heard = Instant::now();
        match msg {
            WsMessage::Binary(bytes) => self.on_frame(&bytes),
            WsMessage::Close(frame) => {
                let (code, reason) = close_parts(frame);
                Step::End(ClientError::Closed { code, reason })
            }
            WsMessage::Text(_) => Step::End(ClientError::Protocol(
                "server sent a text message (the protocol is binary only)".to_owned(),
            )),
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Step::Continue,
        }
    }

    fn on_frame(&mut self, bytes: &[u8]) -> Step {
        match decode_server(bytes) {
            Ok(ServerFrame::Reply { req, result }) => {
                // Unknown ids are replies to requests that timed out (or the
                // gateway's id-0 error before a close): nobody waits for them.
                if let Some((reply, _permit)) = self.pending.remove(&req) {
                    let _ = reply.send(result.map_err(ClientError::Rejected));
                }
                Step::Continue
            }
            Ok(ServerFrame::Event(event)) => {
                self.push_event(event);
                Step::Continue
            }
            Err(e) => self.on_bad_frame(bytes, e),
        }
    }

    fn on_bad_frame(&mut self, bytes: &[u8], e: DecodeError) -> Step {
        // Find out whom the frame was for, if the buffer is a Frame at all.
        let req = courier_proto::wire::root_as_frame(bytes)
            .map(|f| f.request_id())
            .unwrap_or(0);
        if req != 0 {
            if let Some((reply, _permit)) = self.pending.remove(&req) {
                let _ = reply.send(Err(ClientError::Protocol(format!(
                    "undecodable reply: {e}"
                ))));
            }
            return Step::Continue;
        }
        match e {
            // An event kind from a newer server: not ours to understand.
            DecodeError::UnexpectedBody(_) => Step::Continue,
            // An event we cannot read may be a message we would then miss:
            // end the connection so the owner re-syncs rather than skip it.
            other => Step::End(ClientError::Protocol(format!("undecodable event: {other}"))),
        }
    }

    fn push_event(&mut self, event: Event) {
        if self.events.try_send(Incoming::Event(event)).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn on_tick(&mut self) -> Step {
        let now = Instant::now();
        if now.duration_since(self.last_heard) > SERVER_SILENCE_MAX {
            return Step::End(ClientError::Closed {
                code: None,
                reason: format!("server silent for {SERVER_SILENCE_MAX:?}"),
            });
        }
        if now.duration_since(self.last_heard) > PING_INTERVAL
            && now.duration_since(self.last_sent) > PING_INTERVAL
        {
            if let Err(e) = self.write(WsMessage::Ping(Default::default())).await {
                return Step::End(e);
            }
        }
        // Forget requests whose callers timed out, releasing their slots.
        self.pending.retain(|_, (reply, _)| !reply.is_closed());
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized_and_bad_ones_named() {
        assert_eq!(
            normalize_url("127.0.0.1:7070").unwrap(),
            "ws://127.0.0.1:7070/"
        );
        assert_eq!(normalize_url(" ws://h:1/x ").unwrap(), "ws://h:1/x");
        assert_eq!(normalize_url("http://h:1").unwrap(), "ws://h:1/");
        for bad in ["", "wss://h:1", "ftp://h:1", "ws://:1", "ws://h", "h:port"] {
            assert!(
                matches!(normalize_url(bad), Err(ClientError::BadUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_server_list_keeps_order_drops_duplicates_and_is_bounded() {
        assert_eq!(
            server_list("ws://b:2, a:1,ws://b:2/").unwrap(),
            vec!["ws://b:2/".to_owned(), "ws://a:1/".to_owned()]
        );
        assert_eq!(server_list("a:1").unwrap(), vec!["ws://a:1/".to_owned()]);
        for bad in ["", "a:1,", ",a:1", "a:1,,b:2", "a:1,wss://b:2"] {
            assert!(
                matches!(server_list(bad), Err(ClientError::BadUrl { .. })),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (1..=SERVERS_MAX + 1).map(|p| format!("h:{p}")).collect();
        assert!(server_list(&many[..SERVERS_MAX].join(",")).is_ok());
        let err = server_list(&many.join(",")).unwrap_err();
        assert!(err.to_string().contains("at most 16"), "{err}");
    }
}
