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

use crate::config::Config;
use crate::constants::{
    PACE_WAIT_MAX, PEER_QUEUE_HIGH_WATER, SNAPSHOT_EVERY_RECORDS, TICK_INTERVAL,
};
use crate::gateway::{self, close, Conn, Queued};
use crate::limits::{rate_limit, Limiter};
use crate::metrics::{Board, Counters, M};
use crate::push::PushLink;
use crate::sync::{with_timeout, Signal};
use bytes::Bytes;
use courier_core::api::{
    CloseReason, ConnId, Effect, Event, Input, Lsn, Millis, PeerMsg, RateLimit, Reject, ReqId,
    Response, ShardId, UserId, WorkspaceId,
};
use courier_core::{Shard, ShardConfig};
use courier_proto::Encoder;
use courier_wal::Wal;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};
use hashbrown::HashMap;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What travels between shards.
pub struct Envelope {
    /// Sending shard.
    pub from: ShardId,
    /// Core message (owned data and `Arc`s only).
    pub msg: PeerMsg,
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
}

impl Stop {
    /// A fresh flag.
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop {
            requested: AtomicBool::new(false),
            exit_code: AtomicI32::new(0),
            storage_failure: OnceLock::new(),
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
    core: RefCell<Shard>,
    wal: Rc<Wal>,
    counters: RefCell<Counters>,
    board: Arc<Board>,
    stop: Arc<Stop>,
    conns: RefCell<HashMap<ConnId, Rc<Conn>>>,
    next_conn: Cell<u64>,
    /// Inputs produced while the core is busy (self-addressed peer messages).
    pending: RefCell<VecDeque<Input>>,
    pumping: Cell<bool>,
    encoder: RefCell<Encoder>,
    /// Per destination shard: messages waiting for room on the channel.
    peer_out: Vec<RefCell<VecDeque<PeerMsg>>>,
    peer_wake: Vec<Signal>,
    /// Highest LSN appended / reported durable to the core.
    appended: Cell<u64>,
    durable_wake: Signal,
    /// Records the WAL had no room for yet, in LSN order.
    staged: RefCell<VecDeque<(Lsn, u8, Vec<u8>)>>,
    staged_wake: Signal,
    storage_failed: RefCell<Option<String>>,
    snapshot_lsn: Cell<u64>,
    outbox_total: Cell<usize>,
    /// Request budgets of users with sessions here: (limiter, sessions).
    user_limits: RefCell<HashMap<UserId, (Rc<Limiter>, u32)>>,
    /// Request paces of workspaces with sessions here: (limiter, sessions).
    /// Bounded like the sessions themselves (one entry per workspace with
    /// a live session on this shard).
    workspace_limits: RefCell<HashMap<WorkspaceId, (Rc<Limiter>, u32)>>,
    /// The push delivery thread, when a gateway is configured.
    push: Option<PushLink>,
}

impl ShardCtx {
    /// Hands one input to the core and carries out the effects.
    pub fn submit(self: &Rc<Self>, input: Input) {
        self.pending.borrow_mut().push_back(input);
        self.drain_pending();
    }

    /// Runs queued inputs through the core until none is left.
    fn drain_pending(self: &Rc<Self>) {
        if self.pumping.replace(true) {
            return; // the loop below, further up the stack, will take it
        }
        let mut effects = Vec::new();
        loop {
            let Some(input) = self.pending.borrow_mut().pop_front() else {
                break;
            };
            self.core.borrow_mut().handle(now_ms(), input, &mut effects);
            self.count(M::core_inputs_total, 1);
            for effect in effects.drain(..) {
                self.execute(effect);
            }
        }
        self.pumping.set(false);
    }

