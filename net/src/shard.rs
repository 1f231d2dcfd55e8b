//! One shard's runtime: the glue between a `courier-core` state machine, its
//! `courier-wal` log, the shard's sockets and the channels to other shards.
//!
//! Everything runs on one glommio executor. Inputs from every source (sockets,
//! peers, WAL completions, reads, ticks) go through [`ShardCtx::submit`],
//! which hands them to the core one at a time and carries out the effects it
//! returns, in order. Effects that need I/O (durability waits, WAL reads,
//! cross-shard sends) are handed to small long-lived tasks; their results come
//! back as new inputs. The runtime decides nothing the core decides.
//!
//! Persist, then deliver: the runtime never tells anyone about a record
//! itself. It appends what the core asks, reports durability back with
//! `Input::Durable`, and the core only then emits acks and deliveries.
//!
//! This file is the composition: the shard's state, the pump (inputs in,
//! effects out) and the start and stop order. The concerns live in
//! submodules: `journal` (WAL appends, staging, durability and snapshot
//! tasks, storage-failure policy, log truncation), `history` (the history
//! store: durable messages copied in, history reads served from it),
//! `boot` (open and replay at start),
//! `registry` (connections, outboxes, delivery accounting, rate-limiter
//! refcounts), `peers` (channels to the other shards) and `publish` (the
//! metrics mapping).

mod backup;
mod boot;
mod catchup;
mod edge;
mod history;
mod journal;
mod nonvoter;
mod peers;
mod publish;
mod registry;
pub(crate) mod replica;

/// The link form of peer messages between nodes (clients on any node).
pub use edge::{decode_peer, encode_peer, PeerFrameError, LINK_KIND_PEER};
pub use nonvoter::{HintError, LeaderHint, LINK_KIND_LEADER_HINT};
/// Exit codes of a replica that stops the process (docs/CLUSTER.md).
pub use replica::{EXIT_DEMOTED, EXIT_DIVERGED};

pub(crate) use backup::http_backup;
use journal::{
    durability_task, snapshot, snapshot_every_records, snapshot_in_background, staging_task,
};
pub(crate) use peers::connect_peers;
use peers::spawn_peer_tasks;

use crate::config::Config;
use crate::constants::{
    SHUTDOWN_CONNS_WAIT, SHUTDOWN_DURABLE_WAIT, SHUTDOWN_PEER_GRACE, SHUTDOWN_REPORT_WAIT,
    TICK_INTERVAL,
};
use crate::gateway::{self, close, Conn};
use crate::limits::{rate_limit, Limiter};
use crate::metrics::{Board, Counters, M};
use crate::push::PushLink;
use crate::sync::{with_timeout, Signal};
use courier_core::api::{
    CloseReason, ConnId, Effect, Input, Millis, PeerMsg, Response, ShardId, UserId, WorkspaceId,
};
use courier_core::Shard;
use courier_proto::Encoder;
use courier_wal::history::HistoryStore;
use courier_wal::Wal;
use hashbrown::HashMap;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What travels between the cores of a node.
pub struct Envelope {
    /// Sending shard (a state shard or, in cluster mode, an edge).
    pub from: ShardId,
    /// Receiving shard: the destination core's state shard or its edge.
    pub to: ShardId,
    /// Core message (owned data and `Arc`s only).
    pub msg: PeerMsg,
}

/// Which of a core's two state machines an input is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    /// The core's shard (in cluster mode: its group's replicated state).
    State,
    /// Cluster mode: the core's edge (connections only; `edge`).
    Edge,
}

/// Process-wide stop flag and exit code, set by signal handlers and by a
/// shard whose storage failed.
pub struct Stop {
    /// Shards stop accepting and drain when set.
    pub requested: AtomicBool,
    /// The process exit code once every shard has stopped.
    pub exit_code: AtomicI32,
    /// The first storage failure of any shard, so that `/healthz` reports
    /// it on every shard (a health check lands on whichever shard accepts
    /// its connection).
    pub storage_failure: OnceLock<String>,
    /// The backup every shard takes part in (`crate::backup`).
    pub backups: crate::backup::Backups,
}

