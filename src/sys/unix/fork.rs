//! `fork()`, `_exit()`, `waitpid()`, `kill()` and `fcntl(F_GETFD)`: the raw process operations.
//!
//! Between `fork` and the child's entry point only async-signal-safe calls may run (the parent
//! may have had other threads holding allocator locks). [`fork`] makes the one call and returns;
//! what the child runs after it is the caller's contract, stated on [`fork`].
//!
//! # References
//! - `fork(2)`, `_exit(2)`, `waitpid(2)`, `kill(2)`, `fcntl(2)`

#![allow(unsafe_code)]

use std::io;

/// Which side of a fork this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The child.
    Child,
    /// The parent, with the child's pid.
    Parent(i32),
}

/// Forks the calling process.
///
/// # Safety
/// - If the calling process has more than one thread, the child may only call
///   async-signal-safe functions until it calls [`exit_immediately`] or `exec`.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: `fork` has no memory-safety preconditions of its own; the caller upholds the
    // async-signal-safety contract for the child.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends the calling process at once with `code`, running no destructors or `atexit` handlers.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

/// Waits for child `pid` to end (or checks, with `nohang`), reaping it.
pub(crate) fn wait_pid(pid: i32, nohang: bool) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: `status` is a valid, writable `c_int`.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }));
    }
}

/// Sends `signal` to process `pid`.
pub(crate) fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: `kill` has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid, signal) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `SIGKILL`.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
/// `SIGTERM`.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;

/// Takes ownership of descriptor `fd`, inherited from the parent, after checking it is open.
///
/// Called once per descriptor named in the private start-up message of a child started by
/// shmproc, before any other code of the child could have opened or closed descriptors.
pub(crate) fn adopt_inherited_fd(fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: `fcntl(F_GETFD)` only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags == -1 || fd < 3 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `fd` is open (checked above) and owned by nobody else in this process: it was
    // inherited for this purpose and is adopted exactly once, by the child's start-up code.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
