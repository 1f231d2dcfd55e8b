//! A scripted in-process fake of `courierd` for client tests: a real
//! loopback WebSocket server speaking the real codec, with an honest
//! in-memory model of the parts of the protocol a client's recovery depends
//! on (Hello, Send with idempotency, Sync with inline/truncated entries,
//! History, ListConversations, live fanout) and knobs to inject faults
//! (dropped or duplicated events, lost acks, unanswered requests, garbage
//! frames, outages).
#![allow(dead_code)]

use courier_core::api::*;
use courier_proto::close;
use courier_proto::{decode_client, ClientFrame, Encoder};
use courier_tools::{ClientOptions, ConnectOptions};
use futures::{SinkExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Ws;

pub const USER: UserId = UserId(1);
pub const OTHER: UserId = UserId(2);
pub const SECRET: [u8; 32] = [7; 32];

pub fn credential() -> Credential {
    Credential::User {
        user: USER,
        token: 1,
        secret: SECRET,
    }
}

enum Out {
    Frame(Vec<u8>),
    Close(u16),
    CloseWith(u16, String),
    Abort,
}

#[derive(Default)]
pub struct Faults {
    /// Live events of these (conversation, seq) are not delivered.
    pub drop_events: Vec<(ConversationId, Seq)>,
    /// Every live message event is sent twice.
    pub duplicate_events: bool,
    /// The next N sends are committed but the connection is cut before the ack.
    pub lose_acks: u32,
    /// The next N sends are committed but never answered.
    pub ignore_sends: u32,
    /// The next N sends are answered `Unavailable` with this cause before
    /// anything is committed (a cluster node answers so when its primary
    /// changes with the send in flight: `PeerTimeout`).
    pub unavailable_sends: Option<(u32, UnavailableCause)>,
    /// New connections are cut right after the TCP accept (server down).
    pub refuse: bool,
    /// Send a garbage binary frame before the next event.
    pub garbage_before_next_event: bool,
    /// Sync inlines at most this many missed messages per conversation.
    pub sync_inline_max: usize,
    /// History pages carry at most this many messages (as if cut by bytes).
    pub history_page_max: usize,
    /// Reply to requests in reverse order, in batches of this many.
    pub reverse_batch: usize,
    /// Every Hello is closed with 4011 NOT_SERVING and this reason (a
    /// cluster node that is not the primary).
    pub not_serving: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub convs: BTreeMap<ConversationId, Vec<Message>>,
    pub dedup: HashMap<(ConversationId, u128), Seq>,
    pub faults: Faults,
    /// Every request received, in order.
    pub requests: Vec<Request>,
    pub hellos: u32,
    conns: Vec<mpsc::UnboundedSender<Out>>,
    held: Vec<Vec<u8>>,
}

#[derive(Clone)]
pub struct FakeServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl FakeServer {
    /// Starts a fake with conversations 10 and 11, both empty, user 1 in both.
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut state = State::default();
        state.convs.insert(ConversationId(10), Vec::new());
        state.convs.insert(ConversationId(11), Vec::new());
        state.faults.sync_inline_max = 50;
        state.faults.history_page_max = 100;
        let state = Arc::new(Mutex::new(state));
        let fake = FakeServer { addr, state };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                if f.state.lock().unwrap().faults.refuse {
                    drop(tcp);
                    continue;
                }
                tokio::spawn(f.clone().serve(tcp));
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn options(&self) -> ClientOptions {
        let mut connect = ConnectOptions::new(self.url(), credential());
        connect.request_timeout = Duration::from_millis(500);
        connect.connect_timeout = Duration::from_secs(2);
        let mut o = ClientOptions::new(connect);
        o.retry_deadline = Some(Duration::from_secs(10));
        o.backoff =
            courier_tools::Backoff::new(Duration::from_millis(5), Duration::from_millis(50));
        o
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Another user posts a message (committed, then fanned out).
    pub fn post(&self, conv: u64, body: &str) -> Seq {
        let mut s = self.state.lock().unwrap();
        s.commit(ConversationId(conv), OTHER, rand::random(), body.to_owned())
    }

    /// Cuts every connection without a close frame (like a kill -9).
    pub fn drop_all(&self) {
        let mut s = self.state.lock().unwrap();
        for c in s.conns.drain(..) {
            let _ = c.send(Out::Abort);
        }
    }

    /// Closes every connection with a close code.
    pub fn close_all(&self, code: u16) {
        let mut s = self.state.lock().unwrap();
        for c in s.conns.drain(..) {
            let _ = c.send(Out::Close(code));
        }
    }

    pub fn messages(&self, conv: u64) -> Vec<Message> {
        self.with(|s| s.convs[&ConversationId(conv)].clone())
    }

    pub fn count_requests(&self, pred: impl Fn(&Request) -> bool) -> usize {
        self.with(|s| s.requests.iter().filter(|r| pred(r)).count())
    }

    async fn serve(self, tcp: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (mut tx, mut rx) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
        let (killed_tx, mut killed) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _killed_tx = killed_tx; // dropped when the writer ends
            while let Some(out) = out_rx.recv().await {
                match out {
                    Out::Frame(b) => {
                        if tx.send(Ws::Binary(b.into())).await.is_err() {
                            return;
                        }
                    }
                    Out::Close(code) => {
                        let _ = tx
                            .send(Ws::Close(Some(CloseFrame {
                                code: CloseCode::from(code),
                                reason: "fake".into(),
                            })))
                            .await;
                        return;
                    }
                    Out::CloseWith(code, reason) => {
                        let _ = tx
                            .send(Ws::Close(Some(CloseFrame {
                                code: CloseCode::from(code),
                                reason: reason.into(),
                            })))
                            .await;
                        return;
                    }
                    Out::Abort => return,
                }
            }
        });
        let mut enc = Encoder::new();
        let mut authed = false;
        loop {
            // End (and drop the socket) as soon as the writer has ended.
            let msg = tokio::select! {
                msg = rx.next() => msg,
                _ = &mut killed => return,
            };
            let Some(Ok(msg)) = msg else { return };
            let Ws::Binary(bytes) = msg else { continue };
            let Ok(frame) = decode_client(&bytes) else {
                continue;
            };
            match frame {
                ClientFrame::Hello {
                    req, credential, ..
                } => {
                    let mut s = self.state.lock().unwrap();
                    s.hellos += 1;
                    if let Some(reason) = s.faults.not_serving.clone() {
                        let _ = out_tx.send(Out::CloseWith(close::NOT_SERVING, reason));
                        return;
                    }
                    if credential != self::credential() {
                        let _ =
                            out_tx.send(Out::Frame(enc.reply(req, &Err(Reject::Unauthenticated))));
                        let _ = out_tx.send(Out::Close(close::UNAUTHENTICATED));
                        return;
                    }
                    authed = true;
                    // Subscribe first, then answer (like courierd).
                    s.conns.push(out_tx.clone());
                    let _ = out_tx.send(Out::Frame(enc.reply(
                        req,
                        &Ok(Response::Welcome {
                            user: Some(USER),
                            workspace: Some(WorkspaceId(1)),
                            now: Millis(1),
                            conn_rate: RateLimit::NONE,
                            user_rate: RateLimit::NONE,
                        }),
                    )));
                }
                ClientFrame::Request { req, request } => {
                    if !authed {
                        return;
                    }
                    let mut s = self.state.lock().unwrap();
                    s.requests.push(request.clone());
                    let reply = match s.handle(request) {
                        Handled::Reply(r) => r,
                        Handled::Silent => continue,
                        Handled::Cut => {
                            s.conns.retain(|c| !c.same_channel(&out_tx));
                            let _ = out_tx.send(Out::Abort);
                            return;
                        }
                    };
                    let bytes = enc.reply(req, &reply);
                    let batch = s.faults.reverse_batch;
                    if batch > 1 {
                        s.held.push(bytes);
                        if s.held.len() >= batch {
                            for f in std::mem::take(&mut s.held).into_iter().rev() {
                                let _ = out_tx.send(Out::Frame(f));
                            }
                        }
                    } else {
                        let _ = out_tx.send(Out::Frame(bytes));
                    }
                }
            }
        }
    }
}

