//! `hot`: one very hot conversation. M members (default 1,000) are all
//! connected; S of them (default 64) send closed-loop into the one channel,
//! each keeping W sends in flight. Every member (the senders included, who
//! get their own messages back as events) must receive every acked message.
//! Reports acked sends/s, ack latency, deliveries/s and delivery latency
//! (from the send), the members' missing deliveries, and server CPU per
//! acked send.
//!
//! Back of the envelope: one owner shard sequences every message of the
//! conversation and appends it to one WAL (group commit: many sends per
//! fsync), then every shard writes one event frame to each of its M/shards
//! subscribed sockets. At 50K acked sends/s that is 50K × M = 50M frames/s
//! to deliver — far beyond two cores if each frame cost one socket write;
//! only batching many frames into one write per socket per turn makes the
//! per-frame cost the cost of copying ≈ 200 bytes. So this scenario finds
//! where one conversation's ceiling is: the owner core (sequencing), the
//! fsync, or the fanout.
//!
//! The open-file limit caps M (one fd per member here and in courierd):
//! with a lower hard limit the harness connects what it allows and says so.

use crate::client::{encode, Session};
use crate::clock::{now_ns, PreciseTimer};
use crate::pool::{self, Phase};
use crate::report::{self, histogram, latency_json, latency_row, record_ns};
use crate::send::{sample_window, Window};
use crate::server::{usage, Common, Target};
use crate::setup;
use clap::Args;
use courier_core::api::{Broadcast, ConversationId, Event, Request, Response};
use courier_proto::{decode_server, ServerFrame};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// `courier-bench hot`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// Members of the channel, all connected (the senders included).
    #[arg(long, default_value_t = 1_000)]
    pub members: usize,
    /// Members that send (closed loop).
    #[arg(long, default_value_t = 64)]
    pub senders: usize,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Connection attempts in flight per load thread while connecting.
    #[arg(long, default_value_t = 128)]
    pub connect_in_flight: usize,
    #[command(flatten)]
    pub common: Common,
}

/// File descriptors kept free besides the members' connections.
const FDS_SPARE: u64 = 200;

/// Seconds the members may take to receive the last messages after the
/// senders stopped.
const DRAIN_SECS: u64 = 20;

