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
//!   a *guest* may not (guests see only what they were added to);
//! - nothing else.
//!
//! Writing to a channel (issue 16, part 4) is decided by the same
//! function, after membership: [`Access::Post`], [`Access::Change`] and
//! [`Access::Setting`] add the channel's settings to the decision. An
//! archived channel refuses posts, changes of messages and every setting
//! but unarchive (`Archived`); an admins-only channel refuses posts by
//! anyone but workspace admins and owners (`Forbidden`). Settings: any
//! member (not a guest) sets the topic and purpose (only admins in an
//! admins-only channel); workspace admins and owners *and the channel's
//! creator* rename, archive and unarchive it (Slack's channel managers);
//! only workspace admins and owners change who may post (a creator who
//! is a plain member could otherwise lock themselves out). These refusals
//! are typed: the asker is a member, so they reveal nothing.
//!
//! Workspace roles ([`Role`]) decide the acts that concern no single
//! conversation ([`permit`], [`permit_role_change`]): admins and owners
//! create users, change roles and deactivate; members (not guests) create
//! and browse channels. Those refusals are typed (`NotAdmin`,
//! `Forbidden`): they reveal nothing but the asker's own role. The roles
//! are checked where they are held: the workspace shard for user
//! management and browsing, the user's home shard for channel creation,
//! and the owner (from the session's role) for conversations.
//!
//! Credentials: secrets are never stored, only their sha256, compared in
//! constant time ([`secret_matches`]).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::peer::Who;
use crate::state::Conversation;
use crate::types::{ChangeKind, ConversationKind, Lsn, Posting, Reject, Role};

/// What a user wants to do with a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Act as a member: send, subscribe, sync, mark read, set preferences,
    /// invite.
    Member,
    /// Read history, look up by name, join: members, and the workspace's
    /// users for public channels.
    Read,
    /// Post a message (issue 16, part 4): a member, the channel not
    /// archived, and an admin if only admins may post.
    Post,
    /// Edit, delete or react (issue 17): a member, the channel not
    /// archived (who may edit or delete is the owner's next check).
    Change,
    /// Change a channel setting (issue 16, part 4; see the module doc).
    Setting(ChangeKind),
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
        return permit_write(conv, who, access);
    }
    match (access, conv.kind, who.role) {
        (
            Access::Read,
            ConversationKind::PublicChannel,
            Role::Owner | Role::Admin | Role::Member,
        ) => Ok(()),
        _ => Err(Reject::NotFound),
    }
}

/// The write rules for a durable member (see the module doc).
fn permit_write(conv: &Conversation, who: Who, access: Access) -> Result<(), Reject> {
    let archived = || conv.archived_now();
    match access {
        Access::Member | Access::Read => Ok(()),
        Access::Change if archived() => Err(Reject::Archived),
        Access::Change => Ok(()),
        Access::Post if archived() => Err(Reject::Archived),
        Access::Post if conv.posting_now() == Posting::Admins && !who.role.is_admin() => Err(
            Reject::Forbidden("channel: only workspace admins may post here".into()),
        ),
        Access::Post => Ok(()),
        Access::Setting(kind) => permit_setting(conv, who, kind),
    }
}

/// Who may change a channel setting of `kind` (a durable member).
fn permit_setting(conv: &Conversation, who: Who, kind: ChangeKind) -> Result<(), Reject> {
    if conv.is_dm() || !kind.is_setting() {
        return Err(Reject::Invalid(
            "conversation: only channels have settings".into(),
        ));
    }
    if kind != ChangeKind::Unarchive && conv.archived_now() {
        return Err(Reject::Archived);
    }
    let admin = who.role.is_admin();
    let manager = admin || conv.creator == Some(who.user);
    let allowed = match kind {
        _ if who.role == Role::Guest => false,
        ChangeKind::Topic | ChangeKind::Purpose => admin || conv.posting_now() == Posting::Everyone,
        ChangeKind::Rename | ChangeKind::Archive | ChangeKind::Unarchive => manager,
        _ => admin,
    };
    if allowed {
        return Ok(());
    }
    Err(Reject::Forbidden(format!(
        "channel: the {} role cannot change this setting ({})",
        who.role.name(),
        setting_rule(kind)
    )))
}

