//! Every limit of the core, in one place, with compile-time checks of how
//! the limits relate.
//!
//! A limit is a promise in two directions: clients may rely on requests
//! within it being served, and the shard relies on it to bound memory and
//! work per request. Request-side limits are enforced where a request enters
//! the node (its connection's shard) and re-checked where they matter; a
//! violation is a [`crate::api::Reject::TooLarge`] or
//! [`crate::api::Reject::Invalid`] naming the limit, never a panic.
//! `docs/ARCHITECTURE.md` ("Core: limits") lists them with their reasons.

// ---------------------------------------------------------------------------
// Placement and time.

/// Most shards a node may run. Shard ids travel in 16 bits (ids, connection
/// ids); the interest bitset of a conversation grows with the count.
pub const SHARD_COUNT_MAX: u16 = 1024;

/// Longest period between two `Input::Tick`s the runtime may leave.
/// Timeouts compare deadlines with the input time, so a faster tick only
/// makes them fire closer to their deadline.
pub const TICK_MS: u64 = 100;

/// A request forwarded to another shard that gets no answer within this
/// time is answered `Reject::Unavailable` with cause `PeerTimeout` (the
/// other shard restarted; an unknown outcome).
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// A creation that reserved a name but whose second half (the user's home
/// record, the channel's owner record) is not confirmed yet is retried this
/// often until it is.
pub const CLAIM_RETRY_MS: u64 = 2_000;

// ---------------------------------------------------------------------------
// Text.

/// Names: workspaces, users, channels, device names (bytes of UTF-8).
pub const NAME_BYTES_MAX: usize = 80;

/// Message body (bytes of UTF-8). Slack's limit is 40,000 characters; a
/// smaller one keeps history pages and sync replies small.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// Directly mentioned users per message.
pub const MENTIONS_PER_MESSAGE_MAX: usize = 64;

/// A reaction's emoji (bytes of UTF-8: a short name like `thumbsup` or
/// the emoji itself), issue 17.
pub const REACTION_BYTES_MAX: usize = 64;

/// Distinct reactions on one message (Slack allows 50 distinct emoji; a
/// smaller bound keeps a message's state small).
pub const REACTIONS_PER_MESSAGE_MAX: usize = 24;

/// Reactions on one message over all emoji (one per user per emoji): the
/// bound that keeps a message's state, and so every page, bounded. A
/// reaction beyond it is refused with `TooLarge`.
pub const REACTION_USERS_PER_MESSAGE_MAX: usize = 1_024;

/// Messages of one conversation with state the owner keeps in memory
/// (edited, deleted or reacted to): each costs about 64 bytes plus its
/// edited text and reactions (at most [`LIVE_BYTES_MAX`]). A change of a
/// message beyond this count is refused with `TooLarge`.
pub const LIVE_MESSAGES_PER_CONVERSATION_MAX: usize = 65_536;

/// Pinned messages per conversation (issue 17, part 3): a pin beyond it is
/// refused with `TooLarge` (unpin one first). Pins are changes of a
/// message, so they also count towards
/// [`LIVE_MESSAGES_PER_CONVERSATION_MAX`].
pub const PINS_PER_CONVERSATION_MAX: usize = 100;

/// Pinned messages per `ListPins` page (issue 17, part 3).
pub const PINS_PAGE_MAX: u32 = 100;

/// Typing (issue 17, part 4): a connection forwards at most one `Typing`
/// per conversation per this interval; more are answered `Done` and
/// dropped.
pub const TYPING_INTERVAL_MS: u64 = 2_000;

/// Typing: conversations whose last `Typing` a connection remembers for
/// its rate (the oldest is forgotten first): bounds the per-connection
/// state.
pub const TYPING_CONVERSATIONS_PER_CONN_MAX: usize = 8;

/// Typing: a client shows "X is typing" this long after the last
/// `Typing` event (a typist repeats it every TYPING_INTERVAL_MS).
pub const TYPING_EXPIRY_MS: u64 = 6_000;

/// Presence (issue 17, part 4): users one connection may watch.
pub const PRESENCE_WATCH_PER_CONN_MAX: usize = 500;

/// Default edit window: a message can be edited this long after it was
/// posted (deletes and reactions have no window). Configurable per node
/// (`ShardConfig::edit_window_ms`, `courierd --edit-window-secs`).
pub const EDIT_WINDOW_MS_DEFAULT: u64 = 24 * 60 * 60 * 1_000;

