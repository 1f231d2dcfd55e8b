//! How `courier` prints: one JSON object per line with stable field names
//! under `--json`, readable text otherwise. Field names here are part of the
//! CLI's interface (docs/CLI.md lists them); change them only compatibly.
//!
//! Ids (users, workspaces, conversations, tokens, client message ids) are
//! JSON *strings* of decimal digits ([`id_json`]): they are 64-bit (128-bit
//! for client message ids) and JavaScript or `jq` would round a number above
//! 2^53. Sequence numbers, timestamps and counts stay JSON numbers.

use courier_core::api::{ChangeKind, ConversationInfo, ConversationKind, Message, UserId};
use serde_json::{json, Value};
use std::io::Write;

/// Where results go. A closed stdout (e.g. `| head`) ends the program quietly.
pub struct Out {
    /// `--json`.
    pub json: bool,
}

/// stdout was closed by the reader: stop without an error.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
pub struct StdoutClosed;

impl Out {
    /// Prints one result: `value` as a JSON line, or `text` (any number of
    /// lines) for people.
    pub fn emit(&self, value: Value, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        let line = if self.json { value.to_string() } else { text() };
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .map_err(|_| StdoutClosed.into())
    }
}

/// An id as JSON: a string of decimal digits (see the module docs).
pub fn id_json(id: impl Into<u128>) -> Value {
    Value::String(id.into().to_string())
}

/// An optional id as JSON: [`id_json`] or `null`.
pub fn opt_id_json(id: Option<impl Into<u128>>) -> Value {
    id.map_or(Value::Null, id_json)
}

/// Stable name of a conversation kind.
pub fn kind_name(kind: ConversationKind) -> &'static str {
    match kind {
        ConversationKind::PublicChannel => "public_channel",
        ConversationKind::PrivateChannel => "private_channel",
        ConversationKind::Dm => "dm",
        ConversationKind::GroupDm => "group_dm",
    }
}

/// A conversation as JSON.
pub fn conversation_json(c: &ConversationInfo) -> Value {
    json!({
        "conversation": id_json(c.id.0),
        "kind": kind_name(c.kind),
        "name": c.name,
        "members": c.members.iter().map(|u| id_json(u.0)).collect::<Vec<_>>(),
        "member_count": c.member_count,
        "member": c.member,
        "head": c.head.0,
        "read": c.read.0,
        "unread": c.unread,
        "mentions": c.mentions,
        "last_activity": c.last_activity.0,
        "preview": c.preview,
        "topic": c.settings.topic,
        "purpose": c.settings.purpose,
        "archived": c.settings.archived,
        "posting": match c.settings.posting {
            courier_core::api::Posting::Everyone => "everyone",
            courier_core::api::Posting::Admins => "admins",
        },
    })
}

/// How people see a conversation's name: `#name` for channels, the members
/// for DMs.
pub fn conversation_label(c: &ConversationInfo) -> String {
    match c.kind {
        ConversationKind::PublicChannel | ConversationKind::PrivateChannel => {
            format!("#{}", c.name)
        }
        ConversationKind::Dm | ConversationKind::GroupDm => {
            let members: Vec<String> = c.members.iter().map(|u| u.0.to_string()).collect();
            format!("dm({})", members.join(","))
        }
    }
}

/// How people see a conversation in `watch` and `history`: `#name` for
/// channels; for DMs the other members' handles, `@alice` or
/// `@alice,@bob` (`handle` gives `@handle`, `None` when unknown: then the
/// id); `me` is left out (a DM with oneself shows oneself).
pub fn conversation_label_with(
    c: &ConversationInfo,
    me: Option<UserId>,
    handle: impl Fn(UserId) -> Option<String>,
) -> String {
    match c.kind {
        ConversationKind::PublicChannel | ConversationKind::PrivateChannel => {
            format!("#{}", c.name)
        }
        ConversationKind::Dm | ConversationKind::GroupDm => {
            let others: Vec<UserId> = c
                .members
                .iter()
                .copied()
                .filter(|u| Some(*u) != me)
                .collect();
            let shown = if others.is_empty() {
                c.members.clone()
            } else {
                others
            };
            let names: Vec<String> = shown
                .iter()
                .map(|u| handle(*u).unwrap_or_else(|| u.0.to_string()))
                .collect();
            names.join(",")
        }
    }
}

