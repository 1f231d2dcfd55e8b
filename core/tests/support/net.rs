//! Message delivery: client sockets (up and down), and the peer network
//! between shards (FIFO per ordered pair, lost to a crashed shard).

use std::collections::VecDeque;
use std::sync::Arc;

use courier_core::api::{
    CloseReason, ConnId, Credential, DeviceInfo, DeviceKind, Event, Input, Reject, ReqId, Request,
    Response, ShardId,
};

use super::{CState, Pend, World};

/// What a socket carries to the server.
#[derive(Debug)]
pub enum Up {
    Hello {
        req: ReqId,
        credential: Credential,
        device: DeviceInfo,
    },
    Request {
        req: ReqId,
        request: Request,
    },
}

/// What a socket carries to the client.
#[derive(Debug, Clone)]
pub enum Down {
    Reply(ReqId, Result<Response, Reject>),
    Event(Arc<Event>),
    Closed(CloseReason),
}

/// A socket between a client and a shard.
#[derive(Debug)]
pub struct Link {
    pub client: usize,
    pub up: VecDeque<Up>,
    pub down: VecDeque<Down>,
    /// The server side still has it (not closed, shard not crashed).
    pub open: bool,
    /// `Input::Connected` was delivered.
    pub connected: bool,
}

impl World {
    pub(super) fn deliver_peer(&mut self, from: u16, to: u16) {
        let Some(msg) = self.net.get_mut(&(from, to)).and_then(VecDeque::pop_front) else {
            return;
        };
        self.input(
            to,
            Input::Peer {
                from: ShardId(from),
                msg,
            },
        );
    }

    /// Opens a socket to shard `s` and says hello.
    pub fn connect(&mut self, c: usize, s: u16) {
        self.open_socket(c, s, true);
    }

    /// Opens a socket to shard `s`, saying hello iff `hello` (without: a
    /// connection with no session, which may only redeem invites).
    pub fn open_socket(&mut self, c: usize, s: u16, hello: bool) {
        assert!(self.clients[c].conn.is_none());
        let node = &mut self.nodes[usize::from(s)];
        if node.shard.is_none() {
            return;
        }
        let conn = ConnId::new(ShardId(s), node.next_conn);
        node.next_conn += 1;
        let req = self.clients[c].take_req();
        let credential = self.clients[c].credential.clone();
        let device = DeviceInfo {
            kind: DeviceKind::Desktop,
            name: format!("device-{c}"),
        };
        let mut up = VecDeque::new();
        if hello {
            up.push_back(Up::Hello {
                req,
                credential,
                device,
            });
        }
        // A reused connection id belongs to a dead incarnation's socket.
        self.links.remove(&conn);
        self.links.insert(
            conn,
            Link {
                client: c,
                up,
                down: VecDeque::new(),
                open: true,
                connected: false,
            },
        );
        let client = &mut self.clients[c];
        client.conn = Some(conn);
        if hello {
            client.state = CState::Hello;
            client.pending.insert(req, (Pend::Hello, self.step));
        }
    }

    /// Closes a client's socket from the client side.
    pub fn disconnect(&mut self, c: usize) {
        let Some(conn) = self.clients[c].conn else {
            return;
        };
        self.clients[c].go_offline(self.step + 3);
        if let Some(link) = self.links.remove(&conn) {
            if link.open && link.connected {
                self.input(conn.shard().0, Input::Disconnected { conn });
            }
        }
    }

    /// Queues a request on a client's socket.
    pub fn request(&mut self, c: usize, request: Request, pend: Pend) -> Option<ReqId> {
        let conn = self.clients[c].conn?;
        let req = self.clients[c].take_req();
        let link = self.links.get_mut(&conn)?;
        if !link.open {
            return None;
        }
        self.stats.requests += 1;
        if std::env::var_os("COURIER_SIM_TRACE").is_some() {
            eprintln!(
                "step {} client {c} conn {conn:?} -> {req} {request:?}",
                self.step
            );
        }
        link.up.push_back(Up::Request { req, request });
        self.clients[c].pending.insert(req, (pend, self.step));
        Some(req)
    }

    /// Delivers everything queued on client `c`'s socket to its shard now.
    pub fn pump(&mut self, c: usize) {
        let Some(conn) = self.clients[c].conn else {
            return;
        };
        while self
            .links
            .get(&conn)
            .is_some_and(|l| l.open && (!l.connected || !l.up.is_empty()))
        {
            self.deliver_up(conn);
        }
    }

    /// Delivers every queued message from shard `from` to shard `to` now.
    pub fn flush_net(&mut self, from: u16, to: u16) {
        while self.net.get(&(from, to)).is_some_and(|q| !q.is_empty()) {
            self.deliver_peer(from, to);
        }
    }

    pub(super) fn deliver_up(&mut self, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let s = conn.shard().0;
        if !link.connected {
            link.connected = true;
            self.input(s, Input::Connected { conn });
            return;
        }
        let Some(up) = link.up.pop_front() else {
            return;
        };
        let input = match up {
            Up::Hello {
                req,
                credential,
                device,
            } => Input::Hello {
                conn,
                req,
                credential,
                device,
            },
            Up::Request { req, request } => Input::Request { conn, req, request },
        };
        self.input(s, input);
    }

    pub(super) fn deliver_down(&mut self, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let Some(down) = link.down.pop_front() else {
            return;
        };
        let c = link.client;
        if self.clients[c].conn != Some(conn) {
            return;
        }
        if let Down::Closed(_) = down {
            self.links.remove(&conn);
        }
        self.client_receive(c, down);
    }
}