enum Handled {
    Reply(Result<Response, Reject>),
    Silent,
    Cut,
}

impl State {
    pub fn commit(&mut self, conv: ConversationId, sender: UserId, id: u128, body: String) -> Seq {
        let log = self.convs.entry(conv).or_default();
        let seq = Seq(log.len() as u64 + 1);
        let m = Message {
            conversation: conv,
            seq,
            sender,
            client_msg_id: id,
            ts: Millis(1000 + seq.0),
            body,
            mentions: vec![],
            broadcast: Broadcast::None,
            change: None,
            live: Default::default(),
            thread: None,
        };
        log.push(m.clone());
        self.dedup.insert((conv, id), seq);
        self.fanout(m);
        seq
    }

    fn fanout(&mut self, m: Message) {
        if self.faults.drop_events.contains(&(m.conversation, m.seq)) {
            return;
        }
        let mut enc = Encoder::new();
        let copies = if self.faults.duplicate_events { 2 } else { 1 };
        let garbage = std::mem::take(&mut self.faults.garbage_before_next_event);
        let bytes = enc.event(&Event::Message(m));
        self.conns.retain(|c| {
            if garbage {
                let _ = c.send(Out::Frame(vec![1, 2, 3, 4, 5, 6, 7, 8]));
            }
            let mut ok = true;
            for _ in 0..copies {
                ok &= c.send(Out::Frame(bytes.clone())).is_ok();
            }
            ok
        });
    }

