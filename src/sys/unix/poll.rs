//! `poll(fds, n, timeout)` and `fcntl(F_DUPFD_CLOEXEC)`: readiness of many descriptors at once.
//!
//! Used by `connection::wait` to sleep until one of several connections, process sentinels or
//! raw descriptors is readable. Timeouts are given as an absolute deadline; an interrupted poll
//! returns "nothing ready" and the caller loops against the same deadline.
//!
//! # References
//! - `poll(2)`, `fcntl(2)`

use super::clock::Deadline;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fd::{BorrowedFd, OwnedFd};
use std::io;
use std::time::Duration;

/// Waits until one of `fds` is readable (or hung up, or in error), or `deadline` passes.
///
/// Returns the indices of the ready descriptors; empty on timeout or interruption.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    deadline: Option<&Deadline>,
) -> io::Result<Vec<usize>> {
    let mut set: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    poll_set(&mut set, deadline)
}

/// Waits until one of `fds` is ready for what it is paired with (`true`: writable, `false`:
/// readable; hang-ups and errors count as ready), or `deadline` passes.
///
/// Returns the indices of the ready descriptors; empty on timeout or interruption.
pub(crate) fn poll_ready(
    fds: &[(BorrowedFd<'_>, bool)],
    deadline: Option<&Deadline>,
) -> io::Result<Vec<usize>> {
    let mut set: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, write)| {
            let flags = if *write {
                PollFlags::OUT
            } else {
                PollFlags::IN
            };
            PollFd::new(fd, flags)
        })
        .collect();
    poll_set(&mut set, deadline)
}

/// Polls `set` until one entry has events or `deadline` passes; returns the indices of the
/// entries with events (empty on timeout or interruption).
fn poll_set(set: &mut [PollFd<'_>], deadline: Option<&Deadline>) -> io::Result<Vec<usize>> {
    let timeout = deadline.map(|d| {
        let r: Duration = d.remaining();
        Timespec {
            tv_sec: i64::try_from(r.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(r.subsec_nanos()),
        }
    });
    match poll(set, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    }
    Ok(set
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.revents().is_empty())
        .map(|(i, _)| i)
        .collect())
}

/// Duplicates a descriptor (close-on-exec).
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}
