//! `gettid()`, `getpid()`, `getrandom()`, `sysconf(_SC_PAGESIZE)`, and thread liveness through
//! `/proc/<tid>/stat`.
//!
//! Lock words record their owner's thread id. The id is cached per thread (a system call per
//! acquisition would cost more than the whole uncontended lock); a `pthread_atfork` child
//! handler clears the cache, because a forked child's only thread has a new id.
//!
//! Liveness: a thread is alive while `/proc/<tid>/stat` exists and its state is neither
//! zombie (`Z`) nor dead (`X`). Thread ids are reused by the kernel only after the id space
//! (`/proc/sys/kernel/pid_max`) wraps, so a dead owner is reported unless that many threads
//! were created meanwhile.
//!
//! # References
//! - `gettid(2)`, `getrandom(2)`, `proc_pid_stat(5)`, `pthread_atfork(3)`

#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)]

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

thread_local! {
    static TID: Cell<u32> = const { Cell::new(0) };
}

static ATFORK: Once = Once::new();
static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn clear_ids_after_fork() {
    // Async-signal-safe: one store to this thread's own thread-local, one atomic store.
    TID.with(|t| t.set(0));
    PID.store(0, Ordering::Relaxed);
}

fn register_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: `pthread_atfork` registers a handler; `clear_ids_after_fork` is an
        // `extern "C" fn()` that only performs async-signal-safe stores.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(clear_ids_after_fork)) };
    });
}

/// Returns the calling thread's id (never 0), cached per thread.
#[cfg(not(shmproc_loom))]
#[inline]
pub(crate) fn current_tid() -> u32 {
    let cached = TID.with(Cell::get);
    if cached != 0 {
        return cached;
    }
    load_tid()
}

/// Under loom, model threads share one OS thread: each gets a small id of its own.
#[cfg(shmproc_loom)]
pub(crate) fn current_tid() -> u32 {
    loom::lazy_static! {
        static ref NEXT: loom::sync::atomic::AtomicU32 = loom::sync::atomic::AtomicU32::new(1);
    }
    loom::thread_local! {
        static LOOM_TID: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    LOOM_TID.with(|t| *t)
}

#[cfg(not(shmproc_loom))]
#[cold]
fn load_tid() -> u32 {
    register_atfork();
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    // Thread ids are positive and below PID_MAX_LIMIT (2^22), so they fit in 30 bits.
    let tid = u32::try_from(tid).unwrap_or(u32::MAX);
    TID.with(|t| t.set(tid));
    tid
}

/// Returns the calling process's id, cached (the cache is cleared in a forked child).
#[inline]
pub(crate) fn current_pid() -> u32 {
    // Relaxed: the cache holds this process's own pid or 0; any value read is one of them.
    match PID.load(Ordering::Relaxed) {
        0 => load_pid(),
        pid => pid,
    }
}

#[cold]
fn load_pid() -> u32 {
    register_atfork();
    let pid = u32::try_from(rustix::process::getpid().as_raw_nonzero().get()).unwrap_or(0);
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// Under loom, model threads never die.
#[cfg(shmproc_loom)]
pub(crate) fn thread_alive(_tid: u32) -> bool {
    true
}

/// Returns whether thread `tid` exists and is not a zombie.
#[cfg(not(shmproc_loom))]
pub(crate) fn thread_alive(tid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{tid}/stat")) else {
        return false;
    };
    // The state follows the last ')' (the command name may itself contain parentheses).
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return true;
    };
    !matches!(stat.get(close + 2), Some(b'Z' | b'X' | b'x'))
}

/// Returns 64 random bits from the kernel.
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // Fall back to time and pid mixing if getrandom is unavailable (never on Linux >= 3.17).
    if rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::empty()).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return (t as u64) ^ (u64::from(current_pid()) << 32);
    }
    u64::from_ne_bytes(buf)
}

/// Returns the system page size.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}