/// What one load thread observed.
struct Seen {
    ack: Histogram<u64>,
    delivery: Histogram<u64>,
    acks_in_window: u64,
    deliveries_in_window: u64,
    /// Messages of the channel received, per member connection of this thread.
    received: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Seen {
    fn new(members: usize) -> Seen {
        Seen {
            ack: histogram(),
            delivery: histogram(),
            acks_in_window: 0,
            deliveries_in_window: 0,
            received: vec![0; members],
            errors: 0,
            first_error: None,
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

/// Shared by the load threads.
#[derive(Clone)]
struct Shared {
    /// Sends acked over the whole run (warm-up included): every member
    /// must receive this many messages.
    acked: Arc<AtomicU64>,
    /// Senders still running (sending or draining their window).
    senders_left: Arc<AtomicU64>,
}

/// One member connection's task parameters.
struct Member {
    slot: usize,
    channel: ConversationId,
    /// Closed-loop sender with this window, or only a receiver.
    window: Option<usize>,
    body_bytes: usize,
    from: u64,
    to: u64,
}

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    let mut members = cmd.members.max(2);
    let limit = crate::server::raise_nofile(members as u64 + FDS_SPARE)?;
    let mut limited = None;
    if members as u64 + FDS_SPARE > limit {
        let allowed = (limit.saturating_sub(FDS_SPARE) as usize).max(2);
        eprintln!(
            "hot: RLIMIT_NOFILE is {limit}: connecting {allowed} members instead of {members}"
        );
        limited = Some(format!(
            "open-file limit {limit}: {allowed} of {members} members"
        ));
        members = allowed;
    }
    let senders = cmd.senders.clamp(1, members);
    let target = Target::start(&cmd.common)?;
    let machine = report::machine(
        &target
            .data_dir()
            .map_or_else(|| cmd.common.data_root(), |p| p.to_owned()),
    );
    report::print_machine(&machine);
    let setup_start = now_ns();
    let (users, channel) = pool::block_on(async {
        let (_, users) = setup::workspace_with_users(&target, "bench-hot", "u", members).await?;
        let creator = setup::connect(&target, &users[0].credential).await?;
        let channel = setup::channels(&creator, "hot-", 1).await?[0];
        let pairs: Vec<_> = users[1..].iter().map(|u| (channel, u.id)).collect();
        setup::invite(&creator, &pairs).await?;
        creator.close().await;
        Ok((users, channel))
    })?;
    let setup_s = (now_ns() - setup_start) as f64 / 1e9;
    eprintln!("hot: channel of {members} members ready in {setup_s:.1} s; connecting");
    let ips = members / 20_000 + 1;
    let threads = cmd.common.threads();
    let phase = Phase::new(threads);
    let window = Window::default();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared {
        acked: Arc::new(AtomicU64::new(0)),
        senders_left: Arc::new(AtomicU64::new(senders as u64)),
    };
    let addr = target.addr;
    let probe = target.probe();
    let seen: Vec<Seen> = pool::run(threads, |t| {
        let (users, phase, window, samples, probe, shared) = (
            &users,
            phase.clone(),
            window.clone(),
            samples.clone(),
            probe.clone(),
            shared.clone(),
        );
        async move {
            // Member j sends if j < senders; spread members over threads
            // round-robin so that every thread has senders and receivers.
            let mine: Vec<usize> = (0..members).filter(|j| j % threads == t).collect();
            let sessions = login_all(&mine, users, addr, ips, cmd.connect_in_flight).await?;
            phase.wait().await?;
            let (from, to) = window.get(cmd.warmup_secs, cmd.secs);
            if t == 0 {
                sample_window(probe, from, to, samples);
            }
            let seen = Rc::new(RefCell::new(Seen::new(mine.len())));
            let mut tasks = Vec::with_capacity(sessions.len());
            for (slot, (j, session)) in sessions.into_iter().enumerate() {
                let member = Member {
                    slot,
                    channel,
                    window: (j < senders).then_some(cmd.window.max(1)),
                    body_bytes: cmd.body_bytes,
                    from,
                    to,
                };
                tasks.push(tokio::task::spawn_local(member_loop(
                    session,
                    member,
                    seen.clone(),
                    shared.clone(),
                )));
            }
            drain(&shared, &seen, to).await?;
            phase.wait().await?;
            for task in tasks {
                task.abort();
            }
            let out = std::mem::replace(&mut *seen.borrow_mut(), Seen::new(0));
            Ok(out)
        }
    })?;
    report_run(
        cmd, members, senders, limited, setup_s, &target, machine, &samples, &shared, seen,
    )
}

/// Logs in members `mine` (at most `in_flight` at a time), in order.
async fn login_all(
    mine: &[usize],
    users: &[setup::User],
    addr: std::net::SocketAddr,
    ips: usize,
    in_flight: usize,
) -> anyhow::Result<Vec<(usize, Session)>> {
    let gate = Rc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let mut logins = Vec::with_capacity(mine.len());
    for &j in mine {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (j % ips) as u8));
        let credential = users[j].credential.clone();
        let gate = gate.clone();
        logins.push(tokio::task::spawn_local(async move {
            let _permit = gate.acquire().await;
            Session::login(addr, Some(ip), &credential).await
        }));
    }
    let mut sessions = Vec::with_capacity(mine.len());
    for (login, &j) in logins.into_iter().zip(mine) {
        let session = login
            .await?
            .map_err(|e| anyhow::anyhow!("member {j}: {e:#}"))?;
        sessions.push((j, session));
    }
    Ok(sessions)
}

/// Waits until every sender (on every thread) is done and every member of
/// this thread has every acked message, or the drain time is over.
async fn drain(shared: &Shared, seen: &Rc<RefCell<Seen>>, to: u64) -> anyhow::Result<()> {
    let timer = PreciseTimer::new()?;
    let mut drain_until = None;
    loop {
        timer.sleep_until(now_ns() + 5_000_000).await?;
        let senders_busy = shared.senders_left.load(Ordering::Acquire) > 0;
        if senders_busy && now_ns() < to + 2 * DRAIN_SECS * 1_000_000_000 {
            continue;
        }
        let until = *drain_until.get_or_insert(now_ns() + DRAIN_SECS * 1_000_000_000);
        let acked = shared.acked.load(Ordering::Acquire);
        if seen.borrow().received.iter().all(|&r| r >= acked) || now_ns() > until {
            return Ok(());
        }
    }
}

/// Merges the threads' observations, prints the table and the JSON.
#[allow(clippy::too_many_arguments)]
fn report_run(
    cmd: &Cmd,
    members: usize,
    senders: usize,
    limited: Option<String>,
    setup_s: f64,
    target: &Target,
    machine: Value,
    samples: &Mutex<Vec<crate::server::Sample>>,
    shared: &Shared,
    seen: Vec<Seen>,
) -> anyhow::Result<()> {
    let acked_total = shared.acked.load(Ordering::Acquire);
    let mut ack = histogram();
    let mut delivery = histogram();
    let (mut acks, mut deliveries, mut errors, mut missing, mut short_members) = (0, 0, 0, 0, 0);
    let mut first_error = None;
    for s in seen {
        let _ = ack.add(&s.ack);
        let _ = delivery.add(&s.delivery);
        acks += s.acks_in_window;
        deliveries += s.deliveries_in_window;
        errors += s.errors;
        first_error = first_error.or(s.first_error);
        for r in s.received {
            let short = acked_total.saturating_sub(r);
            missing += short;
            short_members += u64::from(short > 0);
        }
    }
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let usage = match samples.as_slice() {
        [a, b, ..] => usage(a, b),
        _ => Value::Null,
    };
    let acked_per_s = acks as f64 / cmd.secs;
    let deliveries_per_s = deliveries as f64 / cmd.secs;
    let cpu_us_per_send = usage["server_cpu_cores"]
        .as_f64()
        .map(|cores| cores * 1e6 / acked_per_s.max(1.0));
    let cpu_us_per_delivery = usage["server_cpu_cores"]
        .as_f64()
        .map(|cores| cores * 1e6 / deliveries_per_s.max(1.0));
    report::table(
        &format!(
            "hot: one channel, {members} members connected, {senders} senders × {} in flight, {} B bodies, {} s measured",
            cmd.window, cmd.body_bytes, cmd.secs
        ),
        report::LATENCY_HEADER,
        &[latency_row("ack", &ack), latency_row("delivery", &delivery)],
    );
    let f1 = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.2}"));
    println!(
        "acked sends/s {acked_per_s:.0}; deliveries/s {deliveries_per_s:.0}; server cores {}; server CPU {} µs per acked send, {} µs per delivery",
        f1(usage["server_cpu_cores"].as_f64()),
        f1(cpu_us_per_send),
        f1(cpu_us_per_delivery),
    );
    println!(
        "every member received every acked message: {} ({acked_total} acked in all, {missing} deliveries missing at {short_members} members); errors {errors}",
        if missing == 0 { "yes" } else { "NO" }
    );
    let p99_ms = ack.value_at_quantile(0.99) as f64 / 1e6;
    let met = acked_per_s >= 50_000.0 && missing == 0 && p99_ms <= 10.0;
    println!(
        "target (≥ 50K acked sends/s, p99 ack ≤ 10 ms, nothing missing): {}",
        if met { "met" } else { "MISSED" }
    );
    let mut params = cmd.common.params();
    params["hot"] = json!({
        "members": members, "members_requested": cmd.members, "senders": senders,
        "window": cmd.window, "body_bytes": cmd.body_bytes, "warmup_secs": cmd.warmup_secs,
        "secs": cmd.secs, "limited_by": limited,
    });
    let results = json!({
        "acked_per_s": acked_per_s, "acks": acks, "acked_total": acked_total,
        "ack_latency": latency_json(&ack), "delivery_latency": latency_json(&delivery),
        "deliveries_per_s": deliveries_per_s, "missing": missing, "members_missing_some": short_members,
        "server_cpu_us_per_send": cpu_us_per_send, "server_cpu_us_per_delivery": cpu_us_per_delivery,
        "usage": usage, "errors": errors, "first_error": first_error, "setup_s": setup_s,
        "disk": target.wal_footprint(), "target_met": met,
    });
    report::emit(
        cmd.common.json,
        &report::envelope("hot", machine, params, results),
    );
    Ok(())
}

