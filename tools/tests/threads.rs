//! Threads (issue 17, part 2) end to end against a real `courierd` through
//! the CLI: `reply` and `thread`; a `watch --json` prints replies with
//! their `thread_root` — live, and once each after it resumes from its
//! cursor file having been away; `history --json` rows carry
//! `thread_root` and `reply_count`; `unread` leaves out replies shown only
//! in their thread; a non-member can neither reply nor read a thread.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cli_run;
mod watch;

use cli_run::{courier, id, run, run_ok};
use courier_tools::testkit::ServerProcess;
use serde_json::Value;
use std::time::Duration;
use watch::Watch;

/// (seq, body, thread_root) of a message line.
fn line(v: &Value) -> (u64, String, Option<u64>) {
    (
        v["seq"].as_u64().unwrap(),
        v["body"].as_str().unwrap().to_owned(),
        v["thread_root"].as_u64(),
    )
}

fn next_json(watch: &Watch) -> Value {
    serde_json::from_str(&watch.next()).unwrap()
}

#[test]
fn replies_reach_a_watcher_once_and_roots_carry_their_counts() {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let admin = server.admin_token().unwrap();
    let ws = id(&run_ok(&server, &admin, &["admin", "create-workspace", "acme"])[0]["workspace"]);
    let user = |name: &str| {
        let row = &run_ok(
            &server,
            &admin,
            &["admin", "create-user", "--workspace", &ws, name],
        )[0];
        row["token"].as_str().unwrap().to_owned()
    };
    let (alice, bob, eve) = (user("alice"), user("bob"), user("eve"));
    run_ok(
        &server,
        &alice,
        &["channel", "create", "design", "--private"],
    );
    run_ok(&server, &alice, &["channel", "invite", "design", "bob"]);
    run_ok(&server, &alice, &["send", "design", "shall we ship?"]);

    // Bob's watcher sees a live reply with its root, then goes away.
    let cursor = server.data_dir().with_file_name("bob.cursors");
    let cursor = cursor.to_str().unwrap();
    let watch_args = ["watch", "--from-start", "--cursor-file", cursor, "design"];
    {
        let watch = Watch::start(courier(&server, &bob, &watch_args));
        assert_eq!(line(&next_json(&watch)), (1, "shall we ship?".into(), None));
        let r = run_ok(&server, &alice, &["reply", "design", "1", "yes, friday"]);
        assert_eq!(
            (r[0]["seq"].as_u64(), r[0]["thread_root"].as_u64()),
            (Some(2), Some(1))
        );
        let live = next_json(&watch);
        assert_eq!(line(&live), (2, "yes, friday".into(), Some(1)));
        assert_eq!(live["type"], "message");
        assert_eq!(live["in_channel"], false);
        std::thread::sleep(Duration::from_millis(1200));
    }

    // While it is away: two more replies (one also in the channel) and a
    // message; a non-member can neither reply nor read the thread.
    run_ok(&server, &bob, &["reply", "design", "1", "ok"]);
    run_ok(
        &server,
        &alice,
        &["reply", "design", "1", "shipping", "--also-channel"],
    );
    run_ok(&server, &alice, &["send", "design", "other topic"]);
    let (code, _) = run(&server, &eve, &["reply", "design", "1", "let me in"]);
    assert_eq!(code, Some(1), "a non-member cannot reply");
    let (code, rows) = run(&server, &eve, &["thread", "design", "1"]);
    assert_eq!(code, Some(1), "a non-member cannot read the thread");
    assert!(rows.is_empty());
    let (code, _) = run(&server, &bob, &["reply", "design", "2", "nested"]);
    assert_eq!(code, Some(1), "a reply is no root");

    // It resumes from its cursor file: each reply once, in order, with its
    // root; then the thread grows live.
    let resume = ["watch", "--cursor-file", cursor, "design"];
    let watch = Watch::start(courier(&server, &bob, &resume));
    let got: Vec<_> = (0..3).map(|_| line(&next_json(&watch))).collect();
    assert_eq!(
        got,
        vec![
            (3, "ok".into(), Some(1)),
            (4, "shipping".into(), Some(1)),
            (5, "other topic".into(), None),
        ]
    );
    run_ok(&server, &alice, &["reply", "design", "1", "done"]);
    assert_eq!(line(&next_json(&watch)), (6, "done".into(), Some(1)));
    assert!(watch.quiet(), "nothing twice");

    // History rows: replies name their root, the root counts them.
    let rows = run_ok(&server, &bob, &["history", "design"]);
    let view: Vec<_> = rows
        .iter()
        .map(|r| (line(r), r["reply_count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        view,
        vec![
            ((1, "shall we ship?".into(), None), 4),
            ((2, "yes, friday".into(), Some(1)), 0),
            ((3, "ok".into(), Some(1)), 0),
            ((4, "shipping".into(), Some(1)), 0),
            ((5, "other topic".into(), None), 0),
            ((6, "done".into(), Some(1)), 0),
        ]
    );
    assert_eq!(rows[0]["participants"].as_array().unwrap().len(), 2);
    // The thread view: the root, then its replies.
    let thread = run_ok(&server, &bob, &["thread", "design", "1"]);
    let seqs: Vec<u64> = thread.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 6]);
    let short = run_ok(&server, &bob, &["thread", "design", "1", "--limit", "2"]);
    assert_eq!(short.len(), 3, "the root and two replies");
    // Unread for a newcomer: the root, the reply shown in the channel and
    // the other message; not the three thread-only replies.
    let carol = user("carol");
    run_ok(&server, &alice, &["channel", "invite", "design", "carol"]);
    let unread = run_ok(&server, &carol, &["unread"]);
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0]["unread"].as_u64(), Some(3));
}
