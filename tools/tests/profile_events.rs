//! Profile events (issue 16, part 5) end to end against a real `courierd`
//! through the CLI: `admin create-user --display-name` names the user
//! before the token is printed (a bad name is refused before anything is
//! created), and a running `courier watch` shows a sender's new display
//! name on the line after they change it (the profile event drops the
//! name it cached).
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

/// Runs `courier --json`; (exit code, stdout rows, stderr).
fn run(server: &ServerProcess, token: &str, args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let out: Output = courier(server, token, true, args).output().unwrap();
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code(),
        rows,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(server: &ServerProcess, token: &str, args: &[&str]) -> Vec<Value> {
    let (code, rows, err) = run(server, token, args);
    assert_eq!(code, Some(0), "courier {args:?}: {err}");
    rows
}

#[test]
fn create_user_names_people_and_watch_follows_a_rename() {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let admin = server.admin_token().unwrap();
    let ws = ok(&server, &admin, &["admin", "create-workspace", "acme"])[0]["workspace"]
        .as_str()
        .unwrap()
        .to_owned();
    let create = |name: &str, display: &str| {
        let args = [
            "admin",
            "create-user",
            "--workspace",
            &ws,
            "--display-name",
            display,
            name,
        ];
        run(&server, &admin, &args)
    };
    let (code, rows, err) = create("alice", "Alice Liddell");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(rows[0]["display_name"], "Alice Liddell");
    let alice = rows[0]["token"].as_str().unwrap().to_owned();
    let (_, rows, _) = create("bob", "Bob");
    let bob = rows[0]["token"].as_str().unwrap().to_owned();
    // A display name over the limit: refused before the user exists.
    let long = "x".repeat(81);
    let (code, _, err) = create("carol", &long);
    assert_ne!(code, Some(0), "an 81-byte display name");
    assert!(err.contains("display_name"), "{err}");
    let (code, _, _) = run(&server, &bob, &["users", "get", "@carol"]);
    assert_ne!(code, Some(0), "carol was not created");
    let shown = ok(&server, &bob, &["users", "get", "@alice"]);
    assert_eq!(shown[0]["display_name"], "Alice Liddell");

    ok(&server, &alice, &["channel", "create", "tea"]);
    ok(&server, &alice, &["channel", "invite", "tea", "bob"]);
    let watch = Watch::start(courier(&server, &bob, false, &["watch", "tea"]));
    std::thread::sleep(Duration::from_millis(500));
    ok(&server, &alice, &["send", "tea", "hello"]);
    let line = watch.next();
    assert!(line.ends_with("<Alice Liddell> hello"), "{line}");
    // The rename's event reaches the watch before alice's next message
    // (both leave the servers in order): the next line has the new name.
    ok(
        &server,
        &alice,
        &["profile", "set", "--display-name", "Alice"],
    );
    std::thread::sleep(Duration::from_millis(300));
    ok(&server, &alice, &["send", "tea", "again"]);
    let line = watch.next();
    assert!(line.ends_with("<Alice> again"), "{line}");
}