/// Largest size estimate of a message's reactions in a reply.
pub const LIVE_BYTES_MAX: usize =
    REACTIONS_PER_MESSAGE_MAX * (REACTION_BYTES_MAX + 8) + 8 * REACTION_USERS_PER_MESSAGE_MAX;

/// Threads (issue 17, part 2): participants a root's summary keeps (the
/// most recent distinct repliers), so a root's summary is bounded.
pub const THREAD_PARTICIPANTS_MAX: usize = 3;

/// Threads: replies in one page of a thread view (`Request::Thread`).
pub const THREAD_PAGE_MAX: u32 = 100;

/// Threads: the seq span one thread page reads from the history store
/// (root and replies are not contiguous; a page stops early rather than
/// read more), so a thread page costs at most this many entries read.
pub const THREAD_READ_SPAN_MAX: u64 = 1_000;

/// Length of the last-message preview in conversation lists.
pub const PREVIEW_BYTES_MAX: usize = 100;

// ---------------------------------------------------------------------------
// Entities.

/// Members of one conversation.
pub const MEMBERS_PER_CONVERSATION_MAX: u32 = 100_000;

/// Members of a group DM (the requester included); a DM has exactly two.
pub const GROUP_DM_MEMBERS_MAX: usize = 8;

/// Ceiling of the configurable broadcast limit: `@channel` / `@here` count
/// as mentions (and notify) only in conversations with at most
/// `ShardConfig::broadcast_members_max` members (default
/// [`BROADCAST_MEMBERS_DEFAULT`]); above it the send is accepted with
/// `broadcast_ignored`.
pub const BROADCAST_MEMBERS_MAX: u32 = 10_000;

/// Conversations a user may be in. A soft bound: it is checked at the
/// user's home shard when a membership is requested, so concurrent requests
/// in flight may overshoot it by their number.
pub const CONVERSATIONS_PER_USER_MAX: usize = 10_000;

/// Live tokens per user.
pub const TOKENS_PER_USER_MAX: usize = 64;

/// Connected devices (sessions) per user across the node.
pub const DEVICES_PER_USER_MAX: usize = 32;

/// Users per workspace.
pub const USERS_PER_WORKSPACE_MAX: usize = 1_000_000;

/// Channels (public and private) per workspace.
pub const CHANNELS_PER_WORKSPACE_MAX: usize = 100_000;

/// Connections a shard tracks; beyond it new sockets are closed.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 1_000_000;

// ---------------------------------------------------------------------------
// Messages, caches, idempotency.

/// Per conversation, the last this-many `(sender, client_msg_id)` pairs are
/// remembered (persisted through the message records and snapshots): a retry
/// is idempotent while fewer than this many messages were posted in the
/// conversation since the original. Clients reconcile older unacked sends by
/// matching `client_msg_id` in `Sync` (see docs/ARCHITECTURE.md).
pub const DEDUP_WINDOW_PER_CONVERSATION: usize = 512;

/// Newest messages kept in memory per conversation.
pub const RECENT_MESSAGES_PER_CONVERSATION: usize = 64;

/// Memory of all recent-message caches of a shard together; beyond it the
/// caches of the least recently written conversations are dropped (their
/// history is then read from the WAL).
pub const RECENT_CACHE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Fixed per-message size estimate (ids, seq, timestamp, framing) added to
/// the body and mentions when budgets are measured in bytes.
pub const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// Largest size estimate of one message.
pub const MESSAGE_BYTES_MAX: usize =
    MESSAGE_OVERHEAD_BYTES + BODY_BYTES_MAX + 8 * MENTIONS_PER_MESSAGE_MAX + LIVE_BYTES_MAX;

/// Fixed size estimate of a `ConversationInfo` besides its name, members
/// and preview.
pub const INFO_OVERHEAD_BYTES: usize = 96;

/// A channel's topic and its purpose (issue 16, part 4), each: bytes of
/// UTF-8 (Slack allows 250 characters).
pub const TOPIC_BYTES_MAX: usize = 250;

/// Largest size estimate of one `ConversationInfo`.
pub const INFO_BYTES_MAX: usize = INFO_OVERHEAD_BYTES
    + NAME_BYTES_MAX
    + PREVIEW_BYTES_MAX
    + 8 * GROUP_DM_MEMBERS_MAX
    + 2 * TOPIC_BYTES_MAX;

