//! The shard's connection registry: live connections by id, their
//! outboxes (queueing encoded frames, the shard-wide outbox byte total,
//! delivery accounting), and the per-user and per-workspace rate limiters
//! shared by a user's or a workspace's sessions on this shard (refcounted
//! by session, dropped with the last one).
//!
//! It must never decide who receives what (the core names the
//! connections), never block or wait on a slow connection (a full outbox
//! cuts that connection off), and never keep a limiter or an outbox byte
//! count for a connection it has forgotten.

use super::ShardCtx;
use crate::constants::PACE_WAIT_MAX;
use crate::gateway::{self, Conn, Queued};
use crate::limits::Limiter;
use crate::metrics::M;
use bytes::Bytes;
use courier_core::api::{
    ConnId, Event, Input, RateLimit, Reject, ReqId, Response, UserId, WorkspaceId,
};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

impl ShardCtx {
    pub(super) fn deliver(&self, conns: &[ConnId], event: &Arc<Event>) {
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

    pub(super) fn conn(&self, id: ConnId) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    /// Registers a new connection, or `None` at the per-shard limit. In
    /// cluster mode the connection belongs to the core's edge; before the
    /// edge exists it gets the core's own id, and its `Hello` is refused
    /// (`refuses_session`).
    pub fn register_conn(self: &Rc<Self>) -> Option<Rc<Conn>> {
        if self.conns.borrow().len() >= self.config.connections_per_shard_max {
            self.count(M::connections_refused_total, 1);
            return None;
        }
        let local = self.next_conn.get();
        self.next_conn.set(local + 1);
        let conn = gateway::new_conn(
            ConnId::new(self.session_shard().unwrap_or(self.id), local),
            self.config.outbox_bytes_max,
            Limiter::new(self.config.rate_conn_per_sec),
        );
        self.conns.borrow_mut().insert(conn.id, conn.clone());
        self.count(M::connections_accepted_total, 1);
        self.submit(Input::Connected { conn: conn.id });
        Some(conn)
    }

    pub(super) fn session_started(
        &self,
        conn: &Conn,
        user: UserId,
        workspace: Option<WorkspaceId>,
    ) {
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
            if self.conns.borrow().is_empty() {
                self.conns_empty.notify();
            }
        }
    }
}
