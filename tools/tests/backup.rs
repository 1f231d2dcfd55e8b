//! Backup while serving, end to end: writers keep sending to channels on
//! both shards of a real `courierd` (snapshots and log truncation every
//! 1,000 records, 2 MiB segments that roll) while `courier admin backup
//! DIR` runs;
//! then a `courierd` started on DIR must hold every message acknowledged
//! before the backup began, exactly once and in the order acknowledged,
//! and every conversation's history must run 1..=head without a gap.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use courier_core::api::{ConversationId, HistoryAnchor, Seq};
use courier_tools::testkit::{test_dir, ServerProcess};
use courier_tools::{Client, ClientOptions, ConnectOptions, Outgoing, Requester};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writers (one user and one channel each; ids spread them over shards).
const WRITERS: usize = 4;
/// Acks every writer has before the backup starts.
const ACKED_BEFORE: usize = 500;
/// Body padding: 4 writers × 500 × 2 KiB ≈ 4 MiB of log before the
/// backup, so 2 MiB segments roll and are truncated behind snapshots (the
/// backup links sealed segments and copies the live one's stable part).
const PAD: usize = 2048;

/// Acknowledged sends, per writer: (seq, body), in ack order.
type Ledger = Arc<Mutex<Vec<Vec<(u64, String)>>>>;

async fn client(url: &str, credential: courier_core::api::Credential) -> Client {
    let mut c = Client::new(ClientOptions::new(ConnectOptions::new(
        url.to_owned(),
        credential,
    )));
    c.connect().await.unwrap();
    c
}

/// Every message of `conversation`, oldest first.
async fn read_all(c: &mut Client, conversation: ConversationId) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    loop {
        let after = Seq(out.last().map_or(0, |m: &(u64, String)| m.0));
        let page = c
            .history(conversation, HistoryAnchor::After(after), 100)
            .await
            .unwrap();
        if page.messages.is_empty() {
            assert_eq!(after, page.head, "history stops before the head");
            return out;
        }
        out.extend(page.messages.into_iter().map(|m| (m.seq.0, m.body)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writers_send_holds_everything_acknowledged_before_it() {
    let t0 = std::time::Instant::now();
    let temp = test_dir().unwrap();
    let server = ServerProcess::spawn_with(
        &temp.path().join("data"),
        2,
        &["--snapshot-every-records", "1000", "--segment-mib", "2"],
    )
    .unwrap();
    let url = server.url();
    let mut admin = client(&url, server.admin_options().unwrap().credential).await;
    let ws = admin.create_workspace("acme").await.unwrap();
    let mut writers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..WRITERS {
        let t = admin.create_user(ws, &format!("w{i}")).await.unwrap();
        let mut c = client(&url, t.credential.clone()).await;
        let channel = c.create_channel(&format!("c{i}"), false).await.unwrap();
        writers.push((t.credential, channel.id));
        clients.push(c);
    }
    let ledger: Ledger = Arc::new(Mutex::new(vec![Vec::new(); WRITERS]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let conversation = writers[i].1;
        let (ledger, stop) = (ledger.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let body = format!("w{i}-{n}-{}", "x".repeat(PAD));
                let ack = c.send(conversation, &Outgoing::text(&body)).await.unwrap();
                ledger.lock().unwrap()[i].push((ack.seq.0, body));
                n += 1;
            }
        }));
    }
    // Let every writer get ACKED_BEFORE acks, then freeze what must survive.
    while ledger
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.len() < ACKED_BEFORE)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: Vec<Vec<(u64, String)>> = ledger.lock().unwrap().clone();
    eprintln!("backup starts after {:?}", t0.elapsed());
    let backup_dir = temp.path().join("backup");
    let token = server.admin_token().unwrap();
    let (url2, dir2) = (url.clone(), backup_dir.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_courier"))
            .env_remove("COURIER_TOKEN")
            .env("COURIER_CONFIG", dir2.with_file_name("cli-config.toml"))
            .args(["--server", &url2, "--token", &token, "--json"])
            .args(["admin", "backup"])
            .arg(&dir2)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let acked_during: usize = {
        let now = ledger.lock().unwrap();
        now.iter()
            .zip(&before)
            .map(|(n, b)| n.len() - b.len())
            .sum()
    };
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "courier admin backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(report["shards"].as_array().unwrap().len(), 2, "{report}");
    assert!(backup_dir.join("BACKUP.json").exists());
    assert!(acked_during > 0, "writes went on during the backup");
    let linked: u64 = report["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["files_linked"].as_u64().unwrap())
        .sum();
    assert!(linked > 0, "sealed files were linked: {report}");
    drop(server);

    eprintln!("backup done after {:?}", t0.elapsed());
    let restored = ServerProcess::spawn(&backup_dir, 2).unwrap();
    eprintln!("restored after {:?}", t0.elapsed());
    let url = restored.url();
    for (i, (credential, conversation)) in writers.iter().enumerate() {
        let mut c = client(&url, credential.clone()).await;
        let got = read_all(&mut c, *conversation).await;
        let seqs: Vec<u64> = got.iter().map(|m| m.0).collect();
        assert_eq!(
            seqs,
            (1..=got.len() as u64).collect::<Vec<_>>(),
            "writer {i}: history has a gap or a duplicate"
        );
        assert!(
            got.len() >= before[i].len(),
            "writer {i}: {} messages after restore, {} acknowledged before the backup",
            got.len(),
            before[i].len()
        );
        assert_eq!(
            &got[..before[i].len()],
            &before[i][..],
            "writer {i}: the acknowledged messages, in order, exactly once"
        );
    }
}
