//! `failover`: a 3-node replicated cluster (the test kit's
//! `courier_tools::testkit::cluster`: a private etcd and three cluster-mode
//! `courierd`s on loopback), a steady closed-loop send load through the
//! client library given every node (`ws://a/,ws://b/,ws://c/`: it fails over
//! to the node that serves), and the primary killed with `kill -9` N times
//! (bounded by [`KILLS_MAX`]); after each kill the node is restarted at
//! once, as its supervisor would.
//!
//! Measured per kill: the time from the kill to the first acknowledgement
//! on the new primary (the first ack on a connection opened after the
//! kill — a writer whose node was killed reconnects — or the first more
//! than 100 ms after the kill on a connection that survived it: with
//! clients on any node, a writer on a follower keeps its connection, and
//! its request in flight is answered `Unavailable` when the primary
//! changes and retried), and the acked sends/s in the window before the
//! kill and in the same window after that first ack.
//! Reported: every kill, p50/p99/max of kill → first ack, the mean before
//! and after rates.
//!
//! Data directories: `$COURIER_TEST_DIR` or the system temporary directory
//! (a disk file system: courierd writes with O_DIRECT).

use crate::clock::now_ns;
use crate::pool;
use crate::report::{self, histogram, latency_json, record_ns};
use crate::server::Target;
use crate::setup;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use courier_core::api::{ConversationId, Credential};
use courier_tools::testkit::cluster::{Cluster, ClusterOptions};
use courier_tools::{Client, ClientOptions, ConnectOptions, Outgoing};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most kills one run does.
pub const KILLS_MAX: usize = 50;

/// Most writers.
pub const WRITERS_MAX: usize = 1024;

/// Acknowledgements the log keeps (24 bytes each); later ones are counted
/// but not timed.
pub const ACK_LOG_MAX: usize = 2_000_000;

/// How long the first primary may take.
const FIRST_PRIMARY: Duration = Duration::from_secs(60);

/// `courier-bench failover`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// Primaries killed with kill -9, one after another (at most 50).
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Writers: one connection, one channel and one send in flight each.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Seconds of steady load before each kill; the rate after is measured
    /// over as long from the first ack on the new primary.
    #[arg(long, default_value_t = 3.0)]
    pub window_secs: f64,
    /// Message body bytes.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Shards (cores, one Raft group each) of every node.
    #[arg(long, default_value_t = 2)]
    pub shards: u16,
    /// Give up a failover (no ack on a new primary) after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub failover_secs_max: f64,
    /// courierd binary [default: next to this binary, else built with cargo].
    #[arg(long, env = "COURIERD_BIN")]
    pub courierd: Option<PathBuf>,
    /// Extra argument for every node (repeatable), e.g. --server-arg=--pin=true.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Print one JSON object with every figure as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// One acknowledgement: when, by which writer, on which of its connections.
#[derive(Clone, Copy, Debug)]
struct Ack {
    at_ns: u64,
    writer: u32,
    generation: u64,
}

