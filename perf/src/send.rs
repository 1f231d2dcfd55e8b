//! `send`: closed-loop throughput of durable sends. K connections (one user
//! each) send to C conversations, each connection keeping W sends in flight;
//! every ack is a message fsync'ed in its owner shard's WAL.
//!
//! Back of the envelope (2 cores shared by server and load, ext4 on a
//! virtio disk): an fdatasync costs ≈ 85 µs and group commit amortises it
//! over every send that arrived meanwhile, so the disk allows ≈ 300K+
//! records/s (DESIGN.md: 64 × 4 KiB per fsync ≈ 320K/s). The binding limit
//! is CPU: a send costs the server a WebSocket frame in, a flatbuffers
//! verify, (for half the sends) a hop to the owner shard and back, an rkyv
//! record, an ack and one event frame out — ≈ 5–10 µs. With about one core
//! left for the server after the load generator takes its share, expect
//! ≈ 100–200K acked sends/s and ack latency ≈ one to two fsyncs (≈ 0.2 ms)
//! plus queueing: W·K in flight / throughput (1024 / 150K ≈ 7 ms at the
//! defaults). Redis with `appendfsync always` is single-threaded and does
//! one write+fsync per event-loop turn: the target is ≥ 3× its XADD rate.
//!
//! Members: user `i` is a member of conversation `i mod C` only, so each
//! message is delivered live to K/C connections (with K = C, only to the
//! sender's own connection — the echo every client gets for its own sends).

use crate::client::{encode, Session};
use crate::clock::{now_ns, PreciseTimer};
use crate::pool::{self, Phase};
use crate::report::{self, histogram, latency_json, latency_row, record_ns};
use crate::server::{usage, ClusterArgs, Common, Sample, Target};
use crate::setup;
use anyhow::Context;
use clap::Args;
use courier_core::api::{Broadcast, ConversationId, Request, Response};
use courier_proto::{decode_server, ServerFrame};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

/// Parameters of `send` (shared with the baselines).
#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// Connections (K), one user each.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Conversations (C); connection i sends to conversation i mod C.
    #[arg(long, default_value_t = 32)]
    pub conversations: usize,
    /// Sends in flight per connection (W).
    #[arg(long, default_value_t = 32)]
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
}

/// `courier-bench send`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    #[command(flatten)]
    pub send: SendArgs,
    /// Also run the same workload against these peers in this run: nats, redis.
    #[arg(long = "against", value_delimiter = ',')]
    pub against: Vec<crate::baseline::Peer>,
    /// Redis fsync policy for the baseline: always (equal durability) or everysec.
    #[arg(long, default_value = "always")]
    pub redis_fsync: crate::baseline::redis::Fsync,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub common: Common,
}

