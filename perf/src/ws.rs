//! A minimal WebSocket client for load generation: cheap enough to hold
//! 100,000 connections in one process.
//!
//! The library client (`courier_tools::Connection`) is built for
//! applications: a driver task, channels and a read buffer per socket. Here a
//! connection is one `TcpStream`, an output buffer that is empty (and
//! unallocated) while nothing is queued, and a partial-frame buffer that is
//! likewise empty between frames. Reads go into one scratch buffer per load
//! thread ([`SCRATCH_BYTES`]), and whole messages are handed to the caller
//! straight from it, so an idle connection costs its socket and a few hundred
//! bytes of task state.
//!
//! Only what `courierd` needs is implemented (RFC 6455 client side): the
//! upgrade (the `Sec-WebSocket-Accept` value is not verified — the peer is
//! always our own loopback server), masked binary frames out, unmasked frames
//! in (fragmented messages are reassembled), ping → pong, close.
//!
//! Failure contract: every function returns an `io::Error`; a close frame
//! from the server is `ConnectionAborted` with the close code in the message.

use crate::clock::now_ns;
use courier_proto::close;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use tokio::net::{TcpSocket, TcpStream};

/// Bytes of the per-thread read scratch buffer.
pub const SCRATCH_BYTES: usize = 256 * 1024;

/// Largest server message accepted (the protocol's server frame bound).
pub const MESSAGE_BYTES_MAX: usize = courier_proto::constants::SERVER_FRAME_BYTES_MAX;

/// A partial-frame buffer larger than this is released once drained.
const PARTIAL_KEEP_BYTES: usize = 16 * 1024;

