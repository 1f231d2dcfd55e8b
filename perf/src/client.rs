//! Courier's protocol on top of [`crate::ws`]: log in (`Hello` → `Welcome`),
//! encode requests with a per-thread encoder, and a blocking-style `call`
//! for scenarios that measure one request at a time (boot, catchup,
//! restart).

use crate::clock::now_ns;
use crate::ws::{WsConn, WsReader};
use anyhow::{anyhow, bail, Context};
use courier_core::api::{Credential, DeviceInfo, DeviceKind, ReqId, Request, Response};
use courier_proto::{decode_server, ClientFrame, Encoder, ServerFrame};
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

/// Time allowed for connect + upgrade + `Hello`/`Welcome`.
pub const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

thread_local! {
    static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::new());
}

/// Encodes `request` as a client frame with request id `req`.
pub fn encode(req: ReqId, request: Request) -> Vec<u8> {
    ENCODER.with(|e| {
        e.borrow_mut()
            .client(&ClientFrame::Request { req, request })
    })
}

/// An authenticated connection.
pub struct Session {
    /// The socket.
    pub conn: Rc<WsConn>,
    /// Its receive state.
    pub reader: WsReader,
    next_req: ReqId,
}

/// The reply to one [`Session::call`].
pub struct Called {
    /// The response.
    pub response: Response,
    /// Size of the reply message (the flatbuffers frame, without WebSocket
    /// framing).
    pub reply_bytes: usize,
    /// Client-observed round trip.
    pub rtt_ns: u64,
}

impl Session {
    /// Connects, upgrades, sends `Hello` and waits for `Welcome`, within
    /// [`LOGIN_TIMEOUT`].
    pub async fn login(
        addr: SocketAddr,
        source: Option<IpAddr>,
        credential: &Credential,
    ) -> anyhow::Result<Session> {
        match tokio::time::timeout(
            LOGIN_TIMEOUT,
            Session::login_inner(addr, source, credential),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => bail!("no Welcome from {addr} within {LOGIN_TIMEOUT:?}"),
        }
    }

    async fn login_inner(
        addr: SocketAddr,
        source: Option<IpAddr>,
        credential: &Credential,
    ) -> anyhow::Result<Session> {
        let (conn, mut reader) = WsConn::connect(addr, source)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let hello = ENCODER.with(|e| {
            e.borrow_mut().client(&ClientFrame::Hello {
                req: 1,
                credential: credential.clone(),
                device: DeviceInfo {
                    kind: DeviceKind::Tool,
                    name: "courier-bench".to_owned(),
                },
            })
        });
        conn.send(&hello).await.context("sending Hello")?;
        let mut outcome: Option<anyhow::Result<()>> = None;
        while outcome.is_none() {
            conn.read(&mut reader, |bytes| match decode_server(bytes) {
                Ok(ServerFrame::Reply { req: 1 | 0, result }) => {
                    outcome = Some(match result {
                        Ok(Response::Welcome { .. }) => Ok(()),
                        Ok(other) => Err(anyhow!("expected Welcome, got {other:?}")),
                        Err(reject) => Err(anyhow!("Hello rejected: {reject:?}")),
                    })
                }
                Ok(_) => {}
                Err(e) => outcome = Some(Err(anyhow!("undecodable frame during Hello: {e}"))),
            })
            .await
            .context("waiting for Welcome")?;
        }
        outcome.unwrap_or(Ok(()))?;
        Ok(Session {
            conn,
            reader,
            next_req: 2,
        })
    }

    /// A fresh request id.
    pub fn next_req(&mut self) -> ReqId {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(2);
        req
    }

    /// Sends `request` and waits for its reply; a rejection is an error.
    pub async fn call(&mut self, request: Request) -> anyhow::Result<Called> {
        let req = self.next_req();
        let bytes = encode(req, request);
        let start = now_ns();
        self.conn.send(&bytes).await?;
        let mut reply: Option<(anyhow::Result<Response>, usize)> = None;
        while reply.is_none() {
            self.conn
                .read(&mut self.reader, |bytes| match decode_server(bytes) {
                    Ok(ServerFrame::Reply { req: r, result }) if r == req => {
                        reply = Some((result.map_err(|e| anyhow!("rejected: {e:?}")), bytes.len()))
                    }
                    Ok(ServerFrame::Event(_)) => {}
                    Ok(_) => {}
                    Err(e) => reply = Some((Err(anyhow!("undecodable reply: {e}")), bytes.len())),
                })
                .await?;
        }
        let rtt_ns = now_ns() - start;
        let Some((response, reply_bytes)) = reply else {
            bail!("no reply")
        };
        Ok(Called {
            response: response?,
            reply_bytes,
            rtt_ns,
        })
    }
}
