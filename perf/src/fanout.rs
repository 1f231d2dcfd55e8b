//! `fanout`: one channel with M members (default 100,000), L of them
//! connected (default 100,000, the sender included), a sender posting at a
//! fixed rate: for each message, the time from its ack (at the sender) to
//! the first, median and last delivery at the members' connections;
//! deliveries/s; and the server's resident memory per idle authenticated
//! connection.
//!
//! Back of the envelope: a message is encoded once per shard and its frame
//! (≈ 200 B) written to every local subscribed socket: one `write` (or
//! `writev`) per socket, ≈ 1–2 µs of syscall each on loopback, so
//! 100,000 sockets cost ≈ 100–200 ms of CPU, split over 2 shards →
//! ≈ 50–100 ms from ack to last delivery, if the load generator — which
//! must read 100,000 frames per message on the same 2 cores — keeps up
//! (target ≤ 150 ms). Memory: a socket's server state (session, interest
//! entry, WebSocket state with a 4 KiB read buffer allocated while reading,
//! bounded outbox) should stay ≤ 8 KiB per idle connection; the kernel's
//! socket buffers are counted separately (`/proc/net/sockstat`).
//!
//! 100,000 client sockets need 100,000 (source IP, port) pairs: connection
//! j binds 127.0.0.(2 + j mod IPS) before connecting, and the harness raises
//! its own and courierd's open-file limit (courierd does not raise its own).

use crate::client::{encode, Session};
use crate::clock::{now_ns, PreciseTimer};
use crate::pool::{self, Phase};
use crate::report::{self, histogram, latency_json, record_ns};
use crate::server::{Common, Target};
use crate::setup;
use clap::Args;
use courier_core::api::{Broadcast, ConversationId, Event, Request, Response, UserId};
use courier_proto::{decode_server, ServerFrame};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// `courier-bench fanout`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// Members of the channel (M), the sender included.
    #[arg(long, default_value_t = 100_000)]
    pub members: usize,
    /// Members connected (L), the sender included.
    #[arg(long, default_value_t = 100_000)]
    pub connected: usize,
    /// Messages per second posted by the sender.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Messages posted.
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Client source addresses 127.0.0.2… to spread connections over
    /// [default: one per 20,000 connections].
    #[arg(long)]
    pub source_ips: Option<usize>,
    /// Connection attempts in flight per load thread while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_in_flight: usize,
    /// Seconds to let the server settle after connecting, before measuring memory.
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
    /// Run against an N-node replicated cluster from the test kit instead
    /// of one courierd: the connected members spread over every node and
    /// over several load-generator processes (`--loaders`); 0 = one
    /// courierd. See `fanout_cluster.rs`.
    #[arg(long, default_value_t = 0)]
    pub cluster: usize,
    /// Replication factor (voters) of the `--cluster` run [default: min(N, 3)].
    /// Only voters serve clients in this version: give N to use every node.
    #[arg(long)]
    pub replication_factor: Option<u8>,
    /// Load-generator processes of a `--cluster` run, each at most 19,000
    /// connections [default: max(N, receivers / 19,000 rounded up)].
    #[arg(long)]
    pub loaders: Option<usize>,
    /// Niceness the `--cluster` run's loaders add to this process's
    /// (0..=19): the nodes then win the CPU when they compete with the
    /// load generators reading their frames.
    #[arg(long, default_value_t = 0)]
    pub loader_nice: i32,
    #[command(flatten)]
    pub common: Common,
}

/// File descriptors kept free besides the connections (WAL segments,
/// listeners, setup connections, the peer processes' pipes).
const FDS_SPARE: u64 = 1_000;

/// Time allowed for one member's connect + upgrade + Hello/Welcome.
const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Seconds to wait for the last deliveries after the last send.
const DRAIN_SECS: u64 = 15;

