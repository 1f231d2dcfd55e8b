//! End-to-end notifications: a real `courierd` with `--push-url` pointing at
//! a tiny HTTP server in the test (the push gateway), and real WebSocket
//! clients. The grace window is 1 s so the timing cases run quickly.
//! Notification levels are set through the protocol (`SetNotify`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use courier_core::api::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One POST the gateway received.
#[derive(Clone, Debug)]
struct Post {
    at: Instant,
    body: serde_json::Value,
    /// The gateway answered 2xx.
    accepted: bool,
}

/// A push gateway: records every POST; answers 503 while `down`.
struct Gateway {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<Post>>>,
    down: Arc<AtomicBool>,
}

impl Gateway {
    fn start() -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (p, d) = (posts.clone(), down.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (p, d) = (p.clone(), d.clone());
                std::thread::spawn(move || serve(stream, &p, &d));
            }
        });
        Gateway { addr, posts, down }
    }

    fn url(&self) -> String {
        format!("http://{}/push", self.addr)
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Post> {
        self.posts().into_iter().filter(|p| p.accepted).collect()
    }

    /// Waits up to `limit` for `n` accepted POSTs.
    fn wait_accepted(&self, n: usize, limit: Duration) -> Vec<Post> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.accepted()
    }
}

/// Serves keep-alive HTTP/1.1 requests on one connection.
fn serve(stream: TcpStream, posts: &Mutex<Vec<Post>>, down: &AtomicBool) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let accepted = !down.load(Ordering::SeqCst);
        posts.lock().unwrap().push(Post {
            at: Instant::now(),
            body: serde_json::from_slice(&body).unwrap(),
            accepted,
        });
        let status = if accepted {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

struct Setup {
    server: Server,
    gateway: Gateway,
    ann: Client,
    ann_credential: Credential,
    bob: (UserId, Credential),
    dm: ConversationId,
}

/// A daemon with a gateway, ann logged in (a tool), bob offline, their DM.
fn setup() -> Setup {
    let gateway = Gateway::start();
    let url = gateway.url();
    let server = Server::start_with(2, &["--push-url", &url, "--push-grace-ms", "1000"]);
    let w = world(&server, &["ann", "bob"]);
    let mut ann = Client::login(server.addr, &w.users[0].1);
    let dm = conversation(ann.request(Request::OpenDm {
        users: vec![w.users[1].0],
    }));
    Setup {
        server,
        gateway,
        ann,
        ann_credential: w.users[0].1.clone(),
        bob: w.users[1].clone(),
        dm,
    }
}

fn login_desktop(server: &Server, credential: &Credential) -> Client {
    let mut c = Client::connect(server.addr);
    let welcome = c.hello_as(credential.clone(), DeviceKind::Desktop).unwrap();
    assert!(matches!(welcome, Response::Welcome { .. }), "{welcome:?}");
    c
}

#[test]
fn offline_user_gets_one_push_for_a_dm_within_a_second() {
    let mut s = setup();
    let sent = Instant::now();
    let seq = s.ann.send(s.dm, "lunch?");
    let posts = s.gateway.wait_accepted(1, Duration::from_secs(1));
    assert_eq!(posts.len(), 1, "one push within a second: {posts:?}");
    let latency = posts[0].at - sent;
    eprintln!("send → push POST: {latency:?}");
    let body = &posts[0].body;
    assert_eq!(body["action"], "notify");
    assert_eq!(body["kind"], "dm");
    assert_eq!(body["user_id"], s.bob.0 .0.to_string());
    assert_eq!(body["conversation_id"], s.dm.0.to_string());
    assert_eq!(body["seq"], seq.0);
    assert_eq!(body["preview"], "lunch?");
    assert_eq!(body["badge"], 1);
    assert_eq!(
        body["idempotency_key"],
        format!("push-{}-{}-{}", s.bob.0 .0, s.dm.0, seq.0)
    );
    // And only one.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.gateway.posts().len(), 1);
    // Reading it on a device retracts it.
    let mut bob = login_desktop(&s.server, &s.bob.1);
    assert_eq!(
        bob.request(Request::MarkRead {
            conversation: s.dm,
            seq
        }),
        Ok(Response::Done)
    );
    let posts = s.gateway.wait_accepted(2, Duration::from_secs(2));
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1].body["action"], "clear");
    assert_eq!(posts[1].body["badge"], 0);
}

#[test]
fn focused_active_user_gets_no_push() {
    let mut s = setup();
    let mut bob = login_desktop(&s.server, &s.bob.1);
    let focus = Request::SetFocus {
        focused: Some(s.dm),
        active: true,
    };
    assert_eq!(bob.request(focus), Ok(Response::Done));
    s.ann.send(s.dm, "you there?");
    assert_eq!(bob.next_message().body, "you there?");
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(s.gateway.posts().is_empty(), "{:?}", s.gateway.posts());
}

