//! One clock for the whole harness, and a sleep precise enough for open-loop
//! schedules.
//!
//! Every timestamp the harness takes is `CLOCK_MONOTONIC` in nanoseconds
//! ([`now_ns`]), the same clock on every load thread, so a send time written
//! into a message body on one thread can be subtracted from an arrival time
//! taken on another.
//!
//! tokio's timer wheel has a 1 ms resolution: an open-loop sender sleeping on
//! it would send up to a millisecond late, and since latency is measured from
//! the *intended* send time (coordinated-omission correction) that lateness
//! would be charged to the server. [`PreciseTimer`] sleeps on a `timerfd`
//! (an hrtimer, microsecond-accurate) registered with the tokio reactor, so
//! the thread still serves its sockets while it waits.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A `timerfd` on `CLOCK_MONOTONIC`, awaited through the tokio reactor of
/// the thread that created it.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    /// Creates the timer; must run inside a tokio runtime with IO enabled.
    pub fn new() -> io::Result<PreciseTimer> {
        // SAFETY: plain syscall; the fd is owned right below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd stays open and is the same fd for as long as
        // the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(PreciseTimer { fd })
    }

    /// Sleeps until `deadline_ns` (a [`now_ns`] value); returns at once if it
    /// has passed.
    pub async fn sleep_until(&self, deadline_ns: u64) -> io::Result<()> {
        if deadline_ns <= now_ns() {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: arms our own timerfd with a valid itimerspec.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads 8 bytes into our buffer from our fd.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if n == 8 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return Err(err);
        }
    }
}