/// A message as JSON (the `watch` and `history` line); `sender_name` (the
/// display name, else `@handle`) is added when the sender's profile could
/// be read, `conversation_name` (`#general`, `@alice`, `@alice,@bob`) when
/// the conversation is known.
pub fn message_json(
    m: &Message,
    sender_name: Option<&str>,
    conversation_name: Option<&str>,
) -> Value {
    let mut v = json!({
        "type": m.change.map_or("message", |c| change_type(c.kind)),
        "conversation": id_json(m.conversation.0),
        "seq": m.seq.0,
        "sender": id_json(m.sender.0),
        "client_msg_id": id_json(m.client_msg_id),
        "body": m.body,
        "ts": m.ts.0,
    });
    match m.change {
        // Issue 17: a message carries its current state.
        None => {
            v["edited"] = json!(m.live.edited.is_some());
            if let Some(at) = m.live.edited {
                v["edited_ts"] = json!(at.0);
            }
            v["deleted"] = json!(m.live.deleted);
            // Threads (issue 17, part 2): a reply names its root; every
            // message carries its thread summary (0 replies: none).
            v["thread_root"] = json!(m.thread.map(|t| t.root.0));
            if let Some(t) = m.thread {
                v["in_channel"] = json!(t.in_channel);
            }
            let t = &m.live.thread;
            v["reply_count"] = json!(t.replies);
            if t.replies > 0 {
                v["last_reply_ts"] = json!(t.last_reply.0);
                v["participants"] = json!(t
                    .participants
                    .iter()
                    .map(|u| id_json(u.0))
                    .collect::<Vec<_>>());
            }
            v["pinned"] = json!(m.live.pinned);
            v["reactions"] = m
                .live
                .reactions
                .iter()
                .map(|r| {
                    json!({
                        "emoji": r.emoji,
                        "count": r.users.len(),
                        "users": r.users.iter().map(|u| id_json(u.0)).collect::<Vec<_>>(),
                    })
                })
                .collect();
        }
        // Issue 16, part 4: a channel setting carries its value.
        Some(c) if c.kind.is_setting() => match c.kind {
            ChangeKind::Topic | ChangeKind::Purpose | ChangeKind::Rename => {
                v["value"] = json!(m.body)
            }
            ChangeKind::PostingAdmins => v["posting"] = json!("admins"),
            ChangeKind::PostingEveryone => v["posting"] = json!("everyone"),
            _ => {}
        },
        // A change names its target; a reaction its emoji and direction.
        Some(c) => {
            v["target"] = json!(c.target.0);
            if matches!(c.kind, ChangeKind::React | ChangeKind::Unreact) {
                v["emoji"] = json!(m.body);
                v["removed"] = json!(c.kind == ChangeKind::Unreact);
            }
            // Issue 17, part 3: `pin` with `pinned` saying which way.
            if c.kind.is_pin() {
                v["pinned"] = json!(c.kind == ChangeKind::Pin);
            }
        }
    }
    if let Some(name) = sender_name {
        v["sender_name"] = json!(name);
    }
    if let Some(name) = conversation_name {
        v["conversation_name"] = json!(name);
    }
    v
}

/// The `type` of a change in `--json` output: `edit`, `delete`,
/// `reaction` (`removed` says which way), `pin` (`pinned` says which
/// way; issue 17, part 3); for a channel setting (issue
/// 16, part 4) `topic`, `purpose`, `rename` (with `value`), `archive`,
/// `unarchive`, `posting` (with `posting`: `admins` or `everyone`).
pub fn change_type(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Edit => "edit",
        ChangeKind::Delete => "delete",
        ChangeKind::React | ChangeKind::Unreact => "reaction",
        ChangeKind::Topic => "topic",
        ChangeKind::Purpose => "purpose",
        ChangeKind::Rename => "rename",
        ChangeKind::Archive => "archive",
        ChangeKind::Unarchive => "unarchive",
        ChangeKind::PostingEveryone | ChangeKind::PostingAdmins => "posting",
        ChangeKind::Pin | ChangeKind::Unpin => "pin",
    }
}

