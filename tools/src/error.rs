//! The library's error type. Every failure is a value: a server rejection
//! keeps its [`Reject`], a closed socket keeps its close code, and nothing a
//! server sends makes the library panic.

use courier_core::api::{Reject, UnavailableCause};
use courier_proto::close;
use std::path::PathBuf;

/// Why an operation of the client library failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered the request with a rejection (a domain value:
    /// not found, not a member, rate limited, …).
    #[error("server rejected the request: {}", describe_reject(.0))]
    Rejected(Reject),
    /// The server URL is not a `ws://host:port[/path]` URL.
    #[error("bad server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TCP connect or the WebSocket upgrade failed.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// The underlying error.
        reason: String,
    },
    /// The connection is closed (by the server with `code`, or dropped).
    #[error("connection closed{}", describe_close(.code, .reason))]
    Closed {
        /// WebSocket close code, if the server sent one (4001 unauthenticated,
        /// 4003 revoked, 4008 slow consumer, 1001 shutting down, …).
        code: Option<u16>,
        /// The close reason text, or what broke.
        reason: String,
    },
    /// No reply within the timeout.
    #[error("timed out after {0:?} waiting for the server")]
    Timeout(std::time::Duration),
    /// The server sent bytes that are not a valid frame, or a reply of the
    /// wrong kind for the request.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A cursor file could not be read or written.
    #[error("cursor file {path}: {reason}")]
    CursorFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl ClientError {
    /// True for failures that another connection attempt may cure
    /// (connect errors, dropped connections, timeouts, a server that is
    /// starting or shutting down). Authentication failures, revocation and
    /// other rejections are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout(_) => true,
            ClientError::Closed { code, .. } => code.is_none_or(|c| !is_permanent_close(c)),
            ClientError::Rejected(Reject::Unavailable { .. }) => true,
            ClientError::Rejected(Reject::RateLimited { .. }) => true,
            ClientError::Rejected(_) => false,
            ClientError::BadUrl { .. } | ClientError::Protocol(_) => false,
            ClientError::CursorFile { .. } => false,
        }
    }

    /// True if the failure is about reaching the server at all (connect,
    /// closed connection, timeout) rather than an answer from it. The CLI
    /// maps these to exit code 3.
    pub fn is_connection(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout(_) | ClientError::BadUrl { .. } => {
                true
            }
            ClientError::Closed { code, .. } => code.is_none_or(|c| !is_permanent_close(c)),
            _ => false,
        }
    }

    /// True if the server refused the session with 4011 `NOT_SERVING`: it
    /// is a cluster node that is not the primary (another server may
    /// serve; see [`ClientError::primary_hint`]).
    pub fn is_not_serving(&self) -> bool {
        matches!(
            self,
            ClientError::Closed {
                code: Some(close::NOT_SERVING),
                ..
            }
        )
    }

    /// True if the failure is a cluster's failover: a 4011 `NOT_SERVING`
    /// close, or `Unavailable` with cause `PeerTimeout` (a cluster node
    /// answers requests in flight so when the primary changes; on a single
    /// node it means a shard did not answer in time). Retried at most
    /// [`crate::constants::NOT_SERVING_RETRY_MAX`] apart: the node holds a
    /// request while no leader is known, so retrying soon costs it nothing.
    pub fn is_failover(&self) -> bool {
        self.is_not_serving()
            || matches!(
                self,
                ClientError::Rejected(Reject::Unavailable {
                    cause: UnavailableCause::PeerTimeout,
                    ..
                })
            )
    }

    /// The primary's URL named by a 4011 `NOT_SERVING` close
    /// (`primary=ws://HOST:PORT` in its reason), if any.
    pub fn primary_hint(&self) -> Option<&str> {
        match self {
            ClientError::Closed {
                code: Some(close::NOT_SERVING),
                reason,
            } => primary_hint(reason),
            _ => None,
        }
    }

    /// The rejection, if the server answered with one (a close with 4001 or
    /// 4003 counts as `Unauthenticated`).
    pub fn reject(&self) -> Option<Reject> {
        match self {
            ClientError::Rejected(r) => Some(r.clone()),
            ClientError::Closed {
                code: Some(close::UNAUTHENTICATED | close::REVOKED),
                ..
            } => Some(Reject::Unauthenticated),
            _ => None,
        }
    }
}

/// The word of a 4011 close reason that names the primary
/// (docs/PROTOCOL.md §10).
pub const PRIMARY_HINT_KEY: &str = "primary=";