// ---------------------------------------------------------------------------
// Reads: history, sync, boot, lists.

/// Messages per `History` page.
pub const HISTORY_PAGE_MAX: u32 = 100;

/// Bytes per `History` page (the page is cut short to stay within it).
pub const HISTORY_PAGE_BYTES_MAX: usize = 1024 * 1024;

/// Bytes of one cross-shard message in its wire form (`PeerMsg::encode`),
/// for shards on other nodes: a larger message is refused by encode and
/// decode. Room for the largest replies (a history page of
/// [`HISTORY_PAGE_BYTES_MAX`], a page of profiles) with their archive
/// overhead, and within one node-link frame (4 MiB, asserted in
/// courier-net).
pub const PEER_WIRE_BYTES_MAX: usize = 3 * 1024 * 1024;

/// `(conversation, seq)` cursors one `Sync` may name.
pub const SYNC_CURSORS_MAX: usize = CONVERSATIONS_PER_USER_MAX;

/// Messages inlined in one `Sync` reply, over all conversations.
pub const SYNC_INLINE_MESSAGES_MAX: usize = 1_000;

/// Bytes of messages inlined in one `Sync` reply, over all conversations.
pub const SYNC_INLINE_BYTES_MAX: usize = 1024 * 1024;

/// A conversation whose gap is at most this many messages (and in the
/// recent cache) is synced inline; a larger gap is `truncated`.
pub const SYNC_GAP_INLINE_MAX: usize = 50;

/// The newest page sent for a `truncated` conversation.
pub const SYNC_PAGE_MESSAGES: usize = 20;

/// Conversations per `Boot` page.
pub const BOOT_CONVERSATIONS_MAX: u32 = 100;

/// Conversations of a `Boot` page that come with their newest messages.
pub const BOOT_PAGES_MAX: usize = 2;

/// Newest messages per conversation in `Boot`.
pub const BOOT_PAGE_MESSAGES: usize = 20;

/// A channel's topic and purpose in a `Boot` reply's infos (issue 16,
/// part 4): cut to this many bytes at a char boundary, so a page of
/// `BOOT_CONVERSATIONS_MAX` infos stays within the boot target; every other
/// reply carries them whole (TOPIC_BYTES_MAX).
pub const BOOT_TOPIC_BYTES_MAX: usize = 32;

/// Largest size estimate of one `ConversationInfo` in a `Boot` reply.
pub const BOOT_INFO_BYTES_MAX: usize =
    INFO_BYTES_MAX - 2 * TOPIC_BYTES_MAX + 2 * BOOT_TOPIC_BYTES_MAX;

/// Bytes of messages in one `Boot` reply.
pub const BOOT_MESSAGES_BYTES_MAX: usize = 24 * 1024;

/// Bound on a `Boot` reply's size estimate (the product target: a user in
/// thousands of conversations boots with tens of KB).
pub const BOOT_PAYLOAD_BYTES_MAX: usize = 64 * 1024;

/// Fixed part of a `Boot` reply (user and workspace names, counters).
pub const BOOT_OVERHEAD_BYTES: usize = 64 + 2 * NAME_BYTES_MAX;

/// Conversations in a `ListConversations` reply (most recently active first).
pub const LIST_CONVERSATIONS_MAX: usize = 2_000;

/// Public channels of the workspace considered by `ListConversations`.
pub const LIST_PUBLIC_CHANNELS_MAX: usize = 1_000;

// ---------------------------------------------------------------------------
// Pending tables (all memory only, all bounded).

/// Appended records whose durability-dependent work is still queued. When
/// full, requests that write are refused with `Unavailable`, cause
/// `Overloaded` (the WAL is not keeping up; a definite refusal).
pub const PENDING_COMMITS_MAX: usize = 65_536;

/// Outstanding history-store reads (`Effect::ReadHistory`).
pub const PENDING_READS_MAX: usize = 1_024;

/// Outstanding scatter-gather requests (`Sync`, `Boot`, `ListConversations`)
/// at a home shard.
pub const PENDING_GATHERS_MAX: usize = 4_096;

/// DM / group DM creations waiting for their members' home shards.
pub const PENDING_DM_OPENS_MAX: usize = 1_024;

/// Requests waiting on one DM creation (the same DM opened concurrently).
pub const DM_OPEN_WAITERS_MAX: usize = 16;

