//! `catchup`: a client misses N messages (default 1,000) spread over C
//! conversations (default 100), reconnects, and repairs: round trips,
//! bytes, and time until every conversation is complete again.
//!
//! Back of the envelope: `Sync` with 100 cursors is one batched request per
//! shard owning some of the conversations; 10 missed messages each are
//! under the inline gap bound (`SYNC_GAP_INLINE_MAX` = 50) and 1,000 in total
//! is at the inline budget (`SYNC_INLINE_MESSAGES_MAX`), all in the recent
//! caches. So one round trip carries ≈ 1,000 × (100 B body + ≈ 80 B of
//! fields) ≈ 180 KB; encoding that is ≈ 1–2 ms of CPU, plus the hop — the
//! target is one round trip and ≤ 20 ms. More than 1,000 (or more than 50 in
//! one conversation) comes back `truncated` and costs further `History`
//! round trips, which this scenario counts.
//!
//! Each round: the client (with its per-conversation cursors) disconnects,
//! another user posts N messages round-robin over the C conversations and
//! waits for every ack, then the client reconnects, sends `Sync`, applies
//! what came inline and pages the rest with `History After` (all
//! conversations in parallel, one round trip per page depth) until its
//! cursors reach every head. Times are client-observed on loopback (an
//! upper bound of server time).

use crate::client::{encode, Session};
use crate::clock::now_ns;
use crate::pool;
use crate::report::{self, histogram, latency_json, latency_row, record_ns};
use crate::server::{Common, Target};
use crate::setup;
use anyhow::{anyhow, bail};
use clap::Args;
use courier_core::api::{ConversationId, HistoryAnchor, Request, Response, Seq};
use courier_proto::{decode_server, ServerFrame};
use serde_json::json;
use std::collections::HashMap;

/// `courier-bench catchup`.
#[derive(Args, Debug, Clone)]
pub struct Cmd {
    /// Messages missed per round (N), spread round-robin.
    #[arg(long, default_value_t = 1000)]
    pub missed: usize,
    /// Conversations the client is in (C).
    #[arg(long, default_value_t = 100)]
    pub conversations: usize,
    /// Rounds (disconnect, miss N, reconnect and repair).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    #[command(flatten)]
    pub common: Common,
}

/// Messages per `History` page asked during repair (the server's maximum).
const HISTORY_PAGE: u32 = 100;

/// Round trips of one repair at most (a guard against a server that never
/// lets the cursor reach the head).
const REPAIR_ROUND_TRIPS_MAX: usize = 10_000;

struct Round {
    connect_ns: u64,
    sync_ns: u64,
    repaired_ns: u64,
    round_trips: usize,
    bytes: usize,
    truncated: usize,
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
    let c = cmd.conversations.max(1);
    let rounds = pool::block_on(async {
        let (_, users) = setup::workspace_with_users(&target, "bench-catchup", "u", 2).await?;
        let (reader, writer) = (&users[0], &users[1]);
        let writer_conn = setup::connect(&target, &writer.credential).await?;
        let conversations = setup::channels(&writer_conn, "catchup-", c).await?;
        let pairs: Vec<_> = conversations.iter().map(|id| (*id, reader.id)).collect();
        setup::invite(&writer_conn, &pairs).await?;
        // The client's state: the highest contiguous seq per conversation.
        let mut last: HashMap<ConversationId, Seq> =
            conversations.iter().map(|id| (*id, Seq(0))).collect();
        let mut out = Vec::with_capacity(cmd.rounds);
        for round in 0..cmd.rounds {
            // Miss N messages: posted while the client is away.
            let per = cmd.missed / c;
            let extra = cmd.missed % c;
            for (i, id) in conversations.iter().enumerate() {
                let n = per + usize::from(i < extra);
                if n > 0 {
                    setup::post(&writer_conn, std::slice::from_ref(id), n, cmd.body_bytes).await?;
                }
            }
            let r = repair(&target, &reader.credential, &mut last).await?;
            let missed_total: u64 = last.values().map(|s| s.0).sum();
            let expected = ((round + 1) * cmd.missed) as u64;
            if missed_total != expected {
                bail!("round {round}: the client holds {missed_total} messages, {expected} were posted");
            }
            out.push(r);
        }
        writer_conn.close().await;
        Ok(out)
    })?;
    let mut connect = histogram();
    let mut sync = histogram();
    let mut repaired = histogram();
    let mut round_trips = Vec::new();
    let mut bytes = Vec::new();
    let mut truncated = 0;
    for r in &rounds {
        record_ns(&mut connect, r.connect_ns);
        record_ns(&mut sync, r.sync_ns);
        record_ns(&mut repaired, r.repaired_ns);
        round_trips.push(r.round_trips);
        bytes.push(r.bytes);
        truncated += r.truncated;
    }
    let rt_max = round_trips.iter().copied().max().unwrap_or(0);
    let bytes_max = bytes.iter().copied().max().unwrap_or(0);
    report::table(
        &format!(
            "catchup: {} missed messages over {c} conversations, {} rounds",
            cmd.missed, cmd.rounds
        ),
        report::LATENCY_HEADER,
        &[
            latency_row("reconnect (TCP + upgrade + Hello)", &connect),
            latency_row("Sync round trip", &sync),
            latency_row("Sync → fully repaired", &repaired),
        ],
    );
    println!(
        "round trips to repair: max {rt_max} (Sync + History pages); bytes received per repair: max {bytes_max} ({:.1} KiB); truncated conversations: {truncated}",
        bytes_max as f64 / 1024.0
    );
    let p99_ms = repaired.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "targets: one round trip for ≤ 1,000 missed ({}), ≤ 20 ms server time (p99 to repaired {p99_ms:.3} ms: {}).",
        if rt_max <= 1 { "met" } else { "MISSED" },
        if p99_ms <= 20.0 { "met" } else { "MISSED" }
    );
    let mut params = cmd.common.params();
    params["catchup"] = json!({
        "missed": cmd.missed, "conversations": c, "rounds": cmd.rounds, "body_bytes": cmd.body_bytes,
    });
    let results = json!({
        "reconnect": latency_json(&connect),
        "sync_round_trip": latency_json(&sync),
        "time_to_repaired": latency_json(&repaired),
        "round_trips_max": rt_max,
        "round_trips": round_trips,
        "bytes_max": bytes_max,
        "bytes": bytes,
        "truncated_conversations": truncated,
        "target_met": rt_max <= 1 && p99_ms <= 20.0,
    });
    report::emit(
        cmd.common.json,
        &report::envelope("catchup", machine, params, results),
    );
    Ok(())
}