/// Kernel memory of TCP sockets, in KiB (`/proc/net/sockstat`, pages).
fn tcp_kernel_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "mem")?;
    let pages: u64 = words.get(i + 1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(pages * page / 1024)
}

/// What one load thread observed.
#[derive(Default)]
struct Seen {
    /// Per message index: arrival times at this thread's receivers.
    arrivals: Vec<Vec<u64>>,
    /// Per message index: (due, ack) at the sender (thread 0 only).
    acks: Vec<(u64, Option<u64>)>,
    /// Receivers on this thread.
    receivers: usize,
    /// Memory after connecting and settling (thread 0 only).
    rss_connected_kib: Option<u64>,
    kernel_connected_kib: Option<u64>,
    /// Server CPU time (ns) from the first send to the end of the drain
    /// (thread 0 only).
    server_cpu_ns: Option<u64>,
    errors: Vec<String>,
}

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    let members = cmd.members.max(2);
    let mut connected = cmd.connected.clamp(1, members);
    // Both this process and courierd (which inherits the limit) need one fd
    // per connection. Without CAP_SYS_RESOURCE the hard limit cannot be
    // raised: then connect as many as it allows and say so.
    let limit = crate::server::raise_nofile(connected as u64 + FDS_SPARE)?;
    let mut limited = None;
    if connected as u64 + FDS_SPARE > limit {
        let allowed = (limit.saturating_sub(FDS_SPARE) as usize).max(2);
        eprintln!(
            "fanout: RLIMIT_NOFILE is {limit} and cannot be raised here (no CAP_SYS_RESOURCE?): \
             connecting {allowed} members instead of {connected}"
        );
        limited = Some(format!(
            "open-file limit {limit}: {allowed} of {connected} requested connections"
        ));
        connected = allowed;
    }
    let receivers = connected - 1;
    let target = Target::start(&cmd.common)?;
    let machine = report::machine(
        &target
            .data_dir()
            .map_or_else(|| cmd.common.data_root(), |p| p.to_owned()),
    );
    report::print_machine(&machine);
    let setup_start = now_ns();
    let (users, channel) = pool::block_on(async {
        let (_, users) = setup::workspace_with_users(&target, "bench-fanout", "u", members).await?;
        eprintln!(
            "fanout: {} users created in {:.1} s",
            users.len(),
            (now_ns() - setup_start) as f64 / 1e9
        );
        let sender = setup::connect(&target, &users[0].credential).await?;
        let channel = setup::channels(&sender, "fanout-", 1).await?[0];
        let pairs: Vec<(ConversationId, UserId)> =
            users[1..].iter().map(|u| (channel, u.id)).collect();
        setup::invite(&sender, &pairs).await?;
        sender.close().await;
        Ok((users, channel))
    })?;
    let setup_s = (now_ns() - setup_start) as f64 / 1e9;
    eprintln!(
        "fanout: channel of {members} members ready in {setup_s:.1} s; connecting {connected}"
    );
    // Let the setup connections' close settle before the baseline reading.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let rss_before = target.probe().rss_kib();
    let kernel_before = tcp_kernel_kib();
    let ips = cmd
        .source_ips
        .unwrap_or(connected / 20_000 + 1)
        .clamp(1, 250);
    let threads = cmd.common.threads();
    let phase = Phase::new(threads);
    let addr = target.addr;
    let probe = target.probe();
    let connect_start = now_ns();
    let connect_done = Arc::new(Mutex::new(0u64));
    let seen: Vec<Seen> = pool::run(threads, |t| {
        let users = &users;
        let phase = phase.clone();
        let probe = probe.clone();
        let connect_done = connect_done.clone();
        async move {
            let mine = pool::share(receivers, threads, t);
            let seen = Rc::new(RefCell::new(Seen {
                arrivals: vec![Vec::new(); cmd.messages],
                receivers: mine.len(),
                ..Seen::default()
            }));
            // Each connection's task logs in (at most `connect_in_flight`
            // at a time per thread) and then reads at once, so connected
            // members answer pings while the others are still connecting.
            let gate = Rc::new(tokio::sync::Semaphore::new(cmd.connect_in_flight.max(1)));
            let logged_in = Rc::new(std::cell::Cell::new(0usize));
            let failed = Rc::new(RefCell::new(Vec::<String>::new()));
            let mut tasks = Vec::with_capacity(mine.len());
            for j in mine.clone() {
                let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (j % ips) as u8));
                let user = users[1 + j].clone();
                let (gate, logged_in, failed, seen) = (
                    gate.clone(),
                    logged_in.clone(),
                    failed.clone(),
                    seen.clone(),
                );
                tasks.push(tokio::task::spawn_local(async move {
                    let login = {
                        let _permit = gate.acquire().await;
                        tokio::time::timeout(
                            LOGIN_TIMEOUT,
                            Session::login(addr, Some(ip), &user.credential),
                        )
                        .await
                    };
                    match login {
                        Ok(Ok(session)) => {
                            logged_in.set(logged_in.get() + 1);
                            receive(session, user.id, seen).await;
                        }
                        Ok(Err(e)) => failed
                            .borrow_mut()
                            .push(format!("receiver {j} from {ip}: {e:#}")),
                        Err(_) => failed.borrow_mut().push(format!(
                            "receiver {j} from {ip}: no Welcome within {LOGIN_TIMEOUT:?}"
                        )),
                    }
                }));
            }
            let timer = PreciseTimer::new()?;
            let mut reported = now_ns();
            while logged_in.get() + failed.borrow().len() < mine.len() {
                timer.sleep_until(now_ns() + 10_000_000).await?;
                if t == 0 && now_ns() - reported > 5_000_000_000 {
                    reported = now_ns();
                    eprintln!(
                        "fanout: thread 0 connected {} of {}",
                        logged_in.get(),
                        mine.len()
                    );
                }
            }
            if let Some(e) = failed.borrow().first() {
                anyhow::bail!(
                    "{} of {} connections failed; first: {e}",
                    failed.borrow().len(),
                    mine.len()
                );
            }
            let sender = if t == 0 {
                Some(Session::login(addr, None, &users[0].credential).await?)
            } else {
                None
            };
            phase.wait().await?;
            if let Ok(mut d) = connect_done.lock() {
                *d = (*d).max(now_ns());
            }
            if t == 0 {
                timer
                    .sleep_until(now_ns() + (cmd.settle_secs * 1e9) as u64)
                    .await?;
                let mut s = seen.borrow_mut();
                s.rss_connected_kib = probe.rss_kib();
                s.kernel_connected_kib = tcp_kernel_kib();
            }
            phase.wait().await?;
            let cpu_before = if t == 0 { probe.cpu_ns() } else { None };
            if let Some(sender) = sender {
                let acks = post(sender, channel, cmd, &timer).await?;
                seen.borrow_mut().acks = acks;
            }
            // Wait for this thread's deliveries (bounded).
            let start = now_ns();
            let all = cmd.messages * mine_len(&seen);
            let until = start
                + (cmd.messages as f64 / cmd.rate.max(1e-3) * 1e9) as u64
                + DRAIN_SECS * 1_000_000_000;
            while now_ns() < until {
                let got: usize = seen.borrow().arrivals.iter().map(Vec::len).sum();
                if got >= all && (t != 0 || !seen.borrow().acks.is_empty()) {
                    break;
                }
                timer.sleep_until(now_ns() + 5_000_000).await?;
            }
            phase.wait().await?;
            if let (Some(a), Some(b)) = (cpu_before, probe.cpu_ns()) {
                seen.borrow_mut().server_cpu_ns = Some(b.saturating_sub(a));
            }
            for task in tasks {
                task.abort();
            }
            let out = std::mem::take(&mut *seen.borrow_mut());
            Ok(out)
        }
    })?;
    let connect_s = connect_done
        .lock()
        .map_or(0.0, |d| (*d).saturating_sub(connect_start) as f64 / 1e9);
    let rss_after = target.probe().rss_kib();
    // Merge.
    let mut acks: Vec<(u64, Option<u64>)> = Vec::new();
    let mut arrivals: Vec<Vec<u64>> = vec![Vec::new(); cmd.messages];
    let mut rss_connected = None;
    let mut kernel_connected = None;
    let mut server_cpu_ns = None;
    let mut errors = Vec::new();
    let mut receivers_seen = 0;
    for s in seen {
        if !s.acks.is_empty() {
            acks = s.acks;
        }
        for (k, a) in s.arrivals.into_iter().enumerate() {
            arrivals[k].extend(a);
        }
        rss_connected = rss_connected.or(s.rss_connected_kib);
        kernel_connected = kernel_connected.or(s.kernel_connected_kib);
        server_cpu_ns = server_cpu_ns.or(s.server_cpu_ns);
        errors.extend(s.errors);
        receivers_seen += s.receivers;
    }
    let Spread {
        first,
        median,
        last,
        from_due,
        delivered,
        missing,
        deliveries_per_s,
        per_message,
    } = spread(&mut arrivals, &acks, receivers_seen);
    let per_conn = |after: Option<u64>, before: Option<u64>| match (after, before) {
        (Some(a), Some(b)) if receivers > 0 => {
            Some((a.saturating_sub(b)) as f64 * 1024.0 / receivers as f64)
        }
        _ => None,
    };
    // Everything the server did from the first send to the last delivery
    // (idle gaps between messages included: a floor of the rate's cost).
    let cpu_us_per_delivery = server_cpu_ns
        .filter(|_| delivered > 0)
        .map(|ns| ns as f64 / 1e3 / delivered as f64);
    let rss_per_conn = per_conn(rss_connected, rss_before);
    let kernel_per_conn = per_conn(kernel_connected, kernel_before);
    let stats = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            v.get(((v.len() as f64 - 1.0) * p).round() as usize)
                .copied()
        };
        json!({"min_ms": q(0.0), "p50_ms": q(0.5), "p90_ms": q(0.9), "max_ms": q(1.0), "count": v.len()})
    };
    let (sf, sm, sl) = (stats(&first), stats(&median), stats(&last));
    let cell = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    report::table(
        &format!(
            "fanout: {members} members, {connected} connected (from {ips} source IPs), {} messages at {}/s; ms after the ack, per message",
            cmd.messages, cmd.rate
        ),
        &["delivery", "min", "p50", "p90", "max"],
        &[
            vec!["first".into(), cell(&sf["min_ms"]), cell(&sf["p50_ms"]), cell(&sf["p90_ms"]), cell(&sf["max_ms"])],
            vec!["median".into(), cell(&sm["min_ms"]), cell(&sm["p50_ms"]), cell(&sm["p90_ms"]), cell(&sm["max_ms"])],
            vec!["last".into(), cell(&sl["min_ms"]), cell(&sl["p50_ms"]), cell(&sl["p90_ms"]), cell(&sl["max_ms"])],
        ],
    );
    println!(
        "deliveries: {delivered} ({missing} missing), {deliveries_per_s:.0}/s; connecting took {connect_s:.1} s; setup {setup_s:.1} s"
    );
    println!(
        "server CPU from the first send to the last delivery: {} ms, {} µs per delivered frame",
        server_cpu_ns.map_or("-".into(), |ns| format!("{:.1}", ns as f64 / 1e6)),
        cpu_us_per_delivery.map_or("-".into(), |us| format!("{us:.2}")),
    );
    println!(
        "server RSS: {} KiB before connecting, {} KiB connected and idle, {} KiB after the run → {} per idle authenticated connection; kernel TCP memory {} per connection",
        rss_before.map_or("-".into(), |v| v.to_string()),
        rss_connected.map_or("-".into(), |v| v.to_string()),
        rss_after.map_or("-".into(), |v| v.to_string()),
        rss_per_conn.map_or("-".into(), |v| format!("{:.0} B ({:.2} KiB)", v, v / 1024.0)),
        kernel_per_conn.map_or("-".into(), |v| format!("{v:.0} B")),
    );
    let last_max = sl["max_ms"].as_f64();
    let met_latency = last_max.is_some_and(|l| l <= 150.0) && missing == 0;
    let met_memory = rss_per_conn.is_some_and(|b| b <= 8.0 * 1024.0);
    println!(
        "targets: last delivery ≤ 150 ms after ack ({}), ≤ 8 KiB server memory per idle connection ({}).",
        if met_latency { "met" } else { "MISSED" },
        if met_memory { "met" } else { "MISSED" }
    );
    if !errors.is_empty() {
        println!("errors: {} (first: {})", errors.len(), errors[0]);
    }
    let mut params = cmd.common.params();
    params["fanout"] = json!({
        "members": members, "connected": connected, "rate": cmd.rate, "messages": cmd.messages,
        "body_bytes": cmd.body_bytes, "source_ips": ips, "connect_in_flight": cmd.connect_in_flight,
        "connected_requested": cmd.connected, "limited_by": limited,
    });
    let results = json!({
        "after_ack_first": sf, "after_ack_median": sm, "after_ack_last": sl,
        "delivery_from_due": latency_json(&from_due),
        "delivered": delivered, "missing": missing, "deliveries_per_s": deliveries_per_s,
        "server_cpu_ms": server_cpu_ns.map(|ns| ns as f64 / 1e6),
        "server_cpu_us_per_delivery": cpu_us_per_delivery,
        "server_rss_kib": {"before": rss_before, "connected_idle": rss_connected, "after_run": rss_after},
        "server_rss_bytes_per_idle_connection": rss_per_conn,
        "kernel_tcp_bytes_per_connection": kernel_per_conn,
        "connect_s": connect_s, "setup_s": setup_s,
        "errors": errors.len(), "first_error": errors.first(),
        "per_message": per_message,
        "target_met": met_latency && met_memory,
    });
    report::emit(
        cmd.common.json,
        &report::envelope("fanout", machine, params, results),
    );
    Ok(())
}

