//! `courier-bench fanout --cluster N`: the fanout scenario (one channel of
//! M members, L of them connected, a sender posting at a fixed rate)
//! against an N-node replicated cluster from the test kit, with the
//! connected members spread over every node (clients on any node: each
//! node's edges hold its sockets) and over several load-generator
//! *processes* (`loader.rs`, this binary re-run as the hidden
//! `fanout-loader`), so that neither a node nor a load generator needs
//! more open files than one process may hold here (20,000).
//!
//! Flow: start the cluster and wait for its primary; check that every
//! node welcomes a session (a node that does not — e.g. one outside the
//! voters — fails the run, with its log); create the users and the
//! channel through the primary (timed: "setup"); start the loaders, hand
//! each its members' credentials, wait until all are welcomed
//! ("connect"); let the cluster settle and read every node's memory, open
//! files and CPU while idle; the sender (this process, on the primary) posts M messages
//! at `--rate`, each stamped with its index and due time; wait until every
//! loader counted every delivery (or [`DRAIN_SECS`] after the last ack);
//! tell the loaders to stop and collect every arrival time
//! (`CLOCK_MONOTONIC` is one clock for every process on the machine).
//! Per message: first, median and last delivery after its ack; over all
//! deliveries, the latency from the intended send time.
//!
//! Failure contract: a loader that fails or exits, a node that refuses
//! sessions, a node that exits during the run (a primary that loses its
//! leadership exits on purpose), or a phase past its bound ends the run
//! with an error naming it and the node's log; dropping the loaders kills them (they also die with this process,
//! `PR_SET_PDEATHSIG`), dropping the cluster kills its daemons and etcd.
//!
//! Bounds: connect [`CONNECT_BASE_SECS`] + [`CONNECT_MS_PER_MEMBER`] per
//! receiver; the drain [`DRAIN_SECS`]; the loaders' final reports
//! [`FINISH_SECS`]; a loader's line at most [`LINE_BYTES_MAX`]; the
//! channel from the loaders' reader threads is unbounded in type but holds
//! at most one `delivered` line per loader per `loader::PROGRESS` plus the
//! final `messages + 2` lines of each.

use crate::clock::{now_ns, PreciseTimer};
use crate::fanout::Cmd;
use crate::loader::{self, Report, LOADER_CONNECTIONS_MAX};
use crate::report::{self, histogram, latency_json, record_ns};
use crate::server::{proc_cpu_ns, proc_rss_kib, Target};
use crate::{client::Session, pool, setup};
use anyhow::{anyhow, bail, Context};
use courier_core::api::{ConversationId, UserId};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Open files a node keeps besides its client sockets (WAL segments,
/// listeners, node links, etcd, the runtime's own descriptors).
pub const NODE_FDS_SPARE: u64 = 1_000;

/// Open files a loader keeps besides its members' sockets.
pub const LOADER_FDS_SPARE: u64 = 200;

/// Connect bound: this many seconds …
pub const CONNECT_BASE_SECS: u64 = 60;
/// … plus this many milliseconds per receiver.
pub const CONNECT_MS_PER_MEMBER: u64 = 6;

/// Seconds to wait for the last deliveries after the last ack.
pub const DRAIN_SECS: u64 = 15;

/// Seconds the loaders have to report after `stop`.
pub const FINISH_SECS: u64 = 120;

/// Longest line a loader may write (an `arrivals` line of
/// [`LOADER_CONNECTIONS_MAX`] members is ≈ 20 bytes each).
pub const LINE_BYTES_MAX: usize = 4 << 20;

/// Time a node has to welcome a session once the primary serves.
const NODE_WELCOME: Duration = Duration::from_secs(30);

/// Who connects where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Members of the channel (the sender included).
    pub members: usize,
    /// Connected members other than the sender.
    pub receivers: usize,
    /// Cluster nodes.
    pub nodes: usize,
    /// Voters.
    pub replication_factor: u8,
    /// Load-generator processes.
    pub loaders: usize,
    /// Most client sockets on one node (the sender included).
    pub per_node_max: usize,
    /// Most members of one loader.
    pub per_loader_max: usize,
}

