//! `fairness`: does one noisy tenant move another's latency? A *quiet*
//! workspace sends at a low fixed rate (open loop) and its send→ack and
//! send→delivery latency is measured, first alone, then while a *noisy*
//! workspace saturates the node with sends (closed loop, many connections,
//! a window of sends in flight each). The figure is the ratio of the quiet
//! p99 with the noisy tenant to the quiet p99 alone; the goal (issue 8) is
//! at most 1.2 with the server's default limits.
//!
//! Each configuration of abuse limits runs on the same data (the harness
//! restarts courierd between them): `off` (no per-connection or per-user
//! limit: the noisy tenant gets whatever the machine gives it) and
//! `default` (courierd's defaults: a noisy user is rate-limited, answered
//! `RateLimited` before anything reaches the core). A noisy client either
//! honours `retry_after_ms` (a well-behaved library, the default) or resends
//! at once (`--noisy-retry ignore`: hostile, it pays only a round trip).
//!
//! Back of the envelope (2 cores shared by the server, the quiet clients and
//! the noisy load generator): alone, the quiet tenant's 200 sends/s cost the
//! server ≈ 0.2 % of a core, so its latency is one group commit (≈ 0.1–0.3
//! ms) plus the hops. With limits off, the noisy tenant keeps both cores
//! busy: every quiet send waits behind the noisy sends queued on the same
//! shards and in the same group commits (W·K in flight / throughput ≈ 1024 /
//! 100K ≈ 10 ms), so its p99 should grow by one to two orders of magnitude
//! — no per-tenant scheduling exists then. With the default limits (100
//! requests/s per connection, 200 per user and shard, and a pace of 1,000
//! requests/s per workspace and shard) the noisy tenant gets at most
//! 2 × 1,000 sends/s (≈ 2 % of the node's capacity) whatever its number of
//! connections, and its excess waits in its own sockets instead of being
//! refused and retried, which should leave the quiet p99 within about 20 %
//! of its value alone. The per-connection and per-user limits alone would
//! let 64 connections through at ≈ 6.4K sends/s plus a storm of refused
//! retries (docs/PERFORMANCE.md has both).
//!
//! Latency is measured from each quiet message's intended send time
//! (coordinated-omission corrected, as in `e2e`).

use crate::client::{encode, Session};
use crate::clock::{now_ns, PreciseTimer};
use crate::e2e::Schedule;
use crate::pool::{self, Phase};
use crate::report::{self, histogram, latency_json, record_ns};
use crate::send::{sample_window, Window};
use crate::server::{usage, Common, RateLimits, Sample, Target};
use crate::setup;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use courier_core::api::{Broadcast, ConversationId, Event, Reject, Request, Response, UserId};
use courier_proto::{decode_server, ServerFrame};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tag of quiet message bodies (`payload::stamped`).
const QUIET_TAG: u32 = 7;

/// How long after the window a phase waits for acks and deliveries still on
/// their way.
const DRAIN_NS: u64 = 3_000_000_000;

/// What a noisy client does with `RateLimited`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Waits `retry_after_ms`, then sends again.
    Honour,
    /// Sends again at once.
    Ignore,
}

/// `courier-bench fairness`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// Quiet workspace: conversations, one sending member each.
    #[arg(long, default_value_t = 8)]
    pub quiet_conversations: usize,
    /// Members per quiet conversation (one sends, the others receive).
    #[arg(long, default_value_t = 2)]
    pub quiet_members: usize,
    /// Quiet send rate, messages/s over all its conversations (open loop).
    #[arg(long, default_value_t = 200.0)]
    pub quiet_rate: f64,
    /// Noisy workspace: connections, one user each, all sending.
    #[arg(long, default_value_t = 64)]
    pub noisy_connections: usize,
    /// Noisy conversations; connection i sends to conversation i mod this.
    #[arg(long, default_value_t = 16)]
    pub noisy_conversations: usize,
    /// Sends in flight per noisy connection.
    #[arg(long, default_value_t = 16)]
    pub noisy_window: usize,
    /// What a noisy client does with `RateLimited`.
    #[arg(long, value_enum, default_value_t = Retry::Honour)]
    pub noisy_retry: Retry,
    /// Message body size in bytes (both tenants).
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Seconds before the measurement in each phase (noisy load ramps up).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Seconds measured per phase.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Abuse-limit configurations to measure, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [RateLimits::Off, RateLimits::Default])]
    pub limits: Vec<RateLimits>,
    #[command(flatten)]
    pub common: Common,
}

