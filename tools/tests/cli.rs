//! The `courier` binary against the scripted fake server: output formats,
//! exit codes, name resolution, login, and a `watch` that survives an
//! outage with no gap and no duplicate.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::FakeServer;

fn token() -> String {
    courier_proto::token::format_user(support::USER, 1, &support::SECRET)
}

/// A `courier` command with a clean environment (no config file, no
/// COURIER_* variables from the caller).
fn courier(config_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.env_remove("COURIER_SERVER")
        .env_remove("COURIER_TOKEN")
        .env("COURIER_CONFIG", config_dir.join("config.toml"))
        .stdin(Stdio::null());
    cmd
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout_json(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_prints_the_seq_and_resolves_channel_names() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = courier(dir.path());
    cmd.args(["--server", &fake.url(), "--token", &token(), "--json"])
        .args(["send", "general", "hello"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = stdout_json(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["conversation"], "10");
    assert_eq!(lines[0]["seq"], 1);
    assert!(lines[0]["ts"].is_u64());
    // Human output: the seq alone; ids work as well as names.
    let mut cmd = courier(dir.path());
    cmd.env("COURIER_SERVER", fake.url())
        .env("COURIER_TOKEN", token())
        .args(["send", "10", "again"]);
    let out = run(cmd).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    assert_eq!(fake.messages(10).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_distinguish_rejection_usage_and_connection() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Rejected by the server: unknown channel → 1, message names it.
    let mut cmd = courier(dir.path());
    cmd.args(["--server", &fake.url(), "--token", &token()])
        .args(["send", "nope", "x"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no channel named \"nope\""), "{err}");
    // Wrong secret → 1 with a hint about the token.
    let bad = courier_proto::token::format_user(support::USER, 1, &[0; 32]);
    let mut cmd = courier(dir.path());
    cmd.args(["--server", &fake.url(), "--token", &bad, "whoami"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthenticated"));
    // No token anywhere → 2.
    let mut cmd = courier(dir.path());
    cmd.args(["--server", &fake.url(), "unread"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("courier login"));
    // Malformed token → 2.
    let mut cmd = courier(dir.path());
    cmd.args(["--server", &fake.url(), "--token", "secret", "unread"]);
    assert_eq!(run(cmd).await.status.code(), Some(2));
    // Nobody listening → 3, within the timeout.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = courier(dir.path());
    cmd.args([
        "--server",
        &format!("ws://127.0.0.1:{port}"),
        "--token",
        &token(),
    ])
    .args(["--timeout", "1", "--json", "send", "10", "x"]);
    let started = std::time::Instant::now();
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    let err: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stderr).trim()).unwrap();
    assert_eq!(err["exit"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_server_and_token_for_later_commands() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = courier(dir.path());
    cmd.env_remove("COURIER_CONFIG")
        .env("XDG_CONFIG_HOME", dir.path())
        .args(["login", "--server", &fake.url(), "--token", &token()]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let path = dir.path().join("courier/config.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut cmd = courier(dir.path());
    cmd.env_remove("COURIER_CONFIG")
        .env("XDG_CONFIG_HOME", dir.path())
        .args(["--json", "whoami"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout_json(&out)[0]["user"], support::USER.0.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_above_2_pow_53_are_json_strings_that_round_trip() {
    // JavaScript and jq read JSON numbers as doubles: 2^60 + 1 would come
    // back as 2^60. Ids are strings; seqs and timestamps stay numbers.
    const BIG: u64 = (1 << 60) + 1;
    let fake = FakeServer::start().await;
    fake.with(|s| {
        s.convs
            .insert(courier_core::api::ConversationId(BIG), vec![])
    });
    let dir = tempfile::tempdir().unwrap();
    let json = |args: &[&str]| {
        let mut cmd = courier(dir.path());
        cmd.args(["--server", &fake.url(), "--token", &token(), "--json"])
            .args(args);
        cmd
    };
    let out = run(json(&["send", &BIG.to_string(), "big"])).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let ack = &stdout_json(&out)[0];
    assert_eq!(ack["conversation"], BIG.to_string());
    assert_eq!(ack["seq"], 1);
    assert!(ack["ts"].is_u64());
    // The printed id, fed back as it was printed, names the same conversation.
    let printed = ack["conversation"].as_str().unwrap().to_owned();
    let out = run(json(&["history", &printed])).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let messages = stdout_json(&out);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["conversation"], BIG.to_string());
    assert_eq!(messages[0]["sender"], support::USER.0.to_string());
    assert!(messages[0]["client_msg_id"]
        .as_str()
        .unwrap()
        .parse::<u128>()
        .is_ok());
    assert_eq!(messages[0]["body"], "big");
    let out = run(json(&["channel", "list"])).await;
    let listed = stdout_json(&out);
    let big = listed
        .iter()
        .find(|c| c["conversation"].as_str() == Some(printed.as_str()))
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(big["head"], 1);
    // The raw text has the digits in quotes: nothing can round them.
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("\"conversation\":\"{BIG}\"")));
}

/// A running `courier watch --json`, its lines arriving on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(mut cmd: Command) -> Watch {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    async fn take(&self, n: usize) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for _ in 0..n {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("watch printed only {out:?}"));
            out.push(serde_json::from_str(&line).unwrap());
        }
        out
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_an_outage_without_gaps_or_duplicates() {
    let fake = FakeServer::start().await;
    fake.post(10, "old");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = courier(dir.path());
    cmd.args(["--server", &fake.url(), "--token", &token(), "--json"])
        .args(["watch", "--from-start"]);
    let watch = Watch::start(cmd);
    let first = watch.take(1).await;
    assert_eq!(first[0]["body"], "old");
    for key in [
        "conversation",
        "seq",
        "sender",
        "client_msg_id",
        "body",
        "ts",
    ] {
        assert!(first[0].get(key).is_some(), "missing {key}");
    }
    fake.post(10, "live");
    fake.with(|s| s.faults.refuse = true);
    fake.drop_all();
    for i in 0..10 {
        fake.post(11, &format!("while down {i}"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.with(|s| s.faults.refuse = false);
    fake.post(10, "after");
    let got = watch.take(12).await;
    let mut c10 = vec![];
    let mut c11 = vec![];
    for m in &got {
        let seq = m["seq"].as_u64().unwrap();
        match m["conversation"].as_str().unwrap() {
            "10" => c10.push(seq),
            "11" => c11.push(seq),
            other => panic!("conversation {other}"),
        }
    }
    assert_eq!(c10, vec![2, 3]);
    assert_eq!(c11, (1..=10).collect::<Vec<_>>());
    assert!(
        watch
            .lines
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "no duplicates after the last message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_verify_passes_a_good_log_and_names_the_place_of_corruption() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wal/tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("shard-0");
    std::fs::create_dir(&shard).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), shard.join(entry.file_name())).unwrap();
    }
    let mut cmd = courier(dir.path());
    cmd.args(["--json", "wal", "inspect"]).arg(dir.path());
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = stdout_json(&out);
    let summary = lines.iter().find(|l| l["type"] == "shard").unwrap();
    assert_eq!(summary["records"], 12);
    assert_eq!(summary["lsn_first"], 1);
    assert_eq!(summary["lsn_last"], 12);
    assert_eq!(summary["kinds"]["MessagePosted"], 1);
    let mut cmd = courier(dir.path());
    cmd.args(["wal", "verify"]).arg(dir.path());
    assert_eq!(run(cmd).await.status.code(), Some(0));
    // Flip a payload byte of the second record (offset 4096 + 32 + 32): the
    // records after it prove it had been durable.
    let segment = shard.join("wal-00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 32 + 32] ^= 1;
    std::fs::write(&segment, bytes).unwrap();
    let mut cmd = courier(dir.path());
    cmd.args(["wal", "verify"]).arg(dir.path());
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wal-00000000000000000001.seg at offset 4128"),
        "{err}"
    );
}
