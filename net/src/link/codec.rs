//! The link wire format (docs/LINKS.md): the connecting side's handshake,
//! the accepting side's reply, and length-prefixed, checksummed frames that
//! carry a batch of messages. Pure: no I/O, no clocks.
//!
//! Failure contract: decoding never panics and never trusts a length a
//! peer sent — a frame is only read once its whole length (bounded by
//! [`FRAME_BYTES_MAX`]) has arrived, its checksum is checked before its
//! body is parsed, and every message length is checked against what is
//! left of the body. Bad input is a [`CodecError`].

use super::constants::{
    FRAME_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_TARGET_BYTES, HANDSHAKE_BYTES, MAGIC,
    MESSAGE_HEADER_BYTES, PAYLOAD_BYTES_MAX, REPLY_BYTES, VERSION,
};
use super::{CoreId, NodeId};
use bytes::{Buf, Bytes, BytesMut};

/// Why bytes from a peer are not a valid handshake or frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The first bytes are not [`MAGIC`]: not a Courier link peer.
    #[error("not a Courier link peer (bad magic {got:02x?})")]
    BadMagic {
        /// The eight bytes received.
        got: [u8; 8],
    },
    /// The peer speaks another version of the link protocol.
    #[error("link protocol version {got}, this node speaks {VERSION}")]
    Version {
        /// The version received.
        got: u16,
    },
    /// A reserved field is not zero.
    #[error("reserved handshake field is {got}, must be 0")]
    Reserved {
        /// The value received.
        got: u16,
    },
    /// A reply status this node does not know.
    #[error("unknown handshake reply status {got}")]
    Status {
        /// The value received.
        got: u16,
    },
    /// A frame longer than [`FRAME_BYTES_MAX`] was announced.
    #[error("frame of {len} bytes announced, at most {FRAME_BYTES_MAX}")]
    FrameTooLarge {
        /// The announced frame length, header included.
        len: u64,
    },
    /// The frame body does not match its checksum.
    #[error("frame checksum mismatch: header says {expected:#010x}, body has {got:#010x}")]
    Checksum {
        /// CRC32C in the frame header.
        expected: u32,
        /// CRC32C of the body received.
        got: u32,
    },
    /// A message header or payload runs past the end of its frame body.
    #[error("message at byte {at} of a {len}-byte frame body is truncated")]
    Truncated {
        /// Offset of the message in the body.
        at: usize,
        /// Length of the body.
        len: usize,
    },
}

/// The connecting side's handshake: who it is and whom it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The cluster the connecting node belongs to.
    pub cluster_id: u128,
    /// The connecting node.
    pub source_node: NodeId,
    /// The core of the connecting node that owns this connection; every
    /// message on it comes from this core.
    pub source_core: CoreId,
    /// The node the connecting side means to reach.
    pub dest_node: NodeId,
    /// Increases with every connection the source core makes to this node
    /// (and across restarts, see docs/LINKS.md "Ordering").
    pub generation: u64,
}

/// What the accepting side says to a [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Connection accepted; frames may follow.
    Accepted = 0,
    /// Another protocol version (the reply's version is the acceptor's).
    VersionMismatch = 1,
    /// The acceptor belongs to another cluster.
    WrongCluster = 2,
    /// The acceptor is another node than the one expected.
    WrongNode = 3,
    /// The source core id is out of range.
    BadCore = 4,
}

impl Status {
    fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Accepted,
            1 => Status::VersionMismatch,
            2 => Status::WrongCluster,
            3 => Status::WrongNode,
            4 => Status::BadCore,
            _ => return None,
        })
    }
}

/// The accepting side's reply: its verdict and its own identity, so a
/// refused connector can say exactly what did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The acceptor's protocol version.
    pub version: u16,
    /// Accepted or why not.
    pub status: Status,
    /// The acceptor's cluster.
    pub cluster_id: u128,
    /// The acceptor's node id.
    pub node: NodeId,
    /// How many cores the acceptor has (destination cores are below it).
    pub cores: u16,
}

