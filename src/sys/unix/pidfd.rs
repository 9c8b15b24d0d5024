//! `pidfd_open(pid, 0)` and `poll(fd, POLLIN)`: a descriptor that becomes readable when a
//! process ends.
//!
//! A pidfd names one process, never a later process that reuses its pid, so waiting on it and
//! signalling through it cannot hit a stranger. A child's pid cannot be reused before the child
//! is reaped, so opening the pidfd of an unreaped child right after starting it is race-free.
//! The same [`wait_readable`] serves any descriptor that turns readable on an event (the
//! forkserver's per-child status pipe).
//!
//! # References
//! - `pidfd_open(2)`, `poll(2)`

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::{AsFd, OwnedFd};
use rustix::process::{Pid, PidfdFlags};
use std::io;
use std::time::Duration;

/// Opens a pidfd (close-on-exec) for process `pid`.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Waits until `fd` is readable (or hung up), at most `timeout` (`None`: forever). Returns
/// whether it is. Retries on `EINTR` against one deadline.
pub(crate) fn wait_readable(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(super::Deadline::after);
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = deadline.map(|d| {
            let r = d.remaining();
            rustix::time::Timespec {
                tv_sec: i64::try_from(r.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(r.subsec_nanos()),
            }
        });
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {
                if deadline.is_some_and(|d| d.has_passed()) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until one of `fds` is readable (or hung up), forever; returns the indices that are.
pub(crate) fn wait_any_readable(fds: &[impl AsFd]) -> io::Result<Vec<usize>> {
    loop {
        let mut polls: Vec<PollFd<'_>> =
            fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
        match poll(&mut polls, None) {
            Ok(_) => {
                return Ok(polls
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect());
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends `signal` to the process a pidfd names (`pidfd_send_signal(2)`); a process that has
/// ended but is not yet reaped is not an error.
pub(crate) fn pidfd_send_signal(fd: impl AsFd, signal: i32) -> io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::pidfd_send_signal(fd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
