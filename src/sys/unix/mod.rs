//! Linux: memfd, POSIX shared memory, shared mappings, futexes, thread identity, fork, spawn,
//! pidfds, pipes, eventfd, poll, descriptor passing, parent-death signals.

pub(crate) mod atfork;
pub(crate) mod clock;
pub(crate) mod eventfd;
pub(crate) mod fork;
pub(crate) mod futex;
pub(crate) mod lineage;
pub(crate) mod malloc;
pub(crate) mod memfd;
pub(crate) mod mmap;
pub(crate) mod pidfd;
pub(crate) mod pipe;
pub(crate) mod poll;
pub(crate) mod reaper;
pub(crate) mod scm_rights;
pub(crate) mod shm;
pub(crate) mod sockio;
pub(crate) mod sockopt;
pub(crate) mod spawn;
pub(crate) mod thread;

pub(crate) use atfork::fork_epoch;
pub(crate) use clock::Deadline;
pub(crate) use eventfd::{eventfd_create, eventfd_drain, eventfd_signal};
pub(crate) use futex::{WaitOutcome, futex_requeue, futex_wait, futex_wait_for, futex_wake};
/// Error numbers the tests inject through the liveness probe's fault seam.
#[cfg(all(test, not(shmproc_loom)))]
pub(crate) use libc::{EMFILE, ENOENT};
pub(crate) use lineage::{cpu_count, die_with_parent, thread_count};
pub(crate) use malloc::keep_freed_memory;

/// Whether `e` says the process (`EMFILE`) or the system (`ENFILE`) is out of descriptors.
pub(crate) fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
pub(crate) use memfd::{
    effective_uid, fd_blocks_bytes, fd_len, fd_owner_mode, memfd_create, punch_hole, seal_size,
    set_len, size_sealed,
};
pub(crate) use mmap::Mapping;
pub(crate) use pidfd::{pidfd_open, pidfd_send_signal, wait_any_readable, wait_readable};
pub(crate) use pipe::pipe;
pub(crate) use poll::{dup, poll_readable, poll_ready};
pub(crate) use scm_rights::{MAX_FDS, recv_fd, recv_with_fds, send_fd, send_with_fds};
pub(crate) use scm_rights::{recv_frame, send_frame, socket_pair};
pub(crate) use shm::{shm_create_exclusive, shm_open_existing, shm_unlink};
pub(crate) use sockio::{recv_now, recv_wait, send_parts};
pub(crate) use sockopt::set_tcp_keepalive;
#[cfg(any(test, feature = "test-support"))]
pub(crate) use sockopt::{dup_by_number, ip_socket_addrs, tcp_keepalive};
pub(crate) use spawn::{ExeId, exe_identity, secure_execution, spawn_self};
#[cfg(all(any(test, feature = "test-support"), not(shmproc_loom)))]
pub(crate) use thread::set_probe_fault;
#[cfg(shmproc_loom)]
pub(crate) use thread::{LOOM_DEAD_PID, LOOM_START, end_thread_in_model};
pub(crate) use thread::{
    Liveness, ProbeHealth, ProcessLiveness, START_UNKNOWN, boot_ticks, cached_tid, current_cpu,
    current_pid, current_stamp, current_tid, guard_dropped, guard_made, live_guards,
    liveness_probe, page_size, probe_process, probe_thread, random_u64, thread_alive,
};

/// The error number type of the OS layer.
pub(crate) type Errno = rustix::io::Errno;

/// Error numbers that callers match on.
pub(crate) mod errno {
    use super::Errno;
    pub(crate) const NOENT: Errno = Errno::NOENT;
    pub(crate) const EXIST: Errno = Errno::EXIST;
}
