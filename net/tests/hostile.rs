//! Hostile clients against a real `courierd`, each next to a well-behaved
//! pair of users whose send→ack and send→delivery latency is measured
//! before and during the attack (the figures are printed, `hostile:` lines):
//!
//! - protocol abuse: length headers promising 2^62 bytes, floods of
//!   one-byte fragments, control frames over 125 bytes, unmasked frames,
//!   text frames, random and structurally damaged flatbuffers — each
//!   connection gets an error frame or its documented close code, nobody
//!   else notices;
//! - silence: slowloris request heads (dropped at the 5 s head deadline),
//!   upgraded connections that never say `Hello` (4009 at the pre-auth
//!   deadline), authenticated connections that start a 200 KiB message and
//!   never finish it (4010 at the idle deadline);
//! - refusals a client in another language must be able to tell apart: a
//!   `Hello` with an unsupported version or an over-long device name
//!   (an error naming the field, then close 4002), request id 0 (a bad
//!   frame, not executed), a flatbuffer without the `CRR1` identifier;
//! - silent members with the idle timeout below the pre-auth deadline:
//!   4010 at the idle timeout, never at the pre-auth deadline;
//! - 10,000 idle authenticated connections: resident memory per connection
//!   (from /proc/PID/status) is bounded and printed;
//! - 100 consumers that never read on a busy channel: every one is cut off
//!   with 4008 and the daemon's memory stays within the outbox bound.
//!
//! Pass: no panic (the daemon is alive and healthy at the end), memory
//! within the bounds computed from the configuration, the documented close
//! codes, and the well-behaved pair's messages all acknowledged and
//! delivered, with p99 latency below an absolute ceiling (the ratio to the
//! quiet baseline is printed, not asserted: this machine is shared).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use courier_core::api::*;
use courier_proto::close;
use courier_proto::{ClientFrame, Encoder};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A probe's p99 must stay below this, attack or not (a wedged shard blows it).
const PROBE_P99_CEILING: Duration = Duration::from_millis(750);

// ---------------------------------------------------------------------------
// A raw WebSocket client that can send anything.

/// How reading a server frame ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server closed the TCP connection (without or after a close frame).
    Eof,
    /// Nothing arrived in time.
    Timeout,
}

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    /// Bytes read from the socket at once, and a pause after each read
    /// (to play a slow reader).
    read_chunk: usize,
    read_pause: Duration,
}

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: courier\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// One client frame; `mask = None` sends it unmasked.
fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

fn binary(payload: &[u8]) -> Vec<u8> {
    frame(2, true, payload, Some([7, 1, 9, 3]))
}

impl From<TcpStream> for Raw {
    fn from(s: TcpStream) -> Raw {
        Raw {
            s,
            buf: Vec::new(),
            read_chunk: 64 * 1024,
            read_pause: Duration::ZERO,
        }
    }
}

impl Raw {
    fn tcp(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw::from(s)
    }

    /// TCP + the HTTP upgrade (101 read).
    fn ws(addr: SocketAddr) -> Raw {
        let mut r = Raw::tcp(addr);
        r.s.write_all(UPGRADE.as_bytes()).unwrap();
        r.read_upgrade();
        r
    }

    fn read_upgrade(&mut self) {
        let mut chunk = [0u8; 1024];
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed during upgrade");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(
            self.buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.drain(..end);
    }

    /// An upgraded, authenticated connection.
    fn user(addr: SocketAddr, credential: &Credential) -> Raw {
        let mut r = Raw::ws(addr);
        r.hello(credential);
        r.expect_welcome();
        r
    }

    fn hello(&mut self, credential: &Credential) {
        let bytes = Encoder::new().client(&ClientFrame::Hello {
            req: 1,
            credential: credential.clone(),
            device: DeviceInfo {
                kind: DeviceKind::Tool,
                name: "raw".into(),
            },
        });
        self.send(&binary(&bytes));
    }

    fn expect_welcome(&mut self) {
        let (op, payload) = self.next_frame(Duration::from_secs(20)).unwrap();
        assert_eq!(op, 2);
        match courier_proto::decode_server(&payload).unwrap() {
            courier_proto::ServerFrame::Reply {
                result: Ok(Response::Welcome { .. }),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Sends what the peer accepts; false once the peer is gone.
    fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    fn fill(&mut self, want: usize, deadline: Instant) -> Result<(), End> {
        let mut chunk = vec![0u8; self.read_chunk];
        while self.buf.len() < want {
            std::thread::sleep(self.read_pause);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::Timeout);
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut chunk) {
                Ok(0) => return Err(End::Eof),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(End::Timeout)
                }
                Err(_) => return Err(End::Eof),
            }
        }
        Ok(())
    }