/// Encodes a handshake.
pub fn encode_hello(h: &Hello) -> [u8; HANDSHAKE_BYTES] {
    let mut out = [0u8; HANDSHAKE_BYTES];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&VERSION.to_le_bytes());
    // 10..12: reserved flags, zero.
    out[12..28].copy_from_slice(&h.cluster_id.to_le_bytes());
    out[28..32].copy_from_slice(&h.source_node.0.to_le_bytes());
    out[32..34].copy_from_slice(&h.source_core.0.to_le_bytes());
    // 34..36: reserved, zero.
    out[36..40].copy_from_slice(&h.dest_node.0.to_le_bytes());
    out[40..48].copy_from_slice(&h.generation.to_le_bytes());
    out
}

fn magic_of(b: &[u8]) -> Result<(), CodecError> {
    let mut got = [0u8; 8];
    got.copy_from_slice(&b[0..8]);
    if got == MAGIC {
        Ok(())
    } else {
        Err(CodecError::BadMagic { got })
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn u128_at(b: &[u8], at: usize) -> u128 {
    let mut v = [0u8; 16];
    v.copy_from_slice(&b[at..at + 16]);
    u128::from_le_bytes(v)
}

/// Decodes a handshake. A version other than [`VERSION`] is
/// `CodecError::Version` (the acceptor answers it with
/// [`Status::VersionMismatch`]); a bad magic means the bytes are not from a
/// link peer at all.
pub fn decode_hello(b: &[u8; HANDSHAKE_BYTES]) -> Result<Hello, CodecError> {
    magic_of(b)?;
    let version = u16_at(b, 8);
    if version != VERSION {
        return Err(CodecError::Version { got: version });
    }
    for at in [10, 34] {
        let got = u16_at(b, at);
        if got != 0 {
            return Err(CodecError::Reserved { got });
        }
    }
    Ok(Hello {
        cluster_id: u128_at(b, 12),
        source_node: NodeId(u32_at(b, 28)),
        source_core: CoreId(u16_at(b, 32)),
        dest_node: NodeId(u32_at(b, 36)),
        generation: u64_at(b, 40),
    })
}

/// Encodes a handshake reply.
pub fn encode_reply(r: &Reply) -> [u8; REPLY_BYTES] {
    let mut out = [0u8; REPLY_BYTES];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&r.version.to_le_bytes());
    out[10..12].copy_from_slice(&(r.status as u16).to_le_bytes());
    out[12..28].copy_from_slice(&r.cluster_id.to_le_bytes());
    out[28..32].copy_from_slice(&r.node.0.to_le_bytes());
    out[32..34].copy_from_slice(&r.cores.to_le_bytes());
    // 34..36: reserved, zero.
    out
}

/// Decodes a handshake reply. Any version is decoded (a refusal for
/// version mismatch carries the acceptor's version); the caller checks
/// [`Reply::status`].
pub fn decode_reply(b: &[u8; REPLY_BYTES]) -> Result<Reply, CodecError> {
    magic_of(b)?;
    let raw = u16_at(b, 10);
    let status = Status::from_u16(raw).ok_or(CodecError::Status { got: raw })?;
    let reserved = u16_at(b, 34);
    if reserved != 0 {
        return Err(CodecError::Reserved { got: reserved });
    }
    Ok(Reply {
        version: u16_at(b, 8),
        status,
        cluster_id: u128_at(b, 12),
        node: NodeId(u32_at(b, 28)),
        cores: u16_at(b, 32),
    })
}

/// One message as it travels in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMessage {
    /// Core of the receiving node the message is for.
    pub dest_core: CoreId,
    /// Core of the sending node it comes from.
    pub source_core: CoreId,
    /// The layer above's tag (opaque here).
    pub kind: u8,
    /// The layer above's bytes (opaque here), a slice of the frame.
    pub payload: Bytes,
}

/// Builds the bytes of one write: one or a few frames, each closed once
/// its body passes [`FRAME_TARGET_BYTES`]. The caller allocates (and keeps)
/// the encoder and clears it after each write, so its buffer is reused.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    buf: Vec<u8>,
    /// Start of the frame being filled, if one is open.
    open: Option<usize>,
    frames: u64,
    messages: u64,
}

impl FrameEncoder {
    /// An empty encoder.
    pub fn new() -> FrameEncoder {
        FrameEncoder::default()
    }

