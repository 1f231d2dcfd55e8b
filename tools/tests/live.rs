//! Messages that live (issue 17) end to end against a real `courierd`
//! through the CLI: `edit`, `delete` and `react`; a `watch` that was
//! offline during the edit and the delete prints them (and a reaction)
//! exactly once when it resumes from its cursor file, then a live one;
//! `history --json` rows carry `edited`, `deleted` and `reactions`; and
//! the deleted text is printed nowhere — not by the resumed watch, not by
//! history, not by a fresh `watch --from-start`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cli_run;
mod watch;

use cli_run::{courier, id, run, run_ok};
use courier_tools::testkit::ServerProcess;
use serde_json::Value;
use std::time::Duration;
use watch::Watch;

const SECRET: &str = "the password is hunter2";

/// (type, seq, target, body or emoji) of a watch line.
fn summary(v: &Value) -> (String, u64, u64, String) {
    let text = if v["type"] == "reaction" {
        v["emoji"].as_str().unwrap().to_owned()
    } else {
        v["body"].as_str().unwrap().to_owned()
    };
    (
        v["type"].as_str().unwrap().to_owned(),
        v["seq"].as_u64().unwrap(),
        v["target"].as_u64().unwrap_or(0),
        text,
    )
}

fn s(t: &str, seq: u64, target: u64, text: &str) -> (String, u64, u64, String) {
    (t.into(), seq, target, text.into())
}

/// The watch's next line as JSON (None: no line within 10 s); a deleted
/// body is never printed.
fn next_json(watch: &Watch) -> Option<Value> {
    let line = watch.line()?;
    assert!(
        !line.contains("hunter2"),
        "a deleted body was printed: {line}"
    );
    Some(serde_json::from_str(&line).unwrap())
}

#[test]
fn an_offline_watcher_sees_edits_deletes_and_reactions_once_and_never_the_deleted_text() {
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
    let (alice, bob) = (user("alice"), user("bob"));
    run_ok(&server, &alice, &["channel", "create", "general"]);
    run_ok(&server, &alice, &["channel", "invite", "general", "bob"]);
    run_ok(&server, &alice, &["send", "general", "hello"]);
    run_ok(&server, &alice, &["send", "general", SECRET]);

    // Bob's watcher holds both messages, saves its cursor and goes away.
    let cursor = server.data_dir().with_file_name("bob.cursors");
    let cursor = cursor.to_str().unwrap();
    let watch_args = ["watch", "--from-start", "--cursor-file", cursor, "general"];
    {
        let watch = Watch::start(courier(&server, &bob, &watch_args));
        assert_eq!(summary(&next_json(&watch).unwrap()).1, 1);
        // The secret itself was printed before the delete: expected.
        let second = watch.next();
        assert!(second.contains("hunter2"));
        std::thread::sleep(Duration::from_millis(1200));
    }

    // While it is away: an edit, a delete, a reaction; bob may not edit
    // alice's message (exit 1, nothing changes).
    let edit = run_ok(&server, &alice, &["edit", "general", "1", "hello, world"]);
    assert_eq!(
        (edit[0]["type"].as_str(), edit[0]["seq"].as_u64()),
        (Some("edit"), Some(3))
    );
    run_ok(&server, &alice, &["delete", "general", "2"]);
    run_ok(&server, &bob, &["react", "general", "1", "+1"]);
    let (code, _) = run(&server, &bob, &["edit", "general", "1", "bob was here"]);
    assert_eq!(code, Some(1), "editing someone else's message is refused");
    let again = run_ok(&server, &alice, &["delete", "general", "2"]);
    assert_eq!(
        again[0]["changed"], false,
        "a second delete changes nothing"
    );

    // It comes back from its cursor file: the three changes, once, in order.
    let resume = ["watch", "--cursor-file", cursor, "general"];
    let watch = Watch::start(courier(&server, &bob, &resume));
    let got: Vec<_> = (0..3)
        .map(|_| summary(&next_json(&watch).unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            s("edit", 3, 1, "hello, world"),
            s("delete", 4, 2, ""),
            s("reaction", 5, 1, "+1"),
        ]
    );
    // And a live one.
    run_ok(&server, &alice, &["react", "general", "1", "tada"]);
    assert_eq!(
        summary(&next_json(&watch).unwrap()),
        s("reaction", 6, 1, "tada")
    );
    run_ok(&server, &bob, &["react", "general", "1", "+1", "--remove"]);
    let removed = next_json(&watch).unwrap();
    assert_eq!(
        (removed["type"].as_str(), removed["removed"].as_bool()),
        (Some("reaction"), Some(true))
    );
    assert!(watch.quiet(), "nothing twice");

    // History: the messages in their current state, changes applied.
    let rows = run_ok(&server, &bob, &["history", "general"]);
    assert!(!format!("{rows:?}").contains("hunter2"), "{rows:?}");
    let view: Vec<_> = rows
        .iter()
        .map(|r| {
            let reactions: Vec<String> = r["reactions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| format!("{}:{}", x["emoji"].as_str().unwrap(), x["count"]))
                .collect();
            (
                r["seq"].as_u64().unwrap(),
                r["body"].as_str().unwrap().to_owned(),
                r["edited"].as_bool().unwrap(),
                r["deleted"].as_bool().unwrap(),
                reactions,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (
                1,
                "hello, world".to_owned(),
                true,
                false,
                vec!["tada:1".to_owned()]
            ),
            (2, String::new(), false, true, vec![]),
        ]
    );
    // A fresh device from the start: the deleted text nowhere.
    let fresh = Watch::start(courier(
        &server,
        &bob,
        &["watch", "--from-start", "general"],
    ));
    for seq in 1..=7 {
        let line = next_json(&fresh).unwrap_or_else(|| panic!("seq {seq} not printed"));
        assert_eq!(line["seq"].as_u64(), Some(seq), "every seq once, in order");
    }
    assert!(fresh.quiet(), "nothing twice");
}