/// The two workspaces.
struct World {
    /// Quiet conversations and their members (member 0 sends).
    quiet: Vec<(ConversationId, Vec<setup::User>)>,
    /// Noisy users (connection i) and conversations.
    noisy_users: Vec<setup::User>,
    noisy_conversations: Vec<ConversationId>,
}

impl World {
    fn build(target: &Target, cmd: &Cmd) -> anyhow::Result<World> {
        let qc = cmd.quiet_conversations.max(1);
        let qm = cmd.quiet_members.max(2);
        let nk = cmd.noisy_connections.max(1);
        let nc = cmd.noisy_conversations.clamp(1, nk);
        pool::block_on(async {
            let (_, users) =
                setup::workspace_with_users(target, "bench-fair-quiet", "q", qc * qm).await?;
            let mut quiet = Vec::with_capacity(qc);
            for ci in 0..qc {
                let members: Vec<setup::User> = users[ci * qm..(ci + 1) * qm].to_vec();
                let conn = setup::connect(target, &members[0].credential).await?;
                let id = setup::channels(&conn, &format!("quiet-{ci}-"), 1).await?[0];
                let pairs: Vec<(ConversationId, UserId)> =
                    members[1..].iter().map(|u| (id, u.id)).collect();
                setup::invite(&conn, &pairs).await?;
                conn.close().await;
                quiet.push((id, members));
            }
            let (_, noisy_users) =
                setup::workspace_with_users(target, "bench-fair-noisy", "n", nk).await?;
            let mut noisy_conversations = Vec::with_capacity(nc);
            for (ci, user) in noisy_users.iter().take(nc).enumerate() {
                let conn = setup::connect(target, &user.credential).await?;
                let id = setup::channels(&conn, &format!("noisy-{ci}-"), 1).await?[0];
                let pairs: Vec<(ConversationId, UserId)> = (nc..nk)
                    .filter(|i| i % nc == ci)
                    .map(|i| (id, noisy_users[i].id))
                    .collect();
                setup::invite(&conn, &pairs).await?;
                conn.close().await;
                noisy_conversations.push(id);
            }
            Ok(World {
                quiet,
                noisy_users,
                noisy_conversations,
            })
        })
    }
}

/// One phase's figures (per thread, then merged).
struct Outcome {
    /// Quiet send → ack, from the intended send time.
    ack: Histogram<u64>,
    /// Quiet send → arrival at the other members.
    delivery: Histogram<u64>,
    /// Quiet sends due in the window, sent, acked.
    due: u64,
    sent: u64,
    acked: u64,
    /// Quiet deliveries seen and expected.
    delivered: u64,
    expected: u64,
    /// Noisy acks and `RateLimited` answers inside the window.
    noisy_acks: u64,
    noisy_limited: u64,
    /// Errors of either tenant (anything but an ack or, for the noisy one,
    /// `RateLimited`).
    errors: u64,
    first_error: Option<String>,
    usage: Value,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            ack: histogram(),
            delivery: histogram(),
            due: 0,
            sent: 0,
            acked: 0,
            delivered: 0,
            expected: 0,
            noisy_acks: 0,
            noisy_limited: 0,
            errors: 0,
            first_error: None,
            usage: Value::Null,
        }
    }

    fn merge(&mut self, o: Outcome) {
        let _ = self.ack.add(&o.ack);
        let _ = self.delivery.add(&o.delivery);
        self.due += o.due;
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.expected += o.expected;
        self.noisy_acks += o.noisy_acks;
        self.noisy_limited += o.noisy_limited;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    fn json(&self, secs: f64) -> Value {
        json!({
            "quiet_ack_latency": latency_json(&self.ack),
            "quiet_delivery_latency": latency_json(&self.delivery),
            "quiet_due": self.due,
            "quiet_sent": self.sent,
            "quiet_acked": self.acked,
            "quiet_delivered": self.delivered,
            "quiet_expected": self.expected,
            "noisy_acked_per_s": self.noisy_acks as f64 / secs,
            "noisy_rate_limited_per_s": self.noisy_limited as f64 / secs,
            "errors": self.errors,
            "first_error": self.first_error,
            "usage": self.usage,
        })
    }
}