/// The rule of [`permit_setting`] for `kind`, for refusal texts.
fn setting_rule(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Topic | ChangeKind::Purpose => {
            "members, not guests; only admins in an admins-only channel"
        }
        ChangeKind::Rename | ChangeKind::Archive | ChangeKind::Unarchive => {
            "workspace admins and the channel's creator"
        }
        _ => "workspace admins",
    }
}

/// A workspace act that concerns no single conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Create a channel.
    CreateChannel,
    /// Page through the workspace's public channels (`BrowseChannels`,
    /// and their inclusion in `ListConversations`).
    BrowseChannels,
    /// Create users, change roles, deactivate.
    ManageUsers,
}

/// Whether a user with `role` may perform `act`.
pub fn permit(role: Role, act: Act) -> Result<(), Reject> {
    match (act, role) {
        (Act::ManageUsers, Role::Owner | Role::Admin) => Ok(()),
        (Act::ManageUsers, _) => Err(Reject::NotAdmin),
        (Act::CreateChannel | Act::BrowseChannels, Role::Owner | Role::Admin | Role::Member) => {
            Ok(())
        }
        (Act::CreateChannel, _) => Err(Reject::Forbidden(
            "role: guests cannot create channels".into(),
        )),
        (Act::BrowseChannels, _) => Err(Reject::Forbidden(
            "role: guests cannot browse public channels".into(),
        )),
    }
}

/// Whether `actor` (`None`: the node's admin session, which bootstraps
/// workspaces and may do anything) may change a user's role from `from` to
/// `to`. Admins manage members and guests and make admins; only owners
/// make or unmake owners; a deactivated user stays deactivated; the last
/// owner (`owners` counts them) cannot be demoted.
pub fn permit_role_change(
    actor: Option<Role>,
    from: Role,
    to: Role,
    owners: usize,
) -> Result<(), Reject> {
    if let Some(actor) = actor {
        permit(actor, Act::ManageUsers)?;
        if (from == Role::Owner || to == Role::Owner) && actor != Role::Owner {
            return Err(Reject::NotAdmin);
        }
    }
    if from == Role::Deactivated {
        return Err(Reject::Forbidden("user: deactivated (final)".into()));
    }
    if from == Role::Owner && to != Role::Owner && owners <= 1 {
        return Err(Reject::Forbidden(
            "role: the workspace's last owner cannot be demoted".into(),
        ));
    }
    Ok(())
}