/// What a channel setting event did, for people (issue 16, part 4):
/// "set the topic: …", "renamed the channel to #…", ….
pub fn setting_text(kind: ChangeKind, value: &str) -> String {
    match kind {
        ChangeKind::Topic if value.is_empty() => "cleared the topic".to_owned(),
        ChangeKind::Topic => format!("set the topic: {value}"),
        ChangeKind::Purpose if value.is_empty() => "cleared the purpose".to_owned(),
        ChangeKind::Purpose => format!("set the purpose: {value}"),
        ChangeKind::Rename => format!("renamed the channel to #{value}"),
        ChangeKind::Archive => "archived the channel (read-only)".to_owned(),
        ChangeKind::Unarchive => "unarchived the channel".to_owned(),
        ChangeKind::PostingAdmins => "made posting admins-only".to_owned(),
        ChangeKind::PostingEveryone => "let everyone post".to_owned(),
        ChangeKind::Edit
        | ChangeKind::Delete
        | ChangeKind::React
        | ChangeKind::Unreact
        | ChangeKind::Pin
        | ChangeKind::Unpin => String::new(),
    }
}

/// A message or change for people: `[label #seq] time <sender> body`, the
/// sender by name when known (else by id); a message shows `(edited)`,
/// `(deleted)` and its reactions; a change says what it did to which seq.
pub fn message_text(label: &str, m: &Message, sender_name: Option<&str>) -> String {
    let sender = sender_name.map_or_else(|| m.sender.0.to_string(), str::to_owned);
    let head = format!("[{label} #{}] {} <{sender}>", m.seq.0, format_ts(m.ts.0));
    match m.change {
        None if m.live.deleted => format!("{head} (deleted)"),
        None => {
            let mut line = match m.thread {
                Some(t) => format!("{head} ↳ #{} {}", t.root.0, m.body),
                None => format!("{head} {}", m.body),
            };
            if m.live.edited.is_some() {
                line.push_str(" (edited)");
            }
            let replies = m.live.thread.replies;
            if replies > 0 {
                let s = if replies == 1 { "y" } else { "ies" };
                line.push_str(&format!(" [{replies} repl{s}]"));
            }
            if m.live.pinned {
                line.push_str(" (pinned)");
            }
            for r in &m.live.reactions {
                line.push_str(&format!(" [{} {}]", r.emoji, r.users.len()));
            }
            line
        }
        Some(c) => match c.kind {
            ChangeKind::Edit => format!("{head} edited #{}: {}", c.target.0, m.body),
            ChangeKind::Delete => format!("{head} deleted #{}", c.target.0),
            ChangeKind::React => format!("{head} reacted {} to #{}", m.body, c.target.0),
            ChangeKind::Unreact => format!("{head} removed {} from #{}", m.body, c.target.0),
            ChangeKind::Pin => format!("{head} pinned #{}", c.target.0),
            ChangeKind::Unpin => format!("{head} unpinned #{}", c.target.0),
            kind => format!("{head} {}", setting_text(kind, &m.body)),
        },
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a millisecond Unix timestamp.
pub fn format_ts(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `courier admin cluster status` for people: a header, a node table, the
/// answering node's Raft group per core, and a shard table (the shards'
/// leader, term and commit lag read `n/a`: the groups are per core).
pub fn cluster_status_text(report: &courier_tools::admin_http::ClusterReport) -> String {
    use courier_tools::admin_http::ClusterReport;
    let view = match report {
        ClusterReport::SingleNode => {
            return "not a cluster: this courierd runs in single-node mode (started without --etcd)"
                .to_owned()
        }
        ClusterReport::Cluster(view) => view,
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = format!(
        "cluster {} (id {}): {} shards x {} replicas; answered by node {}\n\
         etcd: {}; controller: {}; client sessions: {}; primary: {}; replication: {}\n\n",
        view.cluster,
        view.cluster_id,
        view.shard_count,
        view.replication_factor,
        view.answered_by,
        match (&view.etcd_connected, &view.etcd_error) {
            (true, _) => "connected".to_owned(),
            (false, e) => format!(
                "DISCONNECTED ({}; showing the last state seen)",
                opt(e.clone())
            ),
        },
        opt(view.controller.map(|c| format!("node {c}"))),
        if view.serving_clients {
            "served"
        } else {
            "refused"
        },
        match (view.primary, &view.primary_client_addr) {
            (Some(p), Some(addr)) => format!("node {p} (ws://{addr})"),
            (Some(p), None) => format!("node {p}"),
            (None, _) => "none known".to_owned(),
        },
        view.replication,
    );
    out += &format!(
        "{:<6} {:<6} {:<22} {:<22} {:<6} {:<11} {:<8} {}\n",
        "NODE", "ALIVE", "CLIENT", "PEER", "CORES", "CONTROLLER", "PRIMARY", "SERVING"
    );
    for n in &view.nodes {
        out += &format!(
            "{:<6} {:<6} {:<22} {:<22} {:<6} {:<11} {:<8} {}\n",
            n.node_id,
            yes(n.alive),
            opt(n.client_addr.clone()),
            opt(n.peer_addr.clone()),
            opt(n.cores.map(|c| c.to_string())),
            yes(n.controller),
            yes(n.primary),
            opt(n.serving.map(|s| yes(s).to_owned()))
        );
    }
    out += &core_table(view);
    let Some(placement) = &view.placement else {
        out += &format!(
            "\nplacement: none yet (the controller places the shards once {} nodes have registered)",
            view.replication_factor
        );
        return out;
    };
    let na = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
    out += &format!(
        "\nplacement epoch {}\n{:<6} {:<24} {:<7} {:<6} {}\n",
        placement.epoch, "SHARD", "REPLICAS", "LEADER", "TERM", "COMMIT-LAG"
    );
    for s in &placement.shards {
        let replicas: Vec<String> = s.replicas.iter().map(u32::to_string).collect();
        out += &format!(
            "{:<6} {:<24} {:<7} {:<6} {}\n",
            s.shard,
            replicas.join(","),
            na(s.leader.map(u64::from)),
            na(s.term),
            na(s.commit_lag)
        );
    }
    out.truncate(out.trim_end().len());
    out
}

/// The answering node's Raft group per core, as a table (empty text for
/// a server that reports no cores).
fn core_table(view: &courier_tools::admin_http::ClusterView) -> String {
    if view.cores.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nraft groups of node {} (one per core)\n{:<6} {:<7} {:<6} {:<10} {:<10} {}\n",
        view.answered_by, "CORE", "LEADER", "TERM", "COMMITTED", "APPLIED", "READY"
    );
    for c in &view.cores {
        out += &format!(
            "{:<6} {:<7} {:<6} {:<10} {:<10} {}\n",
            c.core,
            c.leader.map_or_else(|| "-".to_owned(), |l| l.to_string()),
            c.term,
            c.committed,
            c.applied,
            if c.ready { "yes" } else { "no" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_and_seqs_numbers() {
        let big = (1u64 << 60) + 1;
        assert_eq!(id_json(big), Value::String("1152921504606846977".into()));
        assert_eq!(opt_id_json(None::<u64>), Value::Null);
        let m = Message {
            conversation: courier_core::api::ConversationId(big),
            seq: courier_core::api::Seq(7),
            sender: courier_core::api::UserId(u64::MAX),
            client_msg_id: u128::MAX,
            ts: courier_core::api::Millis(5),
            body: "hi".into(),
            mentions: vec![],
            broadcast: courier_core::api::Broadcast::None,
            change: None,
            live: Default::default(),
            thread: None,
        };
        let v = message_json(&m, None, None);
        assert!(v.get("sender_name").is_none());
        assert!(v.get("conversation_name").is_none());
        let named = message_json(&m, Some("Ann"), Some("@ann,@bob"));
        assert_eq!(named["sender_name"], "Ann");
        assert_eq!(named["conversation_name"], "@ann,@bob");
        assert_eq!(
            message_text("#general", &m, Some("Ann")),
            "[#general #7] 1970-01-01 00:00:00 <Ann> hi"
        );
        assert!(message_text("#general", &m, None).contains(&format!("<{}>", u64::MAX)));
        assert_eq!(v["conversation"], "1152921504606846977");
        assert_eq!(v["sender"], u64::MAX.to_string());
        assert_eq!(v["client_msg_id"], u128::MAX.to_string());
        assert_eq!(v["seq"], 7);
        assert_eq!(v["ts"], 5);
        assert_eq!(
            (&v["type"], &v["edited"], &v["deleted"]),
            (&json!("message"), &json!(false), &json!(false))
        );
    }

    /// Issue 17: a message in its current state, and each kind of change,
    /// as rows (`type`) and as text.
    #[test]
    fn changes_and_current_state_render() {
        use courier_core::api::{
            Broadcast, Change, ConversationId, Live, Millis, Reaction, Seq, UserId,
        };
        let msg = |seq: u64, body: &str, change: Option<(ChangeKind, u64)>, live: Live| Message {
            conversation: ConversationId(3),
            seq: Seq(seq),
            sender: UserId(2),
            client_msg_id: 0,
            ts: Millis(0),
            body: body.into(),
            mentions: vec![],
            broadcast: Broadcast::None,
            change: change.map(|(kind, t)| Change {
                kind,
                target: Seq(t),
            }),
            live,
            thread: None,
        };
        let reacted = Live {
            edited: Some(Millis(9)),
            reactions: vec![Reaction {
                emoji: "+1".into(),
                users: vec![UserId(4), UserId(5)],
            }],
            ..Live::default()
        };
        let deleted = Live {
            deleted: true,
            ..Live::default()
        };
        // (message, type, text after the `<sender>`)
        let table = [
            (
                msg(1, "fixed", None, reacted),
                "message",
                "fixed (edited) [+1 2]",
            ),
            (msg(2, "", None, deleted), "message", "(deleted)"),
            (
                msg(3, "fixed", Some((ChangeKind::Edit, 1)), Live::default()),
                "edit",
                "edited #1: fixed",
            ),
            (
                msg(4, "", Some((ChangeKind::Delete, 2)), Live::default()),
                "delete",
                "deleted #2",
            ),
            (
                msg(5, "+1", Some((ChangeKind::React, 1)), Live::default()),
                "reaction",
                "reacted +1 to #1",
            ),
            (
                msg(6, "+1", Some((ChangeKind::Unreact, 1)), Live::default()),
                "reaction",
                "removed +1 from #1",
            ),
            (
                msg(7, "", Some((ChangeKind::Pin, 1)), Live::default()),
                "pin",
                "pinned #1",
            ),
            (
                msg(8, "", Some((ChangeKind::Unpin, 1)), Live::default()),
                "pin",
                "unpinned #1",
            ),
            (
                msg(
                    9,
                    "hi",
                    None,
                    Live {
                        pinned: true,
                        ..Live::default()
                    },
                ),
                "message",
                "hi (pinned)",
            ),
        ];
        for (m, kind, text) in table {
            let v = message_json(&m, None, None);
            assert_eq!(v["type"], kind, "{m:?}");
            let line = message_text("c", &m, Some("ann"));
            assert_eq!(line.split_once("<ann> ").map(|x| x.1), Some(text), "{line}");
        }
        let v = message_json(
            &msg(
                1,
                "fixed",
                None,
                Live {
                    edited: Some(Millis(9)),
                    ..Live::default()
                },
            ),
            None,
            None,
        );
        assert_eq!((&v["edited"], &v["edited_ts"]), (&json!(true), &json!(9)));
        let v = message_json(
            &msg(5, "+1", Some((ChangeKind::Unreact, 1)), Live::default()),
            None,
            None,
        );
        assert_eq!(
            (&v["target"], &v["emoji"], &v["removed"]),
            (&json!(1), &json!("+1"), &json!(true))
        );
        let v = message_json(
            &msg(8, "", Some((ChangeKind::Unpin, 1)), Live::default()),
            None,
            None,
        );
        assert_eq!((&v["target"], &v["pinned"]), (&json!(1), &json!(false)));
    }

    /// Threads (issue 17, part 2): a reply names its root (`thread_root`,
    /// `in_channel`, `↳ #root`); a root carries `reply_count`,
    /// `last_reply_ts` and `participants` (`[N replies]`).
    #[test]
    fn replies_and_roots_render() {
        use courier_core::api::{
            Broadcast, ConversationId, Live, Millis, Seq, Thread, ThreadSummary, UserId,
        };
        let base = Message {
            conversation: ConversationId(3),
            seq: Seq(1),
            sender: UserId(2),
            client_msg_id: 0,
            ts: Millis(0),
            body: "ship it?".into(),
            mentions: vec![],
            broadcast: Broadcast::None,
            change: None,
            live: Live::default(),
            thread: None,
        };
        let root = Message {
            live: Live {
                thread: Box::new(ThreadSummary {
                    replies: 2,
                    last_reply: Millis(30),
                    last_seq: Seq(3),
                    participants: vec![UserId(4), UserId(2)],
                }),
                ..Live::default()
            },
            ..base.clone()
        };
        let v = message_json(&root, None, None);
        assert_eq!(
            (&v["thread_root"], &v["reply_count"], &v["last_reply_ts"]),
            (&json!(null), &json!(2), &json!(30))
        );
        assert_eq!(v["participants"], json!(["4", "2"]));
        assert!(message_text("c", &root, None).ends_with("ship it? [2 replies]"));
        let reply = Message {
            seq: Seq(3),
            body: "yes".into(),
            thread: Some(Thread {
                root: Seq(1),
                in_channel: true,
            }),
            ..base
        };
        let v = message_json(&reply, None, None);
        assert_eq!(
            (
                &v["type"],
                &v["thread_root"],
                &v["in_channel"],
                &v["reply_count"]
            ),
            (&json!("message"), &json!(1), &json!(true), &json!(0))
        );
        assert!(message_text("c", &reply, None).ends_with("↳ #1 yes"));
    }

    #[test]
    fn dms_are_labelled_by_the_others_handles() {
        use courier_core::api::{ConversationId, Millis, Seq};
        let info = |kind, members: Vec<u64>| ConversationInfo {
            id: ConversationId(9),
            kind,
            name: "general".into(),
            members: members.into_iter().map(UserId).collect(),
            member_count: 0,
            member: true,
            head: Seq(0),
            read: Seq(0),
            unread: 0,
            mentions: 0,
            last_activity: Millis(0),
            preview: None,
            settings: Default::default(),
        };
        let handle = |u: UserId| match u.0 {
            1 => Some("@me".to_owned()),
            2 => Some("@alice".to_owned()),
            3 => Some("@bob".to_owned()),
            _ => None,
        };
        let me = Some(UserId(1));
        let label = |c| conversation_label_with(&c, me, handle);
        assert_eq!(label(info(ConversationKind::Dm, vec![1, 2])), "@alice");
        assert_eq!(
            label(info(ConversationKind::GroupDm, vec![1, 2, 3, 4])),
            "@alice,@bob,4"
        );
        assert_eq!(label(info(ConversationKind::Dm, vec![1])), "@me");
        assert_eq!(
            label(info(ConversationKind::PrivateChannel, vec![1])),
            "#general"
        );
    }

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_ts(0), "1970-01-01 00:00:00");
        assert_eq!(format_ts(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(format_ts(951_782_400_000), "2000-02-29 00:00:00");
    }
}
