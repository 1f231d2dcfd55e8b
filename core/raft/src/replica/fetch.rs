//! Fetching committed records a follower lacks, as bytes (pure, no I/O).
//!
//! A follower that receives a snapshot beyond its state WAL (the leader
//! compacted past what it has) asks a peer for the missing committed
//! records of its group, "records from LSN `from` to `to`", and the peer
//! answers from its own state WAL in chunks of at most
//! [`FETCH_CHUNK_RECORDS`] records and [`FETCH_CHUNK_BYTES`] payload bytes.
//! Messages travel over the node links between the cores of the group: a
//! request is [`FETCH_FORMAT_VERSION`] (u8), `from` (u64), `to` (u64); a
//! reply is the records in the entry encoding (`entry::decode_entry`), or,
//! when the peer has none of them, the version and a zero count, or — when
//! the peer truncated its state WAL past `from` (behind its snapshot and
//! its history store) — [`FETCH_GONE_MARKER`] (u8) and the first LSN it
//! still has (u64): [`Reply::Gone`], and the follower catches up from the
//! peer's snapshot and history store instead (`super::catchup`).
//!
//! Must never: panic on bytes from a peer (typed [`EntryError`]), or
//! produce a reply larger than a link message (courier-net asserts
//! [`FETCH_CHUNK_BYTES`] against its link bound).

use super::entry::{self, CoreRecord, EntryError};

/// Version byte of a fetch request.
pub const FETCH_FORMAT_VERSION: u8 = 1;
/// Link kind of a fetch request.
pub const LINK_KIND_FETCH_REQUEST: u8 = 2;
/// Link kind of a fetch reply.
pub const LINK_KIND_FETCH_REPLY: u8 = 3;
/// First byte of a "gone" reply (never an entry encoding's version).
pub const FETCH_GONE_MARKER: u8 = 0xF0;
/// Most records in one reply.
pub const FETCH_CHUNK_RECORDS: u64 = 1_024;
/// Most payload bytes in one reply (one more record may cross it; a core
/// record is far below a link message's 4 MiB bound).
pub const FETCH_CHUNK_BYTES: usize = 1024 * 1024;

/// "Send me the committed records `from..=to` of this group."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    /// First LSN wanted.
    pub from: u64,
    /// Last LSN wanted.
    pub to: u64,
}

/// Encodes a request.
pub fn encode_request(r: FetchRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(FETCH_FORMAT_VERSION);
    out.extend_from_slice(&r.from.to_le_bytes());
    out.extend_from_slice(&r.to.to_le_bytes());
    out
}

/// Decodes a request from a peer.
pub fn decode_request(bytes: &[u8]) -> Result<FetchRequest, EntryError> {
    let Some((&version, rest)) = bytes.split_first() else {
        return Err(EntryError::Truncated { what: "version" });
    };
    if version != FETCH_FORMAT_VERSION {
        return Err(EntryError::Version {
            found: version,
            expected: FETCH_FORMAT_VERSION,
        });
    }
    if rest.len() < 16 {
        return Err(EntryError::Truncated { what: "range" });
    }
    if rest.len() > 16 {
        return Err(EntryError::Trailing {
            bytes: rest.len() - 16,
        });
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&rest[..8]);
    let from = u64::from_le_bytes(a);
    a.copy_from_slice(&rest[8..]);
    Ok(FetchRequest {
        from,
        to: u64::from_le_bytes(a),
    })
}

/// The last LSN one reply to `r` carries at most.
pub fn chunk_end(r: FetchRequest) -> u64 {
    r.to.min(r.from.saturating_add(FETCH_CHUNK_RECORDS - 1))
}

/// A peer's answer to a fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Consecutive committed records (none when the peer has none yet).
    Records(Vec<CoreRecord>),
    /// The peer's state WAL starts at `first_lsn`, past the request: catch
    /// up from its snapshot and history store (`super::catchup`).
    Gone {
        /// The first LSN the peer still has.
        first_lsn: u64,
    },
}

/// Encodes a reply (consecutive records, possibly none).
pub fn encode_reply(records: &[CoreRecord]) -> Vec<u8> {
    if records.is_empty() {
        return vec![entry::ENTRY_FORMAT_VERSION, 0, 0, 0, 0];
    }
    entry::encode_unbounded(records)
}

/// Encodes a "gone" reply.
pub fn encode_gone(first_lsn: u64) -> Vec<u8> {
    let mut out = vec![FETCH_GONE_MARKER];
    out.extend_from_slice(&first_lsn.to_le_bytes());
    out
}

/// Decodes a reply from a peer.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, EntryError> {
    if bytes == [entry::ENTRY_FORMAT_VERSION, 0, 0, 0, 0] {
        return Ok(Reply::Records(Vec::new()));
    }
    if let Some(rest) = bytes.strip_prefix(&[FETCH_GONE_MARKER]) {
        let Ok(first) = <[u8; 8]>::try_from(rest) else {
            return match rest.len() {
                n if n < 8 => Err(EntryError::Truncated { what: "first LSN" }),
                n => Err(EntryError::Trailing { bytes: n - 8 }),
            };
        };
        return Ok(Reply::Gone {
            first_lsn: u64::from_le_bytes(first),
        });
    }
    entry::decode_entry(bytes).map(Reply::Records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_bytes_are_typed() {
        let r = FetchRequest { from: 3, to: 900 };
        let bytes = encode_request(r);
        assert_eq!(decode_request(&bytes), Ok(r));
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode_request(&bytes[..cut]),
                Err(EntryError::Truncated { .. })
            ));
        }
        let mut long = bytes.clone();
        long.push(1);
        assert_eq!(
            decode_request(&long),
            Err(EntryError::Trailing { bytes: 1 })
        );
        let mut version = bytes;
        version[0] = 7;
        assert!(matches!(
            decode_request(&version),
            Err(EntryError::Version { found: 7, .. })
        ));
    }

    #[test]
    fn replies_round_trip_empty_or_not_and_chunks_are_bounded() {
        assert_eq!(
            decode_reply(&encode_reply(&[])),
            Ok(Reply::Records(Vec::new()))
        );
        let gone = encode_gone(4_097);
        assert_eq!(decode_reply(&gone), Ok(Reply::Gone { first_lsn: 4_097 }));
        for cut in 1..gone.len() {
            assert!(matches!(
                decode_reply(&gone[..cut]),
                Err(EntryError::Truncated { .. })
            ));
        }
        let mut long = gone.clone();
        long.push(0);
        assert_eq!(decode_reply(&long), Err(EntryError::Trailing { bytes: 1 }));
        let records: Vec<CoreRecord> = (10..14)
            .map(|lsn| CoreRecord {
                lsn,
                kind: 2,
                payload: vec![1; 600 * 1024],
            })
            .collect();
        assert_eq!(
            decode_reply(&encode_reply(&records)),
            Ok(Reply::Records(records))
        );
        assert_eq!(chunk_end(FetchRequest { from: 1, to: 5 }), 5);
        assert_eq!(
            chunk_end(FetchRequest {
                from: 1,
                to: 1 << 40
            }),
            FETCH_CHUNK_RECORDS
        );
        assert_eq!(
            chunk_end(FetchRequest {
                from: u64::MAX,
                to: u64::MAX
            }),
            u64::MAX
        );
    }
}
