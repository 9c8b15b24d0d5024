//! Test support: `init()` before the harness, leak accounting, a watchdog and a fork helper
//! for multi-process tests. Not public API.
//!
//! # Starting processes from tests
//! A test binary's `main` is the harness's, not ours, so nothing would call
//! [`init`](crate::init) in a re-executed child: it would run the whole test suite again.
//! With the `test-support` feature, shmproc registers a constructor (`.init_array`, through
//! the `ctor` crate) that calls `init()` before the harness's `main`. A child started by a test
//! therefore goes straight to its target; in the test process itself `init()` returns at once.
//! The same holds for benchmarks and any binary linked with the feature.
//!
//! The constructor lives in shmproc's rlib; rustc keeps `#[used]` statics of every linked
//! crate (its synthetic `symbols.o` references them), so it runs in every binary that uses
//! anything from shmproc. [`init_ran`] lets a test check that it really did.
//!
//! Setting `SHMPROC_NO_TEST_INIT=1` in the environment disables the constructor, to test what
//! happens to a program that forgets `init()` (it gets
//! [`Error::NotInitialized`](crate::Error::NotInitialized)).

#![allow(clippy::print_stderr)]

use std::os::fd::AsFd;
use std::sync::OnceLock;

static CONSTRUCTOR_RAN: OnceLock<()> = OnceLock::new();

// SAFETY (for `ctor`'s `unsafe` marker): the constructor runs before `main`, when the Rust
// runtime is not fully set up; it only reads the environment, takes uncontended std locks,
// reads files, and (in a child) runs the target and exits. It does not rely on anything `main`
// initialises: std's I/O, allocation, thread-locals and environment work before `main` on
// Linux with glibc.
#[ctor::ctor(unsafe)]
fn run_init_before_test_harness() {
    if std::env::var_os("SHMPROC_NO_TEST_INIT").is_some() {
        return;
    }
    let _ = CONSTRUCTOR_RAN.set(());
    crate::init();
}

/// Returns whether the `test-support` constructor ran `init()` in this process.
pub fn init_ran() -> bool {
    CONSTRUCTOR_RAN.get().is_some()
}

use std::collections::BTreeSet;

/// Counts of resources that must not leak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Open descriptors of this process.
    pub fds: BTreeSet<i32>,
    /// Entries in `/dev/shm` whose name starts with `shmproc`.
    pub shm: BTreeSet<String>,
    /// Child processes of this process (alive or zombie).
    pub children: BTreeSet<i32>,
}

/// Takes a snapshot of this process's descriptors, `/dev/shm` entries and children.
pub fn resources() -> Resources {
    let fds: BTreeSet<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let pid = std::process::id();
    // Names the tests make carry their process's pid; another test process's are not ours.
    let mine = format!("shmproc-test-{pid}-");
    let shm: BTreeSet<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("shmproc"))
                .filter(|n| !n.starts_with("shmproc-test-") || n.starts_with(&mine))
                .collect()
        })
        .unwrap_or_default();
    let children: BTreeSet<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| parent_of(*p) == Some(pid))
                .collect()
        })
        .unwrap_or_default();
    let mut r = Resources { fds, shm, children };
    // The named-segment reaper lives as long as this process, by design.
    if let Some(pid) = crate::sys::reaper::reaper_pid() {
        r.children.remove(&pid);
    }
    if let Some(fd) = crate::sys::reaper::reaper_fd() {
        r.fds.remove(&fd);
    }
    r
}

/// One TCP socket of this process, as [`tcp_sockets`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// Its local address.
    pub local: std::net::SocketAddr,
    /// Its peer's address.
    pub peer: std::net::SocketAddr,
    /// Whether `SO_KEEPALIVE` is on.
    pub keepalive: bool,
    /// Its `TCP_KEEPIDLE`.
    pub keepalive_idle: std::time::Duration,
}

/// Returns the connected TCP sockets of this process (read with `getsockname`,
/// `getpeername` and `getsockopt` on a duplicate of each descriptor listed in
/// `/proc/self/fd`, so another thread may open and close descriptors meanwhile: a socket
/// opened or closed during the call may be missing from the list).
pub fn tcp_sockets() -> Vec<TcpSocket> {
    resources()
        .fds
        .into_iter()
        .filter_map(|raw| {
            let fd = crate::sys::dup_by_number(raw).ok()?;
            let (local, peer) = crate::sys::ip_socket_addrs(fd.as_fd())?;
            let (keepalive, keepalive_idle) = crate::sys::tcp_keepalive(fd.as_fd()).ok()?;
            Some(TcpSocket {
                local,
                peer,
                keepalive,
                keepalive_idle,
            })
        })
        .collect()
}

fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat.get(close + 2..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A child process made by [`fork`].
#[derive(Debug)]
pub struct Child {
    pid: i32,
    reaped: bool,
}

/// How a child ended: `Ok(code)` for an exit, `Err(signal)` when killed.
pub type Ended = std::result::Result<i32, i32>;

/// The caller's promise that forking this process now is sound: made only by the unsafe
/// [`ForkPermit::new`], consumed by [`fork`].
#[derive(Debug)]
pub struct ForkPermit(());

impl ForkPermit {
    /// Promises that the next [`fork`] is sound.
    ///
    /// A forked child has only the thread that forked; every lock another thread held at that
    /// moment stays locked in the child forever. In a test process the other threads are the
    /// harness's (waiting for the test) and [`watchdog`]s (waiting on a channel), which hold
    /// no lock while they wait; tests of one binary running in parallel in one process
    /// (`cargo test` without nextest) are other threads that may.
    ///
    /// # Safety
    /// Until the child created with this permit exits, it takes no lock (allocator aside:
    /// glibc's `fork` makes `malloc` safe in the child) that another thread of this process
    /// might hold at the moment of the fork: standard output and error, the environment,
    /// shmproc's process-local tables, and any lock of the test's own. Nor does it access
    /// shared data through a guard (or a reference borrowed from one) that it inherited from
    /// the forking thread: this process may still hold that lock.
    #[allow(unsafe_code)] // An unsafe constructor is the point of a permit.
    pub unsafe fn new() -> ForkPermit {
        ForkPermit(())
    }
}

/// Forks a child that runs `f` and exits with its return value (101 if it panics).
///
/// For tests only; the [`ForkPermit`] is the caller's promise (an `unsafe` one) that the
/// child cannot meet a lock held by a thread that does not exist in it. Tests that need more
/// use `Process`, whose `Fork` start method refuses a multi-threaded caller.
///
/// # Panics
/// If `fork` fails.
///
/// Unlike the `Fork` start method, this fork goes ahead while the calling thread holds lock
/// guards (tests fork a child beside a held lock on purpose): the child's copies of them
/// release nothing when dropped, and the permit's contract forbids the child to touch data
/// borrowed through them.
pub fn fork(permit: ForkPermit, f: impl FnOnce() -> i32) -> Child {
    let ForkPermit(()) = permit;
    // References for the manager proxies the child inherits.
    let pre = crate::process::PreFork::prepare();
    #[allow(unsafe_code)]
    // SAFETY: the permit carries the caller's promise (`ForkPermit::new`'s contract) that no
    // lock the child takes is held by another thread; the child only runs `f` and then
    // `_exit`s without returning into the test harness.
    let forked = unsafe { crate::sys::fork::fork() };
    match forked {
        Ok(crate::sys::fork::Forked::Child) => {
            pre.in_child();
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            crate::sys::fork::exit_immediately(code)
        }
        Ok(crate::sys::fork::Forked::Parent(pid)) => {
            pre.in_parent();
            Child { pid, reaped: false }
        }
        Err(e) => panic!("fork failed: {e}"),
    }
}

impl Child {
    /// Returns the child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the child and returns how it ended.
    /// Reaping releases what the child held in this process's segments (as
    /// [`Process::join`](crate::Process::join) does).
    pub fn wait(&mut self) -> Ended {
        self.reaped = true;
        let ended = match crate::sys::fork::wait_pid(self.pid, false) {
            Ok(Some(crate::sys::fork::ExitStatus::Exited(c))) => Ok(c),
            Ok(Some(crate::sys::fork::ExitStatus::Signaled(s))) => Err(s),
            other => panic!("waitpid({}) failed: {other:?}", self.pid),
        };
        crate::heap::release_holders_of(u32::try_from(self.pid).unwrap_or(0));
        ended
    }

    /// Returns how the child ended if it has, without blocking.
    pub fn try_wait(&mut self) -> Option<Ended> {
        match crate::sys::fork::wait_pid(self.pid, true) {
            Ok(Some(crate::sys::fork::ExitStatus::Exited(c))) => {
                self.reaped = true;
                crate::heap::release_holders_of(u32::try_from(self.pid).unwrap_or(0));
                Some(Ok(c))
            }
            Ok(Some(crate::sys::fork::ExitStatus::Signaled(s))) => {
                self.reaped = true;
                crate::heap::release_holders_of(u32::try_from(self.pid).unwrap_or(0));
                Some(Err(s))
            }
            _ => None,
        }
    }

    /// Sends `SIGKILL` and reaps the child.
    pub fn kill(&mut self) -> Ended {
        let _ = crate::sys::fork::send_signal(self.pid, crate::sys::fork::SIGKILL);
        self.wait()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = crate::sys::fork::send_signal(self.pid, crate::sys::fork::SIGKILL);
            let _ = crate::sys::fork::wait_pid(self.pid, false);
        }
    }
}

/// Fails the test if `f` takes longer than `limit`: kills this process (and so its test)
/// with a message, so a hang fails fast instead of stalling the suite.
pub fn watchdog<R>(limit: std::time::Duration, name: &str, f: impl FnOnce() -> R) -> R {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let name = name.to_owned();
    let t = std::thread::spawn(move || {
        if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            eprintln!("watchdog: {name} still running after {limit:?}; aborting");
            std::process::abort();
        }
    });
    let r = f();
    let _ = tx.send(());
    let _ = t.join();
    r
}

/// Runs `f` and asserts that it leaked no descriptor, `/dev/shm` entry or child process.
///
/// The default heap is created first, so its one descriptor is not counted as a leak.
pub fn assert_no_leaks<R>(f: impl FnOnce() -> R) -> R {
    let _ = crate::default_segment();
    let before = resources();
    let r = f();
    let after = resources();
    assert_eq!(before.fds, after.fds, "descriptors leaked");
    assert_eq!(before.shm, after.shm, "/dev/shm entries leaked");
    assert_eq!(before.children, after.children, "child processes leaked");
    r
}

/// Makes every thread-liveness probe of this process (the `/proc/<tid>/stat` reads and
/// `kill(tid, 0)`) fail with error number `errno`, or work again with `None`.
///
/// `Some(ENOENT)` (2) looks like a system without `/proc`, `Some(EMFILE)` (24) like a
/// process out of descriptors. A failing probe must never let a lock's waiter take over.
pub fn set_liveness_probe_fault(errno: Option<i32>) {
    crate::sys::set_probe_fault(errno);
}
