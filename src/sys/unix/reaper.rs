//! `fork()` + `read()` + `unlink()`: a reaper process that removes this process's named
//! segments from `/dev/shm` when this process dies, however it dies.
//!
//! A name in `/dev/shm` outlives a process killed by `SIGKILL`: no destructor runs. So the
//! first time a process creates a named segment, it forks a reaper that holds the read end of a
//! pipe. The owner writes one record per name it creates (`A`) and removes (`R`); the reaper
//! keeps the current set. When the owner dies, the kernel closes the write end, the reaper reads
//! end-of-file, unlinks every name still in its set, and exits. The reaper is reparented to
//! `init` when the owner is gone, so it never lingers as a zombie. It runs in a session and
//! process group of its own (`setsid`), so a signal to the owner's whole group (a terminal's
//! `^C`, `kill -9 -pgid`) leaves it to do its job; it still exits as soon as the owner is
//! gone. Its table holds [`MAX_NAMES`] names; the owner counts the names it watches and
//! refuses a creation past that with an error, so no name is ever silently left unwatched.
//!
//! Between `fork` and `_exit` the reaper runs only [`reaper_main`], which makes only
//! async-signal-safe calls: `close_range`, `setsid`, `signal(SIG_IGN)`, `read`, `unlink`,
//! `_exit`. Its
//! tables are allocated before the fork. Forked children of the owner close their copy of the
//! write end at once (a `pthread_atfork` child handler), so only the owner keeps the reaper
//! waiting; a child that creates named segments gets a reaper of its own.
//!
//! # Safety
//!
//! The unsafe blocks are the system calls above and raw-pointer access to the tables, which
//! are allocated before the fork, owned by the reaper after it, and indexed within their
//! bounds.
//!
//! # References
//! - `fork(2)`, `pipe(2)`, `close_range(2)`, `unlink(2)`, `pthread_atfork(3)`,
//!   `signal-safety(7)`

#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)]

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The most names one process's reaper watches at once; creating more is refused.
pub(crate) const MAX_NAMES: usize = 1024;
const NAME_CAP: usize = 256;
const PREFIX: &[u8] = b"/dev/shm";

/// Write end of the pipe to the reaper (-1 when there is none in this process).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// Pid of this process's reaper (0 when there is none).
static REAPER_PID: AtomicI32 = AtomicI32::new(0);
static START: Mutex<()> = Mutex::new(());
/// Names this process has asked its reaper to watch and not yet released: the reaper's table
/// holds exactly these, so a name past [`MAX_NAMES`] is refused here instead of being
/// silently left out of the table.
static WATCHED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn forget_reaper_after_fork() {
    // Async-signal-safe: close(2) and atomic stores. A forked child must not keep its parent's
    // reaper waiting, and starts its own if it creates names.
    let fd = WRITE_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: `fd` is this process's copy of the pipe's write end, owned by this module.
        unsafe { libc::close(fd) };
    }
    REAPER_PID.store(0, Ordering::Relaxed);
    WATCHED.store(0, Ordering::Relaxed);
}

/// Returns the pid of this process's reaper, if it has one.
#[cfg_attr(not(feature = "test-support"), allow(dead_code))]
pub(crate) fn reaper_pid() -> Option<i32> {
    match REAPER_PID.load(Ordering::Relaxed) {
        0 => None,
        pid => Some(pid),
    }
}

/// Returns the descriptor this process uses to talk to its reaper, if any.
#[cfg_attr(not(feature = "test-support"), allow(dead_code))]
pub(crate) fn reaper_fd() -> Option<i32> {
    match WRITE_FD.load(Ordering::Relaxed) {
        -1 => None,
        fd => Some(fd),
    }
}

