//! `gettid()`, `getpid()`, `getrandom()`, `sysconf(_SC_PAGESIZE)`, and thread liveness through
//! `/proc/<tid>/stat` and `kill(tid, 0)`.
//!
//! Lock words record their owner's thread id. The id is cached per thread (a system call per
//! acquisition would cost more than the whole uncontended lock); a `pthread_atfork` child
//! handler clears the cache, because a forked child's only thread has a new id.
//!
//! # Liveness is conservative
//!
//! [`probe_thread`] answers [`Liveness::Gone`] only on a definite answer, and every other
//! outcome counts as alive:
//!
//! | observation                                                          | answer    |
//! |----------------------------------------------------------------------|-----------|
//! | `/proc/<tid>/stat` reads, state `Z` (zombie), `X` or `x` (dead)        | `Gone`    |
//! | `/proc/<tid>/stat` fails with `ENOENT`/`ESRCH` *and* `kill(tid, 0)` fails with `ESRCH` | `Gone` |
//! | `/proc/<tid>/stat` reads, any other state                             | `Running` (with its start time) |
//! | anything else: no `/proc`, `EMFILE`, `EACCES`, a `/proc` of another PID namespace, a stat line that does not parse, `kill` answering `0`/`EPERM` | `Running` (start unknown) |
//!
//! `ENOENT` alone is not trusted: it is also what a missing `/proc` or a `/proc` mounted with
//! `hidepid=invisible` answers. `kill(tid, 0)` is: it looks the id up in the caller's PID
//! namespace without touching `/proc` (it signals nobody: signal 0 only checks). `/proc` is
//! used at all only if [`liveness_probe`] found it to be this process's own (its `self` link
//! names our pid and this thread's stat line reads and parses).
//!
//! A thread id is meaningful only inside its PID namespace. A thread of another namespace
//! reads as some unrelated thread or none: callers must not share robust words across PID
//! namespaces (the lock module's docs say what happens then).
//!
//! # Start times and reused ids
//!
//! Thread ids are reused by the kernel once the id space (`/proc/sys/kernel/pid_max`) wraps.
//! The 22nd field of `/proc/<tid>/stat`, the start time in clock ticks since boot, tells two
//! threads with one id apart: [`current_stamp`] packs this thread's id with the low 32 bits of
//! its start time (read once per thread, cached like the id), and [`probe_thread`] returns the
//! same low 32 bits for the live thread it finds. Two stamps compare equal only when both start
//! times are known.
//!
//! # Test seam
//!
//! With `cfg(test)` or the `test-support` feature, [`set_probe_fault`] makes every probe
//! operation (the `/proc` reads and `kill`) fail with a chosen error number, to test that
//! callers treat a failing probe as "alive".
//!
//! # References
//! - `gettid(2)`, `getrandom(2)`, `kill(2)`, `proc_pid_stat(5)`, `proc(5)` (`hidepid`),
//!   `pid_namespaces(7)`, `pthread_atfork(3)`

#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)]
// Under loom, threads never die and the /proc probe is not built into the models.
#![cfg_attr(shmproc_loom, allow(dead_code, unused_imports))]

use std::cell::Cell;
use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, Ordering};

thread_local! {
    static TID: Cell<u32> = const { Cell::new(0) };
    static STAMP: Cell<u64> = const { Cell::new(0) };
    /// How many lock guards this thread has made and not dropped (leaked ones stay counted).
    static GUARDS: Cell<u32> = const { Cell::new(0) };
}

/// Counts a lock guard made by the calling thread (see [`live_guards`]): a thread-local add,
/// no atomic read-modify-write.
#[inline(always)]
pub(crate) fn guard_made() {
    GUARDS.with(|g| g.set(g.get().wrapping_add(1)));
}

/// Uncounts a guard of the calling thread as it is dropped.
#[inline(always)]
pub(crate) fn guard_dropped() {
    GUARDS.with(|g| g.set(g.get().wrapping_sub(1)));
}

/// Returns how many lock guards the calling thread made and has not dropped: live ones and
/// leaked ones (`mem::forget`, `Box::leak`, a guard kept in a thread-local). A fork is refused
/// while it is not 0: the child would inherit copies of them.
pub(crate) fn live_guards() -> u32 {
    GUARDS.with(Cell::get)
}