impl Stop {
    /// A fresh flag.
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop {
            requested: AtomicBool::new(false),
            exit_code: AtomicI32::new(0),
            storage_failure: OnceLock::new(),
            backups: crate::backup::Backups::default(),
        })
    }

    /// Asks every shard to stop, with this exit code (the worst code wins).
    pub fn request(&self, code: i32) {
        self.exit_code.fetch_max(code, Ordering::SeqCst);
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Wall-clock milliseconds (time is an input to the core).
pub fn now_ms() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// State of one shard's runtime, shared by its tasks through an `Rc`.
pub struct ShardCtx {
    id: ShardId,
    config: Arc<Config>,
    mode: Arc<crate::cluster::Mode>,
    core: RefCell<Shard>,
    wal: Rc<Wal>,
    counters: RefCell<Counters>,
    board: Arc<Board>,
    stop: Arc<Stop>,
    conns: RefCell<HashMap<ConnId, Rc<Conn>>>,
    next_conn: Cell<u64>,
    /// Inputs waiting for their state machine, in order (handled one at
    /// a time by `drain_pending`).
    pending: RefCell<VecDeque<(Dest, Input)>>,
    pumping: Cell<bool>,
    encoder: RefCell<Encoder>,
    /// Per destination core: messages waiting for room on the channel.
    peer_out: Vec<RefCell<VecDeque<Envelope>>>,
    peer_wake: Vec<Signal>,
    /// Highest LSN appended / reported durable to the core.
    appended: Cell<u64>,
    durable_wake: Signal,
    /// Highest LSN the durability task has reported to the core; shutdown
    /// waits (on `reported_wake`) for it to reach what was appended.
    reported: Cell<u64>,
    reported_wake: Signal,
    /// Records the WAL had no room for yet, in LSN order.
    staged: RefCell<VecDeque<(courier_core::api::Lsn, u8, Vec<u8>)>>,
    staged_wake: Signal,
    storage_failed: RefCell<Option<String>>,
    snapshot_lsn: Cell<u64>,
    /// A snapshot is being taken (at most one at a time; `journal`).
    snapshot_busy: Cell<bool>,
    /// This shard's directory (`DATA/shard-K`: its WAL, snapshots and
    /// `history/`).
    dir: std::path::PathBuf,
    /// The history store (`history`): every durable message record.
    history: HistoryStore,
    /// Message records appended and not yet durable, in LSN order; moved
    /// into `history` by the durability task (bounded like `staged` and
    /// the WAL's queue: records in flight).
    history_queue: RefCell<VecDeque<history::QueuedMessage>>,
    /// Every message record with LSN ≤ this is staged in `history`.
    history_fed: Cell<u64>,
    /// Every message record with LSN ≤ this is durable in `history`.
    history_covered: Cell<u64>,
    /// Wakes the history task (something was fed).
    history_wake: Signal,
    /// Snapshots truncate the log behind them (single-node mode, and
    /// cluster mode unless [`catchup::KEEP_STATE_WAL_ENV`] is set: a
    /// follower behind the peers' truncated state WALs catches up from a
    /// snapshot, `catchup`).
    truncate_log: bool,
    outbox_total: Cell<usize>,
    /// Notified when the last connection is forgotten (shutdown waits on it).
    conns_empty: Signal,
    /// Request budgets of users with sessions here: (limiter, sessions).
    user_limits: RefCell<HashMap<UserId, (Rc<Limiter>, u32)>>,
    /// Request paces of workspaces with sessions here: (limiter, sessions).
    /// Bounded like the sessions themselves (one entry per workspace with
    /// a live session on this shard).
    workspace_limits: RefCell<HashMap<WorkspaceId, (Rc<Limiter>, u32)>>,
    /// The push delivery thread, when a gateway is configured.
    push: Option<PushLink>,
    /// The core was started: at once in single-node mode; in cluster mode
    /// once it leads its group on the primary (`replica`).
    started: Cell<bool>,
    /// Cluster mode: peer messages for the core before it started, at most
    /// [`replica::HELD_INPUTS_MAX`].
    held: RefCell<VecDeque<Input>>,
    /// Cluster mode: the replica runtime, once the voters are known.
    replica: std::cell::OnceCell<Rc<replica::Replica>>,
    /// Cluster mode: this core's edge (its client sessions), once the
    /// voters are known.
    edge: std::cell::OnceCell<Rc<edge::Edge>>,
}

impl ShardCtx {
    /// Hands one input to the core and carries out the effects: a
    /// connection's inputs to the shard holding its sessions (the edge in
    /// cluster mode), everything else to the core's shard. Peer messages
    /// come through `submit_peer`.
    pub fn submit(self: &Rc<Self>, input: Input) {
        let dest = match input {
            Input::Connected { .. }
            | Input::Hello { .. }
            | Input::Request { .. }
            | Input::Disconnected { .. }
                if self.edge.get().is_some() =>
            {
                Dest::Edge
            }
            _ => Dest::State,
        };
        self.pending.borrow_mut().push_back((dest, input));
        self.drain_pending();
    }

    /// Runs queued inputs through the core until none is left.
    fn drain_pending(self: &Rc<Self>) {
        if self.pumping.replace(true) {
            return; // the loop below, further up the stack, will take it
        }
        let mut effects = Vec::new();
        loop {
            let Some((dest, input)) = self.pending.borrow_mut().pop_front() else {
                break;
            };
            let from = match dest {
                Dest::Edge => {
                    let Some(edge) = self.edge.get() else {
                        continue;
                    };
                    edge.core.borrow_mut().handle(now_ms(), input, &mut effects);
                    edge.id
                }
                Dest::State if !self.started.get() => {
                    self.hold(input);
                    continue;
                }
                Dest::State => {
                    self.core.borrow_mut().handle(now_ms(), input, &mut effects);
                    self.id
                }
            };
            self.count(M::core_inputs_total, 1);
            for effect in effects.drain(..) {
                self.execute(effect, from);
            }
        }
        self.pumping.set(false);
        if let Some(r) = self.replica.get() {
            r.flush(self.id.0);
        }
    }

    /// Carries out one effect of the state machine `src` (this core's
    /// shard or its edge).
    fn execute(self: &Rc<Self>, effect: Effect, src: ShardId) {
        // An edge owns nothing: it never appends, reads history or pushes.
        let edge_only = matches!(
            effect,
            Effect::ToShard { .. }
                | Effect::Reply { .. }
                | Effect::Deliver { .. }
                | Effect::Close { .. }
        );
        assert!(
            src == self.id || edge_only,
            "an edge shard asked for {effect:?}"
        );
        match effect {
            Effect::Push { id, push } => {
                // The core bounds pushes in flight by the queue size, so a
                // refusal means the thread is gone: the core retries later.
                let refused = match &self.push {
                    Some(link) => link.send(id, push).err(),
                    None => Some(id),
                };
                if let Some(id) = refused {
                    let outcome = courier_core::api::PushOutcome::Retry;
                    self.pending
                        .borrow_mut()
                        .push_back((Dest::State, Input::PushResult { id, outcome }));
                }
            }
            Effect::Append { lsn, kind, payload } => match self.replica.get() {
                Some(r) => r.stage(lsn, kind, payload),
                None => self.append(lsn, kind, payload),
            },
            Effect::ToShard { shard, msg } => self.route_peer(src, shard, msg),
            Effect::Reply {
                conn,
                req,
                mut result,
            } => {
                if let Some(c) = self.conn(conn) {
                    if !self.answers_in_flight(&c, req) {
                        return; // answered already: the primary changed
                    }
                    if let Ok(Response::Welcome {
                        user,
                        workspace,
                        conn_rate,
                        user_rate,
                        ..
                    }) = &mut result
                    {
                        // The budgets the gateway enforces, for the client
                        // to pace itself by.
                        *conn_rate = rate_limit(self.config.rate_conn_per_sec);
                        if user.is_some() {
                            *user_rate = rate_limit(self.config.rate_user_per_sec);
                        }
                        c.authed.set(true);
                        if let Some(user) = *user {
                            self.session_started(&c, user, *workspace);
                        }
                    }
                    self.reply_now(&c, req, &result);
                }
            }
            Effect::Deliver { conns, event } => self.deliver(&conns, &event),
            Effect::Close { conn, reason } => {
                if let Some(c) = self.conn(conn) {
                    match reason {
                        CloseReason::Revoked => {
                            c.close(close::REVOKED, "token revoked or access removed")
                        }
                        CloseReason::Overloaded => {
                            c.close(close::TRY_AGAIN_LATER, "too many connections on this shard")
                        }
                        CloseReason::Unauthenticated => {
                            c.close(close::UNAUTHENTICATED, "authentication failed")
                        }
                    }
                }
            }
            Effect::ReadHistory {
                token,
                conversation,
                from,
                to,
            } => self.read_history(token, conversation, from, to),
        }
    }

    /// Adds to a counter.
    pub fn count(&self, m: M, n: u64) {
        self.counters.borrow_mut().add(m, n);
    }
    /// `/healthz` status and body: 503 as soon as any shard's storage
    /// failed, whichever shard answers.
    pub fn health(&self) -> (u16, String) {
        if let Some(failure) = self.stop.storage_failure.get() {
            return (503, format!("{failure}\n"));
        }
        if self.stop.is_requested() {
            return (503, "shutting down\n".into());
        }
        (200, "ok\n".into())
    }
    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.config.idle_timeout
    }

    /// Pre-auth deadline.
    pub fn preauth_timeout(&self) -> Duration {
        self.config.preauth_timeout
    }

    /// A message from `from` to `to`, both on this node: handled here if
    /// `to` is on this core, else sent on the channel to its core.
    fn local_peer(self: &Rc<Self>, from: ShardId, to: ShardId, msg: PeerMsg) {
        let cores = self.peer_out.len();
        let k = match self.edge.get() {
            Some(_) if usize::from(to.0) >= cores => (usize::from(to.0) - cores) % cores,
            _ => usize::from(to.0),
        };
        assert!(k < cores, "core addressed shard {} out of range", to.0);
        if k == usize::from(self.id.0) {
            match self.dest_of(to) {
                Some(dest) => {
                    self.state_shard_restarted(dest, from, &msg);
                    self.pending
                        .borrow_mut()
                        .push_back((dest, Input::Peer { from, msg }));
                }
                None => self.count(M::peer_link_dropped_total, 1),
            }
        } else {
            self.peer_out[k]
                .borrow_mut()
                .push_back(Envelope { from, to, msg });
            self.peer_wake[k].notify();
        }
    }

    /// The node's mode (cluster mode refuses client sessions; answers
    /// `GET /admin/cluster`).
    pub fn mode(&self) -> &crate::cluster::Mode {
        &self.mode
    }
}