/// Per-message delivery spread after the ack, over all receivers.
struct Spread {
    first: Vec<f64>,
    median: Vec<f64>,
    last: Vec<f64>,
    from_due: hdrhistogram::Histogram<u64>,
    delivered: usize,
    missing: usize,
    deliveries_per_s: f64,
    per_message: Vec<Value>,
}

/// Sorts each message's arrivals and measures them against its ack.
fn spread(arrivals: &mut [Vec<u64>], acks: &[(u64, Option<u64>)], receivers_seen: usize) -> Spread {
    let mut first = Vec::new();
    let mut median = Vec::new();
    let mut last = Vec::new();
    let mut from_due = histogram();
    let mut delivered = 0usize;
    let mut missing = 0usize;
    let mut span_start = u64::MAX;
    let mut span_end = 0u64;
    let mut per_message = Vec::new();
    for (k, a) in arrivals.iter_mut().enumerate() {
        a.sort_unstable();
        delivered += a.len();
        missing += receivers_seen.saturating_sub(a.len());
        let Some(&(due, Some(ack))) = acks.get(k) else {
            continue;
        };
        let (Some(&f), Some(&l)) = (a.first(), a.last()) else {
            continue;
        };
        let m = a[a.len() / 2];
        let rel = |x: u64| (x as f64 - ack as f64) / 1e6;
        first.push(rel(f));
        median.push(rel(m));
        last.push(rel(l));
        for &x in a.iter() {
            record_ns(&mut from_due, x.saturating_sub(due));
        }
        span_start = span_start.min(due);
        span_end = span_end.max(l);
        per_message.push(json!({"k": k, "ack_ms_after_due": (ack - due) as f64 / 1e6, "first_ms": rel(f), "median_ms": rel(m), "last_ms": rel(l), "delivered": a.len()}));
    }
    let deliveries_per_s = if span_end > span_start {
        delivered as f64 / ((span_end - span_start) as f64 / 1e9)
    } else {
        0.0
    };
    Spread {
        first,
        median,
        last,
        from_due,
        delivered,
        missing,
        deliveries_per_s,
        per_message,
    }
}

