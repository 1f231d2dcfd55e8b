//! Unit tests of the catch-up messages and downloads: round trips, every
//! truncation and bound typed, stale and restarted pieces, the checksum,
//! and when a history copy is complete.

use super::*;

fn piece(lsn: u64, body: &[u8], offset: usize, len: usize) -> SnapshotReply {
    SnapshotReply::Piece {
        lsn,
        body_len: body.len() as u64,
        body_crc: crc32c::crc32c(body),
        offset: offset as u64,
        bytes: body[offset..offset + len].to_vec(),
    }
}

fn item(source: u64) -> HistoryItem {
    HistoryItem {
        conversation: source % 3 + 1,
        seq: source,
        source,
        payload: vec![source as u8; (source % 5) as usize],
    }
}

#[test]
fn messages_round_trip_and_every_truncation_is_typed() {
    let body: Vec<u8> = (0..5_000u32).map(|i| i as u8).collect();
    let snapshot = [
        encode_snapshot_reply(&piece(40, &body, 100, 900)),
        encode_snapshot_reply(&SnapshotReply::None),
    ];
    assert_eq!(
        decode_snapshot_reply(&snapshot[0]),
        Ok(piece(40, &body, 100, 900))
    );
    assert_eq!(decode_snapshot_reply(&snapshot[1]), Ok(SnapshotReply::None));
    let request = SnapshotRequest { lsn: 9, offset: 77 };
    assert_eq!(
        decode_snapshot_request(&encode_snapshot_request(request)),
        Ok(request)
    );
    let hreq = HistoryRequest {
        after: 5,
        up_to: 90,
    };
    assert_eq!(
        decode_history_request(&encode_history_request(hreq)),
        Ok(hreq)
    );
    let reply = HistoryReply {
        after: 5,
        covered: 12,
        entries: (6..12).map(item).collect(),
    };
    let hbytes = encode_history_reply(&reply);
    assert_eq!(decode_history_reply(&hbytes), Ok(reply));
    type Fails = fn(&[u8]) -> bool;
    let all: [(&[u8], Fails); 5] = [
        (&snapshot[0], |b| decode_snapshot_reply(b).is_err()),
        (&snapshot[1], |b| decode_snapshot_reply(b).is_err()),
        (&hbytes, |b| decode_history_reply(b).is_err()),
        (&encode_snapshot_request(request), |b| {
            decode_snapshot_request(b).is_err()
        }),
        (&encode_history_request(hreq), |b| {
            decode_history_request(b).is_err()
        }),
    ];
    for (bytes, fails) in all {
        for cut in 0..bytes.len() {
            assert!(fails(&bytes[..cut]), "cut at {cut} of {}", bytes.len());
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(fails(&long), "a trailing byte");
        let mut version = bytes.to_vec();
        version[0] = 9;
        assert!(fails(&version), "version");
    }
    assert!(matches!(
        decode_history_reply(&hbytes[..hbytes.len() - 1]),
        Err(CatchUpError::Truncated { .. })
    ));
}

#[test]
fn bounds_and_orders_from_a_peer_are_refused() {
    let mut too_big = vec![CATCHUP_FORMAT_VERSION];
    too_big.extend_from_slice(&7u64.to_le_bytes());
    too_big.extend_from_slice(&(SNAPSHOT_BYTES_MAX + 1).to_le_bytes());
    too_big.extend_from_slice(&0u32.to_le_bytes());
    too_big.extend_from_slice(&0u64.to_le_bytes());
    too_big.extend_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        decode_snapshot_reply(&too_big),
        Err(CatchUpError::Invalid { .. })
    ));
    let body = vec![1u8; 10];
    let mut beyond = encode_snapshot_reply(&piece(7, &body, 5, 5));
    beyond[21] = 6; // offset 6 + 5 bytes > 10
    assert!(matches!(
        decode_snapshot_reply(&beyond),
        Err(CatchUpError::Invalid { .. })
    ));
    let mut wrap = encode_snapshot_reply(&piece(7, &body, 5, 5));
    wrap[21..29].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode_snapshot_reply(&wrap),
        Err(CatchUpError::Invalid { .. })
    ));
    let descending = HistoryReply {
        after: 5,
        covered: 9,
        entries: vec![item(8), item(7)],
    };
    assert!(matches!(
        decode_history_reply(&encode_history_reply(&descending)),
        Err(CatchUpError::Invalid { .. })
    ));
    let at_after = HistoryReply {
        after: 8,
        covered: 9,
        entries: vec![item(8)],
    };
    assert!(matches!(
        decode_history_reply(&encode_history_reply(&at_after)),
        Err(CatchUpError::Invalid { .. })
    ));
    let mut many = encode_history_reply(&HistoryReply {
        after: 0,
        covered: 0,
        entries: Vec::new(),
    });
    many[17..21].copy_from_slice(&(HISTORY_CHUNK_ENTRIES + 1).to_le_bytes());
    assert!(matches!(
        decode_history_reply(&many),
        Err(CatchUpError::Invalid { .. })
    ));
}