/// Everything a shard needs to start, built on the main thread.
pub struct ShardSetup {
    /// This shard.
    pub id: ShardId,
    /// Shard count.
    pub shards: u16,
    /// Config.
    pub config: Arc<Config>,
    /// WAL directory.
    pub dir: std::path::PathBuf,
    /// sha256 of the admin secret.
    pub admin_token_hash: [u8; 32],
    /// The node's mode (single-node or cluster), shared by every shard.
    pub mode: Arc<crate::cluster::Mode>,
    /// This shard's ends of the channels to and from every other shard.
    pub peers: crate::server::PeerEnds,
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// Published metrics.
    pub board: Arc<Board>,
    /// Stop flag.
    pub stop: Arc<Stop>,
    /// Told once this shard serves (or failed to start).
    pub ready: std::sync::mpsc::Sender<Result<ShardId, String>>,
    /// Cluster mode: where this core's replica start comes from, and its
    /// raft WAL directory (None: single-node mode).
    pub replica: Option<ReplicaSetup>,
}

/// Cluster mode: what a core's replica runtime waits for.
pub struct ReplicaSetup {
    /// Sends this core its voters and links once known
    /// (`crate::cluster::replicas`).
    pub rx: std::sync::mpsc::Receiver<crate::cluster::replicas::ReplicaStart>,
    /// The core's raft WAL directory (`DATA/raft/shard-k`).
    pub dir: std::path::PathBuf,
}