/// The URL after `primary=` in a `NOT_SERVING` close reason (one
/// space-separated word, `ws://HOST:PORT`), if there is one.
pub fn primary_hint(reason: &str) -> Option<&str> {
    reason
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix(PRIMARY_HINT_KEY))
        .filter(|url| !url.is_empty())
}

/// Close codes after which reconnecting cannot help: a bad or revoked token
/// (4001, 4003), a refused `Hello` (4002: unsupported protocol version,
/// invalid device name) or a client bug the server refused (1002 protocol
/// error, 1003 text frame, 1008 malformed frames, 1009 frame too big).
/// 4011 `NOT_SERVING` is not one: another node (the primary) serves.
pub fn is_permanent_close(code: u16) -> bool {
    matches!(
        code,
        close::UNAUTHENTICATED
            | close::BAD_HELLO
            | close::REVOKED
            | close::PROTOCOL_ERROR
            | close::UNSUPPORTED_DATA
            | close::POLICY_VIOLATION
            | close::MESSAGE_TOO_BIG
    )
}

/// A one-line human description of a rejection, with a hint where one helps.
pub fn describe_reject(reject: &Reject) -> String {
    match reject {
        Reject::Unauthenticated => {
            "unauthenticated (the token is wrong, unknown or revoked)".to_owned()
        }
        Reject::NotAdmin => "this needs the admin token or the admin role".to_owned(),
        Reject::Forbidden(m) => format!("not allowed: {m}"),
        Reject::NotFound => "not found (or not visible to you)".to_owned(),
        Reject::AlreadyExists => "already exists".to_owned(),
        Reject::Invalid(m) => format!("invalid request: {m}"),
        Reject::TooLarge(m) => format!("too large: {m}"),
        Reject::RateLimited {
            retry_after_ms,
            limit,
        } => {
            format!(
                "rate limited (retry after {retry_after_ms} ms; budget {} requests/s, bursts of {})",
                limit.per_sec, limit.burst
            )
        }
        Reject::InviteExpired => "the invite expired (ask for a new one)".to_owned(),
        Reject::InviteUsedUp => "the invite was used as many times as it allows".to_owned(),
        Reject::InviteRevoked => "the invite was revoked".to_owned(),
        Reject::Archived => {
            "the channel is archived: read-only (an admin or its creator can unarchive it)"
                .to_owned()
        }
        Reject::Unavailable { cause, detail } if cause.outcome_known() => {
            format!("server unavailable (nothing was done: retry later): {detail}")
        }
        Reject::Unavailable { detail, .. } => format!(
            "server unavailable (outcome unknown: retry with the same client_msg_id): {detail}"
        ),
    }
}

fn describe_close(code: &Option<u16>, reason: &str) -> String {
    let meaning = code.and_then(close::meaning).unwrap_or("");
    match (code, reason.is_empty()) {
        (Some(c), true) => format!(" (code {c} {meaning})"),
        (Some(c), false) => format!(" (code {c} {meaning}: {reason})"),
        (None, true) => String::new(),
        (None, false) => format!(": {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_serving(reason: &str) -> ClientError {
        ClientError::Closed {
            code: Some(close::NOT_SERVING),
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn the_primary_hint_is_read_from_a_not_serving_close() {
        for (reason, hint) in [
            (
                "not the primary; primary=ws://127.0.0.1:7070",
                Some("ws://127.0.0.1:7070"),
            ),
            (
                "primary=ws://[::1]:7070 first, then words",
                Some("ws://[::1]:7070"),
            ),
            (
                "becoming the primary, not serving yet; primary=ws://10.0.0.2:7070",
                Some("ws://10.0.0.2:7070"),
            ),
            (
                "not serving: no primary elected yet; try another server",
                None,
            ),
            ("not the primary; primary=", None),
            ("", None),
        ] {
            assert_eq!(primary_hint(reason), hint, "{reason:?}");
            assert_eq!(not_serving(reason).primary_hint(), hint, "{reason:?}");
        }
        // Only a 4011 close carries a hint.
        let other = ClientError::Closed {
            code: Some(close::GOING_AWAY),
            reason: "primary=ws://a:1".into(),
        };
        assert_eq!(other.primary_hint(), None);
        assert!(!other.is_not_serving());
    }

    #[test]
    fn not_serving_is_transient_and_a_connection_failure() {
        let e = not_serving("not the primary; primary=ws://a:1");
        assert!(e.is_not_serving() && e.is_transient() && e.is_connection());
        assert!(!is_permanent_close(close::NOT_SERVING));
        assert!(is_permanent_close(close::UNAUTHENTICATED));
    }
}
