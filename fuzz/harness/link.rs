//! The check of the `link_frames` fuzz target, shared with the corpus
//! replay in `net/tests/link.rs`: untrusted bytes read as everything a node
//! link decodes (courier_net::link::codec, docs/LINKS.md) — a handshake, a
//! handshake reply, a stream of frames, and a bare frame body (bypassing
//! the checksum, so the fuzzer reaches the message parser). Never panics;
//! what decodes re-encodes to the same bytes (handshakes) or to frames
//! that decode to the same messages; a body's messages account for every
//! byte of it.

use bytes::{Bytes, BytesMut};
use courier_net::link::codec::{self, FrameEncoder};
use courier_net::link::constants::{
    FRAME_BYTES_MAX, HANDSHAKE_BYTES, MESSAGE_HEADER_BYTES, PAYLOAD_BYTES_MAX, REPLY_BYTES,
};

/// Returns how many messages decoded from checksummed frames (for the
/// replay's sanity checks).
pub fn link_frames(data: &[u8]) -> usize {
    if let Some(head) = data.first_chunk::<HANDSHAKE_BYTES>() {
        if let Ok(hello) = codec::decode_hello(head) {
            assert_eq!(&codec::encode_hello(&hello), head);
        }
    }
    if let Some(head) = data.first_chunk::<REPLY_BYTES>() {
        if let Ok(reply) = codec::decode_reply(head) {
            assert_eq!(&codec::encode_reply(&reply), head);
        }
    }
    let body = Bytes::copy_from_slice(data);
    if let Ok(messages) = codec::decode_body(&body) {
        let bytes: usize = messages
            .iter()
            .map(|m| MESSAGE_HEADER_BYTES + m.payload.len())
            .sum();
        assert_eq!(bytes, data.len());
    }
    let mut buf = BytesMut::from(data);
    let mut decoded = 0;
    while let Ok(Some(body)) = codec::split_frame(&mut buf) {
        assert!(body.len() <= FRAME_BYTES_MAX);
        let Ok(messages) = codec::decode_body(&body) else {
            break;
        };
        let mut enc = FrameEncoder::new();
        for m in &messages {
            assert!(m.payload.len() <= PAYLOAD_BYTES_MAX);
            enc.push(m.dest_core, m.source_core, m.kind, &m.payload);
        }
        let mut again = BytesMut::from(enc.finish());
        let mut round = Vec::new();
        while let Ok(Some(b)) = codec::split_frame(&mut again) {
            round.extend(codec::decode_body(&b).unwrap_or_default());
        }
        assert!(again.is_empty());
        assert_eq!(round, messages);
        decoded += messages.len();
    }
    decoded
}