impl Plan {
    /// Checks the run against the per-process open-file limit `nofile`
    /// (every node and loader is one process); an error says what fits.
    pub fn new(
        members: usize,
        connected: usize,
        nodes: usize,
        replication_factor: Option<u8>,
        loaders: Option<usize>,
        nofile: u64,
    ) -> Result<Plan, String> {
        let members = members.max(2);
        let receivers = connected.clamp(2, members) - 1;
        let rf = replication_factor.unwrap_or(nodes.min(3) as u8);
        if nodes == 0 || usize::from(rf) > nodes || rf == 0 {
            return Err(format!("{nodes} nodes with replication factor {rf}"));
        }
        let per_node_max = receivers.div_ceil(nodes) + 1;
        if per_node_max as u64 + NODE_FDS_SPARE > nofile {
            let fit = (nofile.saturating_sub(NODE_FDS_SPARE + 1)) as usize * nodes;
            let need =
                (receivers as u64).div_ceil(nofile.saturating_sub(NODE_FDS_SPARE + 1).max(1));
            return Err(format!(
                "{receivers} receivers over {nodes} nodes is {per_node_max} sockets per node, + \
                 {NODE_FDS_SPARE} of its own files > the open-file limit {nofile}: use at least \
                 {need} nodes, or --connected ≤ {}",
                fit + 1
            ));
        }
        let fits = (nofile.saturating_sub(LOADER_FDS_SPARE) as usize).min(LOADER_CONNECTIONS_MAX);
        let loaders = loaders
            .unwrap_or_else(|| nodes.max(receivers.div_ceil(fits.max(1))))
            .clamp(1, receivers);
        let per_loader_max = receivers.div_ceil(loaders);
        if per_loader_max > fits {
            return Err(format!(
                "{receivers} receivers over {loaders} loaders is {per_loader_max} each, more than \
                 {fits}: use --loaders {}",
                receivers.div_ceil(fits.max(1))
            ));
        }
        Ok(Plan {
            members,
            receivers,
            nodes,
            replication_factor: rf,
            loaders,
            per_node_max,
            per_loader_max,
        })
    }
}

/// One load-generator process.
struct Loader {
    child: Child,
    stdin: Option<ChildStdin>,
    /// It reported `done`.
    done: bool,
}

/// The running loaders; dropping them kills them.
struct Loaders {
    list: Vec<Loader>,
    /// (loader, its next line: None at end of output).
    rx: Receiver<(usize, Option<Result<Report, String>>)>,
}

impl Drop for Loaders {
    fn drop(&mut self) {
        for l in &mut self.list {
            let _ = l.child.kill();
            let _ = l.child.wait();
        }
    }
}

fn spawn_loader(
    i: usize,
    first: usize,
    cmd: &Cmd,
    plan: &Plan,
    nodes: &[SocketAddr],
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding this binary to start a loader")?;
    let list = nodes
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new(exe);
    command
        .arg("fanout-loader")
        .args(["--nodes", &list])
        .args(["--index", &i.to_string(), "--first", &first.to_string()])
        .args(["--messages", &cmd.messages.to_string()])
        .args(["--source-ips", &source_ips(cmd, plan).to_string()])
        .args(["--connect-in-flight", &cmd.connect_in_flight.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: getpriority has no preconditions (errno is not read: a
    // failure only leaves the niceness as it is).
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } + cmd.loader_nice.clamp(0, 19);
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs between fork and exec and only makes
        // system calls (prctl, setpriority) on the child itself; it
        // allocates nothing and touches no parent memory but a copied int.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::setpriority(libc::PRIO_PROCESS, 0, nice.min(19));
                Ok(())
            });
        }
    }
    command
        .spawn()
        .with_context(|| format!("starting loader {i}"))
}

