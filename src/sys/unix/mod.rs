//! Linux: memfd, POSIX shared memory, shared mappings, futexes, thread identity, fork.

pub(crate) mod clock;
pub(crate) mod fork;
pub(crate) mod futex;
pub(crate) mod memfd;
pub(crate) mod mmap;
pub(crate) mod reaper;
pub(crate) mod shm;
pub(crate) mod thread;

pub(crate) use clock::Deadline;
pub(crate) use futex::{WaitOutcome, futex_requeue, futex_wait, futex_wake};
pub(crate) use memfd::{fd_blocks_bytes, fd_len, memfd_create, punch_hole, set_len};
pub(crate) use mmap::Mapping;
pub(crate) use shm::{shm_create_exclusive, shm_open_existing, shm_unlink};
pub(crate) use thread::{current_pid, current_tid, page_size, random_u64, thread_alive};

/// The error number type of the OS layer.
pub(crate) type Errno = rustix::io::Errno;

/// Error numbers that callers match on.
pub(crate) mod errno {
    use super::Errno;
    pub(crate) const NOENT: Errno = Errno::NOENT;
    pub(crate) const EXIST: Errno = Errno::EXIST;
}