/// Runs one shard until the daemon stops. Returns an error if it could not start.
pub async fn run(mut setup: ShardSetup) -> anyhow::Result<()> {
    let id = setup.id;
    let started = Instant::now();
    // First thing: a timer that wakes this executor every tick until the
    // tick task takes over, so no wait of the start (the channel connect
    // below, WAL I/O, blocking-pool calls) can sleep through a lost
    // cross-executor wake-up (see `server`, "No start step can sleep
    // through a peer").
    let serving = start_wakeups();
    tracing::info!(
        shard = id.0,
        "start: connecting the channels to the other shards"
    );
    let (senders, receivers) = connect_peers(std::mem::take(&mut setup.peers)).await;
    tracing::info!(
        shard = id.0,
        ms = started.elapsed().as_millis() as u64,
        "start: channels connected; opening the write-ahead log"
    );
    let mut booted = boot::open_and_replay(
        id,
        setup.shards,
        &setup.config,
        &setup.dir,
        setup.admin_token_hash,
        started,
    )
    .await?;
    let push = match &setup.config.push_url {
        Some(url) => Some(
            PushLink::spawn(id.0, url.clone(), setup.config.push_redact_preview)
                .map_err(|e| anyhow::anyhow!("shard {}: starting the push thread: {e}", id.0))?,
        ),
        None => None,
    };
    let replica = setup.replica.take();
    let history_full = booted.history_full.take();
    let ctx = new_ctx(&setup, booted, push, replica.is_none());
    match replica {
        // Cluster mode: the core starts once it leads its group on the
        // primary (`replica`); it follows the committed log until then.
        Some(r) => {
            glommio::spawn_local(replica::await_start(ctx.clone(), r.rx, r.dir)).detach();
        }
        None => {
            // Start the core before any peer message can reach it; what
            // start() sends waits in the peer queues until the sender
            // tasks run.
            let mut effects = Vec::new();
            ctx.core.borrow_mut().start(now_ms(), &mut effects);
            for effect in effects {
                ctx.execute(effect, id);
            }
            ctx.drain_pending(); // anything the start effects looped back
        }
    }
    if let Some(e) = history_full {
        // Read-only, as after an ENOSPC at run time (the core refuses
        // writes; in cluster mode the input waits with the held ones).
        ctx.storage_failed(&e, format!("history store failed: {e}"));
    }
    tracing::info!(
        shard = id.0,
        ms = started.elapsed().as_millis() as u64,
        "start: core started"
    );
    spawn_peer_tasks(&ctx, senders, receivers);
    glommio::spawn_local(durability_task(ctx.clone())).detach();
    glommio::spawn_local(staging_task(ctx.clone())).detach();
    glommio::spawn_local(history::history_task(ctx.clone())).detach();

    let listener = crate::listener::Listener::bind(setup.listen, false)
        .map_err(|e| anyhow::anyhow!("shard {}: binding {}: {e}", id.0, setup.listen))?;
    tracing::info!(
        shard = id.0,
        ms = started.elapsed().as_millis() as u64,
        addr = %setup.listen,
        "start: listening"
    );
    let _ = setup.ready.send(Ok(id));
    glommio::spawn_local(tick_task(ctx.clone())).detach();
    serving.set(true); // the tick task wakes the executor from now on

    accept_loop(&ctx, listener).await;
    shutdown(&ctx).await;
    replica::shutdown(&ctx).await;
    Ok(())
}

