//! Test kit: a fault-injecting TCP proxy to put between two processes (a
//! cluster test puts one between every pair of nodes). It listens on a
//! loopback port and forwards each connection to a target, and can be told
//! at run time to:
//! - [`Proxy::pass`]: forward bytes both ways (the start state, and what
//!   [`Proxy::heal`] returns to);
//! - [`Proxy::blackhole`]: accept new connections but hold them (no
//!   connection to the target yet), and stop moving bytes on existing ones
//!   in both directions — like a network partition: the senders' writes
//!   fill their socket buffers, then block; nothing comes back. On heal,
//!   held connections are connected to the target and bytes flow again
//!   (unless the endpoints gave up on them meanwhile);
//! - [`Proxy::reset_all`]: abort every current connection (SO_LINGER 0,
//!   so the endpoints see a reset or an end of stream); new connections
//!   are served according to the mode.
//!
//! Plain std threads (the test kit's style, like [`crate::testkit`]): one
//! accept thread, two per connection, at most [`PROXY_CONNECTIONS_MAX`]
//! connections at once (beyond it a new connection is closed at once).
//! Every thread polls its flags every [`PROXY_POLL`], so a mode change or a
//! reset takes effect within that. Dropping the proxy stops it and aborts
//! its connections.
//!
//! Failure contract: [`Proxy::start`] fails with a [`ProxyError`] if it
//! cannot listen; afterwards nothing panics — a connection that fails is
//! closed and counted.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections a proxy carries at once, at most.
pub const PROXY_CONNECTIONS_MAX: u64 = 1024;

/// How often the proxy's threads look at their flags (mode, resets, stop).
pub const PROXY_POLL: Duration = Duration::from_millis(5);

/// Time allowed to connect to the target.
pub const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes one direction of a connection moves per read.
const CHUNK: usize = 64 * 1024;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass = 0,
    /// Hold connections, move no bytes.
    Blackhole = 1,
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listening socket could not be made.
    #[error("proxy cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections aborted by [`Proxy::reset_all`] (or by dropping it).
    pub resets: u64,
    /// Connections closed at once for the [`PROXY_CONNECTIONS_MAX`] bound
    /// or because the target could not be reached.
    pub refused: u64,
    /// Bytes forwarded (both directions).
    pub bytes: u64,
}

struct Shared {
    target: SocketAddr,
    mode: AtomicU8,
    /// Bumped by every reset; a connection older than it aborts.
    epoch: AtomicU64,
    stop: AtomicBool,
    accepted: AtomicU64,
    active: AtomicU64,
    resets: AtomicU64,
    refused: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn blackholed(&self) -> bool {
        self.mode.load(Ordering::SeqCst) == ProxyMode::Blackhole as u8
    }

    /// True when a connection of `epoch` must end now.
    fn must_end(&self, epoch: u64) -> bool {
        self.stop.load(Ordering::SeqCst) || self.epoch.load(Ordering::SeqCst) != epoch
    }
}

