//! Channel settings (issue 16, part 4) end to end against a real
//! `courierd` through the CLI: `channel topic|purpose|rename|archive|
//! unarchive|posting`; a `watch` prints each setting event as it happens
//! ("alice set the topic: …"), `history` shows them in the timeline,
//! `channel list --json` carries the current settings, an archived channel
//! refuses a post (exit 1, the typed reason) but stays readable, an
//! admins-only channel refuses a member's post, and a rename moves the
//! name (the old one no longer resolves).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod watch;

use courier_tools::testkit::ServerProcess;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use watch::Watch;

/// A `courier` command against `server` with a clean environment.
fn courier(server: &ServerProcess, token: &str, json: bool, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.env_remove("COURIER_TOKEN")
        .env(
            "COURIER_CONFIG",
            server.data_dir().with_file_name("cli-config.toml"),
        )
        .env("COURIER_SERVER", server.url())
        .args(["--token", token])
        .args(if json { &["--json"][..] } else { &[][..] })
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn run(server: &ServerProcess, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = courier(server, token, false, args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_json(server: &ServerProcess, token: &str, args: &[&str]) -> Vec<Value> {
    let out: Output = courier(server, token, true, args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "courier {args:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn settings_through_the_cli_are_events_every_reader_sees() {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let admin = server.admin_token().unwrap();
    let ws = run_json(&server, &admin, &["admin", "create-workspace", "acme"])[0]["workspace"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = |name: &str, role: &str| {
        let row = &run_json(
            &server,
            &admin,
            &[
                "admin",
                "create-user",
                "--workspace",
                &ws,
                "--role",
                role,
                name,
            ],
        )[0];
        row["token"].as_str().unwrap().to_owned()
    };
    let (alice, bob) = (user("alice", "member"), user("bob", "member"));
    let carol = user("carol", "admin");
    let ok = |token: &str, args: &[&str]| {
        let (code, out, err) = run(&server, token, args);
        assert_eq!(code, Some(0), "courier {args:?}: {err}");
        out
    };
    ok(&alice, &["channel", "create", "launch"]);
    ok(&alice, &["channel", "invite", "launch", "bob"]);
    ok(&alice, &["channel", "invite", "launch", "carol"]);
    let watch = Watch::start(courier(&server, &bob, false, &["watch", "launch"]));
    std::thread::sleep(Duration::from_millis(500));

    let set = ok(&alice, &["channel", "topic", "launch", "ship it friday"]);
    assert!(set.contains("set the topic: ship it friday"), "{set}");
    assert!(watch.next().ends_with("> set the topic: ship it friday"));
    ok(&bob, &["channel", "purpose", "launch", "launch talk"]);
    assert!(watch.next().ends_with("> set the purpose: launch talk"));
    let same = ok(&bob, &["channel", "purpose", "launch", "launch talk"]);
    assert_eq!(same.trim(), "unchanged");

    // Only admins and the creator rename: bob is refused, alice renames.
    let (code, _, err) = run(&server, &bob, &["channel", "rename", "launch", "ship"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not allowed"), "{err}");
    ok(&alice, &["channel", "rename", "launch", "ship"]);
    assert!(watch.next().ends_with("> renamed the channel to #ship"));
    let (code, _, _) = run(&server, &bob, &["send", "launch", "old name?"]);
    assert_eq!(code, Some(1), "the old name no longer resolves");

    // Archived: read-only, still readable; then unarchived.
    ok(&alice, &["channel", "archive", "ship"]);
    assert!(watch.next().ends_with("> archived the channel (read-only)"));
    let (code, _, err) = run(&server, &bob, &["send", "ship", "anyone?"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("archived"), "{err}");
    let list = run_json(&server, &bob, &["channel", "list"]);
    let row = list.iter().find(|r| r["name"] == "ship").unwrap();
    assert_eq!(
        (row["topic"].as_str(), row["archived"].as_bool()),
        (Some("ship it friday"), Some(true))
    );
    ok(&alice, &["channel", "unarchive", "ship"]);
    assert!(watch.next().ends_with("> unarchived the channel"));

    // Who may post: workspace admins decide (alice created the channel but
    // is a member: refused); admins-only refuses bob's post, not carol's.
    let (code, _, err) = run(&server, &alice, &["channel", "posting", "ship", "admins"]);
    assert_eq!(code, Some(1), "{err}");
    ok(&carol, &["channel", "posting", "ship", "admins"]);
    assert!(watch.next().ends_with("> made posting admins-only"));
    let (code, _, err) = run(&server, &bob, &["send", "ship", "may I?"]);
    assert_eq!(code, Some(1), "{err}");
    ok(&carol, &["channel", "posting", "ship", "everyone"]);
    assert!(watch.next().ends_with("> let everyone post"));

    ok(&bob, &["send", "ship", "back to work"]);
    let line = watch.next();
    assert!(line.ends_with("> back to work"), "{line}");
    assert!(
        line.starts_with("[#ship #"),
        "watch follows the rename: {line}"
    );

    // History shows the settings in the timeline, in order.
    let history = ok(&bob, &["history", "ship"]);
    let lines: Vec<&str> = history.lines().collect();
    let tails: Vec<String> = lines
        .iter()
        .map(|l| l.split("> ").nth(1).unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        tails,
        vec![
            "set the topic: ship it friday",
            "set the purpose: launch talk",
            "renamed the channel to #ship",
            "archived the channel (read-only)",
            "unarchived the channel",
            "made posting admins-only",
            "let everyone post",
            "back to work",
        ],
        "{history}"
    );
    // `--json` rows name the setting and its value.
    let rows = run_json(&server, &bob, &["history", "ship"]);
    assert_eq!(rows[0]["type"], "topic");
    assert_eq!(rows[0]["value"], "ship it friday");
}