    fn execute(self: &Rc<Self>, effect: Effect) {
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
                        .push_back(Input::PushResult { id, outcome });
                }
            }
            Effect::Append { lsn, kind, payload } => self.append(lsn, kind, payload),
            Effect::ToShard { shard, msg } => {
                if shard == self.id {
                    self.pending
                        .borrow_mut()
                        .push_back(Input::Peer { from: self.id, msg });
                } else {
                    let k = usize::from(shard.0);
                    assert!(
                        k < self.peer_out.len(),
                        "core addressed shard {k} out of range"
                    );
                    self.peer_out[k].borrow_mut().push_back(msg);
                    self.peer_wake[k].notify();
                }
            }
            Effect::Reply {
                conn,
                req,
                mut result,
            } => {
                if let Some(c) = self.conn(conn) {
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
                            c.close(1013, "too many connections on this shard")
                        }
                        CloseReason::Unauthenticated => {
                            c.close(close::UNAUTHENTICATED, "authentication failed")
                        }
                    }
                }
            }
            Effect::ReadRecords { token, lsns } => {
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    let mut records = Vec::with_capacity(lsns.len());
                    for lsn in lsns {
                        match ctx.wal.read(courier_wal::Lsn(lsn.0)).await {
                            Ok((kind, payload)) => {
                                records.push((lsn, kind, Bytes::copy_from_slice(&payload)))
                            }
                            Err(e) => {
                                // A damaged or unreadable record: the core
                                // answers the request with what it got.
                                tracing::error!(shard = ctx.id.0, lsn = lsn.0, error = %e, "WAL read failed");
                                break;
                            }
                        }
                    }
                    ctx.count(M::wal_reads_total, records.len() as u64);
                    ctx.submit(Input::RecordsRead { token, records });
                })
                .detach();
            }
        }
    }

    /// Appends in the core's order. When the WAL queue is full the record
    /// waits in `staged` (and so does every later one, to keep LSNs in
    /// order) until the staging task finds room; client reads pause
    /// meanwhile (see `backpressure`), which bounds `staged`.
    fn append(self: &Rc<Self>, lsn: Lsn, kind: u8, payload: Vec<u8>) {
        if self.storage_failed.borrow().is_some() {
            // The core was told and refuses writes; anything it still asks
            // for is never acknowledged, which is the safe outcome.
            return;
        }
        #[cfg(feature = "failpoints")]
        if crate::failpoints::get().ack_before_fsync {
            // Broken on purpose: the core hears "durable" now, the record
            // reaches the WAL only after the staging task's delay.
            self.staged.borrow_mut().push_back((lsn, kind, payload));
            self.staged_wake.notify();
            self.submit(Input::Durable { lsn });
            return;
        }
        if !self.staged.borrow().is_empty() {
            self.staged.borrow_mut().push_back((lsn, kind, payload));
            return;
        }
        match self.wal.append(kind, &payload) {
            Ok(got) => self.appended_ok(lsn, got),
            Err(courier_wal::Error::Backpressure { .. }) => {
                self.staged.borrow_mut().push_back((lsn, kind, payload));
                self.staged_wake.notify();
            }
            Err(e) => self.storage_error(lsn, e),
        }
    }

    fn appended_ok(&self, want: Lsn, got: courier_wal::Lsn) {
        assert_eq!(got.0, want.0, "core and WAL disagree on LSN numbering");
        self.appended.set(want.0);
        self.count(M::wal_appends_total, 1);
        self.durable_wake.notify();
    }

    fn storage_error(self: &Rc<Self>, lsn: Lsn, e: courier_wal::Error) {
        if self.closed_for_shutdown(&e) {
            tracing::info!(
                shard = self.id.0,
                lsn = lsn.0,
                "write refused: WAL closed for shutdown"
            );
            return;
        }
        tracing::error!(shard = self.id.0, lsn = lsn.0, error = %e, "WAL append failed");
        self.storage_failed(&e, format!("WAL append failed: {e}"));
    }

    /// Shutdown closes the WAL after its snapshot, while a request that was
    /// still in flight (typically a peer shard's forwarded send or cursor
    /// advance: peers stop on their own schedule) may still ask for a write.
    /// That is not a storage failure: nothing is acknowledged for it (the
    /// client retries after the restart under the same idempotency key), the
    /// core is told to refuse further writes, and the exit code stays 0.
    fn closed_for_shutdown(self: &Rc<Self>, error: &courier_wal::Error) -> bool {
        if !(matches!(error, courier_wal::Error::Closed) && self.stop.is_requested()) {
            return false;
        }
        if self.storage_failed.borrow().is_none() {
            let reason = "shutting down".to_string();
            *self.storage_failed.borrow_mut() = Some(reason.clone());
            self.submit(Input::StorageFailed { reason });
        }
        true
    }

    /// Marks storage as failed for good: the core stops accepting writes,
    /// `/healthz` reports it, and the daemon exits non-zero after draining.
    ///
    /// A full disk (`ENOSPC`) keeps the daemon up: writes are refused, reads
    /// go on, and a restart after freeing space recovers. Any other storage
    /// error (EIO from fsync, …) stops the daemon with exit code 1: after a
    /// failed fsync the page cache may have dropped data, and only a restart
    /// that reads the log back is safe.
    fn storage_failed(self: &Rc<Self>, error: &courier_wal::Error, reason: String) {
        if self.closed_for_shutdown(error) {
            return;
        }
        #[cfg(feature = "failpoints")]
        crate::failpoints::get().on_storage_error(&reason);
        if self.storage_failed.borrow().is_some() {
            return;
        }
        *self.storage_failed.borrow_mut() = Some(reason.clone());
        let _ = self
            .stop
            .storage_failure
            .set(format!("storage failed on shard {}: {reason}", self.id.0));
        if !error.is_no_space() {
            self.stop.request(1);
        }
        self.submit(Input::StorageFailed { reason });
    }

    fn deliver(&self, conns: &[ConnId], event: &Arc<Event>) {
        let frame = Bytes::from(self.encoder.borrow_mut().event(event));
        self.count(M::events_encoded_total, 1);
        for id in conns {
            if let Some(c) = self.conn(*id) {
                self.queue(&c, frame.clone());
                self.count(M::deliveries_total, 1);
            }
        }
    }

    fn queue(&self, conn: &Conn, frame: Bytes) {
        let len = frame.len();
        match conn.push(frame) {
            Queued::Yes => {
                self.outbox_total.set(self.outbox_total.get() + len);
                self.count(M::frames_out_total, 1);
                self.count(M::bytes_out_total, len as u64);
            }
            Queued::CutOff => {
                self.count(M::slow_consumer_cutoffs_total, 1);
                tracing::info!(shard = self.id.0, conn = conn.id.0, "slow consumer cut off");
            }
            Queued::Closed => {}
        }
    }

    /// Encodes and queues a reply.
    pub fn reply_now(&self, conn: &Conn, req: ReqId, result: &Result<Response, Reject>) {
        let frame = Bytes::from(self.encoder.borrow_mut().reply(req, result));
        self.queue(conn, frame);
    }

    /// Answers an undecodable frame.
    pub fn bad_frame(&self, conn: &Conn, req: ReqId, message: &str) {
        let frame = Bytes::from(self.encoder.borrow_mut().bad_frame(req, message));
        self.queue(conn, frame);
    }

    /// A writer took `n` bytes out of its outbox.
    pub fn outbox_drained(&self, n: usize) {
        self.outbox_total
            .set(self.outbox_total.get().saturating_sub(n));
    }

    fn conn(&self, id: ConnId) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    /// Registers a new connection, or `None` at the per-shard limit.
    pub fn register_conn(self: &Rc<Self>) -> Option<Rc<Conn>> {
        if self.conns.borrow().len() >= self.config.connections_per_shard_max {
            self.count(M::connections_refused_total, 1);
            return None;
        }
        let local = self.next_conn.get();
        self.next_conn.set(local + 1);
        let conn = gateway::new_conn(
            ConnId::new(self.id, local),
            self.config.outbox_bytes_max,
            Limiter::new(self.config.rate_conn_per_sec),
        );
        self.conns.borrow_mut().insert(conn.id, conn.clone());
        self.count(M::connections_accepted_total, 1);
        self.submit(Input::Connected { conn: conn.id });
        Some(conn)
    }

    fn session_started(&self, conn: &Conn, user: UserId, workspace: Option<WorkspaceId>) {
        if conn.user.replace(Some(user)).is_some() {
            return; // a second Welcome on one connection changes nothing
        }
        if let Some(workspace) = workspace {
            conn.workspace.set(Some(workspace));
            let mut paces = self.workspace_limits.borrow_mut();
            if let Some(entry) = paces.get_mut(&workspace) {
                entry.1 += 1;
            } else if let Some(l) = Limiter::new(self.config.rate_workspace_per_sec) {
                paces.insert(workspace, (Rc::new(l), 1));
            }
        }
        let mut limits = self.user_limits.borrow_mut();
        if let Some(entry) = limits.get_mut(&user) {
            entry.1 += 1;
        } else if let Some(l) = Limiter::new(self.config.rate_user_per_sec) {
            limits.insert(user, (Rc::new(l), 1));
        }
    }

    /// Spends one request of the connection's and the user's budgets, or
    /// says how long to wait.
    pub fn rate_check(&self, conn: &Conn) -> Result<(), (u64, RateLimit)> {
        if let Some(l) = &conn.limiter {
            l.check().map_err(|wait| (wait, l.limit()))?;
        }
        if let Some(user) = conn.user.get() {
            let limiter = self.user_limits.borrow().get(&user).map(|e| e.0.clone());
            if let Some(l) = limiter {
                l.check().map_err(|wait| (wait, l.limit()))?;
            }
        }
        Ok(())
    }

    /// Waits until the connection's workspace may make one more request on
    /// this shard (per-workspace pacing: the reader stops reading, so the
    /// socket pushes back on a noisy tenant; other workspaces' connections
    /// are not touched). Returns at once for sessions without a workspace,
    /// with pacing off, or once the connection is closing.
    pub async fn workspace_pace(&self, conn: &Conn) {
        let Some(workspace) = conn.workspace.get() else {
            return;
        };
        let Some(limiter) = self
            .workspace_limits
            .borrow()
            .get(&workspace)
            .map(|e| e.0.clone())
        else {
            return;
        };
        let mut waited = false;
        while let Err(wait_ms) = limiter.check() {
            if conn.is_closing() {
                return;
            }
            if !waited {
                waited = true;
                self.count(M::workspace_paced_total, 1);
            }
            glommio::timer::sleep(Duration::from_millis(wait_ms).min(PACE_WAIT_MAX)).await;
        }
    }

    /// Forgets a connection and tells the core.
    pub fn unregister_conn(self: &Rc<Self>, conn: &Conn) {
        if let Some(workspace) = conn.workspace.take() {
            let mut paces = self.workspace_limits.borrow_mut();
            if let Some(entry) = paces.get_mut(&workspace) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    paces.remove(&workspace);
                }
            }
        }
        if let Some(user) = conn.user.take() {
            let mut limits = self.user_limits.borrow_mut();
            if let Some(entry) = limits.get_mut(&user) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    limits.remove(&user);
                }
            }
        }
        if self.conns.borrow_mut().remove(&conn.id).is_some() {
            self.outbox_drained(conn.queued_bytes());
            self.submit(Input::Disconnected { conn: conn.id });
        }
    }

    /// Adds to a counter.
    pub fn count(&self, m: M, n: u64) {
        self.counters.borrow_mut().add(m, n);
    }

    /// Waits while cross-shard queues are above their high-water mark, so a
    /// burst of client requests cannot grow them without bound.
    pub async fn backpressure(&self) {
        while self
            .peer_out
            .iter()
            .any(|q| q.borrow().len() >= PEER_QUEUE_HIGH_WATER)
        {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
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

    /// `/metrics` text for the whole node.
    pub fn render_metrics(&self) -> String {
        self.publish();
        self.board.render(&[])
    }

    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.config.idle_timeout
    }

    /// Pre-auth deadline.
    pub fn preauth_timeout(&self) -> Duration {
        self.config.preauth_timeout
    }

    fn publish(&self) {
        let mut c = self.counters.borrow_mut();
        c.set(M::connections_open, self.conns.borrow().len() as u64);
        c.set(M::outbox_bytes, self.outbox_total.get() as u64);
        c.set(
            M::peer_queue_depth,
            self.peer_out.iter().map(|q| q.borrow().len() as u64).sum(),
        );
        c.set(M::wal_durable_lsn, self.wal.durable_lsn().0);
        let w = self.wal.counters();
        c.set(M::wal_batches_total, w.batches);
        c.set(M::wal_batch_records_max, w.batch_records_max);
        c.set(M::wal_fsync_seconds_sum, w.fsync_ns_total);
        c.set(M::wal_fsync_seconds_max, w.fsync_ns_max);
        c.set(M::wal_queue_records, w.queue_records);
        c.set(M::wal_backpressure_total, w.backpressure_rejections);
        c.set(M::staged_records, self.staged.borrow().len() as u64);
        let core = self.core.borrow().metrics();
        c.set(M::core_messages_sequenced_total, core.messages_sequenced);
        c.set(M::core_sends_deduplicated_total, core.sends_deduplicated);
        c.set(M::core_rejects_total, core.rejects);
        c.set(M::core_fanout_messages_total, core.fanout_messages);
        c.set(M::core_sessions, core.sessions);
        c.set(M::notify_decided_total, core.notify_decided);
        c.set(M::notify_in_app_total, core.notify_in_app);
        let suppressed: u64 = core.notify_suppressed.iter().sum();
        c.set(M::notify_suppressed_total, suppressed);
        for (i, m) in [
            M::notify_suppressed_sender_total,
            M::notify_suppressed_read_total,
            M::notify_suppressed_level_total,
            M::notify_suppressed_muted_total,
            M::notify_suppressed_dnd_total,
            M::notify_suppressed_not_here_total,
            M::notify_suppressed_focused_total,
        ]
        .into_iter()
        .enumerate()
        {
            c.set(m, core.notify_suppressed[i]);
        }
        c.set(M::push_delayed_total, core.push_delayed);
        c.set(M::push_immediate_total, core.push_immediate);
        c.set(M::push_cancelled_total, core.push_cancelled);
        c.set(M::pushed_total, core.pushed);
        c.set(M::push_cleared_total, core.push_cleared);
        c.set(M::push_retried_total, core.push_retried);
        c.set(M::push_rejected_total, core.push_rejected);
        c.set(M::push_dropped_total, core.push_dropped);
        c.set(M::push_outbox_depth, core.outbox_depth);
        c.set(M::push_in_flight, core.push_in_flight);
        c.set(M::notify_all_subscribers, core.notify_all_subscribers);
        c.set(M::notify_all_capped_total, core.notify_all_capped);
        c.set(
            M::notify_handoffs_deferred_total,
            core.notify_handoffs_deferred,
        );
        c.set(
            M::notify_handoffs_redriven_total,
            core.notify_handoffs_redriven,
        );
        c.set(M::notify_handoffs_resent_total, core.notify_handoffs_resent);
        c.set(
            M::notify_handoffs_abandoned_total,
            core.notify_handoffs_abandoned,
        );
        self.board.publish(self.id.0, &c);
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
}

/// Runs one shard until the daemon stops. Returns an error if it could not start.
pub async fn run(setup: ShardSetup) -> anyhow::Result<()> {
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
    let (senders, receivers) = connect_peers(setup.peers).await;
    tracing::info!(
        shard = id.0,
        ms = started.elapsed().as_millis() as u64,
        "start: channels connected; opening the write-ahead log"
    );
    let mut options = courier_wal::WalOptions::recommended();
    options.segment_bytes = setup.config.segment_bytes;
    #[cfg(feature = "failpoints")]
    {
        options.faults = crate::failpoints::get().wal_faults();
    }
    let (wal, recovered) = Wal::open(&setup.dir, id.0, options).await.map_err(|e| {
        anyhow::anyhow!(
            "shard {}: opening WAL in {}: {e}",
            id.0,
            setup.dir.display()
        )
    })?;
    let open_ms = started.elapsed().as_millis() as u64;
    let stats = recovered.stats;
    tracing::info!(
        shard = id.0,
        ms = open_ms,
        snapshot_load_ms = stats.snapshot_load.as_millis() as u64,
        segment_scan_ms = stats.segment_scan.as_millis() as u64,
        segments = stats.segments,
        segments_scanned = stats.segments_scanned,
        segments_deferred = stats.segments_deferred,
        records_verified = stats.records_verified,
        "write-ahead log opened"
    );
    let mut entropy = [0u8; 32];
    getrandom::getrandom(&mut entropy)
        .map_err(|e| anyhow::anyhow!("shard {}: reading OS randomness: {e}", id.0))?;
    let core_config = || ShardConfig {
        shard: id,
        shard_count: setup.shards,
        admin_token_hash: setup.admin_token_hash,
        entropy,
        notify: setup.config.notify,
    };
    let restore_started = Instant::now();
    let mut core = match &recovered.snapshot {
        Some(snap) => Shard::restore(core_config(), &snap.bytes).map_err(|e| {
            anyhow::anyhow!(
                "shard {}: restoring snapshot at LSN {}: {e}",
                id.0,
                snap.lsn.0
            )
        })?,
        None => Shard::new(core_config()),
    };
    let restore_ms = restore_started.elapsed().as_millis() as u64;
    let replay_started = Instant::now();
    let from = recovered.replay_from();
    let mut replayed = 0u64;
    let mut replay_error = None;
    wal.replay(from, |record| {
        replayed += 1;
        match core.replay(Lsn(record.lsn.0), record.kind, record.payload) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                replay_error = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("shard {}: reading the WAL for replay: {e}", id.0))?;
    if let Some(e) = replay_error {
        anyhow::bail!("shard {}: replay refused a record: {e}", id.0);
    }
    let last = recovered.next_lsn.0.saturating_sub(1);
    tracing::info!(
        shard = id.0,
        snapshot_lsn = from.0 - 1,
        snapshot_bytes = recovered.snapshot.as_ref().map_or(0, |s| s.bytes.len()),
        replayed,
        last_lsn = last,
        wal_open_ms = open_ms,
        restore_ms,
        replay_ms = replay_started.elapsed().as_millis() as u64,
        ms = started.elapsed().as_millis() as u64,
        "recovered"
    );

    let shards = usize::from(setup.shards);
    let push = match &setup.config.push_url {
        Some(url) => Some(
            PushLink::spawn(id.0, url.clone(), setup.config.push_redact_preview)
                .map_err(|e| anyhow::anyhow!("shard {}: starting the push thread: {e}", id.0))?,
        ),
        None => None,
    };
    let ctx = Rc::new(ShardCtx {
        id,
        config: setup.config.clone(),
        core: RefCell::new(core),
        wal: Rc::new(wal),
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
        appended: Cell::new(last),
        durable_wake: Signal::default(),
        staged: RefCell::new(VecDeque::new()),
        staged_wake: Signal::default(),
        storage_failed: RefCell::new(None),
        snapshot_lsn: Cell::new(from.0 - 1),
        outbox_total: Cell::new(0),
        user_limits: RefCell::new(HashMap::new()),
        workspace_limits: RefCell::new(HashMap::new()),
        push,
    });
    // Start the core before any peer message can reach it; what start()
    // sends waits in the peer queues until the sender tasks run.
    {
        let mut effects = Vec::new();
        ctx.core.borrow_mut().start(now_ms(), &mut effects);
        for effect in effects {
            ctx.execute(effect);
        }
        ctx.drain_pending(); // anything the start effects looped back
    }
    tracing::info!(
        shard = id.0,
        ms = started.elapsed().as_millis() as u64,
        "start: core started"
    );
    spawn_peer_tasks(&ctx, senders, receivers);
    glommio::spawn_local(durability_task(ctx.clone())).detach();
    glommio::spawn_local(staging_task(ctx.clone())).detach();

    let listener = glommio::net::TcpListener::bind(setup.listen)
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

    // Accept until asked to stop. The pending accept is kept across ticks:
    // dropping an in-flight io_uring accept can lose a connection the kernel
    // already accepted (a socket nobody ever reads).
    let mut accept = Box::pin(listener.accept());
    while !ctx.stop.is_requested() {
        match with_timeout(TICK_INTERVAL, &mut accept).await {
            None => continue,
            Some(result) => {
                accept = Box::pin(listener.accept());
                match result {
                    Ok(stream) => {
                        glommio::spawn_local(gateway::serve(ctx.clone(), stream)).detach();
                    }
                    Err(e) => {
                        tracing::warn!(shard = id.0, error = %e, "accept failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    }
    drop(accept);
    drop(listener);
    shutdown(&ctx).await;
    Ok(())
}

/// Stop sequence: no new connections (done by the caller), let in-flight
/// commits finish and their acks go out, close every socket with 1001,
/// snapshot, close the WAL.
async fn shutdown(ctx: &Rc<ShardCtx>) {
    tracing::info!(shard = ctx.id.0, "stopping");
    // Give cross-shard requests already in flight a moment to land.
    glommio::timer::sleep(Duration::from_millis(100)).await;
    let target = ctx.appended.get();
    if ctx.storage_failed.borrow().is_none() {
        let _ = with_timeout(
            Duration::from_secs(5),
            ctx.wal.wait_durable(courier_wal::Lsn(target)),
        )
        .await;
        // Let the durability task report it so acks are queued.
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let conns: Vec<Rc<Conn>> = ctx.conns.borrow().values().cloned().collect();
    for c in &conns {
        c.close(1001, "server shutting down");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !ctx.conns.borrow().is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if ctx.storage_failed.borrow().is_none() {
        snapshot(ctx).await;
    }
    if let Err(e) = ctx.wal.close().await {
        tracing::error!(shard = ctx.id.0, error = %e, "closing WAL");
        ctx.stop.request(1);
    }
    ctx.publish();
    tracing::info!(shard = ctx.id.0, "stopped");
}

/// Writes a snapshot of the core's state once every record it covers is durable.
async fn snapshot(ctx: &Rc<ShardCtx>) {
    let (lsn, bytes) = ctx.core.borrow().snapshot();
    if lsn.0 <= ctx.snapshot_lsn.get() {
        return;
    }
    // Never let a snapshot claim state whose records are not on disk.
    if ctx.wal.wait_durable(courier_wal::Lsn(lsn.0)).await.is_err() {
        return;
    }
    match ctx
        .wal
        .write_snapshot(courier_wal::Lsn(lsn.0), &bytes)
        .await
    {
        Ok(()) => {
            ctx.snapshot_lsn.set(lsn.0);
            ctx.count(M::snapshots_total, 1);
            tracing::info!(
                shard = ctx.id.0,
                lsn = lsn.0,
                bytes = bytes.len(),
                "snapshot written"
            );
        }
        Err(e) => {
            #[cfg(feature = "failpoints")]
            crate::failpoints::get().on_storage_error(&format!("snapshot failed: {e}"));
            tracing::warn!(shard = ctx.id.0, error = %e, "snapshot failed (the log still has everything)")
        }
    }
}

/// Reports durability to the core: waits for the WAL to make the highest
/// appended LSN durable, then feeds `Input::Durable`.
async fn durability_task(ctx: Rc<ShardCtx>) {
    let mut reported = ctx.appended.get();
    loop {
        if ctx.appended.get() <= reported {
            ctx.durable_wake.wait().await;
            continue;
        }
        let target = ctx.appended.get();
        match ctx.wal.wait_durable(courier_wal::Lsn(target)).await {
            Ok(()) => {
                #[cfg(feature = "failpoints")]
                crate::failpoints::get().on_durable_report();
                reported = target;
                ctx.submit(Input::Durable { lsn: Lsn(target) });
            }
            Err(e) => {
                // Batches before the failed one were fsync'ed: report them
                // so their acks and deliveries go out (and reads see them)
                // rather than leaving them invisible until a restart.
                let durable = ctx.wal.durable_lsn().0;
                if durable > reported {
                    reported = durable;
                    ctx.submit(Input::Durable { lsn: Lsn(durable) });
                }
                tracing::error!(shard = ctx.id.0, durable_lsn = reported, error = %e, "WAL failed; refusing writes");
                let reason = format!("WAL failed: {e}");
                ctx.storage_failed(&e, reason);
                return;
            }
        }
    }
}

/// Moves staged records into the WAL as room appears.
async fn staging_task(ctx: Rc<ShardCtx>) {
    loop {
        let front = ctx.staged.borrow().front().map(|(_, _, p)| p.len() as u64);
        let Some(len) = front else {
            ctx.staged_wake.wait().await;
            continue;
        };
        #[cfg(feature = "failpoints")]
        if crate::failpoints::get().ack_before_fsync {
            glommio::timer::sleep(crate::failpoints::ACK_BEFORE_FSYNC_DELAY).await;
        }
        if let Err(e) = ctx.wal.wait_for_room(1, len).await {
            let lsn = ctx.staged.borrow().front().map_or(Lsn(0), |r| r.0);
            ctx.staged.borrow_mut().clear();
            ctx.storage_error(lsn, e);
            continue;
        }
        // Append as many as fit without awaiting, keeping LSN order.
        loop {
            let Some((lsn, kind, payload)) = ctx.staged.borrow_mut().pop_front() else {
                break;
            };
            match ctx.wal.append(kind, &payload) {
                Ok(got) => ctx.appended_ok(lsn, got),
                Err(courier_wal::Error::Backpressure { .. }) => {
                    ctx.staged.borrow_mut().push_front((lsn, kind, payload));
                    break;
                }
                Err(e) => {
                    ctx.staged.borrow_mut().clear();
                    ctx.storage_error(lsn, e);
                    break;
                }
            }
        }
    }
}

/// Records between snapshots (a failpoint may lower it for tests).
fn snapshot_every_records() -> u64 {
    #[cfg(feature = "failpoints")]
    if let Some(n) = crate::failpoints::get().snapshot_every {
        return n;
    }
    SNAPSHOT_EVERY_RECORDS
}

/// Keeps this executor waking at least every [`TICK_INTERVAL`] until the
/// returned flag is set (once the tick task runs, which does the same for
/// the shard's life).
///
/// glommio 0.9 can park an executor with no timer armed while it waits for
/// another executor (a shared channel's connect or receive, the old mesh
/// join), and the other executor's wake-up is sometimes lost: on a loaded
/// 2-core machine about 1 in 100–400 such waits never ended (measured with
/// two bare executors; docs/RELIABILITY.md, "Fixed bugs"). An executor
/// with a timer armed wakes at that timer whatever happened to the
/// wake-up, so with this no wait of the start lasts more than a tick
/// longer than its cause. Must be spawned before the shard's first await.
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
        ctx.publish();
        if ctx.appended.get().saturating_sub(ctx.snapshot_lsn.get()) >= snapshot_every_records()
            && ctx.storage_failed.borrow().is_none()
        {
            snapshot(&ctx).await;
        }
    }
}

/// This shard's connected channel ends: a sender per other shard (by
/// index), a receiver per other shard.
pub(crate) type Connected<T = Envelope> = (
    Vec<Option<ConnectedSender<T>>>,
    Vec<(usize, ConnectedReceiver<T>)>,
);

/// Connects every end at once (each connect finishes when the peer has
/// connected the other end; awaiting them one by one could wait on a peer
/// that waits on us). A pending connect keeps the executor polling rather
/// than parked, so this cannot sleep through the peer's connect.
pub(crate) async fn connect_peers<T: Send + 'static>(
    ends: crate::server::PeerEnds<T>,
) -> Connected<T> {
    let senders: Vec<_> = ends
        .to
        .into_iter()
        .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
        .collect();
    let receivers: Vec<_> = ends
        .from
        .into_iter()
        .enumerate()
        .filter_map(|(k, r)| r.map(|r| (k, glommio::spawn_local(r.connect()))))
        .collect();
    let mut connected_senders = Vec::with_capacity(senders.len());
    for sender in senders {
        connected_senders.push(match sender {
            Some(task) => Some(task.await),
            None => None,
        });
    }
    let mut connected_receivers = Vec::with_capacity(receivers.len());
    for (k, task) in receivers {
        connected_receivers.push((k, task.await));
    }
    (connected_senders, connected_receivers)
}

fn spawn_peer_tasks(
    ctx: &Rc<ShardCtx>,
    senders: Vec<Option<ConnectedSender<Envelope>>>,
    receivers: Vec<(usize, ConnectedReceiver<Envelope>)>,
) {
    for (k, sender) in senders.into_iter().enumerate() {
        let Some(sender) = sender else {
            continue; // this shard: self-addressed messages loop back
        };
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            loop {
                let next = ctx.peer_out[k].borrow_mut().pop_front();
                let Some(msg) = next else {
                    ctx.peer_wake[k].wait().await;
                    continue;
                };
                let env = Envelope { from: ctx.id, msg };
                if sender.send(env).await.is_err() {
                    tracing::warn!(shard = ctx.id.0, peer = k, "peer channel closed");
                    return;
                }
                ctx.count(M::peer_sent_total, 1);
            }
        })
        .detach();
    }
    for (k, receiver) in receivers {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(env) = receiver.recv().await {
                debug_assert_eq!(usize::from(env.from.0), k);
                ctx.count(M::peer_received_total, 1);
                ctx.submit(Input::Peer {
                    from: env.from,
                    msg: env.msg,
                });
            }
        })
        .detach();
    }
}
