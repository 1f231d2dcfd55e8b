//! End-to-end tests of `courierd` over real sockets: a real daemon process,
//! a temp data directory, real WebSocket clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use courier_core::api::*;
use courier_proto::close;
use std::time::Duration;

#[test]
fn two_users_chat_in_a_channel_and_a_dm_in_order() {
    let server = Server::start(2);
    let w = world(&server, &["ann", "bob"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let mut bob = Client::login(server.addr, &w.users[1].1);

    let general = conversation(ann.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));
    conversation(bob.request(Request::Join {
        conversation: general,
    }));
    let dm = conversation(ann.request(Request::OpenDm {
        users: vec![w.users[1].0],
    }));
    // Opening the same DM from the other side yields the same conversation.
    assert_eq!(
        conversation(bob.request(Request::OpenDm {
            users: vec![w.users[0].0]
        })),
        dm
    );

    for i in 1..=20u64 {
        let (conv, from, body) = if i % 2 == 0 {
            (general, &mut ann, format!("g{i}"))
        } else {
            (dm, &mut bob, format!("d{i}"))
        };
        from.send(conv, &body);
    }
    for client in [&mut ann, &mut bob] {
        let mut seen: std::collections::HashMap<ConversationId, Vec<(Seq, String)>> =
            Default::default();
        while seen.values().map(Vec::len).sum::<usize>() < 20 {
            let m = client.next_message();
            seen.entry(m.conversation)
                .or_default()
                .push((m.seq, m.body));
        }
        let general_seen: Vec<_> = seen[&general].iter().map(|(s, _)| s.0).collect();
        assert_eq!(general_seen, (1..=10).collect::<Vec<_>>());
        let dm_bodies: Vec<_> = seen[&dm].iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(
            dm_bodies,
            (1..=10)
                .map(|i| format!("d{}", 2 * i - 1))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn every_device_of_a_user_sees_messages_and_cursor_moves() {
    let server = Server::start(2);
    let w = world(&server, &["ann", "bob"]);
    let mut laptop = Client::login(server.addr, &w.users[0].1);
    let mut phone = Client::login(server.addr, &w.users[0].1);
    let mut bob = Client::login(server.addr, &w.users[1].1);
    let dm = conversation(bob.request(Request::OpenDm {
        users: vec![w.users[0].0],
    }));
    let seq = bob.send(dm, "hello ann");
    for device in [&mut laptop, &mut phone] {
        let m = device.next_message();
        assert_eq!(
            (m.conversation, m.seq, m.body.as_str()),
            (dm, seq, "hello ann")
        );
    }
    assert_eq!(
        laptop.request(Request::MarkRead {
            conversation: dm,
            seq
        }),
        Ok(Response::Done)
    );
    loop {
        match phone.next_event() {
            Event::ReadCursor {
                conversation,
                seq: s,
            } => {
                assert_eq!((conversation, s), (dm, seq));
                break;
            }
            Event::Message(m) => panic!("unexpected {m:?}"),
            _ => continue,
        }
    }
    // A message one device sends reaches the user's other device too.
    let s2 = laptop.send(dm, "from laptop");
    let m = phone.next_message();
    assert_eq!((m.seq, m.body.as_str()), (s2, "from laptop"));
}

#[test]
fn a_reconnecting_client_syncs_exactly_what_it_missed() {
    let server = Server::start(2);
    let w = world(&server, &["ann", "bob"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let general = conversation(ann.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));
    let mut bob = Client::login(server.addr, &w.users[1].1);
    conversation(bob.request(Request::Join {
        conversation: general,
    }));
    for i in 1..=3 {
        ann.send(general, &format!("before {i}"));
    }
    let mut last = Seq(0);
    while last < Seq(3) {
        let m = bob.next_message();
        assert_eq!(m.seq.0, last.0 + 1);
        last = m.seq;
    }
    drop(bob); // bob goes offline
    for i in 4..=10 {
        ann.send(general, &format!("missed {i}"));
    }
    let mut bob = Client::login(server.addr, &w.users[1].1);
    let reply = bob
        .request(Request::Sync {
            cursors: vec![(general, last)],
            reads: vec![],
        })
        .unwrap();
    let Response::Sync { changed, gone } = reply else {
        panic!("{reply:?}")
    };
    assert!(gone.is_empty());
    let c = changed
        .iter()
        .find(|c| c.info.id == general)
        .expect("general changed");
    assert!(!c.truncated);
    let seqs: Vec<u64> = c.messages.iter().map(|m| m.seq.0).collect();
    assert_eq!(seqs, (4..=10).collect::<Vec<_>>());
    assert_eq!(c.info.head, Seq(10));
    assert_eq!(c.messages[0].body, "missed 4");
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let mut server = Server::start(2);
    let w = world(&server, &["ann", "bob"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let general = conversation(ann.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));
    let dm = conversation(ann.request(Request::OpenDm {
        users: vec![w.users[1].0],
    }));
    let mut acked = Vec::new();
    for i in 0..50 {
        let conv = if i % 3 == 0 { dm } else { general };
        acked.push((conv, ann.send(conv, &format!("m{i}")), format!("m{i}")));
    }
    server.kill9();
    server.restart();
    let mut ann = Client::login(server.addr, &w.users[0].1);
    for conv in [general, dm] {
        let page = ann
            .request(Request::History {
                conversation: conv,
                anchor: HistoryAnchor::After(Seq(0)),
                limit: 100,
            })
            .unwrap();
        let Response::History { messages, .. } = page else {
            panic!("{page:?}")
        };
        let want: Vec<(Seq, String)> = acked
            .iter()
            .filter(|a| a.0 == conv)
            .map(|a| (a.1, a.2.clone()))
            .collect();
        let got: Vec<(Seq, String)> = messages.into_iter().map(|m| (m.seq, m.body)).collect();
        assert_eq!(got, want);
    }
    // The server keeps numbering after the last durable message.
    let next = ann.send(general, "after restart");
    assert_eq!(
        next.0,
        acked.iter().filter(|a| a.0 == general).count() as u64 + 1
    );
}

/// A restart names each start phase in the log, in order, per shard (so a
/// slow start names the phase it is stuck in), and ends serving.
#[test]
fn a_restart_logs_every_start_phase_in_order() {
    let mut server = Server::start(2);
    server.kill9();
    server.restart();
    let log = server.log();
    let last = log
        .rfind("start: opening the data directory")
        .expect("the restart's first start line");
    let lines: Vec<&str> = log[last..].lines().collect();
    let position = |what: &str, shard: Option<u16>| {
        lines
            .iter()
            .position(|l| {
                l.contains(what) && shard.is_none_or(|k| l.contains(&format!("shard={k}")))
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {what:?} (shard {shard:?}) in the restart's log:\n{}",
                    log[last..].to_owned()
                )
            })
    };
    let locked = position("start: data directory locked", None);
    for k in 0..2 {
        let phases = [
            "start: connecting the channels to the other shards",
            "start: channels connected; opening the write-ahead log",
            "write-ahead log opened",
            "recovered",
            "start: core started",
            "start: listening",
            "start: shard serving",
        ];
        let mut previous = locked;
        for phase in phases {
            let at = position(phase, Some(k));
            assert!(
                at > previous,
                "shard {k}: {phase:?} out of order:\n{}",
                lines.join("\n")
            );
            previous = at;
        }
    }
    let all = position("start: every shard serves", None);
    assert!(all > position("start: shard serving", Some(0)));
    assert!(all > position("start: shard serving", Some(1)));
    assert!(position("serving addr=", None) > all);
}

#[test]
fn hostile_frames_get_errors_or_closes_and_others_are_unaffected() {
    let server = Server::start(2);
    let w = world(&server, &["ann", "bob"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let general = conversation(ann.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));

    // A request before Hello is refused.
    let mut anon = server.connect();
    assert_eq!(
        anon.request(Request::ListConversations),
        Err(Reject::Unauthenticated)
    );

    // Garbage bytes: a BadFrame error, the connection stays usable.
    let mut junk = Client::login(server.addr, &w.users[1].1);
    junk.send_raw(vec![0xde, 0xad, 0xbe, 0xef]);
    match junk.read_frame() {
        Ok(courier_proto::ServerFrame::Reply {
            req: 0,
            result: Err(Reject::Invalid(msg)),
        }) => {
            assert!(msg.contains("not a valid Frame"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        junk.request(Request::ListConversations),
        Ok(Response::Conversations(_))
    ));

    // A bad token: Unauthenticated, then close 4001.
    let mut bad = server.connect();
    let fake = Credential::User {
        user: w.users[0].0,
        token: 1,
        secret: [0; 32],
    };
    assert_eq!(bad.hello(fake), Err(Reject::Unauthenticated));
    assert_eq!(bad.expect_close(), Some(close::UNAUTHENTICATED));

    // An oversize message: close 1009.
    let mut big = Client::login(server.addr, &w.users[1].1);
    big.send_raw(vec![0u8; 300 * 1024]);
    assert_eq!(big.expect_close(), Some(close::MESSAGE_TOO_BIG));

    // A text message: close 1003.
    let mut text = Client::login(server.addr, &w.users[1].1);
    text.ws
        .send(tungstenite::Message::Text("hello".into()))
        .unwrap();
    assert_eq!(text.expect_close(), Some(close::UNSUPPORTED_DATA));

    // Many malformed frames: close 1008 at the 16th. (Not more than 16: a
    // write after the server closed fails with a broken pipe, which made
    // this test flaky on a loaded machine.)
    let mut spam = Client::login(server.addr, &w.users[1].1);
    for _ in 0..16 {
        spam.send_raw(vec![1, 2, 3]);
    }
    assert_eq!(spam.expect_close(), Some(close::POLICY_VIOLATION));

    // Plain HTTP on the port.
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".into()));
    let (code, metrics) = server.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("courier_bad_frames_total{shard="),
        "{metrics}"
    );
    assert_eq!(server.http_get("/nope").0, 404);

    // Everyone else is fine.
    let seq = ann.send(general, "still here");
    assert_eq!(seq, Seq(1));
}

#[test]
fn no_hello_in_time_is_closed() {
    let server = Server::start_with(1, &["--preauth-timeout-secs", "1"]);
    let mut c = server.connect();
    let started = std::time::Instant::now();
    assert_eq!(c.expect_close(), Some(close::AUTH_TIMEOUT));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut server = Server::start(2);
    let w = world(&server, &["ann"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let general = conversation(ann.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));
    ann.send(general, "one");
    assert_eq!(server.terminate(), Some(0));
    assert_eq!(ann.expect_close(), Some(close::GOING_AWAY));
    server.restart();
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let page = ann
        .request(Request::History {
            conversation: general,
            anchor: HistoryAnchor::Latest,
            limit: 10,
        })
        .unwrap();
    assert!(
        matches!(page, Response::History { head: Seq(1), .. }),
        "{page:?}"
    );
}

#[test]
fn a_second_daemon_and_a_different_shard_count_are_refused() {
    let mut server = Server::start(2);
    let data_dir = server.data_dir();
    let run = |shards: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_courierd"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--shards", shards])
            .output()
            .unwrap()
    };
    let out = run("2");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    server.kill9();
    let out = run("3");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("created with 2 shards"));
}

#[test]
fn requests_over_the_rate_limit_are_refused_with_a_wait() {
    let server = Server::start_with(
        1,
        &["--rate-conn-per-sec", "5", "--rate-user-per-sec", "1000"],
    );
    let w = world(&server, &["ann"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let mut limited = 0;
    let mut waits = Vec::new();
    for _ in 0..30 {
        match ann.request(Request::ListConversations) {
            Ok(Response::Conversations(_)) => {}
            Err(Reject::RateLimited { retry_after_ms, .. }) => {
                limited += 1;
                waits.push(retry_after_ms);
            }
            other => panic!("{other:?}"),
        }
    }
    // A burst of 2×5 passes, the rest is refused with a positive wait.
    assert!((15..=21).contains(&limited), "limited {limited} of 30");
    assert!(waits.iter().all(|w| (1..=1000).contains(w)), "{waits:?}");
    std::thread::sleep(Duration::from_millis(
        waits.iter().copied().max().unwrap_or(0) + 50,
    ));
    assert!(matches!(
        ann.request(Request::ListConversations),
        Ok(Response::Conversations(_))
    ));
    let (_, metrics) = server.http_get("/metrics");
    assert!(
        metrics.contains("courier_rate_limited_total{shard=\"0\"} "),
        "{metrics}"
    );
}

#[test]
fn the_refusals_and_send_rules_in_protocol_md_hold_over_the_wire() {
    // docs/PROTOCOL.md §5 ("Refusals") and §6, checked against a real
    // daemon rather than restated from the code.
    let server = Server::start(2);
    let w = world(&server, &["ann", "bob", "cat"]);
    let (ann_id, bob_id, cat_id) = (w.users[0].0, w.users[1].0, w.users[2].0);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let mut bob = Client::login(server.addr, &w.users[1].1);
    let mut admin = server.admin();
    let other = match admin.request(Request::CreateWorkspace {
        name: "other".into(),
    }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let (stranger, _) = issued_credential(admin.request(Request::CreateUser {
        workspace: other,
        name: "stranger".into(),
    }));
    let general = conversation(ann.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));
    // Send to a public channel one has not joined: NotFound.
    let send = |c: &mut Client, id: u128, body: &str| {
        c.request(Request::Send {
            conversation: general,
            client_msg_id: id,
            body: body.into(),
            mentions: vec![],
            broadcast: Broadcast::None,
        })
    };
    assert_eq!(send(&mut bob, 1, "hi"), Err(Reject::NotFound));
    // Invite across workspaces: NotFound.
    let invite = |c: &mut Client, user: UserId| {
        c.request(Request::Invite {
            conversation: general,
            user,
        })
    };
    assert_eq!(invite(&mut ann, stranger), Err(Reject::NotFound));
    assert_eq!(invite(&mut ann, bob_id), Ok(Response::Done));
    assert_eq!(invite(&mut ann, cat_id), Ok(Response::Done));
    // Remove by a member who is not the creator: NotAdmin.
    assert_eq!(
        bob.request(Request::Remove {
            conversation: general,
            user: cat_id,
        }),
        Err(Reject::NotAdmin)
    );
    // OpenDm with nobody or only oneself: Invalid; Leave of a DM: Invalid.
    for users in [vec![], vec![ann_id]] {
        assert!(
            matches!(ann.request(Request::OpenDm { users }), Err(Reject::Invalid(m)) if m.starts_with("users")),
        );
    }
    let dm = conversation(ann.request(Request::OpenDm {
        users: vec![bob_id],
    }));
    assert!(matches!(
        ann.request(Request::Leave { conversation: dm }),
        Err(Reject::Invalid(_))
    ));
    // A retry with the same client_msg_id and another body: the first ack,
    // and only the first body is stored.
    let first = send(&mut ann, 77, "first");
    assert!(matches!(first, Ok(Response::SendAck { .. })), "{first:?}");
    assert_eq!(send(&mut ann, 77, "second"), first);
    let Ok(Response::SendAck { seq, .. }) = first else {
        unreachable!()
    };
    match ann.request(Request::History {
        conversation: general,
        anchor: HistoryAnchor::Latest,
        limit: 10,
    }) {
        Ok(Response::History { messages, head }) => {
            assert_eq!(head, seq);
            let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
            assert_eq!(bodies, ["first"]);
        }
        other => panic!("{other:?}"),
    }
    // One's own send moved one's own cursor; MarkRead past the head clamps
    // and a lower seq never moves it back.
    let read_of = |c: &mut Client| match c.request(Request::ListConversations) {
        Ok(Response::Conversations(list)) => {
            let g = list.iter().find(|i| i.id == general).unwrap();
            (g.read, g.unread)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(read_of(&mut ann), (seq, 0));
    assert_eq!(read_of(&mut bob), (Seq(0), 1));
    let mark = |c: &mut Client, s: u64| {
        c.request(Request::MarkRead {
            conversation: general,
            seq: Seq(s),
        })
    };
    assert_eq!(mark(&mut bob, 1_000), Ok(Response::Done));
    assert_eq!(read_of(&mut bob), (seq, 0));
    assert_eq!(mark(&mut bob, 0), Ok(Response::Done));
    assert_eq!(read_of(&mut bob), (seq, 0));
}

/// Sends `n` messages at once on one connection of the client library,
/// each retried after `retry_after_ms` whenever it is refused (what a
/// client that honours only `retry_after_ms` does); returns the refusals and
/// how long until every send was acknowledged.
fn burst_of_sends(
    server: &Server,
    credential: &Credential,
    conversation: ConversationId,
    n: usize,
    pace: bool,
) -> (u64, Duration) {
    use courier_tools::{ClientError, ConnectOptions, Connection};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut options = ConnectOptions::new(format!("ws://{}/", server.addr), credential.clone());
        options.pace = pace;
        let (conn, _events) = Connection::connect(&options).await.unwrap();
        let refusals = Arc::new(AtomicU64::new(0));
        let started = std::time::Instant::now();
        let sends: Vec<_> = (0..n)
            .map(|i| {
                let conn = conn.clone();
                let refusals = refusals.clone();
                let request = Request::Send {
                    conversation,
                    client_msg_id: rand_u128(),
                    body: format!("burst {i}"),
                    mentions: vec![],
                    broadcast: Broadcast::None,
                };
                tokio::spawn(async move {
                    loop {
                        match conn.request(request.clone()).await {
                            Ok(Response::SendAck { .. }) => return,
                            Err(ClientError::Rejected(Reject::RateLimited {
                                retry_after_ms,
                                ..
                            })) => {
                                refusals.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
                            }
                            other => panic!("send failed: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for send in sends {
            send.await.unwrap();
        }
        (refusals.load(Ordering::Relaxed), started.elapsed())
    })
}

#[test]
fn clients_learn_the_request_budget_and_a_pacing_client_is_not_refused() {
    // Issue 12: 50 sends over the budget, each retried after its
    // `retry_after_ms` (≤ 10 ms at 100/s), drew about a thousand refusals:
    // every retry woke when one token was free. Welcome now states the
    // budgets, RateLimited the one that refused, and the client library
    // paces itself by them.
    let server = Server::start_with(
        1,
        &["--rate-conn-per-sec", "100", "--rate-user-per-sec", "1000"],
    );
    let w = world(&server, &["ann"]);
    let ann = &w.users[0].1;
    let mut c = Client::connect(server.addr);
    match c.hello(ann.clone()) {
        Ok(Response::Welcome {
            conn_rate,
            user_rate,
            ..
        }) => {
            assert_eq!(
                conn_rate,
                RateLimit {
                    per_sec: 100,
                    burst: 200
                }
            );
            assert_eq!(
                user_rate,
                RateLimit {
                    per_sec: 1000,
                    burst: 2000
                }
            );
        }
        other => panic!("{other:?}"),
    }
    let room = conversation(c.request(Request::CreateChannel {
        name: "room".into(),
        private: false,
    }));
    // A refusal names the budget that refused.
    let refusal = (0..400)
        .find_map(|_| c.request(Request::ListConversations).err())
        .expect("400 requests at once were never refused");
    match refusal {
        Reject::RateLimited {
            retry_after_ms,
            limit,
        } => {
            assert!((1..=10).contains(&retry_after_ms), "{retry_after_ms}");
            assert_eq!(
                limit,
                RateLimit {
                    per_sec: 100,
                    burst: 200
                }
            );
        }
        other => panic!("{other:?}"),
    }
    // The burst of 200 spent and 50 more at once: 250 concurrent sends on a
    // fresh connection, as the library sent them before (no pacing) and now.
    let (unpaced, unpaced_took) = burst_of_sends(&server, ann, room, 250, false);
    let (paced, paced_took) = burst_of_sends(&server, ann, room, 250, true);
    eprintln!(
        "rate: 250 sends at once, budget 100/s bursts of 200: {unpaced} refusals in {unpaced_took:?} unpaced, {paced} refusals in {paced_took:?} paced"
    );
    assert!(
        unpaced >= 50,
        "the unpaced burst was refused only {unpaced} times"
    );
    assert!(paced <= 5, "the paced burst was refused {paced} times");
}

fn paced_total(server: &Server) -> u64 {
    let (_, metrics) = server.http_get("/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("courier_workspace_paced_total{shard=\"0\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pacing counter: {metrics}"))
}

#[test]
fn a_workspace_over_its_rate_is_paced_and_other_workspaces_are_not() {
    let server = Server::start_with(
        1,
        &[
            "--rate-conn-per-sec",
            "0",
            "--rate-user-per-sec",
            "0",
            "--rate-workspace-per-sec",
            "10",
        ],
    );
    let w = world(&server, &["ann", "bob"]);
    let mut admin = server.admin();
    let globex = match admin.request(Request::CreateWorkspace {
        name: "globex".into(),
    }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let (_, carl) = issued_credential(admin.request(Request::CreateUser {
        workspace: globex,
        name: "carl".into(),
    }));
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let mut bob = Client::login(server.addr, &w.users[1].1);
    let mut carl = Client::login(server.addr, &carl);
    // 40 requests of one workspace over two users: a burst of 2×10 passes,
    // the other 20 wait for the rate (≥ 2 s). Every one is answered.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        for c in [&mut ann, &mut bob] {
            assert!(matches!(
                c.request(Request::ListConversations),
                Ok(Response::Conversations(_))
            ));
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_800),
        "40 requests at 10/s (bursts of 20) took {:?}",
        started.elapsed()
    );
    let paced = paced_total(&server);
    assert!(paced >= 1, "paced {paced}");
    // Another workspace has its own pace (its burst covers these).
    for _ in 0..15 {
        assert!(matches!(
            carl.request(Request::ListConversations),
            Ok(Response::Conversations(_))
        ));
    }
    assert_eq!(
        paced_total(&server),
        paced,
        "globex was paced for acme's load"
    );
}

#[test]
fn a_session_welcomed_late_is_not_closed_at_the_pre_auth_deadline() {
    // Regression (found by `courier-bench fairness`): the reader waited for
    // the next frame under the pre-auth deadline; a Welcome coming from
    // another shard during that wait did not extend it, so a client that
    // sent nothing after Hello was closed with 4010 "idle timeout" at the
    // pre-auth deadline. With six users on two shards, some Welcomes cross
    // shards.
    let server = Server::start_with(
        2,
        &["--preauth-timeout-secs", "1", "--idle-timeout-secs", "30"],
    );
    let w = world(&server, &["u0", "u1", "u2", "u3", "u4", "u5"]);
    let mut clients: Vec<Client> = w
        .users
        .iter()
        .map(|(_, credential)| Client::login(server.addr, credential))
        .collect();
    std::thread::sleep(Duration::from_millis(2_500));
    for c in &mut clients {
        assert!(matches!(
            c.request(Request::ListConversations),
            Ok(Response::Conversations(_))
        ));
    }
}

#[test]
fn a_member_that_only_receives_stays_connected_past_the_idle_timeout() {
    // The idle timeout counts frames from the client; a member that only
    // reads answers the server's pings, which must go out even while the
    // server is busy writing to it.
    let server = Server::start_with(1, &["--idle-timeout-secs", "2"]);
    let w = world(&server, &["ann", "bob"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let dm = conversation(ann.request(Request::OpenDm {
        users: vec![w.users[1].0],
    }));
    let mut bob = Client::login(server.addr, &w.users[1].1);
    let reader = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        loop {
            let m = bob.next_message();
            seqs.push(m.seq.0);
            if m.body == "done" {
                return seqs;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(5) {
        sent = ann.send(dm, "tick").0;
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = ann.send(dm, "done").0;
    assert_eq!(last, sent + 1);
    let seqs = reader.join().expect("bob was disconnected while reading");
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
}

#[test]
fn a_silent_member_is_not_closed_as_idle_at_the_preauth_deadline() {
    // Regression (fanout with 19,000 connections, PERFORMANCE.md problem
    // 4): the reader waited with the pre-auth deadline when its `Hello`
    // went to the core, the `Welcome` came during that wait (it waits for
    // the owners' watch verdicts, from other shards), and when the deadline
    // passed the session was authenticated, so it was closed 4010 "idle
    // timeout" long before the idle timeout.
    let server = Server::start_with(
        2,
        &["--preauth-timeout-secs", "1", "--idle-timeout-secs", "6"],
    );
    let w = world(&server, &["ann", "bob"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    // Conversations on both shards, so every Welcome waits for a verdict
    // from another shard.
    let mut channels = Vec::new();
    for i in 0..6 {
        let ch = conversation(ann.request(Request::CreateChannel {
            name: format!("room-{i}"),
            private: false,
        }));
        let invite = Request::Invite {
            conversation: ch,
            user: w.users[1].0,
        };
        assert_eq!(ann.request(invite), Ok(Response::Done));
        channels.push(ch);
    }
    let mut bobs: Vec<Client> = (0..3)
        .map(|_| Client::login(server.addr, &w.users[1].1))
        .collect();
    // Bob says nothing for 3 pre-auth timeouts (no ping is due before 2 s).
    std::thread::sleep(Duration::from_secs(3));
    let seq = ann.send(channels[0], "still there?").0;
    for bob in &mut bobs {
        let m = bob.next_message();
        assert_eq!((m.seq.0, m.body.as_str()), (seq, "still there?"));
    }
}
