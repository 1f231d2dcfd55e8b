//! The gateway: one accept loop per shard on the shared port (SO_REUSEPORT),
//! the HTTP front door (`/healthz`, `/metrics`, `/admin/cluster`, the web app at `/`, WebSocket
//! upgrade), and the two tasks of each connection — a reader that decodes
//! frames into core inputs and a writer that drains the connection's
//! byte-bounded outbox.
//!
//! Failure contract: whatever a peer sends, the worst outcome is that *its*
//! connection is closed with a code and a reason. Nothing here panics on
//! input, and no connection can make another wait: a socket that does not
//! read is cut off once its outbox passes the configured byte bound.

use crate::constants::{
    BAD_FRAMES_MAX, HANDSHAKE_TIMEOUT, HTTP_HEAD_BYTES_MAX, PING_INTERVAL, SOCKET_READ_BYTES,
    WS_READ_BUFFER_BYTES,
};
use crate::http::{self, Route};
use crate::metrics::M;
use crate::shard::ShardCtx;
use crate::sync::{with_timeout, Signal};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use courier_core::api::{ConnId, Input, Reject};
use courier_proto::{decode_client, ClientFrame, DecodeError};
use futures::{SinkExt, StreamExt};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Close codes (defined in courier-proto, documented in docs/PROTOCOL.md).
pub use courier_proto::close;

thread_local! {
    /// The shard's socket read buffer, shared by all its connections: a
    /// read fills it and the bytes are handed on before the next await, so
    /// no connection holds a read buffer while it waits for data.
    static SOCKET_READ: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; SOCKET_READ_BYTES].into_boxed_slice());
}

/// A connection's socket as tungstenite sees it. tungstenite asks for at
/// most WS_READ_BUFFER_BYTES at a time (its own buffer, kept per
/// connection, stays that small); each socket read takes up to
/// SOCKET_READ_BYTES into the shard's shared buffer, and only the bytes
/// tungstenite did not take yet are kept here (`unread`, freed once
/// consumed). An idle connection therefore holds no read buffer.
pub struct LeanStream {
    inner: TcpStream,
    /// Received and not yet handed to tungstenite: at most
    /// SOCKET_READ_BYTES − 1 bytes, empty (no allocation) when idle.
    unread: Vec<u8>,
    /// Bytes of `unread` already handed on.
    unread_pos: usize,
}

impl LeanStream {
    /// Wraps an accepted socket.
    pub fn new(inner: TcpStream) -> LeanStream {
        LeanStream {
            inner,
            unread: Vec::new(),
            unread_pos: 0,
        }
    }
}

impl futures::io::AsyncRead for LeanStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.unread_pos < this.unread.len() {
            let n = buf.len().min(this.unread.len() - this.unread_pos);
            buf[..n].copy_from_slice(&this.unread[this.unread_pos..this.unread_pos + n]);
            this.unread_pos += n;
            if this.unread_pos == this.unread.len() {
                this.unread = Vec::new();
                this.unread_pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        if buf.len() >= SOCKET_READ_BYTES {
            return std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        SOCKET_READ.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let got = match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(got)) => got,
                other => return other,
            };
            let n = got.min(buf.len());
            buf[..n].copy_from_slice(&scratch[..n]);
            if got > n {
                this.unread = scratch[n..got].to_vec();
                this.unread_pos = 0;
            }
            Poll::Ready(Ok(n))
        })
    }
}

impl futures::io::AsyncWrite for LeanStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Whether a connection's session is authenticated. Setting it wakes the
/// connection's reader, which then re-arms its read deadline at once: the
/// idle timeout replaces the pre-auth deadline the moment the `Welcome` is
/// out, not when the pre-auth wait happens to end.
#[derive(Default)]
pub struct Authed {
    flag: Cell<bool>,
    changed: Signal,
}

impl Authed {
    /// True once the core answered `Hello` with `Welcome`.
    pub fn get(&self) -> bool {
        self.flag.get()
    }