static ATFORK: Once = Once::new();
static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn clear_ids_after_fork() {
    // Async-signal-safe: stores to this thread's own thread-locals, one atomic store.
    TID.with(|t| t.set(0));
    STAMP.with(|s| s.set(0));
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

/// Returns the calling thread's id if this thread has asked for it before (cached), else 0
/// (a thread that never asked, or a forked child's thread, whose cache the fork cleared). No
/// check and no system call: for a release that compares the word with it, where 0 (the
/// unlocked value) can only fail or change nothing.
#[cfg(not(shmproc_loom))]
#[inline(always)]
pub(crate) fn cached_tid() -> u32 {
    TID.with(Cell::get)
}

/// Under loom the id is always known.
#[cfg(shmproc_loom)]
pub(crate) fn cached_tid() -> u32 {
    current_tid()
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

/// The low half of a stamp whose thread's start time is not known.
pub(crate) const START_UNKNOWN: u32 = u32::MAX;

/// Returns the calling thread's stamp: its id in the high 32 bits, the low 32 bits of its start
/// time in the low 32 bits ([`START_UNKNOWN`] if `/proc` cannot tell). Never 0; cached per
/// thread (the first call reads `/proc`).
#[cfg(not(shmproc_loom))]
#[inline]
pub(crate) fn current_stamp() -> u64 {
    let cached = STAMP.with(Cell::get);
    if cached != 0 {
        return cached;
    }
    load_stamp()
}

/// The start time of every model thread under loom (a record with another start time stands
/// for an earlier, dead thread with the same id).
#[cfg(shmproc_loom)]
pub(crate) const LOOM_START: u32 = 1;

/// Under loom every model thread started at [`LOOM_START`].
#[cfg(shmproc_loom)]
pub(crate) fn current_stamp() -> u64 {
    (u64::from(current_tid()) << 32) | u64::from(LOOM_START)
}

#[cfg(not(shmproc_loom))]
#[cold]
fn load_stamp() -> u64 {
    let tid = current_tid();
    // Only a `/proc` of our own PID namespace gives our own start time; else record none
    // (a prober then never decides by start times, see `probe_thread`).
    let start = match proc_state_ok() {
        true => read_own_stat(tid)
            .ok()
            .and_then(|stat| parse_stat(&stat).and_then(|(_, start)| start)),
        false => None,
    };
    let stamp = (u64::from(tid) << 32) | u64::from(start.unwrap_or(START_UNKNOWN));
    STAMP.with(|s| s.set(stamp));
    stamp
}

/// Returns the CPU the calling thread runs on, plus one (0: unknown). Only a hint: the thread
/// may move at any time. `sched_getcpu` reads the thread's rseq area (glibc 2.35 and later),
/// about a nanosecond, or else makes the `getcpu` call.
#[cfg(not(shmproc_loom))]
#[inline]
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).map_or(0, |c| c.wrapping_add(1))
}

/// Under loom there is no CPU to tell.
#[cfg(shmproc_loom)]
pub(crate) fn current_cpu() -> u32 {
    0
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

/// What a liveness probe found out about a thread id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Definitely no running thread has this id (none exists, or it is a zombie or dead).
    Gone,
    /// A thread with this id may be running. `start` is the low 32 bits of its start time
    /// when `/proc` told it, `None` when the probe could not tell.
    Running {
        /// Low 32 bits of the start time (clock ticks since boot), if known.
        start: Option<u32>,
    },
}

#[cfg(shmproc_loom)]
loom::lazy_static! {
    /// The id of the model thread that [`end_thread_in_model`] marked ended (0: none).
    static ref LOOM_ENDED: loom::sync::atomic::AtomicU32 = loom::sync::atomic::AtomicU32::new(0);
}

/// Marks the calling model thread as ended: probes find it gone from now on (it keeps
/// running, standing for the thread that has ended, so the model can go on with the rest).
/// `Release`, and `Acquire` in the probe: the kernel orders a thread's stores before its
/// exit, and its exit before a probe that finds it gone.
#[cfg(shmproc_loom)]
pub(crate) fn end_thread_in_model() {
    LOOM_ENDED.store(current_tid(), Ordering::Release);
}

/// Under loom, model threads never die (but see [`end_thread_in_model`]); each started at
/// [`LOOM_START`].
#[cfg(shmproc_loom)]
pub(crate) fn probe_thread(tid: u32) -> Liveness {
    if LOOM_ENDED.load(Ordering::Acquire) == tid {
        return Liveness::Gone;
    }
    Liveness::Running {
        start: Some(LOOM_START),
    }
}

