//! `courier admin cluster status` (the real binary) against a scripted HTTP
//! server standing in for `GET /admin/cluster`: the table people read, the
//! stable `--json` document, the single-node answer, and the exit codes of
//! a wrong token (1), a user token (1, refused without asking) and an
//! unreachable server (3). The same command against real cluster-mode
//! daemons is in net/tests/cluster_mode.rs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::{Command, Output, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "ca1_0000000000000000000000000000000000000000000000000000000000000000";

const CLUSTER_DOC: &str = r#"{"mode":"cluster","cluster":"prod","cluster_id":"340282366920938463463374607431768211455",
"shard_count":2,"replication_factor":2,"created_at_ms":1,"answered_by":2,"etcd_connected":true,
"etcd_error":null,"registered":true,"controller":1,"serving_clients":false,"replication":"raft",
"primary":1,"primary_client_addr":"10.0.0.1:7070",
"cores":[{"core":0,"leader":1,"term":4,"committed":120,"applied":118,"ready":false},
{"core":1,"leader":null,"term":3,"committed":7,"applied":7,"ready":false}],
"nodes":[{"node_id":1,"alive":true,"client_addr":"10.0.0.1:7070","peer_addr":"10.0.0.1:7071","cores":8,"started_at_ms":5,"controller":true,"primary":true,"serving":null},
{"node_id":2,"alive":false,"client_addr":null,"peer_addr":null,"cores":null,"started_at_ms":null,"controller":false,"primary":false,"serving":false}],
"placement":{"epoch":3,"shards":[{"shard":0,"replicas":[1,2],"leader":null,"term":null,"commit_lag":null},
{"shard":1,"replicas":[2,1],"leader":null,"term":null,"commit_lag":null}]}}"#;

/// Answers every connection with `status` and `body` after reading the
/// request head; records the last request.
async fn http_server(
    status: &'static str,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(reply.as_bytes()).await.unwrap();
        socket.shutdown().await.unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    (url, task)
}

async fn courier(server: &str, token: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.env_remove("COURIER_SERVER")
        .env_remove("COURIER_TOKEN")
        .env("COURIER_CONFIG", "/nonexistent/courier-config.toml")
        .args(["--server", server, "--token", token, "--timeout", "5"])
        .args(["admin", "cluster", "status"])
        .args(extra)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_reads_as_a_table_and_as_stable_json() {
    let (url, request) = http_server("200 OK", CLUSTER_DOC).await;
    let out = courier(&url, ADMIN, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let head = request.await.unwrap();
    assert!(
        head.starts_with("GET /admin/cluster HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Authorization: Bearer {ADMIN}\r\n")),
        "{head}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("cluster prod (id 3402"), "{text}");
    assert!(
        lines[1].contains(
            "controller: node 1; client sessions: refused; primary: node 1 (ws://10.0.0.1:7070); \
             replication: raft"
        ),
        "{text}"
    );
    let node1 = lines.iter().find(|l| l.starts_with("1 ")).unwrap();
    assert_eq!(
        node1.split_whitespace().collect::<Vec<_>>(),
        [
            "1",
            "yes",
            "10.0.0.1:7070",
            "10.0.0.1:7071",
            "8",
            "yes",
            "yes",
            "-"
        ]
    );
    let node2 = lines.iter().find(|l| l.starts_with("2 ")).unwrap();
    assert_eq!(
        node2.split_whitespace().collect::<Vec<_>>(),
        ["2", "no", "-", "-", "-", "no", "no", "no"]
    );
    assert!(
        text.contains("raft groups of node 2 (one per core)"),
        "{text}"
    );
    let at = lines.iter().position(|l| l.starts_with("CORE ")).unwrap();
    assert_eq!(
        lines[at + 1].split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "4", "120", "118", "no"]
    );
    assert_eq!(
        lines[at + 2].split_whitespace().collect::<Vec<_>>(),
        ["1", "-", "3", "7", "7", "no"]
    );
    assert!(text.contains("placement epoch 3"), "{text}");
    let shard1 = lines.iter().rev().find(|l| l.starts_with("1 ")).unwrap();
    assert_eq!(
        shard1.split_whitespace().collect::<Vec<_>>(),
        ["1", "2,1", "n/a", "n/a", "n/a"]
    );

    let (url, _request) = http_server("200 OK", CLUSTER_DOC).await;
    let out = courier(&url, ADMIN, &["--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent: serde_json::Value = serde_json::from_str(CLUSTER_DOC).unwrap();
    assert_eq!(
        printed, sent,
        "--json prints the document's fields unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_server_is_not_a_cluster_and_not_an_error() {
    let (url, _request) = http_server("200 OK", "{\"mode\":\"single-node\"}\n").await;
    let out = courier(&url, ADMIN, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "not a cluster: this courierd runs in single-node mode (started without --etcd)"
    );
    let (url, _request) = http_server("200 OK", "{\"mode\":\"single-node\"}\n").await;
    let out = courier(&url, ADMIN, &["--json"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "{\"mode\":\"single-node\"}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_and_no_server_have_their_exit_codes() {
    let (url, _request) = http_server("401 Unauthorized", "{\"error\":\"unauthenticated\"}").await;
    let out = courier(&url, ADMIN, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthenticated"));

    let user = courier_proto::token::format_user(courier_core::api::UserId(1), 1, &[0; 32]);
    let out = courier(&url, &user, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs the admin token"));

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("ws://{}", free.local_addr().unwrap());
    drop(free);
    let out = courier(&dead, ADMIN, &[]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
