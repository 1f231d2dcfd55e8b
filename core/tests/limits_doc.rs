//! The limits table of docs/ARCHITECTURE.md ("### Limits") is checked
//! against `courier_core::constants`, so the two cannot drift: every public
//! constant has a row, and every row's value is the constant's value.
//!
//! A row names one or more constants (`` `A` / `B` ``, or `` `A` … `B` ``)
//! and gives as many values the same way, or one value and "each". Values
//! are written for people: `16 KiB`, `1 MiB`, `100,000`, `1M`, `100K`,
//! `15 s`, `100 ms` (constants named `*_MS` or `*_MS_*` hold milliseconds).

use courier_core::constants as c;
use std::collections::BTreeMap;

/// Every public constant of `core/src/constants.rs` with its value.
fn constants() -> BTreeMap<&'static str, u64> {
    macro_rules! consts {
        ($($name:ident),* $(,)?) => {
            BTreeMap::from([$((stringify!($name), c::$name as u64)),*])
        };
    }
    consts![
        SHARD_COUNT_MAX,
        TICK_MS,
        REQUEST_TIMEOUT_MS,
        CLAIM_RETRY_MS,
        NAME_BYTES_MAX,
        BODY_BYTES_MAX,
        MENTIONS_PER_MESSAGE_MAX,
        PREVIEW_BYTES_MAX,
        THREAD_PARTICIPANTS_MAX,
        THREAD_PAGE_MAX,
        THREAD_READ_SPAN_MAX,
        MEMBERS_PER_CONVERSATION_MAX,
        GROUP_DM_MEMBERS_MAX,
        BROADCAST_MEMBERS_MAX,
        CONVERSATIONS_PER_USER_MAX,
        TOKENS_PER_USER_MAX,
        DEVICES_PER_USER_MAX,
        USERS_PER_WORKSPACE_MAX,
        CHANNELS_PER_WORKSPACE_MAX,
        CONNECTIONS_PER_SHARD_MAX,
        DEDUP_WINDOW_PER_CONVERSATION,
        RECENT_MESSAGES_PER_CONVERSATION,
        RECENT_CACHE_BYTES_MAX,
        MESSAGE_OVERHEAD_BYTES,
        MESSAGE_BYTES_MAX,
        REACTION_BYTES_MAX,
        REACTIONS_PER_MESSAGE_MAX,
        REACTION_USERS_PER_MESSAGE_MAX,
        LIVE_MESSAGES_PER_CONVERSATION_MAX,
        EDIT_WINDOW_MS_DEFAULT,
        LIVE_BYTES_MAX,
        INFO_OVERHEAD_BYTES,
        TOPIC_BYTES_MAX,
        INFO_BYTES_MAX,
        HISTORY_PAGE_MAX,
        HISTORY_PAGE_BYTES_MAX,
        PEER_WIRE_BYTES_MAX,
        SYNC_CURSORS_MAX,
        SYNC_INLINE_MESSAGES_MAX,
        SYNC_INLINE_BYTES_MAX,
        SYNC_GAP_INLINE_MAX,
        SYNC_PAGE_MESSAGES,
        BOOT_CONVERSATIONS_MAX,
        BOOT_TOPIC_BYTES_MAX,
        BOOT_INFO_BYTES_MAX,
        BOOT_PAGES_MAX,
        BOOT_PAGE_MESSAGES,
        BOOT_MESSAGES_BYTES_MAX,
        BOOT_PAYLOAD_BYTES_MAX,
        BOOT_OVERHEAD_BYTES,
        LIST_CONVERSATIONS_MAX,
        LIST_PUBLIC_CHANNELS_MAX,
        PENDING_COMMITS_MAX,
        PENDING_READS_MAX,
        PENDING_GATHERS_MAX,
        PENDING_DM_OPENS_MAX,
        DM_OPEN_WAITERS_MAX,
        PENDING_CLAIMS_MAX,
        PENDING_WATCH_WAITERS_MAX,
        PENDING_HELLOS_MAX,
        PEER_BATCH_MAX,
        LOCAL_STEPS_MAX,
        ACTIVITY_TTL_MS,
        ACTIVITY_REFRESH_MS,
        PUSH_GRACE_MS_DEFAULT,
        PUSH_GRACE_MS_MAX,
        BROADCAST_MEMBERS_DEFAULT,
        OUTBOX_ENTRIES_MAX,
        PUSH_IN_FLIGHT_MAX,
        PUSH_STARTS_PER_TICK_MAX,
        PUSH_RETRY_BASE_MS,
        PUSH_RETRY_MAX_MS,
        NOTIFY_ALL_PER_CONVERSATION_MAX,
        NOTIFY_HANDOFFS_MAX,
        NOTIFY_CANDIDATES_MAX,
        PUSHED_ENTRIES_MAX,
        DISPLAY_NAME_BYTES_MAX,
        REAL_NAME_BYTES_MAX,
        TITLE_BYTES_MAX,
        TIME_ZONE_BYTES_MAX,
        AVATAR_URL_BYTES_MAX,
        STATUS_EMOJI_BYTES_MAX,
        STATUS_TEXT_BYTES_MAX,
        PROFILE_OVERHEAD_BYTES,
        PROFILE_BYTES_MAX,
        GET_USERS_MAX,
        DIRECTORY_PAGE_MAX,
        DIRECTORY_CURSOR_BYTES_MAX,
        MEMBERS_PAGE_MAX,
        CHANNEL_PAGE_MAX,
        INVITE_USES_MAX,
        INVITE_EXPIRY_MAX_MS,
        INVITES_PER_WORKSPACE_MAX,
        PENDING_PROFILE_GATHERS_MAX,
        PINS_PER_CONVERSATION_MAX,
        PINS_PAGE_MAX,
        TYPING_INTERVAL_MS,
        TYPING_CONVERSATIONS_PER_CONN_MAX,
        TYPING_EXPIRY_MS,
        PRESENCE_WATCH_PER_CONN_MAX,
    ]
}