    /// The next server frame (opcode, payload).
    fn next_frame(&mut self, timeout: Duration) -> Result<(u8, Vec<u8>), End> {
        let deadline = Instant::now() + timeout;
        self.fill(2, deadline)?;
        let opcode = self.buf[0] & 0x0f;
        assert_eq!(self.buf[1] & 0x80, 0, "server frames are never masked");
        let (len, header) = match self.buf[1] & 0x7f {
            126 => {
                self.fill(4, deadline)?;
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                self.fill(10, deadline)?;
                (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()), 10)
            }
            n => (u64::from(n), 2),
        };
        let total = header + len as usize;
        self.fill(total, deadline)?;
        let payload = self.buf[header..total].to_vec();
        self.buf.drain(..total);
        Ok((opcode, payload))
    }

    /// Reads until the server's close frame; its code, or `None` if the
    /// connection ended without one. Panics if nothing ends in `timeout`.
    fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left) {
                Ok((8, payload)) if payload.len() >= 2 => {
                    return Some(u16::from_be_bytes([payload[0], payload[1]]))
                }
                Ok((8, _)) => return None,
                Ok(_) => continue,
                Err(End::Eof) => return None,
                Err(End::Timeout) => panic!("the server did not close within {timeout:?}"),
            }
        }
    }

    /// Error replies read until `n` arrived (events skipped).
    fn replies(&mut self, n: usize) -> Vec<Result<Response, Reject>> {
        let mut out = Vec::new();
        while out.len() < n {
            let (op, payload) = self.next_frame(Duration::from_secs(20)).unwrap();
            if op != 2 {
                continue;
            }
            if let courier_proto::ServerFrame::Reply { result, .. } =
                courier_proto::decode_server(&payload).unwrap()
            {
                out.push(result);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// The well-behaved pair and its latency.

struct Pair {
    sender: Credential,
    receiver: Credential,
    dm: ConversationId,
}

#[derive(Debug)]
struct Latency {
    ack: Vec<Duration>,
    delivery: Vec<Duration>,
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

impl Latency {
    fn line(&self) -> String {
        format!(
            "ack p50 {:.2} ms p99 {:.2} ms, delivery p50 {:.2} ms p99 {:.2} ms",
            ms(pct(&self.ack, 0.5)),
            ms(pct(&self.ack, 0.99)),
            ms(pct(&self.delivery, 0.5)),
            ms(pct(&self.delivery, 0.99))
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pair(server: &Server, names: [&str; 2]) -> Pair {
    let w = world_named(server, &format!("ws-{}", names[0]), &names);
    let mut a = Client::login(server.addr, &w.users[0].1);
    let dm = conversation(a.request(Request::OpenDm {
        users: vec![w.users[1].0],
    }));
    Pair {
        sender: w.users[0].1.clone(),
        receiver: w.users[1].1.clone(),
        dm,
    }
}

/// A workspace named `ws` with users.
fn world_named(server: &Server, ws: &str, names: &[&str]) -> World {
    let mut admin = server.admin();
    let workspace = match admin.request(Request::CreateWorkspace { name: ws.into() }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let users = names
        .iter()
        .map(|name| create_user(&mut admin, workspace, name))
        .collect();
    World { workspace, users }
}

/// Creates a user, waiting out the admin connection's rate limit.
fn create_user(admin: &mut Client, workspace: WorkspaceId, name: &str) -> (UserId, Credential) {
    let reply = loop {
        match admin.request(Request::CreateUser {
            workspace,
            name: name.into(),
        }) {
            Err(Reject::RateLimited { retry_after_ms, .. }) => {
                std::thread::sleep(Duration::from_millis(retry_after_ms))
            }
            other => break other,
        }
    };
    issued_credential(reply)
}

impl Pair {
    /// `n` sends every `every`; every one must be acknowledged and delivered.
    fn measure(&self, server: &Server, n: usize, every: Duration) -> Latency {
        let mut sender = Client::login(server.addr, &self.sender);
        let mut receiver = Client::login(server.addr, &self.receiver);
        let tag = rand_u128() as u64;
        let (ack, delivery) = std::thread::scope(|s| {
            let got = s.spawn(|| {
                let mut got = std::collections::HashMap::new();
                while got.len() < n {
                    let m = receiver.next_message();
                    if let Some(i) = m
                        .body
                        .strip_prefix(&format!("probe {tag} "))
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        got.insert(i, Instant::now());
                    }
                }
                got
            });
            let mut ack = Vec::new();
            let mut sent = Vec::new();
            for i in 0..n {
                let t0 = Instant::now();
                sender.send(self.dm, &format!("probe {tag} {i}"));
                ack.push(t0.elapsed());
                sent.push(t0);
                std::thread::sleep(every.saturating_sub(t0.elapsed()));
            }
            let got = got.join().unwrap();
            let delivery = (0..n).map(|i| got[&i] - sent[i]).collect::<Vec<_>>();
            (ack, delivery)
        });
        Latency { ack, delivery }
    }
}

/// Runs `attack` on another thread while measuring the pair; returns the
/// attack's result and the latency during it.
fn during<T: Send>(
    server: &Server,
    pair: &Pair,
    n: usize,
    attack: impl FnOnce() -> T + Send,
) -> (T, Latency) {
    std::thread::scope(|s| {
        let a = s.spawn(attack);
        // Let the attack get going before measuring.
        std::thread::sleep(Duration::from_millis(200));
        let latency = pair.measure(server, n, Duration::from_millis(10));
        (a.join().unwrap(), latency)
    })
}

fn report(name: &str, base: &Latency, under: &Latency) {
    let r = |a: &[Duration], b: &[Duration]| ms(pct(b, 0.99)) / ms(pct(a, 0.99)).max(0.001);
    eprintln!(
        "hostile: {name}: baseline {} | during {} | p99 ratio ack {:.2} delivery {:.2}",
        base.line(),
        under.line(),
        r(&base.ack, &under.ack),
        r(&base.delivery, &under.delivery)
    );
    for (what, v) in [("ack", &under.ack), ("delivery", &under.delivery)] {
        assert!(
            pct(v, 0.99) < PROBE_P99_CEILING,
            "{name}: well-behaved {what} p99 {:?} ≥ {PROBE_P99_CEILING:?}",
            pct(v, 0.99)
        );
    }
}

fn healthy(server: &Server) {
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".into()));
}

// ---------------------------------------------------------------------------
// The attacks.

#[test]
fn protocol_abuse_gets_clear_close_codes_and_nobody_else_notices() {
    let server = Server::start(2);
    let pair = pair(&server, ["ann", "bob"]);
    let w = world_named(&server, "abusers", &["mallory"]);
    let mallory = w.users[0].1.clone();
    let base = pair.measure(&server, 100, Duration::from_millis(10));
    let rss_before = server.rss_kib();
    let addr = server.addr;

    let (codes, under) = during(&server, &pair, 100, || {
        let mut codes = Vec::new();
        // A length header promising 2^62 bytes: refused before reading it.
        let mut c = Raw::user(addr, &mallory);
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        c.send(&huge);
        codes.push((
            "length header 2^62",
            c.close_code(Duration::from_secs(10)),
            Some(close::MESSAGE_TOO_BIG),
        ));
        // Just over the 256 KiB message limit in one frame header.
        let mut c = Raw::user(addr, &mallory);
        let mut over = vec![0x82, 0x80 | 127];
        over.extend_from_slice(&(256u64 * 1024 + 1).to_be_bytes());
        over.extend_from_slice(&[1, 2, 3, 4]);
        c.send(&over);
        codes.push((
            "length header 256 KiB + 1",
            c.close_code(Duration::from_secs(10)),
            Some(close::MESSAGE_TOO_BIG),
        ));
        // A flood of one-byte fragments adding up to more than 256 KiB.
        let mut c = Raw::user(addr, &mallory);
        let started = Instant::now();
        let mut flood = frame(2, false, b"x", Some([1, 2, 3, 4]));
        let cont = frame(0, false, b"x", Some([5, 6, 7, 8]));
        let mut sent = 1usize;
        'flood: while sent <= 256 * 1024 + 8 {
            for _ in 0..4096 {
                flood.extend_from_slice(&cont);
                sent += 1;
            }
            if !c.try_send(&flood) {
                break 'flood;
            }
            flood.clear();
        }
        codes.push((
            "one-byte fragment flood",
            c.close_code(Duration::from_secs(20)),
            Some(close::MESSAGE_TOO_BIG),
        ));
        eprintln!(
            "hostile: {sent} one-byte fragments sent in {:.0} ms before the close",
            ms(started.elapsed())
        );
        // Many small fragmented messages within the limit are fine.
        let mut c = Raw::user(addr, &mallory);
        let list = Encoder::new().client(&ClientFrame::Request {
            req: 9,
            request: Request::ListConversations,
        });
        for _ in 0..50 {
            for (i, byte) in list.iter().enumerate() {
                let op = if i == 0 { 2 } else { 0 };
                c.send(&frame(
                    op,
                    i + 1 == list.len(),
                    &[*byte],
                    Some([9, 9, 9, 9]),
                ));
            }
        }
        let ok = c
            .replies(50)
            .iter()
            .filter(|r| matches!(r, Ok(Response::Conversations(_))))
            .count();
        assert_eq!(
            ok, 50,
            "fragmented requests must be reassembled and answered"
        );
        // A control frame over 125 bytes.
        let mut c = Raw::user(addr, &mallory);
        c.send(&frame(9, true, &[0u8; 126], Some([1, 1, 1, 1])));
        codes.push((
            "ping of 126 bytes",
            c.close_code(Duration::from_secs(10)),
            Some(close::PROTOCOL_ERROR),
        ));
        // A fragmented control frame.
        let mut c = Raw::user(addr, &mallory);
        c.send(&frame(9, false, b"p", Some([1, 1, 1, 1])));
        codes.push((
            "fragmented ping",
            c.close_code(Duration::from_secs(10)),
            Some(close::PROTOCOL_ERROR),
        ));
        // An unmasked client frame.
        let mut c = Raw::user(addr, &mallory);
        c.send(&frame(2, true, &list, None));
        codes.push((
            "unmasked frame",
            c.close_code(Duration::from_secs(10)),
            Some(close::PROTOCOL_ERROR),
        ));
        // Reserved bits and opcodes.
        let mut c = Raw::user(addr, &mallory);
        let mut rsv = binary(&list);
        rsv[0] |= 0x40;
        c.send(&rsv);
        codes.push((
            "RSV1 without an extension",
            c.close_code(Duration::from_secs(10)),
            Some(close::PROTOCOL_ERROR),
        ));
        let mut c = Raw::user(addr, &mallory);
        c.send(&frame(3, true, b"?", Some([1, 1, 1, 1])));
        codes.push((
            "reserved opcode 3",
            c.close_code(Duration::from_secs(10)),
            Some(close::PROTOCOL_ERROR),
        ));
        // A text frame.
        let mut c = Raw::user(addr, &mallory);
        c.send(&frame(1, true, b"hello", Some([1, 1, 1, 1])));
        codes.push((
            "text frame",
            c.close_code(Duration::from_secs(10)),
            Some(close::UNSUPPORTED_DATA),
        ));
        // Random bytes as flatbuffers: an error each, then 1008 at 16.
        let mut c = Raw::user(addr, &mallory);
        let mut rng = common::load::Rng::new(42);
        for i in 0..15 {
            let len = 1 + rng.below(if i % 2 == 0 { 64 } else { 4096 }) as usize;
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            c.send(&binary(&junk));
        }
        for r in c.replies(15) {
            assert!(matches!(r, Err(Reject::Invalid(_))), "{r:?}");
        }
        c.send(&binary(b"one more"));
        codes.push((
            "16 random frames",
            c.close_code(Duration::from_secs(10)),
            Some(close::POLICY_VIOLATION),
        ));
        codes
    });
    for (what, got, want) in &codes {
        assert_eq!(got, want, "{what}: close code");
    }
    report("protocol abuse", &base, &under);

    // Structurally damaged flatbuffers: every valid request of the
    // protocol, mutated; each gets an answer (an error, or a reply if the
    // damage left a valid frame) and the connection stays usable.
    let mut c = Raw::user(server.addr, &mallory);
    let conv = pair.dm;
    let requests = [
        Request::ListConversations,
        Request::Send {
            conversation: conv,
            client_msg_id: 5,
            body: "x".repeat(40),
            mentions: vec![UserId(1), UserId(2)],
            broadcast: Broadcast::Here,
        },
        Request::Sync {
            cursors: vec![(conv, Seq(1)), (ConversationId(9), Seq(2))],
            reads: vec![],
        },
        Request::History {
            conversation: conv,
            anchor: HistoryAnchor::Before(Seq(3)),
            limit: 5,
        },
        Request::OpenDm {
            users: vec![UserId(4), UserId(5)],
        },
        Request::Boot {
            limit: 5,
            offset: 0,
        },
    ];
    let mut rng = common::load::Rng::new(7);
    let mut sent = 0;
    let mut bad = 0;
    let mut answered = 0;
    let mut enc = Encoder::new();
    for round in 0..400 {
        let request = requests[round % requests.len()].clone();
        let mut bytes = enc.client(&ClientFrame::Request {
            req: 1000 + round as u32,
            request,
        });
        match rng.below(4) {
            0 => {
                // Flip a few bytes.
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                // Truncate.
                let keep = rng.below(bytes.len() as u64) as usize;
                bytes.truncate(keep.max(1));
            }
            2 => {
                // Overwrite a 4-byte offset or length with a huge value.
                let i = rng.below(bytes.len().saturating_sub(4) as u64) as usize;
                bytes[i..i + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
            }
            _ => {
                // Change the union type byte(s) near the root.
                let i = 4 + rng.below(16.min(bytes.len() as u64 - 4)) as usize;
                bytes[i] = rng.next() as u8;
            }
        }
        c.send(&binary(&bytes));
        sent += 1;
        let reply = c.replies(1).pop().unwrap();
        answered += 1;
        if matches!(reply, Err(Reject::Invalid(_))) {
            bad += 1;
        }
        if bad >= 12 {
            // Stay under the budget of 16 bad frames: a fresh connection.
            c = Raw::user(server.addr, &mallory);
            bad = 0;
        }
    }
    assert_eq!(answered, sent);
    let rss_after = server.rss_kib();
    eprintln!(
        "hostile: protocol abuse + {sent} damaged flatbuffers: daemon RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    healthy(&server);
    // The pair still works.
    let after = pair.measure(&server, 20, Duration::from_millis(5));
    assert_eq!(after.ack.len(), 20);
}

#[test]
fn slow_handshakes_and_silent_connections_are_cut_off_at_their_deadlines() {
    let server = Server::start_with(
        2,
        &["--preauth-timeout-secs", "2", "--idle-timeout-secs", "3"],
    );
    let pair = pair(&server, ["ann", "bob"]);
    // At most 32 devices per user: four users for 100 connections.
    let w = world_named(&server, "abusers", &["m0", "m1", "m2", "m3"]);
    let mallory: Vec<Credential> = w.users.iter().map(|u| u.1.clone()).collect();
    let addr = server.addr;
    let base = pair.measure(&server, 50, Duration::from_millis(10));
    let rss_before = server.rss_kib();

    // Slowloris: 300 request heads trickling in a byte at a time.
    const SLOW: usize = 300;
    let (peak, under) = during(&server, &pair, 100, || {
        let mut conns: Vec<Raw> = (0..SLOW).map(|_| Raw::tcp(addr)).collect();
        let started = Instant::now();
        let head = UPGRADE.as_bytes();
        let mut peak = 0;
        let mut i = 0;
        // Trickle for 7 s, well past the 5 s head deadline.
        while started.elapsed() < Duration::from_secs(7) {
            let byte = [head[i % (head.len() - 4)]];
            for c in conns.iter_mut() {
                let _ = c.s.write_all(&byte);
            }
            i += 1;
            if i == 10 {
                peak = server.rss_kib();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Every one was dropped (no response, EOF) at the deadline.
        for c in conns.iter_mut() {
            assert_eq!(
                c.next_frame(Duration::from_secs(5)).unwrap_err(),
                End::Eof,
                "slowloris connection still open"
            );
        }
        peak
    });
    report("slowloris (300 heads, 1 byte/100 ms)", &base, &under);
    eprintln!("hostile: slowloris: RSS {rss_before} KiB before, {peak} KiB during");

    // Upgraded, never authenticated: 4009 at the pre-auth deadline.
    let (codes, under) = during(&server, &pair, 100, || {
        let mut conns: Vec<Raw> = (0..300).map(|_| Raw::ws(addr)).collect();
        let started = Instant::now();
        let codes: Vec<Option<u16>> = conns
            .iter_mut()
            .map(|c| c.close_code(Duration::from_secs(10)))
            .collect();
        (codes, started.elapsed())
    });
    let (codes, took) = codes;
    assert!(
        codes.iter().all(|c| *c == Some(close::AUTH_TIMEOUT)),
        "{codes:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "pre-auth deadline took {took:?}"
    );
    report("300 upgraded connections without Hello", &base, &under);

    // Authenticated, then a 200 KiB message that never finishes: 4010.
    let (result, under) = during(&server, &pair, 100, || {
        let mut conns: Vec<Raw> = (0..100).map(|i| Raw::user(addr, &mallory[i % 4])).collect();
        let mut started = vec![0x82, 0x80 | 127];
        started.extend_from_slice(&(200u64 * 1024).to_be_bytes());
        started.extend_from_slice(&[1, 2, 3, 4]);
        started.extend_from_slice(&vec![0u8; 100 * 1024]);
        for c in conns.iter_mut() {
            c.send(&started);
        }
        std::thread::sleep(Duration::from_millis(500));
        let rss = server.rss_kib();
        let codes: Vec<Option<u16>> = conns
            .iter_mut()
            .map(|c| c.close_code(Duration::from_secs(10)))
            .collect();
        (rss, codes)
    });
    let (rss_stalled, codes) = result;
    assert!(codes.iter().all(|c| *c == Some(close::IDLE)), "{codes:?}");
    report("100 half-sent 200 KiB messages", &base, &under);
    eprintln!(
        "hostile: 100 stalled half messages (100 KiB each sent): RSS {rss_before} → {rss_stalled} KiB"
    );
    // At most what they sent plus the read buffers, with slack for the allocator.
    assert!(
        rss_stalled < rss_before + 100 * 256 + 64 * 1024,
        "stalled messages took {} KiB",
        rss_stalled.saturating_sub(rss_before)
    );
    healthy(&server);
}

#[test]
fn silent_members_are_closed_at_the_idle_timeout_even_below_the_preauth_deadline() {
    // Regression (issue 12): with `--idle-timeout-secs 3` and the pre-auth
    // deadline at its default 10 s, members that sent nothing after `Hello`
    // and answered no ping were closed 4010 after 3 or 10 s: a `Welcome`
    // that came while the reader waited under the pre-auth deadline armed
    // the idle deadline only when that wait ended. Two shards, so Welcomes
    // also come from the other shard.
    const IDLE: Duration = Duration::from_secs(3);
    const SLACK: Duration = Duration::from_millis(1_500);
    let server = Server::start_with(2, &["--idle-timeout-secs", "3"]);
    let names: Vec<String> = (0..6).map(|i| format!("quiet{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = world_named(&server, "quiet", &names);
    let addr = server.addr;
    let members: Vec<_> = (0..12)
        .map(|i| {
            let credential = w.users[i % w.users.len()].1.clone();
            std::thread::spawn(move || {
                let mut c = Raw::ws(addr);
                let hello_sent = Instant::now();
                c.hello(&credential);
                c.expect_welcome();
                // Silent from here on; Raw answers no ping.
                let code = c.close_code(Duration::from_secs(20));
                (code, hello_sent.elapsed())
            })
        })
        .collect();
    let closes: Vec<(Option<u16>, Duration)> =
        members.into_iter().map(|m| m.join().unwrap()).collect();
    eprintln!("hostile: silent members (idle 3 s, pre-auth 10 s) closed after {closes:?}");
    for (code, took) in &closes {
        assert_eq!(*code, Some(close::IDLE), "{closes:?}");
        assert!(*took >= IDLE, "closed before the idle timeout: {closes:?}");
        assert!(*took < IDLE + SLACK, "closed late: {closes:?}");
    }
}

/// The next reply on a raw connection (events and control frames skipped):
/// its request id and result, or the close code if the server closed.
fn next_reply(c: &mut Raw) -> Result<(u32, Result<Response, Reject>), Option<u16>> {
    loop {
        match c.next_frame(Duration::from_secs(20)) {
            Ok((2, payload)) => match courier_proto::decode_server(&payload).unwrap() {
                courier_proto::ServerFrame::Reply { req, result } => return Ok((req, result)),
                courier_proto::ServerFrame::Event(_) => continue,
            },
            Ok((8, payload)) if payload.len() >= 2 => {
                return Err(Some(u16::from_be_bytes([payload[0], payload[1]])))
            }
            Ok((8, _)) | Err(End::Eof) => return Err(None),
            Ok(_) => continue,
            Err(End::Timeout) => panic!("no reply within 20 s"),
        }
    }
}

/// A `Hello` built field by field, with any protocol version.
fn hello_with_version(req: u32, credential: &Credential, version: u16) -> Vec<u8> {
    use courier_proto::wire;
    let text = match credential {
        Credential::User {
            user,
            token,
            secret,
        } => courier_proto::token::format_user(*user, *token, secret),
        Credential::Admin(secret) => courier_proto::token::format_admin(secret),
    };
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let token = fbb.create_string(&text);
    let name = fbb.create_string("raw");
    let hello = wire::Hello::create(
        &mut fbb,
        &wire::HelloArgs {
            token: Some(token),
            device_kind: wire::DeviceKind::Tool,
            device_name: Some(name),
            protocol_version: version,
        },
    );
    let frame = wire::Frame::create(
        &mut fbb,
        &wire::FrameArgs {
            request_id: req,
            body_type: wire::Body::Hello,
            body: Some(hello.as_union_value()),
        },
    );
    wire::finish_frame_buffer(&mut fbb, frame);
    fbb.finished_data().to_vec()
}

#[test]
fn refused_hellos_request_id_zero_and_foreign_buffers_get_documented_answers() {
    let server = Server::start(1);
    let w = world_named(&server, "strict", &["ann"]);
    let ann = w.users[0].1.clone();
    let mut enc = Encoder::new();

    // An unsupported protocol version: `Invalid` naming the field, under the
    // Hello's request id, then close 4002 (not a BadFrame left open).
    let mut c = Raw::ws(server.addr);
    c.send(&binary(&hello_with_version(7, &ann, 2)));
    match next_reply(&mut c) {
        Ok((7, Err(Reject::Invalid(m)))) => assert!(m.starts_with("protocol_version"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(next_reply(&mut c), Err(Some(close::BAD_HELLO)));

    // A device name over the core's NAME_BYTES_MAX: `TooLarge`, then 4002.
    let max = courier_core::constants::NAME_BYTES_MAX;
    let hello = |name: String| {
        Encoder::new().client(&ClientFrame::Hello {
            req: 3,
            credential: ann.clone(),
            device: DeviceInfo {
                kind: DeviceKind::Tool,
                name,
            },
        })
    };
    let mut c = Raw::ws(server.addr);
    c.send(&binary(&hello("d".repeat(max + 1))));
    match next_reply(&mut c) {
        Ok((3, Err(Reject::TooLarge(m)))) => assert!(m.starts_with("device_name"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(next_reply(&mut c), Err(Some(close::BAD_HELLO)));
    // Exactly NAME_BYTES_MAX is welcome: codec and core agree.
    let mut c = Raw::ws(server.addr);
    c.send(&binary(&hello("d".repeat(max))));
    c.expect_welcome();

    // Request id 0 (reserved for events): refused as a bad frame, *not*
    // executed, and the connection stays usable.
    let mut owner = Client::login(server.addr, &ann);
    let room = conversation(owner.request(Request::CreateChannel {
        name: "room".into(),
        private: false,
    }));
    let send = |req: u32| {
        Encoder::new().client(&ClientFrame::Request {
            req,
            request: Request::Send {
                conversation: room,
                client_msg_id: 99,
                body: "under id zero".into(),
                mentions: vec![],
                broadcast: Broadcast::None,
            },
        })
    };
    c.send(&binary(&send(0)));
    match next_reply(&mut c) {
        Ok((0, Err(Reject::Invalid(m)))) => assert!(m.contains("request_id 0"), "{m}"),
        other => panic!("{other:?}"),
    }
    let head = |owner: &mut Client| match owner.request(Request::History {
        conversation: room,
        anchor: HistoryAnchor::Latest,
        limit: 10,
    }) {
        Ok(Response::History { head, .. }) => head,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        head(&mut owner),
        Seq(0),
        "the request under id 0 was executed"
    );
    c.send(&binary(&send(5)));
    match next_reply(&mut c) {
        Ok((5, Ok(Response::SendAck { seq, .. }))) => assert_eq!(seq, Seq(1)),
        other => panic!("{other:?}"),
    }

    // A flatbuffer without the CRR1 file identifier: a bad frame that says so.
    let mut foreign = enc.client(&ClientFrame::Request {
        req: 6,
        request: Request::ListConversations,
    });
    foreign[4..8].copy_from_slice(b"XXXX");
    c.send(&binary(&foreign));
    match next_reply(&mut c) {
        Ok((0, Err(Reject::Invalid(m)))) => assert!(m.contains("CRR1"), "{m}"),
        other => panic!("{other:?}"),
    }
    c.send(&binary(&enc.client(&ClientFrame::Request {
        req: 8,
        request: Request::ListConversations,
    })));
    assert!(matches!(
        next_reply(&mut c),
        Ok((8, Ok(Response::Conversations(_))))
    ));
}

#[test]
fn ten_thousand_idle_connections_cost_little_and_slow_nobody() {
    const CONNS: usize = 10_000;
    // The daemon raises its own open-file limit; raise ours.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the rlimit we own; no
    // other preconditions.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    if (lim.rlim_cur as usize) < CONNS + 1000 {
        panic!(
            "the hard open-file limit {} is below {} (raise it: ulimit -Hn)",
            lim.rlim_cur,
            CONNS + 1000
        );
    }
    let server = Server::start(2);
    assert!(
        server.log().contains("open-file limit"),
        "courierd must log its open-file limit"
    );
    let pair = pair(&server, ["ann", "bob"]);
    // 32 devices per user at most: 313 users.
    let mut admin = server.admin();
    let workspace = match admin.request(Request::CreateWorkspace {
        name: "idlers".into(),
    }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let users: Vec<Credential> = (0..CONNS.div_ceil(32))
        .map(|i| create_user(&mut admin, workspace, &format!("idle{i}")).1)
        .collect();
    drop(admin);
    let base = pair.measure(&server, 100, Duration::from_millis(10));
    let rss_before = server.rss_kib();
    let started = Instant::now();
    let mut conns: Vec<Raw> = Vec::with_capacity(CONNS);
    // In batches: upgrade and Hello pipelined over 250 sockets at a time.
    while conns.len() < CONNS {
        let n = (CONNS - conns.len()).min(250);
        let mut batch: Vec<Raw> = (0..n).map(|_| Raw::tcp(server.addr)).collect();
        for c in batch.iter_mut() {
            c.send(UPGRADE.as_bytes());
        }
        for (i, c) in batch.iter_mut().enumerate() {
            c.read_upgrade();
            c.hello(&users[(conns.len() + i) / 32]);
        }
        for c in batch.iter_mut() {
            c.expect_welcome();
        }
        conns.extend(batch);
    }
    let opened = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = server.rss_kib();
    let (_, under) = during(&server, &pair, 100, || ());
    let per_conn = (rss_idle.saturating_sub(rss_before)) as f64 / CONNS as f64;
    eprintln!(
        "hostile: {CONNS} idle authenticated connections opened in {:.1} s; RSS {rss_before} → {rss_idle} KiB = {per_conn:.1} KiB per connection",
        opened.as_secs_f64()
    );
    report("10,000 idle connections", &base, &under);
    let (_, metrics) = server.http_get("/metrics");
    let open: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("courier_connections_open{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        open >= CONNS as u64,
        "metrics count {open} open connections"
    );
    assert!(
        per_conn < 64.0,
        "{per_conn:.1} KiB per idle connection (bound: 64)"
    );
    drop(conns);
    healthy(&server);
}

#[test]
fn consumers_that_never_read_are_cut_off_and_memory_stays_bounded() {
    const CONSUMERS: usize = 100;
    const SLOW_READERS: usize = 10;
    const OUTBOX: usize = 4 * 1024 * 1024;
    let server = Server::start_with(
        2,
        &[
            "--outbox-bytes-max",
            &OUTBOX.to_string(),
            "--rate-conn-per-sec",
            "0",
            "--rate-user-per-sec",
            "0",
            "--rate-workspace-per-sec",
            "0",
        ],
    );
    let pair = pair(&server, ["ann", "bob"]);
    let w = world_named(&server, "busy", &["loud", "r0", "r1", "r2", "r3"]);
    let mut loud = Client::login(server.addr, &w.users[0].1);
    let busy = conversation(loud.request(Request::CreateChannel {
        name: "busy".into(),
        private: false,
    }));
    for (_, c) in &w.users[1..] {
        let mut r = Client::login(server.addr, c);
        conversation(r.request(Request::Join { conversation: busy }));
    }
    // 100 connections of members, with small receive buffers so the
    // server's outboxes fill quickly: 90 never read, 10 read slowly (4 KiB
    // every 5 ms, ~800 KB/s: far slower than the channel's traffic).
    let mut sleepers: Vec<Raw> = (0..CONSUMERS)
        .map(|i| {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.set_recv_buffer_size(4096).unwrap();
            sock.connect(&server.addr.into()).unwrap();
            let mut r = Raw::from(TcpStream::from(sock));
            r.send(UPGRADE.as_bytes());
            r.read_upgrade();
            r.hello(&w.users[1 + i % 4].1);
            r.expect_welcome();
            r
        })
        .collect();
    let readers: Vec<Raw> = sleepers.drain(..SLOW_READERS).collect();
    let readers: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                r.read_chunk = 4096;
                r.read_pause = Duration::from_millis(5);
                r.close_code(Duration::from_secs(120))
            })
        })
        .collect();
    let base = pair.measure(&server, 100, Duration::from_millis(10));
    let rss_before = server.rss_kib();
    let addr = server.addr;
    let loud_cred = w.users[0].1.clone();
    let body = "b".repeat(16 * 1024 - 64);
    let ((sent, peak), under) = during(&server, &pair, 200, || {
        // Pipelined sends of 16 KiB messages until every sleeper is cut off.
        let mut c = Raw::user(addr, &loud_cred);
        let mut enc = Encoder::new();
        let mut peak = 0u64;
        let mut sent = 0u32;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            for _ in 0..32 {
                sent += 1;
                let bytes = enc.client(&ClientFrame::Request {
                    req: sent,
                    request: Request::Send {
                        conversation: busy,
                        client_msg_id: u128::from(sent) | (7 << 100),
                        body: body.clone(),
                        mentions: vec![],
                        broadcast: Broadcast::None,
                    },
                });
                c.send(&binary(&bytes));
            }
            for r in c.replies(32) {
                assert!(matches!(r, Ok(Response::SendAck { .. })), "{r:?}");
            }
            peak = peak.max(server.rss_kib());
            let (_, metrics) = server.http_get("/metrics");
            let cut: u64 = metrics
                .lines()
                .filter(|l| l.starts_with("courier_slow_consumer_cutoffs_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            if cut >= CONSUMERS as u64 {
                break;
            }
        }
        (sent, peak)
    });
    eprintln!(
        "hostile: {CONSUMERS} consumers that never read, {sent} sends of 16 KiB: RSS {rss_before} KiB before, peak {peak} KiB (bound {} KiB)",
        rss_before + (CONSUMERS * OUTBOX / 1024) as u64
    );
    report("100 consumers that never read", &base, &under);
    // Frames are shared between sockets, so the real cost is far below
    // one outbox per consumer; the bound is the configuration's promise.
    assert!(
        peak < rss_before + (CONSUMERS * OUTBOX / 1024) as u64 + 64 * 1024,
        "peak RSS {peak} KiB"
    );
    // Slow readers get 4008 after what was already on its way.
    let codes: Vec<Option<u16>> = readers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        codes.iter().all(|c| *c == Some(close::SLOW_CONSUMER)),
        "slow readers: {codes:?}"
    );
    // Consumers that never read cannot receive a close frame through their
    // full socket: the server gives up after its grace period and closes
    // the TCP connection. Read through what was queued: the 4008 frame or
    // the end of the stream, never a hang.
    let mut with_code = 0;
    for r in sleepers.iter_mut() {
        match r.close_code(Duration::from_secs(30)) {
            Some(close::SLOW_CONSUMER) => with_code += 1,
            None => {}
            other => panic!("a cut-off consumer got {other:?}"),
        }
    }
    eprintln!(
        "hostile: slow readers: {SLOW_READERS} of {SLOW_READERS} got {}; consumers that never read: {with_code} of {} got {} when they finally read, the rest a plain TCP close",
        close::SLOW_CONSUMER,
        CONSUMERS - SLOW_READERS,
        close::SLOW_CONSUMER
    );
    healthy(&server);
}