    /// Appends a message. Panics (a programmer error) if `payload` is
    /// longer than [`PAYLOAD_BYTES_MAX`]; `LinkHandle::send` refuses those.
    pub fn push(&mut self, dest_core: CoreId, source_core: CoreId, kind: u8, payload: &[u8]) {
        assert!(
            payload.len() <= PAYLOAD_BYTES_MAX,
            "payload over PAYLOAD_BYTES_MAX"
        );
        let start = match self.open {
            Some(start)
                if self.buf.len() - start - FRAME_HEADER_BYTES
                    + MESSAGE_HEADER_BYTES
                    + payload.len()
                    <= FRAME_BYTES_MAX - FRAME_HEADER_BYTES =>
            {
                start
            }
            _ => {
                self.close();
                self.open_frame()
            }
        };
        self.buf.extend_from_slice(&dest_core.0.to_le_bytes());
        self.buf.extend_from_slice(&source_core.0.to_le_bytes());
        self.buf.push(kind);
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.messages += 1;
        if self.buf.len() - start - FRAME_HEADER_BYTES >= FRAME_TARGET_BYTES {
            self.close();
        }
    }

    /// Appends an empty frame (a keepalive).
    pub fn keepalive(&mut self) {
        self.close();
        self.open_frame();
        self.close();
    }

    fn open_frame(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
        self.open = Some(start);
        start
    }

    fn close(&mut self) {
        if let Some(start) = self.open.take() {
            let body = &self.buf[start + FRAME_HEADER_BYTES..];
            let len = body.len() as u32;
            let crc = crc32c::crc32c(body);
            self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
            self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            self.frames += 1;
        }
    }

    /// Closes the open frame and returns every byte to write.
    pub fn finish(&mut self) -> &[u8] {
        self.close();
        &self.buf
    }

    /// Frames closed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Messages pushed so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// True when nothing has been pushed (not even a keepalive).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets everything, keeping the buffer's capacity up to
    /// [`FRAME_BYTES_MAX`] (a huge batch does not pin its memory).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(FRAME_BYTES_MAX);
        self.open = None;
        self.frames = 0;
        self.messages = 0;
    }
}

/// Phase one of decoding: if `buf` starts with a whole frame, removes it
/// and returns its body (checksum checked); `Ok(None)` if more bytes are
/// needed. A frame announced longer than [`FRAME_BYTES_MAX`] is an error
/// as soon as its header is here.
pub fn split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Ok(None);
    }
    let body_len = u32_at(buf, 0) as usize;
    let total = FRAME_HEADER_BYTES as u64 + body_len as u64;
    if total > FRAME_BYTES_MAX as u64 {
        return Err(CodecError::FrameTooLarge { len: total });
    }
    if buf.len() < FRAME_HEADER_BYTES + body_len {
        return Ok(None);
    }
    let expected = u32_at(buf, 4);
    let got = crc32c::crc32c(&buf[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len]);
    if got != expected {
        return Err(CodecError::Checksum { expected, got });
    }
    let mut frame = buf.split_to(FRAME_HEADER_BYTES + body_len);
    frame.advance(FRAME_HEADER_BYTES);
    Ok(Some(frame.freeze()))
}

