//! Authorization and credentials.
//!
//! [`authorize`] is the one function that decides whether a user may see a
//! conversation. Every read, subscription, sync summary, history page,
//! send, cursor and preference change runs through it at the conversation's
//! owner, and every denial is `Reject::NotFound`, exactly what a
//! conversation that does not exist answers: a non-member cannot tell a
//! private channel or someone else's DM from nothing, and no workspace sees
//! another's conversations.
//!
//! Policy:
//! - a member whose membership is durable may do everything ([`Access::Member`]);
//! - a user of the same workspace may *preview* a public channel they are
//!   not in: read its history and find it by name ([`Access::Read`]), and
//!   join it. Slack lets workspace members browse public channels; the
//!   preview stops at reading (no live events, no sync, no sending);
//! - nothing else.
//!
//! Credentials: secrets are never stored, only their sha256, compared in
//! constant time ([`secret_matches`]).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::peer::Who;
use crate::state::Conversation;
use crate::types::{ConversationKind, Lsn, Reject};

/// What a user wants to do with a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Act as a member: send, subscribe, sync, mark read, set preferences,
    /// invite.
    Member,
    /// Read history, look up by name, join: members, and the workspace's
    /// users for public channels.
    Read,
}

/// The one authorization decision. `durable` is the shard's durable LSN:
/// a membership counts only once its record is durable, so nobody sees
/// anything on the strength of a join that a crash could still undo.
pub fn authorize(
    conv: &Conversation,
    who: Who,
    access: Access,
    durable: Lsn,
) -> Result<(), Reject> {
    if conv.workspace != who.workspace {
        return Err(Reject::NotFound);
    }
    if conv.is_member(who.user, durable) {
        return Ok(());
    }
    match (access, conv.kind) {
        (Access::Read, ConversationKind::PublicChannel) => Ok(()),
        _ => Err(Reject::NotFound),
    }
}

/// sha256 of a secret: the only form in which secrets are stored.
pub fn hash_secret(secret: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Whether `secret` hashes to `stored`, in time independent of where they
/// differ.
pub fn secret_matches(secret: &[u8; 32], stored: &[u8; 32]) -> bool {
    hash_secret(secret).ct_eq(stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashState;
    use crate::state::{Member, State};
    use crate::types::{ConversationId, Millis, Seq, ShardId, UserId, WorkspaceId};

    const WS: WorkspaceId = WorkspaceId(1);
    const OTHER_WS: WorkspaceId = WorkspaceId(2);
    const ALICE: UserId = UserId(10);

    /// A conversation of `kind` in WS; ALICE is a member iff `member`, her
    /// membership written at LSN 5.
    fn check(
        kind: ConversationKind,
        member: bool,
        workspace: WorkspaceId,
        access: Access,
        durable: u64,
        expected: Result<(), Reject>,
    ) {
        let state = State::new(ShardId(0), 1, HashState::new(&[0; 32]));
        let mut conv =
            state.new_conversation(ConversationId(7), WS, kind, String::new(), None, Millis(0));
        if member {
            conv.members.insert(
                ALICE,
                Member {
                    joined_seq: Seq(0),
                    lsn: Lsn(5),
                },
            );
        }
        let who = Who {
            user: ALICE,
            workspace,
        };
        assert_eq!(
            authorize(&conv, who, access, Lsn(durable)),
            expected,
            "{kind:?} member={member} {workspace:?} {access:?} durable={durable}"
        );
    }

    #[test]
    fn policy_table() {
        use Access::*;
        use ConversationKind::*;
        let nf = Err(Reject::NotFound);
        for kind in [PublicChannel, PrivateChannel, Dm, GroupDm] {
            // Durable members may do everything.
            check(kind, true, WS, Member, 5, Ok(()));
            check(kind, true, WS, Read, 9, Ok(()));
            // A membership not yet durable does not count.
            check(kind, true, WS, Member, 4, nf.clone());
            // Other workspaces see nothing, member or not.
            check(kind, true, OTHER_WS, Member, 9, nf.clone());
            check(kind, false, OTHER_WS, Read, 9, nf.clone());
            // Non-members cannot act as members.
            check(kind, false, WS, Member, 9, nf.clone());
        }
        // Only public channels can be previewed by non-members.
        check(PublicChannel, false, WS, Read, 9, Ok(()));
        check(PrivateChannel, false, WS, Read, 9, nf.clone());
        check(Dm, false, WS, Read, 9, nf.clone());
        check(GroupDm, false, WS, Read, 9, nf);
    }

    #[test]
    fn secrets() {
        let secret = [42u8; 32];
        let stored = hash_secret(&secret);
        assert!(secret_matches(&secret, &stored));
        let mut wrong = secret;
        wrong[31] ^= 1;
        assert!(!secret_matches(&wrong, &stored));
        assert_ne!(stored, secret);
    }
}