/// Probes thread `tid` (of this PID namespace); see the module's table.
#[cfg(not(shmproc_loom))]
pub(crate) fn probe_thread(tid: u32) -> Liveness {
    let unknown = Liveness::Running { start: None };
    if tid == 0 || !proc_is_ours() {
        return signal_probe(tid).unwrap_or(unknown);
    }
    match read_stat(tid) {
        Ok(stat) => match parse_stat(&stat) {
            Some((b'Z' | b'X' | b'x', _)) => Liveness::Gone,
            Some((_, start)) => Liveness::Running { start },
            None => unknown,
        },
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
            signal_probe(tid).unwrap_or(unknown)
        }
        Err(_) => unknown,
    }
}

/// What a liveness probe found out about a process id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessLiveness {
    /// Definitely no live process has this id (none exists, or it is a zombie or dead).
    Gone,
    /// A process (or thread) with this id may be running. `start` is its start time (clock
    /// ticks since boot, all 64 bits) when `/proc` told it, `None` when the probe could not
    /// tell.
    Running {
        /// Start time in clock ticks since boot, if known.
        start: Option<u64>,
    },
}

/// Under loom, every process is alive and started at tick 0, except [`LOOM_DEAD_PID`].
#[cfg(shmproc_loom)]
pub(crate) fn probe_process(pid: u32) -> ProcessLiveness {
    match pid {
        LOOM_DEAD_PID => ProcessLiveness::Gone,
        _ => ProcessLiveness::Running { start: Some(0) },
    }
}

/// A process id that loom models use for a dead process.
#[cfg(shmproc_loom)]
pub(crate) const LOOM_DEAD_PID: u32 = 0x3fff_fffe;

/// Probes process `pid` (of this PID namespace): the same table as [`probe_thread`], read
/// from the process's own stat line (its thread-group leader's), except that a zombie leader
/// is gone only when its stat line counts no other thread (a leader that ended alone while
/// its other threads run shows state `Z` too, and its process lives).
#[cfg(not(shmproc_loom))]
pub(crate) fn probe_process(pid: u32) -> ProcessLiveness {
    let unknown = ProcessLiveness::Running { start: None };
    let by_signal = |pid| match signal_probe(pid) {
        Some(Liveness::Gone) => ProcessLiveness::Gone,
        _ => unknown,
    };
    if pid == 0 || !proc_is_ours() {
        return by_signal(pid);
    }
    match read_stat(pid) {
        Ok(stat) => match parse_stat_fields(&stat) {
            Some(StatFields {
                state: b'X' | b'x', ..
            }) => ProcessLiveness::Gone,
            Some(StatFields {
                state: b'Z',
                threads: Some(0 | 1),
                ..
            }) => ProcessLiveness::Gone,
            Some(StatFields { state: b'Z', .. }) => unknown,
            Some(StatFields { start, .. }) => ProcessLiveness::Running { start },
            None => unknown,
        },
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => by_signal(pid),
        Err(_) => unknown,
    }
}

/// Returns the time since boot (`CLOCK_BOOTTIME`) in the clock ticks `/proc` gives start
/// times in (`sysconf(_SC_CLK_TCK)`), for comparing start times with the present.
#[cfg(not(shmproc_loom))]
pub(crate) fn boot_ticks() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let hz = rustix::param::clock_ticks_per_second();
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    secs.checked_mul(hz)?
        .checked_add(nanos.checked_mul(hz)? / 1_000_000_000)
}

/// Under loom, the present is one tick after [`LOOM_START`].
#[cfg(shmproc_loom)]
pub(crate) fn boot_ticks() -> Option<u64> {
    Some(u64::from(LOOM_START) + 1)
}

/// Returns `false` only when thread `tid` is definitely gone ([`probe_thread`] says so).
pub(crate) fn thread_alive(tid: u32) -> bool {
    probe_thread(tid) != Liveness::Gone
}

