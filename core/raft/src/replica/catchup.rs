//! Catching up from a peer's shard snapshot and history store, as bytes
//! and two sans-IO downloads (no I/O): what a follower does when the
//! committed records it lacks are gone from every peer's state WAL (the
//! peers truncate it behind their snapshots and their history stores,
//! docs/CLUSTER.md "Catching up from a snapshot").
//!
//! The follower asked for records (`fetch`) and heard
//! [`super::fetch::Reply::Gone`]. It then downloads, from one peer:
//!
//! 1. the peer's newest kept **shard snapshot** (state LSN `s`), in pieces
//!    of at most [`SNAPSHOT_CHUNK_BYTES`] ([`SnapshotRequest`] →
//!    [`SnapshotReply`]; [`SnapshotDownload`] assembles them and checks the
//!    body's CRC32C, restarting when the peer's newest snapshot changed);
//! 2. the peer's **history store** entries with source (state LSN) above
//!    what its own store holds, up to `s`, in chunks of at most
//!    [`HISTORY_CHUNK_ENTRIES`] entries and [`HISTORY_CHUNK_BYTES`] bytes
//!    ([`HistoryRequest`] → [`HistoryReply`]; [`HistoryCopy`] says what to
//!    append and when it is complete: the peer's store covers `s`);
//!
//! then installs the snapshot as its state WAL's new start (courier-wal's
//! install file) and restarts; the records after `s` come from the peers'
//! state WALs as before.
//!
//! Wire formats (little-endian, each message starts with
//! [`CATCHUP_FORMAT_VERSION`]):
//!
//! | message | link kind | body |
//! | --- | --- | --- |
//! | snapshot request | [`LINK_KIND_SNAPSHOT_REQUEST`] | lsn u64 (0: the newest), offset u64 |
//! | snapshot reply | [`LINK_KIND_SNAPSHOT_REPLY`] | lsn u64 (0: none kept), body length u64, body CRC32C u32, offset u64, length u32, bytes |
//! | history request | [`LINK_KIND_HISTORY_REQUEST`] | after u64, up to u64 |
//! | history reply | [`LINK_KIND_HISTORY_REPLY`] | after u64, covered u64, count u32, per entry: conversation u64, seq u64, source u64, length u32, payload |
//!
//! Must never: panic on bytes from a peer (every decoder is checked and
//! typed, [`CatchUpError`], and fuzzed: `fuzz/fuzz_targets/catchup_msgs.rs`),
//! hold more than [`SNAPSHOT_BYTES_MAX`] of snapshot, or hand out a
//! snapshot whose checksum does not match.

/// Version byte of every catch-up message.
pub const CATCHUP_FORMAT_VERSION: u8 = 1;
/// Link kind of a snapshot request (kinds 1–4 are raft messages, fetch
/// requests and replies, and courier-net's peer messages).
pub const LINK_KIND_SNAPSHOT_REQUEST: u8 = 5;
/// Link kind of a snapshot reply.
pub const LINK_KIND_SNAPSHOT_REPLY: u8 = 6;
/// Link kind of a history request.
pub const LINK_KIND_HISTORY_REQUEST: u8 = 7;
/// Link kind of a history reply.
pub const LINK_KIND_HISTORY_REPLY: u8 = 8;
/// Most snapshot bytes in one reply.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// Largest snapshot a follower downloads: it holds the body in memory
/// until it is whole and checked.
pub const SNAPSHOT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Most history entries in one reply.
pub const HISTORY_CHUNK_ENTRIES: u32 = 1_024;
/// Most payload bytes in one history reply (one more entry may cross it).
pub const HISTORY_CHUNK_BYTES: u64 = 1024 * 1024;
/// Largest payload of one history entry (a core record is far smaller:
/// client frames are at most 256 KiB).
pub const HISTORY_ENTRY_BYTES_MAX: u32 = 1024 * 1024;