/// Whether `actor` (`None`: the node's admin session) may create an
/// invite giving `role`, in a workspace where members may invite iff
/// `members_may_invite`. Admins and owners invite anyone but owners;
/// members, when the workspace allows it, invite members and guests.
pub fn permit_invite(
    actor: Option<Role>,
    members_may_invite: bool,
    role: Role,
) -> Result<(), Reject> {
    if matches!(role, Role::Owner | Role::Deactivated) {
        return Err(Reject::Invalid(
            "role: an invite gives member, guest or admin".into(),
        ));
    }
    match actor {
        None | Some(Role::Owner | Role::Admin) => Ok(()),
        Some(Role::Member) if role == Role::Admin => Err(Reject::NotAdmin),
        Some(Role::Member) if members_may_invite => Ok(()),
        Some(Role::Member) => Err(Reject::Forbidden(
            "role: only admins create invites in this workspace".into(),
        )),
        Some(Role::Guest | Role::Deactivated) => Err(Reject::Forbidden(
            "role: guests cannot create invites".into(),
        )),
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
            role: Role::Member,
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
    fn invite_rules() {
        use Role::*;
        let forbidden = |r: Result<(), Reject>| matches!(r, Err(Reject::Forbidden(_)));
        for actor in [None, Some(Owner), Some(Admin)] {
            for role in [Admin, Member, Guest] {
                assert_eq!(
                    permit_invite(actor, false, role),
                    Ok(()),
                    "{actor:?} {role:?}"
                );
            }
        }
        for actor in [None, Some(Owner), Some(Admin), Some(Member)] {
            for role in [Owner, Deactivated] {
                assert!(matches!(
                    permit_invite(actor, true, role),
                    Err(Reject::Invalid(_))
                ));
            }
        }
        assert!(forbidden(permit_invite(Some(Member), false, Member)));
        assert_eq!(permit_invite(Some(Member), true, Member), Ok(()));
        assert_eq!(permit_invite(Some(Member), true, Guest), Ok(()));
        assert_eq!(
            permit_invite(Some(Member), true, Admin),
            Err(Reject::NotAdmin)
        );
        assert!(forbidden(permit_invite(Some(Guest), true, Guest)));
        assert!(forbidden(permit_invite(Some(Deactivated), true, Guest)));
    }

    #[test]
    fn guests_get_no_preview_and_members_do() {
        let state = State::new(ShardId(0), 1, HashState::new(&[0; 32]));
        let mut conv = state.new_conversation(
            ConversationId(7),
            WS,
            ConversationKind::PublicChannel,
            String::new(),
            None,
            Millis(0),
        );
        let who = |role| Who {
            user: ALICE,
            workspace: WS,
            role,
        };
        for (role, preview) in [
            (Role::Owner, true),
            (Role::Admin, true),
            (Role::Member, true),
            (Role::Guest, false),
            (Role::Deactivated, false),
        ] {
            let got = authorize(&conv, who(role), Access::Read, Lsn(9));
            assert_eq!(got.is_ok(), preview, "{role:?}");
            if !preview {
                assert_eq!(got, Err(Reject::NotFound), "{role:?}");
            }
        }
        // A guest added to the channel is a member like anyone.
        conv.members.insert(
            ALICE,
            Member {
                joined_seq: Seq(0),
                lsn: Lsn(5),
            },
        );
        assert_eq!(
            authorize(&conv, who(Role::Guest), Access::Member, Lsn(9)),
            Ok(())
        );
    }

    #[test]
    fn workspace_acts_by_role() {
        use Role::*;
        let forbidden = |r: &Result<(), Reject>| matches!(r, Err(Reject::Forbidden(_)));
        for role in [Owner, Admin] {
            for act in [Act::CreateChannel, Act::BrowseChannels, Act::ManageUsers] {
                assert_eq!(permit(role, act), Ok(()), "{role:?} {act:?}");
            }
        }
        assert_eq!(permit(Member, Act::CreateChannel), Ok(()));
        assert_eq!(permit(Member, Act::BrowseChannels), Ok(()));
        assert_eq!(permit(Member, Act::ManageUsers), Err(Reject::NotAdmin));
        assert!(forbidden(&permit(Guest, Act::CreateChannel)));
        assert!(forbidden(&permit(Guest, Act::BrowseChannels)));
        assert_eq!(permit(Guest, Act::ManageUsers), Err(Reject::NotAdmin));
    }

    #[test]
    fn role_changes() {
        use Role::*;
        let ok = Ok(());
        // The node admin may do anything but undo a deactivation or drop the
        // last owner.
        assert_eq!(permit_role_change(None, Member, Owner, 0), ok);
        assert_eq!(permit_role_change(None, Owner, Member, 2), ok);
        assert!(permit_role_change(None, Owner, Member, 1).is_err());
        assert!(permit_role_change(None, Deactivated, Member, 1).is_err());
        // Admins: members, guests and admins; never owners.
        assert_eq!(permit_role_change(Some(Admin), Member, Guest, 1), ok);
        assert_eq!(permit_role_change(Some(Admin), Guest, Admin, 1), ok);
        assert_eq!(permit_role_change(Some(Admin), Member, Deactivated, 1), ok);
        assert_eq!(
            permit_role_change(Some(Admin), Member, Owner, 1),
            Err(Reject::NotAdmin)
        );
        assert_eq!(
            permit_role_change(Some(Admin), Owner, Deactivated, 2),
            Err(Reject::NotAdmin)
        );
        // Owners: everything but the last owner.
        assert_eq!(permit_role_change(Some(Owner), Owner, Admin, 2), ok);
        assert!(permit_role_change(Some(Owner), Owner, Admin, 1).is_err());
        // Members and guests: nothing.
        for actor in [Member, Guest] {
            assert_eq!(
                permit_role_change(Some(actor), Member, Guest, 1),
                Err(Reject::NotAdmin)
            );
        }
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