fn source_ips(cmd: &Cmd, plan: &Plan) -> usize {
    cmd.source_ips
        .unwrap_or(plan.receivers / 20_000 + 1)
        .clamp(1, 250)
}

impl Loaders {
    /// Starts every loader and hands it its members (receivers
    /// `share(receivers, loaders, i)`, i.e. users `1 + j`).
    fn start(
        cmd: &Cmd,
        plan: &Plan,
        nodes: &[SocketAddr],
        users: &[setup::User],
    ) -> anyhow::Result<Loaders> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut loaders = Loaders {
            list: Vec::new(),
            rx,
        };
        for i in 0..plan.loaders {
            let mine = pool::share(plan.receivers, plan.loaders, i);
            let mut child = spawn_loader(i, mine.start, cmd, plan, nodes)?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("loader {i}: no stdout"))?;
            let stdin = child.stdin.take();
            loaders.list.push(Loader {
                child,
                stdin,
                done: false,
            });
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("loader-{i}"))
                .spawn(move || read_lines(i, stdout, tx))?;
            let input = loaders.list[i]
                .stdin
                .as_mut()
                .ok_or_else(|| anyhow!("loader {i}: no stdin"))?;
            let mut out = std::io::BufWriter::new(input);
            for j in mine {
                let u = &users[1 + j];
                writeln!(out, "{}", credential_text(&u.credential)?)?;
            }
            writeln!(out, "go")?;
            out.flush()
                .with_context(|| format!("handing loader {i} its members"))?;
        }
        Ok(loaders)
    }

    /// The next line of any loader, by `until`; a failure, an early end or
    /// a bad line is an error.
    /// The end of a loader's output after its `done` is not an error.
    fn next(&mut self, until: Instant, what: &str) -> anyhow::Result<Option<(usize, Report)>> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            return match self.rx.recv_timeout(left) {
                Ok((i, Some(Ok(Report::Failed(e))))) => bail!("loader {i} failed: {e}"),
                Ok((i, Some(Ok(r)))) => {
                    self.list[i].done |= r == Report::Done;
                    Ok(Some((i, r)))
                }
                Ok((i, Some(Err(e)))) => bail!("loader {i}: {e}"),
                Ok((i, None)) if self.list[i].done => continue,
                Ok((i, None)) => {
                    let status = self.list[i].child.wait().map(|s| s.to_string());
                    bail!("loader {i} ended its output while {what} (exit: {status:?})")
                }
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Disconnected) => bail!("every loader is gone"),
            };
        }
    }

    /// Waits until every loader reported `connected`.
    fn connected(&mut self, bound: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + bound;
        let mut done = vec![false; self.list.len()];
        while !done.iter().all(|d| *d) {
            match self.next(until, "connecting")? {
                Some((i, Report::Connected(_))) => done[i] = true,
                Some(_) => {}
                None => bail!(
                    "loaders {:?} not connected within {bound:?}",
                    (0..done.len()).filter(|i| !done[*i]).collect::<Vec<_>>()
                ),
            }
        }
        Ok(())
    }

    /// Waits until the loaders counted `expected` deliveries, or `until`.
    fn drain(&mut self, expected: u64, until: Instant) -> anyhow::Result<u64> {
        let mut counts = vec![0u64; self.list.len()];
        while counts.iter().sum::<u64>() < expected {
            match self.next(until, "receiving")? {
                Some((i, Report::Delivered(n))) => counts[i] = n,
                Some(_) => {}
                None => break,
            }
        }
        Ok(counts.iter().sum())
    }

    /// Tells every loader to stop and collects its arrivals, errors and
    /// usage (into `m`).
    fn finish(&mut self, m: &mut Measured) -> anyhow::Result<()> {
        let messages = m.acks.len();
        for (i, l) in self.list.iter_mut().enumerate() {
            if let Some(mut input) = l.stdin.take() {
                writeln!(input, "stop").with_context(|| format!("stopping loader {i}"))?;
            }
        }
        let until = Instant::now() + Duration::from_secs(FINISH_SECS);
        m.arrivals = vec![Vec::new(); messages];
        m.loaders_end = vec![Value::Null; self.list.len()];
        let mut done = vec![false; self.list.len()];
        while !done.iter().all(|d| *d) {
            match self.next(until, "reporting")? {
                Some((_, Report::Arrivals(k, at))) if k < messages => m.arrivals[k].extend(at),
                Some((i, Report::Errors(n, e))) if n > 0 => {
                    m.errors += n;
                    m.first_errors.push(format!("loader {i}: {e}"));
                }
                Some((i, Report::Usage(cpu_ns, rss_kib))) => {
                    m.loaders_end[i] = json!({"cpu_ns": cpu_ns, "rss_kib": rss_kib});
                }
                Some((i, Report::Done)) => done[i] = true,
                Some(_) => {}
                None => bail!("loaders did not report within {FINISH_SECS} s of stop"),
            }
        }
        for (i, l) in self.list.iter_mut().enumerate() {
            let status = l.child.wait()?;
            anyhow::ensure!(status.success(), "loader {i} exited with {status}");
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.list.iter().map(|l| l.child.id()).collect()
    }
}

