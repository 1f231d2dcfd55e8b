//! The workspace shard's role: workspaces and their name directories.
//!
//! Creating a user or a channel spans two shards: the workspace shard
//! *claims* the name (a durable `UserClaimed` / `ChannelClaimed` record with
//! a freshly allocated id placed on any shard), then the entity's own shard
//! creates it and answers the client, then the workspace shard records the
//! *confirmation*. A claim whose confirmation is missing (a crash of either
//! shard in between, a full write queue) is re-sent every CLAIM_RETRY_MS;
//! creation is idempotent at the receiving shard. Lookups and the public
//! channel list only show confirmed entries, so nobody is handed an id
//! whose entity does not exist yet.

use crate::api::Effect;
use crate::commit::Action;
use crate::commit::Ctx;
use crate::constants::{
    CHANNELS_PER_WORKSPACE_MAX, CLAIM_RETRY_MS, LIST_PUBLIC_CHANNELS_MAX, PENDING_CLAIMS_MAX,
    USERS_PER_WORKSPACE_MAX,
};
use crate::ids::spread_slot;
use crate::peer::{self};
use crate::record::Record;
use crate::state::Claim;
use crate::types::{
    ConversationId, LookupKind, Millis, Reject, Response, Role, ShardId, UnavailableCause, UserId,
    WorkspaceId,
};

/// The workspace role's state (memory; directories and claims are in the
/// persistent state).
#[derive(Debug)]
pub(crate) struct WorkspaceRole {
    /// When unconfirmed claims are sent again next.
    pub(crate) next_claim_retry: Millis,
    /// Home shards to send every role of their users at the next tick
    /// (all at start; a shard that restarted): see `crate::roles`.
    pub(crate) roles_due: crate::bitset::ShardSet,
}

pub(crate) fn exhausted() -> Reject {
    Reject::unavailable(
        UnavailableCause::IdsExhausted,
        "id space of this shard exhausted",
    )
}

