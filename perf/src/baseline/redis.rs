//! Redis Streams baseline: `send` as pipelined `XADD` (closed loop, W in
//! flight per connection, replies in order), `e2e` as scheduled `XADD`s with
//! one `XREAD BLOCK 0` loop per reading member.
//!
//! Durability: `appendonly yes` with `appendfsync always` (the default of
//! this harness) makes Redis write and fsync the AOF in `beforeSleep`, before
//! it sends the replies of that event-loop turn — an acknowledged `XADD` is
//! on disk, like a Courier `SendAck`, and one fsync covers every command of
//! the turn (group commit). `everysec` acknowledges before the fsync and
//! loses up to a second of acknowledged writes on power loss.

use super::resp::{command, parse, RawConn, Resp};
use super::PeerServer;
use crate::clock::{now_ns, PreciseTimer};
use crate::e2e::{E2eArgs, Schedule, Step, BACKLOG_MAX};
use crate::pool::{self, Phase};
use crate::report::{latency_json, record_ns};
use crate::send::{sample_window, LoadOutcome, SendArgs, Window};
use crate::server::{usage, Common, Probe, Sample};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Redis's AOF fsync policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// fsync before replying (equal to Courier's promise).
    Always,
    /// fsync once a second in the background (acks may be lost on power loss).
    Everysec,
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
        })
    }
}

