//! Stream socket reads and writes for request/reply framing: a `recv` that never waits
//! (`MSG_DONTWAIT`, whatever the descriptor's blocking mode), a `recv` that waits (bounded by
//! the socket's `SO_RCVTIMEO`), and a gathered `sendmsg` of several buffers in one system
//! call that never raises `SIGPIPE` (`MSG_NOSIGNAL`).
//!
//! # References
//! - `recv(2)` (`MSG_DONTWAIT`), `sendmsg(2)` (`MSG_NOSIGNAL`), `socket(7)` (`SO_RCVTIMEO`)

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags, recv, sendmsg};
use std::io::{self, IoSlice};

/// Reads what the socket holds into `buf` without waiting: the count read (0 at end of
/// stream), or [`io::ErrorKind::WouldBlock`] when nothing is there. An interrupted call is
/// retried.
pub(crate) fn recv_now(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(fd, buf, RecvFlags::DONTWAIT)
}

/// Reads into `buf`, waiting until something arrives: the count read (0 at end of stream),
/// or [`io::ErrorKind::WouldBlock`] when the socket's receive timeout passed first (or the
/// descriptor is non-blocking). An interrupted call is retried.
pub(crate) fn recv_wait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(fd, buf, RecvFlags::empty())
}

fn recv_flags(fd: BorrowedFd<'_>, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
    loop {
        match recv(fd, &mut *buf, flags) {
            Ok((n, _)) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes `parts` in order with one `sendmsg` (waiting for room, bounded by the socket's
/// send timeout); returns how many bytes the kernel took, which may be fewer than all of
/// them. Never raises `SIGPIPE`: a closed peer is [`io::ErrorKind::BrokenPipe`]. An
/// interrupted call is retried.
pub(crate) fn send_parts(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> io::Result<usize> {
    let mut iov = [IoSlice::new(&[]); 4];
    let n = parts.len().min(iov.len());
    for (slot, part) in iov.iter_mut().zip(parts) {
        *slot = IoSlice::new(part);
    }
    loop {
        let mut control = SendAncillaryBuffer::default();
        match sendmsg(fd, &iov[..n], &mut control, SendFlags::NOSIGNAL) {
            Ok(sent) => return Ok(sent),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