/// Bytes of an HTTP upgrade response we accept.
const UPGRADE_RESPONSE_BYTES_MAX: usize = 4096;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Opens a TCP connection to `addr`, from `source` if given (several
/// 127.0.0.x source addresses multiply the client ports available; the port
/// is chosen at connect time thanks to `IP_BIND_ADDRESS_NO_PORT`).
pub async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on our own socket with a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    // Small kernel buffers are enough for chat frames and keep 100K sockets
    // cheap; the kernel still autotunes within them.
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One client WebSocket.
pub struct WsConn {
    stream: TcpStream,
    out: RefCell<Vec<u8>>,
    flushing: Cell<bool>,
    mask_state: Cell<u32>,
}

/// The receiving side's state: bytes of an incomplete frame and of an
/// incomplete fragmented message.
#[derive(Default)]
pub struct WsReader {
    partial: Vec<u8>,
    message: Vec<u8>,
    bytes_in: u64,
}

impl WsConn {
    /// Connects and upgrades to WebSocket on path `/`.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> io::Result<(Rc<WsConn>, WsReader)> {
        let stream = tcp_connect(addr, source).await?;
        let seed = (now_ns() as u32) ^ (stream.as_raw_fd() as u32).wrapping_mul(0x9E37_79B9) | 1;
        let conn = Rc::new(WsConn {
            stream,
            out: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            mask_state: Cell::new(seed),
        });
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.write_raw(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        let end = loop {
            conn.stream.readable().await?;
            match conn.stream.try_read(&mut buf) {
                Ok(0) => return Err(other("server closed during the upgrade")),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > UPGRADE_RESPONSE_BYTES_MAX {
                return Err(other("upgrade response too long"));
            }
        };
        let status = head.split(|b| *b == b'\n').next().unwrap_or_default();
        if !status.windows(5).any(|w| w == b" 101 ") {
            return Err(other(format!(
                "upgrade refused: {}",
                String::from_utf8_lossy(status).trim()
            )));
        }
        let reader = WsReader {
            partial: head[end..].to_vec(),
            ..WsReader::default()
        };
        Ok((conn, reader))
    }

    fn next_mask(&self) -> [u8; 4] {
        // xorshift32: masking keys need not be secret towards our own server.
        let mut x = self.mask_state.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state.set(x);
        x.to_le_bytes()
    }

    /// Queues one frame with `opcode` and flushes.
    async fn send_opcode(&self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.queue_opcode(opcode, payload);
        self.flush().await
    }

    fn queue_opcode(&self, opcode: u8, payload: &[u8]) {
        let mask = self.next_mask();
        {
            let mut out = self.out.borrow_mut();
            out.push(0x80 | opcode);
            let len = payload.len();
            if len < 126 {
                out.push(0x80 | len as u8);
            } else if len <= 0xFFFF {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
            out.extend_from_slice(&mask);
            let start = out.len();
            out.extend_from_slice(payload);
            for (i, b) in out[start..].iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
        }
    }

    /// Sends one binary message.
    pub async fn send(&self, payload: &[u8]) -> io::Result<()> {
        self.queue(payload);
        self.flush().await
    }

    /// Queues one binary message without writing it (see [`WsConn::flush`]):
    /// several queued messages leave in one `write`.
    pub fn queue(&self, payload: &[u8]) {
        self.queue_opcode(0x2, payload);
    }

    /// Sends a close frame (best effort).
    pub async fn close(&self) {
        let _ = self.send_opcode(0x8, &close::NORMAL.to_be_bytes()).await;
    }

    async fn write_raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.out.borrow_mut().extend_from_slice(bytes);
        self.flush().await
    }

    /// Writes the output buffer. Only one caller writes at a time; others
    /// return at once and their bytes go out with the active writer's loop.
    pub async fn flush(&self) -> io::Result<()> {
        if self.flushing.get() {
            return Ok(());
        }
        self.flushing.set(true);
        let result = self.flush_loop().await;
        self.flushing.set(false);
        result
    }

    async fn flush_loop(&self) -> io::Result<()> {
        loop {
            let blocked = {
                let mut out = self.out.borrow_mut();
                if out.is_empty() {
                    if out.capacity() > PARTIAL_KEEP_BYTES {
                        *out = Vec::new();
                    }
                    return Ok(());
                }
                match self.stream.try_write(&out) {
                    Ok(n) => {
                        out.drain(..n);
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(e) => return Err(e),
                }
            };
            if blocked {
                self.stream.writable().await?;
            }
        }
    }

    /// Waits for data and hands every complete binary message to `on_message`
    /// (which must not block). Pings are answered. Returns after one read,
    /// with the number of messages it delivered.
    pub async fn read(
        &self,
        reader: &mut WsReader,
        mut on_message: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        // Bytes left over from the upgrade are processed before any read.
        if !reader.partial.is_empty() && reader.bytes_in == 0 {
            reader.bytes_in = reader.partial.len() as u64;
            let mut partial = std::mem::take(&mut reader.partial);
            let mut pings = Vec::new();
            let (used, messages) =
                parse(&partial, &mut reader.message, &mut pings, &mut on_message)?;
            partial.drain(..used);
            reader.partial = partial;
            self.answer(pings).await?;
            return Ok(messages);
        }
        loop {
            self.stream.readable().await?;
            let mut pings = Vec::new();
            let result = SCRATCH.with(|scratch| -> io::Result<Option<usize>> {
                let mut scratch = scratch.borrow_mut();
                let n = match self.stream.try_read(&mut scratch) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "server closed the socket",
                        ))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                };
                reader.bytes_in += n as u64;
                let messages = if reader.partial.is_empty() {
                    let (used, messages) = parse(
                        &scratch[..n],
                        &mut reader.message,
                        &mut pings,
                        &mut on_message,
                    )?;
                    reader.partial.extend_from_slice(&scratch[used..n]);
                    messages
                } else {
                    reader.partial.extend_from_slice(&scratch[..n]);
                    let (used, messages) = parse(
                        &reader.partial,
                        &mut reader.message,
                        &mut pings,
                        &mut on_message,
                    )?;
                    reader.partial.drain(..used);
                    if reader.partial.is_empty() && reader.partial.capacity() > PARTIAL_KEEP_BYTES {
                        reader.partial = Vec::new();
                    }
                    messages
                };
                Ok(Some(messages))
            })?;
            self.answer(pings).await?;
            if let Some(stats) = result {
                return Ok(stats);
            }
        }
    }

    async fn answer(&self, pings: Vec<Vec<u8>>) -> io::Result<()> {
        for ping in pings {
            self.send_opcode(0xA, &ping).await?;
        }
        Ok(())
    }
}

