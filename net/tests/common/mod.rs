//! Test kit for `courierd` integration tests: a real daemon process on an
//! ephemeral port with a temporary data directory, and a small blocking
//! WebSocket client that speaks the wire protocol frame by frame (so tests
//! can also send things no well-behaved client would). Spawning, the ready
//! line, kill -9 and restarts go through `courier_tools::testkit`, the one
//! daemon test harness of the workspace.
#![allow(dead_code)]

pub mod load;

use courier_core::api::*;
use courier_proto::{decode_server, ClientFrame, Encoder, ServerFrame};
use courier_tools::testkit::{Launch, ServerProcess, TestkitError};
use std::collections::VecDeque;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message as WsMessage, WebSocket};

/// A running `courierd`: a [`courier_tools::testkit::ServerProcess`] (the
/// one daemon test harness: spawn, ready line, thread dump of a daemon that
/// never becomes ready, kill -9, restart) with this crate's test-facing
/// fields. `extra` and `env` are read again at every restart.
pub struct Server {
    process: ServerProcess,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub shards: u16,
    pub extra: Vec<String>,
    /// Environment of the next start (e.g. `COURIER_FAILPOINT`).
    pub env: Vec<(String, String)>,
    /// Data directory somewhere else than `dir/data` (e.g. a small mount).
    pub data: Option<PathBuf>,
}

/// Where tests put data: a real filesystem (O_DIRECT does not work on tmpfs).
pub fn test_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("courierd-tests");
    std::fs::create_dir_all(&root).unwrap();
    root
}

impl Server {
    pub fn start(shards: u16) -> Server {
        Server::start_with(shards, &[])
    }

    pub fn start_with(shards: u16, extra: &[&str]) -> Server {
        Server::start_full(shards, extra, &[], None)
    }

    /// Starts with extra flags, environment and an optional data directory.
    pub fn start_full(
        shards: u16,
        extra: &[&str],
        env: &[(&str, &str)],
        data: Option<PathBuf>,
    ) -> Server {
        let dir = tempfile::tempdir_in(test_root()).unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let data_dir = data.clone().unwrap_or_else(|| dir.path().join("data"));
        let mut launch = Launch::new(&data_dir, shards);
        launch.binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_courierd")));
        launch.log = dir.path().join("courierd.log");
        // Everything the daemon prints on stdout is kept next to its log
        // (tests scan both).
        launch.stdout = Some(dir.path().join("courierd.stdout"));
        launch.args = extra.clone();
        launch.env = env.clone();
        let log = launch.log.clone();
        let process = ServerProcess::launch(launch).unwrap_or_else(|e| not_ready(&e, &log));
        Server {
            addr: process.addr(),
            process,
            dir,
            shards,
            extra,
            env,
            data,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.process.data_dir().to_owned()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// How long the last start took, from spawn to the ready line.
    pub fn last_start(&self) -> Duration {
        self.process
            .last_start()
            .expect("a Server has started at least once")
    }

    /// Resident memory of the daemon in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("not running");
        proc_status_kib(pid, "VmRSS:")
    }

    /// Waits up to `timeout` for the process to exit on its own; returns
    /// its status (and forgets the child) if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(timeout).unwrap()
    }

    /// Where the daemon's stdout is captured (every start appends).
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("courierd.stdout")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    pub fn admin_token(&self) -> String {
        self.process.admin_token().unwrap()
    }

    pub fn admin_credential(&self) -> Credential {
        courier_proto::token::parse(&self.admin_token()).unwrap()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        match self.process.stop() {
            Ok(code) => code,
            Err(e) => panic!("{e}; log:\n{}", self.log()),
        }
    }

