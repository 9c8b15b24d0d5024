//! `prctl(PR_SET_PDEATHSIG, SIGKILL)`, `getppid()`, `sched_getaffinity()` and the thread
//! count from `/proc/self/task`: where a process stands among its relatives and its CPUs.
//!
//! The parent-death signal is delivered when the *thread* that created the child exits (for a
//! single-threaded parent: when the parent exits or is killed). It is set by the child itself,
//! so the parent may already have died before: [`die_with_parent`] therefore checks, after
//! setting it, that the parent is still the expected process, and reports if not.
//!
//! # References
//! - `PR_SET_PDEATHSIG(2const)`, `getppid(2)`, `sched_getaffinity(2)`, `proc_pid_task(5)`

use rustix::process::Signal;
use std::io;

/// Arranges for `SIGKILL` when the parent dies; returns `false` if the parent is no longer
/// `expected_parent` (it died before the signal was armed).
pub(crate) fn die_with_parent(expected_parent: i32) -> io::Result<bool> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(parent_pid() == expected_parent)
}

/// Returns the parent's pid (0 if the parent lives outside this pid namespace).
pub(crate) fn parent_pid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

/// Returns the number of CPUs this process may run on (its affinity mask), at least 1.
pub(crate) fn cpu_count() -> usize {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => usize::try_from(set.count()).unwrap_or(1).max(1),
        Err(_) => std::thread::available_parallelism().map_or(1, usize::from),
    }
}

/// Returns the number of threads of this process: the link count of `/proc/self/task`, which
/// procfs keeps at 2 plus one entry per thread (one `statx`, no parsing).
pub(crate) fn thread_count() -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let links = std::fs::metadata("/proc/self/task")?.nlink();
    usize::try_from(links.saturating_sub(2))
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| io::Error::other("unexpected link count of /proc/self/task"))
}
