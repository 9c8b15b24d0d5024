//! `wait()`: select over connections, process sentinels and raw descriptors.

use super::Connection;
use super::pipe::WaitPart;
use crate::error::{Error, Result};
use crate::sys::{self, Deadline};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// How often a waiter re-checks for peers that died without closing.
const SLICE: Duration = Duration::from_millis(100);

/// Something [`wait`] can wait on.
#[derive(Debug, Clone, Copy)]
pub enum Waitable<'a> {
    /// A connection: ready when a message or end of stream can be received.
    Connection(&'a Connection),
    /// Any descriptor (a process sentinel such as a pidfd, a socket, a pipe): ready when
    /// readable, hung up or in error.
    Fd(BorrowedFd<'a>),
}

impl<'a> From<&'a Connection> for Waitable<'a> {
    fn from(c: &'a Connection) -> Self {
        Waitable::Connection(c)
    }
}

impl<'a> From<BorrowedFd<'a>> for Waitable<'a> {
    fn from(fd: BorrowedFd<'a>) -> Self {
        Waitable::Fd(fd)
    }
}

impl<'a> Waitable<'a> {
    /// Wraps any descriptor owner (`OwnedFd`, a `UnixStream`, a pidfd, …).
    pub fn fd(f: &'a impl AsFd) -> Self {
        Waitable::Fd(f.as_fd())
    }
}

/// Unregisters pollers on drop.
struct Registered<'a>(Vec<&'a super::ring::Ring>);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        for r in &self.0 {
            r.add_poller(false);
        }
    }
}

/// Waits until at least one of `objects` is ready and returns the indices of the ready ones,
/// in order (`multiprocessing.connection.wait`). Returns an empty list when `timeout` passes
/// first (`None` waits forever, `Some(Duration::ZERO)` only checks).
///
/// A connection is ready when [`recv`](Connection::recv) would not block: a complete message's
/// first part is there, or the peer closed or died.
///
/// # Errors
/// [`Error::Closed`] or [`Error::WrongDirection`] for a connection that cannot receive;
/// [`Error::Io`] if `poll` fails.
///
/// # Examples
/// ```
/// use shmproc::connection::{wait, Waitable};
/// use std::time::Duration;
/// # fn main() -> shmproc::Result<()> {
/// let (a, b) = shmproc::pipe()?;
/// let (c, d) = shmproc::pipe()?;
/// assert!(wait(&[(&a).into(), (&c).into()], Some(Duration::ZERO))?.is_empty());
/// d.send(&1u8)?;
/// assert_eq!(wait(&[Waitable::from(&a), Waitable::from(&c)], None)?, [1]);
/// # drop(b); Ok(()) }
/// ```
pub fn wait(objects: &[Waitable<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.map(Deadline::after);
    let mut rings = Vec::new();
    let mut fds = Vec::with_capacity(objects.len());
    let mut pre_ready = Vec::new();
    for o in objects {
        match o {
            Waitable::Connection(c) => match c.wait_part()? {
                WaitPart::Ring(ring, efd) => {
                    rings.push(Some(ring));
                    fds.push(efd);
                }
                WaitPart::Socket(fd, pending) => {
                    rings.push(None);
                    fds.push(fd);
                    if pending {
                        pre_ready.push(rings.len() - 1);
                    }
                }
            },
            Waitable::Fd(fd) => {
                rings.push(None);
                fds.push(*fd);
            }
        }
    }
    let mut reg = Registered(Vec::new());
    for r in rings.iter().flatten() {
        r.add_poller(true);
        reg.0.push(r);
    }
    loop {
        let mut ready: Vec<usize> = rings
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some_and(|r| r.readable_now()))
            .map(|(i, _)| i)
            .chain(pre_ready.iter().copied())
            .collect();
        let now_only = !ready.is_empty() || deadline.as_ref().is_some_and(Deadline::has_passed);
        let until = if now_only {
            Deadline::after(Duration::ZERO)
        } else {
            match &deadline {
                Some(d) => d.min(Deadline::after(SLICE)),
                None => Deadline::after(SLICE),
            }
        };
        let polled = sys::poll_readable(&fds, Some(&until)).map_err(|e| Error::io("poll", e))?;
        for &i in &polled {
            match rings.get(i) {
                // A connection's eventfd: reset it; the ring itself says whether it is ready.
                Some(Some(r)) => {
                    if let Some(fd) = fds.get(i) {
                        sys::eventfd_drain(*fd);
                    }
                    if r.readable_now() && !ready.contains(&i) {
                        ready.push(i);
                    }
                }
                Some(None) => ready.push(i),
                None => {}
            }
        }
        if !ready.is_empty() || now_only {
            ready.sort_unstable();
            ready.dedup();
            return Ok(ready);
        }
    }
}
