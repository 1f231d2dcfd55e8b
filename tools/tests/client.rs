//! The client library against a scripted fake server over a real loopback
//! WebSocket: request correlation, retries that never duplicate a send, and
//! a session that turns dropped, duplicated and missed events, outages and
//! restarts into an exactly-once, in-order message stream; a client given
//! several servers goes to the primary a refusing cluster node names.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use courier_core::api::*;
use courier_proto::close;
use courier_tools::constants::NOT_SERVING_RETRY_MAX;
use courier_tools::{
    Client, ClientError, Connection, Incoming, Notice, Outgoing, Requester, Session, SessionEvent,
    SessionOptions,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::FakeServer;

const C10: ConversationId = ConversationId(10);
const C11: ConversationId = ConversationId(11);

/// Reads from the session until `n` messages arrived; returns `(conv, seq,
/// body)` and fails the test if it takes longer than 10 s.
async fn messages(session: &mut Session, n: usize) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let event = tokio::time::timeout_at(deadline, session.next())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} messages: {out:?}", out.len()))
            .unwrap();
        if let SessionEvent::Message(m) = event {
            out.push((m.conversation.0, m.seq.0, m.body));
        }
    }
    out
}

/// Reads until the session reports it caught up with generation `g`.
async fn caught_up(session: &mut Session, g: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, session.next())
            .await
            .expect("timed out waiting for CaughtUp")
            .unwrap();
        match event {
            SessionEvent::CaughtUp { generation } if generation >= g => return,
            SessionEvent::Message(m) => panic!("unexpected message {m:?}"),
            _ => {}
        }
    }
}

/// Asserts that every message of conversation 10 from `from` to `to`
/// arrived exactly once, in order.
fn assert_seqs(got: &[(u64, u64, String)], conv: u64, from: u64, to: u64) {
    let seqs: Vec<u64> = got.iter().filter(|m| m.0 == conv).map(|m| m.1).collect();
    assert_eq!(seqs, (from..=to).collect::<Vec<_>>(), "conversation {conv}");
}

async fn open(fake: &FakeServer) -> Session {
    Session::open(SessionOptions::new(fake.options()))
        .await
        .unwrap()
}

#[tokio::test]
async fn live_messages_arrive_once_in_order_despite_duplicated_events() {
    let fake = FakeServer::start().await;
    fake.post(10, "before start"); // not delivered: the session starts at the present
    let mut s = open(&fake).await;
    caught_up(&mut s, 1).await;
    fake.with(|st| st.faults.duplicate_events = true);
    for i in 0..20 {
        fake.post(if i % 2 == 0 { 10 } else { 11 }, &format!("m{i}"));
    }
    fake.with(|st| st.faults.duplicate_events = false);
    fake.post(11, "last");
    let got = messages(&mut s, 21).await;
    assert_seqs(&got, 10, 2, 11);
    assert_seqs(&got, 11, 1, 11);
    assert_eq!(s.tracker().stats().duplicates, 20);
}

#[tokio::test]
async fn a_missed_live_event_is_repaired_by_history() {
    let fake = FakeServer::start().await;
    let mut s = open(&fake).await;
    caught_up(&mut s, 1).await;
    fake.with(|st| st.faults.drop_events = vec![(C10, Seq(2)), (C10, Seq(3))]);
    for i in 1..=5 {
        fake.post(10, &format!("m{i}"));
    }
    let got = messages(&mut s, 5).await;
    assert_seqs(&got, 10, 1, 5);
    assert_eq!(got[1].2, "m2");
    assert_eq!(s.tracker().stats().gaps, 1);
    assert_eq!(
        fake.count_requests(|r| matches!(
            r,
            Request::History {
                anchor: HistoryAnchor::After(Seq(1)),
                ..
            }
        )),
        1
    );
}