/// Asks the reaper to unlink `name` (a `shm_open` name with its leading `/`) if this process
/// dies before calling [`unwatch`].
///
/// # Errors
/// `InvalidInput` for a name of 256 bytes or more; `QuotaExceeded` when [`MAX_NAMES`] names
/// are watched already; the errors of starting the reaper or writing to it.
pub(crate) fn watch(name: &str) -> io::Result<()> {
    let full = WATCHED
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < MAX_NAMES).then_some(n + 1)
        })
        .is_err();
    if full {
        return Err(io::Error::new(
            io::ErrorKind::QuotaExceeded,
            "this process already has 1024 named segments (the most its reaper can remove \
             at exit); drop or unlink some first",
        ));
    }
    let r = send(b'A', name);
    if r.is_err() {
        WATCHED.fetch_sub(1, Ordering::Relaxed);
    }
    r
}

/// Tells the reaper that `name` was unlinked by its owner.
pub(crate) fn unwatch(name: &str) {
    if send(b'R', name).is_ok() {
        let _ = WATCHED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

fn send(op: u8, name: &str) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= NAME_CAP {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name length"));
    }
    let fd = ensure_started()?;
    let mut rec = Vec::with_capacity(bytes.len() + 2);
    rec.push(op);
    rec.push(u8::try_from(bytes.len()).unwrap_or(0));
    rec.extend_from_slice(bytes);
    // SAFETY: `fd` is the pipe's write end; `rec` is a valid buffer of `rec.len()` bytes.
    // Records are under PIPE_BUF bytes, so each write is atomic (pipe(7)).
    let n = unsafe { libc::write(fd, rec.as_ptr().cast(), rec.len()) };
    if usize::try_from(n).ok() == Some(rec.len()) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ensure_started() -> io::Result<i32> {
    let _guard = START
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        return Ok(fd);
    }
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers an `extern "C" fn()` handler that is async-signal-safe.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(forget_reaper_after_fork)) };
    });
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [rd, wr] = fds;
    // Tables for the reaper, allocated before the fork (it may not allocate after).
    let mut names = vec![0u8; MAX_NAMES * NAME_CAP].into_boxed_slice();
    let mut lens = vec![0u8; MAX_NAMES].into_boxed_slice();
    let mut inbuf = vec![0u8; 8192].into_boxed_slice();
    let mut path = vec![0u8; PREFIX.len() + NAME_CAP + 1].into_boxed_slice();
    // SAFETY: fork has no memory-safety preconditions; the child only runs `reaper_main`,
    // which makes only async-signal-safe calls and never returns.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => {
            let e = io::Error::last_os_error();
            // SAFETY: both descriptors were just created by `pipe2` and are owned here.
            unsafe { libc::close(rd) };
            // SAFETY: as above.
            unsafe { libc::close(wr) };
            Err(e)
        }
        0 => reaper_main(rd, &mut names, &mut lens, &mut inbuf, &mut path),
        pid => {
            // The reaper leaves our process group before we return (it also calls `setsid`
            // itself; whichever comes first wins, the other fails harmlessly): a group signal
            // sent right after a name is created must not reach it.
            // SAFETY: `setpgid` on our own child, which has not exec'd; no memory is involved.
            unsafe { libc::setpgid(pid, pid) };
            // SAFETY: the read end belongs to the reaper now.
            unsafe { libc::close(rd) };
            WRITE_FD.store(wr, Ordering::Relaxed);
            REAPER_PID.store(pid, Ordering::Relaxed);
            Ok(wr)
        }
    }
}