/// Reconnects, syncs and pages history until every cursor is at its head.
async fn repair(
    target: &Target,
    credential: &courier_core::api::Credential,
    last: &mut HashMap<ConversationId, Seq>,
) -> anyhow::Result<Round> {
    let t0 = now_ns();
    let mut session = Session::login(target.addr, None, credential).await?;
    let t1 = now_ns();
    let cursors: Vec<(ConversationId, Seq)> = last.iter().map(|(c, s)| (*c, *s)).collect();
    let called = session
        .call(Request::Sync {
            cursors,
            reads: Vec::new(),
        })
        .await?;
    let t2 = now_ns();
    let mut bytes = called.reply_bytes;
    let mut round_trips = 1;
    let Response::Sync { changed, gone } = called.response else {
        bail!("Sync answered something else")
    };
    if !gone.is_empty() {
        bail!("Sync says {} conversations are gone", gone.len());
    }
    let mut heads: HashMap<ConversationId, Seq> = HashMap::new();
    let mut truncated = 0;
    for conv in &changed {
        heads.insert(conv.info.id, conv.info.head);
        if conv.truncated {
            truncated += 1;
            // Only the newest page came: keep the cursor, page forward.
            continue;
        }
        apply(last, conv.info.id, &conv.messages)?;
    }
    // Page every lagging conversation forward, all in parallel per round trip.
    loop {
        let lagging: Vec<(ConversationId, Seq)> = heads
            .iter()
            .filter(|(c, h)| last.get(c).copied().unwrap_or_default() < **h)
            .map(|(c, _)| (*c, last.get(c).copied().unwrap_or_default()))
            .collect();
        if lagging.is_empty() {
            break;
        }
        if round_trips >= REPAIR_ROUND_TRIPS_MAX {
            bail!("not repaired after {round_trips} round trips");
        }
        round_trips += 1;
        let mut waiting: HashMap<u32, ConversationId> = HashMap::new();
        for (conversation, after) in &lagging {
            let req = session.next_req();
            session.conn.queue(&encode(
                req,
                Request::History {
                    conversation: *conversation,
                    anchor: HistoryAnchor::After(*after),
                    limit: HISTORY_PAGE,
                },
            ));
            waiting.insert(req, *conversation);
        }
        session.conn.flush().await?;
        let mut pages = Vec::new();
        while !waiting.is_empty() {
            let mut error = None;
            session
                .conn
                .read(&mut session.reader, |frame| match decode_server(frame) {
                    Ok(ServerFrame::Reply { req, result }) => {
                        if let Some(conversation) = waiting.remove(&req) {
                            bytes += frame.len();
                            match result {
                                Ok(Response::History { messages, .. }) => {
                                    pages.push((conversation, messages))
                                }
                                other => error = Some(format!("History answered {other:?}")),
                            }
                        }
                    }
                    Ok(ServerFrame::Event(_)) => {}
                    Err(e) => error = Some(format!("undecodable: {e}")),
                })
                .await?;
            if let Some(e) = error {
                return Err(anyhow!(e));
            }
        }
        for (conversation, messages) in pages {
            if messages.is_empty() {
                bail!("History After returned nothing below the head of {conversation:?}");
            }
            apply(last, conversation, &messages)?;
        }
    }
    let t3 = now_ns();
    session.conn.close().await;
    Ok(Round {
        connect_ns: t1 - t0,
        sync_ns: t2 - t1,
        repaired_ns: t3 - t1,
        round_trips,
        bytes,
        truncated,
    })
}

/// Applies messages (ascending) to the cursor, refusing gaps.
fn apply(
    last: &mut HashMap<ConversationId, Seq>,
    conversation: ConversationId,
    messages: &[courier_core::api::Message],
) -> anyhow::Result<()> {
    let cursor = last.entry(conversation).or_default();
    for m in messages {
        if m.seq <= *cursor {
            continue; // duplicate
        }
        if m.seq.0 != cursor.0 + 1 {
            bail!(
                "gap in {conversation:?}: holding {}, got {}",
                cursor.0,
                m.seq.0
            );
        }
        *cursor = m.seq;
    }
    Ok(())
}