/// Parses complete frames from `buf`; returns (bytes consumed, messages).
fn parse(
    buf: &[u8],
    message: &mut Vec<u8>,
    pings: &mut Vec<Vec<u8>>,
    on_message: &mut impl FnMut(&[u8]),
) -> io::Result<(usize, usize)> {
    let mut at = 0;
    let mut messages = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 2 {
            return Ok((at, messages));
        }
        let fin = rest[0] & 0x80 != 0;
        let opcode = rest[0] & 0x0F;
        if rest[1] & 0x80 != 0 {
            return Err(other("server sent a masked frame"));
        }
        let (len, header) = match rest[1] & 0x7F {
            126 => {
                if rest.len() < 4 {
                    return Ok((at, messages));
                }
                (u64::from(u16::from_be_bytes([rest[2], rest[3]])), 4)
            }
            127 => {
                if rest.len() < 10 {
                    return Ok((at, messages));
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        if len > MESSAGE_BYTES_MAX as u64 {
            return Err(other(format!(
                "server frame of {len} bytes is over the limit"
            )));
        }
        let len = len as usize;
        if rest.len() < header + len {
            return Ok((at, messages));
        }
        let payload = &rest[header..header + len];
        at += header + len;
        match opcode {
            0x2 if fin && message.is_empty() => {
                messages += 1;
                on_message(payload);
            }
            0x2 | 0x0 => {
                if message.len() + payload.len() > MESSAGE_BYTES_MAX {
                    return Err(other("fragmented server message over the limit"));
                }
                message.extend_from_slice(payload);
                if fin {
                    messages += 1;
                    on_message(message);
                    message.clear();
                }
            }
            0x9 => pings.push(payload.to_vec()),
            0xA => {}
            0x8 => {
                let code = if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                };
                let reason =
                    String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("server closed the connection: {code} {reason}"),
                ));
            }
            other_op => return Err(other(format!("unexpected opcode {other_op:#x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_whole_split_and_fragmented_messages() {
        let mut wire = frame(0x2, true, b"one");
        wire.extend(frame(0x9, true, b"p"));
        wire.extend(frame(0x2, false, b"tw"));
        wire.extend(frame(0x0, true, b"o"));
        let big = vec![7u8; 300];
        wire.extend(frame(0x2, true, &big));
        for cut in 0..wire.len() {
            let mut got = Vec::new();
            let mut message = Vec::new();
            let mut pings = Vec::new();
            let (used, _) = parse(&wire[..cut], &mut message, &mut pings, &mut |m| {
                got.push(m.to_vec())
            })
            .unwrap();
            let mut rest = wire[used..cut].to_vec();
            rest.extend_from_slice(&wire[cut..]);
            let (used2, _) = parse(&rest, &mut message, &mut pings, &mut |m| {
                got.push(m.to_vec())
            })
            .unwrap();
            assert_eq!(used2, rest.len());
            assert_eq!(
                got,
                vec![b"one".to_vec(), b"two".to_vec(), big.clone()],
                "cut {cut}"
            );
            assert_eq!(pings, vec![b"p".to_vec()]);
        }
    }

    #[test]
    fn close_and_masked_frames_are_errors() {
        let mut m = Vec::new();
        let mut p = Vec::new();
        let close = frame(0x8, true, &[0x0F, 0xA0, b'x']);
        let err = parse(&close, &mut m, &mut p, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("4000"), "{err}");
        let masked = [0x82, 0x81, 0, 0, 0, 0, 1];
        assert!(parse(&masked, &mut m, &mut p, &mut |_| {}).is_err());
    }
}
