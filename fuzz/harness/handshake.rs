//! The check of the `handshake` fuzz target, shared with the corpus replay
//! in `net/tests/fuzz_corpus.rs`: the whole front door of a connection as
//! the gateway runs it — an HTTP request head, its route, and for an
//! upgrade the bytes after the head read as WebSocket frames with the
//! server's limits, each message decoded as a client frame. Never panics;
//! an upgrade's head ends within the input and its accept key is the
//! 28-character base64 of a SHA-1; no message exceeds the client frame
//! limit; a frame that decodes re-encodes to a frame that decodes equal.

/// Returns how many messages decoded as client frames (for the replay's
/// sanity checks).
pub fn handshake(data: &[u8]) -> usize {
    let mut decoded = 0;
    if let courier_net::http::Route::Upgrade { accept, head_len } = courier_net::http::route(data) {
        assert!(head_len <= data.len());
        assert_eq!(accept.len(), 28, "{accept:?}");
        for message in courier_net::gateway::read_ws_messages(&data[head_len..]) {
            assert!(message.len() <= courier_proto::constants::CLIENT_FRAME_BYTES_MAX);
            let _ = courier_proto::peek_request_id(&message);
            if let Ok(frame) = courier_proto::decode_client(&message) {
                let bytes = courier_proto::Encoder::new().client(&frame);
                assert_eq!(courier_proto::decode_client(&bytes).ok(), Some(frame));
                decoded += 1;
            }
        }
    }
    decoded
}
