//! `boot`: cold start of a user in X conversations (default 2,000): the
//! `Boot` round trip and its payload size.
//!
//! Back of the envelope: `Boot` is answered by the user's home shard from
//! its derived index (user → conversations with last activity), plus one
//! batched summary request per shard that owns some of them. Sorting 2,000
//! entries by last activity and building one page of 100
//! `ConversationInfo` (≈ 200 B each) plus the newest 20 messages of the
//! first two conversations is ≈ 100 µs of CPU; the cross-shard hop adds a
//! wake-up (≈ 10–50 µs). So ≈ 0.2–0.5 ms client-observed on loopback, well
//! under the 5 ms target, and ≈ 100 × 200 B + 2 × 20 × 150 B ≈ 26 KB of
//! payload — under the 64 KiB bound the core enforces
//! (`BOOT_PAYLOAD_BYTES_MAX`).
//!
//! "Server time" is the client-observed round trip on loopback: an upper
//! bound (it includes two socket hops and the client's decode); the server
//! exposes no per-request timing.

use crate::client::Session;
use crate::clock::now_ns;
use crate::pool;
use crate::report::{self, histogram, latency_json, latency_row, record_ns};
use crate::server::{Common, Target};
use crate::setup;
use anyhow::{bail, Context};
use clap::Args;
use courier_core::api::{Request, Response};
use serde_json::json;

/// `courier-bench boot`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// Conversations the user is in (X).
    #[arg(long, default_value_t = 2000)]
    pub conversations: usize,
    /// Messages posted in each conversation before measuring (activity,
    /// previews, the newest pages Boot inlines).
    #[arg(long, default_value_t = 3)]
    pub messages: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Conversations per Boot page (the server caps it at 100).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Boot requests measured (one at a time, after one unmeasured).
    #[arg(long, default_value_t = 200)]
    pub repeats: usize,
    #[command(flatten)]
    pub common: Common,
}

/// Runs the scenario.
pub fn run(cmd: &Cmd) -> anyhow::Result<()> {
    crate::server::raise_nofile(65_536)?;
    let target = Target::start(&cmd.common)?;
    let machine = report::machine(
        &target
            .data_dir()
            .map_or_else(|| cmd.common.data_root(), |p| p.to_owned()),
    );
    report::print_machine(&machine);
    let x = cmd.conversations.max(1);
    let setup_start = now_ns();
    let user = pool::block_on(async {
        let (_, users) = setup::workspace_with_users(&target, "bench-boot", "u", 1).await?;
        let conn = setup::connect(&target, &users[0].credential).await?;
        let conversations = setup::channels(&conn, "boot-", x).await?;
        setup::post(&conn, &conversations, cmd.messages, cmd.body_bytes).await?;
        conn.close().await;
        Ok(users.into_iter().next())
    })?
    .context("no user")?;
    let setup_s = (now_ns() - setup_start) as f64 / 1e9;
    let (latency, bytes, first_ns, first_bytes, shown, total) = pool::block_on(async {
        let mut session = Session::login(target.addr, None, &user.credential).await?;
        let mut latency = histogram();
        let mut bytes = histogram();
        let mut first = (0, 0);
        let mut shown = 0;
        let mut total = 0;
        for i in 0..=cmd.repeats {
            let called = session
                .call(Request::Boot {
                    limit: cmd.limit,
                    offset: 0,
                })
                .await?;
            let Response::Boot(page) = called.response else {
                bail!("Boot answered something else")
            };
            shown = page.conversations.len();
            total = page.total as usize;
            if i == 0 {
                first = (called.rtt_ns, called.reply_bytes);
            } else {
                record_ns(&mut latency, called.rtt_ns);
                let _ = bytes.record(called.reply_bytes as u64);
            }
        }
        session.conn.close().await;
        Ok((latency, bytes, first.0, first.1, shown, total))
    })?;
    if total != x {
        bail!("Boot reports {total} conversations, the user is in {x}");
    }
    let payload_bytes = bytes.max();
    report::table(
        &format!(
            "boot: a user in {x} conversations ({} messages each), page of {}, {} requests",
            cmd.messages, cmd.limit, cmd.repeats
        ),
        report::LATENCY_HEADER,
        &[latency_row("Boot round trip", &latency)],
    );
    println!(
        "first Boot: {:.3} ms, {first_bytes} B; payload: {payload_bytes} B ({:.1} KiB) for {shown} of {total} conversations",
        first_ns as f64 / 1e6,
        payload_bytes as f64 / 1024.0
    );
    let p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "targets: ≤ 5 ms server time (p99 round trip {p99_ms:.3} ms: {}), ≤ 64 KiB ({}).",
        if p99_ms <= 5.0 { "met" } else { "MISSED" },
        if payload_bytes <= 64 * 1024 {
            "met"
        } else {
            "MISSED"
        }
    );
    let mut params = cmd.common.params();
    params["boot"] = json!({
        "conversations": x, "messages": cmd.messages, "body_bytes": cmd.body_bytes,
        "limit": cmd.limit, "repeats": cmd.repeats,
    });
    let results = json!({
        "round_trip": latency_json(&latency),
        "first_round_trip_ms": first_ns as f64 / 1e6,
        "first_payload_bytes": first_bytes,
        "payload_bytes": payload_bytes,
        "conversations_in_page": shown,
        "conversations_total": total,
        "setup_s": setup_s,
        "target_met": p99_ms <= 5.0 && payload_bytes <= 64 * 1024,
    });
    report::emit(
        cmd.common.json,
        &report::envelope("boot", machine, params, results),
    );
    Ok(())
}
