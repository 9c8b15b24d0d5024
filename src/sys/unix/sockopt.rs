//! TCP keepalive on a connected socket, so a peer host that vanished (powered off, cut off)
//! is noticed: `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and `TCP_KEEPCNT`; and
//! reading a TCP socket's keepalive and addresses back, on a duplicate of a descriptor number
//! (`fcntl(F_DUPFD_CLOEXEC)`; tests).
//!
//! # References
//! - `socket(7)` (`SO_KEEPALIVE`), `tcp(7)` (`TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`)
//! - `setsockopt(2)`, `getsockopt(2)`, `getsockname(2)`, `getpeername(2)`, `fcntl(2)`

use std::io;
#[cfg(any(test, feature = "test-support"))]
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
#[cfg(any(test, feature = "test-support"))]
use std::os::fd::OwnedFd;
use std::time::Duration;

/// Turns keepalive on for the TCP socket `fd`: after `idle` without traffic, a probe every
/// `interval`; after `count` unanswered probes the connection fails (reads and writes
/// return an error, a poll reports it).
pub(crate) fn set_tcp_keepalive(
    fd: BorrowedFd<'_>,
    idle: Duration,
    interval: Duration,
    count: u32,
) -> io::Result<()> {
    use rustix::net::sockopt;
    sockopt::set_tcp_keepidle(fd, idle)?;
    sockopt::set_tcp_keepintvl(fd, interval)?;
    sockopt::set_tcp_keepcnt(fd, count)?;
    sockopt::set_socket_keepalive(fd, true)?;
    Ok(())
}

/// Returns whether keepalive is on for the socket `fd`, with its idle time.
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn tcp_keepalive(fd: BorrowedFd<'_>) -> io::Result<(bool, Duration)> {
    use rustix::net::sockopt;
    Ok((sockopt::socket_keepalive(fd)?, sockopt::tcp_keepidle(fd)?))
}

/// Returns the local and peer addresses of the connected IP socket `fd`; `None` for another
/// kind of descriptor.
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn ip_socket_addrs(fd: BorrowedFd<'_>) -> Option<(SocketAddr, SocketAddr)> {
    let local = SocketAddr::try_from(rustix::net::getsockname(fd).ok()?).ok()?;
    let peer = SocketAddr::try_from(rustix::net::getpeername(fd).ok()??).ok()?;
    Some((local, peer))
}

/// Duplicates whatever open file the descriptor number `raw` names at this moment
/// (close-on-exec), so that it can be queried while another thread closes or reuses the
/// number: the copy is this caller's own.
#[cfg(any(test, feature = "test-support"))]
#[allow(unsafe_code)]
pub(crate) fn dup_by_number(raw: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` takes any integer: the kernel looks the number up and
    // fails with `EBADF` if it names nothing; no memory is passed.
    let fd = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel as a new descriptor of this process, and
    // nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