/// A catch-up message that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatchUpError {
    /// The bytes end inside `what`.
    #[error("truncated {what}")]
    Truncated {
        /// The field cut off.
        what: &'static str,
    },
    /// An unknown format version.
    #[error("format version {found}, expected {expected}")]
    Version {
        /// The version byte read.
        found: u8,
        /// The version this build writes.
        expected: u8,
    },
    /// Bytes left after the message.
    #[error("{bytes} trailing bytes")]
    Trailing {
        /// How many.
        bytes: usize,
    },
    /// A field out of its bounds.
    #[error("invalid {what}")]
    Invalid {
        /// Which field, and why.
        what: &'static str,
    },
    /// A whole snapshot whose checksum does not match.
    #[error("snapshot at LSN {lsn}: checksum {got:#010x}, expected {expected:#010x}")]
    Checksum {
        /// The snapshot's LSN.
        lsn: u64,
        /// Computed.
        got: u32,
        /// Announced by the peer.
        expected: u32,
    },
}

/// "Send me bytes of your snapshot at `lsn` (0: your newest) from `offset`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The snapshot's LSN, or 0 for the newest kept.
    pub lsn: u64,
    /// First body byte wanted.
    pub offset: u64,
}

/// A piece of a peer's snapshot, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotReply {
    /// The peer keeps no snapshot (or not the one asked for).
    None,
    /// Bytes `offset .. offset + bytes.len()` of the body.
    Piece {
        /// The LSN the snapshot covers.
        lsn: u64,
        /// The whole body's length.
        body_len: u64,
        /// The whole body's CRC32C.
        body_crc: u32,
        /// Where the bytes start.
        offset: u64,
        /// At most [`SNAPSHOT_CHUNK_BYTES`].
        bytes: Vec<u8>,
    },
}

/// "Send me your history entries with source above `after`, up to `up_to`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Entries with a source above this.
    pub after: u64,
    /// The snapshot's LSN: entries beyond it come with the records.
    pub up_to: u64,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The conversation.
    pub conversation: u64,
    /// Its seq.
    pub seq: u64,
    /// The state LSN it came from.
    pub source: u64,
    /// The message record's payload.
    pub payload: Vec<u8>,
}

/// A chunk of a peer's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryReply {
    /// The request's `after` (a reply to an older request is stale).
    pub after: u64,
    /// Every message record with LSN ≤ this is durable in the peer's store.
    pub covered: u64,
    /// Sources strictly ascending, all above `after`.
    pub entries: Vec<HistoryItem>,
}

/// A checked reader over a peer's bytes.
struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Checks the version byte.
    fn open(bytes: &'a [u8]) -> Result<Bytes<'a>, CatchUpError> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(CatchUpError::Truncated { what: "version" });
        };
        if version != CATCHUP_FORMAT_VERSION {
            return Err(CatchUpError::Version {
                found: version,
                expected: CATCHUP_FORMAT_VERSION,
            });
        }
        Ok(Bytes { rest })
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CatchUpError> {
        if self.rest.len() < n {
            return Err(CatchUpError::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CatchUpError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CatchUpError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(a))
    }

    fn end(self) -> Result<(), CatchUpError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CatchUpError::Trailing {
                bytes: self.rest.len(),
            })
        }
    }
}

fn invalid<T>(what: &'static str) -> Result<T, CatchUpError> {
    Err(CatchUpError::Invalid { what })
}

/// Encodes a snapshot request.
pub fn encode_snapshot_request(r: SnapshotRequest) -> Vec<u8> {
    let mut out = vec![CATCHUP_FORMAT_VERSION];
    out.extend_from_slice(&r.lsn.to_le_bytes());
    out.extend_from_slice(&r.offset.to_le_bytes());
    out
}

/// Decodes a snapshot request from a peer.
pub fn decode_snapshot_request(bytes: &[u8]) -> Result<SnapshotRequest, CatchUpError> {
    let mut b = Bytes::open(bytes)?;
    let lsn = b.u64("lsn")?;
    let offset = b.u64("offset")?;
    b.end()?;
    Ok(SnapshotRequest { lsn, offset })
}

