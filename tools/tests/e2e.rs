//! End to end against a real `courierd` (found or built by
//! `courier_tools::testkit`): the quickstart through the CLI, and a `watch`
//! that keeps running while the server is killed with `kill -9` and
//! restarted on the same port and data directory, printing every
//! acknowledged message exactly once, in order; and the same when the
//! server moves between the addresses a client was given (`--server
//! ws://a,ws://b`), as when clients fail over between a cluster's nodes.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use courier_core::api::ConversationId;
use courier_tools::testkit::ServerProcess;
use courier_tools::{Client, ClientOptions, ConnectOptions, Outgoing};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `courier` command against `server` with a clean environment.
fn courier(server: &ServerProcess, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.env_remove("COURIER_TOKEN")
        .env(
            "COURIER_CONFIG",
            server.data_dir().with_file_name("cli-config.toml"),
        )
        .env("COURIER_SERVER", server.url())
        .args(["--token", token, "--json"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn run_ok(server: &ServerProcess, token: &str, args: &[&str]) -> Vec<Value> {
    let out: Output = courier(server, token, args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "courier {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An id the CLI printed: a JSON string of decimal digits.
fn id(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an id string: {v}"))
}

/// A workspace with users alice and bob and a channel `general` with both.
struct World {
    server: ServerProcess,
    alice: String,
    bob: String,
    bob_id: u64,
    general: u64,
}

fn world() -> World {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let admin = server.admin_token().unwrap();
    let ws = id(&run_ok(&server, &admin, &["admin", "create-workspace", "acme"])[0]["workspace"])
        .to_string();
    let alice = run_ok(
        &server,
        &admin,
        &["admin", "create-user", "--workspace", &ws, "alice"],
    );
    let bob = run_ok(
        &server,
        &admin,
        &["admin", "create-user", "--workspace", &ws, "bob"],
    );
    let alice_token = alice[0]["token"].as_str().unwrap().to_owned();
    let bob_token = bob[0]["token"].as_str().unwrap().to_owned();
    let general = run_ok(&server, &alice_token, &["channel", "create", "general"]);
    let general = id(&general[0]["conversation"]);
    run_ok(
        &server,
        &alice_token,
        &["channel", "invite", "general", "bob"],
    );
    World {
        server,
        alice: alice_token,
        bob: bob_token,
        bob_id: id(&bob[0]["user_id"]),
        general,
    }
}

#[test]
fn the_quickstart_works_through_the_cli() {
    let w = world();
    let sent = run_ok(&w.server, &w.alice, &["send", "general", "hello bob"]);
    assert_eq!(id(&sent[0]["conversation"]), w.general);
    assert_eq!(sent[0]["seq"], 1);
    let dm = run_ok(&w.server, &w.alice, &["dm", "bob"]);
    let dm_id = id(&dm[0]["conversation"]);
    let sent = run_ok(&w.server, &w.alice, &["send", "@bob", "psst"]);
    assert_eq!(id(&sent[0]["conversation"]), dm_id);
    let history = run_ok(&w.server, &w.bob, &["history", "general"]);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["body"], "hello bob");
    let unread = run_ok(&w.server, &w.bob, &["unread"]);
    assert_eq!(unread.len(), 2, "{unread:?}");
    run_ok(&w.server, &w.bob, &["read", "general"]);
    let unread = run_ok(&w.server, &w.bob, &["unread"]);
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert_eq!(id(&unread[0]["conversation"]), dm_id);
    let list = run_ok(&w.server, &w.bob, &["channel", "list"]);
    assert!(list.iter().any(|c| c["name"] == "general"));
    // Rejections exit with 1: bob cannot create workspaces.
    let out = courier(&w.server, &w.bob, &["admin", "create-workspace", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A running `courier watch`, its stdout lines on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(cmd: Command) -> Watch {
        Watch::start_logging(cmd, Stdio::null())
    }

    fn start_logging(mut cmd: Command, stderr: Stdio) -> Watch {
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    fn next(&self, timeout: Duration) -> Option<Value> {
        self.lines
            .recv_timeout(timeout)
            .ok()
            .map(|l| serde_json::from_str(&l).unwrap())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_prints_every_acknowledged_message_once_across_kill9_restarts() {
    let mut w = world();
    let stderr_path = w.server.data_dir().with_file_name("watch.stderr");
    let watch = Watch::start_logging(
        courier(&w.server, &w.bob, &["watch", "--from-start", "general"]),
        std::fs::File::create(&stderr_path).unwrap().into(),
    );
    // The sender acknowledges each message before the next; the server is
    // killed twice while it runs.
    let servers = w.server.url();
    send_disrupt_and_check(&mut w, servers, &watch, |server, _| {
        server.restart().unwrap(); // kill -9, then start on the same port and data
    });
    // The watch really lived through the restarts (it did not start late).
    let notices = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(notices.matches("reconnecting").count() >= 2, "{notices}");
}

/// Sends 60 messages to `general` as alice through a [`Client`] given
/// `servers`, each acknowledged before the next, and calls `disrupt` with
/// the server after the 15th and the 35th ack (disruption 0, then 1). Then
/// checks what a user would: the acks are gap-free and in order, and
/// `watch` printed every acknowledged message exactly once, in order, and
/// nothing more.
fn send_disrupt_and_check(
    w: &mut World,
    servers: String,
    watch: &Watch,
    mut disrupt: impl FnMut(&mut ServerProcess, usize),
) {
    let total = 60u64;
    let credential = courier_tools::token::parse(&w.alice).unwrap();
    let general = ConversationId(w.general);
    let (acked_tx, acked_rx) = mpsc::channel::<(u64, String)>();
    let sender = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut options = ClientOptions::new(ConnectOptions::new(servers, credential));
            options.retry_deadline = Some(Duration::from_secs(60));
            let mut client = Client::new(options);
            for i in 0..total {
                let body = format!("message {i}");
                let ack = client.send(general, &Outgoing::text(&body)).await.unwrap();
                acked_tx.send((ack.seq.0, body)).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    });
    let mut acked = Vec::new();
    for (disruption, after) in [15u64, 35].into_iter().enumerate() {
        while (acked.len() as u64) < after {
            acked.push(acked_rx.recv_timeout(Duration::from_secs(60)).unwrap());
        }
        disrupt(&mut w.server, disruption);
    }
    sender.join().unwrap();
    acked.extend(acked_rx.try_iter());
    let expected: Vec<(u64, String)> = (1..=total)
        .map(|s| (s, format!("message {}", s - 1)))
        .collect();
    assert_eq!(acked, expected, "acks are gap-free and in order");
    let mut printed = Vec::new();
    while (printed.len() as u64) < total {
        let m = watch
            .next(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("watch printed only {} lines", printed.len()));
        assert_eq!(id(&m["conversation"]), w.general);
        printed.push((
            m["seq"].as_u64().unwrap(),
            m["body"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        printed, expected,
        "every acknowledged message exactly once, in order"
    );
    assert!(
        watch.next(Duration::from_millis(500)).is_none(),
        "nothing printed twice"
    );
}

/// A loopback address no one listens on now (the OS's next ephemeral port).
fn unused_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn clients_given_several_servers_fail_over_when_the_server_moves() {
    let mut w = world();
    let first = w.server.addr();
    let second = unused_addr();
    let servers = format!("ws://{first}/,ws://{second}/");
    let stderr_path = w.server.data_dir().with_file_name("watch-failover.stderr");
    let mut watch_cmd = courier(&w.server, &w.bob, &["watch", "--from-start", "general"]);
    watch_cmd.env("COURIER_SERVER", &servers);
    let watch = Watch::start_logging(
        watch_cmd,
        std::fs::File::create(&stderr_path).unwrap().into(),
    );
    // kill -9, then the same data directory serves at the other address;
    // then back. Neither client is told: they have the list.
    send_disrupt_and_check(&mut w, servers, &watch, |server, disruption| {
        let to = [second, first][disruption];
        server.restart_at(to).unwrap();
        assert_eq!(server.addr(), to);
    });
    let notices = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        notices.contains(&format!("reconnected to ws://{second}/"))
            && notices.contains(&format!("reconnected to ws://{first}/")),
        "the watch followed the server to both addresses: {notices}"
    );
}

#[test]
fn a_bad_server_list_is_a_usage_error() {
    let w = world();
    for list in ["ws://127.0.0.1:1,", "ws://127.0.0.1:1,wss://h:2"] {
        let out = courier(&w.server, &w.alice, &["channel", "list"])
            .env("COURIER_SERVER", list)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{list}: {out:?}");
    }
}

#[test]
fn a_watch_with_a_cursor_file_resumes_after_the_last_printed_message() {
    let w = world();
    let dir = w.server.data_dir().with_file_name("cursors");
    let cursor = dir.to_str().unwrap().to_owned();
    for i in 0..3 {
        run_ok(
            &w.server,
            &w.alice,
            &["send", "general", &format!("first {i}")],
        );
    }
    {
        let watch = Watch::start(courier(
            &w.server,
            &w.bob,
            &["watch", "--from-start", "--cursor-file", &cursor],
        ));
        for _ in 0..3 {
            watch.next(Duration::from_secs(10)).unwrap();
        }
        // Let the cursor file be written (at most every 0.5 s).
        std::thread::sleep(Duration::from_millis(1200));
    }
    for i in 0..2 {
        run_ok(
            &w.server,
            &w.alice,
            &["send", "general", &format!("second {i}")],
        );
    }
    let watch = Watch::start(courier(
        &w.server,
        &w.bob,
        &["watch", "--cursor-file", &cursor],
    ));
    let a = watch.next(Duration::from_secs(10)).unwrap();
    let b = watch.next(Duration::from_secs(10)).unwrap();
    assert_eq!((a["seq"].as_u64(), b["seq"].as_u64()), (Some(4), Some(5)));
    assert!(watch.next(Duration::from_millis(500)).is_none());
}

#[test]
fn revoking_the_token_ends_a_watch_with_exit_code_1() {
    let w = world();
    let admin = w.server.admin_token().unwrap();
    let mut watch = Watch::start(courier(&w.server, &w.bob, &["watch"]));
    run_ok(&w.server, &w.alice, &["send", "general", "hi"]);
    // The watch may start after this send; it is only here to make sure the
    // watch is connected before the revocation (or it fails at connect).
    std::thread::sleep(Duration::from_millis(500));
    run_ok(
        &w.server,
        &admin,
        &["admin", "revoke-token", &w.bob_id.to_string()],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = watch.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "watch still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
}

/// A device that was away while another device of the same user read a
/// conversation, whose head did not move since, learns the new read
/// cursor from `Sync` on reconnect (docs/PROTOCOL.md §7): the raw reply
/// carries the conversation with the cursor, unread 0 and no messages, and
/// a `Session` reports it as a `ReadCursor` and keeps unread at 0.
#[test]
fn a_device_that_was_away_learns_the_read_cursor_from_sync() {
    use courier_core::api::Seq;
    use courier_tools::{Requester, Session, SessionEvent, SessionOptions};
    let w = world();
    for i in 0..3 {
        run_ok(&w.server, &w.alice, &["send", "general", &format!("m{i}")]);
    }
    let general = ConversationId(w.general);
    let credential = courier_tools::token::parse(&w.bob).unwrap();
    let options = ClientOptions::new(ConnectOptions::new(w.server.url(), credential));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let within = Duration::from_secs(30);
        // Device B: caught up, nothing read yet.
        let mut b = Session::open(SessionOptions::new(options.clone()))
            .await
            .unwrap();
        let first = tokio::time::timeout(within, b.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(first, SessionEvent::CaughtUp { .. }),
            "before catching up: {first:?}"
        );
        assert_eq!(b.tracker().read(general), Some(Seq(0)));
        assert_eq!(b.tracker().unread(general), Some(3));
        // B goes away; device A (the CLI) reads everything. No message
        // is sent meanwhile: the head stays at 3.
        b.client().disconnect();
        run_ok(&w.server, &w.bob, &["read", "general"]);
        // The raw exchange, as a client written from PROTOCOL.md sees it.
        let mut raw = Client::new(options.clone());
        let reply = raw
            .sync(vec![(general, Seq(3))], vec![Seq(0)])
            .await
            .unwrap();
        let entry = reply
            .changed
            .iter()
            .find(|c| c.info.id == general)
            .expect("the conversation whose read cursor moved is in the reply");
        assert_eq!(
            (entry.info.head, entry.info.read, entry.info.unread),
            (Seq(3), Seq(3), 0)
        );
        assert!(entry.messages.is_empty(), "{:?}", entry.messages);
        // Without read cursors (an older client): heads only, as before.
        let reply = raw.sync(vec![(general, Seq(3))], vec![]).await.unwrap();
        assert!(reply.changed.is_empty(), "{:?}", reply.changed);
        // B reconnects and syncs by itself.
        match tokio::time::timeout(within, b.next())
            .await
            .unwrap()
            .unwrap()
        {
            SessionEvent::ReadCursor { conversation, seq } => {
                assert_eq!((conversation, seq), (general, Seq(3)));
            }
            other => panic!("expected the read cursor from the sync: {other:?}"),
        }
        assert_eq!(b.tracker().read(general), Some(Seq(3)));
        assert_eq!(b.tracker().unread(general), Some(0));
    });
}
