//! Generic single-threaded async helpers shared by the gateway and the
//! shard runtime: a one-waiter wake-up flag ([`Signal`]) and a deadline
//! around any future ([`with_timeout`]).
//!
//! Nothing here knows about connections, shards, the core or the WAL, and
//! nothing here may ever block a thread, hold a lock or allocate per wait:
//! these run on a glommio executor, inside every connection's tasks.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Runs `fut` for at most `d`; `None` on timeout.
///
/// Built from combinators rather than `async` blocks: an `async` block that
/// captures `fut` and awaits it stores it twice, which tripled the size of
/// every per-connection task that embedded a timeout.
pub fn with_timeout<T>(
    d: Duration,
    fut: impl Future<Output = T>,
) -> impl Future<Output = Option<T>> {
    use futures::FutureExt as _;
    futures_lite::future::or(fut.map(Some), glommio::timer::sleep(d).map(|()| None))
}

/// A one-waiter wake-up flag for a single-threaded executor.
#[derive(Default)]
pub struct Signal {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes the waiter, if any.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until notified (returns at once if notified since the last wait).
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
