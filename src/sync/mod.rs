//! Process-shared synchronization primitives: futex words in the shared heap, robust to the
//! death of their holders.

pub(crate) mod lock;
pub(crate) mod raw;

#[cfg(all(test, shmproc_loom))]
mod loom_tests;

pub use lock::{Lock, LockGuard};