    fn info(&self, conv: ConversationId) -> ConversationInfo {
        let head = Seq(self.convs[&conv].len() as u64);
        ConversationInfo {
            id: conv,
            kind: ConversationKind::PublicChannel,
            name: format!("c{}", conv.0),
            members: vec![],
            member_count: 2,
            head,
            read: Seq(0),
            unread: 0,
            mentions: 0,
            member: true,
            last_activity: Millis(0),
            preview: None,
            settings: Default::default(),
        }
    }

    fn handle(&mut self, request: Request) -> Handled {
        let reply = match request {
            Request::Send {
                conversation,
                client_msg_id,
                body,
                ..
            } => {
                if !self.convs.contains_key(&conversation) {
                    return Handled::Reply(Err(Reject::NotFound));
                }
                if let Some((n, cause)) = self.faults.unavailable_sends.as_mut() {
                    if *n > 0 {
                        *n -= 1;
                        let detail = "the fake's primary changed";
                        return Handled::Reply(Err(Reject::unavailable(*cause, detail)));
                    }
                }
                let seq = match self.dedup.get(&(conversation, client_msg_id)) {
                    Some(seq) => *seq,
                    None => self.commit(conversation, USER, client_msg_id, body),
                };
                if self.faults.lose_acks > 0 {
                    self.faults.lose_acks -= 1;
                    return Handled::Cut;
                }
                if self.faults.ignore_sends > 0 {
                    self.faults.ignore_sends -= 1;
                    return Handled::Silent;
                }
                Ok(Response::SendAck {
                    conversation,
                    seq,
                    ts: Millis(1000 + seq.0),
                    broadcast_ignored: false,
                })
            }
            Request::ListConversations => Ok(Response::Conversations(
                self.convs.keys().map(|c| self.info(*c)).collect(),
            )),
            Request::Sync { cursors, .. } => {
                let cursors: HashMap<_, _> = cursors.into_iter().collect();
                let mut changed = Vec::new();
                for (conv, log) in &self.convs {
                    let cursor = cursors.get(conv).copied().unwrap_or(Seq(0));
                    let head = log.len() as u64;
                    if head <= cursor.0 {
                        continue;
                    }
                    let missed = &log[cursor.0 as usize..];
                    let max = self.faults.sync_inline_max;
                    let (messages, truncated) = if missed.len() > max {
                        (missed[missed.len() - max.min(20)..].to_vec(), true)
                    } else {
                        (missed.to_vec(), false)
                    };
                    changed.push(SyncConversation {
                        info: self.info(*conv),
                        messages,
                        truncated,
                    });
                }
                Ok(Response::Sync {
                    changed,
                    gone: vec![],
                })
            }
            Request::History {
                conversation,
                anchor,
                limit,
            } => {
                let Some(log) = self.convs.get(&conversation) else {
                    return Handled::Reply(Err(Reject::NotFound));
                };
                let limit = (limit as usize).min(self.faults.history_page_max);
                let messages = match anchor {
                    HistoryAnchor::After(s) => log
                        .iter()
                        .filter(|m| m.seq > s)
                        .take(limit)
                        .cloned()
                        .collect(),
                    HistoryAnchor::Before(s) => {
                        let older: Vec<_> = log.iter().filter(|m| m.seq < s).cloned().collect();
                        older[older.len().saturating_sub(limit)..].to_vec()
                    }
                    HistoryAnchor::Latest => log[log.len().saturating_sub(limit)..].to_vec(),
                };
                Ok(Response::History {
                    messages,
                    head: Seq(log.len() as u64),
                })
            }
            Request::Lookup { name, .. } => match name.as_str() {
                "general" => Ok(Response::Found { id: 10 }),
                _ => Err(Reject::NotFound),
            },
            _ => Ok(Response::Done),
        };
        Handled::Reply(reply)
    }
}