/// Encodes a snapshot reply.
pub fn encode_snapshot_reply(r: &SnapshotReply) -> Vec<u8> {
    let mut out = vec![CATCHUP_FORMAT_VERSION];
    let SnapshotReply::Piece {
        lsn,
        body_len,
        body_crc,
        offset,
        bytes,
    } = r
    else {
        out.extend_from_slice(&0u64.to_le_bytes());
        return out;
    };
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&body_crc.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Decodes a snapshot reply from a peer: a piece within its body, at
/// most [`SNAPSHOT_CHUNK_BYTES`], of a body at most [`SNAPSHOT_BYTES_MAX`].
pub fn decode_snapshot_reply(bytes: &[u8]) -> Result<SnapshotReply, CatchUpError> {
    let mut b = Bytes::open(bytes)?;
    let lsn = b.u64("lsn")?;
    if lsn == 0 {
        b.end()?;
        return Ok(SnapshotReply::None);
    }
    let body_len = b.u64("body length")?;
    let body_crc = b.u32("body checksum")?;
    let offset = b.u64("offset")?;
    let len = b.u32("length")?;
    if body_len > SNAPSHOT_BYTES_MAX {
        return invalid("body length above SNAPSHOT_BYTES_MAX");
    }
    if u64::from(len) > SNAPSHOT_CHUNK_BYTES {
        return invalid("piece length above SNAPSHOT_CHUNK_BYTES");
    }
    match offset.checked_add(u64::from(len)) {
        Some(end) if end <= body_len => {}
        _ => return invalid("piece beyond the body"),
    }
    let data = b.take(len as usize, "piece")?.to_vec();
    b.end()?;
    Ok(SnapshotReply::Piece {
        lsn,
        body_len,
        body_crc,
        offset,
        bytes: data,
    })
}

/// Encodes a history request.
pub fn encode_history_request(r: HistoryRequest) -> Vec<u8> {
    let mut out = vec![CATCHUP_FORMAT_VERSION];
    out.extend_from_slice(&r.after.to_le_bytes());
    out.extend_from_slice(&r.up_to.to_le_bytes());
    out
}

/// Decodes a history request from a peer.
pub fn decode_history_request(bytes: &[u8]) -> Result<HistoryRequest, CatchUpError> {
    let mut b = Bytes::open(bytes)?;
    let after = b.u64("after")?;
    let up_to = b.u64("up to")?;
    b.end()?;
    Ok(HistoryRequest { after, up_to })
}

/// Encodes a history reply.
pub fn encode_history_reply(r: &HistoryReply) -> Vec<u8> {
    let payload: usize = r.entries.iter().map(|e| 28 + e.payload.len()).sum();
    let mut out = Vec::with_capacity(21 + payload);
    out.push(CATCHUP_FORMAT_VERSION);
    out.extend_from_slice(&r.after.to_le_bytes());
    out.extend_from_slice(&r.covered.to_le_bytes());
    out.extend_from_slice(&(r.entries.len() as u32).to_le_bytes());
    for e in &r.entries {
        out.extend_from_slice(&e.conversation.to_le_bytes());
        out.extend_from_slice(&e.seq.to_le_bytes());
        out.extend_from_slice(&e.source.to_le_bytes());
        out.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.payload);
    }
    out
}

/// Decodes a history reply from a peer: at most
/// [`HISTORY_CHUNK_ENTRIES`] entries, each payload at most
/// [`HISTORY_ENTRY_BYTES_MAX`], sources strictly ascending above `after`.
pub fn decode_history_reply(bytes: &[u8]) -> Result<HistoryReply, CatchUpError> {
    let mut b = Bytes::open(bytes)?;
    let after = b.u64("after")?;
    let covered = b.u64("covered")?;
    let count = b.u32("count")?;
    if count > HISTORY_CHUNK_ENTRIES {
        return invalid("count above HISTORY_CHUNK_ENTRIES");
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut previous = after;
    for _ in 0..count {
        let conversation = b.u64("conversation")?;
        let seq = b.u64("seq")?;
        let source = b.u64("source")?;
        let len = b.u32("payload length")?;
        if source <= previous {
            return invalid("sources not ascending above after");
        }
        if len > HISTORY_ENTRY_BYTES_MAX {
            return invalid("payload above HISTORY_ENTRY_BYTES_MAX");
        }
        previous = source;
        let payload = b.take(len as usize, "payload")?.to_vec();
        entries.push(HistoryItem {
            conversation,
            seq,
            source,
            payload,
        });
    }
    b.end()?;
    Ok(HistoryReply {
        after,
        covered,
        entries,
    })
}

/// A snapshot being downloaded from one peer (at most
/// [`SNAPSHOT_BYTES_MAX`] held).
#[derive(Debug, Default)]
pub struct SnapshotDownload {
    /// The snapshot's LSN (0 until the first piece).
    lsn: u64,
    body_len: u64,
    body_crc: u32,
    bytes: Vec<u8>,
}

/// What a snapshot reply leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Downloaded {
    /// Ask for the next piece ([`SnapshotDownload::request`]).
    More,
    /// The peer keeps no snapshot: ask another peer.
    NoSnapshot,
    /// The whole snapshot, checked.
    Done {
        /// The state LSN it covers.
        lsn: u64,
        /// Its body.
        bytes: Vec<u8>,
    },
}