#[test]
fn active_elsewhere_then_read_within_grace_means_no_push_and_no_clear() {
    let mut s = setup();
    let mut bob = login_desktop(&s.server, &s.bob.1);
    let focus = Request::SetFocus {
        focused: None,
        active: true,
    };
    assert_eq!(bob.request(focus), Ok(Response::Done));
    let seq = s.ann.send(s.dm, "quick one");
    // The in-app notification arrives; the push waits for the grace window.
    loop {
        if let Event::Notify {
            conversation,
            seq: n,
            reason,
        } = bob.next_event()
        {
            assert_eq!((conversation, n, reason), (s.dm, seq, NotifyReason::Dm));
            break;
        }
    }
    assert_eq!(
        bob.request(Request::MarkRead {
            conversation: s.dm,
            seq
        }),
        Ok(Response::Done)
    );
    std::thread::sleep(Duration::from_millis(2_000));
    assert!(s.gateway.posts().is_empty(), "{:?}", s.gateway.posts());
}

#[test]
fn gateway_down_for_a_while_delivers_once_after_it_recovers() {
    let mut s = setup();
    s.gateway.down.store(true, Ordering::SeqCst);
    s.ann.send(s.dm, "are you up?");
    std::thread::sleep(Duration::from_millis(2_000));
    let failed = s.gateway.posts();
    assert!(failed.len() >= 2, "retried while down: {failed:?}");
    assert!(failed.iter().all(|p| !p.accepted));
    s.gateway.down.store(false, Ordering::SeqCst);
    let posts = s.gateway.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(posts.len(), 1, "{posts:?}");
    // Once: nothing more after the 2xx, and the same idempotency key.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(s.gateway.accepted().len(), 1);
    let keys: std::collections::BTreeSet<String> = s
        .gateway
        .posts()
        .iter()
        .map(|p| p.body["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 1);
}

#[test]
fn queued_push_survives_a_restart() {
    let mut s = setup();
    s.gateway.down.store(true, Ordering::SeqCst);
    s.ann.send(s.dm, "after restart");
    std::thread::sleep(Duration::from_millis(300));
    s.server.kill9();
    s.gateway.down.store(false, Ordering::SeqCst);
    s.server.restart();
    let posts = s.gateway.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].body["preview"], "after restart");
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(s.gateway.accepted().len(), 1);
}

#[test]
fn level_all_on_a_channel_pushes_an_ordinary_message_once_and_survives_a_restart() {
    let mut s = setup();
    let channel = conversation(s.ann.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));
    let mut bob = login_desktop(&s.server, &s.bob.1);
    assert!(matches!(
        bob.request(Request::Join {
            conversation: channel
        }),
        Ok(Response::Conversation(_))
    ));
    // Default level of a channel (mentions): an ordinary message, no push.
    drop(bob);
    s.ann.send(channel, "standup in 5");
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.gateway.posts().is_empty(), "{:?}", s.gateway.posts());
    // Bob sets the channel to all, through the protocol, and goes offline.
    let mut bob = login_desktop(&s.server, &s.bob.1);
    let all = Request::SetNotify {
        conversation: channel,
        level: NotifyLevel::All,
        muted: false,
    };
    assert_eq!(bob.request(all), Ok(Response::Done));
    drop(bob);
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    let seq = s.ann.send(channel, "standup now");
    let posts = s.gateway.wait_accepted(1, Duration::from_secs(2));
    assert_eq!(posts.len(), 1, "one push: {posts:?}");
    eprintln!(
        "level all, channel send → push POST: {:?}",
        posts[0].at - sent
    );
    let body = &posts[0].body;
    assert_eq!(body["action"], "notify");
    assert_eq!(body["kind"], "channel");
    assert_eq!(body["user_id"], s.bob.0 .0.to_string());
    assert_eq!(body["conversation_id"], channel.0.to_string());
    assert_eq!(body["seq"], seq.0);
    assert_eq!(body["preview"], "standup now");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.gateway.posts().len(), 1, "only one");
    // The level survives kill -9: the restarted owner learns it again from
    // bob's home shard.
    s.server.kill9();
    s.server.restart();
    let mut ann = Client::login(s.server.addr, &s.ann_credential);
    let seq = ann.send(channel, "after the restart");
    let posts = s.gateway.wait_accepted(2, Duration::from_secs(5));
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1].body["seq"], seq.0);
    assert_eq!(posts[1].body["kind"], "channel");
}