/// `kill(tid, 0)`: `Some(Gone)` on `ESRCH`, `None` (no definite answer) otherwise.
#[cfg(not(shmproc_loom))]
fn signal_probe(tid: u32) -> Option<Liveness> {
    if probe_fault().is_some() {
        return None;
    }
    let pid = rustix::process::Pid::from_raw(i32::try_from(tid).ok()?)?;
    match rustix::process::test_kill_process(pid) {
        Err(e) if e == rustix::io::Errno::SRCH => Some(Liveness::Gone),
        _ => None,
    }
}

#[cfg(not(shmproc_loom))]
fn read_stat(tid: u32) -> io::Result<Vec<u8>> {
    if let Some(e) = probe_fault() {
        return Err(io::Error::from_raw_os_error(e));
    }
    std::fs::read(format!("/proc/{tid}/stat"))
}

#[cfg(not(shmproc_loom))]
fn read_own_stat(tid: u32) -> io::Result<Vec<u8>> {
    std::fs::read(format!("/proc/self/task/{tid}/stat"))
}

/// The fields of a stat line the probes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    /// Field 3, the state byte.
    state: u8,
    /// Field 20, the number of threads of the process.
    threads: Option<u64>,
    /// Field 22, the start time in clock ticks since boot.
    start: Option<u64>,
}

/// Parses a stat line: the state byte, the thread count and the start time.
fn parse_stat_fields(stat: &[u8]) -> Option<StatFields> {
    // The fields follow the last ')' (the command name may itself contain parentheses):
    // ") S ppid ...", so field 3 (state) is the first after it, field 20 the 18th and
    // field 22 the 20th.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = stat.get(close + 1..)?;
    let mut fields = rest
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty())
        .map(|f| f.strip_suffix(b"\n").unwrap_or(f));
    let number = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u64>().ok();
    let state = *fields.next()?.first()?;
    let threads = fields.nth(16).and_then(number);
    let start = fields.nth(1).and_then(number);
    Some(StatFields {
        state,
        threads,
        start,
    })
}

/// Parses a stat line: the state byte and the low 32 bits of the start time (field 22).
fn parse_stat(stat: &[u8]) -> Option<(u8, Option<u32>)> {
    let f = parse_stat_fields(stat)?;
    Some((f.state, f.start.map(|t| (t & u64::from(u32::MAX)) as u32)))
}

const PROBE_UNCHECKED: u8 = 0;
const PROBE_OK: u8 = 1;
const PROBE_NO_PROC: u8 = 2;
static PROBE: AtomicU8 = AtomicU8::new(PROBE_UNCHECKED);

/// What [`liveness_probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeHealth {
    /// `/proc` is this process's own and readable: dead owners are detected, and so are
    /// reused thread ids.
    Full,
    /// `/proc` cannot be used, but `kill(tid, 0)` answers: owners that died and were reaped
    /// are detected (zombies and reused ids are not).
    SignalOnly,
    /// Neither answers: no owner is ever found dead; waits end only at their timeouts.
    None,
}

/// Checks once that thread liveness can be probed, and returns how well.
///
/// `/proc` counts as usable when `/proc/self` names this process's pid (so `/proc` belongs
/// to our PID namespace) and `/proc/self/task/<tid>/stat` reads and parses. The answer is
/// cached, except after a transient error (`EMFILE`, `ENFILE`, `ENOMEM`, `EINTR`), which is
/// checked again next time.
pub(crate) fn liveness_probe() -> ProbeHealth {
    let proc_ok = proc_is_ours();
    let signal_ok = probe_fault().is_none()
        && rustix::process::Pid::from_raw(i32::try_from(current_pid()).unwrap_or(0))
            .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
    match (proc_ok, signal_ok) {
        (true, _) => ProbeHealth::Full,
        (false, true) => ProbeHealth::SignalOnly,
        (false, false) => ProbeHealth::None,
    }
}

/// Whether `/proc` can be used for probing (false while a test fault is set).
#[cfg(not(shmproc_loom))]
fn proc_is_ours() -> bool {
    probe_fault().is_none() && proc_state_ok()
}

/// Whether `/proc` is this process's own and readable (checked once; see [`liveness_probe`]).
#[cfg(not(shmproc_loom))]
fn proc_state_ok() -> bool {
    // Relaxed: a cached fact about this process's environment; racing checks agree.
    match PROBE.load(Ordering::Relaxed) {
        PROBE_OK => return true,
        PROBE_NO_PROC => return false,
        _ => {}
    }
    let checked = check_proc();
    match checked {
        Ok(true) => PROBE.store(PROBE_OK, Ordering::Relaxed),
        Ok(false) => PROBE.store(PROBE_NO_PROC, Ordering::Relaxed),
        Err(_) => {} // transient: check again next time
    }
    checked.unwrap_or(false)
}