/// The measurement window of a phase, known once the threads meet.
#[derive(Clone, Default)]
struct Span {
    from: Rc<Cell<u64>>,
    to: Rc<Cell<u64>>,
}

impl Span {
    fn contains(&self, t: u64) -> bool {
        t >= self.from.get() && t < self.to.get()
    }
}

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    if cmd.common.server.is_some() {
        bail!("fairness starts its own courierd (it restarts it with each --limits); --server is not supported");
    }
    crate::server::raise_nofile(65_536)?;
    let mut target = Target::start(&cmd.common)?;
    let machine = report::machine(
        &target
            .data_dir()
            .map_or_else(|| cmd.common.data_root(), |p| p.to_owned()),
    );
    report::print_machine(&machine);
    // The world is built with the limits off (setup pipelines requests).
    let world = World::build(&target, cmd)?;
    let mut current = RateLimits::Off;
    let mut results = json!({});
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for &limits in &cmd.limits {
        if limits != current {
            target
                .restart_with_limits(limits)
                .with_context(|| format!("restarting courierd with limits {}", limits.key()))?;
            current = limits;
        }
        let alone = phase(&target, &world, cmd, false)?;
        let noisy = phase(&target, &world, cmd, true)?;
        let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64;
        let ratio = |a: &Histogram<u64>, b: &Histogram<u64>| {
            let base = p99(a);
            (base > 0.0).then(|| p99(b) / base)
        };
        let ack_ratio = ratio(&alone.ack, &noisy.ack);
        let delivery_ratio = ratio(&alone.delivery, &noisy.delivery);
        eprintln!(
            "fairness limits={}: quiet ack p99 {:.3} ms alone, {:.3} ms with the noisy tenant",
            limits.key(),
            p99(&alone.ack) / 1000.0,
            p99(&noisy.ack) / 1000.0
        );
        rows.push(row(limits, "alone", &alone, cmd.secs));
        rows.push(row(limits, "with noisy", &noisy, cmd.secs));
        ratios.push((limits, ack_ratio, delivery_ratio));
        results[limits.key()] = json!({
            "alone": alone.json(cmd.secs),
            "with_noisy": noisy.json(cmd.secs),
            "ratio_quiet_ack_p99": ack_ratio,
            "ratio_quiet_delivery_p99": delivery_ratio,
        });
    }
    drop(target);
    report::table(
        &format!(
            "fairness: quiet {} conversations × {} members at {} msg/s (open loop) vs noisy {} connections × {} in flight on {} conversations (retry: {:?}); {} B bodies, {} s measured per phase",
            cmd.quiet_conversations, cmd.quiet_members, cmd.quiet_rate, cmd.noisy_connections,
            cmd.noisy_window, cmd.noisy_conversations, cmd.noisy_retry, cmd.body_bytes, cmd.secs
        ),
        &[
            "limits", "phase", "ack p50 ms", "ack p99 ms", "ack p999 ms", "dlv p50 ms",
            "dlv p99 ms", "noisy acked/s", "noisy limited/s", "server cores", "errors",
        ],
        &rows,
    );
    for (limits, ack, delivery) in &ratios {
        let f = |r: &Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}×"));
        println!(
            "limits {}: quiet p99 with/without the noisy tenant: ack {}, delivery {}",
            limits.key(),
            f(ack),
            f(delivery)
        );
    }
    let mut params = cmd.common.params();
    params["fairness"] = json!({
        "quiet_conversations": cmd.quiet_conversations, "quiet_members": cmd.quiet_members,
        "quiet_rate": cmd.quiet_rate, "noisy_connections": cmd.noisy_connections,
        "noisy_conversations": cmd.noisy_conversations, "noisy_window": cmd.noisy_window,
        "noisy_retry": format!("{:?}", cmd.noisy_retry).to_lowercase(),
        "body_bytes": cmd.body_bytes, "warmup_secs": cmd.warmup_secs, "secs": cmd.secs,
        "limits": cmd.limits.iter().map(|l| l.key()).collect::<Vec<_>>(),
    });
    report::emit(
        cmd.common.json,
        &report::envelope("fairness", machine, params, results),
    );
    Ok(())
}

