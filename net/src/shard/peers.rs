//! The shard's channels to the other shards: connecting them at start,
//! one sender task and one receiver task per peer, and the backpressure
//! the gateway applies while outbound peer queues are above their
//! high-water mark.
//!
//! It must never reorder messages to a peer, never drop one while its
//! channel is open, and never let an outbound queue grow without the
//! readers pausing (see `backpressure`).

use super::{Envelope, ShardCtx};
use crate::constants::PEER_QUEUE_HIGH_WATER;
use crate::metrics::M;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};
use std::rc::Rc;
use std::time::Duration;

impl ShardCtx {
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

pub(super) fn spawn_peer_tasks(
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
                let Some(env) = next else {
                    ctx.peer_wake[k].wait().await;
                    continue;
                };
                if sender.send(env).await.is_err() {
                    tracing::warn!(shard = ctx.id.0, peer = k, "peer channel closed");
                    return;
                }
                ctx.count(M::peer_sent_total, 1);
            }
        })
        .detach();
    }
    for (_, receiver) in receivers {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(env) = receiver.recv().await {
                ctx.count(M::peer_received_total, 1);
                ctx.submit_peer(env.from, env.to, env.msg);
            }
        })
        .detach();
    }
}