    /// Sets the state and wakes the reader.
    pub fn set(&self, authed: bool) {
        self.flag.set(authed);
        self.changed.notify();
    }
}

/// Bytes waiting to be written to one socket.
struct Outbox {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// Set once: the writer sends this close frame after what is queued (or
    /// instead of it, for a slow consumer) and ends the connection.
    closing: Option<(u16, std::borrow::Cow<'static, str>)>,
}

/// The shard's handle on one connection.
pub struct Conn {
    /// Node-unique id.
    pub id: ConnId,
    out: RefCell<Outbox>,
    wake: Signal,
    /// Notified when the connection starts closing (stops the reader).
    closing: Signal,
    /// Set when the core answered `Hello` with `Welcome`.
    pub authed: Authed,
    /// The session's user, once welcomed (admin sessions have none).
    pub user: Cell<Option<courier_core::api::UserId>>,
    /// The session user's workspace, once welcomed.
    pub workspace: Cell<Option<courier_core::api::WorkspaceId>>,
    /// Per-connection request budget.
    pub limiter: Option<crate::limits::Limiter>,
    outbox_bytes_max: usize,
    /// Cluster mode: ids of requests forwarded and not answered yet, each
    /// with the edge's sequence number at forwarding (at most
    /// [`crate::constants::REQUESTS_IN_FLIGHT_PER_CONN_MAX`]); when the
    /// primary changes they are answered `Unavailable` at once
    /// (`ShardCtx::fail_over_requests`) and a late answer is dropped.
    pub(crate) in_flight: RefCell<std::collections::BTreeMap<courier_core::api::ReqId, u64>>,
}

/// What happened to a frame offered to a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// In the outbox.
    Yes,
    /// The connection is closing; dropped.
    Closed,
    /// Over the byte bound: the connection is now being cut off.
    CutOff,
}

impl Conn {
    fn new(id: ConnId, outbox_bytes_max: usize, limiter: Option<crate::limits::Limiter>) -> Conn {
        Conn {
            id,
            out: RefCell::new(Outbox {
                frames: VecDeque::new(),
                bytes: 0,
                closing: None,
            }),
            wake: Signal::default(),
            closing: Signal::default(),
            in_flight: RefCell::new(std::collections::BTreeMap::new()),
            authed: Authed::default(),
            user: Cell::new(None),
            workspace: Cell::new(None),
            limiter,
            outbox_bytes_max,
        }
    }

    /// Queues one encoded frame (cheap: `Bytes` is shared).
    pub fn push(&self, frame: Bytes) -> Queued {
        let mut out = self.out.borrow_mut();
        if out.closing.is_some() {
            return Queued::Closed;
        }
        if out.bytes + frame.len() > self.outbox_bytes_max {
            out.frames.clear();
            out.bytes = 0;
            out.closing = Some((
                close::SLOW_CONSUMER,
                "slow consumer: outbox full; reconnect and sync".into(),
            ));
            drop(out);
            self.wake.notify();
            self.closing.notify();
            return Queued::CutOff;
        }
        out.bytes += frame.len();
        out.frames.push_back(frame);
        drop(out);
        self.wake.notify();
        Queued::Yes
    }

    /// Asks the writer to close after what is already queued, with
    /// `reason` (at most 123 bytes, the WebSocket bound: longer is cut at a
    /// character boundary).
    pub fn close(&self, code: u16, reason: impl Into<std::borrow::Cow<'static, str>>) {
        let mut out = self.out.borrow_mut();
        if out.closing.is_none() {
            out.closing = Some((code, close_reason(reason.into())));
        }
        drop(out);
        self.wake.notify();
        self.closing.notify();
    }

    /// Bytes currently queued.
    pub fn queued_bytes(&self) -> usize {
        self.out.borrow().bytes
    }

    /// Whether the connection is closing (its writer sends the close frame).
    pub fn is_closing(&self) -> bool {
        self.out.borrow().closing.is_some()
    }
}