/// What the writers share with the main thread.
#[derive(Default)]
struct Shared {
    /// At most [`ACK_LOG_MAX`] entries.
    acks: Mutex<Vec<Ack>>,
    acked: AtomicU64,
    gave_up: AtomicU64,
    /// At most one per writer: a writer stops at its first permanent error.
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn record(&self, ack: Ack) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = self.acks.lock() {
            if log.len() < ACK_LOG_MAX {
                log.push(ack);
            }
        }
    }

    fn snapshot(&self) -> Vec<Ack> {
        self.acks.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// One kill's figures.
#[derive(Clone, Debug)]
struct Kill {
    node: u32,
    first_ack_ns: u64,
    before_per_sec: f64,
    after_per_sec: f64,
    restart_ready_ns: u64,
}

/// Acks that arrive this soon after the kill may have left the dying
/// primary before it died (on the wire, or through a follower's edge);
/// later ones come from a new primary.
const RACING_ACK_NS: u64 = 100_000_000;

/// The first ack on a new primary after `kill_ns`: the first on a
/// connection a writer opened after the kill (a generation above its last
/// one before the kill: its node was the one killed), or the first more
/// than [`RACING_ACK_NS`] after the kill on a connection that survived it
/// (clients on any node: a writer on a follower keeps its connection).
fn first_ack_after(acks: &[Ack], kill_ns: u64, writers: usize) -> Option<u64> {
    let mut before = vec![0u64; writers];
    for a in acks.iter().filter(|a| a.at_ns <= kill_ns) {
        if let Some(g) = before.get_mut(a.writer as usize) {
            *g = (*g).max(a.generation);
        }
    }
    acks.iter()
        .filter(|a| a.at_ns > kill_ns)
        .filter(|a| {
            a.at_ns > kill_ns + RACING_ACK_NS
                || before
                    .get(a.writer as usize)
                    .is_some_and(|g| a.generation > *g)
        })
        .map(|a| a.at_ns)
        .min()
}

/// Acks per second in `[from, to)`.
fn rate(acks: &[Ack], from: u64, to: u64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let n = acks
        .iter()
        .filter(|a| a.at_ns >= from && a.at_ns < to)
        .count();
    n as f64 / ((to - from) as f64 / 1e9)
}

async fn write(
    writer: u32,
    mut client: Client,
    conversation: ConversationId,
    body: String,
    shared: Arc<Shared>,
) {
    let message = Outgoing::text(body);
    while !shared.stop.load(Ordering::SeqCst) {
        match client.send(conversation, &message).await {
            Ok(_) => shared.record(Ack {
                at_ns: now_ns(),
                writer,
                generation: client.generation(),
            }),
            Err(e) if e.is_transient() => {
                shared.gave_up.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if let Ok(mut errors) = shared.errors.lock() {
                    errors.push(format!("writer {writer}: {e}"));
                }
                return;
            }
        }
    }
}

/// Creates the writers' users and channels on the primary.
fn world(
    cluster: &Cluster,
    primary: usize,
    writers: usize,
) -> anyhow::Result<Vec<(Credential, ConversationId)>> {
    let admin = cluster.admin_credential()?;
    let target = Target::external(cluster.node(primary).process().addr(), admin);
    pool::block_on(async {
        let (_, users) =
            setup::workspace_with_users(&target, "bench-failover", "w", writers).await?;
        let mut out = Vec::with_capacity(users.len());
        for (i, user) in users.iter().enumerate() {
            let conn = setup::connect(&target, &user.credential).await?;
            let id = setup::channels(&conn, &format!("failover-{i}-"), 1).await?[0];
            conn.close().await;
            out.push((user.credential.clone(), id));
        }
        Ok(out)
    })
}

/// Waits until `probe` returns Some, polling every 5 ms, up to `within`.
fn wait_for<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = now_ns() + within.as_nanos() as u64;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if now_ns() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    if cmd.kills == 0 || cmd.kills > KILLS_MAX {
        bail!("--kills must be 1..={KILLS_MAX}");
    }
    if cmd.writers == 0 || cmd.writers > WRITERS_MAX {
        bail!("--writers must be 1..={WRITERS_MAX}");
    }
    let window = Duration::from_secs_f64(cmd.window_secs.max(0.1));
    let failover_max = Duration::from_secs_f64(cmd.failover_secs_max.max(1.0));
    let mut options = ClusterOptions {
        shards: cmd.shards,
        binary: cmd.courierd.clone(),
        die_with_parent: true,
        ..ClusterOptions::default()
    };
    options.args.extend(cmd.server_args.iter().cloned());
    options.env.push((
        "COURIER_LOG".to_owned(),
        std::env::var("COURIER_LOG").unwrap_or_else(|_| "warn".into()),
    ));
    let mut cluster = Cluster::start(options).context("starting the cluster")?;
    let machine = report::machine(cluster.dir());
    report::print_machine(&machine);
    let primary = cluster.wait_primary(FIRST_PRIMARY)?;
    let world = world(&cluster, primary, cmd.writers)?;
    let servers = cluster.servers();
    let shared = Arc::new(Shared::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let body = crate::payload::filler(cmd.body_bytes);
    let tasks: Vec<_> = world
        .iter()
        .enumerate()
        .map(|(i, (credential, conversation))| {
            let mut connect = ConnectOptions::new(servers.clone(), credential.clone());
            connect.connect_timeout = Duration::from_secs(2);
            connect.request_timeout = Duration::from_secs(5);
            let mut o = ClientOptions::new(connect);
            o.retry_deadline = Some(failover_max);
            rt.spawn(write(
                i as u32,
                Client::new(o),
                *conversation,
                body.clone(),
                shared.clone(),
            ))
        })
        .collect();
    if wait_for(FIRST_PRIMARY, || {
        (shared.acked.load(Ordering::Relaxed) > 0).then_some(())
    })
    .is_none()
    {
        bail!("no send was acknowledged within {FIRST_PRIMARY:?}");
    }
    let mut kills = Vec::with_capacity(cmd.kills);
    for k in 0..cmd.kills {
        std::thread::sleep(window);
        let kill = kill_once(&mut cluster, &shared, k, cmd.writers, window, failover_max)?;
        println!(
            "kill {k}: node {} → first ack on the new primary after {:.1} ms",
            kill.node,
            kill.first_ack_ns as f64 / 1e6
        );
        kills.push(kill);
    }
    shared.stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    });
    print_and_emit(cmd, machine, &kills, &shared);
    Ok(())
}