fn row(limits: RateLimits, phase: &str, o: &Outcome, secs: f64) -> Vec<String> {
    let ms = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.3}", h.value_at_quantile(q) as f64 / 1000.0)
        }
    };
    vec![
        limits.key().to_owned(),
        phase.to_owned(),
        ms(&o.ack, 0.5),
        ms(&o.ack, 0.99),
        ms(&o.ack, 0.999),
        ms(&o.delivery, 0.5),
        ms(&o.delivery, 0.99),
        format!("{:.0}", o.noisy_acks as f64 / secs),
        format!("{:.0}", o.noisy_limited as f64 / secs),
        o.usage["server_cpu_cores"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:.2}")),
        o.errors.to_string(),
    ]
}

/// One phase: the quiet tenant on schedule, with or without the noisy one.
/// Load thread 0 carries the quiet tenant alone, so its measurements never
/// queue behind the noisy tenant's traffic inside the harness; the noisy
/// connections share the other `--client-threads` threads.
fn phase(target: &Target, world: &World, cmd: &Cmd, noisy: bool) -> anyhow::Result<Outcome> {
    let noisy_threads = cmd.common.threads();
    let threads = noisy_threads + 1;
    let phase = Phase::new(threads);
    let window = Window::default();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let probe = target.probe();
    let addr = target.addr;
    let qc = world.quiet.len();
    let nk = world.noisy_users.len();
    let outcomes = pool::run(threads, |t| {
        let phase = phase.clone();
        let window = window.clone();
        let samples = samples.clone();
        let probe = probe.clone();
        async move {
            let out = Rc::new(RefCell::new(Outcome::new()));
            let span = Span::default();
            let stop = Rc::new(Cell::new(false));
            let mine: Vec<usize> = if t == 0 {
                (0..qc).collect()
            } else {
                Vec::new()
            };
            let pending: Rc<RefCell<HashMap<(usize, u32), u64>>> = Rc::default();
            let mut senders = Vec::new();
            let mut tasks = Vec::new();
            for &ci in &mine {
                let (conversation, members) = &world.quiet[ci];
                for (mi, member) in members.iter().enumerate() {
                    let session = Session::login(addr, None, &member.credential)
                        .await
                        .with_context(|| format!("quiet conversation {ci} member {mi}"))?;
                    if mi == 0 {
                        let si = senders.len();
                        senders.push((*conversation, session.conn.clone()));
                        tasks.push(tokio::task::spawn_local(quiet_acks(
                            session,
                            si,
                            pending.clone(),
                            span.clone(),
                            out.clone(),
                            stop.clone(),
                        )));
                    } else {
                        tasks.push(tokio::task::spawn_local(quiet_receiver(
                            session,
                            member.id,
                            span.clone(),
                            out.clone(),
                            stop.clone(),
                        )));
                    }
                }
            }
            let mut noisy_sessions = Vec::new();
            if noisy && t > 0 {
                for i in pool::share(nk, noisy_threads, t - 1) {
                    let s = Session::login(addr, None, &world.noisy_users[i].credential)
                        .await
                        .with_context(|| format!("noisy connection {i}"))?;
                    noisy_sessions.push((i, s));
                }
            }
            phase.wait().await?;
            let (from, to) = window.get(cmd.warmup_secs, cmd.secs);
            span.from.set(from);
            span.to.set(to);
            if t == 0 {
                sample_window(probe, from, to, samples);
            }
            let warmup_ns = (cmd.warmup_secs * 1e9) as u64;
            let start = from.saturating_sub(warmup_ns);
            let mut noisy_tasks = Vec::new();
            for (i, session) in noisy_sessions {
                let nc = world.noisy_conversations.len();
                noisy_tasks.push(tokio::task::spawn_local(noisy_loop(
                    session,
                    world.noisy_conversations[i % nc],
                    crate::payload::filler(cmd.body_bytes),
                    cmd.noisy_window.max(1),
                    cmd.noisy_retry,
                    span.clone(),
                    out.clone(),
                )));
            }
            let timer = PreciseTimer::new()?;
            if !senders.is_empty() {
                let schedule = Schedule::new(
                    start,
                    cmd.quiet_rate,
                    mine.len() as f64 / qc as f64,
                    cmd.warmup_secs + cmd.secs,
                );
                let members = cmd.quiet_members.max(2) as u64;
                let mut next_req = vec![1u32; senders.len()];
                for k in 0..schedule.count {
                    let due = schedule.due(k);
                    timer.sleep_until(due).await?;
                    let si = (k as usize) % senders.len();
                    let (conversation, conn) = &senders[si];
                    let req = next_req[si];
                    next_req[si] = req.wrapping_add(1).max(1);
                    let bytes = encode(
                        req,
                        Request::Send {
                            conversation: *conversation,
                            client_msg_id: crate::payload::client_msg_id(),
                            body: crate::payload::stamped(QUIET_TAG, due, cmd.body_bytes),
                            mentions: Vec::new(),
                            broadcast: Broadcast::None,
                        },
                    );
                    pending.borrow_mut().insert((si, req), due);
                    conn.send(&bytes).await?;
                    if span.contains(due) {
                        let mut o = out.borrow_mut();
                        o.due += 1;
                        o.sent += 1;
                        o.expected += members - 1;
                    }
                }
            }
            // Drain: quiet acks and deliveries still on their way (bounded).
            let drain_until = now_ns().max(to) + DRAIN_NS;
            while now_ns() < drain_until {
                {
                    let o = out.borrow();
                    if o.delivered >= o.expected && o.acked >= o.sent {
                        break;
                    }
                }
                timer.sleep_until(now_ns() + 2_000_000).await?;
            }
            for task in noisy_tasks {
                task.await??;
            }
            stop.set(true);
            for (_, conn) in &senders {
                conn.close().await;
            }
            for task in tasks {
                task.abort();
            }
            phase.wait().await?;
            let o = std::mem::replace(&mut *out.borrow_mut(), Outcome::new());
            Ok(o)
        }
    })?;
    let mut total = Outcome::new();
    for o in outcomes {
        total.merge(o);
    }
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    if let [a, b, ..] = samples.as_slice() {
        total.usage = usage(a, b);
    }
    if total.acked < total.sent {
        let missing = total.sent - total.acked;
        total.error(format!("{missing} quiet sends unacknowledged"));
    }
    Ok(total)
}