/// Serves one accepted TCP connection to the end.
///
/// The connection's task holds this future for the connection's lifetime,
/// so its size is memory per connection: the HTTP phase (head buffer,
/// responses) runs boxed and is freed before the WebSocket phase starts.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    if let Some((stream, leftover)) = Box::pin(front_door(&ctx, stream)).await {
        websocket(ctx, stream, leftover).await;
    }
}

/// The HTTP request: answers `/healthz`, `/metrics` and refusals itself;
/// for a WebSocket upgrade, sends the 101 and returns the socket with the
/// bytes read past the head.
async fn front_door(ctx: &Rc<ShardCtx>, mut stream: TcpStream) -> Option<(TcpStream, Vec<u8>)> {
    let _ = stream.set_nodelay(true);
    let head = match with_timeout(HANDSHAKE_TIMEOUT, read_head(&mut stream)).await {
        Some(Ok(head)) => head,
        Some(Err(reason)) => {
            let _ = respond(&mut stream, 400, "text/plain", reason).await;
            return None;
        }
        None => return None, // slowloris: drop silently
    };
    ctx.count(M::http_requests_total, 1);
    match http::route(&head) {
        Route::Health => {
            let (code, text) = ctx.health();
            let _ = respond(&mut stream, code, "text/plain", &text).await;
            None
        }
        Route::Metrics => {
            let text = ctx.render_metrics();
            let _ = respond(&mut stream, 200, "text/plain; version=0.0.4", &text).await;
            None
        }
        Route::ClusterStatus { authorization } => {
            let (code, body) = ctx.mode().status_reply(authorization.as_deref());
            let _ = respond(&mut stream, code, "application/json", &body).await;
            None
        }
        Route::Backup { authorization, dir } => {
            let (code, body) = if ctx.mode().admin_authorized(authorization.as_deref()) {
                crate::shard::http_backup(ctx, dir).await
            } else {
                let error =
                    "unauthenticated: send `Authorization: Bearer ca1_…` with the admin token";
                (401, format!("{}\n", serde_json::json!({ "error": error })))
            };
            let _ = respond(&mut stream, code, "application/json", &body).await;
            None
        }
        Route::Asset(asset) => {
            let _ = respond(&mut stream, 200, asset.content_type, asset.body).await;
            None
        }
        Route::Refuse { code, body } => {
            let _ = respond(&mut stream, code, "text/plain", body).await;
            None
        }
        Route::Upgrade { accept, head_len } => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return None;
            }
            let leftover = head[head_len..].to_vec();
            Some((stream, leftover))
        }
    }
}

/// Reads an HTTP request head (up to the blank line), bounded in bytes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| "read error\n")?;
        if n == 0 {
            return Err("connection closed during request\n");
        }
        buf.extend_from_slice(&chunk[..n]);
        if http::head_complete(&buf) {
            return Ok(buf);
        }
        if buf.len() > HTTP_HEAD_BYTES_MAX {
            return Err("request head too large\n");
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let status = http::reason(code);
    let text = format!(
        "HTTP/1.1 {code} {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await?;
    stream.flush().await?;
    stream.close().await
}

/// The WebSocket limits every connection runs with.
pub fn ws_config() -> WebSocketConfig {
    let frame_max = courier_proto::constants::CLIENT_FRAME_BYTES_MAX;
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(courier_proto::constants::SERVER_FRAME_BYTES_MAX * 2)
        .max_message_size(Some(frame_max))
        .max_frame_size(Some(frame_max))
        .accept_unmasked_frames(false)
}

/// The sending half of a connection's WebSocket (owned by [`write_loop`]).
type WsTx = async_tungstenite::WebSocketSender<LeanStream>;
/// The receiving half of a connection's WebSocket (owned by [`read_loop`]).
type WsRx = async_tungstenite::WebSocketReceiver<LeanStream>;

async fn websocket(ctx: Rc<ShardCtx>, stream: TcpStream, leftover: Vec<u8>) {
    // Boxed (briefly on the heap) and split at once, so that neither the
    // constructor's future nor the unsplit stream takes room in this
    // future, which lives as long as the connection.
    let (mut tx, rx) = Box::pin(WebSocketStream::from_partially_read(
        LeanStream::new(stream),
        leftover,
        Role::Server,
        Some(ws_config()),
    ))
    .await
    .split();
    let Some(conn) = ctx.register_conn() else {
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Again,
                reason: "too many connections on this shard".into(),
            })))
            .await;
        return;
    };
    let writer = glommio::spawn_local(write_loop(ctx.clone(), conn.clone(), tx));
    read_loop(&ctx, &conn, rx).await;
    // Make sure the writer ends even if nobody closed explicitly.
    conn.close(CloseCode::Normal.into(), "bye");
    let _ = with_timeout(Duration::from_secs(2), writer).await;
    ctx.unregister_conn(&conn);
}