#[tokio::test]
async fn messages_sent_during_an_outage_arrive_after_reconnect() {
    let fake = FakeServer::start().await;
    let mut s = open(&fake).await;
    caught_up(&mut s, 1).await;
    fake.post(10, "a");
    let first = messages(&mut s, 1).await;
    // Server "dies": connections cut, new ones refused for a while.
    fake.with(|st| st.faults.refuse = true);
    fake.drop_all();
    for i in 0..30 {
        fake.post(10, &format!("during {i}"));
    }
    fake.post(11, "other");
    let reader = tokio::spawn(async move {
        let got = messages(&mut s, 31).await;
        (s, got)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.with(|st| st.faults.refuse = false);
    let (s, got) = reader.await.unwrap();
    assert_eq!(first[0].1, 1);
    assert_seqs(&got, 10, 2, 31);
    assert_seqs(&got, 11, 1, 1);
    assert!(fake.with(|st| st.hellos) >= 2);
    drop(s);
}

#[tokio::test]
async fn a_truncated_sync_is_completed_with_short_history_pages() {
    let fake = FakeServer::start().await;
    fake.with(|st| {
        st.faults.sync_inline_max = 10;
        st.faults.history_page_max = 7; // pages cut short, as by bytes
    });
    let mut s = open(&fake).await;
    caught_up(&mut s, 1).await;
    fake.close_all(close::GOING_AWAY);
    for i in 0..250 {
        fake.post(10, &format!("m{i}"));
    }
    let got = messages(&mut s, 250).await;
    assert_seqs(&got, 10, 1, 250);
    let bodies: Vec<&str> = got.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(bodies[0], "m0");
    assert_eq!(bodies[249], "m249");
}

#[tokio::test]
async fn from_start_delivers_all_history_then_live() {
    let fake = FakeServer::start().await;
    for i in 0..120 {
        fake.post(10, &format!("old {i}"));
    }
    fake.post(11, "old other");
    let mut options = SessionOptions::new(fake.options());
    options.from_start = true;
    options.filter = Some(vec![C10]);
    let mut s = Session::open(options).await.unwrap();
    let got = messages(&mut s, 120).await;
    assert_seqs(&got, 10, 1, 120);
    caught_up(&mut s, 1).await;
    fake.post(11, "filtered out");
    fake.post(10, "new");
    let got = messages(&mut s, 1).await;
    assert_eq!(got, vec![(10, 121, "new".to_owned())]);
}

#[tokio::test]
async fn an_overflowing_event_queue_resyncs_without_loss() {
    let fake = FakeServer::start().await;
    let mut options = SessionOptions::new(fake.options());
    options.client.connect.event_queue_max = 4;
    let mut s = Session::open(options).await.unwrap();
    caught_up(&mut s, 1).await;
    for i in 0..100 {
        fake.post(10, &format!("m{i}"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // the consumer lags
    let got = messages(&mut s, 100).await;
    assert_seqs(&got, 10, 1, 100);
    assert!(fake.count_requests(|r| matches!(r, Request::Sync { .. })) >= 2);
}

#[tokio::test]
async fn a_lost_ack_is_retried_with_the_same_id_and_creates_one_message() {
    let fake = FakeServer::start().await;
    fake.with(|st| st.faults.lose_acks = 1);
    let mut client = Client::new(fake.options());
    let ack = client.send(C10, &Outgoing::text("once")).await.unwrap();
    assert_eq!(ack.seq, Seq(1));
    let sends: Vec<u128> = fake.with(|st| {
        st.requests
            .iter()
            .filter_map(|r| match r {
                Request::Send { client_msg_id, .. } => Some(*client_msg_id),
                _ => None,
            })
            .collect()
    });
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0], sends[1]);
    assert_eq!(fake.messages(10).len(), 1);
}

#[tokio::test]
async fn a_timed_out_send_is_retried_with_the_same_id() {
    let fake = FakeServer::start().await;
    fake.with(|st| st.faults.ignore_sends = 2);
    let mut client = Client::new(fake.options());
    let ack = client.send(C11, &Outgoing::text("slow")).await.unwrap();
    assert_eq!(ack.seq, Seq(1));
    assert_eq!(
        fake.count_requests(|r| matches!(r, Request::Send { .. })),
        3
    );
    assert_eq!(fake.messages(11).len(), 1);
    // A second, different send is a new message.
    let ack = client.send(C11, &Outgoing::text("next")).await.unwrap();
    assert_eq!(ack.seq, Seq(2));
}

/// The delays a client announced before its retries, in order.
fn record_delays(client: &mut Client) -> Arc<Mutex<Vec<Duration>>> {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let seen = delays.clone();
    client.on_notice(move |notice| {
        if let Notice::Retrying { delay, .. } = notice {
            seen.lock().unwrap().push(delay);
        }
    });
    delays
}

#[tokio::test]
async fn a_failover_refusal_is_retried_soon_and_a_success_resets_the_backoff() {
    let fake = FakeServer::start().await;
    let mut options = fake.options();
    // Long delays, so the caps below are what keeps the retries short.
    options.backoff =
        courier_tools::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut client = Client::new(options);
    let delays = record_delays(&mut client);
    // The primary changed with the send in flight, five times in a row:
    // every retry waits at most NOT_SERVING_RETRY_MAX, not 3.2 s.
    fake.with(|st| st.faults.unavailable_sends = Some((5, UnavailableCause::PeerTimeout)));
    let ack = client
        .send(C10, &Outgoing::text("after a failover"))
        .await
        .unwrap();
    assert_eq!(ack.seq, Seq(1));
    let failover: Vec<Duration> = delays.lock().unwrap().drain(..).collect();
    assert_eq!(failover.len(), 5, "{failover:?}");
    assert!(
        failover.iter().all(|d| *d <= NOT_SERVING_RETRY_MAX),
        "{failover:?}"
    );
    // Overloaded is no failover: its delays grow with the backoff, from
    // the initial one again since the send above succeeded.
    fake.with(|st| st.faults.unavailable_sends = Some((3, UnavailableCause::Overloaded)));
    let ack = client
        .send(C10, &Outgoing::text("after overload"))
        .await
        .unwrap();
    assert_eq!(ack.seq, Seq(2));
    let overload: Vec<Duration> = delays.lock().unwrap().drain(..).collect();
    assert_eq!(overload.len(), 3, "{overload:?}");
    assert!(overload[0] <= Duration::from_millis(100), "{overload:?}");
    assert!(overload[2] >= Duration::from_millis(200), "{overload:?}");
    assert_eq!(fake.messages(10).len(), 2);
}

#[tokio::test]
async fn send_gives_up_after_the_retry_deadline() {
    let fake = FakeServer::start().await;
    fake.with(|st| st.faults.refuse = true);
    let mut options = fake.options();
    options.retry_deadline = Some(Duration::from_millis(300));
    let mut client = Client::new(options);
    let err = client.send(C10, &Outgoing::text("x")).await.unwrap_err();
    assert!(err.is_connection(), "{err}");
}

#[tokio::test]
async fn replies_are_matched_to_requests_by_id_whatever_their_order() {
    let fake = FakeServer::start().await;
    fake.with(|st| st.faults.reverse_batch = 8);
    let (conn, _events) = Connection::connect(&fake.options().connect).await.unwrap();
    let mut calls = Vec::new();
    for i in 0..8u64 {
        let conn = conn.clone();
        calls.push(tokio::spawn(async move {
            let request = Request::History {
                conversation: if i % 2 == 0 { C10 } else { C11 },
                anchor: HistoryAnchor::After(Seq(i)),
                limit: 1,
            };
            (i, conn.request(request).await)
        }));
    }
    for call in calls {
        let (i, reply) = call.await.unwrap();
        assert!(
            matches!(reply, Ok(Response::History { .. })),
            "{i}: {reply:?}"
        );
    }
    // The order of the requests the server saw matches the order of arrival.
    assert_eq!(
        fake.count_requests(|r| matches!(r, Request::History { .. })),
        8
    );
}

#[tokio::test]
async fn a_bad_token_is_a_permanent_rejection() {
    let fake = FakeServer::start().await;
    let mut options = fake.options();
    options.connect.credential = Credential::User {
        user: UserId(1),
        token: 1,
        secret: [0; 32],
    };
    let err = Session::open(SessionOptions::new(options))
        .await
        .unwrap_err();
    assert_eq!(err.reject(), Some(Reject::Unauthenticated), "{err}");
    assert!(!err.is_transient());
    assert_eq!(fake.with(|st| st.hellos), 1, "no retries of a bad token");
}

#[tokio::test]
async fn a_garbage_frame_ends_the_connection_and_the_session_recovers() {
    let fake = FakeServer::start().await;
    let mut s = open(&fake).await;
    caught_up(&mut s, 1).await;
    fake.with(|st| st.faults.garbage_before_next_event = true);
    fake.post(10, "after garbage");
    fake.post(10, "second");
    let got = messages(&mut s, 2).await;
    assert_seqs(&got, 10, 1, 2);
}

#[tokio::test]
async fn events_stream_reports_lag_and_close() {
    let fake = FakeServer::start().await;
    let mut connect = fake.options().connect;
    connect.event_queue_max = 2;
    let (conn, mut events) = Connection::connect(&connect).await.unwrap();
    for i in 0..5 {
        fake.post(10, &format!("{i}"));
    }
    // Make sure all events were read by the driver: a round trip after them.
    let mut c = conn.clone();
    c.list_conversations().await.unwrap();
    let mut seen = Vec::new();
    while let Some(incoming) = events.try_next() {
        seen.push(incoming);
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2], Incoming::Lagged { dropped: 3 });
    fake.post(10, "after lag");
    let next = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert!(matches!(next, Some(Incoming::Event(Event::Message(_)))));
    fake.close_all(close::SLOW_CONSUMER);
    while tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .is_some()
    {}
    let reason = events.close_reason().unwrap();
    assert!(
        matches!(
            reason,
            ClientError::Closed {
                code: Some(close::SLOW_CONSUMER),
                ..
            }
        ),
        "{reason}"
    );
    assert!(reason.is_transient());
    let err = conn.request(Request::ListConversations).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Closed {
                code: Some(close::SLOW_CONSUMER),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_cursor_file_resumes_exactly_where_the_client_stopped() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cursors");
    let mut options = SessionOptions::new(fake.options());
    options.cursor_file = Some(path.clone());
    let mut s = Session::open(options.clone()).await.unwrap();
    caught_up(&mut s, 1).await;
    for i in 0..5 {
        fake.post(10, &format!("m{i}"));
    }
    let got = messages(&mut s, 5).await;
    assert_seqs(&got, 10, 1, 5);
    s.save_cursors().unwrap();
    drop(s);
    for i in 5..8 {
        fake.post(10, &format!("m{i}"));
    }
    fake.post(11, "x");
    let mut s = Session::open(options).await.unwrap();
    let got = messages(&mut s, 4).await;
    assert_seqs(&got, 10, 6, 8);
    assert_seqs(&got, 11, 1, 1);
}

/// A fake cluster node that is not the primary: every Hello is closed with
/// 4011 and `reason`.
async fn not_serving(reason: &str) -> FakeServer {
    let fake = FakeServer::start().await;
    fake.with(|s| s.faults.not_serving = Some(reason.to_owned()));
    fake
}

/// A client over `servers` (comma-joined URLs) with the fakes' options and
/// a slow backoff (at least 0.5 s a pause), recording every retry delay.
fn client_over(
    servers: &[&FakeServer],
) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<Duration>>>) {
    let mut options = servers[0].options();
    options.connect.url = servers
        .iter()
        .map(|f| f.url())
        .collect::<Vec<_>>()
        .join(",");
    options.backoff = courier_tools::Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
    let mut client = Client::new(options);
    let delays = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = delays.clone();
    client.on_notice(move |n| {
        if let courier_tools::Notice::Retrying { delay, .. } = n {
            seen.lock().unwrap().push(delay);
        }
    });
    (client, delays)
}

#[tokio::test]
async fn a_client_given_a_non_primary_then_the_primary_ends_on_the_primary_at_once() {
    let primary = FakeServer::start().await;
    let other = not_serving("not serving: no primary elected yet; try another server").await;
    let (mut client, delays) = client_over(&[&other, &primary]);
    let started = std::time::Instant::now();
    client.connect().await.unwrap();
    assert_eq!(client.generation(), 1);
    assert_eq!(other.with(|s| s.hellos), 1);
    assert_eq!(primary.with(|s| s.hellos), 1);
    assert!(delays.lock().unwrap().is_empty(), "no backoff pause");
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn a_named_primary_is_tried_next_skipping_the_servers_between() {
    let primary = FakeServer::start().await;
    let between = FakeServer::start().await;
    let first = not_serving(&format!("not the primary; primary={}", primary.url())).await;
    let (mut client, delays) = client_over(&[&first, &between, &primary]);
    client.connect().await.unwrap();
    assert_eq!(first.with(|s| s.hellos), 1);
    assert_eq!(
        between.with(|s| s.hellos),
        0,
        "the hinted server comes first"
    );
    assert_eq!(primary.with(|s| s.hellos), 1);
    assert!(delays.lock().unwrap().is_empty());
    // Once there, the client stays: a dropped connection reconnects to it.
    primary.drop_all();
    client.disconnect();
    client.connect().await.unwrap();
    assert_eq!(primary.with(|s| s.hellos), 2);
    assert_eq!(first.with(|s| s.hellos), 1);
}

#[tokio::test]
async fn while_no_server_serves_rounds_pause_briefly_until_the_primary_serves() {
    let a = not_serving("not serving: no primary elected yet; try another server").await;
    let b = FakeServer::start().await;
    let b_url = b.url();
    b.with(|s| {
        s.faults.not_serving = Some(format!(
            "becoming the primary, not serving yet; primary={b_url}"
        ))
    });
    let (mut client, delays) = client_over(&[&a, &b]);
    let promote = b.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        promote.with(|s| s.faults.not_serving = None);
    });
    client.connect().await.unwrap();
    let delays = delays.lock().unwrap().clone();
    assert!(delays.len() >= 2, "{delays:?}");
    assert!(
        delays
            .iter()
            .all(|d| *d <= courier_tools::constants::NOT_SERVING_RETRY_MAX),
        "pauses after NOT_SERVING rounds are capped (the backoff alone is ≥ 0.5 s): {delays:?}"
    );
    // Rounds after the first start at the server named primary.
    let (asked_a, asked_b) = (a.with(|s| s.hellos), b.with(|s| s.hellos));
    assert!(
        asked_b >= asked_a && asked_b >= 3,
        "a {asked_a}, b {asked_b}"
    );
}

#[tokio::test]
async fn a_single_non_serving_server_is_retried_until_the_deadline() {
    let only = not_serving("not serving: no primary elected yet; try another server").await;
    let (mut client, _) = client_over(&[&only]);
    client.set_retry_deadline(Some(Duration::from_millis(700)));
    let err = client.connect().await.unwrap_err();
    assert!(err.is_not_serving(), "{err}");
    assert!(only.with(|s| s.hellos) >= 3, "retried, briefly paused");
}
