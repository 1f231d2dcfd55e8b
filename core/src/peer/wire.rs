//! The wire form of a cross-shard message, for shards on other nodes.
//!
//! Within a node, [`PeerMsg`]s travel between cores as owned values over
//! channels and are never serialized. A cluster whose conversations and
//! users live on different nodes sends them over the node links; this is
//! their byte form: one version byte, then the rkyv archive (0.8,
//! little-endian) of the message, validated on decode (`bytecheck`).
//!
//! Trust: the bytes come only from nodes of the same cluster (the links
//! admit nothing else), like Raft's messages. Decoding still never panics
//! and never allocates beyond [`PEER_WIRE_BYTES_MAX`]: a frame that is too
//! large, of another version, or not a valid archive is a typed
//! [`PeerWireError`].
//!
//! Compatibility: the archive follows the Rust types, so both ends must run
//! the same [`PEER_WIRE_VERSION`]; a change to any type a peer message
//! carries bumps it (a mixed-version cluster refuses the other side's
//! messages instead of misreading them; rolling upgrades are a later issue,
//! docs/CLUSTER.md).

use crate::api::PeerMsg;
use crate::constants::PEER_WIRE_BYTES_MAX;
use rkyv::{rancor, util::AlignedVec};

/// The version byte that starts every encoded peer message.
pub const PEER_WIRE_VERSION: u8 = 6;

/// Why bytes are not a peer message, or a message has no wire form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerWireError {
    /// No bytes at all.
    #[error("empty peer message")]
    Empty,
    /// Another version of the format (the other node runs another build).
    #[error("peer message version {found}, this node speaks {PEER_WIRE_VERSION}")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// More than [`PEER_WIRE_BYTES_MAX`] bytes (either direction).
    #[error("peer message of {bytes} bytes, more than the {PEER_WIRE_BYTES_MAX}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The archive failed validation or could not be read back.
    #[error("invalid peer message: {detail}")]
    Invalid {
        /// rkyv's description.
        detail: String,
    },
    /// Serializing failed (only an allocation failure could cause it).
    #[error("peer message could not be serialized: {detail}")]
    Encode {
        /// rkyv's description.
        detail: String,
    },
}

/// `msg` as bytes: the version, then the archive. Refuses a message whose
/// form exceeds [`PEER_WIRE_BYTES_MAX`].
pub fn encode(msg: &PeerMsg) -> Result<Vec<u8>, PeerWireError> {
    let archive = rkyv::to_bytes::<rancor::Error>(msg).map_err(|e| PeerWireError::Encode {
        detail: e.to_string(),
    })?;
    let bytes = archive.len() + 1;
    if bytes > PEER_WIRE_BYTES_MAX {
        return Err(PeerWireError::TooLarge { bytes });
    }
    let mut out = Vec::with_capacity(bytes);
    out.push(PEER_WIRE_VERSION);
    out.extend_from_slice(&archive);
    Ok(out)
}

/// The message `bytes` hold (checked: size, version, archive). `bytes`
/// need not be aligned.
pub fn decode(bytes: &[u8]) -> Result<PeerMsg, PeerWireError> {
    let (&version, archive) = bytes.split_first().ok_or(PeerWireError::Empty)?;
    if bytes.len() > PEER_WIRE_BYTES_MAX {
        return Err(PeerWireError::TooLarge { bytes: bytes.len() });
    }
    if version != PEER_WIRE_VERSION {
        return Err(PeerWireError::Version { found: version });
    }
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<PeerMsg, rancor::Error>(&aligned).map_err(|e| PeerWireError::Invalid {
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{owner, Origin, PeerBody, Who};
    use crate::types::{Broadcast, ConnId, ConversationId, Role, ShardId, UserId, WorkspaceId};

    /// A send with every kind of field: ids, a u128, text, a list, an enum.
    fn sample() -> PeerMsg {
        PeerMsg(PeerBody::from(owner::Send {
            origin: Origin {
                conn: ConnId::new(ShardId(1), 7),
                req: 42,
                incarnation: 3,
            },
            who: Who {
                user: UserId(u64::MAX),
                workspace: WorkspaceId(2),
                role: Role::Guest,
            },
            conversation: ConversationId(5),
            client_msg_id: u128::MAX - 1,
            body: "héllo @bob".to_owned(),
            mentions: vec![UserId(1), UserId(1 << 60)],
            broadcast: Broadcast::Here,
        }))
    }

    #[test]
    fn a_message_survives_the_round_trip() {
        for msg in [sample(), PeerMsg(PeerBody::Restarted)] {
            let bytes = encode(&msg).unwrap();
            assert_eq!(bytes[0], PEER_WIRE_VERSION);
            assert_eq!(decode(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(&[]), Err(PeerWireError::Empty));
        let mut other = bytes.clone();
        other[0] = PEER_WIRE_VERSION + 1;
        assert_eq!(
            decode(&other),
            Err(PeerWireError::Version {
                found: PEER_WIRE_VERSION + 1
            })
        );
        for cut in 1..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Err(PeerWireError::Invalid { .. })),
                "cut at {cut}"
            );
        }
        let huge = vec![PEER_WIRE_VERSION; PEER_WIRE_BYTES_MAX + 1];
        assert_eq!(
            decode(&huge),
            Err(PeerWireError::TooLarge {
                bytes: PEER_WIRE_BYTES_MAX + 1
            })
        );
    }
}
