//! Plain-socket plumbing for the baselines: a TCP connection with an output
//! buffer and an input buffer, and a RESP2 (Redis) encoder and incremental
//! parser. The NATS protocol parser lives in [`super::nats`].

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::net::TcpStream;

/// Largest reply accepted from a peer.
pub const REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A TCP connection with buffered output and input, shareable (`Rc`)
/// between a writing task and a reading task of one load thread.
pub struct RawConn {
    stream: TcpStream,
    out: RefCell<Vec<u8>>,
    flushing: Cell<bool>,
    /// Bytes read and not yet consumed by the parser.
    pub inbuf: RefCell<Vec<u8>>,
}

impl RawConn {
    /// Connects (no delay).
    pub async fn connect(addr: SocketAddr) -> io::Result<Rc<RawConn>> {
        let stream = crate::ws::tcp_connect(addr, None).await?;
        Ok(Rc::new(RawConn {
            stream,
            out: RefCell::new(Vec::with_capacity(4096)),
            flushing: Cell::new(false),
            inbuf: RefCell::new(Vec::with_capacity(16 * 1024)),
        }))
    }

    /// Queues bytes for the next flush.
    pub fn queue(&self, bytes: &[u8]) {
        self.out.borrow_mut().extend_from_slice(bytes);
    }

    /// Queues with a closure writing into the output buffer.
    pub fn queue_with(&self, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut self.out.borrow_mut());
    }

    /// Writes everything queued (one writer at a time; others return and
    /// their bytes leave with the active writer).
    pub async fn flush(&self) -> io::Result<()> {
        if self.flushing.get() {
            return Ok(());
        }
        self.flushing.set(true);
        let r = self.flush_loop().await;
        self.flushing.set(false);
        r
    }

    async fn flush_loop(&self) -> io::Result<()> {
        loop {
            let blocked = {
                let mut out = self.out.borrow_mut();
                if out.is_empty() {
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

    /// Reads at least one more byte into `inbuf`.
    pub async fn fill(&self) -> io::Result<usize> {
        loop {
            self.stream.readable().await?;
            let mut inbuf = self.inbuf.borrow_mut();
            if inbuf.len() > REPLY_BYTES_MAX {
                return Err(io::Error::other("peer reply over the size limit"));
            }
            let len = inbuf.len();
            inbuf.resize(len + 64 * 1024, 0);
            let r = self.stream.try_read(&mut inbuf[len..]);
            match r {
                Ok(0) => {
                    inbuf.truncate(len);
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
                }
                Ok(n) => {
                    inbuf.truncate(len + n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => inbuf.truncate(len),
                Err(e) => {
                    inbuf.truncate(len);
                    return Err(e);
                }
            }
        }
    }

    /// Parses and removes every complete item at the front of `inbuf` with
    /// `parse_one` (`Ok(None)` = incomplete), calling `each` per item.
    pub fn drain<T>(
        &self,
        mut parse_one: impl FnMut(&[u8], usize) -> io::Result<Option<(T, usize)>>,
        mut each: impl FnMut(T),
    ) -> io::Result<usize> {
        let mut inbuf = self.inbuf.borrow_mut();
        let mut at = 0;
        let mut n = 0;
        while let Some((item, next)) = parse_one(&inbuf, at)? {
            at = next;
            n += 1;
            each(item);
        }
        inbuf.drain(..at);
        Ok(n)
    }
}

/// Appends a RESP2 command (an array of bulk strings).
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+…`
    Simple(Vec<u8>),
    /// `-…`
    Error(String),
    /// `:…`
    Int(i64),
    /// `$…` (None for the null bulk string)
    Bulk(Option<Vec<u8>>),
    /// `*…` (None for the null array)
    Array(Option<Vec<Resp>>),
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..i], at + i + 2))
}

fn int(bytes: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("bad RESP integer"))
}

/// Parses one value at `buf[at..]`: `Ok(None)` if incomplete, else the value
/// and the offset after it.
pub fn parse(buf: &[u8], at: usize) -> io::Result<Option<(Resp, usize)>> {
    let Some((head, next)) = line(buf, at) else {
        return Ok(None);
    };
    let Some((&kind, body)) = head.split_first() else {
        return Err(io::Error::other("empty RESP line"));
    };
    Ok(Some(match kind {
        b'+' => (Resp::Simple(body.to_vec()), next),
        b'-' => (
            Resp::Error(String::from_utf8_lossy(body).into_owned()),
            next,
        ),
        b':' => (Resp::Int(int(body)?), next),
        b'$' => {
            let n = int(body)?;
            if n < 0 {
                (Resp::Bulk(None), next)
            } else {
                let n = n as usize;
                if n > REPLY_BYTES_MAX {
                    return Err(io::Error::other("RESP bulk too large"));
                }
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                (Resp::Bulk(Some(buf[next..next + n].to_vec())), next + n + 2)
            }
        }
        b'*' => {
            let n = int(body)?;
            if n < 0 {
                (Resp::Array(None), next)
            } else {
                if n as usize > REPLY_BYTES_MAX {
                    return Err(io::Error::other("RESP array too large"));
                }
                let mut items = Vec::with_capacity((n as usize).min(1024));
                let mut at = next;
                for _ in 0..n {
                    match parse(buf, at)? {
                        Some((v, after)) => {
                            items.push(v);
                            at = after;
                        }
                        None => return Ok(None),
                    }
                }
                (Resp::Array(Some(items)), at)
            }
        }
        other => return Err(io::Error::other(format!("bad RESP type byte {other:#x}"))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_replies_and_waits_for_more() {
        let wire = b"*1\r\n*2\r\n$6\r\nconv:0\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nb\r\n$2\r\nhi\r\n+OK\r\n";
        for cut in 0..wire.len() - 5 {
            assert_eq!(parse(&wire[..cut], 0).unwrap(), None, "cut {cut}");
        }
        let (v, at) = parse(wire, 0).unwrap().unwrap();
        let Resp::Array(Some(streams)) = v else {
            panic!()
        };
        assert_eq!(streams.len(), 1);
        assert_eq!(
            parse(wire, at).unwrap().unwrap().0,
            Resp::Simple(b"OK".to_vec())
        );
        let mut out = Vec::new();
        command(&mut out, &[b"XADD", b"k"]);
        assert_eq!(out, b"*2\r\n$4\r\nXADD\r\n$1\r\nk\r\n");
    }
}
