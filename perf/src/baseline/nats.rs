//! NATS JetStream baseline, over the NATS client protocol: one stream per
//! conversation (`conv_{i}` on subject `conv.{i}`, file storage, one
//! replica); `send` publishes with a reply subject and waits for the
//! JetStream PubAck (closed loop, W in flight per connection); `e2e` gives
//! every reading member its own push consumer (deliver new, ack none).
//!
//! Durability, checked against the Debian package (nats-server 2.9.10):
//! JetStream's file store writes each message to its block file with
//! `write(2)` and sends the PubAck — it does not fsync before acking. Block
//! files are fsync'ed by a background timer (`syncBlocks`, every
//! `defaultSyncInterval` = 2 minutes in the source of that era) and when a
//! block is closed. 2.9 has no setting to fsync every write: the
//! `sync_interval` option (including `sync_interval: always`) only appeared
//! in 2.10; the 2.9.10 binary contains no `sync_interval` config key.
//! So an acknowledged NATS message survives a process crash (it is in the
//! page cache) but not a power loss or kernel crash within the interval;
//! a Courier `SendAck` survives both. There is no configuration of 2.9 with
//! equal durability; the run uses its defaults and the report says so.

use super::resp::RawConn;
use super::PeerServer;
use crate::clock::{now_ns, PreciseTimer};
use crate::e2e::{E2eArgs, Schedule, Step, BACKLOG_MAX};
use crate::pool::{self, Phase};
use crate::report::{latency_json, record_ns};
use crate::send::{sample_window, LoadOutcome, SendArgs, Window};
use crate::server::{usage, Common, Probe, Sample};
use anyhow::{anyhow, bail};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// One protocol operation from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    /// `MSG` / `HMSG` (headers are skipped).
    Msg {
        /// Subject (for JetStream push deliveries: the stream subject, not
        /// the deliver subject).
        subject: String,
        /// Subscription id.
        sid: u64,
        /// Payload (after any headers).
        payload: Vec<u8>,
    },
    /// `PING`.
    Ping,
    /// `PONG`, `+OK`, `INFO`.
    Other,
    /// `-ERR`.
    Err(String),
}

fn num(s: &str) -> io::Result<usize> {
    s.parse()
        .map_err(|_| io::Error::other(format!("bad NATS size {s:?}")))
}

/// Parses one operation at `buf[at..]` (`Ok(None)` if incomplete).
pub fn parse_op(buf: &[u8], at: usize) -> io::Result<Option<(Op, usize)>> {
    let Some(rest) = buf.get(at..) else {
        return Ok(None);
    };
    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
        if rest.len() > 64 * 1024 {
            return Err(io::Error::other("NATS control line too long"));
        }
        return Ok(None);
    };
    let line =
        std::str::from_utf8(&rest[..eol]).map_err(|_| io::Error::other("non-UTF-8 NATS line"))?;
    let next = at + eol + 2;
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let (subject, sid, header_len, total_len) = match verb {
        "MSG" if args.len() == 3 || args.len() == 4 => {
            (args[0], num(args[1])?, 0, num(args[args.len() - 1])?)
        }
        "HMSG" if args.len() == 4 || args.len() == 5 => (
            args[0],
            num(args[1])?,
            num(args[args.len() - 2])?,
            num(args[args.len() - 1])?,
        ),
        "PING" => return Ok(Some((Op::Ping, next))),
        "PONG" | "+OK" | "INFO" => return Ok(Some((Op::Other, next))),
        "-ERR" => return Ok(Some((Op::Err(line.to_owned()), next))),
        _ => return Err(io::Error::other(format!("unexpected NATS line {line:?}"))),
    };
    if total_len > super::resp::REPLY_BYTES_MAX || header_len > total_len {
        return Err(io::Error::other("bad NATS message size"));
    }
    if buf.len() < next + total_len + 2 {
        return Ok(None);
    }
    let payload = buf[next + header_len..next + total_len].to_vec();
    Ok(Some((
        Op::Msg {
            subject: subject.to_owned(),
            sid: sid as u64,
            payload,
        },
        next + total_len + 2,
    )))
}

/// Connects, reads `INFO`, sends `CONNECT` and waits for the `PONG` of a
/// `PING` (so the server has processed `CONNECT`).
async fn connect(addr: SocketAddr) -> anyhow::Result<Rc<RawConn>> {
    let conn = RawConn::connect(addr).await?;
    conn.queue(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1,\"name\":\"courier-bench\"}\r\nPING\r\n");
    conn.flush().await?;
    let mut pongs = 0;
    while pongs == 0 {
        conn.fill().await?;
        let mut err = None;
        conn.drain(parse_op, |op| match op {
            Op::Other => pongs += 1,
            Op::Err(e) => err = Some(e),
            _ => {}
        })?;
        if let Some(e) = err {
            bail!("NATS: {e}");
        }
        // INFO counts as Other too; wait for more only if nothing came.
    }
    Ok(conn)
}