/// Reads a quiet sender's acks and records send → ack from the intended
/// send time.
async fn quiet_acks(
    mut session: Session,
    si: usize,
    pending: Rc<RefCell<HashMap<(usize, u32), u64>>>,
    span: Span,
    out: Rc<RefCell<Outcome>>,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    while !stop.get() {
        let mut acks: Vec<(u32, u64)> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let read = session
            .conn
            .read(&mut session.reader, |bytes| match decode_server(bytes) {
                Ok(ServerFrame::Reply {
                    req,
                    result: Ok(Response::SendAck { .. }),
                }) => acks.push((req, now_ns())),
                Ok(ServerFrame::Reply { result, .. }) => errors.push(format!("quiet: {result:?}")),
                Ok(ServerFrame::Event(_)) => {}
                Err(e) => errors.push(format!("quiet: undecodable frame: {e}")),
            })
            .await;
        let mut o = out.borrow_mut();
        for (req, at) in acks {
            if let Some(due) = pending.borrow_mut().remove(&(si, req)) {
                if span.contains(due) {
                    o.acked += 1;
                    record_ns(&mut o.ack, at.saturating_sub(due));
                }
            }
        }
        for e in errors {
            o.error(e);
        }
        if let Err(e) = read {
            if !stop.get() {
                o.error(format!("quiet sender connection: {e}"));
            }
            break;
        }
    }
    Ok(())
}