/// Name claims (users, channels) not yet confirmed by their second shard,
/// per shard.
pub const PENDING_CLAIMS_MAX: usize = 4_096;

/// Replies on a connection's shard waiting for subscriptions to be
/// confirmed by owners (`Welcome`, join acks).
pub const PENDING_WATCH_WAITERS_MAX: usize = 65_536;

/// Connections waiting for their home shard to check a `Hello`.
pub const PENDING_HELLOS_MAX: usize = 65_536;

/// Items in one cross-shard batch (watch requests, membership rounds,
/// device registrations, summary requests).
pub const PEER_BATCH_MAX: usize = 4_096;

/// Guard against a cycle of messages a shard sends itself within one step.
pub const LOCAL_STEPS_MAX: usize = 1 << 24;

// ---------------------------------------------------------------------------
// Notifications (see docs/NOTIFICATIONS.md).

/// A device counts as active while its last `SetFocus{active: true}` is
/// younger than this. Short on purpose: a device that vanishes without a
/// close stops suppressing pushes within seconds, not at the runtime's idle
/// timeout.
pub const ACTIVITY_TTL_MS: u64 = 15_000;

/// How often a client re-sends `SetFocus{active: true}` while the person
/// interacts (documented client contract; memory only on the server).
pub const ACTIVITY_REFRESH_MS: u64 = 5_000;

/// Default grace window between an in-app notification and its push.
pub const PUSH_GRACE_MS_DEFAULT: u64 = 30_000;

/// Longest configurable grace window.
pub const PUSH_GRACE_MS_MAX: u64 = 10 * 60_000;

/// Default member limit for `@channel` / `@here` notifications (configurable
/// up to [`BROADCAST_MEMBERS_MAX`]).
pub const BROADCAST_MEMBERS_DEFAULT: u32 = 1_000;

/// Pushes and clears queued in one shard's outbox (durable). When full, new
/// pushes are dropped and counted (`push_dropped`): the gateway is down for
/// long, and the messages are still delivered by sync.
pub const OUTBOX_ENTRIES_MAX: usize = 65_536;

/// Pushes handed to the delivery thread and not yet answered, per shard.
pub const PUSH_IN_FLIGHT_MAX: usize = 64;

/// Pushes started per tick at most (bounds the work of one tick).
pub const PUSH_STARTS_PER_TICK_MAX: usize = PUSH_IN_FLIGHT_MAX;

/// First retry delay after a failed POST; doubles per attempt.
pub const PUSH_RETRY_BASE_MS: u64 = 500;

/// Longest retry delay.
pub const PUSH_RETRY_MAX_MS: u64 = 60_000;

/// Members of one channel whose notification level is `all` (notified of
/// every message). The owner walks this set for every message, so it bounds
/// a message's notification cost to O(mentions + this), whatever the member
/// count. Equal to the default `@channel` limit: a message in a channel at
/// the cap costs what an honored `@channel` costs by default. A
/// `SetNotify{level: All}` that would pass it is refused with
/// `Reject::TooLarge` naming it (docs/NOTIFICATIONS.md).
pub const NOTIFY_ALL_PER_CONVERSATION_MAX: usize = 1_000;

/// Notification hand-offs an owner tracks until their home shards confirm
/// the decisions durable (typically one group commit's worth), and also
/// messages waiting at a restarted owner for the homes' `all` rounds (one
/// tick) or re-driven from the durable watermark. Beyond it the oldest
/// hand-off is no longer tracked (`notify_handoffs_abandoned`: a crash may
/// then lose its notification) and the oldest waiting message goes at once.
pub const NOTIFY_HANDOFFS_MAX: usize = 4_096;

/// Candidates of one message (DM members + mentions + broadcast members +
/// `all`-subscribers): bounded by the broadcast and `all` limits.
pub const NOTIFY_CANDIDATES_MAX: usize = BROADCAST_MEMBERS_MAX as usize
    + MENTIONS_PER_MESSAGE_MAX
    + GROUP_DM_MEMBERS_MAX
    + NOTIFY_ALL_PER_CONVERSATION_MAX;

/// Remembered delivered pushes (user, conversation → seq) awaiting a read to
/// send their `clear`, per shard; the oldest are forgotten beyond it.
pub const PUSHED_ENTRIES_MAX: usize = 65_536;

// ---------------------------------------------------------------------------
// People: profiles, lookups, the directory, member lists (issue 16).