/// The shard's runtime state around a booted core (`started`: single-node
/// mode, where the caller starts the core at once).
fn new_ctx(
    setup: &ShardSetup,
    booted: boot::Booted,
    push: Option<PushLink>,
    started: bool,
) -> Rc<ShardCtx> {
    let shards = usize::from(setup.shards);
    Rc::new(ShardCtx {
        id: setup.id,
        config: setup.config.clone(),
        mode: setup.mode.clone(),
        core: RefCell::new(booted.core),
        wal: Rc::new(booted.wal),
        counters: RefCell::new(Counters::default()),
        board: setup.board.clone(),
        stop: setup.stop.clone(),
        conns: RefCell::new(HashMap::new()),
        next_conn: Cell::new(1),
        pending: RefCell::new(VecDeque::new()),
        pumping: Cell::new(false),
        encoder: RefCell::new(Encoder::new()),
        peer_out: (0..shards).map(|_| RefCell::new(VecDeque::new())).collect(),
        peer_wake: (0..shards).map(|_| Signal::default()).collect(),
        appended: Cell::new(booted.last_lsn),
        durable_wake: Signal::default(),
        reported: Cell::new(booted.last_lsn),
        reported_wake: Signal::default(),
        staged: RefCell::new(VecDeque::new()),
        staged_wake: Signal::default(),
        storage_failed: RefCell::new(None),
        snapshot_lsn: Cell::new(booted.snapshot_lsn),
        snapshot_busy: Cell::new(false),
        dir: setup.dir.clone(),
        history: booted.history,
        history_queue: RefCell::new(VecDeque::new()),
        history_fed: Cell::new(booted.last_lsn),
        history_covered: Cell::new(booted.last_lsn),
        history_wake: Signal::default(),
        truncate_log: started || !catchup::keep_state_wal(),
        outbox_total: Cell::new(0),
        conns_empty: Signal::default(),
        user_limits: RefCell::new(HashMap::new()),
        workspace_limits: RefCell::new(HashMap::new()),
        push,
        started: Cell::new(started),
        held: RefCell::new(VecDeque::new()),
        replica: std::cell::OnceCell::new(),
        edge: std::cell::OnceCell::new(),
    })
}

