//! The load generator's threads: one OS thread per core, each running a
//! tokio current-thread runtime with a `LocalSet`, sharing nothing on the
//! hot path (per-thread histograms and counters, merged at the end). This
//! mirrors the server's thread-per-core design, so one load thread can feed
//! one server shard without cross-thread handoffs.

use std::future::Future;
use std::sync::Arc;

/// Runs `make(thread_index)` on each of `threads` threads and returns their
/// results in thread order. The future may hold `Rc`s: it is created and
/// polled on its own thread.
pub fn run<T, F, Fut>(threads: usize, make: F) -> anyhow::Result<Vec<T>>
where
    T: Send,
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let make = &make;
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn_scoped(scope, move || -> anyhow::Result<T> {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        let local = tokio::task::LocalSet::new();
                        local.block_on(&rt, make(i))
                    })
            })
            .collect::<Result<_, _>>()?;
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a load thread panicked"))?
            })
            .collect()
    })
}

/// Runs one future on a fresh current-thread runtime on this thread (for
/// setup and single-connection scenarios).
pub fn block_on<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, fut)
}

/// Longest wait at a rendezvous of the load threads.
pub const PHASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A rendezvous of the load threads between phases (connect, measure,
/// drain). Async, so a waiting thread keeps serving its sockets.
#[derive(Clone)]
pub struct Phase {
    barrier: Arc<tokio::sync::Barrier>,
}

impl Phase {
    /// A rendezvous for `threads` threads.
    pub fn new(threads: usize) -> Phase {
        Phase {
            barrier: Arc::new(tokio::sync::Barrier::new(threads.max(1))),
        }
    }

    /// Waits until every thread has arrived, at most [`PHASE_TIMEOUT`]:
    /// a thread that failed never arrives, and the others must not wait
    /// for it forever.
    pub async fn wait(&self) -> anyhow::Result<()> {
        tokio::time::timeout(PHASE_TIMEOUT, self.barrier.wait())
            .await
            .map(|_| ())
            .map_err(|_| {
                anyhow::anyhow!("another load thread failed or is stuck (waited {PHASE_TIMEOUT:?})")
            })
    }
}

/// Splits `0..n` into `parts` nearly equal contiguous ranges; part `i`.
pub fn share(n: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let parts = parts.max(1);
    let base = n / parts;
    let extra = n % parts;
    let start = i * base + i.min(extra);
    let len = base + usize::from(i < extra);
    start..start + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once() {
        for n in [0, 1, 7, 100] {
            for parts in 1..5 {
                let all: Vec<usize> = (0..parts).flat_map(|i| share(n, parts, i)).collect();
                assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn threads_return_in_order() {
        let out = run(3, |i| async move { Ok(i * 10) }).unwrap();
        assert_eq!(out, vec![0, 10, 20]);
    }
}