/// Per-thread (then merged) outcome of a closed-loop run.
pub struct LoadOutcome {
    /// Ack latency of sends acked inside the window.
    pub latency: Histogram<u64>,
    /// Acks inside the window.
    pub acks: u64,
    /// Rejected or failed requests.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl LoadOutcome {
    /// An empty outcome.
    pub fn new() -> LoadOutcome {
        LoadOutcome {
            latency: histogram(),
            acks: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Adds another thread's outcome.
    pub fn merge(&mut self, other: LoadOutcome) {
        let _ = self.latency.add(&other.latency);
        self.acks += other.acks;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Counts an error.
    pub fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

impl Default for LoadOutcome {
    fn default() -> Self {
        LoadOutcome::new()
    }
}

/// The measurement window shared by the load threads: set once, by the
/// first thread past the start rendezvous.
#[derive(Clone, Default)]
pub struct Window {
    start: Arc<OnceLock<u64>>,
}

impl Window {
    /// `(measure_from, measure_to)` in [`now_ns`] time.
    pub fn get(&self, warmup_secs: f64, secs: f64) -> (u64, u64) {
        let start = *self.start.get_or_init(now_ns);
        let from = start + (warmup_secs * 1e9) as u64;
        (from, from + (secs * 1e9) as u64)
    }
}

/// Samples the server at `from` and `to` on the current thread (thread 0).
/// The sampler task ends after the sample at `to`; a caller whose work may
/// end before `to` awaits the returned handle, or the runtime drops the task
/// with one sample taken and the step has no CPU figures.
pub fn sample_window(
    probe: crate::server::Probe,
    from: u64,
    to: u64,
    out: Arc<Mutex<Vec<Sample>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        let Ok(timer) = PreciseTimer::new() else {
            return;
        };
        for at in [from, to] {
            let _ = timer.sleep_until(at).await;
            let s = probe.sample();
            if let Ok(mut v) = out.lock() {
                v.push(s);
            }
        }
    })
}

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    crate::server::raise_nofile(65_536)?;
    let target = Target::start(&cmd.common)?;
    let machine = report::machine(
        &target
            .data_dir()
            .map_or_else(|| cmd.common.data_root(), |p| p.to_owned()),
    );
    report::print_machine(&machine);
    let courier = run_courier(&target, &cmd.send, &cmd.common)?;
    drop(target);
    let mut results = json!({ "courier": courier });
    let mut rows = vec![summary_row("courier", &results["courier"])];
    if cmd.cluster.cluster > 0 {
        let n = cmd.cluster.cluster;
        let target = Target::start_cluster(&cmd.common, n)?;
        let v = run_courier(&target, &cmd.send, &cmd.common)
            .with_context(|| format!("the {n}-node cluster:\n{}", target.log_tail()))?;
        drop(target);
        rows.push(summary_row(&format!("courier {n}-node cluster"), &v));
        results["ratio_cluster_over_single"] = json!(ratio(&v, &results["courier"], "acked_per_s"));
        results["courier_cluster"] = v;
    }
    for peer in &cmd.against {
        match crate::baseline::send(*peer, &cmd.send, &cmd.common, cmd.redis_fsync)? {
            Some(v) => {
                let ratio = ratio(&results["courier"], &v, "acked_per_s");
                rows.push(summary_row(&peer.label(cmd.redis_fsync), &v));
                results[peer.key()] = v;
                results[format!("ratio_courier_over_{}", peer.key())] = json!(ratio);
            }
            None => {
                results[peer.key()] = json!({"skipped": peer.missing_reason()});
                println!(
                    "baseline {}: skipped ({})",
                    peer.key(),
                    peer.missing_reason()
                );
            }
        }
    }
    report::table(
        &format!(
            "send: K={} connections, C={} conversations, W={} in flight each, {} B bodies, {} s measured",
            cmd.send.connections, cmd.send.conversations, cmd.send.window, cmd.send.body_bytes, cmd.send.secs
        ),
        &["system", "acked/s", "p50 ms", "p90 ms", "p99 ms", "p999 ms", "max ms", "server cores", "µs/ack", "errors"],
        &rows,
    );
    if let Some(r) = results["ratio_cluster_over_single"].as_f64() {
        println!("ratio cluster/single node: {r:.2}× acked sends/s");
    }
    for peer in &cmd.against {
        if let Some(r) = results[format!("ratio_courier_over_{}", peer.key())].as_f64() {
            println!("ratio courier/{}: {r:.2}× acked sends/s", peer.key());
        }
    }
    let mut params = cmd.common.params();
    params["send"] = json!({
        "connections": cmd.send.connections, "conversations": cmd.send.conversations,
        "window": cmd.send.window, "body_bytes": cmd.send.body_bytes,
        "warmup_secs": cmd.send.warmup_secs, "secs": cmd.send.secs,
        "against": cmd.against.iter().map(|p| p.key()).collect::<Vec<_>>(),
        "redis_fsync": cmd.redis_fsync.to_string(),
        "cluster_nodes": cmd.cluster.cluster,
    });
    report::emit(
        cmd.common.json,
        &report::envelope("send", machine, params, results),
    );
    Ok(())
}

/// Courier/peer ratio of a throughput field.
pub fn ratio(courier: &Value, peer: &Value, field: &str) -> Option<f64> {
    let c = courier[field].as_f64()?;
    let p = peer[field].as_f64()?;
    (p > 0.0).then(|| c / p)
}

fn summary_row(label: &str, v: &Value) -> Vec<String> {
    let l = &v["ack_latency"];
    let f = |x: &Value| x.as_f64().map_or("-".to_owned(), |x| format!("{x:.3}"));
    vec![
        label.to_owned(),
        v["acked_per_s"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:.0}")),
        f(&l["p50_ms"]),
        f(&l["p90_ms"]),
        f(&l["p99_ms"]),
        f(&l["p999_ms"]),
        f(&l["max_ms"]),
        v["usage"]["server_cpu_cores"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:.2}")),
        v["server_cpu_us_per_send"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:.1}")),
        v["errors"].to_string(),
    ]
}

/// The Courier half of `send`.
pub fn run_courier(target: &Target, args: &SendArgs, common: &Common) -> anyhow::Result<Value> {
    run_courier_in(target, args, common, "bench-send")
}

/// [`run_courier`] in a new workspace named `workspace`.
fn run_courier_in(
    target: &Target,
    args: &SendArgs,
    common: &Common,
    workspace: &str,
) -> anyhow::Result<Value> {
    let setup_start = now_ns();
    let world = setup_world(target, args, workspace)?;
    let setup_s = (now_ns() - setup_start) as f64 / 1e9;
    let mut v = run_load(target, args, common, &world)?;
    v["setup_s"] = json!(setup_s);
    Ok(v)
}

/// The users and conversations of a `send` run: user `i` is a member of
/// conversation `i mod C`.
pub struct World {
    users: Vec<setup::User>,
    conversations: Vec<ConversationId>,
}

/// Creates the workspace `workspace` with K users and C channels (the soak
/// sets it up once and runs [`run_load`] on it round after round).
pub fn setup_world(target: &Target, args: &SendArgs, workspace: &str) -> anyhow::Result<World> {
    let k = args.connections.max(1);
    let c = args.conversations.clamp(1, k);
    let (users, conversations) = pool::block_on(async {
        let (_, users) = setup::workspace_with_users(target, workspace, "u", k).await?;
        // User i < C creates conversation i; the others are invited by the
        // creator of theirs.
        let mut conversations = Vec::with_capacity(c);
        let mut creators = Vec::with_capacity(c);
        for (i, user) in users.iter().take(c).enumerate() {
            let conn = setup::connect(target, &user.credential).await?;
            let id = setup::channels(&conn, &format!("send-{i}-"), 1).await?[0];
            conversations.push(id);
            creators.push(conn);
        }
        for (ci, creator) in creators.iter().enumerate() {
            let pairs: Vec<(ConversationId, _)> = (c..k)
                .filter(|i| i % c == ci)
                .map(|i| (conversations[ci], users[i].id))
                .collect();
            setup::invite(creator, &pairs).await?;
            creator.close().await;
        }
        Ok((users, conversations))
    })?;
    Ok(World {
        users,
        conversations,
    })
}

/// The closed-loop load of `send` on `world`, measured as [`run_courier`]
/// says (without `setup_s`).
pub fn run_load(
    target: &Target,
    args: &SendArgs,
    common: &Common,
    world: &World,
) -> anyhow::Result<Value> {
    let k = args.connections.max(1);
    let c = args.conversations.clamp(1, k);
    let (users, conversations) = (&world.users, &world.conversations);
    let threads = common.threads();
    let phase = Phase::new(threads);
    let window = Window::default();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let addr = target.addr;
    let probe = target.probe();
    let outcomes = pool::run(threads, |t| {
        let phase = phase.clone();
        let window = window.clone();
        let samples = samples.clone();
        let probe = probe.clone();
        async move {
            let mine = pool::share(k, threads, t);
            let mut sessions = Vec::with_capacity(mine.len());
            for i in mine.clone() {
                let s = Session::login(addr, None, &users[i].credential)
                    .await
                    .with_context(|| format!("connection {i}"))?;
                sessions.push((i, s));
            }
            phase.wait().await?;
            let (from, to) = window.get(args.warmup_secs, args.secs);
            if t == 0 {
                sample_window(probe, from, to, samples);
            }
            let outcome = Rc::new(RefCell::new(LoadOutcome::new()));
            let mut tasks = Vec::new();
            for (i, session) in sessions {
                let conversation = conversations[i % c];
                let outcome = outcome.clone();
                let body = crate::payload::filler(args.body_bytes);
                tasks.push(tokio::task::spawn_local(closed_loop(
                    session,
                    conversation,
                    body,
                    args.window,
                    from,
                    to,
                    outcome,
                )));
            }
            for task in tasks {
                task.await??;
            }
            phase.wait().await?;
            let out = Rc::try_unwrap(outcome)
                .map_err(|_| anyhow::anyhow!("outcome still shared"))?
                .into_inner();
            Ok(out)
        }
    })?;
    let mut total = LoadOutcome::new();
    for o in outcomes {
        total.merge(o);
    }
    let usage = window_usage(&samples);
    let acked_per_s = total.acks as f64 / args.secs;
    let server_cpu_us_per_send = usage["server_cpu_cores"]
        .as_f64()
        .map(|cores| cores * 1e6 / acked_per_s.max(1.0));
    let result = json!({
        "acked_per_s": acked_per_s,
        "acks": total.acks,
        "errors": total.errors,
        "first_error": total.first_error,
        "ack_latency": latency_json(&total.latency),
        "server_cpu_us_per_send": server_cpu_us_per_send,
        "usage": usage,
        "disk": target.wal_footprint(),
    });
    report::table(
        "courier send: ack latency",
        report::LATENCY_HEADER,
        &[latency_row("ack", &total.latency)],
    );
    Ok(result)
}

/// Server usage between the first two samples (Null without two).
fn window_usage(samples: &Mutex<Vec<Sample>>) -> Value {
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    match samples.as_slice() {
        [a, b, ..] => usage(a, b),
        _ => Value::Null,
    }
}

/// One connection's closed loop: keep `window` sends in flight until `to`,
/// record acks that arrive in `[from, to)`, then drain.
async fn closed_loop(
    mut session: Session,
    conversation: ConversationId,
    body: String,
    window: usize,
    from: u64,
    to: u64,
    outcome: Rc<RefCell<LoadOutcome>>,
) -> anyhow::Result<()> {
    let mut in_flight: HashMap<u32, u64> = HashMap::with_capacity(window * 2);
    let make = |session: &mut Session, in_flight: &mut HashMap<u32, u64>| {
        let req = session.next_req();
        let bytes = encode(
            req,
            Request::Send {
                conversation,
                client_msg_id: crate::payload::client_msg_id(),
                body: body.clone(),
                mentions: Vec::new(),
                broadcast: Broadcast::None,
            },
        );
        session.conn.queue(&bytes);
        in_flight.insert(req, now_ns());
    };
    for _ in 0..window {
        make(&mut session, &mut in_flight);
    }
    session.conn.flush().await?;
    let drain_deadline = to + 10_000_000_000;
    // Per task, merged at the end: a RefCell borrow must not live across
    // the read's await while other tasks of the thread run.
    let mut local = LoadOutcome::new();
    while !in_flight.is_empty() {
        let mut replies = 0usize;
        let read = {
            let outcome = &mut local;
            let in_flight = &mut in_flight;
            session
                .conn
                .read(&mut session.reader, |bytes| match decode_server(bytes) {
                    Ok(ServerFrame::Reply { req, result }) => {
                        let Some(sent) = in_flight.remove(&req) else {
                            return;
                        };
                        replies += 1;
                        let now = now_ns();
                        match result {
                            Ok(Response::SendAck { .. }) => {
                                if now >= from && now < to {
                                    outcome.acks += 1;
                                    record_ns(&mut outcome.latency, now - sent);
                                }
                            }
                            Ok(other) => outcome.error(format!("unexpected reply {other:?}")),
                            Err(reject) => outcome.error(format!("{reject:?}")),
                        }
                    }
                    Ok(ServerFrame::Event(_)) => {}
                    Err(e) => outcome.error(format!("undecodable frame: {e}")),
                })
                .await
        };
        read?;
        let now = now_ns();
        if now < to {
            for _ in 0..replies {
                make(&mut session, &mut in_flight);
            }
            session.conn.flush().await?;
        } else if now > drain_deadline {
            local.error(format!(
                "{} sends unacknowledged 10 s after the end",
                in_flight.len()
            ));
            break;
        }
    }
    outcome.borrow_mut().merge(local);
    session.conn.close().await;
    Ok(())
}