/// Accepts connections, each served by its own task, until a stop is
/// requested. The pending accept is awaited alone (`crate::listener`: a
/// re-polled accept leaks waker references in glommio); a task that only
/// sleeps closes the listener when the stop comes, which ends it.
async fn accept_loop(ctx: &Rc<ShardCtx>, listener: crate::listener::Listener) {
    let listener = Rc::new(listener);
    {
        let (ctx, listener) = (ctx.clone(), listener.clone());
        glommio::spawn_local(async move {
            while !ctx.stop.is_requested() {
                glommio::timer::sleep(TICK_INTERVAL).await;
            }
            listener.close();
        })
        .detach();
    }
    loop {
        let accepted = listener.accept().await;
        if ctx.stop.is_requested() {
            // A connection that came with the stop is closed (dropped).
            break;
        }
        match accepted {
            Ok(stream) => {
                glommio::spawn_local(gateway::serve(ctx.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Stop sequence: no new connections (done by the caller), let in-flight
/// commits finish and their acks go out, close every socket with 1001,
/// snapshot, close the WAL.
async fn shutdown(ctx: &Rc<ShardCtx>) {
    tracing::info!(shard = ctx.id.0, "stopping");
    // Give cross-shard requests already in flight a moment to land. The
    // one timed wait left: nothing tells this shard that no peer has a
    // request for it in flight (peers stop on their own schedule), and one
    // that lands later is refused without an ack (`closed_for_shutdown`).
    glommio::timer::sleep(SHUTDOWN_PEER_GRACE).await;
    let target = ctx.appended.get();
    if ctx.storage_failed.borrow().is_none() {
        let durable = with_timeout(
            SHUTDOWN_DURABLE_WAIT,
            ctx.wal.wait_durable(courier_wal::Lsn(target)),
        )
        .await;
        if durable.is_none() {
            tracing::warn!(
                shard = ctx.id.0,
                target,
                durable_lsn = ctx.wal.durable_lsn().0,
                "stopping: the WAL did not make every appended record durable in time; going on"
            );
        }
        // Let the durability task report it so acks are queued.
        wait_reported(ctx, target).await;
    }
    let conns: Vec<Rc<Conn>> = ctx.conns.borrow().values().cloned().collect();
    for c in &conns {
        c.close(close::GOING_AWAY, "server shutting down");
    }
    wait_conns_closed(ctx).await;
    if ctx.storage_failed.borrow().is_none() {
        snapshot(ctx).await;
    }
    if let Err(e) = ctx.wal.close().await {
        tracing::error!(shard = ctx.id.0, error = %e, "closing WAL");
        ctx.stop.request(1);
    }
    if ctx.storage_failed.borrow().is_none() {
        if let Err(e) = ctx.history.close().await {
            tracing::error!(shard = ctx.id.0, error = %e, "closing the history store");
            ctx.stop.request(1);
        }
    }
    ctx.publish();
    tracing::info!(shard = ctx.id.0, "stopped");
}

/// Waits until the durability task has reported `target` to the core (so
/// the acks for it are queued), storage failed, or [`SHUTDOWN_REPORT_WAIT`]
/// passed (logged).
async fn wait_reported(ctx: &ShardCtx, target: u64) {
    let deadline = Instant::now() + SHUTDOWN_REPORT_WAIT;
    while ctx.reported.get() < target && ctx.storage_failed.borrow().is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || with_timeout(left, ctx.reported_wake.wait()).await.is_none() {
            tracing::warn!(
                shard = ctx.id.0,
                target,
                reported = ctx.reported.get(),
                "stopping: durability not reported to the core in time; going on"
            );
            return;
        }
    }
}

/// Waits until every connection is forgotten (each one's reader and writer
/// ended) or [`SHUTDOWN_CONNS_WAIT`] passed (logged).
async fn wait_conns_closed(ctx: &ShardCtx) {
    let deadline = Instant::now() + SHUTDOWN_CONNS_WAIT;
    while !ctx.conns.borrow().is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || with_timeout(left, ctx.conns_empty.wait()).await.is_none() {
            tracing::warn!(
                shard = ctx.id.0,
                open = ctx.conns.borrow().len(),
                "stopping: connections still open at the deadline; going on"
            );
            return;
        }
    }
}

/// Keeps this executor waking at least every [`TICK_INTERVAL`] until the
/// returned flag is set (once the tick task runs, which does the same for
/// the shard's life).
///
/// glommio 0.9 can park an executor with a runnable task (it stops for
/// preemption before running anything, then parks without looking at its
/// task queues), so a wait on another executor (a shared channel's connect
/// or receive, the old mesh join) can stall until some unrelated event: on
/// a loaded 2-core machine about 1 in 130–400 such waits never ended
/// (measured with two bare executors; docs/RELIABILITY.md, "Fixed bugs").
/// An executor with a timer armed wakes at that timer, so with this no
/// wait of the start lasts more than a tick longer than its cause. Must be
/// spawned before the shard's first await.
pub(crate) fn start_wakeups() -> Rc<Cell<bool>> {
    let serving = Rc::new(Cell::new(false));
    let done = serving.clone();
    glommio::spawn_local(async move {
        while !done.get() {
            glommio::timer::sleep(TICK_INTERVAL).await;
        }
    })
    .detach();
    serving
}

/// Periodic work: time for the core, metrics, snapshots.
async fn tick_task(ctx: Rc<ShardCtx>) {
    loop {
        glommio::timer::sleep(TICK_INTERVAL).await;
        if let Some(link) = &ctx.push {
            for (id, outcome) in link.results() {
                ctx.submit(Input::PushResult { id, outcome });
            }
        }
        ctx.submit(Input::Tick);
        ctx.expire_leader();
        ctx.edge_tick();
        ctx.publish();
        if ctx.appended.get().saturating_sub(ctx.snapshot_lsn.get())
            >= snapshot_every_records(&ctx.config)
            && ctx.storage_failed.borrow().is_none()
        {
            snapshot_in_background(&ctx);
        }
        backup::take_part(&ctx);
    }
}