/// Records the latency of every quiet message reaching another member.
async fn quiet_receiver(
    mut session: Session,
    me: UserId,
    span: Span,
    out: Rc<RefCell<Outcome>>,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    while !stop.get() {
        let mut arrivals: Vec<(u64, u64)> = Vec::new();
        let read = session
            .conn
            .read(&mut session.reader, |bytes| {
                if let Ok(ServerFrame::Event(Event::Message(m))) = decode_server(bytes) {
                    if m.sender != me {
                        if let Some((QUIET_TAG, due)) = crate::payload::parse_stamp(&m.body) {
                            arrivals.push((due, now_ns()));
                        }
                    }
                }
            })
            .await;
        let mut o = out.borrow_mut();
        for (due, at) in arrivals {
            if span.contains(due) {
                o.delivered += 1;
                record_ns(&mut o.delivery, at.saturating_sub(due));
            }
        }
        if let Err(e) = read {
            if !stop.get() {
                o.error(format!("quiet member connection: {e}"));
            }
            break;
        }
    }
    Ok(())
}

/// One noisy connection: `window` sends in flight until the end of the
/// window; a `RateLimited` answer is retried after `retry_after_ms` or at
/// once (`retry`). Then drains what is in flight (bounded).
async fn noisy_loop(
    mut session: Session,
    conversation: ConversationId,
    body: String,
    window: usize,
    retry: Retry,
    span: Span,
    out: Rc<RefCell<Outcome>>,
) -> anyhow::Result<()> {
    let conn = session.conn.clone();
    let make = move || {
        encode(
            1,
            Request::Send {
                conversation,
                client_msg_id: crate::payload::client_msg_id(),
                body: body.clone(),
                mentions: Vec::new(),
                broadcast: Broadcast::None,
            },
        )
    };
    let make = Rc::new(make);
    // Sends on the wire or waiting out a `retry_after_ms`.
    let in_flight = Rc::new(Cell::new(window));
    for _ in 0..window {
        conn.queue(&make());
    }
    conn.flush().await?;
    let to = span.to.get();
    let drain_deadline = to + DRAIN_NS;
    let mut local = Outcome::new();
    loop {
        let mut acks = 0usize;
        let mut limited: Vec<u64> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_millis(50),
            session
                .conn
                .read(&mut session.reader, |bytes| match decode_server(bytes) {
                    Ok(ServerFrame::Reply {
                        result: Ok(Response::SendAck { .. }),
                        ..
                    }) => acks += 1,
                    Ok(ServerFrame::Reply {
                        result: Err(Reject::RateLimited { retry_after_ms, .. }),
                        ..
                    }) => limited.push(retry_after_ms),
                    Ok(ServerFrame::Reply { result, .. }) => {
                        errors.push(format!("noisy: {result:?}"))
                    }
                    Ok(ServerFrame::Event(_)) => {}
                    Err(e) => errors.push(format!("noisy: undecodable frame: {e}")),
                }),
        )
        .await;
        let now = now_ns();
        if span.contains(now) {
            local.noisy_acks += acks as u64;
            local.noisy_limited += limited.len() as u64;
        }
        for e in errors.iter() {
            local.error(e.clone());
        }
        in_flight.set(in_flight.get() - acks - limited.len() - errors.len());
        if now < to {
            for _ in 0..acks + errors.len() {
                conn.queue(&make());
                in_flight.set(in_flight.get() + 1);
            }
            for wait_ms in limited {
                in_flight.set(in_flight.get() + 1);
                match retry {
                    Retry::Ignore => conn.queue(&make()),
                    Retry::Honour => {
                        let (conn, make, in_flight) =
                            (conn.clone(), make.clone(), in_flight.clone());
                        tokio::task::spawn_local(async move {
                            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                            if now_ns() < to && conn.send(&make()).await.is_ok() {
                                return;
                            }
                            in_flight.set(in_flight.get() - 1);
                        });
                    }
                }
            }
            conn.flush().await?;
        } else if in_flight.get() == 0 {
            break;
        } else if now > drain_deadline {
            local.error(format!(
                "noisy: {} sends unanswered {} s after the end",
                in_flight.get(),
                DRAIN_NS / 1_000_000_000
            ));
            break;
        }
        match read {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                local.error(format!("noisy connection: {e}"));
                break;
            }
        }
    }
    out.borrow_mut().merge(local);
    session.conn.close().await;
    Ok(())
}