    /// Starts again on the same data directory and port (with the current
    /// `extra` and `env`).
    pub fn restart(&mut self) {
        assert!(self.process.pid().is_none(), "stop it first");
        let launch = self.process.launch_mut();
        launch.args = self.extra.clone();
        launch.env = self.env.clone();
        if let Err(e) = self.process.start_again() {
            not_ready(&e, self.process.log_path());
        }
        self.addr = self.process.addr();
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn admin(&self) -> Client {
        let mut c = self.connect();
        c.hello(self.admin_credential()).unwrap();
        c
    }
}

/// Fails the test with the kit's error (which, for a daemon that never
/// became ready, holds its threads' stacks) and the whole log.
fn not_ready(e: &TestkitError, log: &Path) -> ! {
    panic!(
        "courierd did not become ready: {e}\nfull log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.kill9();
        if std::thread::panicking() {
            eprintln!("---- courierd log ----\n{}", self.log());
        }
    }
}

/// A `kB` field of /proc/PID/status (e.g. `VmRSS:`, `VmHWM:`), 0 if absent.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// A blocking protocol client with an event buffer.
pub struct Client {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
    enc: Encoder,
    next_req: u32,
    pub events: VecDeque<Event>,
}

pub type Reply = Result<Response, Reject>;

/// The user and credential of a `TokenIssued` reply (any other reply fails
/// the test).
pub fn issued_credential(reply: Reply) -> (UserId, Credential) {
    match reply {
        Ok(Response::TokenIssued {
            user,
            token,
            secret,
        }) => (
            user,
            Credential::User {
                user,
                token,
                secret,
            },
        ),
        other => panic!("expected a token: {other:?}"),
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let (ws, _) = tungstenite::connect(format!("ws://{addr}/")).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        }
        Client {
            ws,
            enc: Encoder::new(),
            next_req: 1,
            events: VecDeque::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bytes.into())).unwrap();
    }

    pub fn hello(&mut self, credential: Credential) -> Reply {
        self.hello_as(credential, DeviceKind::Tool)
    }

    /// `Hello` as a device of this kind (tools never count as a person's
    /// active device for notifications).
    pub fn hello_as(&mut self, credential: Credential, kind: DeviceKind) -> Reply {
        let req = self.take_req();
        let bytes = self.enc.client(&ClientFrame::Hello {
            req,
            credential,
            device: DeviceInfo {
                kind,
                name: "test".into(),
            },
        });
        self.send_raw(bytes);
        self.wait_reply(req)
    }

    pub fn login(addr: SocketAddr, token: &Credential) -> Client {
        let mut c = Client::connect(addr);
        let welcome = c.hello(token.clone()).unwrap();
        assert!(matches!(welcome, Response::Welcome { .. }), "{welcome:?}");
        c
    }

    fn take_req(&mut self) -> u32 {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    pub fn request(&mut self, request: Request) -> Reply {
        let req = self.take_req();
        let bytes = self.enc.client(&ClientFrame::Request { req, request });
        self.send_raw(bytes);
        self.wait_reply(req)
    }

    /// Sends `request` under request id `req` and returns the raw bytes of
    /// its reply frame (events on the way are buffered), so tests can
    /// compare replies byte for byte.
    pub fn request_raw(&mut self, req: u32, request: Request) -> Vec<u8> {
        let bytes = self.enc.client(&ClientFrame::Request { req, request });
        self.send_raw(bytes);
        loop {
            match self.ws.read() {
                Ok(WsMessage::Binary(b)) => {
                    match decode_server(&b).expect("invalid server frame") {
                        ServerFrame::Reply { req: r, .. } if r == req => return b.to_vec(),
                        ServerFrame::Reply { req: r, result } => {
                            panic!("reply to unknown request {r}: {result:?}")
                        }
                        ServerFrame::Event(e) => self.events.push_back(e),
                    }
                }
                Ok(WsMessage::Close(f)) => panic!("closed while waiting for a reply: {f:?}"),
                Ok(_) => continue,
                Err(e) => panic!("websocket read failed: {e}"),
            }
        }
    }

    /// Every event that arrives until the connection is quiet for `quiet`
    /// (buffered ones first). Ends early if the server closes; the close
    /// code is returned with the events.
    pub fn drain_events(&mut self, quiet: Duration) -> (Vec<Event>, Option<Option<u16>>) {
        let mut out: Vec<Event> = self.events.drain(..).collect();
        let set = |ws: &WebSocket<MaybeTlsStream<TcpStream>>, d: Duration| {
            if let MaybeTlsStream::Plain(s) = ws.get_ref() {
                s.set_read_timeout(Some(d)).unwrap();
            }
        };
        set(&self.ws, quiet);
        let closed = loop {
            match self.ws.read() {
                Ok(WsMessage::Binary(b)) => {
                    match decode_server(&b).expect("invalid server frame") {
                        ServerFrame::Event(e) => out.push(e),
                        ServerFrame::Reply { req, result } => {
                            panic!("unexpected reply {req}: {result:?}")
                        }
                    }
                }
                Ok(WsMessage::Close(f)) => break Some(f.map(|f| u16::from(f.code))),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break None
                }
                Err(_) => break Some(None),
            }
        };
        set(&self.ws, Duration::from_secs(20));
        (out, closed)
    }

    /// Reads frames until the reply to `req`, buffering events.
    pub fn wait_reply(&mut self, req: u32) -> Reply {
        loop {
            match self
                .read_frame()
                .expect("connection closed while waiting for a reply")
            {
                ServerFrame::Reply { req: r, result } if r == req => return result,
                ServerFrame::Reply { req: r, result } => {
                    panic!("reply to unknown request {r}: {result:?}")
                }
                ServerFrame::Event(e) => self.events.push_back(e),
            }
        }
    }

    /// Next server frame, or the close frame's code if the server closed.
    pub fn read_frame(&mut self) -> Result<ServerFrame, Option<u16>> {
        loop {
            match self.ws.read() {
                Ok(WsMessage::Binary(b)) => {
                    return Ok(decode_server(&b).expect("server sent an invalid frame"))
                }
                Ok(WsMessage::Close(frame)) => return Err(frame.map(|f| u16::from(f.code))),
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("websocket read ended: {e}");
                    return Err(None);
                }
            }
        }
    }

    /// Waits for the connection to be closed by the server; returns the code.
    pub fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.read_frame() {
                Ok(_) => continue,
                Err(code) => return code,
            }
        }
    }

    /// Next event (from the buffer or the socket).
    pub fn next_event(&mut self) -> Event {
        if let Some(e) = self.events.pop_front() {
            return e;
        }
        match self
            .read_frame()
            .expect("closed while waiting for an event")
        {
            ServerFrame::Event(e) => e,
            ServerFrame::Reply { req, result } => panic!("unexpected reply {req}: {result:?}"),
        }
    }

    /// Next `MessageEvent`, skipping other events.
    pub fn next_message(&mut self) -> Message {
        loop {
            if let Event::Message(m) = self.next_event() {
                return m;
            }
        }
    }

    pub fn send(&mut self, conversation: ConversationId, body: &str) -> Seq {
        let client_msg_id = rand_u128();
        match self.request(Request::Send {
            conversation,
            client_msg_id,
            body: body.into(),
            mentions: vec![],
            broadcast: Broadcast::None,
        }) {
            Ok(Response::SendAck { seq, .. }) => seq,
            other => panic!("send failed: {other:?}"),
        }
    }
}

pub fn rand_u128() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t ^ (u128::from(N.fetch_add(1, Ordering::Relaxed)) << 64) ^ u128::from(std::process::id())
}

/// A workspace with users, created through the admin API.
pub struct World {
    pub workspace: WorkspaceId,
    pub users: Vec<(UserId, Credential)>,
}

pub fn world(server: &Server, names: &[&str]) -> World {
    let mut admin = server.admin();
    let workspace = match admin.request(Request::CreateWorkspace {
        name: "acme".into(),
    }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let users = names
        .iter()
        .map(|name| {
            issued_credential(admin.request(Request::CreateUser {
                workspace,
                name: (*name).into(),
            }))
        })
        .collect();
    World { workspace, users }
}

pub fn conversation(reply: Reply) -> ConversationId {
    match reply {
        Ok(Response::Conversation(info)) => info.id,
        other => panic!("expected a conversation: {other:?}"),
    }
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}