/// A profile's display name (bytes of UTF-8; what clients show instead of
/// the handle).
pub const DISPLAY_NAME_BYTES_MAX: usize = NAME_BYTES_MAX;

/// A profile's real name.
pub const REAL_NAME_BYTES_MAX: usize = 100;

/// A profile's title.
pub const TITLE_BYTES_MAX: usize = 100;

/// A profile's time zone name (the longest IANA name is 32 bytes).
pub const TIME_ZONE_BYTES_MAX: usize = 64;

/// A profile's avatar URL.
pub const AVATAR_URL_BYTES_MAX: usize = 512;

/// A status emoji (one emoji with modifiers, or a `:shortcode:`).
pub const STATUS_EMOJI_BYTES_MAX: usize = 64;

/// A status text (Slack's limit is 100 characters).
pub const STATUS_TEXT_BYTES_MAX: usize = 100;

/// Fixed size estimate of a `UserProfile` besides its strings.
pub const PROFILE_OVERHEAD_BYTES: usize = 64;

/// Largest size estimate of one `UserProfile` (handle included).
pub const PROFILE_BYTES_MAX: usize = PROFILE_OVERHEAD_BYTES
    + NAME_BYTES_MAX
    + DISPLAY_NAME_BYTES_MAX
    + REAL_NAME_BYTES_MAX
    + TITLE_BYTES_MAX
    + TIME_ZONE_BYTES_MAX
    + AVATAR_URL_BYTES_MAX
    + STATUS_EMOJI_BYTES_MAX
    + STATUS_TEXT_BYTES_MAX;

/// Users one `GetUsers` may name. The home shard that gathers them asks
/// each user's home shard once (ids chunked to PEER_BATCH_MAX), so a lookup
/// costs one hop per distinct home shard whatever the count.
pub const GET_USERS_MAX: usize = 1_000;

/// Entries per `Directory` page.
pub const DIRECTORY_PAGE_MAX: u32 = 200;

/// Longest `Directory` cursor key: a lower-cased name (lower-casing may
/// lengthen a name's UTF-8; four times is generous).
pub const DIRECTORY_CURSOR_BYTES_MAX: usize = 4 * NAME_BYTES_MAX;

/// Public channels per `BrowseChannels` page.
pub const CHANNEL_PAGE_MAX: u32 = 200;

/// Members per `ListMembers` page.
pub const MEMBERS_PAGE_MAX: u32 = 1_000;

/// Uses one invite may allow (`CreateInvite.max_uses`).
pub const INVITE_USES_MAX: u32 = 10_000;

/// The longest an invite may stay valid: 30 days.
pub const INVITE_EXPIRY_MAX_MS: u64 = 30 * 24 * 3_600_000;

/// Live invites (not used up, expired or revoked) per workspace. The
/// workspace shard drops the dead ones at each creation, so it holds at
/// most this many plus those that died since.
pub const INVITES_PER_WORKSPACE_MAX: usize = 1_000;

/// Outstanding `GetUsers` gathers at a home shard.
pub const PENDING_PROFILE_GATHERS_MAX: usize = 4_096;

// ---------------------------------------------------------------------------
// Compile-time sanity checks.

const _: () = assert!(
    ACTIVITY_REFRESH_MS * 2 < ACTIVITY_TTL_MS,
    "one lost refresh is tolerated"
);
const _: () = assert!(ACTIVITY_TTL_MS >= 2 * TICK_MS);
const _: () = assert!(PUSH_GRACE_MS_DEFAULT <= PUSH_GRACE_MS_MAX);
const _: () = assert!(BROADCAST_MEMBERS_DEFAULT <= BROADCAST_MEMBERS_MAX);
const _: () = assert!(NOTIFY_ALL_PER_CONVERSATION_MAX <= BROADCAST_MEMBERS_DEFAULT as usize);
const _: () = assert!(NOTIFY_ALL_PER_CONVERSATION_MAX <= PEER_BATCH_MAX);
const _: () = assert!(PUSH_IN_FLIGHT_MAX <= OUTBOX_ENTRIES_MAX);
const _: () = assert!(PUSH_RETRY_BASE_MS >= TICK_MS && PUSH_RETRY_BASE_MS <= PUSH_RETRY_MAX_MS);