#[test]
fn a_download_assembles_pieces_skips_stale_ones_and_restarts_on_a_newer_snapshot() {
    let old: Vec<u8> = (0..3_000u32).map(|i| (i * 3) as u8).collect();
    let new: Vec<u8> = (0..2_500u32).map(|i| (i * 5) as u8).collect();
    let mut d = SnapshotDownload::default();
    assert_eq!(d.request(), SnapshotRequest { lsn: 0, offset: 0 });
    assert_eq!(d.on_reply(piece(10, &old, 0, 1_000)), Ok(Downloaded::More));
    assert_eq!(
        d.request(),
        SnapshotRequest {
            lsn: 10,
            offset: 1_000
        }
    );
    // A repeated (stale) piece and a middle piece of another snapshot are ignored.
    assert_eq!(d.on_reply(piece(10, &old, 0, 1_000)), Ok(Downloaded::More));
    assert_eq!(d.on_reply(piece(20, &new, 500, 500)), Ok(Downloaded::More));
    assert_eq!(d.held(), 1_000);
    // The peer pruned snapshot 10: its newest, from the start, replaces it.
    assert_eq!(d.on_reply(piece(20, &new, 0, 2_000)), Ok(Downloaded::More));
    assert_eq!(
        d.request(),
        SnapshotRequest {
            lsn: 20,
            offset: 2_000
        }
    );
    assert_eq!(
        d.on_reply(piece(20, &new, 2_000, 500)),
        Ok(Downloaded::Done {
            lsn: 20,
            bytes: new.clone()
        })
    );
    assert_eq!(d.request(), SnapshotRequest { lsn: 0, offset: 0 });
    assert_eq!(d.on_reply(SnapshotReply::None), Ok(Downloaded::NoSnapshot));
    // A body that does not match its checksum is refused, and starts over.
    let mut bad = piece(30, &old, 0, 3_000);
    if let SnapshotReply::Piece { bytes, .. } = &mut bad {
        bytes[7] ^= 1;
    }
    assert!(matches!(
        d.on_reply(bad),
        Err(CatchUpError::Checksum { lsn: 30, .. })
    ));
    assert_eq!(d.held(), 0);
    // An empty snapshot is whole at once.
    assert_eq!(
        d.on_reply(piece(40, &[], 0, 0)),
        Ok(Downloaded::Done {
            lsn: 40,
            bytes: Vec::new()
        })
    );
}

#[test]
fn a_history_copy_ends_once_the_peer_covers_the_snapshot() {
    let mut copy = HistoryCopy::new(5, 20);
    let reply = |after, covered, sources: &[u64]| HistoryReply {
        after,
        covered,
        entries: sources.iter().copied().map(item).collect(),
    };
    assert_eq!(
        copy.request(),
        HistoryRequest {
            after: 5,
            up_to: 20
        }
    );
    assert_eq!(copy.on_reply(reply(4, 30, &[6])), Copied::Stale);
    assert_eq!(
        copy.on_reply(reply(5, 12, &[6, 9, 12])),
        Copied::Append {
            entries: vec![item(6), item(9), item(12)],
            done: false
        }
    );
    assert_eq!(copy.request().after, 12);
    // The peer's store does not cover 20 yet: wait.
    assert_eq!(copy.on_reply(reply(12, 15, &[])), Copied::Wait);
    // It does now; entries beyond the snapshot come with the records.
    assert_eq!(
        copy.on_reply(reply(12, 40, &[14, 20, 21, 25])),
        Copied::Append {
            entries: vec![item(14), item(20)],
            done: true
        }
    );
    let mut idle = HistoryCopy::new(5, 20);
    assert_eq!(
        idle.on_reply(reply(5, 20, &[])),
        Copied::Append {
            entries: Vec::new(),
            done: true
        }
    );
}