/// One member's connection: counts the channel's messages it receives (and
/// their delivery latency inside the window); a sender also keeps its
/// window of sends in flight until the window's end, then drains.
async fn member_loop(mut session: Session, m: Member, seen: Rc<RefCell<Seen>>, shared: Shared) {
    let mut in_flight: HashMap<u32, u64> = HashMap::new();
    let mut sending = m.window.is_some();
    if let Some(w) = m.window {
        for _ in 0..w {
            queue_send(&mut session, &m, &mut in_flight);
        }
        if let Err(e) = session.conn.flush().await {
            seen.borrow_mut().error(format!("sender: {e}"));
        }
    }
    loop {
        let mut replies = 0usize;
        let read = {
            let in_flight = &mut in_flight;
            // Borrowed per message, never across the read's await: the
            // thread's other connections share `seen`.
            session
                .conn
                .read(&mut session.reader, |bytes| {
                    let mut s = seen.borrow_mut();
                    let now = now_ns();
                    let in_window = now >= m.from && now < m.to;
                    match decode_server(bytes) {
                        Ok(ServerFrame::Reply { req, result }) => {
                            let Some(sent) = in_flight.remove(&req) else {
                                return;
                            };
                            replies += 1;
                            match result {
                                Ok(Response::SendAck { .. }) => {
                                    shared.acked.fetch_add(1, Ordering::AcqRel);
                                    if in_window {
                                        s.acks_in_window += 1;
                                        record_ns(&mut s.ack, now - sent);
                                    }
                                }
                                Ok(other) => s.error(format!("unexpected reply {other:?}")),
                                Err(reject) => s.error(format!("{reject:?}")),
                            }
                        }
                        Ok(ServerFrame::Event(Event::Message(msg)))
                            if msg.conversation == m.channel =>
                        {
                            s.received[m.slot] += 1;
                            if in_window {
                                s.deliveries_in_window += 1;
                                if let Some((_, sent)) = crate::payload::parse_stamp(&msg.body) {
                                    record_ns(&mut s.delivery, now.saturating_sub(sent));
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => s.error(format!("undecodable frame: {e}")),
                    }
                })
                .await
        };
        if let Err(e) = read {
            seen.borrow_mut().error(format!("member connection: {e}"));
            if sending {
                shared.senders_left.fetch_sub(1, Ordering::AcqRel);
            }
            return;
        }
        if !sending {
            continue;
        }
        if now_ns() < m.to {
            for _ in 0..replies {
                queue_send(&mut session, &m, &mut in_flight);
            }
            if let Err(e) = session.conn.flush().await {
                seen.borrow_mut().error(format!("sender: {e}"));
            }
        } else if in_flight.is_empty() || now_ns() > m.to + DRAIN_SECS * 1_000_000_000 {
            if !in_flight.is_empty() {
                seen.borrow_mut().error(format!(
                    "{} sends unacknowledged {DRAIN_SECS} s after the end",
                    in_flight.len()
                ));
            }
            sending = false;
            shared.senders_left.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Queues one send (stamped with its send time) on a sender's connection.
fn queue_send(session: &mut Session, m: &Member, in_flight: &mut HashMap<u32, u64>) {
    let req = session.next_req();
    let now = now_ns();
    let bytes = encode(
        req,
        Request::Send {
            conversation: m.channel,
            client_msg_id: crate::payload::client_msg_id(),
            body: crate::payload::stamped(0, now, m.body_bytes),
            mentions: Vec::new(),
            broadcast: Broadcast::None,
        },
    );
    session.conn.queue(&bytes);
    in_flight.insert(req, now);
}