/// Kills the primary once (and restarts it), then waits for the first ack
/// on a new primary and one window after it; that kill's figures.
fn kill_once(
    cluster: &mut Cluster,
    shared: &Shared,
    k: usize,
    writers: usize,
    window: Duration,
    failover_max: Duration,
) -> anyhow::Result<Kill> {
    let victim = cluster.wait_primary(failover_max)?;
    let kill_ns = now_ns();
    cluster.kill9(victim);
    cluster
        .restart(victim)
        .with_context(|| format!("kill {k}: restarting node {}", victim + 1))?;
    let restart_ready_ns = cluster
        .node(victim)
        .process()
        .last_start()
        .map_or(0, |d| d.as_nanos() as u64);
    let first = wait_for(failover_max, || {
        first_ack_after(&shared.snapshot(), kill_ns, writers)
    })
    .ok_or_else(|| {
        anyhow!(
            "kill {k}: no ack on a new primary within {failover_max:?}; errors {:?}\n{}",
            shared.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            cluster.logs(20)
        )
    })?;
    std::thread::sleep(window.saturating_sub(Duration::from_nanos(now_ns().saturating_sub(first))));
    let acks = shared.snapshot();
    let w = window.as_nanos() as u64;
    Ok(Kill {
        node: victim as u32 + 1,
        first_ack_ns: first - kill_ns,
        before_per_sec: rate(&acks, kill_ns.saturating_sub(w), kill_ns),
        after_per_sec: rate(&acks, first, first + w),
        restart_ready_ns,
    })
}

