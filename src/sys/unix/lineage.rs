//! `prctl(PR_SET_PDEATHSIG, SIGKILL)`, `getppid()`, `sched_getaffinity()` and the thread
//! count from `/proc/self/stat`: where a process stands among its relatives and its CPUs.
//!
//! The parent-death signal is delivered when the *thread* that created the child exits (for a
//! single-threaded parent: when the parent exits or is killed). It is set by the child itself,
//! so the parent may already have died before: [`die_with_parent`] therefore checks, after
//! setting it, that the parent is still the expected process, and reports if not.
//!
//! # References
//! - `PR_SET_PDEATHSIG(2const)`, `getppid(2)`, `sched_getaffinity(2)`, `proc_pid_stat(5)`

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

/// Returns the number of threads of this process (field 20 of `/proc/self/stat`).
pub(crate) fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may contain spaces and parentheses).
    let rest = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .ok_or_else(|| io::Error::other("malformed /proc/self/stat"))?;
    // `rest` starts with field 3 (state); num_threads is field 20.
    rest.split_whitespace()
        .nth(17)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("malformed /proc/self/stat"))
}
