//! The encoding of Raft messages between nodes: one message of one group.
//!
//! Layout: [`MESSAGE_FORMAT_VERSION`] (1 byte), group id (u32 LE), then
//! raft's `eraftpb::Message` in protobuf (rust-protobuf 2, raft's
//! `protobuf-codec`). Messages travel only between the trusted nodes of one
//! cluster, over the node links: rust-protobuf 2 is not hardened against
//! hostile input (RUSTSEC-2024-0437, unbounded recursion on crafted unknown
//! fields), and raft itself trusts the fields of a message it steps
//! (a forged message can violate safety). Never decode bytes from a client
//! or from outside the cluster with this.

use crate::constants::MESSAGE_FORMAT_VERSION;
use crate::{DecodeError, GroupId};
use protobuf::Message as _;
use raft::eraftpb::Message;

/// A Raft message of one group, addressed to `msg.to`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMessage {
    /// The group.
    pub group: GroupId,
    /// raft's message (`from`, `to`, `term`, …).
    pub msg: Message,
}

impl GroupMessage {
    /// Encodes the message for the node link.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.msg.compute_size() as usize);
        out.push(MESSAGE_FORMAT_VERSION);
        out.extend_from_slice(&self.group.0.to_le_bytes());
        // Writing a message whose fields are all set cannot fail: the only
        // errors of rust-protobuf's writer are I/O errors of its sink, and
        // a Vec never fails.
        if let Err(e) = self.msg.write_to_vec(&mut out) {
            unreachable!("protobuf encoding into a Vec failed: {e}");
        }
        out
    }

    /// Decodes bytes from a peer node (trusted, see the module doc).
    pub fn decode(bytes: &[u8]) -> Result<GroupMessage, DecodeError> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(DecodeError::Truncated { what: "version" });
        };
        if version != MESSAGE_FORMAT_VERSION {
            return Err(DecodeError::Version { found: version });
        }
        if rest.len() < 4 {
            return Err(DecodeError::Truncated { what: "group" });
        }
        let (g, body) = rest.split_at(4);
        let group = GroupId(u32::from_le_bytes([g[0], g[1], g[2], g[3]]));
        let msg =
            Message::parse_from_bytes(body).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        Ok(GroupMessage { group, msg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    #[test]
    fn round_trips_and_refuses_damage() {
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgAppend);
        msg.to = 2;
        msg.from = 1;
        msg.term = 7;
        let e = Entry {
            index: 5,
            term: 7,
            data: bytes::Bytes::from_static(b"hello"),
            ..Entry::default()
        };
        msg.mut_entries().push(e);
        let m = GroupMessage {
            group: GroupId(42),
            msg,
        };
        let bytes = m.encode();
        assert_eq!(GroupMessage::decode(&bytes), Ok(m));
        assert_eq!(
            GroupMessage::decode(&[]),
            Err(DecodeError::Truncated { what: "version" })
        );
        assert_eq!(
            GroupMessage::decode(&[9]),
            Err(DecodeError::Version { found: 9 })
        );
        assert_eq!(
            GroupMessage::decode(&[1, 0]),
            Err(DecodeError::Truncated { what: "group" })
        );
        let mut bad = bytes.clone();
        bad.truncate(bytes.len() - 2);
        assert!(matches!(
            GroupMessage::decode(&bad),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