#[cfg(shmproc_loom)]
fn proc_is_ours() -> bool {
    false
}

/// `Ok(usable)`, or `Err` on a transient error.
#[cfg(not(shmproc_loom))]
fn check_proc() -> io::Result<bool> {
    let transient = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR)
        )
    };
    let own = match std::fs::read_link("/proc/self") {
        Ok(p) => p.to_str().and_then(|s| s.parse::<u32>().ok()) == Some(current_pid()),
        Err(e) if transient(&e) => return Err(e),
        Err(_) => false,
    };
    if !own {
        return Ok(false);
    }
    match read_own_stat(current_tid()) {
        Ok(stat) => Ok(parse_stat(&stat).is_some_and(|(_, start)| start.is_some())),
        Err(e) if transient(&e) => Err(e),
        Err(_) => Ok(false),
    }
}

/// The error number every probe operation fails with, if a test set one (0 = none).
static PROBE_FAULT: AtomicI32 = AtomicI32::new(0);

#[inline]
fn probe_fault() -> Option<i32> {
    // Relaxed: a test switch; the test orders it with its own synchronization.
    match PROBE_FAULT.load(Ordering::Relaxed) {
        0 => None,
        e => Some(e),
    }
}

/// Makes every liveness probe operation fail with error number `errno` (`None`: work again).
///
/// For tests: `Some(libc::ENOENT)` looks like a system without `/proc` (and with `kill`
/// answering nothing definite either), `Some(libc::EMFILE)` like a process out of descriptors.
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn set_probe_fault(errno: Option<i32>) {
    PROBE_FAULT.store(errno.unwrap_or(0), Ordering::Relaxed);
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

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_reads_state_and_start_after_the_last_parenthesis() {
        let line = b"42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                     4294967301 1000 10 18446744073709551615\n";
        // 4294967301 = 2^32 + 5: the low 32 bits are kept.
        assert_eq!(parse_stat(line), Some((b'S', Some(5))));
        assert_eq!(parse_stat(b"42 (x) Z"), Some((b'Z', None)));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(
            parse_stat_fields(line),
            Some(StatFields {
                state: b'S',
                threads: Some(1),
                start: Some(4294967301)
            })
        );
    }

    #[test]
    fn own_process_is_running_since_before_this_thread_and_an_exited_one_is_gone() {
        let ProcessLiveness::Running { start: Some(start) } = probe_process(current_pid()) else {
            panic!("own process not found running");
        };
        let now = boot_ticks().expect("boot time");
        assert!(start <= now);
        // This thread started after its process.
        let thread = (current_stamp() as u32).wrapping_sub(start as u32);
        assert!(u64::from(thread) <= now - start);
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        assert_eq!(probe_process(pid), ProcessLiveness::Gone);
        set_probe_fault(Some(libc::EMFILE));
        let seen = probe_process(pid);
        set_probe_fault(None);
        assert_eq!(seen, ProcessLiveness::Running { start: None });
    }

    #[test]
    fn own_thread_is_running_with_the_start_time_of_its_stamp() {
        let stamp = current_stamp();
        assert_eq!((stamp >> 32) as u32, current_tid());
        assert_ne!(stamp as u32, START_UNKNOWN);
        assert_eq!(
            probe_thread(current_tid()),
            Liveness::Running {
                start: Some(stamp as u32)
            }
        );
        assert_eq!(liveness_probe(), ProbeHealth::Full);
    }

    #[test]
    fn an_exited_thread_is_gone_and_a_failing_probe_is_never_gone() {
        let tid = std::thread::spawn(current_tid).join().expect("thread");
        assert_eq!(probe_thread(tid), Liveness::Gone);
        for errno in [libc::ENOENT, libc::EMFILE, libc::EACCES] {
            set_probe_fault(Some(errno));
            let seen = probe_thread(tid);
            let health = liveness_probe();
            set_probe_fault(None);
            assert_eq!(seen, Liveness::Running { start: None }, "errno {errno}");
            assert_eq!(health, ProbeHealth::None, "errno {errno}");
        }
        assert_eq!(probe_thread(tid), Liveness::Gone);
    }
}
