//! Push delivery: one thread per shard that POSTs the core's
//! `Effect::Push`es as JSON to the configured gateway, with one maintained
//! HTTP client (`ureq::Agent`, keep-alive).
//!
//! Cross-thread contract: the shard hands requests over a bounded crossbeam
//! channel of [`PUSH_QUEUE_MAX`] and polls answers from another bounded one
//! on every tick (`Input::Tick` every 50 ms, so an answer waits at most one
//! tick). The core keeps at most `PUSH_IN_FLIGHT_MAX` pushes in flight, which
//! is the queue size, so `try_send` only fails if the thread died; the shard
//! then answers `Retry` itself. The thread never retries: the core owns the
//! backoff (durable outbox, deterministic in the simulation).
//!
//! Failure contract: a network error, a timeout, 5xx or 429 is `Retry`; any
//! other non-2xx is `Rejected`; 2xx is `Delivered`. The thread ends when the
//! shard drops its sender.

use courier_core::api::{DeviceKind, NotifyReason, Push, PushAction, PushId, PushOutcome};
use courier_core::constants::PUSH_IN_FLIGHT_MAX;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::time::Duration;

/// Capacity of each direction's channel.
pub const PUSH_QUEUE_MAX: usize = PUSH_IN_FLIGHT_MAX;

/// One POST may take this long before it counts as failed (`Retry`).
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The shard's end of its delivery thread.
pub struct PushLink {
    requests: Sender<(PushId, Box<Push>)>,
    results: Receiver<(PushId, PushOutcome)>,
}

impl PushLink {
    /// Starts the delivery thread of shard `shard` for `url`.
    pub fn spawn(shard: u16, url: String, redact_preview: bool) -> std::io::Result<PushLink> {
        let (requests, rx) = bounded::<(PushId, Box<Push>)>(PUSH_QUEUE_MAX);
        let (tx, results) = bounded(PUSH_QUEUE_MAX);
        std::thread::Builder::new()
            .name(format!("courier-push-{shard}"))
            .spawn(move || deliver(&url, redact_preview, &rx, &tx))?;
        Ok(PushLink { requests, results })
    }

    /// Hands a push to the thread; gives it back if the queue is full or
    /// the thread is gone.
    pub fn send(&self, id: PushId, push: Box<Push>) -> Result<(), PushId> {
        match self.requests.try_send((id, push)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full((id, _)) | TrySendError::Disconnected((id, _))) => Err(id),
        }
    }

    /// Answers that arrived, at most PUSH_QUEUE_MAX.
    pub fn results(&self) -> Vec<(PushId, PushOutcome)> {
        self.results.try_iter().take(PUSH_QUEUE_MAX).collect()
    }
}

fn deliver(
    url: &str,
    redact_preview: bool,
    rx: &Receiver<(PushId, Box<Push>)>,
    tx: &Sender<(PushId, PushOutcome)>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(PUSH_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    while let Ok((id, push)) = rx.recv() {
        let body = json(&push, redact_preview).to_string();
        let outcome = match agent
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", &push.idempotency_key)
            .send(body)
        {
            Ok(response) => classify(response.status().as_u16()),
            Err(e) => {
                tracing::debug!(error = %e, "push gateway unreachable");
                PushOutcome::Retry
            }
        };
        if tx.send((id, outcome)).is_err() {
            return;
        }
    }
}

/// Maps an HTTP status to the core's outcome.
pub fn classify(status: u16) -> PushOutcome {
    match status {
        200..=299 => PushOutcome::Delivered,
        429 | 500..=599 => PushOutcome::Retry,
        _ => PushOutcome::Rejected,
    }
}

fn kind_name(reason: NotifyReason) -> &'static str {
    match reason {
        NotifyReason::Dm => "dm",
        NotifyReason::Mention => "mention",
        NotifyReason::Broadcast | NotifyReason::Channel => "channel",
    }
}

fn device_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Desktop => "desktop",
        DeviceKind::Web => "web",
        DeviceKind::Mobile => "mobile",
        DeviceKind::Tool => "tool",
    }
}

/// The JSON body of a push (documented in docs/NOTIFICATIONS.md). Ids are
/// strings: they are 64-bit and JavaScript numbers are not.
pub fn json(push: &Push, redact_preview: bool) -> serde_json::Value {
    let action = match push.action {
        PushAction::Notify => "notify",
        PushAction::Clear => "clear",
    };
    let preview = if redact_preview || push.action == PushAction::Clear {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(push.preview.clone())
    };
    serde_json::json!({
        "action": action,
        "user_id": push.user.0.to_string(),
        "devices": push.devices.iter().map(|d| device_name(*d)).collect::<Vec<_>>(),
        "conversation_id": push.conversation.0.to_string(),
        "seq": push.seq.0,
        "kind": kind_name(push.reason),
        "sender_id": push.sender.0.to_string(),
        "preview": preview,
        "badge": push.badge,
        "idempotency_key": push.idempotency_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::api::{ConversationId, Seq, UserId};

    #[test]
    fn statuses() {
        let cases = [
            (200, PushOutcome::Delivered),
            (204, PushOutcome::Delivered),
            (429, PushOutcome::Retry),
            (503, PushOutcome::Retry),
            (400, PushOutcome::Rejected),
            (404, PushOutcome::Rejected),
        ];
        for (status, expected) in cases {
            assert_eq!(classify(status), expected, "{status}");
        }
    }

    #[test]
    fn body_and_redaction() {
        let push = Push {
            action: PushAction::Notify,
            user: UserId(7),
            devices: vec![DeviceKind::Mobile],
            conversation: ConversationId(9),
            seq: Seq(3),
            reason: NotifyReason::Dm,
            sender: UserId(8),
            preview: "hi".into(),
            badge: 2,
            idempotency_key: "push-7-9-3".into(),
        };
        let j = json(&push, false);
        assert_eq!(j["user_id"], "7");
        assert_eq!(j["kind"], "dm");
        assert_eq!(j["preview"], "hi");
        assert_eq!(j["devices"][0], "mobile");
        assert_eq!(j["idempotency_key"], "push-7-9-3");
        assert!(json(&push, true)["preview"].is_null());
    }
}