/// Sends a request on `conn` (subscribed to `inbox` with sid `sid`) and
/// returns the reply payload. Used for JetStream API calls during setup.
async fn request(conn: &RawConn, subject: &str, inbox: &str, body: &str) -> anyhow::Result<Value> {
    conn.queue(format!("PUB {subject} {inbox} {}\r\n{body}\r\n", body.len()).as_bytes());
    conn.flush().await?;
    loop {
        conn.fill().await?;
        let mut reply = None;
        let mut pings = 0;
        conn.drain(parse_op, |op| match op {
            Op::Msg {
                subject, payload, ..
            } if subject == inbox => reply = Some(payload),
            Op::Ping => pings += 1,
            Op::Err(e) => {
                reply = Some(format!("{{\"error\":{{\"description\":{e:?}}}}}").into_bytes())
            }
            _ => {}
        })?;
        for _ in 0..pings {
            conn.queue(b"PONG\r\n");
        }
        if let Some(payload) = reply {
            let v: Value = serde_json::from_slice(&payload)?;
            if v.get("error").is_some() {
                bail!("JetStream {subject}: {v}");
            }
            return Ok(v);
        }
    }
}

fn start(binary: &Path, common: &Common) -> anyhow::Result<PeerServer> {
    // The config file is written into the data directory after it exists,
    // so start via a tiny wrapper: nats-server reads flags only.
    let args: Vec<String> = ["-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{dir}/js"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    PeerServer::start(binary, &args, common)
}

/// Creates one stream per conversation.
async fn create_streams(addr: SocketAddr, conversations: usize) -> anyhow::Result<()> {
    let conn = connect(addr).await?;
    conn.queue(b"SUB _INBOX.setup 1\r\n");
    for i in 0..conversations {
        let body = json!({
            "name": format!("conv_{i}"),
            "subjects": [format!("conv.{i}")],
            "storage": "file",
            "retention": "limits",
            "num_replicas": 1,
            "discard": "old",
        })
        .to_string();
        match request(
            &conn,
            &format!("$JS.API.STREAM.CREATE.conv_{i}"),
            "_INBOX.setup",
            &body,
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.to_string().contains("already in use") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The `send` workload on NATS JetStream.
pub fn send(binary: &Path, args: &SendArgs, common: &Common) -> anyhow::Result<Value> {
    let server = start(binary, common)?;
    let addr = server.addr;
    let probe = Probe::process(addr, server.pid());
    let k = args.connections.max(1);
    let c = args.conversations.clamp(1, k);
    pool::block_on(create_streams(addr, c))?;
    let threads = common.threads();
    let phase = Phase::new(threads);
    let window = Window::default();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let outcomes = pool::run(threads, |t| {
        let phase = phase.clone();
        let window = window.clone();
        let samples = samples.clone();
        let probe = probe.clone();
        async move {
            let mut conns = Vec::new();
            for i in pool::share(k, threads, t) {
                let conn = connect(addr).await?;
                conn.queue(format!("SUB _INBOX.c{i}.* 1\r\n").as_bytes());
                conns.push((i, conn));
            }
            phase.wait().await?;
            let (from, to) = window.get(args.warmup_secs, args.secs);
            if t == 0 {
                sample_window(probe, from, to, samples);
            }
            let mut tasks = Vec::new();
            for (i, conn) in conns {
                let body = crate::payload::filler(args.body_bytes);
                tasks.push(tokio::task::spawn_local(closed_loop(
                    conn,
                    i,
                    i % c,
                    body,
                    args.window,
                    from,
                    to,
                )));
            }
            let mut out = LoadOutcome::new();
            for task in tasks {
                out.merge(task.await??);
            }
            phase.wait().await?;
            Ok(out)
        }
    })?;
    let mut total = LoadOutcome::new();
    for o in outcomes {
        total.merge(o);
    }
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let usage = match samples.as_slice() {
        [a, b, ..] => usage(a, b),
        _ => Value::Null,
    };
    Ok(json!({
        "server": "nats-server (version as installed), JetStream file storage, default sync",
        "acked_per_s": total.acks as f64 / args.secs,
        "acks": total.acks,
        "errors": total.errors,
        "first_error": total.first_error,
        "ack_latency": latency_json(&total.latency),
        "usage": usage,
    }))
}

async fn closed_loop(
    conn: Rc<RawConn>,
    id: usize,
    conversation: usize,
    body: String,
    window: usize,
    from: u64,
    to: u64,
) -> anyhow::Result<LoadOutcome> {
    let mut out = LoadOutcome::new();
    let mut in_flight: HashMap<u64, u64> = HashMap::with_capacity(window * 2);
    let mut n = 0u64;
    let prefix = format!("_INBOX.c{id}.");
    let mut publish = |conn: &RawConn, in_flight: &mut HashMap<u64, u64>| {
        n += 1;
        conn.queue(
            format!(
                "PUB conv.{conversation} {prefix}{n} {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
        in_flight.insert(n, now_ns());
    };
    for _ in 0..window {
        publish(&conn, &mut in_flight);
    }
    conn.flush().await?;
    let drain_deadline = to + 10_000_000_000;
    while !in_flight.is_empty() {
        tokio::time::timeout(std::time::Duration::from_secs(15), conn.fill()).await??;
        let mut replies = 0;
        let mut pings = 0;
        conn.drain(parse_op, |op| match op {
            Op::Msg {
                subject, payload, ..
            } => {
                let Some(at) = subject
                    .strip_prefix(&prefix)
                    .and_then(|s| s.parse::<u64>().ok())
                    .and_then(|k| in_flight.remove(&k))
                else {
                    return;
                };
                replies += 1;
                let now = now_ns();
                if payload.windows(7).any(|w| w == b"\"error\"") {
                    out.error(String::from_utf8_lossy(&payload).into_owned());
                } else if now >= from && now < to {
                    out.acks += 1;
                    record_ns(&mut out.latency, now - at);
                }
            }
            Op::Ping => pings += 1,
            Op::Err(e) => out.error(e),
            Op::Other => {}
        })?;
        for _ in 0..pings {
            conn.queue(b"PONG\r\n");
        }
        let now = now_ns();
        if now < to {
            for _ in 0..replies {
                publish(&conn, &mut in_flight);
            }
        } else if now > drain_deadline {
            out.error(format!(
                "{} publishes unacknowledged 10 s after the end",
                in_flight.len()
            ));
            break;
        }
        conn.flush().await?;
    }
    Ok(out)
}

/// A started NATS for the e2e sweep.
pub struct E2e {
    server: PeerServer,
    args: E2eArgs,
    common: Common,
    next_consumer: usize,
}

impl E2e {
    /// Starts nats-server and creates the streams.
    pub fn new(binary: &Path, args: &E2eArgs, common: &Common) -> anyhow::Result<E2e> {
        let server = start(binary, common)?;
        pool::block_on(create_streams(server.addr, args.conversations.max(1)))?;
        Ok(E2e {
            server,
            args: args.clone(),
            common: common.clone(),
            next_consumer: 0,
        })
    }

    /// One fixed-rate step.
    pub fn step(&mut self, rate: f64, secs: f64) -> anyhow::Result<Step> {
        let addr = self.server.addr;
        let probe = Probe::process(addr, self.server.pid());
        let args = &self.args;
        let total = args.conversations.max(1);
        let members = args.members.max(2);
        let threads = self.common.threads().min(total).max(1);
        let phase = Phase::new(threads);
        let window = Window::default();
        let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
        let base = self.next_consumer;
        self.next_consumer += total * members;
        let outcomes = pool::run(threads, |t| {
            let phase = phase.clone();
            let window = window.clone();
            let samples = samples.clone();
            let probe = probe.clone();
            async move {
                let mine: Vec<usize> = (0..total).filter(|i| i % threads == t).collect();
                let step = Rc::new(RefCell::new(Step::new()));
                let stop = Rc::new(Cell::new(false));
                let mut senders = Vec::new();
                let mut tasks = Vec::new();
                for &ci in &mine {
                    for mi in 1..members {
                        let uid = base + ci * members + mi;
                        let conn = connect(addr).await?;
                        conn.queue(
                            format!("SUB dlv.{uid} 1\r\nSUB _INBOX.api{uid} 2\r\n").as_bytes(),
                        );
                        let config = json!({
                            "stream_name": format!("conv_{ci}"),
                            "config": {
                                "deliver_subject": format!("dlv.{uid}"),
                                "deliver_policy": "new",
                                "ack_policy": "none",
                                "replay_policy": "instant",
                                "inactive_threshold": 30_000_000_000u64,
                            }
                        })
                        .to_string();
                        request(
                            &conn,
                            &format!("$JS.API.CONSUMER.CREATE.conv_{ci}"),
                            &format!("_INBOX.api{uid}"),
                            &config,
                        )
                        .await
                        .map_err(|e| anyhow!("creating consumer {uid}: {e}"))?;
                        tasks.push(tokio::task::spawn_local(consumer(
                            conn,
                            step.clone(),
                            stop.clone(),
                        )));
                    }
                    let sender = connect(addr).await?;
                    let inbox = format!("_INBOX.s{}.", base + ci);
                    sender.queue(format!("SUB {inbox}* 1\r\n").as_bytes());
                    sender.flush().await?;
                    tasks.push(tokio::task::spawn_local(ack_reader(
                        sender.clone(),
                        step.clone(),
                        stop.clone(),
                    )));
                    senders.push((ci, sender, inbox));
                }
                phase.wait().await?;
                let (from, to) = window.get(0.0, secs);
                if t == 0 {
                    sample_window(probe, from, to, samples.clone());
                }
                let schedule = Schedule::new(from, rate, mine.len() as f64 / total as f64, secs);
                let timer = PreciseTimer::new()?;
                for k in 0..schedule.count {
                    let due = schedule.due(k);
                    timer.sleep_until(due).await?;
                    let backlog = {
                        let s = step.borrow();
                        s.sent - s.acked
                    };
                    if backlog > BACKLOG_MAX {
                        step.borrow_mut().error(format!(
                            "{backlog} publishes unacknowledged: server not keeping up"
                        ));
                        break;
                    }
                    let (ci, conn, inbox) = &senders[(k as usize) % senders.len()];
                    let body = crate::payload::stamped(0, due, args.body_bytes);
                    conn.queue(
                        format!("PUB conv.{ci} {inbox}{k} {}\r\n{body}\r\n", body.len()).as_bytes(),
                    );
                    conn.flush().await?;
                    let mut s = step.borrow_mut();
                    s.sent += 1;
                    s.expected += members as u64 - 1;
                }
                step.borrow_mut().due = schedule.count;
                let drain_until = now_ns().max(to) + 2_000_000_000;
                while now_ns() < drain_until {
                    {
                        let s = step.borrow();
                        if s.delivered >= s.expected && s.acked >= s.sent {
                            break;
                        }
                    }
                    timer.sleep_until(now_ns() + 2_000_000).await?;
                }
                stop.set(true);
                for task in tasks {
                    task.abort();
                }
                phase.wait().await?;
                let out = std::mem::take(&mut *step.borrow_mut());
                Ok(out)
            }
        })?;
        let mut total_step = Step::new();
        for o in outcomes {
            total_step.merge(o);
        }
        let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
        if let [a, b, ..] = samples.as_slice() {
            total_step.usage = usage(a, b);
        }
        Ok(total_step)
    }
}

async fn ack_reader(
    conn: Rc<RawConn>,
    step: Rc<RefCell<Step>>,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    while !stop.get() {
        conn.fill().await?;
        let mut pings = 0;
        {
            let mut s = step.borrow_mut();
            conn.drain(parse_op, |op| match op {
                Op::Msg { payload, .. } => {
                    if payload.windows(7).any(|w| w == b"\"error\"") {
                        s.error(String::from_utf8_lossy(&payload).into_owned());
                    } else {
                        s.acked += 1;
                    }
                }
                Op::Ping => pings += 1,
                Op::Err(e) => s.error(e),
                Op::Other => {}
            })?;
        }
        for _ in 0..pings {
            conn.queue(b"PONG\r\n");
        }
        conn.flush().await?;
    }
    Ok(())
}

/// Deliveries of the push consumer arrive on subscription 1 (their subject
/// is the stream's, `conv.{i}`, not the deliver subject).
async fn consumer(
    conn: Rc<RawConn>,
    step: Rc<RefCell<Step>>,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    while !stop.get() {
        conn.fill().await?;
        let now = now_ns();
        let mut pings = 0;
        {
            let mut s = step.borrow_mut();
            conn.drain(parse_op, |op| match op {
                Op::Msg {
                    sid: 1, payload, ..
                } => {
                    if let Some((_, due)) =
                        crate::payload::parse_stamp(&String::from_utf8_lossy(&payload))
                    {
                        s.delivered += 1;
                        record_ns(&mut s.latency, now.saturating_sub(due));
                    }
                }
                Op::Ping => pings += 1,
                Op::Err(e) => s.error(e),
                _ => {}
            })?;
        }
        for _ in 0..pings {
            conn.queue(b"PONG\r\n");
        }
        conn.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_msg_hmsg_and_control_lines() {
        let wire = b"INFO {}\r\nMSG a.b 1 _INBOX.x 5\r\nhello\r\nHMSG c 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n";
        let mut at = 0;
        let mut ops = Vec::new();
        while let Some((op, next)) = parse_op(wire, at).unwrap() {
            ops.push(op);
            at = next;
        }
        assert_eq!(at, wire.len());
        assert_eq!(ops[0], Op::Other);
        assert_eq!(
            ops[1],
            Op::Msg {
                subject: "a.b".into(),
                sid: 1,
                payload: b"hello".to_vec()
            }
        );
        assert_eq!(
            ops[2],
            Op::Msg {
                subject: "c".into(),
                sid: 2,
                payload: b"hi".to_vec()
            }
        );
        assert_eq!(ops[3], Op::Ping);
        assert_eq!(parse_op(b"MSG a 1 5\r\nhel", 0).unwrap(), None);
    }
}