/// Names of the `pub const`s in core/src/constants.rs, read from the source
/// (so a new constant that is not in [`constants`] fails the test).
fn declared() -> Vec<String> {
    include_str!("../src/constants.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

/// A value as written in the table, in the constant's own unit.
fn parse_value(text: &str, millis: bool) -> Result<u64, String> {
    let t = text.trim().replace(',', "");
    let (number, unit) = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .map_or((t.as_str(), ""), |i| (&t[..i], t[i..].trim()));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("not a number: {text:?}"))?;
    let scale = match (unit, millis) {
        ("", false) => 1.0,
        ("K", false) => 1e3,
        ("M", false) => 1e6,
        ("KiB", false) => 1024.0,
        ("MiB", false) => 1024.0 * 1024.0,
        ("ms", true) => 1.0,
        ("s", true) => 1e3,
        ("min", true) => 60e3,
        _ => {
            return Err(format!(
                "unit {unit:?} in {text:?} (milliseconds: {millis})"
            ))
        }
    };
    Ok((n * scale).round() as u64)
}

/// The rows of the limits table: (names, values as written).
fn rows() -> Vec<(Vec<String>, Vec<String>)> {
    let doc = include_str!("../../docs/ARCHITECTURE.md");
    let section = doc
        .split("### Limits")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("docs/ARCHITECTURE.md has a ### Limits section");
    let split = |cell: &str| -> Vec<String> {
        cell.split(['/', '…'])
            .map(|p| p.trim().trim_matches('`').trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let names = split(cells[0].trim_start_matches("| "));
            let values = split(cells.get(1).copied().unwrap_or(""));
            (names, values)
        })
        .collect()
}

#[test]
fn every_constant_is_listed_in_the_macro() {
    let listed = constants();
    let missing: Vec<String> = declared()
        .into_iter()
        .filter(|n| !listed.contains_key(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "add these to constants() in core/tests/limits_doc.rs (and a row to docs/ARCHITECTURE.md): {missing:?}"
    );
}

#[test]
fn the_limits_table_matches_the_constants() {
    let actual = constants();
    let mut documented = BTreeMap::new();
    let mut errors = Vec::new();
    for (names, values) in rows() {
        let each = values.len() == 1 && values[0].ends_with(" each");
        for (i, name) in names.iter().enumerate() {
            let written = if each {
                values[0].trim_end_matches(" each").to_string()
            } else if let Some(v) = values.get(i) {
                v.clone()
            } else {
                errors.push(format!("{name}: no value in its row ({values:?})"));
                continue;
            };
            match (
                actual.get(name.as_str()),
                parse_value(&written, name.ends_with("_MS") || name.contains("_MS_")),
            ) {
                (None, _) => errors.push(format!("{name}: documented but not a constant")),
                (_, Err(e)) => errors.push(format!("{name}: {e}")),
                (Some(a), Ok(v)) if *a != v => errors.push(format!(
                    "{name}: documented {written} = {v}, constant is {a}"
                )),
                _ => {}
            }
            documented.insert(name.clone(), ());
        }
    }
    for name in actual.keys() {
        if !documented.contains_key(*name) {
            let value = actual[name];
            errors.push(format!(
                "{name} = {value}: no row in docs/ARCHITECTURE.md ### Limits"
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "limits table and constants disagree:\n{}",
        errors.join("\n")
    );
}

#[test]
fn values_are_read_as_people_write_them() {
    assert_eq!(parse_value("16 KiB", false), Ok(16 * 1024));
    assert_eq!(parse_value("1 MiB", false), Ok(1024 * 1024));
    assert_eq!(parse_value("100,000", false), Ok(100_000));
    assert_eq!(parse_value("1M", false), Ok(1_000_000));
    assert_eq!(parse_value("100K", false), Ok(100_000));
    assert_eq!(parse_value("0.5 s", true), Ok(500));
    assert_eq!(parse_value("100 ms", true), Ok(100));
    assert_eq!(parse_value("10 min", true), Ok(600_000));
    assert!(parse_value("15 s", false).is_err(), "a time for a count");
    assert!(parse_value("16 KiB", true).is_err(), "a size for a time");
    assert!(parse_value("lots", false).is_err());
}