impl SnapshotDownload {
    /// The next request: the piece after what is held.
    pub fn request(&self) -> SnapshotRequest {
        SnapshotRequest {
            lsn: self.lsn,
            offset: self.bytes.len() as u64,
        }
    }

    /// Bytes held so far.
    pub fn held(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Takes a reply: a first piece of another snapshot starts over (the
    /// peer's newest changed, or another peer answers), a piece that does
    /// not continue what is held is stale and ignored. A whole body whose
    /// checksum does not match is an error (the download starts over).
    pub fn on_reply(&mut self, reply: SnapshotReply) -> Result<Downloaded, CatchUpError> {
        let SnapshotReply::Piece {
            lsn,
            body_len,
            body_crc,
            offset,
            bytes,
        } = reply
        else {
            return Ok(Downloaded::NoSnapshot);
        };
        let same = lsn == self.lsn && body_len == self.body_len && body_crc == self.body_crc;
        if !same {
            if offset != 0 {
                return Ok(Downloaded::More);
            }
            *self = SnapshotDownload {
                lsn,
                body_len,
                body_crc,
                bytes: Vec::new(),
            };
        }
        if offset != self.bytes.len() as u64 {
            return Ok(Downloaded::More);
        }
        self.bytes.extend_from_slice(&bytes);
        if (self.bytes.len() as u64) < self.body_len {
            return Ok(Downloaded::More);
        }
        let done = std::mem::take(self);
        let got = crc32c::crc32c(&done.bytes);
        if got != done.body_crc {
            return Err(CatchUpError::Checksum {
                lsn: done.lsn,
                got,
                expected: done.body_crc,
            });
        }
        Ok(Downloaded::Done {
            lsn: done.lsn,
            bytes: done.bytes,
        })
    }
}

/// Copying a peer's history entries with source in `(after, up_to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCopy {
    after: u64,
    up_to: u64,
}

/// What a history reply leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// Append these (sources ascending) to the store; then ask again
    /// ([`HistoryCopy::request`]) unless `done`.
    Append {
        /// The entries with source ≤ `up_to`.
        entries: Vec<HistoryItem>,
        /// Nothing more up to `up_to`.
        done: bool,
    },
    /// A reply to an older request: ignore it.
    Stale,
    /// The peer's store does not cover `up_to` yet: ask again later.
    Wait,
}

impl HistoryCopy {
    /// Entries above `after` (what the follower's store holds) up to
    /// `up_to` (the snapshot's LSN).
    pub fn new(after: u64, up_to: u64) -> HistoryCopy {
        HistoryCopy { after, up_to }
    }

    /// The next request.
    pub fn request(&self) -> HistoryRequest {
        HistoryRequest {
            after: self.after,
            up_to: self.up_to,
        }
    }

    /// Takes a (decoded, so ascending) reply.
    pub fn on_reply(&mut self, reply: HistoryReply) -> Copied {
        if reply.after != self.after {
            return Copied::Stale;
        }
        let beyond = reply.entries.iter().any(|e| e.source > self.up_to);
        let entries: Vec<HistoryItem> = reply
            .entries
            .into_iter()
            .filter(|e| e.source <= self.up_to)
            .collect();
        if let Some(last) = entries.last() {
            self.after = last.source;
        }
        let exhausted = entries.is_empty() && reply.covered >= self.up_to;
        if entries.is_empty() && !beyond && !exhausted {
            return Copied::Wait;
        }
        Copied::Append {
            done: beyond || exhausted || self.after >= self.up_to,
            entries,
        }
    }
}

#[cfg(test)]
mod tests;