/// The writer half of a connection: owns the socket's sending half. Drains
/// the outbox whenever the connection's `wake` fires, pings a quiet peer
/// every ping interval, and sends the close frame.
///
/// Ends after sending the close frame once the connection is closing (any
/// `Conn::close`, including the reader's "bye" when it stops), or at the
/// first failed socket write.
async fn write_loop(ctx: Rc<ShardCtx>, conn: Rc<Conn>, mut tx: WsTx) {
    // Pings go out every PING_INTERVAL whether or not the writer is
    // busy: a member that only receives must still be asked for a
    // pong, or the idle timeout would close a healthy connection.
    let ping_every = PING_INTERVAL.min(ctx.idle_timeout() / 3);
    let mut last_ping = Instant::now();
    loop {
        let until_ping = ping_every.saturating_sub(last_ping.elapsed());
        with_timeout(until_ping, conn.wake.wait()).await;
        let ping_due = last_ping.elapsed() >= ping_every;
        let (frames, closing) = {
            let mut out = conn.out.borrow_mut();
            out.bytes = 0;
            (std::mem::take(&mut out.frames), out.closing.clone())
        };
        let mut sent = 0usize;
        for frame in frames {
            sent += frame.len();
            if tx.feed(Message::Binary(frame)).await.is_err() {
                return;
            }
        }
        if ping_due {
            last_ping = Instant::now();
            if tx.feed(Message::Ping(Bytes::new())).await.is_err() {
                return;
            }
        }
        if tx.flush().await.is_err() {
            return;
        }
        ctx.outbox_drained(sent);
        if let Some((code, reason)) = closing {
            let _ = tx
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: match reason {
                        std::borrow::Cow::Borrowed(text) => text.into(),
                        std::borrow::Cow::Owned(text) => text.into(),
                    },
                })))
                .await;
            let _ = tx.close(None).await;
            return;
        }
    }
}