const _: () = assert!(SHARD_COUNT_MAX >= 1);
const _: () = assert!(SHARD_COUNT_MAX as u32 <= 1 << 16, "slot space is 16 bits");
const _: () = assert!(REQUEST_TIMEOUT_MS >= 10 * TICK_MS);
const _: () = assert!(CLAIM_RETRY_MS >= TICK_MS);
const _: () = assert!(PREVIEW_BYTES_MAX <= BODY_BYTES_MAX);
const _: () = assert!(PREVIEW_BYTES_MAX >= 4, "a preview holds at least one char");
const _: () = assert!(GROUP_DM_MEMBERS_MAX >= 3 && GROUP_DM_MEMBERS_MAX <= 8);
const _: () = assert!(BROADCAST_MEMBERS_MAX <= MEMBERS_PER_CONVERSATION_MAX);
const _: () = assert!(MENTIONS_PER_MESSAGE_MAX <= PEER_BATCH_MAX);
// Every page served from the cache fits in it.
const _: () = assert!(SYNC_PAGE_MESSAGES <= RECENT_MESSAGES_PER_CONVERSATION);
const _: () = assert!(SYNC_GAP_INLINE_MAX <= RECENT_MESSAGES_PER_CONVERSATION);
const _: () = assert!(BOOT_PAGE_MESSAGES <= RECENT_MESSAGES_PER_CONVERSATION);
const _: () = assert!(SYNC_PAGE_MESSAGES <= SYNC_GAP_INLINE_MAX);
// One full conversation cache fits in the shard-wide budget.
const _: () =
    assert!(RECENT_MESSAGES_PER_CONVERSATION * MESSAGE_BYTES_MAX <= RECENT_CACHE_BYTES_MAX);
// One message always fits in a history page and a sync reply.
const _: () = assert!(MESSAGE_BYTES_MAX <= HISTORY_PAGE_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX <= SYNC_INLINE_BYTES_MAX);
const _: () = assert!(SYNC_PAGE_MESSAGES <= SYNC_INLINE_MESSAGES_MAX);
// A boot page stays within its payload target whatever the conversation count.
const _: () = assert!(
    BOOT_OVERHEAD_BYTES
        + BOOT_CONVERSATIONS_MAX as usize * BOOT_INFO_BYTES_MAX
        + BOOT_MESSAGES_BYTES_MAX
        <= BOOT_PAYLOAD_BYTES_MAX
);
const _: () = assert!(BOOT_PAGES_MAX as u32 <= BOOT_CONVERSATIONS_MAX);
const _: () = assert!(SYNC_CURSORS_MAX >= CONVERSATIONS_PER_USER_MAX);
const _: () = assert!(LIST_CONVERSATIONS_MAX >= LIST_PUBLIC_CHANNELS_MAX);
const _: () = assert!(HISTORY_PAGE_MAX as usize <= PEER_BATCH_MAX);
const _: () = assert!(DEDUP_WINDOW_PER_CONVERSATION >= 1);
const _: () = assert!(REACTION_BYTES_MAX <= BODY_BYTES_MAX);
const _: () = assert!(REACTIONS_PER_MESSAGE_MAX <= REACTION_USERS_PER_MESSAGE_MAX);
const _: () = assert!(PINS_PER_CONVERSATION_MAX <= LIVE_MESSAGES_PER_CONVERSATION_MAX);
const _: () = assert!(PINS_PAGE_MAX as usize <= PINS_PER_CONVERSATION_MAX);
const _: () = assert!(TYPING_EXPIRY_MS > TYPING_INTERVAL_MS);
const _: () = assert!(PRESENCE_WATCH_PER_CONN_MAX <= PEER_BATCH_MAX);
const _: () = assert!(PENDING_DM_OPENS_MAX >= 1 && DM_OPEN_WAITERS_MAX >= 1);
const _: () = assert!(GET_USERS_MAX <= PEER_BATCH_MAX);
const _: () = assert!(DISPLAY_NAME_BYTES_MAX <= NAME_BYTES_MAX);
const _: () = assert!(MEMBERS_PAGE_MAX as usize <= PEER_BATCH_MAX);
// A full GetUsers answer fits in a server frame (4 MiB, courier-proto).
const _: () = assert!(GET_USERS_MAX * PROFILE_BYTES_MAX <= 2 * 1024 * 1024);
const _: () = assert!(2 * HISTORY_PAGE_BYTES_MAX <= PEER_WIRE_BYTES_MAX);