/// The reaper's whole life. Async-signal-safe calls only: `close_range`, `setsid`, `signal`,
/// `read`, `unlink`, `_exit`; no allocation, no locks.
fn reaper_main(rd: i32, names: &mut [u8], lens: &mut [u8], inbuf: &mut [u8], path: &mut [u8]) -> ! {
    // Keep nothing of the owner's but the read end: holding its other descriptors (sockets,
    // pipes, memfds) would keep peers from seeing end-of-file and memory from being freed.
    let rd_u = u32::try_from(rd).unwrap_or(0);
    if rd_u > 0 {
        // SAFETY: closes descriptors below `rd`; no Rust object in this process uses them.
        unsafe { libc::syscall(libc::SYS_close_range, 0u32, rd_u - 1, 0u32) };
    }
    // SAFETY: closes every descriptor above `rd`, as above.
    unsafe { libc::syscall(libc::SYS_close_range, rd_u + 1, u32::MAX, 0u32) };
    // A session (and process group) of its own: a signal to the owner's group, `SIGKILL`
    // included, must not take the reaper with it. Its lifetime stays tied to the owner's
    // through the pipe: the owner's death is the end-of-file it waits for.
    // SAFETY: `setsid` is async-signal-safe and has no preconditions.
    unsafe { libc::setsid() };
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        // SAFETY: `signal` with `SIG_IGN` is async-signal-safe; the reaper must outlive a
        // terminal's or test runner's signal to the owner's process group to do its job.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut filled = 0usize;
    while let Some(free) = inbuf.get_mut(filled..) {
        // SAFETY: `free` is a writable buffer of `free.len()` bytes.
        let n = unsafe { libc::read(rd, free.as_mut_ptr().cast(), free.len()) };
        if n < 0 {
            // SAFETY: returns this thread's errno location; no other preconditions.
            let errno = unsafe { libc::__errno_location() };
            // SAFETY: the location is valid for the calling thread's lifetime.
            if unsafe { errno.read() } == libc::EINTR {
                continue;
            }
            break;
        }
        if n == 0 {
            break;
        }
        filled += usize::try_from(n).unwrap_or(0);
        let mut at = 0usize;
        let received = inbuf.get(..filled).unwrap_or(&[]);
        while let (Some(&op), Some(&len)) = (received.get(at), received.get(at + 1)) {
            let len = usize::from(len);
            let Some(name) = received.get(at + 2..at + 2 + len) else {
                break;
            };
            apply(op, name, names, lens);
            at += 2 + len;
        }
        inbuf.copy_within(at..filled, 0);
        filled -= at;
    }
    for (i, &len) in lens.iter().enumerate() {
        let len = usize::from(len);
        if len == 0 {
            continue;
        }
        let name = names.get(i * NAME_CAP..i * NAME_CAP + len).unwrap_or(&[]);
        let total = PREFIX.len() + name.len();
        if let Some(dst) = path.get_mut(..=total) {
            dst[..PREFIX.len()].copy_from_slice(PREFIX);
            dst[PREFIX.len()..total].copy_from_slice(name);
            dst[total] = 0;
            // SAFETY: `path` holds a NUL-terminated path.
            unsafe { libc::unlink(dst.as_ptr().cast()) };
        }
    }
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(0) }
}

fn apply(op: u8, name: &[u8], names: &mut [u8], lens: &mut [u8]) {
    let slot_of = |i: usize| i * NAME_CAP;
    let found = (0..MAX_NAMES).find(|&i| {
        let len = usize::from(lens[i]);
        len == name.len() && names.get(slot_of(i)..slot_of(i) + len) == Some(name)
    });
    match (op, found) {
        (b'A', None) => {
            if let Some(i) = (0..MAX_NAMES).find(|&i| lens[i] == 0)
                && let Some(dst) = names.get_mut(slot_of(i)..slot_of(i) + name.len())
            {
                dst.copy_from_slice(name);
                lens[i] = u8::try_from(name.len()).unwrap_or(0);
            }
        }
        (b'R', Some(i)) => lens[i] = 0,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: past the table size, a name is refused, not silently left unwatched.
    #[test]
    fn names_past_the_table_are_refused_not_dropped() {
        let name = |i: usize| format!("/shmproc-unit-{}-{i}", std::process::id());
        for i in 0..MAX_NAMES {
            watch(&name(i)).expect("room in the table");
        }
        let e = watch(&name(MAX_NAMES)).expect_err("a name past the table");
        assert_eq!(e.kind(), io::ErrorKind::QuotaExceeded);
        assert!(e.to_string().contains("1024 named segments"), "{e}");
        // Releasing one makes room again.
        unwatch(&name(0));
        watch(&name(MAX_NAMES)).expect("room again");
        for i in 1..=MAX_NAMES {
            unwatch(&name(i));
        }
    }
}