fn print_and_emit(cmd: &Cmd, machine: serde_json::Value, kills: &[Kill], shared: &Shared) {
    let mut h = histogram();
    for k in kills {
        record_ns(&mut h, k.first_ack_ns);
    }
    let rows: Vec<Vec<String>> = kills
        .iter()
        .enumerate()
        .map(|(i, k)| {
            vec![
                i.to_string(),
                k.node.to_string(),
                format!("{:.1}", k.first_ack_ns as f64 / 1e6),
                format!("{:.0}", k.before_per_sec),
                format!("{:.0}", k.after_per_sec),
                format!("{:.0}", k.restart_ready_ns as f64 / 1e6),
            ]
        })
        .collect();
    report::table(
        "failover: kill -9 of the primary under load",
        &[
            "kill",
            "node",
            "kill→first ack ms",
            "acked/s before",
            "acked/s after",
            "restart→ready ms",
        ],
        &rows,
    );
    let mean = |f: fn(&Kill) -> f64| kills.iter().map(f).sum::<f64>() / kills.len().max(1) as f64;
    let (before, after) = (mean(|k| k.before_per_sec), mean(|k| k.after_per_sec));
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "\nkill → first ack on the new primary: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} kills; \
         acked/s before {before:.0}, after {after:.0} (mean of the {:.1} s windows); {} acked, {} sends gave up",
        q(0.5),
        q(0.99),
        h.max() as f64 / 1000.0,
        kills.len(),
        cmd.window_secs,
        shared.acked.load(Ordering::Relaxed),
        shared.gave_up.load(Ordering::Relaxed),
    );
    let errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    if !errors.is_empty() {
        println!("writers stopped by permanent errors: {errors:?}");
    }
    let results = json!({
        "kill_to_first_ack": latency_json(&h),
        "acked_per_sec_before": before,
        "acked_per_sec_after": after,
        "kills": kills.iter().map(|k| json!({
            "node": k.node,
            "kill_to_first_ack_ms": k.first_ack_ns as f64 / 1e6,
            "acked_per_sec_before": k.before_per_sec,
            "acked_per_sec_after": k.after_per_sec,
            "restart_to_ready_ms": k.restart_ready_ns as f64 / 1e6,
        })).collect::<Vec<_>>(),
        "acked": shared.acked.load(Ordering::Relaxed),
        "gave_up": shared.gave_up.load(Ordering::Relaxed),
        "writer_errors": errors,
    });
    let params = json!({
        "kills": cmd.kills,
        "writers": cmd.writers,
        "window_secs": cmd.window_secs,
        "body_bytes": cmd.body_bytes,
        "shards": cmd.shards,
        "server_args": cmd.server_args,
    });
    report::emit(
        cmd.json,
        &report::envelope("failover", machine, params, results),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(at_ns: u64, writer: u32, generation: u64) -> Ack {
        Ack {
            at_ns,
            writer,
            generation,
        }
    }

    #[test]
    fn the_first_ack_on_the_new_primary_is_on_a_new_connection() {
        // Writer 0 acked on connection 1 before the kill at t = 100 and
        // once more after it (an ack already on its way); writer 1 reconnects
        // at 130, writer 0 at 150.
        let acks = [
            ack(90, 0, 1),
            ack(95, 1, 1),
            ack(101, 0, 1),
            ack(150, 0, 2),
            ack(130, 1, 2),
        ];
        assert_eq!(first_ack_after(&acks, 100, 2), Some(130));
        assert_eq!(first_ack_after(&acks[..3], 100, 2), None);
        // A writer with no ack before the kill counts from its first.
        assert_eq!(first_ack_after(&[ack(120, 1, 1)], 100, 2), Some(120));
        // A connection that survived the kill (a writer on a follower):
        // its acks count once they cannot be racing the kill.
        let late = 100 + RACING_ACK_NS + 1;
        let survived = [ack(90, 0, 1), ack(150, 0, 1), ack(late, 0, 1)];
        assert_eq!(first_ack_after(&survived, 100, 1), Some(late));
    }

    #[test]
    fn rate_counts_acks_in_the_window_per_second() {
        let acks: Vec<Ack> = (0..10).map(|i| ack(i * 100_000_000, 0, 1)).collect();
        assert!((rate(&acks, 0, 1_000_000_000) - 10.0).abs() < 1e-9);
        assert!((rate(&acks, 500_000_000, 1_000_000_000) - 10.0).abs() < 1e-9);
        assert_eq!(rate(&acks, 5, 5), 0.0);
    }
}