fn start(binary: &Path, common: &Common, fsync: Fsync) -> anyhow::Result<PeerServer> {
    let args: Vec<String> = [
        "--port",
        "{port}",
        "--bind",
        "127.0.0.1",
        "--dir",
        "{dir}",
        "--appendonly",
        "yes",
        "--appendfsync",
        &fsync.to_string(),
        "--save",
        "",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--io-threads",
        "1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    PeerServer::start(binary, &args, common)
}

fn key(conversation: usize) -> Vec<u8> {
    format!("conv:{conversation}").into_bytes()
}

/// The `send` workload on Redis.
pub fn send(
    binary: &Path,
    args: &SendArgs,
    common: &Common,
    fsync: Fsync,
) -> anyhow::Result<Value> {
    let server = start(binary, common, fsync)?;
    let addr = server.addr;
    let probe = Probe::process(addr, server.pid());
    let k = args.connections.max(1);
    let c = args.conversations.clamp(1, k);
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
                conns.push((i, RawConn::connect(addr).await?));
            }
            phase.wait().await?;
            let (from, to) = window.get(args.warmup_secs, args.secs);
            if t == 0 {
                sample_window(probe, from, to, samples);
            }
            let mut tasks = Vec::new();
            for (i, conn) in conns {
                let body = crate::payload::filler(args.body_bytes).into_bytes();
                tasks.push(tokio::task::spawn_local(closed_loop(
                    conn,
                    key(i % c),
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
    let acked_per_s = total.acks as f64 / args.secs;
    Ok(json!({
        "server": "redis-server (version as installed)",
        "appendfsync": fsync.to_string(),
        "acked_per_s": acked_per_s,
        "acks": total.acks,
        "errors": total.errors,
        "first_error": total.first_error,
        "ack_latency": latency_json(&total.latency),
        "usage": usage,
    }))
}

async fn closed_loop(
    conn: Rc<RawConn>,
    key: Vec<u8>,
    body: Vec<u8>,
    window: usize,
    from: u64,
    to: u64,
) -> anyhow::Result<LoadOutcome> {
    let mut out = LoadOutcome::new();
    let mut sent: VecDeque<u64> = VecDeque::with_capacity(window);
    let xadd = |conn: &RawConn, sent: &mut VecDeque<u64>| {
        conn.queue_with(|o| command(o, &[b"XADD", &key, b"*", b"b", &body]));
        sent.push_back(now_ns());
    };
    for _ in 0..window {
        xadd(&conn, &mut sent);
    }
    conn.flush().await?;
    let drain_deadline = to + 10_000_000_000;
    while !sent.is_empty() {
        tokio::time::timeout(std::time::Duration::from_secs(15), conn.fill()).await??;
        let mut replies = 0;
        conn.drain(parse, |reply| {
            let Some(at) = sent.pop_front() else { return };
            replies += 1;
            let now = now_ns();
            match reply {
                Resp::Bulk(Some(_)) => {
                    if now >= from && now < to {
                        out.acks += 1;
                        record_ns(&mut out.latency, now - at);
                    }
                }
                other => out.error(format!("XADD answered {other:?}")),
            }
        })?;
        let now = now_ns();
        if now < to {
            for _ in 0..replies {
                xadd(&conn, &mut sent);
            }
            conn.flush().await?;
        } else if now > drain_deadline {
            out.error(format!(
                "{} XADDs unanswered 10 s after the end",
                sent.len()
            ));
            break;
        }
    }
    Ok(out)
}

/// A started Redis for the e2e sweep.
pub struct E2e {
    server: PeerServer,
    args: E2eArgs,
    common: Common,
}

impl E2e {
    /// Starts Redis.
    pub fn new(
        binary: &Path,
        args: &E2eArgs,
        common: &Common,
        fsync: Fsync,
    ) -> anyhow::Result<E2e> {
        Ok(E2e {
            server: start(binary, common, fsync)?,
            args: args.clone(),
            common: common.clone(),
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
                    let sender = RawConn::connect(addr).await?;
                    // Readers start after the stream's current last entry.
                    sender.queue_with(|o| {
                        command(o, &[b"XREVRANGE", &key(ci), b"+", b"-", b"COUNT", b"1"])
                    });
                    sender.flush().await?;
                    let last = loop {
                        sender.fill().await?;
                        let mut got = None;
                        sender.drain(parse, |r| got = Some(r))?;
                        if let Some(r) = got {
                            break last_id(&r).unwrap_or_else(|| b"0-0".to_vec());
                        }
                    };
                    for _ in 1..members {
                        let reader = RawConn::connect(addr).await?;
                        tasks.push(tokio::task::spawn_local(xread_loop(
                            reader,
                            key(ci),
                            last.clone(),
                            step.clone(),
                            stop.clone(),
                        )));
                    }
                    tasks.push(tokio::task::spawn_local(ack_reader(
                        sender.clone(),
                        step.clone(),
                        stop.clone(),
                    )));
                    senders.push((ci, sender));
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
                        step.borrow_mut()
                            .error(format!("{backlog} XADDs unanswered: server not keeping up"));
                        break;
                    }
                    let (ci, conn) = &senders[(k as usize) % senders.len()];
                    let body = crate::payload::stamped(0, due, args.body_bytes);
                    conn.queue_with(|o| {
                        command(o, &[b"XADD", &key(*ci), b"*", b"b", body.as_bytes()])
                    });
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

/// The id of the newest entry in an `XREVRANGE … COUNT 1` reply.
fn last_id(reply: &Resp) -> Option<Vec<u8>> {
    let Resp::Array(Some(entries)) = reply else {
        return None;
    };
    let Resp::Array(Some(entry)) = entries.first()? else {
        return None;
    };
    match entry.first()? {
        Resp::Bulk(Some(id)) => Some(id.clone()),
        _ => None,
    }
}

async fn ack_reader(
    conn: Rc<RawConn>,
    step: Rc<RefCell<Step>>,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    while !stop.get() {
        conn.fill().await?;
        let mut s = step.borrow_mut();
        conn.drain(parse, |r| match r {
            Resp::Bulk(Some(_)) => s.acked += 1,
            other => s.error(format!("XADD answered {other:?}")),
        })?;
    }
    Ok(())
}

async fn xread_loop(
    conn: Rc<RawConn>,
    key: Vec<u8>,
    mut last: Vec<u8>,
    step: Rc<RefCell<Step>>,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    while !stop.get() {
        conn.queue_with(|o| command(o, &[b"XREAD", b"BLOCK", b"0", b"STREAMS", &key, &last]));
        conn.flush().await?;
        loop {
            conn.fill().await?;
            let mut got = None;
            conn.drain(parse, |r| got = Some(r))?;
            let Some(reply) = got else { continue };
            let now = now_ns();
            let mut s = step.borrow_mut();
            // [[key, [[id, [field, value]], …]]]
            if let Resp::Array(Some(streams)) = reply {
                for stream in streams {
                    let Resp::Array(Some(kv)) = stream else {
                        continue;
                    };
                    let Some(Resp::Array(Some(entries))) = kv.get(1) else {
                        continue;
                    };
                    for entry in entries {
                        let Resp::Array(Some(entry)) = entry else {
                            continue;
                        };
                        if let Some(Resp::Bulk(Some(id))) = entry.first() {
                            last = id.clone();
                        }
                        if let Some(Resp::Array(Some(fields))) = entry.get(1) {
                            if let Some(Resp::Bulk(Some(body))) = fields.get(1) {
                                if let Some((_, due)) =
                                    crate::payload::parse_stamp(&String::from_utf8_lossy(body))
                                {
                                    s.delivered += 1;
                                    record_ns(&mut s.latency, now.saturating_sub(due));
                                }
                            }
                        }
                    }
                }
            } else if let Resp::Error(e) = reply {
                s.error(format!("XREAD: {e}"));
            }
            break;
        }
    }
    Ok(())
}
