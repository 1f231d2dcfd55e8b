//! Helpers for scripted scenarios: await replies, create workspaces,
//! users and channels.

use courier_core::api::{
    ConversationId, Credential, Reject, ReqId, Request, Response, UserId, WorkspaceId,
};

use super::{Down, Pend, World, ADMIN_SECRET};

impl World {
    /// Runs until settled and returns the reply to `req` of scripted client `c`.
    pub fn await_reply(&mut self, c: usize, req: ReqId) -> Result<Response, Reject> {
        self.settle();
        self.clients[c].reply_to(req).cloned().unwrap_or_else(|| {
            let cluster = if self.replicated {
                self.cluster_summary()
            } else {
                String::new()
            };
            panic!("client {c}: no reply to request {req} {cluster}")
        })
    }

    /// A scripted request; runs until settled; returns the reply.
    pub fn call(&mut self, c: usize, request: Request) -> Result<Response, Reject> {
        let req = self
            .request(c, request, Pend::Other)
            .expect("client is connected");
        self.await_reply(c, req)
    }

    /// (Re)connects scripted client `c` to shard `s` until its hello is
    /// welcomed (a restarting home shard answers `Unavailable` at first).
    pub fn ensure_online(&mut self, c: usize, s: u16) {
        for _ in 0..100 {
            if self.clients[c].conn.is_none() {
                self.connect(c, s);
            }
            self.settle();
            let welcomed = self.clients[c].inbox.iter().rev().find_map(|d| match d {
                Down::Reply(_, Ok(Response::Welcome { .. })) => Some(true),
                Down::Reply(_, Err(Reject::Unavailable { .. })) => Some(false),
                Down::Closed(_) => Some(false),
                _ => None,
            });
            if welcomed == Some(true) && self.clients[c].conn.is_some() {
                return;
            }
            self.disconnect(c);
            self.tick();
        }
        panic!("client {c} could not connect");
    }

    /// Connects an admin client on shard `s`.
    pub fn admin(&mut self, s: u16) -> usize {
        let c = self.add_client(Credential::Admin(ADMIN_SECRET), None, false);
        self.connect(c, s);
        self.settle();
        c
    }

    /// A client connected to shard `s` that never says hello (it may only
    /// redeem invites).
    pub fn anonymous(&mut self, s: u16) -> usize {
        let c = self.add_client(Credential::Admin([0; 32]), None, false);
        self.open_socket(c, s, false);
        self.settle();
        c
    }

    pub fn create_workspace(&mut self, admin: usize, name: &str) -> WorkspaceId {
        match self.call(admin, Request::CreateWorkspace { name: name.into() }) {
            Ok(Response::WorkspaceCreated { workspace }) => workspace,
            other => panic!("create workspace: {other:?}"),
        }
    }

    /// Creates a user; returns its credential.
    pub fn create_user(
        &mut self,
        admin: usize,
        ws: WorkspaceId,
        name: &str,
    ) -> (UserId, Credential) {
        match self.call(
            admin,
            Request::CreateUser {
                workspace: ws,
                name: name.into(),
            },
        ) {
            Ok(Response::TokenIssued {
                user,
                token,
                secret,
            }) => {
                self.users.push((ws, user));
                (
                    user,
                    Credential::User {
                        user,
                        token,
                        secret,
                    },
                )
            }
            other => panic!("create user: {other:?}"),
        }
    }

    /// A connected client of a user on shard `s`.
    pub fn user_client(
        &mut self,
        user: UserId,
        ws: WorkspaceId,
        credential: Credential,
        s: u16,
        auto: bool,
    ) -> usize {
        let c = self.add_client(credential, Some((user, ws)), auto);
        self.connect(c, s);
        self.settle();
        c
    }

    pub fn create_channel(&mut self, c: usize, name: &str, private: bool) -> ConversationId {
        let ws = self.clients[c].ws.expect("user client");
        match self.call(
            c,
            Request::CreateChannel {
                name: name.into(),
                private,
            },
        ) {
            Ok(Response::Conversation(info)) => {
                self.channels.push((ws, info.id));
                info.id
            }
            other => panic!("create channel: {other:?}"),
        }
    }
}

/// A node of `shards` shards with an admin session and one workspace
/// ("acme"): the start of the scripted role, invite and message-change
/// scenarios.
pub struct ScriptedNode {
    pub w: World,
    /// The admin session's client.
    pub admin: usize,
    pub ws: WorkspaceId,
}

/// A fresh [`ScriptedNode`] of `shards` shards.
pub fn scripted_node(seed: u64, shards: u16) -> ScriptedNode {
    let mut w = World::new(seed, shards);
    let admin = w.admin(0);
    let ws = w.create_workspace(admin, "acme");
    ScriptedNode { w, admin, ws }
}

impl ScriptedNode {
    /// A user created by the node admin with `role`, one scripted device
    /// connected on shard `s`: (user, its client, its credential).
    pub fn user(
        &mut self,
        name: &str,
        role: courier_core::api::Role,
        s: u16,
    ) -> (UserId, usize, Credential) {
        let (user, cred) = self.w.create_user(self.admin, self.ws, name);
        if role != courier_core::api::Role::Member {
            let set = Request::People(courier_core::api::PeopleRequest::SetRole { user, role });
            assert_eq!(self.w.call(self.admin, set), Ok(Response::Done));
        }
        let c = self.w.user_client(user, self.ws, cred.clone(), s, false);
        (user, c, cred)
    }

    /// A channel created by client `c`, with `members` invited into it.
    pub fn channel(
        &mut self,
        c: usize,
        name: &str,
        private: bool,
        members: &[UserId],
    ) -> ConversationId {
        let conv = self.w.create_channel(c, name, private);
        for &user in members {
            let invite = Request::Invite {
                conversation: conv,
                user,
            };
            assert_eq!(self.w.call(c, invite), Ok(Response::Done));
        }
        conv
    }
}