fn credential_text(c: &courier_core::api::Credential) -> anyhow::Result<String> {
    match c {
        courier_core::api::Credential::User {
            user,
            token,
            secret,
        } => Ok(courier_proto::token::format_user(*user, *token, secret)),
        courier_core::api::Credential::Admin(_) => bail!("a member with the admin credential"),
    }
}

/// Reads one loader's lines into the channel until its output ends.
fn read_lines(
    i: usize,
    stdout: std::process::ChildStdout,
    tx: std::sync::mpsc::Sender<(usize, Option<Result<Report, String>>)>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let read = Read::take(&mut reader, LINE_BYTES_MAX as u64).read_line(&mut line);
        let item = match read {
            Ok(0) | Err(_) => None,
            Ok(_) if !line.ends_with('\n') => {
                Some(Err(format!("a line longer than {LINE_BYTES_MAX} bytes")))
            }
            Ok(_) => Some(Report::parse(line.trim_end())),
        };
        let end = item.is_none();
        if tx.send((i, item)).is_err() || end {
            return;
        }
    }
}

/// Every node must welcome a session (an admin `Hello`) within
/// [`NODE_WELCOME`]; the error names the node and shows its log.
fn check_nodes_serve(target: &Target, nodes: &[(SocketAddr, Option<u32>)]) -> anyhow::Result<()> {
    for (i, (addr, _)) in nodes.iter().enumerate() {
        let until = Instant::now() + NODE_WELCOME;
        let admin = target.admin.clone();
        let addr = *addr;
        let outcome = pool::block_on(async move {
            loop {
                match Session::login(addr, None, &admin).await {
                    Ok(s) => {
                        s.conn.close().await;
                        return Ok(Ok(()));
                    }
                    Err(e) if Instant::now() > until => return Ok(Err(e)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })?;
        if let Err(e) = outcome {
            bail!(
                "node {} ({addr}) does not serve clients (after {NODE_WELCOME:?}: {e:#}).\nIts log:\n{}",
                i + 1,
                target.node_log_tail(i, 20)
            );
        }
    }
    Ok(())
}

/// Users and the channel, through the primary.
fn build_world(target: &Target, plan: &Plan) -> anyhow::Result<(Vec<setup::User>, ConversationId)> {
    let members = plan.members;
    pool::block_on(async {
        let start = now_ns();
        let (_, users) = setup::workspace_with_users(target, "bench-fanout", "u", members).await?;
        eprintln!(
            "fanout: {} users created in {:.1} s",
            users.len(),
            (now_ns() - start) as f64 / 1e9
        );
        let sender = setup::connect(target, &users[0].credential).await?;
        let channel = setup::channels(&sender, "fanout-", 1).await?[0];
        let pairs: Vec<(ConversationId, UserId)> =
            users[1..].iter().map(|u| (channel, u.id)).collect();
        setup::invite(&sender, &pairs).await?;
        sender.close().await;
        Ok((users, channel))
    })
}

/// Per node: RSS (KiB) and open files.
fn node_usage(pids: &[Option<u32>]) -> Vec<Value> {
    pids.iter()
        .map(|p| {
            let fds = p.and_then(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok().map(|d| d.count()));
            json!({"pid": p, "rss_kib": p.and_then(proc_rss_kib), "open_files": fds, "cpu_ns": p.and_then(proc_cpu_ns)})
        })
        .collect()
}

/// Runs the scenario (see the module docs).
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    let nofile = crate::server::raise_nofile(20_000)?;
    let plan = Plan::new(
        cmd.members,
        cmd.connected,
        cmd.cluster,
        cmd.replication_factor,
        cmd.loaders,
        nofile,
    )
    .map_err(|e| anyhow!("fanout --cluster: {e}"))?;
    anyhow::ensure!(
        cmd.messages <= loader::MESSAGES_MAX,
        "--messages {} > {}",
        cmd.messages,
        loader::MESSAGES_MAX
    );
    eprintln!("fanout: {plan:?}, open-file limit {nofile}");
    let started = now_ns();
    let mut target = Target::start_cluster_with(&cmd.common, plan.nodes, plan.replication_factor)?;
    let cluster_s = (now_ns() - started) as f64 / 1e9;
    let machine = report::machine(&cmd.common.data_root());
    report::print_machine(&machine);
    let nodes = target.cluster_nodes();
    check_nodes_serve(&target, &nodes)?;
    let setup_start = now_ns();
    let (users, channel) = build_world(&target, &plan).context("setup")?;
    let setup_s = (now_ns() - setup_start) as f64 / 1e9;
    eprintln!(
        "fanout: {} members ready in {setup_s:.1} s; starting {} loaders",
        plan.members, plan.loaders
    );
    let pids: Vec<Option<u32>> = nodes.iter().map(|n| n.1).collect();
    let before = node_usage(&pids);
    let measured = measure(cmd, &plan, &target, &users, channel);
    let exited = target.exited_nodes(30);
    if !exited.is_empty() {
        bail!(
            "{} of {} nodes exited during the run ({}):\n{}",
            exited.len(),
            plan.nodes,
            match &measured {
                Ok(_) => "its figures are discarded".to_owned(),
                Err(e) => format!("{e:#}"),
            },
            exited.join("\n")
        );
    }
    let measured = measured
        .with_context(|| format!("the {}-node cluster:\n{}", plan.nodes, target.log_tail()))?;
    let after = node_usage(&pids);
    let nodes_cpu = cpu_seconds(&measured.idle, &after);
    let loaders_cpu = cpu_seconds(&measured.loaders_idle, &measured.loaders_end);
    let usage = json!({
        "before_connecting": before, "connected_idle": measured.idle, "after_run": after,
        "loaders_connected_idle": measured.loaders_idle, "loaders_at_end": measured.loaders_end,
        "cpu_s_idle": {"nodes": measured.idle_cpu_s, "over_s": measured.settle_s},
        "cpu_s_from_idle_to_end": {
            "nodes": nodes_cpu, "loaders": loaders_cpu,
            "nodes_total": nodes_cpu.iter().flatten().sum::<f64>(),
            "loaders_total": loaders_cpu.iter().flatten().sum::<f64>(),
        },
    });
    summarize(
        cmd,
        &plan,
        &target,
        machine,
        measured,
        usage,
        [cluster_s, setup_s],
    );
    Ok(())
}

/// Per process, CPU seconds between two [`node_usage`]-style readings.
fn cpu_seconds(from: &[Value], to: &[Value]) -> Vec<Option<f64>> {
    from.iter()
        .zip(to)
        .map(|(a, b)| {
            let (a, b) = (a["cpu_ns"].as_u64()?, b["cpu_ns"].as_u64()?);
            Some(b.saturating_sub(a) as f64 / 1e9)
        })
        .collect()
}

/// What [`measure`] found.
struct Measured {
    acks: Vec<(u64, Option<u64>)>,
    arrivals: Vec<Vec<u64>>,
    errors: usize,
    first_errors: Vec<String>,
    connect_s: f64,
    idle: Vec<Value>,
    loaders_idle: Vec<Value>,
    /// Each loader's CPU time and RSS when it stopped.
    loaders_end: Vec<Value>,
    /// Each node's CPU seconds while every member was connected and
    /// nothing was sent (the settle time).
    idle_cpu_s: Vec<Option<f64>>,
    /// That settle time.
    settle_s: f64,
}

/// Connects the loaders, posts, drains and collects.
fn measure(
    cmd: &Cmd,
    plan: &Plan,
    target: &Target,
    users: &[setup::User],
    channel: ConversationId,
) -> anyhow::Result<Measured> {
    let nodes = target.cluster_nodes();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.0).collect();
    let connect_start = now_ns();
    let mut loaders = Loaders::start(cmd, plan, &addrs, users)?;
    let bound = Duration::from_secs(CONNECT_BASE_SECS)
        + Duration::from_millis(CONNECT_MS_PER_MEMBER * plan.receivers as u64);
    loaders.connected(bound)?;
    let connect_s = (now_ns() - connect_start) as f64 / 1e9;
    eprintln!(
        "fanout: {} receivers connected in {connect_s:.1} s",
        plan.receivers
    );
    let node_pids: Vec<Option<u32>> = nodes.iter().map(|n| n.1).collect();
    let connected = node_usage(&node_pids);
    let settle = Duration::from_secs_f64(cmd.settle_secs.max(0.0));
    std::thread::sleep(settle);
    let idle = node_usage(&node_pids);
    let idle_cpu = cpu_seconds(&connected, &idle);
    eprintln!(
        "fanout: nodes idle with every member connected: {:.3} cores over {settle:?}",
        idle_cpu.iter().flatten().sum::<f64>() / settle.as_secs_f64().max(1e-3)
    );
    let loaders_idle = node_usage(&loaders.pids().into_iter().map(Some).collect::<Vec<_>>());
    let sender_user = users[0].credential.clone();
    let primary = target.primary_index().map_or(0, |i| i + 1);
    let acks = pool::block_on(async {
        let sender = Session::login(target.addr, None, &sender_user).await?;
        let timer = PreciseTimer::new()?;
        crate::fanout::post(sender, channel, cmd, &timer).await
    })
    .with_context(|| {
        format!(
            "the sender, connected to the primary (node {primary}), while posting (a primary \
             that lost its leadership exits: see its log below)"
        )
    })?;
    let expected = (plan.receivers * cmd.messages) as u64;
    let counted = loaders.drain(expected, Instant::now() + Duration::from_secs(DRAIN_SECS))?;
    eprintln!("fanout: {counted} of {expected} deliveries counted; collecting");
    let mut m = Measured {
        acks,
        arrivals: Vec::new(),
        errors: 0,
        first_errors: Vec::new(),
        connect_s,
        idle,
        idle_cpu_s: idle_cpu,
        settle_s: settle.as_secs_f64(),
        loaders_idle,
        loaders_end: Vec::new(),
    };
    loaders.finish(&mut m)?;
    Ok(m)
}

/// min/p50/p90/p99/max of a small sample (nearest rank).
fn quantiles(v: &[f64]) -> Value {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
    };
    json!({"min_ms": q(0.0), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": q(1.0), "count": v.len()})
}

/// Per message first/median/last after the ack; every delivery after its
/// due time; counts.
fn delivery_stats(m: &Measured, receivers: usize) -> Value {
    let (mut first, mut median, mut last) = (Vec::new(), Vec::new(), Vec::new());
    let mut from_due = histogram();
    let (mut delivered, mut missing) = (0usize, 0usize);
    let mut per_message = Vec::new();
    for (k, a) in m.arrivals.iter().enumerate() {
        delivered += a.len();
        missing += receivers.saturating_sub(a.len());
        let mut a = a.clone();
        a.sort_unstable();
        let Some(&(due, Some(ack))) = m.acks.get(k) else {
            continue;
        };
        let (Some(&f), Some(&l)) = (a.first(), a.last()) else {
            continue;
        };
        let rel = |x: u64| (x as f64 - ack as f64) / 1e6;
        let md = a[a.len() / 2];
        first.push(rel(f));
        median.push(rel(md));
        last.push(rel(l));
        for &x in &a {
            record_ns(&mut from_due, x.saturating_sub(due));
        }
        per_message.push(json!({"k": k, "ack_ms_after_due": (ack - due) as f64 / 1e6, "first_ms": rel(f), "median_ms": rel(md), "last_ms": rel(l), "delivered": a.len()}));
    }
    json!({
        "after_ack_first": quantiles(&first), "after_ack_median": quantiles(&median),
        "after_ack_last": quantiles(&last), "delivery_from_due": latency_json(&from_due),
        "delivered": delivered, "missing": missing, "acked": m.acks.iter().filter(|a| a.1.is_some()).count(),
        "per_message": per_message,
    })
}

fn summarize(
    cmd: &Cmd,
    plan: &Plan,
    target: &Target,
    machine: Value,
    m: Measured,
    usage: Value,
    [cluster_s, setup_s]: [f64; 2],
) {
    let mut results = delivery_stats(&m, plan.receivers);
    let cell = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    let row = |name: &str, key: &str| {
        let s = &results[key];
        vec![
            name.to_owned(),
            cell(&s["min_ms"]),
            cell(&s["p50_ms"]),
            cell(&s["p90_ms"]),
            cell(&s["p99_ms"]),
            cell(&s["max_ms"]),
        ]
    };
    report::table(
        &format!(
            "fanout over a {}-node cluster (replication factor {}): {} members, {} connected over {} loaders, {} messages at {}/s; ms after the ack, per message",
            plan.nodes, plan.replication_factor, plan.members, plan.receivers + 1, plan.loaders, cmd.messages, cmd.rate
        ),
        &["delivery", "min", "p50", "p90", "p99", "max"],
        &[row("first", "after_ack_first"), row("median", "after_ack_median"), row("last", "after_ack_last")],
    );
    let rss: Vec<String> = usage["connected_idle"]
        .as_array()
        .map(|v| v.iter().map(|n| format!("{}", n["rss_kib"])).collect())
        .unwrap_or_default();
    println!(
        "deliveries: {} ({} missing, {} connection errors); cluster start {cluster_s:.1} s, setup {setup_s:.1} s, connecting {:.1} s; node RSS connected and idle (KiB, node 1…): {}",
        results["delivered"], results["missing"], m.errors, m.connect_s, rss.join(", ")
    );
    let cpu = &usage["cpu_s_from_idle_to_end"];
    println!(
        "CPU from connected to the end: nodes {:.1} s, loaders {:.1} s",
        cpu["nodes_total"].as_f64().unwrap_or(0.0),
        cpu["loaders_total"].as_f64().unwrap_or(0.0)
    );
    let last_p99 = results["after_ack_last"]["p99_ms"].as_f64();
    let met = last_p99.is_some_and(|l| l <= 150.0) && results["missing"] == 0;
    println!(
        "target: last delivery ≤ 150 ms after the ack at p99 ({})",
        if met { "met" } else { "MISSED" }
    );
    if let Some(e) = m.first_errors.first() {
        println!("errors: {} (first: {e})", m.errors);
    }
    let mut params = cmd.common.params();
    params["fanout"] = json!({
        "members": plan.members, "connected": plan.receivers + 1, "rate": cmd.rate, "messages": cmd.messages,
        "body_bytes": cmd.body_bytes, "source_ips": source_ips(cmd, plan), "connect_in_flight": cmd.connect_in_flight,
        "cluster_nodes": plan.nodes, "replication_factor": plan.replication_factor, "loaders": plan.loaders,
        "per_node_max": plan.per_node_max, "per_loader_max": plan.per_loader_max, "loader_nice": cmd.loader_nice,
        "primary_node": target.primary_index().map(|i| i + 1), "sender_on": "primary",
    });
    results["errors"] = json!(m.errors);
    results["first_errors"] = json!(m.first_errors);
    results["cluster_start_s"] = json!(cluster_s);
    results["setup_s"] = json!(setup_s);
    results["connect_s"] = json!(m.connect_s);
    results["nodes"] = usage;
    results["target_met"] = json!(met);
    report::emit(
        cmd.common.json,
        &report::envelope("fanout", machine, params, results),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hundred_thousand_fit_on_six_nodes_and_not_on_five() {
        let p = Plan::new(100_000, 100_000, 6, Some(6), None, 20_000).unwrap();
        assert_eq!(p.receivers, 99_999);
        assert_eq!(p.per_node_max, 16_668);
        assert_eq!(p.loaders, 6);
        assert_eq!(p.per_loader_max, 16_667);
        let e = Plan::new(100_000, 100_000, 5, Some(5), None, 20_000).unwrap_err();
        assert!(e.contains("use at least 6 nodes"), "{e}");
        assert!(e.contains("--connected ≤ 94996"), "{e}");
        assert!(Plan::new(94_996, 94_996, 5, Some(5), None, 20_000).is_ok());
    }

    #[test]
    fn loaders_are_added_until_each_fits_its_limit() {
        let p = Plan::new(100_000, 100_000, 7, Some(3), None, 20_000).unwrap();
        assert_eq!(p.loaders, 7);
        let p = Plan::new(60_000, 60_000, 2, Some(1), None, 40_000).unwrap();
        assert_eq!(p.loaders, 4, "19,000 per loader at most");
        assert!(Plan::new(60_000, 60_000, 2, Some(1), Some(2), 40_000).is_err());
        let small = Plan::new(50, 20, 3, None, None, 1_024).unwrap();
        assert_eq!(
            (small.receivers, small.loaders, small.replication_factor),
            (19, 3, 3)
        );
    }

    #[test]
    fn a_replication_factor_beyond_the_nodes_is_refused() {
        assert!(Plan::new(10, 10, 3, Some(5), None, 20_000).is_err());
        assert!(Plan::new(10, 10, 0, None, None, 20_000).is_err());
    }

    #[test]
    fn last_delivery_is_measured_from_each_ack() {
        let m = Measured {
            acks: vec![
                (1_000_000, Some(2_000_000)),
                (10_000_000, Some(11_000_000)),
                (20_000_000, None),
            ],
            arrivals: vec![
                vec![3_000_000, 1_500_000, 5_000_000],
                vec![12_000_000, 13_000_000],
                vec![21_000_000],
            ],
            errors: 0,
            first_errors: Vec::new(),
            connect_s: 0.0,
            idle: Vec::new(),
            loaders_idle: Vec::new(),
            loaders_end: Vec::new(),
            idle_cpu_s: Vec::new(),
            settle_s: 0.0,
        };
        let s = delivery_stats(&m, 3);
        assert_eq!(s["delivered"], 6);
        assert_eq!(s["missing"], 3);
        assert_eq!(
            s["after_ack_last"]["count"], 2,
            "the unacked message is not timed"
        );
        assert_eq!(s["after_ack_last"]["max_ms"], 3.0);
        assert_eq!(s["after_ack_first"]["min_ms"], -0.5);
        assert_eq!(s["per_message"][1]["last_ms"], 2.0);
    }
}