/// A running proxy (see the module doc).
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `target`, in
    /// [`ProxyMode::Pass`].
    pub fn start(target: SocketAddr) -> Result<Proxy, ProxyError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let listen_err = |source| ProxyError::Listen { addr, source };
        let listener = TcpListener::bind(addr).map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let addr = listener.local_addr().map_err(listen_err)?;
        let shared = Arc::new(Shared {
            target,
            mode: AtomicU8::new(ProxyMode::Pass as u8),
            epoch: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            active: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(listener, s))
            .map_err(listen_err)?;
        Ok(Proxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where clients connect (instead of the target).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Forward bytes both ways.
    pub fn pass(&self) {
        self.set_mode(ProxyMode::Pass);
    }

    /// Same as [`Proxy::pass`]: end a blackhole.
    pub fn heal(&self) {
        self.pass();
    }

    /// Hold every connection, new and existing; move no bytes.
    pub fn blackhole(&self) {
        self.set_mode(ProxyMode::Blackhole);
    }

    /// Sets the mode.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        if self.shared.blackholed() {
            ProxyMode::Blackhole
        } else {
            ProxyMode::Pass
        }
    }

    /// Aborts every connection open now (within [`PROXY_POLL`]).
    pub fn reset_all(&self) {
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            accepted: s.accepted.load(Ordering::SeqCst),
            active: s.active.load(Ordering::SeqCst),
            resets: s.resets.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            bytes: s.bytes.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.active.load(Ordering::SeqCst) >= PROXY_CONNECTIONS_MAX {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                shared.active.fetch_add(1, Ordering::SeqCst);
                let s = shared.clone();
                let epoch = shared.epoch.load(Ordering::SeqCst);
                let spawned =
                    std::thread::Builder::new()
                        .name("proxy-conn".into())
                        .spawn(move || {
                            serve(client, &s, epoch);
                            s.active.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(PROXY_POLL),
            Err(_) => std::thread::sleep(PROXY_POLL),
        }
    }
}

/// One connection: held while blackholed, then connected to the target and
/// pumped both ways until either side closes or a reset or stop comes.
fn serve(client: TcpStream, shared: &Arc<Shared>, epoch: u64) {
    while shared.blackholed() {
        if shared.must_end(epoch) {
            shared.resets.fetch_add(1, Ordering::SeqCst);
            return abort(&client, None);
        }
        std::thread::sleep(PROXY_POLL);
    }
    let Ok(target) = TcpStream::connect_timeout(&shared.target, PROXY_CONNECT_TIMEOUT) else {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return abort(&client, None);
    };
    let _ = target.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (Ok(c2), Ok(t2)) = (client.try_clone(), target.try_clone()) else {
        return abort(&client, Some(&target));
    };
    let s = shared.clone();
    let back = std::thread::Builder::new()
        .name("proxy-back".into())
        .spawn(move || pump(t2, c2, &s, epoch));
    let forward_end = pump(
        client.try_clone().ok(),
        target.try_clone().ok(),
        shared,
        epoch,
    );
    let back_end = match back {
        Ok(handle) => handle.join().unwrap_or(End::Closed),
        Err(_) => End::Aborted,
    };
    if forward_end == End::Aborted || back_end == End::Aborted {
        shared.resets.fetch_add(1, Ordering::SeqCst);
        abort(&client, Some(&target));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source closed (or failed); the other side was told.
    Closed,
    /// A reset or stop: the connection must be aborted.
    Aborted,
}

/// Moves bytes from `src` to `dst` until `src` ends or the connection must
/// end; honours the blackhole mode (moves nothing while it lasts).
fn pump(
    src: impl Into<Option<TcpStream>>,
    dst: impl Into<Option<TcpStream>>,
    shared: &Shared,
    epoch: u64,
) -> End {
    let (Some(mut src), Some(mut dst)) = (src.into(), dst.into()) else {
        return End::Aborted;
    };
    if src.set_read_timeout(Some(PROXY_POLL)).is_err()
        || dst.set_write_timeout(Some(PROXY_POLL)).is_err()
    {
        return End::Aborted;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        if shared.must_end(epoch) {
            return End::Aborted;
        }
        if shared.blackholed() {
            std::thread::sleep(PROXY_POLL);
            continue;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => {
                let _ = dst.shutdown(Shutdown::Write);
                return End::Closed;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => {
                let _ = dst.shutdown(Shutdown::Both);
                return End::Closed;
            }
        };
        let mut sent = 0;
        while sent < n {
            if shared.must_end(epoch) {
                return End::Aborted;
            }
            if shared.blackholed() {
                std::thread::sleep(PROXY_POLL);
                continue;
            }
            match dst.write(&buf[sent..n]) {
                Ok(0) => return End::Closed,
                Ok(k) => {
                    sent += k;
                    shared.bytes.fetch_add(k as u64, Ordering::SeqCst);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    let _ = src.shutdown(Shutdown::Both);
                    return End::Closed;
                }
            }
        }
    }
}

/// Closes both sockets abortively: SO_LINGER 0, so the endpoints get a
/// reset rather than an orderly end of stream once the last handle closes.
fn abort(client: &TcpStream, target: Option<&TcpStream>) {
    for s in std::iter::once(client).chain(target) {
        linger_zero(s);
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we hold open, with a pointer to a
    // `linger` that lives across the call and its exact size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    //! The proxy on its own: pass, blackhole, heal, reset.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Instant;

    /// An echo server on a loopback port (one thread per connection).
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn passes_blackholes_heals_and_resets() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut a = TcpStream::connect(proxy.addr()).unwrap();
        a.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(roundtrip(&mut a, b"one").unwrap(), b"one");

        proxy.blackhole();
        assert_eq!(proxy.mode(), ProxyMode::Blackhole);
        std::thread::sleep(PROXY_POLL * 4);
        let err = roundtrip(&mut a, b"two").unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        // A new connection is accepted but held.
        let mut b = TcpStream::connect(proxy.addr()).unwrap();
        b.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(roundtrip(&mut b, b"held").is_err());

        proxy.heal();
        // What was sent during the blackhole arrives after the heal.
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut two = [0u8; 3];
        a.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"two");
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut held = [0u8; 4];
        b.read_exact(&mut held).unwrap();
        assert_eq!(&held, b"held");

        proxy.reset_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 8];
        let ended = loop {
            match a.read(&mut buf) {
                Ok(0) | Err(_) => break true,
                Ok(_) if Instant::now() > deadline => break false,
                Ok(_) => {}
            }
        };
        assert!(ended, "a reset connection must end");
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(roundtrip(&mut c, b"after").unwrap(), b"after");
        // A connection is counted as reset once both of its pumps ended,
        // and a write's bytes are counted once `write` returned: both may
        // come after the client saw the effect, so wait for the counts.
        let want_bytes = 2 * (3 + 3 + 4 + 5) as u64;
        let deadline = Instant::now() + Duration::from_secs(5);
        while (proxy.stats().resets < 2 || proxy.stats().bytes < want_bytes)
            && Instant::now() < deadline
        {
            std::thread::sleep(PROXY_POLL);
        }
        let stats = proxy.stats();
        assert_eq!(stats.accepted, 3);
        assert!(stats.resets >= 2, "{stats:?}");
        assert!(stats.bytes >= want_bytes, "{stats:?}");
    }
}
