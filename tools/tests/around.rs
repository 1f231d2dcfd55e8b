//! Pins, typing and presence (issue 17, parts 3-4) end to end against a
//! real `courierd` through the CLI: `pin`, `unpin` and `pins`, a `watch
//! --json` printing pin events, `history --json` rows carrying `pinned`,
//! and the authorization rows (a non-member cannot pin); `typing` seen by
//! another member's `watch` (not by the typist's own, not from a
//! non-member); `presence --watch` following a user whose only device
//! connects, sets away and back, and disconnects; presence of a user of
//! another workspace is refused (`NotFound`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cli_run;
mod watch;

use cli_run::{courier, id, run, run_ok};
use courier_tools::testkit::ServerProcess;
use serde_json::Value;
use watch::Watch;

fn next_json(watch: &Watch) -> Value {
    serde_json::from_str(&watch.next()).unwrap()
}

/// A server with workspace `acme` (alice, bob, eve) and `other` (olga):
/// their tokens.
struct Setup {
    server: ServerProcess,
    alice: String,
    bob: String,
    eve: String,
    olga: String,
}

fn setup() -> Setup {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let admin = server.admin_token().unwrap();
    let workspace = |name: &str| {
        id(&run_ok(&server, &admin, &["admin", "create-workspace", name])[0]["workspace"])
    };
    let (acme, other) = (workspace("acme"), workspace("other"));
    let user = |ws: &str, name: &str| {
        let row = &run_ok(
            &server,
            &admin,
            &["admin", "create-user", "--workspace", ws, name],
        )[0];
        row["token"].as_str().unwrap().to_owned()
    };
    let (alice, bob, eve) = (user(&acme, "alice"), user(&acme, "bob"), user(&acme, "eve"));
    let olga = user(&other, "olga");
    Setup {
        server,
        alice,
        bob,
        eve,
        olga,
    }
}

#[test]
fn pins_through_the_cli_with_a_watcher() {
    let Setup {
        server,
        alice,
        bob,
        eve,
        olga: _,
    } = setup();
    run_ok(
        &server,
        &alice,
        &["channel", "create", "design", "--private"],
    );
    run_ok(&server, &alice, &["channel", "invite", "design", "bob"]);
    run_ok(&server, &alice, &["send", "design", "the spec"]);
    run_ok(&server, &alice, &["send", "design", "lunch?"]);
    let watch = Watch::start(courier(&server, &bob, &["watch", "design"]));
    std::thread::sleep(std::time::Duration::from_millis(500));

    // Bob pins alice's message; the watcher prints the pin event.
    let pin = run_ok(&server, &bob, &["pin", "design", "1"]);
    assert_eq!(
        (
            pin[0]["type"].as_str(),
            pin[0]["seq"].as_u64(),
            pin[0]["changed"].as_bool()
        ),
        (Some("pin"), Some(3), Some(true))
    );
    let event = next_json(&watch);
    assert_eq!(
        (
            event["type"].as_str(),
            event["target"].as_u64(),
            event["pinned"].as_bool()
        ),
        (Some("pin"), Some(1), Some(true))
    );
    let again = run_ok(&server, &alice, &["pin", "design", "1"]);
    assert_eq!(again[0]["changed"], false, "pinned already: unchanged");
    // Eve is not in the private channel: she can neither pin nor list.
    assert_eq!(run(&server, &eve, &["pin", "design", "2"]).0, Some(1));
    assert_eq!(run(&server, &eve, &["pins", "design"]).0, Some(1));

    run_ok(&server, &alice, &["pin", "design", "2"]);
    assert_eq!(next_json(&watch)["target"].as_u64(), Some(2));
    let pinned: Vec<(u64, String)> = run_ok(&server, &bob, &["pins", "design"])
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pinned,
        vec![(2, "lunch?".to_owned()), (1, "the spec".to_owned())],
        "newest first"
    );

    // Unpinned: the watcher sees it, history and pins agree.
    run_ok(&server, &bob, &["unpin", "design", "2"]);
    let event = next_json(&watch);
    assert_eq!(
        (
            event["type"].as_str(),
            event["target"].as_u64(),
            event["pinned"].as_bool()
        ),
        (Some("pin"), Some(2), Some(false))
    );
    let history: Vec<(u64, bool)> = run_ok(&server, &bob, &["history", "design"])
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r["pinned"].as_bool().unwrap()))
        .collect();
    assert_eq!(history, vec![(1, true), (2, false)]);
    let pins = run_ok(&server, &alice, &["pins", "design"]);
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0]["seq"].as_u64(), Some(1));
    assert!(watch.quiet(), "nothing twice");
}

#[test]
fn typing_reaches_the_other_members_watch_only() {
    let Setup {
        server,
        alice,
        bob,
        eve,
        olga: _,
    } = setup();
    run_ok(
        &server,
        &alice,
        &["channel", "create", "design", "--private"],
    );
    run_ok(&server, &alice, &["channel", "invite", "design", "bob"]);
    let alice_id = run_ok(&server, &alice, &["whoami"])[0]["user"].clone();
    let bobs = Watch::start(courier(&server, &bob, &["watch", "design"]));
    let alices = Watch::start(courier(&server, &alice, &["watch", "design"]));
    std::thread::sleep(std::time::Duration::from_millis(800));
    run_ok(&server, &alice, &["typing", "design"]);
    let line = next_json(&bobs);
    assert_eq!(
        (
            line["type"].as_str(),
            &line["user"],
            line["expires_ms"].as_u64()
        ),
        (Some("typing"), &alice_id, Some(6_000))
    );
    assert!(alices.quiet(), "the typist's own session does not see it");
    // Eve is not a member: refused, and nobody sees anything.
    assert_eq!(run(&server, &eve, &["typing", "design"]).0, Some(1));
    assert!(bobs.quiet(), "nothing from a non-member");
    // Typing is not a message: nothing unread.
    let unread = run_ok(&server, &bob, &["unread"]);
    assert!(unread.is_empty(), "{unread:?}");
}

#[test]
fn presence_follows_devices_and_away() {
    let Setup {
        server,
        alice,
        bob,
        eve: _,
        olga,
    } = setup();
    let watch = Watch::start(courier(&server, &bob, &["presence", "alice", "--watch"]));
    let state = |w: &Watch| next_json(w)["presence"].as_str().unwrap().to_owned();
    assert_eq!(state(&watch), "away", "GetPresence: no device");
    assert_eq!(
        state(&watch),
        "away",
        "the watch's first event: the state now"
    );
    let device = Watch::start(courier(&server, &alice, &["watch"]));
    assert_eq!(state(&watch), "active", "a device connected");
    run_ok(&server, &alice, &["away", "on"]);
    assert_eq!(state(&watch), "away", "away by hand");
    run_ok(&server, &alice, &["away", "off"]);
    assert_eq!(state(&watch), "active", "back");
    drop(device);
    assert_eq!(state(&watch), "away", "the last device went");
    assert!(watch.quiet(), "one event per change");
    // Another workspace's user: NotFound (exit 1), for a name or an id.
    assert_eq!(run(&server, &olga, &["presence", "alice"]).0, Some(1));
    let alice_id = run_ok(&server, &alice, &["whoami"])[0]["user"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(run(&server, &olga, &["presence", &alice_id]).0, Some(1));
}