fn mine_len(seen: &Rc<RefCell<Seen>>) -> usize {
    seen.borrow().receivers
}

/// The sender: posts `messages` at `rate`, each stamped with its index and
/// due time; returns `(due, ack)` per message.
pub(crate) async fn post(
    mut sender: Session,
    channel: ConversationId,
    cmd: &Cmd,
    timer: &PreciseTimer,
) -> anyhow::Result<Vec<(u64, Option<u64>)>> {
    let start = now_ns() + 10_000_000;
    let interval = 1e9 / cmd.rate.max(1e-3);
    let mut acks: Vec<(u64, Option<u64>)> = Vec::with_capacity(cmd.messages);
    let mut by_req: HashMap<u32, usize> = HashMap::new();
    let conn = sender.conn.clone();
    let reader = Rc::new(RefCell::new(Vec::<(u32, u64, bool)>::new()));
    let reader_task = {
        let reader = reader.clone();
        let mut r = std::mem::take(&mut sender.reader);
        let conn = conn.clone();
        tokio::task::spawn_local(async move {
            loop {
                let mut got = Vec::new();
                if conn
                    .read(&mut r, |bytes| {
                        if let Ok(ServerFrame::Reply { req, result }) = decode_server(bytes) {
                            got.push((
                                req,
                                now_ns(),
                                matches!(result, Ok(Response::SendAck { .. })),
                            ));
                        }
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                reader.borrow_mut().extend(got);
            }
        })
    };
    for k in 0..cmd.messages {
        let due = start + (k as f64 * interval) as u64;
        timer.sleep_until(due).await?;
        let req = sender.next_req();
        by_req.insert(req, k);
        acks.push((due, None));
        conn.send(&encode(
            req,
            Request::Send {
                conversation: channel,
                client_msg_id: crate::payload::client_msg_id(),
                body: crate::payload::stamped(k as u32, due, cmd.body_bytes),
                mentions: Vec::new(),
                broadcast: Broadcast::None,
            },
        ))
        .await?;
    }
    let until = now_ns() + DRAIN_SECS * 1_000_000_000;
    loop {
        for (req, at, ok) in reader.borrow_mut().drain(..) {
            if let (Some(&k), true) = (by_req.get(&req), ok) {
                acks[k].1 = Some(at);
            }
        }
        if acks.iter().all(|a| a.1.is_some()) || now_ns() > until {
            break;
        }
        timer.sleep_until(now_ns() + 1_000_000).await?;
    }
    reader_task.abort();
    conn.close().await;
    Ok(acks)
}

/// A member's connection: records the arrival time of each posted message.
async fn receive(mut session: Session, me: UserId, seen: Rc<RefCell<Seen>>) {
    loop {
        let read = session
            .conn
            .read(&mut session.reader, |bytes| {
                if let Ok(ServerFrame::Event(Event::Message(m))) = decode_server(bytes) {
                    if m.sender != me {
                        if let Some((k, _)) = crate::payload::parse_stamp(&m.body) {
                            let now = now_ns();
                            if let Some(v) = seen.borrow_mut().arrivals.get_mut(k as usize) {
                                v.push(now);
                            }
                        }
                    }
                }
            })
            .await;
        if let Err(e) = read {
            let mut s = seen.borrow_mut();
            if s.errors.len() < 100 {
                s.errors.push(format!("member connection: {e}"));
            }
            return;
        }
    }
}
