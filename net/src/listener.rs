//! A TCP listener whose pending accept is awaited once and ended from
//! outside, never polled again and again under a timeout.
//!
//! Why: glommio 0.9's accept (`Source::collect_rw`) pushes a clone of the
//! task's waker onto the source every time the future is polled and drops
//! them only when the accept completes. An accept loop that re-polled its
//! pending accept under a timeout, to look at a stop flag each tick, so
//! leaked two waker references per tick; a task's count is an `i16`, and
//! at 32,767 glommio panics ("Waker invariant broken"). The node links'
//! accept loop (10 ms ticks) brought down every node of an idle cluster
//! after ≈ 165 s, and the client listener (50 ms) a courierd that accepted
//! no connection for ≈ 14 minutes. (Reproduced outside Courier: 16,383
//! timed-out polls of one pending accept panic.)
//!
//! So an accept loop awaits [`Listener::accept`] with nothing else, and a
//! separate task that only sleeps (a fresh timer each time: no leak) calls
//! [`Listener::close`] when the loop must end: it shuts the listening
//! socket down for reading, which fails the pending accept (EINVAL) and
//! every later one.
//!
//! Must never: poll a pending accept from a loop that wakes for anything
//! but that accept's completion.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

/// Backlog of every listening socket.
pub const BACKLOG: i32 = 1024;

/// A listening socket on the current glommio executor, with a second
/// handle on the same socket to end its accepts.
pub struct Listener {
    tcp: glommio::net::TcpListener,
    /// The same socket (a duplicated descriptor): [`Listener::close`]
    /// shuts it down.
    control: socket2::Socket,
}

impl Listener {
    /// Binds `addr` with `SO_REUSEPORT` (every core binds the same port;
    /// the kernel spreads connections) and, with `reuse_address`,
    /// `SO_REUSEADDR` (a restarted process binds again at once whatever
    /// sockets of its previous life are in TIME_WAIT), and listens.
    pub fn bind(addr: SocketAddr, reuse_address: bool) -> std::io::Result<Listener> {
        let domain = if addr.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        socket.set_reuse_port(true)?;
        if reuse_address {
            socket.set_reuse_address(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let control = socket.try_clone()?;
        let fd = socket.into_raw_fd();
        // SAFETY: `fd` is a listening TCP socket we own (into_raw_fd gave up
        // socket2's ownership), handed to exactly one owner; `control` is
        // another descriptor (dup) of the same socket, owned by `control`.
        let tcp = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
        Ok(Listener { tcp, control })
    }

    /// The next connection. Await it once per connection, with nothing
    /// else polling it (module docs); after [`Listener::close`] it fails.
    pub async fn accept(&self) -> glommio::Result<glommio::net::TcpStream, ()> {
        self.tcp.accept().await
    }

    /// The bound address (the port chosen for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.control
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("not an internet socket"))
    }

    /// Ends the pending accept (it fails) and every later one: the
    /// listening socket is shut down for reading. Connections already
    /// accepted are not touched.
    pub fn close(&self) {
        if let Err(e) = self.control.shutdown(std::net::Shutdown::Read) {
            tracing::debug!(error = %e, "listener: shutdown failed (already closed?)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    #[test]
    fn close_ends_a_pending_accept_and_an_idle_loop_leaks_nothing() {
        let ex = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let listener =
                    Rc::new(Listener::bind("127.0.0.1:0".parse().unwrap(), true).unwrap());
                let addr = listener.local_addr().unwrap();
                let client = std::thread::spawn(move || std::net::TcpStream::connect(addr));
                assert!(
                    listener.accept().await.is_ok(),
                    "a real connection is accepted"
                );
                drop(client.join().unwrap());
                // A watcher ticking far more often than any real one: with
                // the old re-polled accept, 16,383 ticks panicked glommio.
                let ticks = Rc::new(std::cell::Cell::new(0u32));
                let (l, t) = (listener.clone(), ticks.clone());
                glommio::spawn_local(async move {
                    while t.get() < 20_000 {
                        glommio::timer::sleep(Duration::from_micros(50)).await;
                        t.set(t.get() + 1);
                    }
                    l.close();
                })
                .detach();
                let started = Instant::now();
                assert!(listener.accept().await.is_err(), "closed: the accept fails");
                assert_eq!(ticks.get(), 20_000);
                assert!(started.elapsed() < Duration::from_secs(30));
                assert!(listener.accept().await.is_err(), "and every later one");
            })
            .unwrap();
        ex.join().unwrap();
    }
}