/// Phase two: the messages of a frame body, in order. The payloads are
/// slices of `body` (no copy). An empty body is a keepalive.
pub fn decode_body(body: &Bytes) -> Result<Vec<WireMessage>, CodecError> {
    let mut out = Vec::new();
    let mut at = 0;
    let len = body.len();
    while at < len {
        if len - at < MESSAGE_HEADER_BYTES {
            return Err(CodecError::Truncated { at, len });
        }
        let payload_len = u32_at(body, at + 5) as usize;
        let start = at + MESSAGE_HEADER_BYTES;
        if payload_len > len - start {
            return Err(CodecError::Truncated { at, len });
        }
        out.push(WireMessage {
            dest_core: CoreId(u16_at(body, at)),
            source_core: CoreId(u16_at(body, at + 2)),
            kind: body[at + 4],
            payload: body.slice(start..start + payload_len),
        });
        at = start + payload_len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Round trips, every refusal, and hostile lengths.
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hello() -> Hello {
        Hello {
            cluster_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            source_node: NodeId(7),
            source_core: CoreId(3),
            dest_node: NodeId(9),
            generation: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn hello_and_reply_round_trip() {
        assert_eq!(decode_hello(&encode_hello(&hello())), Ok(hello()));
        let r = Reply {
            version: VERSION,
            status: Status::WrongCluster,
            cluster_id: 5,
            node: NodeId(2),
            cores: 4,
        };
        assert_eq!(decode_reply(&encode_reply(&r)), Ok(r));
    }

    /// One helper for the handshake refusals: flip bytes, expect an error.
    fn check_hello(patch: &[(usize, u8)], expected: CodecError) {
        let mut b = encode_hello(&hello());
        for &(at, v) in patch {
            b[at] = v;
        }
        assert_eq!(decode_hello(&b), Err(expected));
    }

    #[test]
    fn hello_refusals() {
        let mut bad = MAGIC;
        bad[0] = b'X';
        check_hello(&[(0, b'X')], CodecError::BadMagic { got: bad });
        check_hello(&[(8, 2)], CodecError::Version { got: 2 });
        check_hello(&[(10, 1)], CodecError::Reserved { got: 1 });
        check_hello(&[(35, 1)], CodecError::Reserved { got: 256 });
        let mut r = encode_reply(&Reply {
            version: VERSION,
            status: Status::Accepted,
            cluster_id: 1,
            node: NodeId(1),
            cores: 1,
        });
        r[10] = 9;
        assert_eq!(decode_reply(&r), Err(CodecError::Status { got: 9 }));
    }

    fn frames_of(bytes: &[u8]) -> Result<Vec<WireMessage>, CodecError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(body) = split_frame(&mut buf)? {
            out.extend(decode_body(&body)?);
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(out)
    }

    #[test]
    fn frames_round_trip_and_split_at_the_target() {
        let mut enc = FrameEncoder::new();
        let big = vec![0xAB; FRAME_TARGET_BYTES / 2];
        let mut expected = Vec::new();
        for i in 0..5u16 {
            let payload: &[u8] = if i % 2 == 0 { &big } else { b"small" };
            enc.push(CoreId(i), CoreId(1), i as u8, payload);
            expected.push(WireMessage {
                dest_core: CoreId(i),
                source_core: CoreId(1),
                kind: i as u8,
                payload: Bytes::copy_from_slice(payload),
            });
        }
        enc.keepalive();
        enc.push(CoreId(0), CoreId(1), 0, b"");
        expected.push(WireMessage {
            dest_core: CoreId(0),
            source_core: CoreId(1),
            kind: 0,
            payload: Bytes::new(),
        });
        let bytes = enc.finish().to_vec();
        // 3 × half-target payloads: frames close after the 2nd big one; the
        // keepalive is its own frame; the last message opens another.
        assert_eq!(enc.frames(), 4);
        assert_eq!(enc.messages(), 6);
        assert_eq!(frames_of(&bytes), Ok(expected));
        enc.clear();
        assert!(enc.is_empty());
    }

    #[test]
    fn a_max_payload_fits_one_frame() {
        let mut enc = FrameEncoder::new();
        enc.push(CoreId(0), CoreId(0), 1, b"x");
        enc.push(CoreId(0), CoreId(0), 1, &vec![7; PAYLOAD_BYTES_MAX]);
        let bytes = enc.finish().to_vec();
        assert_eq!(enc.frames(), 2);
        let got = frames_of(&bytes).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].payload.len(), PAYLOAD_BYTES_MAX);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut enc = FrameEncoder::new();
        enc.push(CoreId(1), CoreId(2), 3, b"hello");
        let bytes = enc.finish().to_vec();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(split_frame(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn hostile_frames_are_errors() {
        // Announced length over the bound: refused from the header alone.
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        buf.extend_from_slice(&[0; 4]);
        assert_eq!(
            split_frame(&mut buf),
            Err(CodecError::FrameTooLarge {
                len: u32::MAX as u64 + 8
            })
        );
        // A flipped body bit: checksum.
        let mut enc = FrameEncoder::new();
        enc.push(CoreId(1), CoreId(2), 3, b"hello");
        let mut bytes = enc.finish().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            frames_of(&bytes),
            Err(CodecError::Checksum { .. })
        ));
        // A message length past the body (checksum made valid).
        let body = Bytes::from_static(&[0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f, 1]);
        assert_eq!(
            decode_body(&body),
            Err(CodecError::Truncated { at: 0, len: 10 })
        );
        let body = Bytes::from_static(&[0, 0, 0, 0]);
        assert_eq!(
            decode_body(&body),
            Err(CodecError::Truncated { at: 0, len: 4 })
        );
    }
}