/// The reader half of a connection: owns the socket's receiving half and
/// turns each data frame into a core input (or a refusal), under the
/// pre-auth deadline until the session is authenticated and the idle
/// deadline after.
///
/// Ends when the peer closes or goes away, at a deadline, on a frame the
/// connection is closed for, or as soon as the connection is closing (the
/// writer side or the core closed it). It never unregisters the connection:
/// its caller does that once the writer has ended too.
async fn read_loop(ctx: &Rc<ShardCtx>, conn: &Conn, mut rx: WsRx) {
    let mut bad_frames = 0u32;
    let opened = Instant::now();
    let mut last_frame = opened;
    while let Some(msg) = next_message(ctx, conn, &mut rx, opened, &mut last_frame).await {
        let bytes = match msg {
            Message::Binary(b) => b,
            Message::Text(_) => {
                conn.close(
                    CloseCode::Unsupported.into(),
                    "binary frames only (see docs/PROTOCOL.md)",
                );
                break;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        ctx.count(M::frames_in_total, 1);
        ctx.backpressure().await;
        ctx.workspace_pace(conn).await;
        handle_frame(ctx, conn, &bytes, &mut bad_frames);
    }
}

/// Waits for the reader's next WebSocket message; `None` once the reader
/// must stop (the connection is closing, the stream ended or failed, or a
/// deadline passed — the connection is then closed with its code here).
async fn next_message(
    ctx: &ShardCtx,
    conn: &Conn,
    rx: &mut WsRx,
    opened: Instant,
    last_frame: &mut Instant,
) -> Option<Message> {
    loop {
        // The deadline that applies changes when the `Welcome` goes out
        // (usually while the reader already waits for the next frame under
        // the pre-auth deadline, as the Welcome may come from another
        // shard): the wait also ends on that change and is re-armed with the
        // idle deadline, which runs from the last frame. An expired wait is
        // still judged by the state at its end.
        let authed = conn.authed.get();
        let deadline = if authed {
            ctx.idle_timeout().saturating_sub(last_frame.elapsed())
        } else {
            ctx.preauth_timeout().saturating_sub(opened.elapsed())
        };
        let next = futures_lite::future::or(
            async { Wait::Read(with_timeout(deadline, rx.next()).await) },
            async {
                futures_lite::future::or(
                    async {
                        // Stop reading as soon as the writer is closing.
                        conn.closing.wait().await;
                        Wait::Closing
                    },
                    async {
                        if authed {
                            std::future::pending::<()>().await;
                        }
                        conn.authed.changed.wait().await;
                        Wait::Authed
                    },
                )
                .await
            },
        )
        .await;
        match next {
            Wait::Closing => return None,
            Wait::Authed => continue,
            Wait::Read(None) => {
                if conn.authed.get() {
                    if last_frame.elapsed() < ctx.idle_timeout() {
                        // The wait began under the pre-auth deadline and the
                        // Welcome came meanwhile: the idle timeout runs from
                        // the last frame, not from here.
                        continue;
                    }
                    conn.close(close::IDLE, "idle timeout");
                } else {
                    conn.close(close::AUTH_TIMEOUT, "no successful Hello in time");
                }
                return None;
            }
            Wait::Read(Some(None)) => return None,
            Wait::Read(Some(Some(Err(e)))) => {
                use async_tungstenite::tungstenite::Error as WsError;
                match e {
                    WsError::Capacity(_) => conn.close(
                        CloseCode::Size.into(),
                        "message too big (client frames are at most 256 KiB)",
                    ),
                    WsError::Protocol(_) => {
                        conn.close(CloseCode::Protocol.into(), "protocol error")
                    }
                    WsError::Utf8(_) => conn.close(CloseCode::Invalid.into(), "invalid UTF-8"),
                    _ => {}
                }
                return None;
            }
            Wait::Read(Some(Some(Ok(msg)))) => {
                *last_frame = Instant::now();
                return Some(msg);
            }
        }
    }
}

/// Most bytes of a WebSocket close reason (RFC 6455 §5.5: a control frame
/// carries at most 125 bytes, 2 of them the code).
const CLOSE_REASON_BYTES_MAX: usize = 123;

/// `reason` cut to [`CLOSE_REASON_BYTES_MAX`] at a character boundary.
fn close_reason(reason: std::borrow::Cow<'static, str>) -> std::borrow::Cow<'static, str> {
    if reason.len() <= CLOSE_REASON_BYTES_MAX {
        return reason;
    }
    let mut end = CLOSE_REASON_BYTES_MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned().into()
}

/// Decodes one binary frame and hands it to the core, or answers it: a
/// rate-limited request, a bad Hello, a malformed token, or a malformed
/// frame (the connection is closed after too many of those).
fn handle_frame(ctx: &Rc<ShardCtx>, conn: &Conn, bytes: &[u8], bad_frames: &mut u32) {
    match decode_client(bytes) {
        Ok(ClientFrame::Hello { .. })
            if ctx.session_shard() != Some(conn.id.shard()) || !ctx.sessions_open() =>
        {
            // Cluster mode, this node has not learnt its cluster's voters
            // yet (or did after this connection came), or, beyond the
            // voters, no leader yet: no session here (docs/PROTOCOL.md §10).
            conn.close(
                close::NOT_SERVING,
                "not serving yet: this node has not joined its cluster; try another server",
            );
        }
        Ok(ClientFrame::Hello {
            req,
            credential,
            device,
        }) => {
            // Cluster mode: a Hello lost on its way to the user's home
            // shard (no leader known, a primary not started yet) ends the
            // connection with 4011 at the next change (`edge`) instead of
            // leaving the client to its connect timeout. The set is empty
            // before the Hello, so it has room.
            let _ = ctx.track_request(conn, req);
            ctx.submit(Input::Hello {
                conn: conn.id,
                req,
                credential,
                device,
            });
        }
        Ok(ClientFrame::Request { req, request }) => match ctx.rate_check(conn) {
            Ok(()) if !ctx.track_request(conn, req) => {
                let refused = Reject::unavailable(
                    courier_core::api::UnavailableCause::Overloaded,
                    "too many requests in flight on this connection \
                     (REQUESTS_IN_FLIGHT_PER_CONN_MAX)",
                );
                ctx.reply_now(conn, req, &Err(refused));
            }
            Ok(()) => {
                #[cfg(feature = "failpoints")]
                let request = {
                    let mut request = request;
                    crate::failpoints::get().rewrite(&mut request);
                    request
                };
                ctx.submit(Input::Request {
                    conn: conn.id,
                    req,
                    request,
                })
            }
            Err((retry_after_ms, limit)) => {
                ctx.count(M::rate_limited_total, 1);
                let refused = Reject::RateLimited {
                    retry_after_ms,
                    limit,
                };
                ctx.reply_now(conn, req, &Err(refused));
            }
        },
        Err(DecodeError::BadHello { reject, reason }) => {
            let req = courier_proto::peek_request_id(bytes);
            ctx.reply_now(conn, req, &Err(reject));
            conn.close(close::BAD_HELLO, reason);
        }
        Err(DecodeError::Token(_)) => {
            let req = courier_proto::peek_request_id(bytes);
            ctx.reply_now(conn, req, &Err(Reject::Unauthenticated));
            conn.close(close::UNAUTHENTICATED, "malformed token");
        }
        Err(e) => {
            ctx.count(M::bad_frames_total, 1);
            *bad_frames += 1;
            ctx.bad_frame(conn, courier_proto::peek_request_id(bytes), &e.to_string());
            if *bad_frames >= BAD_FRAMES_MAX {
                conn.close(CloseCode::Policy.into(), "too many malformed frames");
            }
        }
    }
}

/// How one wait of a connection's reader ended.
enum Wait<T> {
    /// The next message, the end of the stream, or `None` at the deadline.
    Read(Option<Option<T>>),
    /// The connection is closing.
    Closing,
    /// The session was authenticated meanwhile (re-arm the deadline).
    Authed,
}

/// Reads WebSocket messages from raw post-upgrade bytes exactly as a
/// connection would (same config, server role), returning the data messages
/// until the stream ends or errs. For fuzzing and tests of the frame layer.
pub fn read_ws_messages(bytes: &[u8]) -> Vec<Bytes> {
    struct Mem<'a>(std::io::Cursor<&'a [u8]>);
    impl std::io::Read for Mem<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl std::io::Write for Mem<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut ws = tungstenite::WebSocket::from_raw_socket(
        Mem(std::io::Cursor::new(bytes)),
        Role::Server,
        Some(ws_config()),
    );
    let mut out = Vec::new();
    while let Ok(message) = ws.read() {
        match message {
            Message::Binary(b) => out.push(b),
            Message::Text(t) => out.push(Bytes::copy_from_slice(t.as_bytes())),
            _ => {}
        }
    }
    out
}

/// Creates the shard-side state of a new connection.
pub fn new_conn(
    id: ConnId,
    outbox_bytes_max: usize,
    limiter: Option<crate::limits::Limiter>,
) -> Rc<Conn> {
    Rc::new(Conn::new(id, outbox_bytes_max, limiter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_to_the_websocket_bound_at_a_character() {
        assert_eq!(close_reason("short".into()), "short");
        let exact = "x".repeat(CLOSE_REASON_BYTES_MAX);
        assert_eq!(close_reason(exact.clone().into()), exact);
        // 122 ASCII bytes, then a 2-byte character across the bound.
        let text = format!("{}é tail", "x".repeat(CLOSE_REASON_BYTES_MAX - 1));
        let cut = close_reason(text.into());
        assert_eq!(cut.len(), CLOSE_REASON_BYTES_MAX - 1);
        assert!(cut.chars().all(|c| c == 'x'));
    }

    #[test]
    fn outbox_cuts_off_a_slow_consumer_and_keeps_the_bound() {
        let conn = Conn::new(ConnId(1), 10, None);
        assert_eq!(conn.push(Bytes::from_static(b"12345")), Queued::Yes);
        assert_eq!(conn.push(Bytes::from_static(b"12345")), Queued::Yes);
        assert_eq!(conn.queued_bytes(), 10);
        assert_eq!(conn.push(Bytes::from_static(b"1")), Queued::CutOff);
        assert_eq!(conn.queued_bytes(), 0);
        assert_eq!(
            conn.out.borrow().closing.as_ref().map(|c| c.0),
            Some(close::SLOW_CONSUMER)
        );
        assert_eq!(conn.push(Bytes::from_static(b"1")), Queued::Closed);
    }

    #[test]
    fn lean_stream_hands_on_every_byte_in_small_reads_and_keeps_nothing_after() {
        let sent: Vec<u8> = (0..3 * SOCKET_READ_BYTES + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let expected = sent.clone();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let writer = std::thread::spawn(move || {
                    use std::io::Write as _;
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    s.write_all(&sent).unwrap();
                });
                let mut lean = LeanStream::new(listener.accept().await.unwrap());
                let mut got = Vec::new();
                let mut chunk = [0u8; WS_READ_BUFFER_BYTES];
                loop {
                    let n = lean.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    assert!(n <= WS_READ_BUFFER_BYTES);
                    got.extend_from_slice(&chunk[..n]);
                    assert!(lean.unread.len() < SOCKET_READ_BYTES);
                }
                writer.join().unwrap();
                assert_eq!(got, expected);
                assert_eq!(lean.unread.capacity(), 0, "nothing kept once consumed");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn frame_layer_enforces_masking_and_sizes() {
        let ok = masked(2, b"hello");
        assert_eq!(read_ws_messages(&ok), vec![Bytes::from_static(b"hello")]);
        // Unmasked client frame: refused.
        assert!(read_ws_messages(&[0x82, 0x02, b'h', b'i']).is_empty());
        // A length header promising more than the limit: refused before reading it.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(u64::MAX / 2).to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert!(read_ws_messages(&huge).is_empty());
        // Fragments within the limit are reassembled.
        let mut first = masked(2, b"hel");
        first[0] &= 0x7f;
        let mut small = first;
        small.extend(masked(0, b"lo"));
        assert_eq!(read_ws_messages(&small), vec![Bytes::from_static(b"hello")]);
        // Fragments adding up to more than the message limit: refused.
        let frame_max = courier_proto::constants::CLIENT_FRAME_BYTES_MAX;
        let mut frags = Vec::new();
        let part = vec![7u8; frame_max / 2 + 1];
        frags.extend(masked(2, &part));
        frags[0] &= 0x7f; // not FIN
        let mut cont = masked(0, &part);
        cont[0] &= 0x7f;
        frags.extend(cont);
        frags.extend(masked(0, b"end"));
        assert!(read_ws_messages(&frags).is_empty());
        // Control frame over 125 bytes: refused.
        let mut ping = vec![0x89, 0x80 | 126];
        ping.extend_from_slice(&200u16.to_be_bytes());
        ping.extend_from_slice(&[0; 4]);
        ping.extend_from_slice(&[0; 200]);
        ping.extend(masked(2, b"after"));
        assert!(read_ws_messages(&ping).is_empty());
    }
}