impl WorkspaceRole {
    pub(crate) fn on_public_channels(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        m: peer::workspace::PublicChannels,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::PublicChannels { gather, workspace } = m;
        let conversations = cx
            .state
            .workspaces
            .get(&workspace)
            .map(|w| {
                w.public_channels
                    .iter()
                    .take(LIST_PUBLIC_CHANNELS_MAX)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let body = peer::gather::PublicChannelsReply {
            gather,
            conversations,
        };
        cx.send_peer(from, body, out);
    }

    pub(crate) fn on_create_workspace(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::CreateWorkspace,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::CreateWorkspace { origin, slot, name } = m;
        assert_eq!(
            crate::ids::shard_of_slot(slot, cx.shard_count()),
            cx.me(),
            "workspace placed on the wrong shard"
        );
        if let Err(r) = cx.writable() {
            return cx.reply(origin, Err(r), out);
        }
        let Some(raw) = cx.state.ids.allocate(slot) else {
            return cx.reply(origin, Err(exhausted()), out);
        };
        let workspace = WorkspaceId(raw);
        let record = Record::WorkspaceCreated {
            workspace: raw,
            name,
            ts: cx.now.0,
        };
        let reply = Action::Reply {
            origin,
            result: Ok(Response::WorkspaceCreated { workspace }),
        };
        cx.commit(record, vec![reply], out);
    }

    pub(crate) fn claim_room(
        &self,
        cx: &Ctx,
        workspace: WorkspaceId,
        name: &str,
        channel: bool,
    ) -> Result<(), Reject> {
        let ws = cx
            .state
            .workspaces
            .get(&workspace)
            .ok_or(Reject::NotFound)?;
        let (taken, count, max, what) = if channel {
            (
                ws.channels.contains_key(name),
                ws.channels.len(),
                CHANNELS_PER_WORKSPACE_MAX,
                "CHANNELS_PER_WORKSPACE_MAX",
            )
        } else {
            (
                ws.users.contains_key(name),
                ws.users.len(),
                USERS_PER_WORKSPACE_MAX,
                "USERS_PER_WORKSPACE_MAX",
            )
        };
        if taken {
            return Err(Reject::AlreadyExists);
        }
        if count >= max {
            return Err(Reject::TooLarge(format!(
                "workspace: {what} ({max}) reached"
            )));
        }
        if cx.state.claims.len() >= PENDING_CLAIMS_MAX {
            return Err(Reject::unavailable(
                UnavailableCause::Overloaded,
                "too many creations in flight (PENDING_CLAIMS_MAX)",
            ));
        }
        cx.writable()
    }

    pub(crate) fn on_create_user(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::CreateUser,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::CreateUser {
            origin,
            actor,
            workspace,
            name,
        } = m;
        if let peer::Actor::User(who) = actor {
            // Users with the admin or owner role create users of their own
            // workspace (W's table decides, not the session's copy).
            let role = match cx.state.workspaces.get(&workspace) {
                Some(ws) if who.workspace == workspace => ws.role_of(who.user).0,
                _ => return cx.reply(origin, Err(Reject::NotFound), out),
            };
            if let Err(r) = crate::auth::permit(role, crate::auth::Act::ManageUsers) {
                return cx.reply(origin, Err(r), out);
            }
        }
        if let Err(r) = self.claim_room(cx, workspace, &name, false) {
            return cx.reply(origin, Err(r), out);
        }
        let slot = spread_slot(cx.state.ids.seed());
        let Some(raw) = cx.state.ids.allocate(slot) else {
            return cx.reply(origin, Err(exhausted()), out);
        };
        let user = UserId(raw);
        let workspace_name = cx
            .state
            .workspaces
            .get(&workspace)
            .map(|w| w.name.clone())
            .unwrap_or_default();
        let record = Record::UserClaimed {
            workspace: workspace.0,
            user: raw,
            name: name.clone(),
        };
        let home = cx.home_of(user);
        let create = Action::Peer {
            to: home,
            body: peer::home::CreateUser {
                origin: Some(origin),
                user,
                workspace,
                workspace_name,
                name,
                role: None,
            }
            .into(),
        };
        cx.commit(record, vec![create], out);
    }

    pub(crate) fn on_user_home_ready(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::UserHomeReady,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::UserHomeReady { workspace, user } = m;
        let pending = matches!(cx.state.claims.get(&user.0), Some((Claim::User { .. }, _)));
        if pending && cx.writable().is_ok() {
            let record = Record::UserConfirmed {
                workspace: workspace.0,
                user: user.0,
            };
            cx.commit(record, Vec::new(), out);
        }
    }

    pub(crate) fn on_claim_channel(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::ClaimChannel,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::ClaimChannel {
            origin,
            who,
            name,
            private,
        } = m;
        if let Err(r) = self.claim_room(cx, who.workspace, &name, true) {
            return cx.reply(origin, Err(r), out);
        }
        let slot = spread_slot(cx.state.ids.seed());
        let Some(raw) = cx.state.ids.allocate(slot) else {
            return cx.reply(origin, Err(exhausted()), out);
        };
        let conversation = ConversationId(raw);
        let record = Record::ChannelClaimed {
            workspace: who.workspace.0,
            conversation: raw,
            name: name.clone(),
            private,
            creator: who.user.0,
        };
        let owner = cx.owner_of(conversation);
        let create = Action::Peer {
            to: owner,
            body: peer::owner::CreateChannel {
                origin: Some(origin),
                conversation,
                workspace: who.workspace,
                name,
                private,
                creator: who.user,
            }
            .into(),
        };
        cx.commit(record, vec![create], out);
    }

    pub(crate) fn on_channel_ready(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::ChannelReady,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::ChannelReady {
            workspace,
            conversation,
        } = m;
        let pending = matches!(
            cx.state.claims.get(&conversation.0),
            Some((Claim::Channel { .. }, _))
        );
        if pending && cx.writable().is_ok() {
            let record = Record::ChannelConfirmed {
                workspace: workspace.0,
                conversation: conversation.0,
            };
            cx.commit(record, Vec::new(), out);
        }
    }

    pub(crate) fn on_lookup(
        &mut self,
        cx: &mut Ctx,
        m: peer::workspace::Lookup,
        out: &mut Vec<Effect>,
    ) {
        let peer::workspace::Lookup {
            origin,
            who,
            name,
            kind,
        } = m;
        let Some(ws) = cx.state.workspaces.get(&who.workspace) else {
            return cx.reply(origin, Err(Reject::NotFound), out);
        };
        match kind {
            LookupKind::User => {
                let result = match ws.users.get(&name) {
                    Some(e) if e.confirmed => Ok(Response::Found { id: e.user.0 }),
                    _ => Err(Reject::NotFound),
                };
                cx.reply(origin, result, out);
            }
            LookupKind::Channel => match ws.channels.get(&name).copied() {
                // A guest finds only channels they are in: the owner decides.
                Some(c) if c.confirmed && !c.private && ws.role_of(who.user).0 != Role::Guest => {
                    cx.reply(origin, Ok(Response::Found { id: c.id.0 }), out)
                }
                Some(c) if c.confirmed => {
                    // Only a member may learn a private channel's id: the
                    // owner decides, with the one authorization function.
                    let to = cx.owner_of(c.id);
                    let body = peer::owner::LookupPrivate {
                        origin,
                        who,
                        conversation: c.id,
                    };
                    cx.send_peer(to, body, out);
                }
                _ => cx.reply(origin, Err(Reject::NotFound), out),
            },
        }
    }

    /// Re-sends the second half of every durable, unconfirmed claim.
    pub(crate) fn retry_claims(&mut self, cx: &mut Ctx, out: &mut Vec<Effect>) {
        if cx.now < self.next_claim_retry {
            return;
        }
        self.next_claim_retry = Millis(cx.now.0 + CLAIM_RETRY_MS);
        let durable = cx.durable;
        let due: Vec<(u64, Claim)> = cx
            .state
            .claims
            .iter()
            .filter(|(_, (_, lsn))| *lsn <= durable)
            .map(|(id, (claim, _))| (*id, claim.clone()))
            .collect();
        for (id, claim) in due {
            match claim {
                Claim::User { workspace, name } => {
                    let user = UserId(id);
                    let ws = cx.state.workspaces.get(&workspace);
                    let workspace_name = ws.map(|w| w.name.clone()).unwrap_or_default();
                    // An invite's role (version 1), so the home shard holds
                    // it from the user's creation on.
                    let role = ws.and_then(|w| w.roles.get(&user).copied());
                    let body = peer::home::CreateUser {
                        origin: None,
                        user,
                        workspace,
                        workspace_name,
                        name,
                        role,
                    };
                    let to = cx.home_of(user);
                    cx.send_peer(to, body, out);
                }
                Claim::Channel {
                    workspace,
                    name,
                    private,
                    creator,
                } => {
                    let conversation = ConversationId(id);
                    let body = peer::owner::CreateChannel {
                        origin: None,
                        conversation,
                        workspace,
                        name,
                        private,
                        creator,
                    };
                    let to = cx.owner_of(conversation);
                    cx.send_peer(to, body, out);
                }
                Claim::Rename {
                    workspace,
                    new,
                    actor,
                    role,
                    ..
                } => {
                    let conversation = ConversationId(id);
                    let body = peer::owner::ApplyRename {
                        origin: None,
                        who: peer::Who {
                            user: actor,
                            workspace,
                            role,
                        },
                        conversation,
                        name: new,
                    };
                    let to = cx.owner_of(conversation);
                    cx.send_peer(to, body, out);
                }
            }
        }
    }
}

impl WorkspaceRole {
    /// The workspace role's entry point: one message addressed to it.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx,
        from: ShardId,
        msg: peer::workspace::WorkspaceMsg,
        out: &mut Vec<Effect>,
    ) {
        use peer::workspace::WorkspaceMsg;
        match msg {
            WorkspaceMsg::CreateWorkspace(m) => self.on_create_workspace(cx, m, out),
            WorkspaceMsg::CreateUser(m) => self.on_create_user(cx, m, out),
            WorkspaceMsg::UserHomeReady(m) => self.on_user_home_ready(cx, m, out),
            WorkspaceMsg::ClaimChannel(m) => self.on_claim_channel(cx, m, out),
            WorkspaceMsg::ChannelReady(m) => self.on_channel_ready(cx, m, out),
            WorkspaceMsg::Lookup(m) => self.on_lookup(cx, m, out),
            WorkspaceMsg::PublicChannels(m) => self.on_public_channels(cx, from, m, out),
            WorkspaceMsg::DirectoryNames(m) => self.on_directory_names(cx, m, out),
            WorkspaceMsg::Directory(m) => self.on_directory(cx, m, out),
            WorkspaceMsg::UserByHandle(m) => self.on_user_by_handle(cx, m, out),
            WorkspaceMsg::BrowseChannels(m) => self.on_browse_channels(cx, m, out),
            WorkspaceMsg::SetRole(m) => self.on_set_role(cx, m, out),
            WorkspaceMsg::Invites(m) => self.on_invites(cx, m, out),
            WorkspaceMsg::Redeem(m) => self.on_redeem(cx, m, out),
            WorkspaceMsg::RenameChannel(m) => self.on_rename_channel(cx, m, out),
            WorkspaceMsg::RenameDone(m) => self.on_rename_done(cx, m, out),
        }
    }
}
