//! WebSocket close codes: the one place every crate takes them from (the
//! daemon closes with them, the client library and the CLI explain them,
//! tests and benches match on them). docs/PROTOCOL.md §10 lists the same
//! table, and a test keeps the two in step.
//!
//! The 1xxx codes are RFC 6455's; the 4xxx codes are Courier's own.

/// Normal closure (the client said goodbye, or the server answered one).
pub const NORMAL: u16 = 1000;
/// The server is shutting down; reconnect with backoff.
pub const GOING_AWAY: u16 = 1001;
/// A WebSocket protocol error (an unmasked client frame, a bad opcode).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message: Courier speaks binary frames only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Invalid UTF-8 in a close reason or text payload.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Too many malformed frames on one connection.
pub const POLICY_VIOLATION: u16 = 1008;
/// A message or frame over the size limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// Too many connections on this shard; retry later.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// `Hello` failed: bad, unknown or revoked token.
pub const UNAUTHENTICATED: u16 = 4001;
/// `Hello` refused before authentication: unsupported `protocol_version`,
/// invalid `device_name` or unknown `device_kind` (the `ErrorReply` before
/// the close names the field).
pub const BAD_HELLO: u16 = 4002;
/// The session's token was revoked or the user removed.
pub const REVOKED: u16 = 4003;
/// The client did not read fast enough; reconnect and `Sync`.
pub const SLOW_CONSUMER: u16 = 4008;
/// No `Hello` in time.
pub const AUTH_TIMEOUT: u16 = 4009;
/// Nothing received for the idle timeout.
pub const IDLE: u16 = 4010;
/// This node serves no client sessions now: a cluster-mode `courierd` that
/// is not the serving primary refuses every `Hello` (user or admin). The
/// reason names the primary as `primary=ws://HOST:PORT` when it is known;
/// connect there (or to another server) at once.
pub const NOT_SERVING: u16 = 4011;

/// Every code above with its one-line meaning, in code order (what
/// docs/PROTOCOL.md §10 shows; checked by a test).
pub const ALL: &[(u16, &str)] = &[
    (NORMAL, "normal"),
    (GOING_AWAY, "server shutting down"),
    (PROTOCOL_ERROR, "protocol error"),
    (UNSUPPORTED_DATA, "text message received"),
    (INVALID_PAYLOAD, "invalid UTF-8"),
    (POLICY_VIOLATION, "too many malformed frames"),
    (MESSAGE_TOO_BIG, "message too big"),
    (TRY_AGAIN_LATER, "too many connections on this shard"),
    (UNAUTHENTICATED, "authentication failed"),
    (BAD_HELLO, "Hello refused"),
    (REVOKED, "token revoked / access removed"),
    (SLOW_CONSUMER, "slow consumer"),
    (AUTH_TIMEOUT, "no Hello in time"),
    (IDLE, "idle timeout"),
    (NOT_SERVING, "node serves no client sessions"),
];

/// The meaning of `code`, if it is one of ours.
pub fn meaning(code: u16) -> Option<&'static str> {
    ALL.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_unique() {
        assert!(ALL.windows(2).all(|w| w[0].0 < w[1].0), "{ALL:?}");
        assert_eq!(meaning(SLOW_CONSUMER), Some("slow consumer"));
        assert_eq!(meaning(4999), None);
    }

    #[test]
    fn protocol_doc_lists_every_code() {
        let doc = include_str!("../../../docs/PROTOCOL.md");
        let table: Vec<u16> = doc
            .split("## 10. Close codes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .map(|section| {
                section
                    .lines()
                    .filter_map(|l| l.strip_prefix("| "))
                    .filter_map(|l| l.split(' ').next()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let ours: Vec<u16> = ALL.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            table, ours,
            "docs/PROTOCOL.md §10 and courier_proto::close disagree"
        );
    }
}
